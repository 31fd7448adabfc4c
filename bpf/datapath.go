// Package bpf holds the XDP program that counts flows (xdpflow.c) and the Go
// that loads it: set the load-time constants, create the flow tables, hand
// out typed views of the maps. It knows nothing of expiry or export.
package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
)

// Action is what the program does with a frame after counting it.
type Action uint32

const (
	// Drop suits a span/mirror port: the frames are not for this host.
	Drop Action = 1 // XDP_DROP
	// Pass suits an inline tap: the host keeps receiving its traffic.
	Pass Action = 2 // XDP_PASS
)

// Defaults and limits of Config.
const (
	DefaultMaxFlows = 262144
	// MaxMaxFlows keeps a table's slots (2 x MaxFlows + 127) within an
	// array map's 32-bit index.
	MaxMaxFlows        = 1<<31 - oaWindow
	DefaultSampleBytes = 128
	MaxSampleBytes     = 256  // SAMPLE_MAX_BYTES in xdpflow.h
	MaxLocalNets       = 1024 // local_nets' max_entries
	// DefaultTCPConversations: handshakes timed at once, and half the
	// flows whose sequence state is carried (about 450 B of preallocated
	// kernel memory each, both maps); a conversation leaves at RST or
	// when idle, a carried flow when idle (SweepTCP).
	DefaultTCPConversations = 65536
)

// defaultRingBytes is the size of the sample ring buffer.
const defaultRingBytes = 1 << 22

// Config is fixed when the program is loaded.
type Config struct {
	// MaxFlows is the flows each of the two flow tables holds at half
	// load: a table has 2 x MaxFlows home slots (and 127 more), so more
	// fit, until some flow finds the 128 slots from its home slot full
	// (counted in Stats.UpdateFailedPackets). A slot is 224 bytes (232
	// with Mirrors, 248 with MACs): 896 bytes a flow for both tables.
	MaxFlows uint32
	// SampleRate N copies the head of 1 in N frames into the sample ring;
	// 0 disables sampling.
	SampleRate uint32
	// SampleBytes is how much of each sampled frame is copied (1..256).
	SampleBytes uint32
	// Action is applied to every frame after accounting (default Pass).
	Action Action
	// LocalNets are the local networks: each new flow is marked ingress
	// (into them) or egress (out of them). At most MaxLocalNets.
	LocalNets []netip.Prefix
	// TunnelsOuter counts IP tunnels (GRE, IP-in-IP, VXLAN, Geneve,
	// GTP-U) as the outer packet. By default (false) the flow is the
	// innermost IP conversation, keyed with the tunnel's identifier
	// (docs/datapath.md, "Encapsulations").
	TunnelsOuter bool
	// VXLANPorts and GenevePorts are the UDP destination ports taken as
	// VXLAN and Geneve tunnels (defaults PortVXLAN, PortGeneve); at most
	// MaxTunnelPorts each.
	VXLANPorts  []uint16
	GenevePorts []uint16
	// Mirrors are the mirror encapsulations stripped from frames as they
	// arrive: the inner frame is counted as if it came from a local span
	// port, with the mirror session in the key. A UDP port named here is
	// a mirror, not a tunnel.
	Mirrors []Mirror
	// MACs puts the source and destination MAC addresses in the key.
	MACs bool
	// TCPHealth measures, per TCP conversation seen in both directions,
	// the server and client network delays and the application latency
	// (from the handshake and the first data each way), and counts
	// retransmitted, out-of-order and zero-window segments per flow
	// (docs/datapath.md, "TCP health").
	TCPHealth bool
	// TCPConversations is the capacity of the handshake state map
	// (default DefaultTCPConversations): conversations whose handshake is
	// being timed. When it is full a new conversation is not timed and
	// Stats.TcpConvsFull counts it. The sequence carry (tcp_carry: each
	// TCP flow's sequence state from one table to the next) holds twice
	// as many flows, both directions; when it is full a drain counts the
	// flows it could not carry (SeqCarryStats).
	TCPConversations uint32
	// PinPath, when set, is a bpffs directory where the maps are pinned
	// (see pin.go): a Load that finds compatible pins there carries on
	// with them.
	PinPath string

	// Tests and benchmarks only (set in package bpf's tests; the probe
	// has no use for them).
	//
	// ringBytes is the size of the sample ring buffer: a power of two and
	// a multiple of the page size (default defaultRingBytes).
	ringBytes uint32
	// benchFlows makes the program vary the source address over this many
	// values, so that a repeated test frame becomes many flows (see
	// cfg_bench_flows in xdpflow.c).
	benchFlows uint32
	// testClock makes handshake times come from SetTestClock, so that
	// tests know the exact latencies (see cfg_test_clock in xdpflow.c).
	testClock bool
}

func (c *Config) setDefaults() error {
	if c.MaxFlows == 0 {
		c.MaxFlows = DefaultMaxFlows
	}
	if c.SampleBytes == 0 {
		c.SampleBytes = DefaultSampleBytes
	}
	if c.SampleBytes > MaxSampleBytes {
		return &ConfigError{"SampleBytes", c.SampleBytes, fmt.Errorf("at most %d", MaxSampleBytes)}
	}
	if c.TCPConversations == 0 {
		c.TCPConversations = DefaultTCPConversations
	}
	if c.ringBytes == 0 {
		c.ringBytes = defaultRingBytes
	}
	if c.ringBytes&(c.ringBytes-1) != 0 || c.ringBytes < 4096 {
		return fmt.Errorf("ring bytes %d: must be a power of two and at least 4096", c.ringBytes)
	}
	if c.Action == 0 {
		c.Action = Pass
	}
	if c.Action != Pass && c.Action != Drop {
		return &ConfigError{"Action", c.Action, errors.New("must be Pass or Drop")}
	}
	if len(c.LocalNets) > MaxLocalNets {
		return &ConfigError{"LocalNets", nil, fmt.Errorf("%d networks, at most %d", len(c.LocalNets), MaxLocalNets)}
	}
	if c.VXLANPorts == nil {
		c.VXLANPorts = []uint16{PortVXLAN}
	}
	if c.GenevePorts == nil {
		c.GenevePorts = []uint16{PortGeneve}
	}
	for _, p := range []struct {
		name  string
		ports []uint16
	}{{"VXLANPorts", c.VXLANPorts}, {"GenevePorts", c.GenevePorts}} {
		if len(p.ports) > MaxTunnelPorts {
			return &ConfigError{p.name, p.ports, fmt.Errorf("at most %d ports", MaxTunnelPorts)}
		}
	}
	c.Mirrors = slices.Clone(c.Mirrors) // defaults filled in below are ours
	seen := map[MirrorType]bool{}
	for i, m := range c.Mirrors {
		if m.Type < MirrorERSPAN || m.Type > MirrorTZSP {
			return &ConfigError{"Mirrors", m, errors.New("unknown mirror encapsulation")}
		}
		if seen[m.Type] {
			return &ConfigError{"Mirrors", m, errors.New("each encapsulation once")}
		}
		seen[m.Type] = true
		if m.Port == 0 {
			c.Mirrors[i].Port = m.defaultPort()
		}
	}
	// A port named for a mirror is that mirror's, at any depth: not a
	// tunnel port.
	for _, m := range c.Mirrors {
		drop := func(p uint16) bool { return p == m.Port }
		c.VXLANPorts = slices.DeleteFunc(slices.Clone(c.VXLANPorts), drop)
		c.GenevePorts = slices.DeleteFunc(slices.Clone(c.GenevePorts), drop)
	}
	if c.MaxFlows > MaxMaxFlows {
		return &ConfigError{"MaxFlows", c.MaxFlows, fmt.Errorf("at most %d", MaxMaxFlows)}
	}
	return nil
}

// Datapath is the loaded program and its maps. It is not attached to any
// interface: attaching is the caller's job.
type Datapath struct {
	// Program is the XDP program to attach.
	Program *ebpf.Program
	// FragsProgram is Program's multi-buffer twin (xdp.frags): for a
	// driver that refuses Program in native mode because frames at the
	// interface's MTU span several buffers (jumbo frames). It counts the
	// same, at the cost of a helper call per frame; where the driver takes
	// Program, frames are in one buffer and Program is the one to use.
	FragsProgram *ebpf.Program
	// Samples is the ring buffer of sampled frame heads (struct sample_hdr).
	Samples *ebpf.Map

	// Reused is set when the maps were taken over from pins a previous
	// probe left: they hold what was counted while no probe ran.
	Reused bool
	// Leftovers are flow tables of an earlier, incompatible layout (a
	// different MaxFlows, say) whose entries can still be read: drain
	// them, then close them. LayoutChange says what differed.
	Leftovers    []*ebpf.Map
	LayoutChange error

	cfg    Config
	spec   *ebpf.CollectionSpec // as loaded: VLANProgram loads a variant from it
	objs   objects
	tables [2]*ebpf.Map
	mem    [2][]byte // the tables' memory mappings (the drain reads them)
	active int

	// Flows whose sequence state a drain could not carry (tcp_carry: it
	// was full); read by metrics scrapes while the drain runs.
	carryFull atomic.Uint64
}

// objects are what Load loads: every map, and the programs but the
// device-bound xdpflow_vlanmeta and its twin (VLANProgram), which cannot
// load unbound.
type objects struct {
	xdpflowMaps
	Bss          *ebpf.Map      `ebpf:".bss"`       // clock_ns, shared with VLANProgram's
	Seed         *ebpf.Map      `ebpf:".data.seed"` // flow_seed: pinned with the tables
	Xdpflow      *ebpf.Program  `ebpf:"xdpflow"`
	XdpflowFrags *ebpf.Program  `ebpf:"xdpflow_frags"`
	StartClock   *ebpf.Program  `ebpf:"start_clock"`
	TestClockNs  *ebpf.Variable `ebpf:"test_clock_ns"` // Config.testClock
}

func (o *objects) Close() error {
	return errors.Join(o.xdpflowMaps.Close(), _XdpflowClose(o.Bss, o.Seed, o.Xdpflow, o.XdpflowFrags, o.StartClock))
}

// VLANProgram loads xdpflow_vlanmeta bound to the device ifindex (it can
// be attached there only, in native mode), sharing every map with
// Program: for a packet without a VLAN tag in the frame it asks the driver
// for the tag the NIC stripped. The caller closes it. It fails where the
// kernel (before 6.8) or the driver does not offer the tag: use Program.
func (d *Datapath) VLANProgram(ifindex int) (*ebpf.Program, error) {
	return d.vlanProgram(ifindex, "xdpflow_vlanmeta")
}

// VLANFragsProgram is VLANProgram's multi-buffer twin, as FragsProgram is
// Program's.
func (d *Datapath) VLANFragsProgram(ifindex int) (*ebpf.Program, error) {
	return d.vlanProgram(ifindex, "xdpflow_vlanmeta_frags")
}

func (d *Datapath) vlanProgram(ifindex int, name string) (*ebpf.Program, error) {
	spec := d.spec.Copy()
	ps := spec.Programs[name]
	ps.Ifindex = uint32(ifindex)
	ps.Flags |= unix.BPF_F_XDP_DEV_BOUND_ONLY
	repl := map[string]*ebpf.Map{"flow_tables": d.objs.FlowTables, "stats": d.objs.Stats, "clock": d.objs.Clock,
		"samples": d.objs.Samples, "local_nets": d.objs.LocalNets, ".bss": d.objs.Bss, "tcp_convs": d.objs.TcpConvs,
		"tcp_carry": d.objs.TcpCarry, ".data.seed": d.objs.Seed}
	var o struct {
		P *ebpf.Program `ebpf:"xdpflow_vlanmeta"`
	}
	var of struct {
		P *ebpf.Program `ebpf:"xdpflow_vlanmeta_frags"`
	}
	dst, p := any(&o), &o.P
	if name == "xdpflow_vlanmeta_frags" {
		dst, p = &of, &of.P
	}
	if err := spec.LoadAndAssign(dst, &ebpf.CollectionOptions{MapReplacements: repl}); err != nil {
		return nil, fmt.Errorf("load the VLAN-metadata program (%s) for ifindex %d: %w", name, ifindex, err)
	}
	return *p, nil
}

// Load loads the program with cfg into the kernel. The caller needs
// CAP_BPF and CAP_PERFMON (or root): without them the error wraps
// ErrPermission (ErrNoPerfmon when only CAP_PERFMON is missing). A setting
// the kernel refuses is a *ConfigError.
func Load(cfg Config) (*Datapath, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, fmt.Errorf("datapath config: %w", err)
	}
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK. Without
	// privileges this fails too; the map creation below then says why.
	memlockErr := rlimit.RemoveMemlock()
	spec, err := loadXdpflow()
	if err != nil {
		return nil, err
	}
	consts := map[string]any{
		"cfg_action":       uint32(cfg.Action),
		"cfg_sample_rate":  cfg.SampleRate,
		"cfg_sample_bytes": cfg.SampleBytes,
		"cfg_bench_flows":  cfg.benchFlows,
		"cfg_local_nets":   flag(len(cfg.LocalNets) > 0),
		"cfg_tunnels":      flag(!cfg.TunnelsOuter),
		"cfg_vxlan_ports":  ports(cfg.VXLANPorts),
		"cfg_geneve_ports": ports(cfg.GenevePorts),
		"cfg_macs":         flag(cfg.MACs),
		"cfg_tcp_health":   flag(cfg.TCPHealth),
		"cfg_test_clock":   flag(cfg.testClock),
		"cfg_oa_home":      uint64(cfg.MaxFlows) * oaHomePerFlow,
		"cfg_key_words":    uint32(keyWords(cfg.keySize())),
	}
	for _, m := range cfg.Mirrors {
		switch m.Type {
		case MirrorERSPAN:
			consts["cfg_mirror_erspan"] = uint32(1)
		case MirrorVXLAN:
			consts["cfg_mirror_vxlan_port"] = uint32(m.Port)
		case MirrorGeneve:
			consts["cfg_mirror_geneve_port"] = uint32(m.Port)
		case MirrorTZSP:
			consts["cfg_mirror_tzsp_port"] = uint32(m.Port)
		}
	}
	for name, v := range consts {
		if err := spec.Variables[name].Set(v); err != nil {
			return nil, fmt.Errorf("set %s: %w", name, err)
		}
	}
	// The slots hold the front of struct flow_key this configuration
	// keys by: no BTF value type then (see flows.go, "The tables").
	inner := spec.Maps["flow_tables"].InnerMap
	inner.MaxEntries = tableSlots(cfg.MaxFlows)
	inner.ValueSize, inner.Value = uint32(slotSize(cfg.keySize())), nil
	spec.Maps["samples"].MaxEntries = cfg.ringBytes
	// What the library sets on a data section where the kernel can map
	// it, said here so that the spec compares equal to the pinned seed.
	spec.Maps[".data.seed"].Flags |= unix.BPF_F_MMAPABLE
	// The carry is keyed as the tables are.
	carry := spec.Maps["tcp_carry"]
	carry.KeySize, carry.Key = uint32(cfg.keySize()), nil
	if cfg.TCPHealth {
		spec.Maps["tcp_convs"].MaxEntries = cfg.TCPConversations
		carry.MaxEntries = 2 * cfg.TCPConversations // both directions
	} else {
		spec.Maps["tcp_convs"].MaxEntries = 1 // unused: the program never reaches them
		carry.MaxEntries = 1
	}

	d := &Datapath{cfg: cfg}
	var repl map[string]*ebpf.Map
	if cfg.PinPath != "" {
		if repl, err = d.takePins(spec, inner); err != nil {
			return nil, err
		}
	}
	if !d.Reused {
		// A fresh seed for fresh tables; pinned with them (takePins
		// hands the pinned one over with the tables it hashed).
		if err := spec.Variables["flow_seed"].Set(newSeed()); err != nil {
			return nil, fmt.Errorf("set the flow table seed: %w", err)
		}
		for i := range d.tables {
			t := inner.Copy()
			t.Name = fmt.Sprintf("xdpflow_flows%d", i)
			if d.tables[i], err = ebpf.NewMap(t); err != nil {
				d.closeTables()
				if isPerm(err) {
					return nil, fmt.Errorf("create BPF maps: %w", kernelError(err))
				}
				err = kernelError(err)
				if memlockErr != nil {
					err = errors.Join(err, memlockErr)
				}
				return nil, &ConfigError{"MaxFlows", cfg.MaxFlows, fmt.Errorf("create flow table: %w", err)}
			}
		}
		// The first table starts active; slot 1 starts empty, as after
		// a drain.
		spec.Maps["flow_tables"].Contents = []ebpf.MapKV{{Key: uint32(0), Value: d.tables[0]}}
	}
	d.spec = spec
	if err := spec.LoadAndAssign(&d.objs, &ebpf.CollectionOptions{MapReplacements: repl}); err != nil {
		d.closeTables()
		for _, m := range repl {
			m.Close()
		}
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) && isPerm(err) {
			// Without CAP_PERFMON the verifier refuses packet pointer
			// arithmetic: a missing capability, not a broken program.
			return nil, fmt.Errorf("the kernel verifier refused the XDP program: %w", &denied{ErrNoPerfmon, err})
		}
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("kernel verifier rejected the XDP program: %+v", ve)
		}
		return nil, fmt.Errorf("load XDP program: %w", kernelError(err))
	}
	for _, m := range repl {
		m.Close() // the collection holds its own reference
	}
	if err := d.mapTables(); err != nil {
		d.Close()
		return nil, err
	}
	if err := d.setLocalNets(); err != nil {
		d.Close()
		return nil, err
	}
	if d.Reused {
		if err := d.findActive(); err != nil {
			d.Close()
			return nil, err
		}
	}
	if err := d.startClock(); err != nil {
		d.Close()
		return nil, err
	}
	if cfg.PinPath != "" && !d.Reused {
		if err := d.pin(); err != nil {
			d.Close()
			return nil, err
		}
	}
	d.Program = d.objs.Xdpflow
	d.FragsProgram = d.objs.XdpflowFrags
	d.Samples = d.objs.Samples
	return d, nil
}

// setLocalNets fills the LPM trie; IPv4 networks go in IPv4-mapped, as
// the flow keys hold them.
func (d *Datapath) setLocalNets() error {
	for _, p := range d.cfg.LocalNets {
		k := xdpflowLpmKey{Prefixlen: uint32(p.Bits()), Addr: p.Addr().As16()}
		if p.Addr().Is4() {
			k.Prefixlen += 96
		}
		if err := d.objs.LocalNets.Update(k, uint8(1), ebpf.UpdateAny); err != nil {
			return &ConfigError{"LocalNets", p, err}
		}
	}
	return nil
}

// startClock arms the BPF timer that keeps the program's clock.
func (d *Datapath) startClock() error {
	ret, err := d.objs.StartClock.Run(&ebpf.RunOptions{Data: make([]byte, 14)})
	if err != nil {
		return fmt.Errorf("start datapath clock: %w", err)
	}
	if ret != uint32(Pass) {
		return fmt.Errorf("start datapath clock: the kernel refused the BPF timer (xdpflow needs Linux 5.18 or later)")
	}
	return nil
}

// Rotate makes the other table active and returns the one taken out of
// service. When Rotate returns, no program run can still be writing into
// the returned table (the kernel waits for running programs when a
// map-in-map slot changes), so it can be read to the last packet. Drain it
// empty before the next Rotate: it becomes active again then.
//
// With TCPHealth the table taken out goes into slot 1 first, while it is
// still active: from the swap on, a flow's first packet in the new table
// finds its sequence state there until the drain has carried it into
// tcp_carry and emptied the slot (docs/datapath.md, "The sequence
// carry").
func (d *Datapath) Rotate() (*ebpf.Map, error) {
	next := 1 - d.active
	if d.cfg.TCPHealth {
		if err := d.objs.FlowTables.Update(uint32(1), d.tables[d.active], ebpf.UpdateAny); err != nil {
			return nil, fmt.Errorf("switch flow table: the previous table's slot: %w", err)
		}
	}
	if err := d.objs.FlowTables.Update(uint32(0), d.tables[next], ebpf.UpdateAny); err != nil {
		return nil, fmt.Errorf("switch flow table: %w", err)
	}
	old := d.tables[d.active]
	d.active = next
	return old, nil
}

// Close unloads the program and frees the maps. Links that still hold the
// program keep it alive until they are closed.
func (d *Datapath) Close() error {
	err := d.objs.Close()
	d.closeTables()
	return err
}

func (d *Datapath) closeTables() {
	for i, t := range d.tables {
		if d.mem[i] != nil {
			unix.Munmap(d.mem[i])
			d.mem[i] = nil
		}
		if t != nil {
			t.Close()
		}
	}
}

func flag(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

// ports is a port list as the program's fixed array (0: unused).
func ports(p []uint16) [MaxTunnelPorts]uint32 {
	var a [MaxTunnelPorts]uint32
	for i, v := range p {
		a[i] = uint32(v)
	}
	return a
}

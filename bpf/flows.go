package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"unsafe"

	"github.com/cilium/ebpf"
)

// FlowKey identifies a flow (struct flow_key).
type FlowKey = xdpflowFlowKey

// FlowValue is what a table holds for a flow (struct flow_value).
type FlowValue = xdpflowFlowValue

// Src returns the source address; IPv4 comes out as IPv4, not IPv4-mapped.
func (k FlowKey) Src() netip.Addr { return k.addr(k.SrcAddr) }

// Dst returns the destination address.
func (k FlowKey) Dst() netip.Addr { return k.addr(k.DstAddr) }

// IPVersion is 4 or 6. The key stores IPv4 IPv4-mapped and the datapath
// counts IPv6 packets with such addresses as malformed, so the form of the
// address tells.
func (k FlowKey) IPVersion() uint8 {
	if netip.AddrFrom16(k.SrcAddr).Is4In6() {
		return 4
	}
	return 6
}

func (k FlowKey) addr(a [16]byte) netip.Addr {
	return netip.AddrFrom16(a).Unmap()
}

func (k FlowKey) String() string {
	return fmt.Sprintf("if%d vlan%d proto%d %s > %s", k.InIf, k.VlanId, k.Proto,
		netip.AddrPortFrom(k.Src(), k.SrcPort), netip.AddrPortFrom(k.Dst(), k.DstPort))
}

// Merge folds another part of the same flow (another CPU's value, or a
// later table) into v.
func (v *FlowValue) Merge(o FlowValue) {
	if o.Packets == 0 {
		return
	}
	if v.Packets == 0 || o.FirstSeenNs < v.FirstSeenNs { // the first packet's
		v.FirstSeenNs = o.FirstSeenNs
		v.IpTos = o.IpTos
		v.TunnelSrcAddr, v.TunnelDstAddr, v.MplsLabels = o.TunnelSrcAddr, o.TunnelDstAddr, o.MplsLabels
	}
	if o.LastSeenNs > v.LastSeenNs {
		v.LastSeenNs = o.LastSeenNs
	}
	v.Packets += o.Packets
	v.Bytes += o.Bytes
	v.L2Bytes += o.L2Bytes
	v.TcpFlags |= o.TcpFlags
	if o.FlowDirection != 0 { // fixed by the key and Config.LocalNets
		v.FlowDirection = o.FlowDirection
	}
	// TCP health: the latencies are measured once per conversation and
	// copied into every later epoch's entry; the counts add up.
	for _, f := range [...]struct {
		dst *uint64
		src uint64
	}{
		{&v.ServerNwDelayNs, o.ServerNwDelayNs}, {&v.ClientNwDelayNs, o.ClientNwDelayNs}, {&v.ApplLatencyNs, o.ApplLatencyNs}} {
		if f.src != 0 {
			*f.dst = f.src
		}
	}
	v.TcpRetrans += o.TcpRetrans
	v.TcpOoo += o.TcpOoo
	v.TcpZeroWin += o.TcpZeroWin
	if o.TcpState != 0 { // the sequence state of the later epoch
		v.TcpHwm, v.TcpHoleLo, v.TcpHoleHi, v.TcpState = o.TcpHwm, o.TcpHoleLo, o.TcpHoleHi, o.TcpState
	}
}

// batchSize is how many entries one batch syscall moves.
const batchSize = 4096

// Drain reads every flow of a table taken out of service by Rotate, calls fn
// for each, and leaves the table empty. It uses the kernel's batch
// operations (10x faster than iterate-and-delete). With TCPHealth it
// carries each TCP flow's sequence state into tcp_carry before deleting it
// from the table (see carry).
func (d *Datapath) Drain(table *ebpf.Map, fn func(FlowKey, FlowValue)) error {
	return d.walk(table, fn, true, true)
}

// Read calls fn for every flow of a table taken out of service by Rotate
// and leaves the table as it is: the crash-safe flow state saves what it
// read before Clear empties the table, so a crash in between loses nothing.
// With TCPHealth it carries the sequence state as Drain does.
func (d *Datapath) Read(table *ebpf.Map, fn func(FlowKey, FlowValue)) error {
	return d.walk(table, fn, false, true)
}

// The tables' key is the front of struct flow_key a configuration needs
// (KEY_BASE, KEY_MIRROR in xdpflow.h, or all of it).
const (
	keyBase   = int(unsafe.Offsetof(FlowKey{}.ObservationPointId))
	keyMirror = int(unsafe.Offsetof(FlowKey{}.SrcMac))
	keyFull   = int(unsafe.Sizeof(FlowKey{}))
)

// keySize is the tables' key size for c.
func (c *Config) keySize() int {
	switch {
	case c.MACs:
		return keyFull
	case len(c.Mirrors) > 0:
		return keyMirror
	}
	return keyBase
}

// walk calls fn for every flow of table, deleting them with del. With
// carry (and TCPHealth, on one of d's own tables: not a leftover of
// another layout), each batch's sequence state is carried before the batch
// is deleted. Once one of d's tables is empty, slot 1 is emptied: the
// carry holds all it held, and a new flow then looks up the carry alone.
func (d *Datapath) walk(table *ebpf.Map, fn func(FlowKey, FlowValue), del, carry bool) error {
	if d.cfg.perCPU() {
		// Benchmarks only (Config.tableType): each CPU's value has its
		// own sequence state, nothing to carry as one.
		return walkPerCPU(table, fn, del)
	}
	own := table == d.tables[0] || table == d.tables[1]
	var c *Datapath
	if carry && d.cfg.TCPHealth && own {
		c = d
	}
	var err error
	switch int(table.KeySize()) {
	case keyBase:
		err = walkBatch[[keyBase]byte](table, fn, del, c)
	case keyMirror:
		err = walkBatch[[keyMirror]byte](table, fn, del, c)
	case keyFull:
		err = walkBatch[[keyFull]byte](table, fn, del, c)
	default:
		return fmt.Errorf("read flow table: key size %d is none of this version's", table.KeySize())
	}
	if err == nil && del && own && d.cfg.TCPHealth {
		if err = d.objs.FlowTables.Delete(uint32(1)); errors.Is(err, ebpf.ErrKeyNotExist) {
			err = nil
		}
		if err != nil {
			err = fmt.Errorf("empty the previous table's slot: %w", err)
		}
	}
	return err
}

// walkBatch reads table with batch lookups into keys of its key size K;
// given c, it carries each batch's sequence state into c's tcp_carry and
// only then deletes the batch (with del).
func walkBatch[K [keyBase]byte | [keyMirror]byte | [keyFull]byte](table *ebpf.Map, fn func(FlowKey, FlowValue), del bool, c *Datapath) error {
	batch := table.BatchLookup
	if del && c == nil {
		batch = table.BatchLookupAndDelete
	}
	keys := make([]K, batchSize)
	vals := make([]FlowValue, batchSize)
	var cb *carryBatch[K]
	if c != nil {
		cb = &carryBatch[K]{keys: make([]K, 0, batchSize), vals: make([]SeqCarry, 0, batchSize)}
	}
	var cursor ebpf.MapBatchCursor
	for {
		n, err := batch(&cursor, keys, vals, nil)
		for i := 0; i < n; i++ {
			fn(keyFrom(unsafe.Slice((*byte)(unsafe.Pointer(&keys[i])), unsafe.Sizeof(keys[i]))), vals[i])
		}
		if cb != nil && n > 0 {
			if cerr := carry(c, cb, keys[:n], vals[:n]); cerr != nil {
				return cerr
			}
			if del {
				if _, derr := table.BatchDelete(keys[:n], nil); derr != nil {
					return fmt.Errorf("clear flow table: %w", derr)
				}
			}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read flow table: %w", err)
		}
	}
}

// keyFrom is the key whose front b is (the rest zero).
func keyFrom(b []byte) FlowKey {
	var k FlowKey
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&k)), keyFull), b)
	return k
}

// Clear empties a table taken out of service by Rotate, carrying nothing:
// Read carried what it held.
func (d *Datapath) Clear(table *ebpf.Map) error {
	return d.walk(table, func(FlowKey, FlowValue) {}, true, false)
}

// TableID is the kernel's id of a flow table: it names the table across
// restarts of the probe while the table is pinned.
func TableID(table *ebpf.Map) uint32 {
	info, err := table.Info()
	if err != nil {
		return 0
	}
	id, _ := info.ID()
	return uint32(id)
}

// Quiet is the flow table out of service (the one Rotate returned last).
func (d *Datapath) Quiet() *ebpf.Map { return d.tables[1-d.active] }

func walkPerCPU(table *ebpf.Map, fn func(FlowKey, FlowValue), del bool) error {
	var (
		kb     = make([]byte, table.KeySize())
		perCPU []FlowValue
		keys   [][]byte
	)
	it := table.Iterate()
	for it.Next(&kb, &perCPU) {
		var v FlowValue
		for _, c := range perCPU {
			v.Merge(c)
		}
		fn(keyFrom(kb), v)
		if del {
			keys = append(keys, slices.Clone(kb))
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read flow table: %w", err)
	}
	for _, k := range keys {
		if err := table.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("clear flow table: %w", err)
		}
	}
	return nil
}

package bpftest

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"unsafe"

	"github.com/cilium/ebpf"
)

// The flow table designs of issue #16 (bpf/testdata/tables.c): the real
// program's per-packet work on plain frames over other tables, for the
// benchmarks to compare in one run. docs/datapath.md says what was found.

// Design is a flow table design.
type Design int

const (
	// DesignHash is today's: a BPF_MAP_TYPE_HASH keyed by the 48-byte
	// front of struct flow_key (PERCPU_HASH with PerCPU).
	DesignHash Design = iota
	// DesignCompact keeps IPv4 in a HASH keyed by 24 bytes, IPv6 in
	// one keyed by 48.
	DesignCompact
	// DesignOA is open addressing over a BPF_MAP_TYPE_ARRAY (one table
	// per CPU with PerCPU).
	DesignOA
)

// TablesConfig is fixed at load.
type TablesConfig struct {
	Design Design
	// PerCPU: per-CPU tables, plain adds instead of atomic ones.
	PerCPU bool
	// Value168: a 168-byte flow value (today's 112 and TCP health's 56).
	Value168 bool
	// Lean: the per-CPU statistics count only what the tables cannot
	// tell (non-IP, malformed, new flows, failed updates, fragments):
	// no per-packet writes for a packet that lands in a flow.
	Lean bool
	// NoClock: no clock read per packet (last_seen stays first_seen).
	NoClock bool
	// MaxFlows is the flows a table must hold: a hash table's entries;
	// an open-addressing table has OAHomePerFlow times as many home
	// slots, and OAWindow-1 more so that no window wraps.
	MaxFlows uint32
	// BenchFlows varies the source address over this many values, as
	// package bpf's benchFlows does for the real program.
	BenchFlows uint32
}

// Open addressing: its load factor (a table holding MaxFlows flows is
// half full) and probe window (OA_WINDOW in tables.c). With linear probing
// at half load a window of 8 turns away ~0.5% of inserts; filling 1M
// flows 100 times, the longest probe was 54-63 slots: 128 leaves a margin.
const (
	OAHomePerFlow = 2
	OAWindow      = 128
	slotReady     = 2
	slotBusy      = 1
)

// KeySize is the bytes of struct flow_key the tables key by (KEY_BASE).
const KeySize = 48

// Flow is a drained flow: the key's front and the counters.
type Flow struct {
	Key                                      [KeySize]byte
	Packets, Bytes, L2Bytes, FirstSeen, Last uint64
	TCPFlags                                 uint32
}

// Stats is struct datapath_stats summed over the CPUs.
type Stats = tablesDatapathStats

// Tables is a loaded design: its program, and two generations of tables
// rotated through the program's slot maps as the real program's are.
type Tables struct {
	Program *ebpf.Program

	cfg    TablesConfig
	coll   *ebpf.Collection
	outer  []*ebpf.Map    // slot maps: one, or IPv4 and IPv6 (compact)
	tables [2][]*ebpf.Map // per generation, one per slot map
	active int
	stride int // bytes per open-addressing slot
}

var progNames = map[Design]string{DesignHash: "tables_hash", DesignCompact: "tables_compact", DesignOA: "tables_oa"}

// LoadTables loads the design's program and creates its tables. The
// caller closes it.
func LoadTables(cfg TablesConfig) (*Tables, error) {
	if cfg.MaxFlows == 0 {
		cfg.MaxFlows = 1024
	}
	spec, err := loadTables()
	if err != nil {
		return nil, err
	}
	t := &Tables{cfg: cfg}
	var outer []string
	value := uint32(unsafe.Sizeof(tablesFlowValue{}))
	if cfg.Value168 {
		value = 168
	}
	home, part := uint64(cfg.MaxFlows)*OAHomePerFlow, uint32(0)
	switch cfg.Design {
	case DesignHash:
		outer = []string{"hash_tables"}
	case DesignCompact:
		outer = []string{"v4_tables", "v6_tables"}
	case DesignOA:
		outer = []string{"oa_tables"}
		part = uint32(home) + OAWindow - 1
	default:
		return nil, fmt.Errorf("design %d: unknown", cfg.Design)
	}
	seed := make([]byte, 8*KeySize/8)
	if _, err := rand.Read(seed); err != nil {
		return nil, err
	}
	var seeds [KeySize / 8]uint64
	for i := range seeds {
		seeds[i] = binary.LittleEndian.Uint64(seed[i*8:])
	}
	consts := map[string]any{
		"cfg_percpu":      flag(cfg.PerCPU),
		"cfg_value168":    flag(cfg.Value168),
		"cfg_lean":        flag(cfg.Lean),
		"cfg_no_clock":    flag(cfg.NoClock),
		"cfg_bench_flows": cfg.BenchFlows,
		"cfg_oa_home":     home,
		"cfg_oa_part":     part,
		"cfg_seed":        seeds,
	}
	for name, v := range consts {
		if err := spec.Variables[name].Set(v); err != nil {
			return nil, fmt.Errorf("set %s: %w", name, err)
		}
	}
	// Only this design's program, and its maps.
	name := progNames[cfg.Design]
	for p := range spec.Programs {
		if p != name && p != "start_clock" {
			delete(spec.Programs, p)
		}
	}
	for _, o := range []string{"hash_tables", "v4_tables", "v6_tables", "oa_tables"} {
		if !slices.Contains(outer, o) {
			delete(spec.Maps, o)
		}
	}
	for i := range t.tables {
		t.tables[i] = make([]*ebpf.Map, len(outer))
	}
	defer func() {
		if t.Program == nil {
			t.closeTables()
		}
	}()
	for j, o := range outer {
		inner := spec.Maps[o].InnerMap
		inner.Value = nil // its size is set here
		if cfg.Design == DesignOA {
			cpus := 1
			if cfg.PerCPU {
				if cpus, err = ebpf.PossibleCPU(); err != nil {
					return nil, err
				}
			}
			inner.MaxEntries = part * uint32(cpus)
			inner.ValueSize = uint32(unsafe.Offsetof(tablesSlot{}.V)) + value
			t.stride = int(inner.ValueSize+7) &^ 7
		} else {
			inner.MaxEntries = cfg.MaxFlows
			inner.ValueSize = value
			if cfg.PerCPU {
				inner.Type = ebpf.PerCPUHash
			}
		}
		for i := range t.tables {
			if t.tables[i][j], err = ebpf.NewMap(inner); err != nil {
				return nil, fmt.Errorf("create %s table: %w", o, err)
			}
		}
		spec.Maps[o].Contents = []ebpf.MapKV{{Key: uint32(0), Value: t.tables[0][j]}}
	}
	if t.coll, err = ebpf.NewCollection(spec); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load %s: %+v", name, ve)
		}
		return nil, fmt.Errorf("load %s: %w", name, err)
	}
	for _, o := range outer {
		t.outer = append(t.outer, t.coll.Maps[o])
	}
	// The clock, as the real program's loader starts it.
	ret, err := t.coll.Programs["start_clock"].Run(&ebpf.RunOptions{Data: make([]byte, 14)})
	if err != nil || ret != 2 { // XDP_PASS
		t.coll.Close()
		return nil, fmt.Errorf("start the clock: %d, %v", ret, err)
	}
	t.Program = t.coll.Programs[name]
	return t, nil
}

// Rotate puts the other generation of tables in the slots. When it
// returns no program run can still write into the generation taken out
// (the kernel waits for running programs when a map-in-map slot changes):
// Drain reads it.
func (t *Tables) Rotate() error {
	next := 1 - t.active
	for j, o := range t.outer {
		if err := o.Update(uint32(0), t.tables[next][j], ebpf.UpdateAny); err != nil {
			return err
		}
	}
	t.active = next
	return nil
}

// Drain calls fn for every flow of the generation out of service and
// leaves its tables empty.
func (t *Tables) Drain(fn func(Flow)) error {
	for j, m := range t.tables[1-t.active] {
		var err error
		switch {
		case t.cfg.Design == DesignOA:
			err = t.drainOA(m, fn)
		case t.cfg.PerCPU:
			err = drainPerCPU(m, t.cfg.Design == DesignCompact && j == 0, fn)
		case t.cfg.Design == DesignCompact && j == 0:
			err = drainHash[tablesV4Key](m, t.cfg.Value168, v4Key, fn)
		default:
			err = drainHash[[KeySize]byte](m, t.cfg.Value168, func(k *[KeySize]byte) [KeySize]byte { return *k }, fn)
		}
		if err != nil {
			return fmt.Errorf("drain: %w", err)
		}
	}
	return nil
}

func flowOf(k [KeySize]byte, v *tablesFlowValue) Flow {
	return Flow{Key: k, Packets: v.Packets, Bytes: v.Bytes, L2Bytes: v.L2Bytes,
		FirstSeen: v.FirstSeenNs, Last: v.LastSeenNs, TCPFlags: v.TcpFlags}
}

// v4Key is the compact key in flow_key's form (IPv4-mapped addresses).
func v4Key(k *tablesV4Key) [KeySize]byte {
	var b [KeySize]byte
	b[10], b[11], b[26], b[27] = 0xff, 0xff, 0xff, 0xff
	binary.NativeEndian.PutUint32(b[12:], k.SrcAddr)
	binary.NativeEndian.PutUint32(b[28:], k.DstAddr)
	binary.NativeEndian.PutUint32(b[32:], k.InIf)
	binary.NativeEndian.PutUint32(b[36:], k.TunnelId)
	binary.NativeEndian.PutUint16(b[40:], k.VlanId)
	binary.NativeEndian.PutUint16(b[42:], k.SrcPort)
	binary.NativeEndian.PutUint16(b[44:], k.DstPort)
	b[46], b[47] = k.Proto, k.TunnelType
	return b
}

// value168: the value padded to 168 bytes. The designs were measured when
// struct flow_value was 112 bytes; since TCP health it is 168 itself, and
// the padding is empty.
type value168 struct {
	V      tablesFlowValue
	Health [168 - unsafe.Sizeof(tablesFlowValue{})]byte
}

// drainHash drains a shared hash table with the batch syscalls, as
// package bpf's Drain does.
func drainHash[K any](m *ebpf.Map, big bool, conv func(*K) [KeySize]byte, fn func(Flow)) error {
	if big {
		return batchDrain(m, func(k *K, v *value168) { fn(flowOf(conv(k), &v.V)) })
	}
	return batchDrain(m, func(k *K, v *tablesFlowValue) { fn(flowOf(conv(k), v)) })
}

func batchDrain[K, V any](m *ebpf.Map, fn func(*K, *V)) error {
	keys, vals := make([]K, 4096), make([]V, 4096)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookupAndDelete(&cursor, keys, vals, nil)
		for i := range n {
			fn(&keys[i], &vals[i])
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// drainPerCPU sums each flow's per-CPU values (their first 40 bytes: the
// counters) and deletes it.
func drainPerCPU(m *ebpf.Map, v4 bool, fn func(Flow)) error {
	kb := make([]byte, m.KeySize())
	var vals [][]byte
	var keys [][]byte
	it := m.Iterate()
	for it.Next(&kb, &vals) {
		var f Flow
		if v4 {
			var k tablesV4Key
			if _, err := binary.Decode(kb, binary.NativeEndian, &k); err != nil {
				return err
			}
			f.Key = v4Key(&k)
		} else {
			copy(f.Key[:], kb)
		}
		for _, b := range vals {
			var v tablesFlowValue
			if _, err := binary.Decode(b[:unsafe.Sizeof(v)], binary.NativeEndian, &v); err != nil {
				return err
			}
			if v.Packets == 0 {
				continue // a CPU that never saw the flow
			}
			f.Packets += v.Packets
			f.Bytes += v.Bytes
			f.L2Bytes += v.L2Bytes
			f.TCPFlags |= v.TcpFlags
			if f.FirstSeen == 0 || v.FirstSeenNs < f.FirstSeen {
				f.FirstSeen = v.FirstSeenNs
			}
			f.Last = max(f.Last, v.LastSeenNs)
		}
		fn(f)
		keys = append(keys, append([]byte(nil), kb...))
	}
	if err := it.Err(); err != nil {
		return err
	}
	for _, k := range keys {
		if err := m.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// Where struct slot's fields are.
const (
	keyOff     = unsafe.Offsetof(tablesSlot{}.Key)
	valueOff   = unsafe.Offsetof(tablesSlot{}.V)
	offPackets = unsafe.Offsetof(tablesFlowValue{}.Packets)
	offBytes   = unsafe.Offsetof(tablesFlowValue{}.Bytes)
	offL2Bytes = unsafe.Offsetof(tablesFlowValue{}.L2Bytes)
	offFirst   = unsafe.Offsetof(tablesFlowValue{}.FirstSeenNs)
	offLast    = unsafe.Offsetof(tablesFlowValue{}.LastSeenNs)
	offFlags   = unsafe.Offsetof(tablesFlowValue{}.TcpFlags)
)

// drainOA reads an open-addressing table through its memory mapping: every
// slot whose state word says READY is a flow; it is then zeroed, so the
// table goes back into service empty and a new flow need not clear it.
// The table is out of service, so a BUSY slot is a broken claim protocol.
// With per-CPU tables the same key can be in each CPU's: fn sees each.
func (t *Tables) drainOA(m *ebpf.Map, fn func(Flow)) error {
	mem, err := m.Memory()
	if err != nil {
		return err
	}
	const chunk = 4096
	buf := make([]byte, chunk*t.stride)
	zero := make([]byte, t.stride)
	slots := int(m.MaxEntries())
	for first := 0; first < slots; first += chunk {
		n := min(chunk, slots-first)
		b := buf[:n*t.stride]
		if _, err := mem.ReadAt(b, int64(first*t.stride)); err != nil {
			return err
		}
		for i := range n {
			s := b[i*t.stride:]
			state := binary.NativeEndian.Uint64(s)
			if state == 0 {
				continue
			}
			if state&3 != slotReady {
				return fmt.Errorf("slot %d: state %#x in a table out of service", first+i, state)
			}
			f := Flow{Key: [KeySize]byte(s[keyOff : keyOff+KeySize])}
			v := s[valueOff:]
			u64 := func(off uintptr) uint64 { return binary.NativeEndian.Uint64(v[off:]) }
			f.Packets, f.Bytes, f.L2Bytes = u64(offPackets), u64(offBytes), u64(offL2Bytes)
			f.FirstSeen, f.Last = u64(offFirst), u64(offLast)
			f.TCPFlags = binary.NativeEndian.Uint32(v[offFlags:])
			fn(f)
			if _, err := mem.WriteAt(zero, int64((first+i)*t.stride)); err != nil {
				return err
			}
		}
	}
	return nil
}

// Memlock is the kernel memory of both generations of tables.
func (t *Tables) Memlock() (uint64, error) {
	var sum uint64
	for _, g := range t.tables {
		for _, m := range g {
			info, err := m.Info()
			if err != nil {
				return 0, err
			}
			n, ok := info.Memlock()
			if !ok {
				return 0, errors.New("no memlock in the map's info")
			}
			sum += n
		}
	}
	return sum, nil
}

// Stats sums the per-CPU statistics.
func (t *Tables) Stats() (Stats, error) {
	var per []Stats
	if err := t.coll.Maps["stats"].Lookup(uint32(0), &per); err != nil {
		return Stats{}, err
	}
	var s Stats
	for _, c := range per {
		s.Packets += c.Packets
		s.Bytes += c.Bytes
		s.NonIp += c.NonIp
		for i := range s.Malformed {
			s.Malformed[i] += c.Malformed[i]
		}
		s.FlowPackets += c.FlowPackets
		s.FlowBytes += c.FlowBytes
		s.NewFlows += c.NewFlows
		s.UpdateFailedPackets += c.UpdateFailedPackets
		s.UpdateFailedBytes += c.UpdateFailedBytes
		s.Fragments += c.Fragments
	}
	return s, nil
}

// Close unloads the program and frees the tables.
func (t *Tables) Close() error {
	if t.coll != nil {
		t.coll.Close()
	}
	t.closeTables()
	return nil
}

func (t *Tables) closeTables() {
	for _, g := range t.tables {
		for _, m := range g {
			if m != nil {
				m.Close()
			}
		}
	}
}

func flag(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

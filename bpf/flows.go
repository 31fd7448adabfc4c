package bpf

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync/atomic"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
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

// batchSize is how many flows one carry (or leftover hash table) batch
// moves.
const batchSize = 4096

// Drain reads every flow of a table taken out of service by Rotate, calls fn
// for each, and leaves the table empty. It reads the table's memory mapping
// (see walkSlots). With TCPHealth it carries each TCP flow's sequence state
// into tcp_carry before it empties any slot (see carry).
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

// The tables (flow_tables in xdpflow.c): open addressing over a
// BPF_F_MMAPABLE array. A slot is an 8-byte state word (0 empty, else
// the key's hash << 2 | slotBusy or slotReady), the key in 8-byte words
// (the whole 68-byte key takes 9, its last four bytes zero-extended) and
// struct flow_value. A table has 2 x MaxFlows home slots (at most half
// full) and oaWindow - 1 more, so that no probe window wraps.
const (
	oaWindow      = 128 // OA_WINDOW
	oaHomePerFlow = 2
	slotBusy      = 1
	slotReady     = 2
	seedWords     = 9 // KEY_WORDS_MAX: the seed has a word for every key word
	valueSize     = int(unsafe.Sizeof(FlowValue{}))
)

func keyWords(keySize int) int { return (keySize + 7) / 8 }

// slotSize is a slot's bytes for a key of keySize bytes: 224 for the
// default key, 232 with --mirror-encap, 248 with --macs.
func slotSize(keySize int) int { return 8 + keyWords(keySize)*8 + valueSize }

func tableSlots(maxFlows uint32) uint32 { return maxFlows*oaHomePerFlow + oaWindow - 1 }

// slotKeySize is the key size of a table whose slots are valueSize bytes
// (one of this version's), or 0.
func slotKeySize(valueSize uint32) int {
	for _, k := range []int{keyBase, keyMirror, keyFull} {
		if uint32(slotSize(k)) == valueSize {
			return k
		}
	}
	return 0
}

// newSeed is a random hash seed for a new pair of tables.
func newSeed() [seedWords]uint64 {
	var s [seedWords]uint64
	b := make([]byte, 8*seedWords)
	rand.Read(b) // never fails (crypto/rand)
	for i := range s {
		s[i] = binary.NativeEndian.Uint64(b[8*i:])
	}
	return s
}

// mapTable maps a table's slots into memory.
func mapTable(m *ebpf.Map) ([]byte, error) {
	size := uint64(m.MaxEntries()) * uint64(m.ValueSize())
	page := uint64(os.Getpagesize())
	b, err := unix.Mmap(m.FD(), 0, int((size+page-1)/page*page), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("map flow table memory: %w", err)
	}
	return b[:size], nil
}

// mapTables maps d's tables (the drain reads them through the mappings).
func (d *Datapath) mapTables() error {
	for i, t := range d.tables {
		var err error
		if d.mem[i], err = mapTable(t); err != nil {
			return err
		}
	}
	return nil
}

// walk calls fn for every flow of table, emptying it with del. With carry
// (and TCPHealth, on one of d's own tables: not a leftover of another
// layout), the sequence state of every flow is carried before any slot is
// emptied. Once one of d's tables is empty, slot 1 is emptied: the carry
// holds all it held, and a new flow then looks up the carry alone.
func (d *Datapath) walk(table *ebpf.Map, fn func(FlowKey, FlowValue), del, carry bool) error {
	own := -1
	for i, t := range d.tables {
		if table == t {
			own = i
		}
	}
	var c *Datapath
	if carry && d.cfg.TCPHealth && own >= 0 {
		c = d
	}
	var err error
	switch table.Type() {
	case ebpf.Array:
		mem := d.mem[max(own, 0)]
		if own < 0 { // a leftover
			if mem, err = mapTable(table); err != nil {
				return err
			}
			defer unix.Munmap(mem[:cap(mem)])
		}
		slots := int(table.MaxEntries())
		switch slotKeySize(table.ValueSize()) {
		case keyBase:
			err = walkSlots[[keyBase]byte](mem, slots, fn, del, c)
		case keyMirror:
			err = walkSlots[[keyMirror]byte](mem, slots, fn, del, c)
		case keyFull:
			err = walkSlots[[keyFull]byte](mem, slots, fn, del, c)
		default:
			return fmt.Errorf("read flow table: slot size %d is none of this version's", table.ValueSize())
		}
	case ebpf.Hash:
		// A leftover of a version before open addressing, pinned by it:
		// read with the batch syscalls, as that version did.
		err = walkHash(table, fn, del)
	default:
		return fmt.Errorf("read flow table: map type %s is none of this version's", table.Type())
	}
	if err == nil && del && own >= 0 && d.cfg.TCPHealth {
		if err = d.objs.FlowTables.Delete(uint32(1)); errors.Is(err, ebpf.ErrKeyNotExist) {
			err = nil
		}
		if err != nil {
			err = fmt.Errorf("empty the previous table's slot: %w", err)
		}
	}
	return err
}

// walkSlots reads a table's slots through its memory mapping, keys of
// size K: every READY slot is a flow. With del it empties them: the state
// word first (atomically), then key and value, so that a new flow need not
// clear its slot and tcp_seed, reading slot 1 meanwhile, sees either the
// flow whole or an empty slot. Given c, it first carries every flow's
// sequence state into c's tcp_carry and empties slots only afterwards: an
// emptied slot ends tcp_seed's probe, which must then find the carry of
// any flow behind it.
//
// The table is out of service (the swap waited for every running
// program), so no slot is BUSY: one that is means a broken claim protocol.
// A flow that took a second slot (see oa_window in xdpflow.c) is handed to
// fn twice; the probe merges them as it merges a flow's epochs.
func walkSlots[K [keyBase]byte | [keyMirror]byte | [keyFull]byte](mem []byte, slots int, fn func(FlowKey, FlowValue), del bool, c *Datapath) error {
	var k K
	stride := slotSize(int(unsafe.Sizeof(k)))
	valOff := 8 + keyWords(int(unsafe.Sizeof(k)))*8
	if slots*stride > len(mem) {
		return fmt.Errorf("read flow table: %d slots of %d bytes in %d mapped", slots, stride, len(mem))
	}
	var (
		cb   *carryBatch[K]
		keys []K
		vals []FlowValue
		used []int
	)
	if c != nil {
		cb = &carryBatch[K]{keys: make([]K, 0, batchSize), vals: make([]SeqCarry, 0, batchSize)}
		keys, vals = make([]K, 0, batchSize), make([]FlowValue, 0, batchSize)
	}
	for off := 0; off < slots*stride; off += stride {
		state := atomic.LoadUint64((*uint64)(unsafe.Pointer(&mem[off])))
		if state == 0 {
			continue
		}
		if state&3 != slotReady {
			return fmt.Errorf("read flow table: slot %d in state %#x in a table out of service", off/stride, state)
		}
		k = *(*K)(unsafe.Pointer(&mem[off+8]))
		v := *(*FlowValue)(unsafe.Pointer(&mem[off+valOff]))
		fn(keyFrom(bytesOf(&k)), v)
		if c != nil {
			keys, vals = append(keys, k), append(vals, v)
			if len(keys) == batchSize {
				if err := carry(c, cb, keys, vals); err != nil {
					return err
				}
				keys, vals = keys[:0], vals[:0]
			}
		}
		if del {
			if c != nil {
				used = append(used, off)
			} else {
				emptySlot(mem[off : off+stride])
			}
		}
	}
	if len(keys) > 0 {
		if err := carry(c, cb, keys, vals); err != nil {
			return err
		}
	}
	for _, off := range used {
		emptySlot(mem[off : off+stride])
	}
	return nil
}

// emptySlot zeroes a slot, its state word first.
func emptySlot(s []byte) {
	atomic.StoreUint64((*uint64)(unsafe.Pointer(&s[0])), 0)
	clear(s[8:])
}

// walkHash reads a hash table of the layout before open addressing
// (pinned by an older version) with batch lookups, deleting with del.
func walkHash(table *ebpf.Map, fn func(FlowKey, FlowValue), del bool) error {
	switch int(table.KeySize()) {
	case keyBase:
		return walkBatch[[keyBase]byte](table, fn, del)
	case keyMirror:
		return walkBatch[[keyMirror]byte](table, fn, del)
	case keyFull:
		return walkBatch[[keyFull]byte](table, fn, del)
	}
	return fmt.Errorf("read flow table: key size %d is none of this version's", table.KeySize())
}

func walkBatch[K [keyBase]byte | [keyMirror]byte | [keyFull]byte](table *ebpf.Map, fn func(FlowKey, FlowValue), del bool) error {
	batch := table.BatchLookup
	if del {
		batch = table.BatchLookupAndDelete
	}
	keys := make([]K, batchSize)
	vals := make([]FlowValue, batchSize)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := batch(&cursor, keys, vals, nil)
		for i := 0; i < n; i++ {
			fn(keyFrom(bytesOf(&keys[i])), vals[i])
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read flow table: %w", err)
		}
	}
}

// bytesOf is a key's bytes.
func bytesOf[K [keyBase]byte | [keyMirror]byte | [keyFull]byte](k *K) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(k)), unsafe.Sizeof(*k))
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

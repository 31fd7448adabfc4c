package bpf

import (
	"errors"
	"fmt"
	"net/netip"

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

func (k FlowKey) addr(a [16]byte) netip.Addr {
	ip := netip.AddrFrom16(a)
	if k.IpVersion == 4 {
		return ip.Unmap()
	}
	return ip
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
}

// batchSize is how many entries one batch syscall moves.
const batchSize = 4096

// Drain reads every flow of a table taken out of service by Rotate, calls fn
// for each, and leaves the table empty. It uses the kernel's batch
// operations (10x faster than iterate-and-delete).
func (d *Datapath) Drain(table *ebpf.Map, fn func(FlowKey, FlowValue)) error {
	return d.walk(table, fn, true)
}

// Read calls fn for every flow of a table taken out of service by Rotate
// and leaves the table as it is: the crash-safe flow state saves what it
// read before Clear empties the table, so a crash in between loses nothing.
func (d *Datapath) Read(table *ebpf.Map, fn func(FlowKey, FlowValue)) error {
	return d.walk(table, fn, false)
}

// walk calls fn for every flow of table, deleting them with del.
func (d *Datapath) walk(table *ebpf.Map, fn func(FlowKey, FlowValue), del bool) error {
	if d.cfg.perCPU() {
		return walkPerCPU(table, fn, del)
	}
	batch := table.BatchLookup
	if del {
		batch = table.BatchLookupAndDelete
	}
	keys := make([]FlowKey, batchSize)
	vals := make([]FlowValue, batchSize)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := batch(&cursor, keys, vals, nil)
		for i := 0; i < n; i++ {
			fn(keys[i], vals[i])
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read flow table: %w", err)
		}
	}
}

// Clear empties a table taken out of service by Rotate.
func (d *Datapath) Clear(table *ebpf.Map) error {
	return d.Drain(table, func(FlowKey, FlowValue) {})
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
		k      FlowKey
		perCPU []FlowValue
		keys   []FlowKey
	)
	it := table.Iterate()
	for it.Next(&k, &perCPU) {
		var v FlowValue
		for _, c := range perCPU {
			v.Merge(c)
		}
		fn(k, v)
		if del {
			keys = append(keys, k)
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

package flowtable

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/xdpflow/xdpflow/bpf"
	"github.com/xdpflow/xdpflow/schemas"
)

const sec = uint64(time.Second)

func key(port uint16) bpf.FlowKey {
	k := bpf.FlowKey{InIf: 3, SrcPort: port, DstPort: 80, Proto: 6}
	k.SrcAddr = netip.MustParseAddr("::ffff:198.18.0.1").As16()
	k.DstAddr = netip.MustParseAddr("::ffff:198.18.0.2").As16()
	return k
}

func val(packets uint64, first, last uint64, flags uint32) bpf.FlowValue {
	return bpf.FlowValue{Packets: packets, Bytes: packets * 100, L2Bytes: packets * 114, FirstSeenNs: first, LastSeenNs: last, TcpFlags: flags}
}

func cfg() Config {
	return Config{IdleTimeout: 15 * time.Second, ActiveTimeout: 60 * time.Second}
}

func TestExpiry(t *testing.T) {
	type add struct {
		port uint16
		v    bpf.FlowValue
	}
	type tick struct {
		adds []add
		now  uint64
		want []schemas.EndReason // reasons of the records emitted at this tick, by port order of adds
		pkts []uint64
	}
	cases := []struct {
		name  string
		ticks []tick
	}{
		{"idle: nothing before the timeout, one record at it", []tick{
			{adds: []add{{1, val(5, 1*sec, 2*sec, 0x10)}}, now: 2 * sec},
			{now: 16*sec + sec - 1},
			{now: 17 * sec, want: []schemas.EndReason{schemas.EndIdle}, pkts: []uint64{5}},
			{now: 100 * sec},
		}},
		{"active: interim records add up, then idle", []tick{
			{adds: []add{{1, val(10, 0, 30*sec, 0x10)}}, now: 30 * sec},
			{adds: []add{{1, val(10, 31*sec, 60*sec, 0x10)}}, now: 60 * sec, want: []schemas.EndReason{schemas.EndActive}, pkts: []uint64{20}},
			{adds: []add{{1, val(7, 61*sec, 70*sec, 0x10)}}, now: 70 * sec},
			{now: 85 * sec, want: []schemas.EndReason{schemas.EndIdle}, pkts: []uint64{7}},
		}},
		{"quiet after an active record: forgotten, nothing more", []tick{
			{adds: []add{{1, val(3, 0, 1*sec, 0)}}, now: 60 * sec, want: []schemas.EndReason{schemas.EndIdle}, pkts: []uint64{3}},
		}},
		{"FIN ends the flow at the next tick", []tick{
			{adds: []add{{1, val(4, 1*sec, 2*sec, 0x11)}}, now: 2 * sec, want: []schemas.EndReason{schemas.EndOfFlow}, pkts: []uint64{4}},
		}},
		{"RST too", []tick{
			{adds: []add{{1, val(1, 1*sec, 1*sec, 0x04)}}, now: 1 * sec, want: []schemas.EndReason{schemas.EndOfFlow}, pkts: []uint64{1}},
		}},
		{"packets after FIN start a new flow", []tick{
			{adds: []add{{1, val(2, 1*sec, 1*sec, 0x11)}}, now: 1 * sec, want: []schemas.EndReason{schemas.EndOfFlow}, pkts: []uint64{2}},
			{adds: []add{{1, val(1, 2*sec, 2*sec, 0x10)}}, now: 2 * sec},
			{now: 17 * sec, want: []schemas.EndReason{schemas.EndIdle}, pkts: []uint64{1}},
		}},
		{"datapath clock a tick ahead of the reader", []tick{
			{adds: []add{{1, val(1, 5*sec, 5*sec+1000, 0)}}, now: 5 * sec},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tb := New(cfg())
			for i, tk := range tc.ticks {
				for _, a := range tk.adds {
					tb.Add(key(a.port), a.v)
				}
				out := tb.Expire(tk.now, 0, nil)
				if len(out) != len(tk.want) {
					t.Fatalf("tick %d: %d records %+v, want %d", i, len(out), out, len(tk.want))
				}
				for j, r := range out {
					if r.EndReason != tk.want[j] || r.Packets != tk.pkts[j] || r.Bytes != tk.pkts[j]*100 || r.L2Bytes != tk.pkts[j]*114 {
						t.Errorf("tick %d record %d: %s %d packets %d bytes, want %s %d", i, j, r.EndReason, r.Packets, r.Bytes, tk.want[j], tk.pkts[j])
					}
					if r.TimeFlowStartNs > r.TimeFlowEndNs {
						t.Errorf("start %d after end %d", r.TimeFlowStartNs, r.TimeFlowEndNs)
					}
				}
			}
		})
	}
}

func TestRecordFields(t *testing.T) {
	tb := New(cfg())
	k := key(40000)
	k.VlanId = 42
	v := val(3, 10*sec, 11*sec, 0x1b)
	v.IpTos = 0xb8
	tb.Add(k, v)
	offset := int64(1_700_000_000) * int64(time.Second)
	out := tb.Flush(schemas.EndForced, offset, nil)
	if len(out) != 1 {
		t.Fatalf("%d records", len(out))
	}
	want := schemas.Flow{
		SrcAddr: netip.MustParseAddr("198.18.0.1"), DstAddr: netip.MustParseAddr("198.18.0.2"),
		SrcPort: 40000, DstPort: 80, Proto: 6, VlanId: 42, InIf: 3,
		Packets: 3, Bytes: 300, L2Bytes: 342,
		TimeFlowStartNs: offset + int64(10*sec), TimeFlowEndNs: offset + int64(11*sec),
		TcpFlags: 0x1b, IpTos: 0xb8, EndReason: schemas.EndForced,
	}
	if out[0] != want {
		t.Errorf("record\n %+v\nwant\n %+v", out[0], want)
	}
	if tb.Stats().Active != 0 {
		t.Errorf("%d flows left after flush", tb.Stats().Active)
	}
}

func TestPressureShedsLeastRecentlySeen(t *testing.T) {
	c := cfg()
	c.MaxFlows = 10
	tb := New(c)
	for p := uint16(1); p <= 20; p++ {
		tb.Add(key(p), val(1, (100+uint64(p))*sec, (100+uint64(p))*sec, 0))
	}
	out := tb.Expire(115*sec, 0, nil)
	if len(out) != 11 || tb.Stats().Active != 9 {
		t.Fatalf("%d records, %d flows left; want 11 shed, 9 left", len(out), tb.Stats().Active)
	}
	for _, r := range out {
		if r.EndReason != schemas.EndLackOfResources || r.SrcPort > 11 {
			t.Errorf("shed %d (%s): want the 11 oldest with lack-of-resources", r.SrcPort, r.EndReason)
		}
	}
	if s := tb.Stats(); s.Pressure != 11 || s.Exported[schemas.EndLackOfResources] != 11 {
		t.Errorf("stats %+v", s)
	}
}

// Whatever the interleaving of epochs and ticks, the records of each flow
// add up to what was added.
func TestRecordsAddUp(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	c := cfg()
	c.MaxFlows = 40
	tb := New(c)
	added := map[uint16]uint64{}
	got := map[uint16]uint64{}
	now := uint64(0)
	for step := 0; step < 2000; step++ {
		now += uint64(rng.IntN(3000)) * uint64(time.Millisecond)
		for i := rng.IntN(10); i > 0; i-- {
			p := uint16(rng.IntN(60))
			n := uint64(1 + rng.IntN(5))
			flags := uint32(0x10)
			if rng.IntN(50) == 0 {
				flags |= 0x01
			}
			tb.Add(key(p), val(n, now-uint64(rng.IntN(1000))*uint64(time.Millisecond), now, flags))
			added[p] += n
		}
		for _, r := range tb.Expire(now, 0, nil) {
			got[r.SrcPort] += r.Packets
		}
	}
	for _, r := range tb.Flush(schemas.EndForced, 0, nil) {
		got[r.SrcPort] += r.Packets
	}
	for p, n := range added {
		if got[p] != n {
			t.Errorf("port %d: %d packets added, %d exported", p, n, got[p])
		}
	}
}

// BenchmarkTable: 100,000 flows merged from a drain and expired (idle) in
// one tick. One op is one flow.
func BenchmarkTable(b *testing.B) {
	const flows = 100000
	keys := make([]bpf.FlowKey, flows)
	for i := range keys {
		keys[i] = key(uint16(i))
		keys[i].DstPort = uint16(i >> 16)
	}
	tb := New(Config{IdleTimeout: time.Second, ActiveTimeout: time.Minute})
	out := make([]schemas.Flow, 0, flows)
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; done += flows {
		for _, k := range keys {
			tb.Add(k, val(3, 1, 2, 0x10))
		}
		out = tb.Expire(10*sec, 0, out[:0])
		if len(out) != flows {
			b.Fatalf("%d records", len(out))
		}
	}
}

// TestBiflowEndsPartners: with Biflow, a flow ending (or reaching its
// active timeout) takes its reverse direction with it, same reason, so
// both are in one batch; without it, each keeps its own clock.
func TestBiflowEndsPartners(t *testing.T) {
	rev := func(k bpf.FlowKey) bpf.FlowKey {
		k.SrcAddr, k.DstAddr, k.SrcPort, k.DstPort = k.DstAddr, k.SrcAddr, k.DstPort, k.SrcPort
		return k
	}
	for _, tc := range []struct {
		name   string
		biflow bool
		want   int
	}{{"biflow", true, 2}, {"uniflow", false, 1}} {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg()
			c.Biflow = tc.biflow
			tb := New(c)
			tb.Add(key(1000), val(5, 1*sec, 2*sec, 0))       // quiet since 2 s
			tb.Add(rev(key(1000)), val(3, 1*sec, 10*sec, 0)) // still active at 10 s
			out := tb.Expire(18*sec, 0, nil)                 // the first is idle, the second not yet
			if len(out) != tc.want {
				t.Fatalf("%d records, want %d", len(out), tc.want)
			}
			for _, f := range out {
				if f.EndReason != schemas.EndIdle {
					t.Errorf("reason %v", f.EndReason)
				}
			}
			if tc.biflow && tb.Stats().Active != 0 {
				t.Errorf("%d flows left", tb.Stats().Active)
			}
		})
	}
}

// BenchmarkTableBiflow: as BenchmarkTable with --biflow on a two-port
// TAP: 50,000 conversations, each direction on its own interface, merged
// and expired (idle) in one tick, each record looking for its partner.
// One op is one flow.
func BenchmarkTableBiflow(b *testing.B) {
	const flows = 100000
	keys := make([]bpf.FlowKey, 0, flows)
	for i := 0; i < flows/2; i++ {
		k := key(uint16(i))
		k.DstPort = uint16(i >> 16)
		r := k
		r.SrcAddr, r.DstAddr, r.SrcPort, r.DstPort, r.InIf = k.DstAddr, k.SrcAddr, k.DstPort, k.SrcPort, k.InIf+1
		keys = append(keys, k, r)
	}
	tb := New(Config{IdleTimeout: time.Second, ActiveTimeout: time.Minute, Biflow: true})
	out := make([]schemas.Flow, 0, flows)
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; done += flows {
		for _, k := range keys {
			tb.Add(k, val(3, 1, 2, 0x10))
		}
		out = tb.Expire(10*sec, 0, out[:0])
		if len(out) != flows {
			b.Fatalf("%d records", len(out))
		}
	}
}

// TestBiflowEndsPartnersOnAnyInterface: on a two-port TAP each direction
// has its own interface; a flow ending (FIN, idle, active timeout) still
// takes its reverse direction with it. ICMP echo pairs with its reply;
// other ICMP has no partner.
func TestBiflowEndsPartnersOnAnyInterface(t *testing.T) {
	onIf := func(k bpf.FlowKey, inIf uint32) bpf.FlowKey { k.InIf = inIf; return k }
	rev := func(k bpf.FlowKey) bpf.FlowKey {
		k.SrcAddr, k.DstAddr, k.SrcPort, k.DstPort = k.DstAddr, k.SrcAddr, k.DstPort, k.SrcPort
		return k
	}
	icmp := func(typeCode uint16) bpf.FlowKey { k := key(0); k.Proto, k.DstPort = 1, typeCode; return k }
	for _, tc := range []struct {
		name     string
		fwd, rev bpf.FlowKey
		fv, rv   bpf.FlowValue
		now      uint64
		reason   schemas.EndReason
		want     int // records at now
	}{
		{"FIN in one direction only", onIf(key(1000), 3), onIf(rev(key(1000)), 4),
			val(5, 1*sec, 2*sec, 0x11), val(3, 1*sec, 2*sec, 0x10), 2 * sec, schemas.EndOfFlow, 2},
		{"one direction idle a tick earlier", onIf(key(1000), 3), onIf(rev(key(1000)), 4),
			val(5, 1*sec, 2*sec, 0), val(3, 1*sec, 3*sec, 0), 17 * sec, schemas.EndIdle, 2},
		{"active timeout", onIf(key(1000), 3), onIf(rev(key(1000)), 4),
			val(5, 0, 59*sec, 0), val(3, 1*sec, 59*sec, 0), 60 * sec, schemas.EndActive, 2},
		{"reverse on the lower ifindex", onIf(key(1000), 9), onIf(rev(key(1000)), 4),
			val(5, 1*sec, 2*sec, 0x11), val(3, 1*sec, 2*sec, 0x10), 2 * sec, schemas.EndOfFlow, 2},
		{"icmp echo and reply", onIf(icmp(8<<8), 3), onIf(rev(icmp(0)), 4),
			val(5, 1*sec, 2*sec, 0), val(5, 1*sec, 3*sec, 0), 17 * sec, schemas.EndIdle, 2},
		{"icmp unreachable: no partner", onIf(icmp(3<<8|3), 3), onIf(rev(icmp(3<<8|3)), 4),
			val(5, 1*sec, 2*sec, 0), val(5, 1*sec, 3*sec, 0), 17 * sec, schemas.EndIdle, 1},
		{"other vlan: no partner", onIf(key(1000), 3), func() bpf.FlowKey { k := onIf(rev(key(1000)), 4); k.VlanId = 5; return k }(),
			val(5, 1*sec, 2*sec, 0x11), val(3, 1*sec, 2*sec, 0x10), 2 * sec, schemas.EndOfFlow, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg()
			c.Biflow = true
			tb := New(c)
			tb.Add(onIf(key(7), 5), val(1, tc.now-sec, tc.now, 0x10)) // a third interface, busy
			tb.Add(tc.fwd, tc.fv)
			tb.Add(tc.rev, tc.rv)
			out := tb.Expire(tc.now, 0, nil)
			if len(out) != tc.want {
				t.Fatalf("%d records %+v, want %d", len(out), out, tc.want)
			}
			pkts := map[uint32]uint64{}
			for _, f := range out {
				if f.EndReason != tc.reason {
					t.Errorf("if%d: reason %v, want %v", f.InIf, f.EndReason, tc.reason)
				}
				pkts[f.InIf] += f.Packets
			}
			if pkts[tc.fwd.InIf] != tc.fv.Packets || (tc.want == 2 && pkts[tc.rev.InIf] != tc.rv.Packets) {
				t.Errorf("packets by interface %v", pkts)
			}
		})
	}
}

// TestRecordEncapsulation: the key's tunnel, mirror session and MACs and
// the value's tunnel endpoints and labels reach the record, the labels
// and endpoints of the flow's first packet (values merged from two CPUs
// in either order). The datapath's enums are the record's.
func TestRecordEncapsulation(t *testing.T) {
	k := key(40000)
	k.TunnelType, k.TunnelId, k.ObservationPointId, k.MirrorType = uint8(bpf.TunnelGeneve), 0xabcdef, 77, uint8(bpf.MirrorERSPAN)
	k.SrcMac, k.DstMac = [6]uint8{2, 0, 0, 0, 0, 1}, [6]uint8{2, 0, 0, 0, 0, 2}
	first, later := val(2, 10*sec, 11*sec, 0), val(3, 12*sec, 13*sec, 0)
	first.TunnelSrcAddr = netip.MustParseAddr("::ffff:192.0.2.1").As16()
	first.TunnelDstAddr = netip.MustParseAddr("2001:db8::2").As16()
	first.MplsLabels = [8]uint32{100<<12 | 64, 200<<12 | 1<<8 | 64}
	later.TunnelSrcAddr, later.MplsLabels = netip.MustParseAddr("::ffff:192.0.2.9").As16(), [8]uint32{300<<12 | 1<<8 | 64}
	for _, order := range [][]bpf.FlowValue{{first, later}, {later, first}} {
		tb := New(cfg())
		var v bpf.FlowValue
		for _, o := range order {
			v.Merge(o)
		}
		tb.Add(k, v)
		out := tb.Flush(schemas.EndForced, 0, nil)
		if len(out) != 1 {
			t.Fatalf("%d records", len(out))
		}
		f := out[0]
		want := schemas.Flow{TunnelType: schemas.TunnelGeneve, TunnelId: 0xabcdef, ObservationPointId: 77, MirrorType: schemas.MirrorERSPAN,
			TunnelSrcAddr: netip.MustParseAddr("192.0.2.1"), TunnelDstAddr: netip.MustParseAddr("2001:db8::2"),
			SrcMac: schemas.MAC{2, 0, 0, 0, 0, 1}, DstMac: schemas.MAC{2, 0, 0, 0, 0, 2}, MplsLabels: first.MplsLabels}
		got := schemas.Flow{TunnelType: f.TunnelType, TunnelId: f.TunnelId, ObservationPointId: f.ObservationPointId, MirrorType: f.MirrorType,
			TunnelSrcAddr: f.TunnelSrcAddr, TunnelDstAddr: f.TunnelDstAddr, SrcMac: f.SrcMac, DstMac: f.DstMac, MplsLabels: f.MplsLabels}
		if got != want {
			t.Errorf("record\n %+v\nwant\n %+v", got, want)
		}
	}
	for _, c := range []struct{ kernel, record uint8 }{
		{uint8(bpf.TunnelNone), uint8(schemas.TunnelNone)}, {uint8(bpf.TunnelMPLS), uint8(schemas.TunnelMPLS)},
		{uint8(bpf.TunnelPPPoE), uint8(schemas.TunnelPPPoE)}, {uint8(bpf.TunnelGRE), uint8(schemas.TunnelGRE)},
		{uint8(bpf.TunnelIPIP), uint8(schemas.TunnelIPIP)}, {uint8(bpf.TunnelVXLAN), uint8(schemas.TunnelVXLAN)},
		{uint8(bpf.TunnelGeneve), uint8(schemas.TunnelGeneve)}, {uint8(bpf.TunnelGTPU), uint8(schemas.TunnelGTPU)},
		{uint8(bpf.MirrorNone), uint8(schemas.MirrorNone)}, {uint8(bpf.MirrorERSPAN), uint8(schemas.MirrorERSPAN)},
		{uint8(bpf.MirrorVXLAN), uint8(schemas.MirrorVXLAN)}, {uint8(bpf.MirrorGeneve), uint8(schemas.MirrorGeneve)},
		{uint8(bpf.MirrorTZSP), uint8(schemas.MirrorTZSP)},
	} {
		if c.kernel != c.record {
			t.Errorf("datapath enum value %d is the record's %d", c.kernel, c.record)
		}
	}
}

// TestRecordNoTunnel: zero endpoints are no address, not 0.0.0.0 or ::.
func TestRecordNoTunnel(t *testing.T) {
	tb := New(cfg())
	tb.Add(key(1), val(1, sec, sec, 0))
	f := tb.Flush(schemas.EndForced, 0, nil)[0]
	if f.TunnelSrcAddr.IsValid() || f.TunnelDstAddr.IsValid() || f.Extras() != 0 {
		t.Errorf("plain flow: tunnel %v -> %v, extras %b", f.TunnelSrcAddr, f.TunnelDstAddr, f.Extras())
	}
}

// TestRecordTCPHealth: the latencies of the conversation (copied into each
// epoch's entry) and the counts (summed over the epochs) reach the record.
func TestRecordTCPHealth(t *testing.T) {
	tb := New(cfg())
	v := val(3, sec, sec, 0x12)
	v.ServerNwDelayNs, v.ClientNwDelayNs = 1_500_000, 250_000
	v.TcpRetrans, v.TcpOoo, v.TcpZeroWin = 1, 2, 3
	tb.Add(key(1), v)
	w := val(2, 2*sec, 2*sec, 0x10)
	w.ServerNwDelayNs, w.ClientNwDelayNs, w.ApplLatencyNs = 1_500_000, 250_000, 7_000_000
	w.TcpRetrans = 4
	tb.Add(key(1), w)
	f := tb.Flush(schemas.EndForced, 0, nil)[0]
	if f.ServerNwDelayNs != 1_500_000 || f.ClientNwDelayNs != 250_000 || f.ApplLatencyNs != 7_000_000 ||
		f.TcpRetransmitted != 5 || f.TcpOutOfOrder != 2 || f.TcpZeroWindow != 3 {
		t.Errorf("record %+v", f)
	}
}

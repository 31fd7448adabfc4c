package biflow

import (
	"net/netip"
	"testing"

	"github.com/xdpflow/xdpflow/schemas"
)

var (
	a, b = netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
	c    = netip.MustParseAddr("198.19.0.9")
)

func fl(src, dst netip.Addr, sp, dp uint16, proto uint8, start int64, pkts uint64, inIf uint32) schemas.Flow {
	return schemas.Flow{SrcAddr: src, DstAddr: dst, SrcPort: sp, DstPort: dp, Proto: proto, TimeFlowStartNs: start, TimeFlowEndNs: start + 10,
		Packets: pkts, Bytes: 100 * pkts, L2Bytes: 114 * pkts, InIf: inIf, TcpFlags: uint16(pkts), EndReason: schemas.EndIdle}
}

func TestPair(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      []schemas.Flow
		records int
		biflows int
	}{
		{"tcp both ways", []schemas.Flow{fl(a, b, 40000, 443, 6, 1, 10, 1), fl(b, a, 443, 40000, 6, 2, 7, 1)}, 1, 1},
		{"reverse first in the batch", []schemas.Flow{fl(b, a, 443, 40000, 6, 2, 7, 1), fl(a, b, 40000, 443, 6, 1, 10, 1)}, 1, 1},
		{"tap: each direction on its own port", []schemas.Flow{fl(a, b, 1, 2, 17, 1, 3, 1), fl(b, a, 2, 1, 17, 5, 4, 2)}, 1, 1},
		{"one direction only", []schemas.Flow{fl(a, b, 1, 2, 17, 1, 3, 1), fl(a, c, 1, 2, 17, 1, 3, 1)}, 2, 0},
		{"icmp echo and reply", []schemas.Flow{fl(a, b, 0, 8<<8, 1, 1, 5, 1), fl(b, a, 0, 0, 1, 2, 5, 1)}, 1, 1},
		{"icmpv6 echo", []schemas.Flow{fl(a, b, 0, 128<<8, 58, 1, 5, 1), fl(b, a, 0, 129<<8, 58, 2, 5, 1)}, 1, 1},
		{"icmp unreachable has no reverse", []schemas.Flow{fl(a, b, 0, 3<<8|3, 1, 1, 1, 1), fl(b, a, 0, 3<<8|3, 1, 2, 1, 1)}, 2, 0},
		{"three ways: one pair, one left", []schemas.Flow{fl(a, b, 1, 2, 17, 1, 3, 1), fl(b, a, 2, 1, 17, 2, 4, 1), fl(a, b, 1, 3, 17, 1, 1, 1)}, 2, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := append([]schemas.Flow(nil), tc.in...)
			out := Pair(in)
			biflows := 0
			var pkts, back uint64
			for _, f := range out {
				if f.Biflow {
					biflows++
					fwd, rev := f.Forward(), f.Reverse()
					pkts += fwd.Packets + rev.Packets
					if rev.TimeFlowStartNs < fwd.TimeFlowStartNs {
						t.Errorf("forward started at %d, reverse at %d: the initiator must be forward", fwd.TimeFlowStartNs, rev.TimeFlowStartNs)
					}
					// Each half is one of the records that went in.
					for _, half := range []schemas.Flow{fwd, rev} {
						found := false
						for _, g := range tc.in {
							if g.SrcAddr == half.SrcAddr && g.DstAddr == half.DstAddr && g.SrcPort == half.SrcPort && g.DstPort == half.DstPort &&
								g.Packets == half.Packets && g.Bytes == half.Bytes && g.L2Bytes == half.L2Bytes && g.TimeFlowStartNs == half.TimeFlowStartNs &&
								g.TcpFlags == half.TcpFlags {
								found = true
							}
						}
						if !found {
							t.Errorf("half %+v matches no input record", half)
						}
					}
				} else {
					pkts += f.Packets
				}
			}
			for _, f := range tc.in {
				back += f.Packets
			}
			if len(out) != tc.records || biflows != tc.biflows || pkts != back {
				t.Errorf("%d records, %d biflows, %d packets; want %d, %d, %d", len(out), biflows, pkts, tc.records, tc.biflows, back)
			}
		})
	}
}

// TestReverseKey: the one rule for a flow's other direction: addresses
// and ports swapped, ICMP echo request <-> reply, no reverse for other
// ICMP, same VLAN, and the interface plays no part.
func TestReverseKey(t *testing.T) {
	a6, b6 := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	withVLAN := func(f schemas.Flow, vlan uint16) schemas.Flow { f.VlanId = vlan; return f }
	for _, tc := range []struct {
		name string
		f    schemas.Flow
		want Key
		ok   bool
	}{
		{"tcp", fl(a, b, 40000, 443, 6, 1, 1, 1), Key{Src: b, Dst: a, SrcPort: 443, DstPort: 40000, Proto: 6, VlanId: 0}, true},
		{"udp over ipv6", fl(a6, b6, 546, 547, 17, 1, 1, 1), Key{Src: b6, Dst: a6, SrcPort: 547, DstPort: 546, Proto: 17, VlanId: 0}, true},
		{"vlan kept", withVLAN(fl(a, b, 1, 2, 17, 1, 1, 1), 42), Key{Src: b, Dst: a, SrcPort: 2, DstPort: 1, Proto: 17, VlanId: 42}, true},
		{"interface left out", fl(a, b, 40000, 443, 6, 1, 1, 7), Key{Src: b, Dst: a, SrcPort: 443, DstPort: 40000, Proto: 6, VlanId: 0}, true},
		{"icmp echo request", fl(a, b, 0, 8<<8, 1, 1, 1, 1), Key{Src: b, Dst: a, SrcPort: 0, DstPort: 0, Proto: 1, VlanId: 0}, true},
		{"icmp echo reply", fl(b, a, 0, 0, 1, 1, 1, 1), Key{Src: a, Dst: b, SrcPort: 0, DstPort: 8 << 8, Proto: 1, VlanId: 0}, true},
		{"icmpv6 echo request", fl(a6, b6, 0, 128<<8, 58, 1, 1, 1), Key{Src: b6, Dst: a6, SrcPort: 0, DstPort: 129 << 8, Proto: 58, VlanId: 0}, true},
		{"icmpv6 echo reply", fl(b6, a6, 0, 129<<8, 58, 1, 1, 1), Key{Src: a6, Dst: b6, SrcPort: 0, DstPort: 128 << 8, Proto: 58, VlanId: 0}, true},
		{"tunnel and mirror kept, MACs swapped", encap(fl(a, b, 1, 2, 17, 1, 1, 1), 100),
			Key{Src: b, Dst: a, SrcPort: 2, DstPort: 1, Proto: 17, TunnelType: schemas.TunnelVXLAN, TunnelId: 100,
				ObservationPointId: 7, MirrorType: schemas.MirrorERSPAN, SrcMac: macB, DstMac: macA}, true},
		{"icmp unreachable: none", fl(a, b, 0, 3<<8|3, 1, 1, 1, 1), Key{}, false},
		{"icmpv6 neighbour solicitation: none", fl(a6, b6, 0, 135<<8, 58, 1, 1, 1), Key{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ReverseKey(&tc.f)
			if got != tc.want || ok != tc.ok {
				t.Fatalf("ReverseKey = %+v, %v; want %+v, %v", got, ok, tc.want, tc.ok)
			}
			if !ok {
				return
			}
			// The reverse of the reverse is the flow itself, on whatever
			// interface the reverse was seen.
			r := tc.f
			r.SrcAddr, r.DstAddr, r.SrcPort, r.DstPort, r.InIf = got.Src, got.Dst, got.SrcPort, got.DstPort, tc.f.InIf+1
			r.SrcMac, r.DstMac = got.SrcMac, got.DstMac
			if KeyOf(&r) != got {
				t.Errorf("KeyOf(reverse) = %+v, want %+v", KeyOf(&r), got)
			}
			if back, ok := ReverseKey(&r); !ok || back != KeyOf(&tc.f) {
				t.Errorf("reverse of the reverse = %+v, %v; want %+v", back, ok, KeyOf(&tc.f))
			}
		})
	}
}

var (
	macA, macB = schemas.MAC{2, 0, 0, 0, 0, 0xa}, schemas.MAC{2, 0, 0, 0, 0, 0xb}
	vtepA      = netip.MustParseAddr("192.0.2.1")
	vtepB      = netip.MustParseAddr("2001:db8::b") // a tunnel's family is not the flow's
)

// encap puts f (a to b) in VXLAN VNI vni between vtepA and vtepB, mirrored
// over ERSPAN session 7, with MACs and a label stack.
func encap(f schemas.Flow, vni uint32) schemas.Flow {
	f.TunnelType, f.TunnelId, f.TunnelSrcAddr, f.TunnelDstAddr = schemas.TunnelVXLAN, vni, vtepA, vtepB
	f.ObservationPointId, f.MirrorType = 7, schemas.MirrorERSPAN
	f.SrcMac, f.DstMac = macA, macB
	f.MplsLabels[0] = 16<<12 | 1<<8 | 64
	return f
}

// back is encap's reverse direction as the probe sees it: the frames go
// b to a through the same tunnel, so endpoints and MACs are swapped; its
// labels are its own.
func back(f schemas.Flow) schemas.Flow {
	f.SrcMac, f.DstMac = f.DstMac, f.SrcMac
	f.TunnelSrcAddr, f.TunnelDstAddr = f.TunnelDstAddr, f.TunnelSrcAddr
	f.MplsLabels[0] = 17<<12 | 1<<8 | 63
	return f
}

// TestPairEncapsulated: both directions of a conversation in one tunnel
// and mirror session pair; the biflow's reverse half says what the
// reverse record said (endpoints and MACs swapped back, the tunnel and
// the session kept), but for the MPLS labels, which the biflow does not
// carry for the reverse direction. A conversation in two tunnels does not
// pair, nor do GTP-U directions (a TEID per direction).
func TestPairEncapsulated(t *testing.T) {
	fwd := encap(fl(a, b, 40000, 443, 6, 1, 10, 1), 100)
	rev := back(encap(fl(b, a, 443, 40000, 6, 2, 7, 2), 100))
	out := Pair([]schemas.Flow{fwd, rev})
	if len(out) != 1 || !out[0].Biflow {
		t.Fatalf("%d records (biflow %v), want one biflow", len(out), len(out) > 0 && out[0].Biflow)
	}
	if got := out[0].Forward(); got != fwd {
		t.Errorf("forward half\n %+v\nwant\n %+v", got, fwd)
	}
	want := rev
	want.MplsLabels = [schemas.MaxMplsLabels]uint32{}
	want.InIf = fwd.InIf // a biflow keeps the forward record's interface
	if got := out[0].Reverse(); got != want {
		t.Errorf("reverse half\n %+v\nwant\n %+v", got, want)
	}

	other := back(encap(fl(b, a, 443, 40000, 6, 2, 7, 2), 101))
	if out := Pair([]schemas.Flow{fwd, other}); len(out) != 2 {
		t.Errorf("VNIs 100 and 101: %d records, want 2 (not paired)", len(out))
	}
	up, down := fwd, rev
	up.TunnelType, up.TunnelId, down.TunnelType, down.TunnelId = schemas.TunnelGTPU, 0x1001, schemas.TunnelGTPU, 0x2002
	if out := Pair([]schemas.Flow{up, down}); len(out) != 2 {
		t.Errorf("GTP-U TEIDs 0x1001 and 0x2002: %d records, want 2 (not paired)", len(out))
	}
}

// TestPairTCPHealth: a biflow carries the conversation's latencies, the
// application latency from the server's direction included, and the
// initiator's segment counts; its reverse half has the latencies, no counts.
func TestPairTCPHealth(t *testing.T) {
	cl, sv := fl(a, b, 40000, 443, 6, 1, 10, 1), fl(b, a, 443, 40000, 6, 2, 7, 1)
	cl.ClientNwDelayNs, cl.ServerNwDelayNs, cl.TcpRetransmitted = 200_000, 3_000_000, 2
	sv.ClientNwDelayNs, sv.ServerNwDelayNs, sv.ApplLatencyNs, sv.TcpRetransmitted = 200_000, 3_000_000, 9_000_000, 5
	out := Pair([]schemas.Flow{sv, cl})
	if len(out) != 1 || !out[0].Biflow {
		t.Fatalf("%d records, want one biflow", len(out))
	}
	f := out[0]
	if f.SrcPort != 40000 || f.ClientNwDelayNs != 200_000 || f.ServerNwDelayNs != 3_000_000 || f.ApplLatencyNs != 9_000_000 || f.TcpRetransmitted != 2 {
		t.Errorf("biflow %+v", f)
	}
	if r := f.Reverse(); r.ApplLatencyNs != 9_000_000 || r.TcpRetransmitted != 0 {
		t.Errorf("reverse half %+v", r)
	}
}

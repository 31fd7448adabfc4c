package main

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/xdpflow/xdpflow/internal/testkit/flowcheck"
	"github.com/xdpflow/xdpflow/internal/testkit/trafficgen"
	"github.com/xdpflow/xdpflow/schemas"
)

// TestTapBiflow: --biflow behind a two-port TAP, which delivers each
// direction of a conversation on its own port. The directions of each
// conversation end on different ticks on their own (a FIN in one
// direction only; one direction going idle a second before the other,
// either one first); the probe still ends them together and exports each
// conversation as one RFC 5103 record whose forward direction is the
// initiator's (port 1), both directions counted exactly. ICMP other than
// echo has no reverse and stays as two records.
func TestTapBiflow(t *testing.T) {
	pair := newTestPair(t, "xfp")
	// Port 1 is the pair's link (frames sent from side a); port 2 a second
	// veth inside side b (frames sent into its A arrive on its B).
	port := secondPort(t, pair, "xp")
	tapB, idxA, idxB, macA, macB := port.B, port.IdxA, port.IdxB, port.MacA, port.MacB
	const idle = 2 * time.Second
	col := collector(t, pair)
	pr := startProbe(t, pair, "--ipfix", col.URL(), "-i", tapB, "--action", "drop", "--pin-path", "", "--biflow",
		"--idle-timeout", idle.String(), "--drain-interval", "250ms")

	a4, b4 := netip.MustParseAddr("198.18.9.1"), netip.MustParseAddr("198.18.9.2")
	a6, b6 := netip.MustParseAddr("2001:db8:9::1"), netip.MustParseAddr("2001:db8:9::2")
	const syn, ack, psh, fin = 0x02, 0x10, 0x08, 0x01
	want := flowcheck.Sums{}
	build := func(mac1, mac2 net.HardwareAddr, flows ...trafficgen.Flow) []trafficgen.Built {
		t.Helper()
		b, err := trafficgen.Build(flows, mac1, mac2, 1)
		if err != nil {
			t.Fatal(err)
		}
		want.AddFrames(b)
		return b
	}
	port1 := func(flows ...trafficgen.Flow) {
		t.Helper()
		send(t, pair, build(pair.MACA, pair.MACB, flows...))
		time.Sleep(50 * time.Millisecond) // through XDP before what is sent next
	}
	port2 := func(flows ...trafficgen.Flow) {
		t.Helper()
		if err := trafficgen.SendFrom(func(fn func() error) error { return pair.In(pair.B, fn) }, idxA, build(macA, macB, flows...)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// t0. TCP: the client's FIN (port 1) ends its direction at the next
	// tick; the server's (port 2) never sends one and would idle out.
	port1(trafficgen.Flow{Src: a4, Dst: b4, Proto: 6, SrcPort: 41000, DstPort: 443, TCPFlags: syn, Packets: 1},
		trafficgen.Flow{Src: a4, Dst: b4, Proto: 6, SrcPort: 41000, DstPort: 443, TCPFlags: ack | psh, Payload: 1000, Packets: 50},
		// UDP over IPv6 and ICMP echo: the request side goes idle first.
		trafficgen.Flow{Src: a6, Dst: b6, Proto: 17, SrcPort: 5000, DstPort: 5001, Payload: 700, Packets: 40},
		trafficgen.Flow{Src: a4, Dst: b4, Proto: 1, DstPort: 8 << 8, Payload: 56, Packets: 10},
		// UDP over IPv4: here the answering side (port 2) goes idle first.
		trafficgen.Flow{Src: a4, Dst: b4, Proto: 17, SrcPort: 6000, DstPort: 6001, Payload: 300, Packets: 20},
		// ICMP other than echo: no reverse, two records.
		trafficgen.Flow{Src: a4, Dst: b4, Proto: 1, DstPort: 3<<8 | 3, Payload: 28, Packets: 2})
	port2(trafficgen.Flow{Src: b4, Dst: a4, Proto: 6, SrcPort: 443, DstPort: 41000, TCPFlags: syn | ack, Packets: 1},
		trafficgen.Flow{Src: b4, Dst: a4, Proto: 6, SrcPort: 443, DstPort: 41000, TCPFlags: ack, Payload: 20, Packets: 30},
		trafficgen.Flow{Src: b4, Dst: a4, Proto: 17, SrcPort: 6001, DstPort: 6000, Payload: 80, Packets: 15},
		trafficgen.Flow{Src: b4, Dst: a4, Proto: 1, DstPort: 3<<8 | 3, Payload: 28, Packets: 3})
	port1(trafficgen.Flow{Src: a4, Dst: b4, Proto: 6, SrcPort: 41000, DstPort: 443, TCPFlags: fin | ack, Packets: 1})

	// t0+1s: four drain intervals later, the other sides.
	time.Sleep(time.Second)
	port2(trafficgen.Flow{Src: b6, Dst: a6, Proto: 17, SrcPort: 5001, DstPort: 5000, Payload: 500, Packets: 25},
		trafficgen.Flow{Src: b4, Dst: a4, Proto: 1, DstPort: 0, Payload: 56, Packets: 10})
	port1(trafficgen.Flow{Src: a4, Dst: b4, Proto: 17, SrcPort: 6000, DstPort: 6001, Payload: 300, Packets: 7})

	// Every flow ends on its own (FIN or idle) before the probe stops.
	time.Sleep(idle + 1500*time.Millisecond)
	pr.stop(t)

	got := flowcheck.Sums{}
	biflows := map[flowcheck.ID]schemas.Flow{}
	uniflows := map[flowcheck.ID]schemas.Flow{}
	d := flowcheck.NewDecoder()
	for _, m := range col.Stop() {
		recs, err := d.Decode(m)
		if err != nil {
			t.Fatal(err)
		}
		for i := range recs {
			f := recs[i]
			got.AddRecord(&f)
			id := flowcheck.IDOf(&f)
			if f.Biflow {
				if _, dup := biflows[id]; dup {
					t.Errorf("%v: more than one biflow record", id)
				}
				biflows[id] = f
			} else {
				if _, dup := uniflows[id]; dup {
					t.Errorf("%v: more than one record", id)
				}
				uniflows[id] = f
			}
		}
	}
	compare(t, "IPFIX over a two-port TAP (goflow2)", got, want)

	// Each conversation is one biflow, forward from port 1 (the
	// initiator), ended while the probe ran.
	for _, c := range []struct {
		id     flowcheck.ID
		reason schemas.EndReason
	}{
		{flowcheck.ID{Src: a4, Dst: b4, SrcPort: 41000, DstPort: 443, Proto: 6}, schemas.EndOfFlow},
		{flowcheck.ID{Src: a6, Dst: b6, SrcPort: 5000, DstPort: 5001, Proto: 17}, schemas.EndIdle},
		{flowcheck.ID{Src: a4, Dst: b4, DstPort: 8 << 8, Proto: 1}, schemas.EndIdle},
		{flowcheck.ID{Src: a4, Dst: b4, SrcPort: 6000, DstPort: 6001, Proto: 17}, schemas.EndIdle},
	} {
		f, ok := biflows[c.id]
		if !ok {
			t.Errorf("%v: no biflow record", c.id)
			continue
		}
		if f.InIf != uint32(pair.IfindexB) {
			t.Errorf("%v: ingressInterface %d, want port 1 (%d) where the initiator was seen", c.id, f.InIf, pair.IfindexB)
		}
		if f.EndReason != c.reason {
			t.Errorf("%v: end reason %v, want %v", c.id, f.EndReason, c.reason)
		}
		if f.ReversePackets == 0 || f.ReverseTimeFlowStartNs < f.TimeFlowStartNs {
			t.Errorf("%v: reverse %d packets from %d, forward from %d", c.id, f.ReversePackets, f.ReverseTimeFlowStartNs, f.TimeFlowStartNs)
		}
	}
	if len(biflows) != 4 {
		t.Errorf("%d biflow records, want 4", len(biflows))
	}
	// Only the two ICMP unreachables, one per port, stay uniflow.
	for id, f := range uniflows {
		wantIf := uint32(pair.IfindexB)
		if id.Src == b4 {
			wantIf = uint32(idxB)
		}
		if id.Proto != 1 || id.DstPort != 3<<8|3 || f.InIf != wantIf {
			t.Errorf("uniflow record %v on interface %d: only the ICMP unreachables (port 1 %d, port 2 %d) have no partner",
				id, f.InIf, pair.IfindexB, idxB)
		}
	}
	if len(uniflows) != 2 {
		t.Errorf("%d uniflow records, want 2 (the ICMP unreachables)", len(uniflows))
	}
	if t.Failed() {
		t.Logf("probe log:\n%s", pr.stderr.String())
	}
}

package main

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/vishvananda/netlink"

	"github.com/xdpflow/xdpflow/internal/testkit/flowcheck"
	"github.com/xdpflow/xdpflow/internal/testkit/testnet"
	"github.com/xdpflow/xdpflow/internal/testkit/trafficgen"
)

// The filler flow ends every run (see running.finish); it is never part
// of the accounting.
var fillerFlow = trafficgen.Flow{Src: netip.MustParseAddr("198.19.255.1"), Dst: netip.MustParseAddr("198.19.255.2"),
	Proto: layers.IPProtocolUDP, SrcPort: 7, DstPort: 7, Payload: 18}

var fillerID = flowcheck.ID{Src: fillerFlow.Src, Dst: fillerFlow.Dst, SrcPort: 7, DstPort: 7, Proto: 17}

const fillerBursts, fillerPerBurst = 3, 2000

func sendFiller(pair *testnet.Pair) error {
	frame, _, err := fillerFlow.Frame(pair.MACA, pair.MACB)
	if err != nil {
		return err
	}
	return pair.In(pair.A, func() error {
		s, err := trafficgen.NewSender(pair.IfindexA)
		if err != nil {
			return err
		}
		defer s.Close()
		for b := 0; b < fillerBursts; b++ {
			for i := 0; i < fillerPerBurst; i++ {
				if err := s.Send(frame); err != nil {
					return err
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
		return nil
	})
}

// accuracyTraffic is trafficgen.Mix() scaled, plus n distinct UDP flows
// (a quarter IPv6) of 1 to 5 packets and varied sizes: the frames in the
// order they are sent (flows round-robin, the flows marked Last at the
// end), the truth per flow, and the truth with bytes counted as the frame
// after its Ethernet and VLAN headers (Ethernet padding of short frames
// included: what softflowd counts).
func accuracyTraffic(pair *testnet.Pair, scale, n int) (seq [][]byte, want, wantL2 flowcheck.Sums, err error) {
	flows := trafficgen.Mix()
	for i := 0; i < n; i++ {
		f := trafficgen.Flow{Proto: layers.IPProtocolUDP, SrcPort: uint16(20000 + i%30000), DstPort: 53,
			Payload: 10 + (i*37)%1000, Packets: 1 + i%5}
		if i%4 == 3 {
			f.Src = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 14: byte(i >> 8), 15: byte(i)})
			f.Dst = netip.MustParseAddr("2001:db8::2")
		} else {
			f.Src = netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)}) // i < 65280: never the filler
			f.Dst = netip.MustParseAddr("198.18.0.2")
		}
		flows = append(flows, f)
	}
	built, err := trafficgen.Build(flows, pair.MACA, pair.MACB, 1)
	if err != nil {
		return nil, nil, nil, err
	}
	nmix := len(trafficgen.Mix())
	for i := 0; i < nmix; i++ {
		built[i].Packets *= scale
	}
	want, wantL2 = flowcheck.Sums{}, flowcheck.Sums{}
	for _, b := range built {
		want.AddSent(b, 1)
		b.L3 = len(b.Frame) - 14
		if b.VLAN != 0 {
			b.L3 -= 4
		}
		if b.InnerVLAN != 0 {
			b.L3 -= 4
		}
		wantL2.AddSent(b, 1)
	}
	for _, last := range []bool{false, true} {
		left := make([]int, len(built))
		for i, b := range built {
			if b.Last == last {
				left[i] = b.Packets
			}
		}
		for more := true; more; {
			more = false
			for i, b := range built {
				if left[i] > 0 {
					seq = append(seq, b.Frame)
					left[i]--
					more = more || left[i] > 0
				}
			}
		}
	}
	return seq, want, wantL2, nil
}

// sendPaced sends seq from A at about pps frames a second.
func sendPaced(pair *testnet.Pair, seq [][]byte, pps int) error {
	return pair.In(pair.A, func() error {
		s, err := trafficgen.NewSender(pair.IfindexA)
		if err != nil {
			return err
		}
		defer s.Close()
		t0 := time.Now()
		for i, f := range seq {
			if i%100 == 0 {
				if d := time.Until(t0.Add(time.Duration(i) * time.Second / time.Duration(pps))); d > 0 {
					time.Sleep(d)
				}
			}
			if err := s.Send(f); err != nil {
				return err
			}
		}
		return nil
	})
}

// The rate traffic: 64-byte frames (60 without the FCS) of UDP flows
// 198.18.1.<0..14>:<0xc300..0xc3ff> -> 198.18.0.2:9; the xdp sender
// (xdpsend.go) uses the first xdpFrames of the rateFlows. Flow i is
// (i mod 15, i mod 256): 15 and 256 are coprime, so the first 3,840 are
// all distinct.
const (
	rateSrcs, ratePorts = 15, 256
	rateFlows           = rateSrcs * ratePorts
	ratePayload         = 18 // 14 + 20 + 8 + 18 = 60-byte frames
	rateL3              = 46
)

func rateFlow(src, port int) trafficgen.Flow {
	return trafficgen.Flow{Src: netip.AddrFrom4([4]byte{198, 18, 1, byte(src)}), Dst: netip.MustParseAddr("198.18.0.2"),
		Proto: layers.IPProtocolUDP, SrcPort: uint16(0xc300 + port), DstPort: 9, Payload: ratePayload}
}

// received is B's rx_packets (netlink, inside B): every frame veth put on
// B's ring, whatever B's XDP program then did with it.
func received(pair *testnet.Pair) (uint64, error) {
	h, err := netlink.NewHandleAt(pair.B)
	if err != nil {
		return 0, fmt.Errorf("netlink in %s: %w", pair.NsName("b"), err)
	}
	defer h.Close()
	l, err := h.LinkByName(pair.LinkB)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", pair.LinkB, err)
	}
	if l.Attrs().Statistics == nil {
		return 0, fmt.Errorf("%s: no statistics", pair.LinkB)
	}
	return l.Attrs().Statistics.RxPackets, nil
}

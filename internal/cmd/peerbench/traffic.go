package main

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/xdpflow/xdpflow/internal/cmd/benchproc"
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

// The rate traffic: 64-byte frames (60 without the FCS) over rateSrcs x
// ratePorts UDP flows 198.18.1.<0..14>:<0xc300..0xc3ff> -> 198.18.0.2:9.
// Packet i of a sender is flow (i mod 15, i mod 256): 15 and 256 are
// coprime, so every 3,840 packets each flow gets one.
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

// rateTruth: n packets spread evenly (n is a multiple of rateFlows per
// sender) over the rate flows.
func rateTruth(n int) flowcheck.Sums {
	want := flowcheck.Sums{}
	for s := 0; s < rateSrcs; s++ {
		for p := 0; p < ratePorts; p++ {
			f := rateFlow(s, p)
			want[flowcheck.ID{Src: f.Src, Dst: f.Dst, SrcPort: f.SrcPort, DstPort: 9, Proto: 17}] =
				flowcheck.Totals{Packets: uint64(n / rateFlows), Bytes: uint64(n / rateFlows * rateL3)}
		}
	}
	return want
}

func macBytes(m net.HardwareAddr) string {
	var parts []string
	for _, b := range m {
		parts = append(parts, fmt.Sprintf("0x%02x", b))
	}
	return strings.Join(parts, ", ")
}

// trafgenConfig writes netsniff-ng trafgen's packet description of the
// rate traffic (dinc: a byte counter incremented every packet; csumip: the
// IPv4 header checksum recomputed for every packet).
func trafgenConfig(dir string, pair *testnet.Pair) (string, error) {
	cfg := fmt.Sprintf(`{
  %s, %s, 0x08, 0x00,
  0x45, 0x00, const16(%d), const16(0), const16(0x4000), 64, 17, csumip(14, 33),
  198, 18, 1, dinc(0, %d), 198, 18, 0, 2,
  0xc3, dinc(0, %d), const16(9), const16(%d), const16(0),
  fill(0x00, %d),
}
`, macBytes(pair.MACB), macBytes(pair.MACA), rateL3, rateSrcs-1, ratePorts-1, 8+ratePayload, ratePayload)
	path := filepath.Join(dir, "rate.trafgen")
	return path, os.WriteFile(path, []byte(cfg), 0o644)
}

// sendRate sends n frames of the rate traffic as fast as it can from A
// with `senders` parallel senders (trafgen processes or goroutines).
func sendRate(pair *testnet.Pair, cfg *config, senders, n int) error {
	if cfg.trafgenConf != "" {
		p, err := benchproc.Start("trafgen", nil, "ip", "netns", "exec", pair.NsName("a"), "trafgen", "--dev", pair.LinkA,
			"--conf", cfg.trafgenConf, "--num", fmt.Sprint(n), "--cpus", fmt.Sprint(senders),
			"--no-sock-mem", "--notouch-irq", "--no-cpu-stats")
		if err != nil {
			return err
		}
		if err := p.Wait(3 * time.Minute); err != nil {
			return fmt.Errorf("trafgen: %v\n%s", err, p.Out.String())
		}
		return nil
	}
	if cfg.xdpSender {
		return sendXDP(pair, cfg, senders, n)
	}
	frames := make([][]byte, rateFlows)
	for s := 0; s < rateSrcs; s++ {
		for p := 0; p < ratePorts; p++ {
			f, _, err := rateFlow(s, p).Frame(pair.MACA, pair.MACB)
			if err != nil {
				return err
			}
			frames[s*ratePorts+p] = f
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, senders)
	for w := 0; w < senders; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[w] = pair.In(pair.A, func() error {
				s, err := trafficgen.NewSender(pair.IfindexA)
				if err != nil {
					return err
				}
				defer s.Close()
				for i := 0; i < n/senders; i++ {
					if err := s.Send(frames[(i%rateSrcs)*ratePorts+i%ratePorts]); err != nil {
						return err
					}
				}
				return nil
			})
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// trafgenWorks checks that trafgen can send on A's veth end (one frame).
func trafgenWorks(pair *testnet.Pair, conf string) error {
	if _, err := exec.LookPath("trafgen"); err != nil {
		return err
	}
	p, err := benchproc.Start("trafgen", nil, "ip", "netns", "exec", pair.NsName("a"), "trafgen", "--dev", pair.LinkA,
		"--conf", conf, "--num", "1", "--cpus", "1", "--no-sock-mem", "--notouch-irq", "--no-cpu-stats")
	if err != nil {
		return err
	}
	if err := p.Wait(20 * time.Second); err != nil {
		return fmt.Errorf("%v: %s", err, p.Out.String())
	}
	return nil
}

// linkCounters of the veth pair.
type linkCounters struct {
	aTx, aTxDrop, bRx, bRxDrop uint64
	xdpXmitErr                 uint64 // A's tx_queue_*_xdp_xmit_errors (--sender xdp only)
}

func readLinks(pair *testnet.Pair) (linkCounters, error) {
	var c linkCounters
	stats := func(ns netns.NsHandle, name string) (*netlink.LinkStatistics, error) {
		h, err := netlink.NewHandleAt(ns)
		if err != nil {
			return nil, err
		}
		defer h.Close()
		l, err := h.LinkByName(name)
		if err != nil {
			return nil, err
		}
		if l.Attrs().Statistics == nil {
			return nil, fmt.Errorf("%s: no statistics", name)
		}
		return l.Attrs().Statistics, nil
	}
	a, err := stats(pair.A, pair.LinkA)
	if err != nil {
		return c, err
	}
	b, err := stats(pair.B, pair.LinkB)
	if err != nil {
		return c, err
	}
	c.aTx, c.aTxDrop, c.bRx, c.bRxDrop = a.TxPackets, a.TxDropped, b.RxPackets, b.RxDropped
	return c, nil
}

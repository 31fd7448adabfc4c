package bpf

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/xdpflow/xdpflow/internal/testkit/testnet"
	"github.com/xdpflow/xdpflow/internal/testkit/trafficgen"
)

// Jumbo frames reach a multi-buffer (xdp.frags) program in pieces: the
// first buffer holds the headers, the rest of the frame is in fragments.
// The sizes straddle the first buffer's end: 3520 bytes is what fits in a
// 4 KiB page after XDP's headroom and the shared info (BPF_PROG_TEST_RUN,
// veth); 9014 is a full frame at MTU 9000.
var jumboSizes = []int{64, 1514, 3500, 3520, 3521, 4096, 4200, 8928, 9014}

// jumboMix is one flow per frame size and kind (IPv4 UDP and TCP, IPv6
// UDP, 802.1Q-tagged IPv4 UDP), each frame exactly size bytes long.
func jumboMix(src4, dst4, src6, dst6 netip.Addr, packets int) []trafficgen.Flow {
	var mix []trafficgen.Flow
	for _, size := range jumboSizes {
		port := uint16(size)
		mix = append(mix,
			trafficgen.Flow{Src: src4, Dst: dst4, Proto: layers.IPProtocolUDP, SrcPort: port, DstPort: 9000, Payload: size - 14 - 20 - 8, Packets: packets},
			trafficgen.Flow{Src: src4, Dst: dst4, Proto: layers.IPProtocolTCP, SrcPort: port, DstPort: 9001, TCPFlags: tACK, Payload: size - 14 - 20 - 20, Packets: packets},
			trafficgen.Flow{Src: src6, Dst: dst6, Proto: layers.IPProtocolUDP, SrcPort: port, DstPort: 9002, Payload: size - 14 - 40 - 8, Packets: packets},
			trafficgen.Flow{Src: src4, Dst: dst4, Proto: layers.IPProtocolUDP, SrcPort: port, DstPort: 9003, VLAN: 7, Payload: size - 18 - 20 - 8, Packets: packets})
	}
	return mix
}

type totals struct{ packets, bytes, l2 uint64 }

// wantFlows is what the mix must leave in the table, seen on ifindex.
func wantFlows(t *testing.T, frames []trafficgen.Built, ifindex int) (map[FlowKey]totals, totals) {
	t.Helper()
	want := map[FlowKey]totals{}
	var all totals
	for _, f := range frames {
		sport, dport := f.Ports()
		k := FlowKey{InIf: uint32(ifindex), VlanId: f.VLAN, SrcPort: sport, DstPort: dport, Proto: uint8(f.Proto),
			SrcAddr: f.Src.As16(), DstAddr: f.Dst.As16()}
		if len(f.Frame) != int(f.SrcPort) {
			t.Fatalf("flow %v: frame of %d bytes, want %d", k, len(f.Frame), f.SrcPort)
		}
		n := uint64(f.Packets)
		w := want[k]
		want[k] = totals{w.packets + n, w.bytes + n*uint64(f.L3), w.l2 + n*uint64(len(f.Frame))}
		all = totals{all.packets + n, all.bytes + n*uint64(f.L3), all.l2 + n*uint64(len(f.Frame))}
	}
	return want, all
}

func checkTotals(t *testing.T, got map[FlowKey]FlowValue, want map[FlowKey]totals) {
	t.Helper()
	for k, w := range want {
		v, ok := got[k]
		if !ok {
			t.Errorf("flow %v (%d-byte frames): not in the table", k, k.SrcPort)
			continue
		}
		delete(got, k)
		if v.Packets != w.packets || v.Bytes != w.bytes || v.L2Bytes != w.l2 {
			t.Errorf("flow %v (%d-byte frames): %d packets %d bytes %d L2 bytes; sent %d %d %d",
				k, k.SrcPort, v.Packets, v.Bytes, v.L2Bytes, w.packets, w.bytes, w.l2)
		}
	}
	for k, v := range got {
		t.Errorf("flow nobody sent: %v %+v", k, v)
	}
}

// TestMultiBufferTestRun: BPF_PROG_TEST_RUN hands a frags-aware program a
// frame larger than a page as a multi-buffer frame, as a driver does. The
// lengths are the whole frame's, the headers come from the first buffer.
// On frames in one buffer (up to 3520 bytes here) the plain program and
// its twin count alike.
func TestMultiBufferTestRun(t *testing.T) {
	t.Run("frags", func(t *testing.T) { multiBufferTestRun(t, true) })
	t.Run("plain", func(t *testing.T) { multiBufferTestRun(t, false) })
}

func multiBufferTestRun(t *testing.T, frags bool) {
	d := load(t, Config{MaxFlows: 1024, SampleRate: 1, SampleBytes: 64})
	prog, maxSize := d.FragsProgram, 1<<16
	if !frags {
		prog, maxSize = d.Program, 3520
	}
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	frames, err := trafficgen.Build(jumboMix(netip.MustParseAddr("198.18.9.1"), netip.MustParseAddr("198.18.9.2"),
		netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2"), 3), mac, mac, 1)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(frames); i++ {
		if len(frames[i].Frame) > maxSize {
			frames = append(frames[:i], frames[i+1:]...)
			i--
		}
	}
	want, all := wantFlows(t, frames, testIfindex)
	for _, f := range frames {
		for i := 0; i < f.Packets; i++ {
			if ret := run(t, prog, f.Frame); ret != uint32(Pass) {
				t.Fatalf("%d-byte frame: action %d", len(f.Frame), ret)
			}
		}
	}
	// Malformed whatever the size: an IPv4 total length beyond the whole
	// frame, and one within it (the frame's tail is padding, counted in L2
	// only).
	big := frames[len(frames)-4] // IPv4 UDP, the largest
	long := append([]byte(nil), big.Frame...)
	long[14+2], long[14+3] = byte((big.L3+1)>>8), byte(big.L3+1)
	run(t, prog, long)
	short := append([]byte(nil), big.Frame...)
	short[14+2], short[14+3] = byte(1000>>8), byte(1000&0xff)
	run(t, prog, short)
	k := FlowKey{InIf: testIfindex, SrcPort: big.SrcPort, DstPort: big.DstPort, Proto: uint8(big.Proto),
		SrcAddr: big.Src.As16(), DstAddr: big.Dst.As16()}
	w := want[k]
	want[k] = totals{w.packets + 1, w.bytes + 1000, w.l2 + uint64(len(short))}

	checkTotals(t, drainAll(t, d), want)
	st, err := d.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Malformed[xdpflowMalformedReasonMALFORMED_IPV4BAD_LENGTH] != 1 || st.MalformedTotal() != 1 {
		t.Errorf("malformed %v: want the one frame with an IPv4 length beyond it", st.Malformed)
	}
	if st.Packets != all.packets+2 || st.Bytes != all.l2+2*uint64(len(big.Frame)) || st.FlowBytes != all.bytes+1000 {
		t.Errorf("stats: %d frames, %d bytes, %d bytes in flows; want %d, %d, %d",
			st.Packets, st.Bytes, st.FlowBytes, all.packets+2, all.l2+2*uint64(len(big.Frame)), all.bytes+1000)
	}
	checkIdentity(t, st)
	// Samples keep the whole frame's length, and the head of the frame.
	rd, err := ringbuf.NewReader(d.Samples)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	rd.SetDeadline(time.Now().Add(time.Second))
	origLen := map[string]uint32{} // frame head -> original length
	for i := uint64(0); i < st.Samples; i++ {
		rec, err := rd.Read()
		if err != nil {
			t.Fatalf("sample %d of %d: %v", i, st.Samples, err)
		}
		s := parseSample(t, rec.RawSample)
		origLen[string(s.Data)] = s.OrigLen
	}
	for _, f := range frames {
		if n, ok := origLen[string(f.Frame[:64])]; !ok || n != uint32(len(f.Frame)) {
			t.Errorf("%d-byte frame %x...: sampled %v, with original length %d", len(f.Frame), f.Frame[:34], ok, n)
		}
	}
}

// TestVethJumbo: a veth pair at MTU 9000, the program attached in native
// mode on B. The plain program, not multi-buffer aware, is refused there
// (ERANGE: the peer's MTU does not fit one page); its twin attaches, and
// jumbo frames sent from A, and around the page boundary, are counted
// exactly: packets, L3 bytes from the IP header, L2 bytes of the whole
// frame.
func TestVethJumbo(t *testing.T) {
	t.Run("native", func(t *testing.T) { vethJumbo(t, link.XDPDriverMode) })
	// Generic mode, for comparison: no refusal, the same counts.
	t.Run("generic", func(t *testing.T) { vethJumbo(t, link.XDPGenericMode) })
}

func vethJumbo(t *testing.T, mode link.XDPAttachFlags) {
	d := load(t, Config{MaxFlows: 4096})
	pair, err := testnet.NewPair(fmt.Sprintf("xfj%d", os.Getpid()%100000), testnet.Options{
		AddrA: netip.MustParsePrefix("198.18.0.1/30"),
		AddrB: netip.MustParsePrefix("198.18.0.2/30"),
		MTU:   9000,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pair.Close() })

	// Generic mode: the plain program, as the probe attaches it there.
	prog := d.Program
	var l link.Link
	if err := pair.In(pair.B, func() (err error) {
		if mode == link.XDPDriverMode {
			l, err = link.AttachXDP(link.XDPOptions{Program: d.Program, Interface: pair.IfindexB, Flags: mode})
			if !errors.Is(err, unix.ERANGE) {
				t.Errorf("the plain program at MTU 9000: %v, want ERANGE (the issue's refusal)", err)
			}
			if err == nil {
				l.Close()
			}
			prog = d.FragsProgram
		}
		l, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: pair.IfindexB, Flags: mode})
		return err
	}); err != nil {
		t.Fatalf("attach (%v) at MTU 9000: %v", mode, err)
	}
	t.Cleanup(func() { l.Close() })

	frames, err := trafficgen.Build(jumboMix(netip.MustParseAddr("198.18.9.1"), netip.MustParseAddr("198.18.9.2"),
		netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2"), 50), pair.MACA, pair.MACB, 1)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := wantFlows(t, frames, pair.IfindexB)
	send := func() error {
		s, err := trafficgen.NewSender(pair.IfindexA)
		if err != nil {
			return err
		}
		defer s.Close()
		_, err = s.SendAll(frames)
		return err
	}
	if err := pair.In(pair.A, send); err != nil {
		t.Fatal(err)
	}
	// The kernel's own jumbo datagrams, from a UDP socket.
	const datagrams, size = 100, 8900
	local := sendUDP(t, pair, datagrams, size)
	want[FlowKey{InIf: uint32(pair.IfindexB), SrcPort: uint16(local.Port), DstPort: 7777, Proto: uint8(layers.IPProtocolUDP),
		SrcAddr: netip.MustParseAddr("198.18.0.1").As16(), DstAddr: netip.MustParseAddr("198.18.0.2").As16()}] =
		totals{datagrams, datagrams * (20 + 8 + size), datagrams * (14 + 20 + 8 + size)}

	var wantPackets uint64
	for _, w := range want {
		wantPackets += w.packets
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		st, err := d.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if st.FlowPackets >= wantPackets || time.Now().After(deadline) {
			break
		}
	}
	checkTotals(t, drainAll(t, d), want)
	st, err := d.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.FlowPackets != wantPackets || st.MalformedTotal() != 0 || st.UpdateFailedPackets != 0 {
		t.Errorf("stats %+v: want %d packets in flows, none malformed or failed", st, wantPackets)
	}
	checkIdentity(t, st)
}

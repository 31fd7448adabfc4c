package bpf

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/gopacket/gopacket/layers"

	"github.com/xdpflow/xdpflow/internal/testkit/testnet"
	"github.com/xdpflow/xdpflow/internal/testkit/trafficgen"
)

// TestVethNative attaches the program in native XDP mode to the receiving
// end of a veth pair between two test namespaces, sends a known mix of
// flows across (raw frames and a real UDP socket), and checks that every
// flow's packets and bytes in the table equal what was sent.
func TestVethNative(t *testing.T) {
	d := load(t, Config{MaxFlows: 65536})
	pair, err := testnet.NewPair(fmt.Sprintf("xf%d", os.Getpid()%100000), testnet.Options{
		AddrA: netip.MustParsePrefix("198.18.0.1/30"),
		AddrB: netip.MustParsePrefix("198.18.0.2/30"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pair.Close() })

	var l link.Link
	if err := pair.In(pair.B, func() (err error) {
		l, err = link.AttachXDP(link.XDPOptions{Program: d.Program, Interface: pair.IfindexB, Flags: link.XDPDriverMode})
		return err
	}); err != nil {
		t.Fatalf("attach XDP in native mode to veth: %v", err)
	}
	t.Cleanup(func() { l.Close() })

	type totals struct{ packets, bytes, l2 uint64 }
	want := map[FlowKey]totals{}
	key := func(src, dst netip.Addr, proto layers.IPProtocol, sport, dport, vlan uint16) FlowKey {
		k := FlowKey{InIf: uint32(pair.IfindexB), VlanId: vlan, SrcPort: sport, DstPort: dport, Proto: uint8(proto)}
		k.SrcAddr, k.DstAddr = src.As16(), dst.As16()
		return k
	}

	// Raw frames, interleaved across flows as on a real link.
	mix, err := trafficgen.Build(trafficgen.Mix(), pair.MACA, pair.MACB, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range mix {
		sport, dport := f.Ports()
		k := key(f.Src, f.Dst, f.Proto, sport, dport, f.VLAN)
		w := want[k]
		want[k] = totals{w.packets + uint64(f.Packets), w.bytes + uint64(f.Packets*f.L3), w.l2 + uint64(f.Packets*len(f.Frame))}
	}
	junk := trafficgen.JunkMix(pair.MACA, pair.MACB)
	var junkNonIP, junkMalformed uint64
	var sentFrames int
	if err := pair.In(pair.A, func() error {
		s, err := trafficgen.NewSender(pair.IfindexA)
		if err != nil {
			return err
		}
		defer s.Close()
		if sentFrames, err = s.SendAll(mix); err != nil {
			return err
		}
		for _, j := range junk {
			for i := 0; i < j.Packets; i++ {
				if err := s.Send(j.Frame); err != nil {
					return err
				}
			}
			if j.Malformed {
				junkMalformed += uint64(j.Packets)
			} else {
				junkNonIP += uint64(j.Packets)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// A real socket: the kernel's own UDP/IPv4 packets.
	const datagrams, size = 100, 200
	local := sendUDP(t, pair, datagrams, size)
	want[key(netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2"), layers.IPProtocolUDP, uint16(local.Port), 7777, 0)] =
		totals{datagrams, datagrams * (20 + 8 + size), datagrams * (14 + 20 + 8 + size)}

	// The veth delivers asynchronously (NAPI): wait until every frame sent
	// has been seen.
	var wantPackets uint64
	for _, w := range want {
		wantPackets += w.packets
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := d.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if st.FlowPackets >= wantPackets || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}

	got := drainAll(t, d)
	for k, w := range want {
		v, ok := got[k]
		if !ok {
			t.Errorf("flow %v: not in the table", k)
			continue
		}
		delete(got, k)
		if v.Packets != w.packets || v.Bytes != w.bytes || v.L2Bytes != w.l2 {
			t.Errorf("flow %v: %d packets %d bytes %d L2 bytes; sent %d %d %d", k, v.Packets, v.Bytes, v.L2Bytes, w.packets, w.bytes, w.l2)
		}
	}
	for k, v := range got {
		t.Errorf("flow nobody sent: %v %+v", k, v)
	}
	st, err := d.Stats()
	if err != nil {
		t.Fatal(err)
	}
	// Non-IP also holds the ARP of B's kernel answering A's socket.
	if st.FlowPackets != wantPackets || st.MalformedTotal() != junkMalformed || st.NonIp < junkNonIP || st.UpdateFailedPackets != 0 {
		t.Errorf("stats %+v: want %d packets in flows, %d malformed, at least %d non-IP, nothing failed",
			st, wantPackets, junkMalformed, junkNonIP)
	}
	checkIdentity(t, st)
	t.Logf("%d raw frames + %d datagrams in %d flows; %d malformed and %d non-IP frames counted, none in a flow",
		sentFrames, datagrams, len(want), st.MalformedTotal(), st.NonIp)
}

// TestVLANMetadata: frames whose 802.1Q tag travels out of band (pushed
// on side A's egress as an offloaded tag, the way a NIC with rx VLAN
// offload hands frames up) reach XDP without the tag. The plain program
// then counts them in VLAN 0; VLANProgram, bound to the device, gets the
// tag from the driver and counts VLAN 42.
func TestVLANMetadata(t *testing.T) {
	d := load(t, Config{MaxFlows: 1024})
	pair, err := testnet.NewPair(fmt.Sprintf("xfv%d", os.Getpid()%100000), testnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pair.Close() })
	// A tc program on A's egress: bpf_skb_vlan_push(skb, 802.1Q, 42). The
	// veth offloads the insertion, so the tag stays out of the frame.
	push, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SchedCLS, License: "GPL", Instructions: asm.Instructions{
		asm.Mov.Imm(asm.R2, 0x0081), // htons(ETH_P_8021Q)
		asm.Mov.Imm(asm.R3, 42),
		asm.FnSkbVlanPush.Call(),
		asm.Mov.Imm(asm.R0, 0), // TC_ACT_OK
		asm.Return(),
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer push.Close()
	if err := pair.In(pair.A, func() error {
		l, err := link.AttachTCX(link.TCXOptions{Interface: pair.IfindexA, Program: push, Attach: ebpf.AttachTCXEgress})
		if err != nil {
			return err
		}
		t.Cleanup(func() { l.Close() })
		return nil
	}); err != nil {
		t.Fatalf("attach tc program: %v", err)
	}
	frames, err := trafficgen.Build([]trafficgen.Flow{{Src: netip.MustParseAddr("198.18.4.1"), Dst: netip.MustParseAddr("198.18.4.2"),
		Proto: layers.IPProtocolUDP, SrcPort: 4000, DstPort: 4001, Payload: 100, Packets: 20}}, pair.MACA, pair.MACB, 1)
	if err != nil {
		t.Fatal(err)
	}
	var vlanProg *ebpf.Program
	if err := pair.In(pair.B, func() (err error) { // the ifindex is B's namespace's
		vlanProg, err = d.VLANProgram(pair.IfindexB)
		return err
	}); err != nil {
		t.Fatalf("this kernel (6.8+) and veth offer the VLAN tag to XDP: %v", err)
	}
	t.Cleanup(func() { vlanProg.Close() })
	for _, tc := range []struct {
		name string
		prog *ebpf.Program
		vlan uint16
	}{{"plain program", d.Program, 0}, {"VLAN metadata", vlanProg, 42}} {
		t.Run(tc.name, func(t *testing.T) {
			var l link.Link
			if err := pair.In(pair.B, func() (err error) {
				l, err = link.AttachXDP(link.XDPOptions{Program: tc.prog, Interface: pair.IfindexB, Flags: link.XDPDriverMode})
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			if err := trafficgen.SendFrom(func(fn func() error) error { return pair.In(pair.A, fn) }, pair.IfindexA, frames); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond)
			var pkts uint64
			for k, v := range drainAll(t, d) {
				if k.Src() != netip.MustParseAddr("198.18.4.1") {
					continue
				}
				pkts += v.Packets
				if k.VlanId != tc.vlan {
					t.Errorf("VLAN %d, want %d", k.VlanId, tc.vlan)
				}
			}
			if pkts != 20 {
				t.Errorf("%d packets, want 20", pkts)
			}
		})
	}
}

// sendUDP sends n datagrams of size bytes from side a to 198.18.0.2:7777
// and returns the source port. Unconnected: the port unreachable that
// side b answers must not fail a later write (ECONNREFUSED), as it does a
// connected socket.
func sendUDP(t *testing.T, pair *testnet.Pair, n, size int) (local *net.UDPAddr) {
	t.Helper()
	if err := pair.In(pair.A, func() error {
		c, err := net.ListenUDP("udp4", nil)
		if err != nil {
			return err
		}
		defer c.Close()
		local = c.LocalAddr().(*net.UDPAddr)
		dst := &net.UDPAddr{IP: net.IP{198, 18, 0, 2}, Port: 7777}
		for range n {
			if _, err := c.WriteToUDP(make([]byte, size), dst); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return local
}

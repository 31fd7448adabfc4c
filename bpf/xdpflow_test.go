package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/gopacket/gopacket/layers"
)

// The tests run the real program in the kernel (BPF_PROG_TEST_RUN) and read
// the real maps. They need root; without it they fail, they do not skip:
// `make test` runs as root.

// xdpMD is struct xdp_md as BPF_PROG_TEST_RUN takes it.
type xdpMD struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

const testIfindex = 1 // loopback: test runs need a real device

func load(t testing.TB, cfg Config) *Datapath {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("kernel tests need root (CAP_BPF + CAP_NET_ADMIN): run `sudo make test`")
	}
	d, err := Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func run(t testing.TB, p *ebpf.Program, frame []byte) uint32 {
	t.Helper()
	ret, err := p.Run(&ebpf.RunOptions{
		Data:    frame,
		Context: xdpMD{DataEnd: uint32(len(frame)), IngressIfindex: testIfindex},
	})
	if err != nil {
		t.Fatalf("run program on %d-byte frame: %v", len(frame), err)
	}
	return ret
}

type flow struct {
	ver          uint8
	proto        uint8
	src, dst     string
	sport, dport uint16
	vlan         uint16
	packets      uint64
	bytes        uint64 // L3
	l2           uint64
	flags        uint32
	tos          uint8

	// Encapsulations (issue #13), zero for a plain frame. Key:
	tunnel   TunnelType
	tunnelID uint32
	mirror   MirrorType
	obsID    uint32              // observation point: the mirror session
	mac      [2]net.HardwareAddr // source, destination (Config.MACs)
	// Value, of the flow's first packet:
	tunSrc, tunDst string   // the innermost IP tunnel's outer endpoints
	labels         []uint32 // MPLS label stack entries, top first
}

func (f flow) key() FlowKey {
	k := FlowKey{InIf: testIfindex, VlanId: f.vlan, SrcPort: f.sport, DstPort: f.dport, Proto: f.proto,
		TunnelType: uint8(f.tunnel), TunnelId: f.tunnelID, MirrorType: uint8(f.mirror), ObservationPointId: f.obsID}
	k.SrcAddr = netip.MustParseAddr(f.src).As16()
	k.DstAddr = netip.MustParseAddr(f.dst).As16()
	copy(k.SrcMac[:], f.mac[0])
	copy(k.DstMac[:], f.mac[1])
	return k
}

// encapValue is the part of the value that describes the encapsulation.
func (f flow) encapValue() (src, dst [16]byte, labels [MaxMPLSLabels]uint32) {
	if f.tunSrc != "" {
		src = netip.MustParseAddr(f.tunSrc).As16()
		dst = netip.MustParseAddr(f.tunDst).As16()
	}
	copy(labels[:], f.labels)
	return
}

// MaxMPLSLabels is MAX_MPLS_LABELS: the label stack entries a value holds.
const MaxMPLSLabels = len(FlowValue{}.MplsLabels)

// keyString is FlowKey.String with the encapsulation fields.
func keyString(k FlowKey) string {
	s := k.String()
	if k.TunnelType != 0 {
		s += fmt.Sprintf(" tunnel %d/%d", k.TunnelType, k.TunnelId)
	}
	if k.MirrorType != 0 {
		s += fmt.Sprintf(" mirror %d/%d", k.MirrorType, k.ObservationPointId)
	}
	if k.SrcMac != ([6]byte{}) || k.DstMac != ([6]byte{}) {
		s += fmt.Sprintf(" mac %s > %s", net.HardwareAddr(k.SrcMac[:]), net.HardwareAddr(k.DstMac[:]))
	}
	return s
}

// encapString shows a value's encapsulation fields.
func encapString(src, dst [16]byte, labels [MaxMPLSLabels]uint32) string {
	return fmt.Sprintf("tunnel %s > %s, labels %x", netip.AddrFrom16(src), netip.AddrFrom16(dst), labels)
}

func drainAll(t testing.TB, d *Datapath) map[FlowKey]FlowValue {
	t.Helper()
	old, err := d.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	got := map[FlowKey]FlowValue{}
	if err := d.Drain(old, func(k FlowKey, v FlowValue) {
		if _, dup := got[k]; dup {
			t.Errorf("flow %v drained twice", k)
		}
		got[k] = v
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

// checkFlows asserts the table holds exactly want.
func checkFlows(t *testing.T, got map[FlowKey]FlowValue, want []flow) {
	t.Helper()
	for _, w := range want {
		k := w.key()
		v, ok := got[k]
		if !ok {
			t.Errorf("missing flow %s; table has:", keyString(k))
			for k := range got {
				t.Errorf("  %s", keyString(k))
			}
			continue
		}
		delete(got, k)
		if v.Packets != w.packets || v.Bytes != w.bytes || v.L2Bytes != w.l2 || v.TcpFlags != w.flags || v.IpTos != w.tos {
			t.Errorf("flow %s: packets %d bytes %d l2 %d flags %#x tos %#x; want %d %d %d %#x %#x",
				keyString(k), v.Packets, v.Bytes, v.L2Bytes, v.TcpFlags, v.IpTos, w.packets, w.bytes, w.l2, w.flags, w.tos)
		}
		if src, dst, labels := w.encapValue(); v.TunnelSrcAddr != src || v.TunnelDstAddr != dst || v.MplsLabels != labels {
			t.Errorf("flow %s: %s; want %s", keyString(k),
				encapString(v.TunnelSrcAddr, v.TunnelDstAddr, v.MplsLabels), encapString(src, dst, labels))
		}
		if v.FirstSeenNs == 0 || v.FirstSeenNs > v.LastSeenNs {
			t.Errorf("flow %s: first seen %d, last seen %d", keyString(k), v.FirstSeenNs, v.LastSeenNs)
		}
	}
	for k, v := range got {
		t.Errorf("unexpected flow %s: %+v", keyString(k), v)
	}
}

// checkIdentity asserts every frame landed in exactly one counter.
func checkIdentity(t *testing.T, s Stats) {
	t.Helper()
	if sum := s.NonIp + s.MalformedTotal() + s.FlowPackets + s.UpdateFailedPackets; sum != s.Packets {
		t.Errorf("stats do not add up: %d frames, but non-IP %d + malformed %d + in flows %d + failed %d = %d",
			s.Packets, s.NonIp, s.MalformedTotal(), s.FlowPackets, s.UpdateFailedPackets, sum)
	}
}

const (
	tSYN = 0x02
	tACK = 0x10
	tFIN = 0x01
	tRST = 0x04
	tPSH = 0x08
	tECE = 0x40
	tCWR = 0x80
	tNS  = 0x100
)

type sent struct {
	frame []byte
	times int
}

func TestParseAndAccount(t *testing.T) {
	v4 := func(proto uint8, sport, dport uint16) flow {
		return flow{ver: 4, proto: proto, src: "198.18.0.1", dst: "198.18.0.2", sport: sport, dport: dport}
	}
	v6 := func(proto uint8, sport, dport uint16) flow {
		return flow{ver: 6, proto: proto, src: "2001:db8::a", dst: "2001:db8::b", sport: sport, dport: dport}
	}
	with := func(f flow, packets, l3, l2 uint64, flags uint32) flow {
		f.packets, f.bytes, f.l2, f.flags = packets, l3, l2, flags
		return f
	}
	vlan := func(f flow, id uint16) flow { f.vlan = id; return f }
	tos := func(f flow, t uint8) flow { f.tos = t; return f }

	e4 := eth(layers.EthernetTypeIPv4)
	e6 := eth(layers.EthernetTypeIPv6)

	ipOpts := ipv4(layers.IPProtocolUDP)
	ipOpts.IHL = 7
	ipOpts.Options = []layers.IPv4Option{{OptionType: 7, OptionLength: 7, OptionData: []byte{4, 0, 0, 0, 0}}, {OptionType: 1}} // 8 bytes

	ipTos := ipv4(layers.IPProtocolUDP)
	ipTos.TOS = 0xb8 // DSCP EF
	ip6Tc := ipv6(layers.IPProtocolUDP)
	ip6Tc.TrafficClass = 0x28

	firstFrag := ipv4(layers.IPProtocolUDP)
	firstFrag.Flags = layers.IPv4MoreFragments
	laterFrag := ipv4(layers.IPProtocolUDP)
	laterFrag.FragOffset = 185

	icmpLaterFrag := ipv4(layers.IPProtocolICMPv4)
	icmpLaterFrag.FragOffset = 1

	// Payloads of non-first IPv6 fragments that would parse as extension
	// headers or ports if walked into.
	dstLike := ext6(layers.IPProtocolUDP, 0)                                        // destination options naming UDP
	dstHuge := mutate(ext6(layers.IPProtocolUDP, 0), func(b []byte) { b[1] = 255 }) // claims 2 KiB
	udpLike := rawL4(udp(7777, 8888), 20)
	tcpLike := rawL4(tcp(40000, 443, tSYN), 20)
	ahLike := make([]byte, 24) // AH naming TCP, payload length 4: (4+2)*4 = 24 bytes
	ahLike[0], ahLike[1] = byte(layers.IPProtocolTCP), 4
	var dst7Frag []byte // 7 destination-options headers, the last naming Fragment
	for i := 0; i < 7; i++ {
		next := layers.IPProtocolIPv6Destination
		if i == 6 {
			next = layers.IPProtocolIPv6Fragment
		}
		dst7Frag = append(dst7Frag, ext6(next, 0)...)
	}

	icmpEcho := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 1, Seq: 1}
	icmpUnreach := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 3)}
	icmp6Echo := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(128, 0)}
	sctp := &layers.SCTP{SrcPort: 3868, DstPort: 3868, VerificationTag: 7}

	arp := build(eth(layers.EthernetTypeARP), &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
		HwAddressSize: 6, ProtAddressSize: 4, Operation: 1, SourceHwAddress: macA, SourceProtAddress: v4a,
		DstHwAddress: make([]byte, 6), DstProtAddress: v4b})

	cases := []encapCase{{
		name: "ipv4 tcp handshake and close: flags OR, L3 bytes",
		frames: []sent{
			{build(e4, ipv4(layers.IPProtocolTCP), tcp(40000, 443, tSYN)), 1},
			{build(e4, ipv4(layers.IPProtocolTCP), tcp(40000, 443, tACK|tPSH), payload(100)), 3},
			{build(e4, ipv4(layers.IPProtocolTCP), tcp(40000, 443, tFIN|tACK)), 1},
		},
		want: []flow{with(v4(6, 40000, 443), 5, 40+3*140+40, 60+3*154+60, tSYN|tACK|tPSH|tFIN)},
	}, {
		name:   "tcp all nine flag bits as on the wire (NS, CWR, ECE)",
		frames: []sent{{build(e4, ipv4(layers.IPProtocolTCP), tcp(1, 2, tNS|tCWR|tECE|tRST)), 1}},
		want:   []flow{with(v4(6, 1, 2), 1, 40, 60, tNS|tCWR|tECE|tRST)},
	}, {
		name:   "ipv4 options: IHL honoured",
		frames: []sent{{build(e4, ipOpts, udp(53, 5353), payload(10)), 2}},
		want:   []flow{with(v4(17, 53, 5353), 2, 2*(28+18), 2*(14+28+18), 0)},
	}, {
		name:   "ipv4 tos of the flow",
		frames: []sent{{build(e4, ipTos, udp(5004, 5004), payload(160)), 1}},
		want:   []flow{tos(with(v4(17, 5004, 5004), 1, 188, 202, 0), 0xb8)},
	}, {
		name:   "ethernet padding is not L3 bytes",
		frames: []sent{{pad(build(e4, ipv4(layers.IPProtocolUDP), udp(7, 7)), 60), 1}},
		want:   []flow{with(v4(17, 7, 7), 1, 28, 60, 0)},
	}, {
		name: "icmp type and code in dst port",
		frames: []sent{
			{build(e4, ipv4(layers.IPProtocolICMPv4), icmpEcho, payload(56)), 3},
			{build(e4, ipv4(layers.IPProtocolICMPv4), icmpUnreach, payload(28)), 1},
		},
		want: []flow{
			with(v4(1, 0, 8<<8), 3, 3*84, 3*98, 0),
			with(v4(1, 0, 3<<8|3), 1, 56, 70, 0),
		},
	}, {
		name:   "sctp ports",
		frames: []sent{{build(e4, ipv4(layers.IPProtocolSCTP), sctp, payload(16)), 1}},
		want:   []flow{with(v4(132, 3868, 3868), 1, 48, 62, 0)},
	}, {
		name:   "protocol without ports (GRE)",
		frames: []sent{{build(e4, ipv4(layers.IPProtocolGRE), payload(24)), 2}},
		want:   []flow{with(v4(47, 0, 0), 2, 88, 2*60, 0)},
	}, {
		name: "ipv4 fragments: first keeps ports, later ones under ports 0",
		frames: []sent{
			{build(e4, firstFrag, udp(9000, 9001), payload(1472)), 1},
			{build(e4, laterFrag, payload(600)), 2},
		},
		want: []flow{
			with(v4(17, 9000, 9001), 1, 1500, 1514, 0),
			with(v4(17, 0, 0), 2, 1240, 1268, 0),
		},
		fragments: 2,
	}, {
		name:   "802.1Q tag",
		frames: []sent{{build(eth(layers.EthernetTypeIPv4, 100), ipv4(layers.IPProtocolUDP), udp(1000, 2000), payload(4)), 1}},
		want:   []flow{vlan(with(v4(17, 1000, 2000), 1, 32, 60, 0), 100)},
	}, {
		name:   "802.1ad QinQ: outer id recorded",
		frames: []sent{{build(eth(layers.EthernetTypeIPv6, 200, 100), ipv6(layers.IPProtocolUDP), udp(1000, 2000), payload(4)), 1}},
		want:   []flow{vlan(with(v6(17, 1000, 2000), 1, 52, 74, 0), 200)},
	}, {
		name:   "three VLAN tags: not parsed, counted as non-IP",
		frames: []sent{{build(eth(layers.EthernetTypeIPv4, 1, 2, 3), ipv4(layers.IPProtocolUDP), udp(1, 2)), 1}},
		nonIP:  1,
	}, {
		name:   "arp is not a flow",
		frames: []sent{{arp, 2}},
		nonIP:  2,
	}, {
		name: "ipv6 tcp and udp, traffic class",
		frames: []sent{
			{build(e6, ipv6(layers.IPProtocolTCP), tcp(50000, 80, tSYN)), 1},
			{build(e6, ip6Tc, udp(123, 123), payload(48)), 1},
		},
		want: []flow{
			with(v6(6, 50000, 80), 1, 60, 74, tSYN),
			tos(with(v6(17, 123, 123), 1, 96, 110, 0), 0x28),
		},
	}, {
		name: "ipv6 extension chain: hop-by-hop, routing, destination options",
		frames: []sent{{build(e6, ipv6(layers.IPProtocolIPv6HopByHop),
			concat(ext6(layers.IPProtocolIPv6Routing, 0), ext6(layers.IPProtocolIPv6Destination, 1),
				ext6(layers.IPProtocolUDP, 0), rawL4(udp(4500, 4501), 20))), 1}},
		want: []flow{with(v6(17, 4500, 4501), 1, 40+8+16+8+28, 14+40+8+16+8+28, 0)},
	}, {
		name: "ipv6 fragments: first keeps ports, later ones under ports 0",
		frames: []sent{
			{build(e6, ipv6(layers.IPProtocolIPv6Fragment), concat(frag6(layers.IPProtocolUDP, 0, true), rawL4(udp(5000, 5001), 100))), 1},
			{build(e6, ipv6(layers.IPProtocolIPv6Fragment), concat(frag6(layers.IPProtocolUDP, 14, false), payload(50))), 1},
		},
		want: []flow{
			with(v6(17, 5000, 5001), 1, 40+8+108, 14+40+8+108, 0),
			with(v6(17, 0, 0), 1, 40+8+50, 14+40+8+50, 0),
		},
		fragments: 1,
	}, {
		// A non-first fragment stops the chain at its Fragment header,
		// whatever that header names: the payload is data, even when it
		// looks like an extension header or ports (issue #13).
		name:      "ipv6 non-first fragment naming destination options: not walked into",
		frames:    []sent{{build(e6, ipv6(layers.IPProtocolIPv6Fragment), concat(frag6(layers.IPProtocolIPv6Destination, 14, true), dstLike, udpLike)), 1}},
		want:      []flow{with(v6(60, 0, 0), 1, 40+8+8+28, 14+40+8+8+28, 0)},
		fragments: 1,
	}, {
		name:      "ipv6 non-first fragment naming destination options, data past the packet if walked",
		frames:    []sent{{build(e6, ipv6(layers.IPProtocolIPv6Fragment), concat(frag6(layers.IPProtocolIPv6Destination, 14, false), dstHuge, udpLike)), 2}},
		want:      []flow{with(v6(60, 0, 0), 2, 2*(40+8+8+28), 2*(14+40+8+8+28), 0)},
		fragments: 2,
	}, {
		name:      "ipv6 non-first fragment naming AH: not walked into",
		frames:    []sent{{build(e6, ipv6(layers.IPProtocolIPv6Fragment), concat(frag6(layers.IPProtocolAH, 185, true), ahLike, tcpLike)), 1}},
		want:      []flow{with(v6(51, 0, 0), 1, 40+8+24+40, 14+40+8+24+40, 0)},
		fragments: 1,
	}, {
		name:      "ipv6 non-first fragment naming TCP: ports 0, not the bytes that look like them",
		frames:    []sent{{build(e6, ipv6(layers.IPProtocolIPv6Fragment), concat(frag6(layers.IPProtocolTCP, 1, true), tcpLike)), 1}},
		want:      []flow{with(v6(6, 0, 0), 1, 40+8+40, 14+40+8+40, 0)},
		fragments: 1,
	}, {
		name:      "ipv6 non-first fragment naming UDP: ports 0",
		frames:    []sent{{build(e6, ipv6(layers.IPProtocolIPv6Fragment), concat(frag6(layers.IPProtocolUDP, 8191, false), udpLike)), 1}},
		want:      []flow{with(v6(17, 0, 0), 1, 40+8+28, 14+40+8+28, 0)},
		fragments: 1,
	}, {
		name: "ipv6 non-first fragment after hop-by-hop, and as the 8th extension header",
		frames: []sent{
			{build(e6, ipv6(layers.IPProtocolIPv6HopByHop), concat(ext6(layers.IPProtocolIPv6Fragment, 0),
				frag6(layers.IPProtocolIPv6Destination, 100, true), dstLike, udpLike)), 1},
			{build(e6, ipv6(layers.IPProtocolIPv6Destination), concat(dst7Frag, frag6(layers.IPProtocolIPv6Destination, 100, true), dstLike, udpLike)), 1},
		},
		want: []flow{
			with(v6(60, 0, 0), 2, 40+8+8+8+28+40+7*8+8+8+28, 14+40+8+8+8+28+14+40+7*8+8+8+28, 0),
		},
		fragments: 2,
	}, {
		// The first fragment walks on past the Fragment header, the later
		// ones stop at it: with an extension header between the Fragment
		// header and the transport header, the two differ in protocol.
		name: "ipv6 datagram with destination options after the fragment header: first under UDP and ports, later under 60",
		frames: []sent{
			{build(e6, ipv6(layers.IPProtocolIPv6Fragment), concat(frag6(layers.IPProtocolIPv6Destination, 0, true), ext6(layers.IPProtocolUDP, 0), rawL4(udp(5000, 5001), 100))), 1},
			{build(e6, ipv6(layers.IPProtocolIPv6Fragment), concat(frag6(layers.IPProtocolIPv6Destination, 15, false), payload(50))), 1},
		},
		want: []flow{
			with(v6(17, 5000, 5001), 1, 40+8+8+108, 14+40+8+8+108, 0),
			with(v6(60, 0, 0), 1, 40+8+50, 14+40+8+50, 0),
		},
		fragments: 1,
	}, {
		name: "icmp and icmpv6 with exactly 8 bytes of header",
		frames: []sent{
			{build(e4, ipv4(layers.IPProtocolICMPv4), icmpEcho), 1},
			{build(e6, ipv6(layers.IPProtocolICMPv6), concat([]byte{1, 4, 0, 0, 0, 0, 0, 0})), 1},
		},
		want: []flow{
			with(v4(1, 0, 8<<8), 1, 28, 60, 0),
			with(v6(58, 0, 1<<8|4), 1, 48, 62, 0),
		},
	}, {
		name:      "icmp non-first fragment: no ICMP header, ports 0",
		frames:    []sent{{build(e4, icmpLaterFrag, payload(3)), 1}},
		want:      []flow{with(v4(1, 0, 0), 1, 23, 60, 0)},
		fragments: 1,
	}, {
		name:   "icmpv6 type and code in dst port",
		frames: []sent{{build(e6, ipv6(layers.IPProtocolICMPv6), icmp6Echo, payload(60)), 2}},
		want:   []flow{with(v6(58, 0, 128<<8), 2, 2*(40+4+60), 2*(14+40+4+60), 0)},
	}, {
		name:   "ipv6 no next header",
		frames: []sent{{build(e6, ipv6(layers.IPProtocolNoNextHeader)), 1}},
		want:   []flow{with(v6(59, 0, 0), 1, 40, 60, 0)},
	}}

	runEncapCases(t, cases)
}

func TestMalformed(t *testing.T) {
	e4 := eth(layers.EthernetTypeIPv4)
	e6 := eth(layers.EthernetTypeIPv6)
	goodUDP4 := build(e4, ipv4(layers.IPProtocolUDP), udp(1, 2), payload(8))
	goodUDP6 := build(e6, ipv6(layers.IPProtocolUDP), udp(1, 2), payload(8))

	// chain of n destination-options headers ending in UDP
	chain := func(n int) []byte {
		var parts [][]byte
		for i := 0; i < n; i++ {
			next := layers.IPProtocolIPv6Destination
			if i == n-1 {
				next = layers.IPProtocolUDP
			}
			parts = append(parts, ext6(next, 0))
		}
		parts = append(parts, rawL4(udp(1, 2), 0))
		return build(e6, ipv6(layers.IPProtocolIPv6Destination), concat(parts...))
	}

	cases := []struct {
		name   string
		frame  []byte
		reason string
	}{
		{"ethertype IPv4 and nothing after", build(e4)[:14], "ipv4_truncated"},
		{"VLAN tag cut short", append(build(eth(layers.EthernetTypeDot1Q))[:14], 0, 100), "vlan_truncated"},
		{"ipv4 header cut short", goodUDP4[:14+19], "ipv4_truncated"},
		{"ipv4 IHL < 5", mutate(goodUDP4, func(f []byte) { f[14] = 0x44 }), "ipv4_bad_ihl"},
		{"ipv4 IHL past the frame", mutate(goodUDP4[:14+24], func(f []byte) { f[14] = 0x4f }), "ipv4_bad_ihl"},
		{"ipv4 total length past the frame", mutate(goodUDP4, func(f []byte) { binary.BigEndian.PutUint16(f[16:], 1500) }), "ipv4_bad_length"},
		{"ipv4 total length below header", mutate(goodUDP4, func(f []byte) { binary.BigEndian.PutUint16(f[16:], 12) }), "ipv4_bad_length"},
		{"ethertype IPv4 carrying version 6", mutate(goodUDP4, func(f []byte) { f[14] = 0x65 }), "ip_version_mismatch"},
		{"ethertype IPv6 carrying version 4", mutate(goodUDP6, func(f []byte) { f[14] = 0x40 }), "ip_version_mismatch"},
		{"ipv6 header cut short", goodUDP6[:14+39], "ipv6_truncated"},
		// The key tells IPv4 by the mapped form: such an IPv6 packet
		// would pass for IPv4.
		{"ipv6 with an ipv4-mapped source", mutate(goodUDP6, func(f []byte) { copy(f[14+8:], net.ParseIP("::ffff:198.18.0.1")) }), "ipv6_v4mapped_addr"},
		{"ipv6 with an ipv4-mapped destination", mutate(goodUDP6, func(f []byte) { copy(f[14+24:], net.ParseIP("::ffff:198.18.0.2")) }), "ipv6_v4mapped_addr"},
		{"ipv6 payload length past the frame", mutate(goodUDP6, func(f []byte) { binary.BigEndian.PutUint16(f[18:], 200) }), "ipv6_bad_length"},
		{"ipv6 extension header past the packet", build(e6, ipv6(layers.IPProtocolIPv6HopByHop), payload(4)), "ipv6_ext_truncated"},
		{"udp cut short after an extension header", build(e6, ipv6(layers.IPProtocolIPv6Destination), concat(ext6(layers.IPProtocolUDP, 0), payload(4))),
			"l4_truncated"},
		{"ipv6 extension claims 2 KiB", mutate(chain(2), func(f []byte) { f[14+40+1] = 255 }), "ipv6_ext_truncated"},
		{"ipv6 chain that never ends", chain(9), "ipv6_ext_chain_too_long"},
		{"tcp header cut short", build(e4, ipv4(layers.IPProtocolTCP), payload(19)), "l4_truncated"},
		{"udp header cut short", build(e6, ipv6(layers.IPProtocolUDP), payload(7)), "l4_truncated"},
		{"sctp header cut short", build(e4, ipv4(layers.IPProtocolSCTP), payload(11)), "l4_truncated"},
		{"icmp header cut short", build(e4, ipv4(layers.IPProtocolICMPv4), payload(3)), "l4_truncated"},
		// ICMP needs its whole 8-byte header, though the key takes only
		// type and code from it.
		{"icmp header of 7 bytes", build(e4, ipv4(layers.IPProtocolICMPv4), concat([]byte{8, 0, 0, 0, 0, 1, 0})), "l4_truncated"},
		{"icmpv6 type, code and checksum only (4 bytes)", build(e6, ipv6(layers.IPProtocolICMPv6), concat([]byte{128, 0, 0, 0})), "l4_truncated"},
		{"icmpv6 header of 7 bytes after an extension header",
			build(e6, ipv6(layers.IPProtocolIPv6Destination), concat(ext6(layers.IPProtocolICMPv6, 0), []byte{1, 4, 0, 0, 0, 0, 0})), "l4_truncated"},
		{"icmp header in the ethernet padding, not in the packet",
			pad(build(e4, ipv4(layers.IPProtocolICMPv4), concat([]byte{8, 0, 0, 0})), 60), "l4_truncated"},
		{"udp header in the ethernet padding, not in the packet",
			pad(build(e4, ipv4(layers.IPProtocolUDP), payload(4)), 60), "l4_truncated"},
	}
	// The longest chain we do follow is fine.
	if ok := chain(MaxIPv6ExtHeaders); len(ok) == 0 {
		t.Fatal("empty frame")
	}

	dps := newDatapaths(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			checkMalformedIn(t, dps.get(Config{MaxFlows: 64, Action: Drop}), tc.frame, tc.reason)
		})
	}

	t.Run("longest followed chain parses", func(t *testing.T) {
		d := load(t, Config{MaxFlows: 64})
		run(t, d.Program, chain(MaxIPv6ExtHeaders))
		got := drainAll(t, d)
		if len(got) != 1 {
			t.Fatalf("got %d flows, want 1", len(got))
		}
		for k := range got {
			if k.Proto != 17 || k.SrcPort != 1 || k.DstPort != 2 {
				t.Errorf("key %v", k)
			}
		}
	})

	t.Run("frames shorter than ethernet are refused by the kernel", func(t *testing.T) {
		d := load(t, Config{MaxFlows: 64})
		for _, n := range []int{0, 1, 13} {
			_, err := d.Program.Run(&ebpf.RunOptions{Data: make([]byte, n)})
			if err == nil {
				t.Errorf("%d-byte frame: test run accepted it; the program must then count it as eth_truncated", n)
			}
		}
	})
}

func TestRotateSplitsExactly(t *testing.T) {
	d := load(t, Config{MaxFlows: 64})
	f := build(eth(layers.EthernetTypeIPv4), ipv4(layers.IPProtocolTCP), tcp(1, 2, tACK), payload(10))
	var total uint64
	for round := 1; round <= 5; round++ {
		for i := 0; i < round; i++ {
			run(t, d.Program, f)
		}
		got := drainAll(t, d)
		if len(got) != 1 {
			t.Fatalf("round %d: %d flows", round, len(got))
		}
		for _, v := range got {
			if v.Packets != uint64(round) {
				t.Errorf("round %d: drained %d packets, want %d", round, v.Packets, round)
			}
			total += v.Packets
		}
	}
	st, _ := d.Stats()
	if st.FlowPackets != total || total != 15 {
		t.Errorf("drained %d packets in all, datapath counted %d, want 15", total, st.FlowPackets)
	}
}

// A full probe window is a full table: the packets of a flow that finds
// no slot are counted as update failures, and no flow already in the table
// is evicted. MaxFlows 1: two home slots and 127 more, so that 200 flows
// overflow every window.
func TestTableFullIsCounted(t *testing.T) {
	const flows = 200
	d := load(t, Config{MaxFlows: 1, benchFlows: flows})
	f := build(eth(layers.EthernetTypeIPv4), ipv4(layers.IPProtocolUDP), udp(1, 2), payload(10))
	for round := 1; round <= 2; round++ {
		// The same 200 keys each round: bench_seq cycles over them.
		if _, err := d.Program.Run(&ebpf.RunOptions{Data: f, Repeat: flows}); err != nil {
			t.Fatal(err)
		}
	}
	st, err := d.Stats()
	if err != nil {
		t.Fatal(err)
	}
	slots := uint64(tableSlots(1))
	if st.NewFlows != slots || st.FlowPackets != 2*slots || st.UpdateFailedPackets != 2*(flows-slots) {
		t.Errorf("%d slots: %d new flows, %d packets in flows, %d failed; want %d, %d, %d",
			slots, st.NewFlows, st.FlowPackets, st.UpdateFailedPackets, slots, 2*slots, 2*(flows-slots))
	}
	got := drainAll(t, d)
	if uint64(len(got)) != slots {
		t.Errorf("drained %d flows, want %d", len(got), slots)
	}
	for k, v := range got {
		if v.Packets != 2 {
			t.Errorf("%v: %d packets, want 2 (one each round: none evicted)", k, v.Packets)
		}
	}
	if st.UpdateFailedBytes != st.UpdateFailedPackets*38 {
		t.Errorf("update failed: %d bytes for %d packets of 38", st.UpdateFailedBytes, st.UpdateFailedPackets)
	}
	checkIdentity(t, st)
}

func TestSampling(t *testing.T) {
	d := load(t, Config{MaxFlows: 64, SampleRate: 2, SampleBytes: 64})
	rd, err := ringbuf.NewReader(d.Samples)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var frames [][]byte
	for i := 0; i < 5; i++ {
		frames = append(frames, build(eth(layers.EthernetTypeIPv4), ipv4(layers.IPProtocolUDP), udp(uint16(i), 9), payload(10+i*20)))
		run(t, d.Program, frames[i])
	}
	rd.SetDeadline(time.Now().Add(time.Second))
	for _, i := range []int{0, 2, 4} { // 1 in 2, starting with the first
		rec, err := rd.Read()
		if err != nil {
			t.Fatalf("sample of frame %d: %v", i, err)
		}
		s := parseSample(t, rec.RawSample)
		want := frames[i]
		if len(want) > 64 {
			want = want[:64]
		}
		if s.InIf != testIfindex || s.OrigLen != uint32(len(frames[i])) || s.TimeNs == 0 || string(s.Data) != string(want) {
			t.Errorf("sample %d: %+v, want ifindex %d, orig len %d, data %x", i, s, testIfindex, len(frames[i]), want)
		}
	}
	if _, err := rd.Read(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("a fourth sample: %v", err)
	}
	st, _ := d.Stats()
	if st.Samples != 3 || st.SamplesLost != 0 || st.FlowPackets != 5 {
		t.Errorf("stats %+v", st)
	}
}

func TestSampleRingFullIsCountedNotBlocking(t *testing.T) {
	d := load(t, Config{MaxFlows: 64, SampleRate: 1, SampleBytes: 256, ringBytes: 4096, Action: Pass})
	f := build(eth(layers.EthernetTypeIPv4), ipv4(layers.IPProtocolUDP), udp(1, 2), payload(400))
	const n = 100
	for i := 0; i < n; i++ {
		if ret := run(t, d.Program, f); ret != uint32(Pass) {
			t.Fatalf("returned %d with a full ring: the frame must pass", ret)
		}
	}
	st, _ := d.Stats()
	if st.Samples+st.SamplesLost != n || st.SamplesLost == 0 || st.FlowPackets != n {
		t.Errorf("samples %d + lost %d, want %d with some lost; %d in flows", st.Samples, st.SamplesLost, n, st.FlowPackets)
	}
}

func parseSample(t *testing.T, b []byte) Sample {
	t.Helper()
	s, err := ParseSample(b)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestParseSampleRejectsBadRecords(t *testing.T) {
	good := make([]byte, sampleHdrLen+4)
	binary.NativeEndian.PutUint32(good[16:], 4)
	cases := []struct {
		name string
		rec  []byte
		ok   bool
	}{
		{"empty", nil, false},
		{"header cut short", good[:sampleHdrLen-1], false},
		{"claims more than it holds", mutate(good, func(b []byte) { binary.NativeEndian.PutUint32(b[16:], 5) }), false},
		{"claims 4 GiB", mutate(good, func(b []byte) { binary.NativeEndian.PutUint32(b[16:], 0xffffffff) }), false},
		{"well formed", good, true},
	}
	for _, tc := range cases {
		s, err := ParseSample(tc.rec)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err %v", tc.name, err)
		}
		if tc.ok && len(s.Data) != 4 {
			t.Errorf("%s: %d data bytes, want 4", tc.name, len(s.Data))
		}
	}
}

// Read leaves a quiet table as it is (read twice, the same flows), Clear
// empties it, and TableID and Quiet name it.
func TestReadThenClear(t *testing.T) {
	d := load(t, Config{MaxFlows: 64})
	for i := range 5 {
		run(t, d.Program, build(eth(layers.EthernetTypeIPv4), ipv4(layers.IPProtocolUDP), udp(uint16(i), 9), payload(10)))
	}
	q, err := d.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	if TableID(q) == 0 || TableID(q) != TableID(d.Quiet()) {
		t.Errorf("table ids: rotated %d, quiet %d", TableID(q), TableID(d.Quiet()))
	}
	for range 2 {
		n := 0
		if err := d.Read(q, func(FlowKey, FlowValue) { n++ }); err != nil {
			t.Fatal(err)
		}
		if n != 5 {
			t.Fatalf("read %d flows, want 5", n)
		}
	}
	if err := d.Clear(q); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := d.Read(q, func(FlowKey, FlowValue) { n++ }); err != nil || n != 0 {
		t.Errorf("after Clear: %d flows (%v)", n, err)
	}
}

// checkMalformedIn runs frame through d, a datapath that drops, and
// checks it lands under reason alone: dropped, in no flow, no other
// counter. d may have counted other frames before: the counters are
// compared before and after.
func checkMalformedIn(t *testing.T, d *Datapath, frame []byte, reason string) {
	t.Helper()
	before, err := d.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if ret := run(t, d.Program, frame); ret != uint32(Drop) {
		t.Errorf("returned %d, want the configured XDP_DROP for malformed frames too", ret)
	}
	if got := drainAll(t, d); len(got) != 0 {
		for k, v := range got {
			t.Errorf("malformed frame created flow %s: %+v", keyString(k), v)
		}
	}
	after, err := d.Stats()
	if err != nil {
		t.Fatal(err)
	}
	st := statsSince(before, after)
	for i, n := range st.Malformed {
		want := uint64(0)
		if MalformedReasons[i] == reason {
			want = 1
		}
		if n != want {
			t.Errorf("malformed[%s] = %d, want %d", MalformedReasons[i], n, want)
		}
	}
	if st.Packets != 1 || st.FlowPackets != 0 || st.NewFlows != 0 || st.NonIp != 0 {
		t.Errorf("stats %+v", st)
	}
	checkIdentity(t, st)
}

// statsSince is what the counters counted between two reads.
func statsSince(before, after Stats) Stats {
	s := Stats{
		Packets: after.Packets - before.Packets, Bytes: after.Bytes - before.Bytes, NonIp: after.NonIp - before.NonIp,
		FlowPackets: after.FlowPackets - before.FlowPackets, FlowBytes: after.FlowBytes - before.FlowBytes,
		NewFlows: after.NewFlows - before.NewFlows, UpdateFailedPackets: after.UpdateFailedPackets - before.UpdateFailedPackets,
		UpdateFailedBytes: after.UpdateFailedBytes - before.UpdateFailedBytes, Fragments: after.Fragments - before.Fragments,
		Samples: after.Samples - before.Samples, SamplesLost: after.SamplesLost - before.SamplesLost,
	}
	for i := range s.Malformed {
		s.Malformed[i] = after.Malformed[i] - before.Malformed[i]
	}
	return s
}

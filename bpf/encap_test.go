package bpf

import (
	"encoding/binary"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/xdpflow/xdpflow/internal/testkit/trafficgen"
)

// MPLS and PPPoE session frames (issue #13): the flow is the IP
// conversation inside, keyed as the plain packet would be plus the
// encapsulation (MPLS: the top label, the label stack in the value; PPPoE:
// the session id); L3 bytes are the inner IP packet's, L2 bytes the whole
// frame.

var mpls = trafficgen.MPLS // a label stack, TTL 64

// pppoe is a PPPoE session header (session 0x1234) and PPP protocol for
// an inner packet of n bytes.
func pppoe(proto uint16, n int) gopacket.Payload { return trafficgen.PPPoE(0x1234, proto, n) }

// pppoeFrame is a PPPoE session frame around the given IP layers.
func pppoeFrame(l2 []gopacket.SerializableLayer, proto uint16, inner ...gopacket.SerializableLayer) []byte {
	in := serialize(inner...)
	return build(l2, pppoe(proto, len(in)), gopacket.Payload(in))
}

const (
	pppIPv4 = trafficgen.PPPIPv4
	pppIPv6 = trafficgen.PPPIPv6
	pppLCP  = trafficgen.PPPLCP
)

func TestMPLSAndPPPoE(t *testing.T) {
	v4 := func(sport, dport uint16, packets, l3, l2 uint64, opts ...func(*flow)) flow {
		f := flow{ver: 4, proto: 17, src: "198.18.0.1", dst: "198.18.0.2", sport: sport, dport: dport, packets: packets, bytes: l3, l2: l2}
		for _, o := range opts {
			o(&f)
		}
		return f
	}
	v6 := func(sport, dport uint16, packets, l3, l2 uint64, opts ...func(*flow)) flow {
		f := flow{ver: 6, proto: 6, src: "2001:db8::a", dst: "2001:db8::b", sport: sport, dport: dport, packets: packets, bytes: l3, l2: l2, flags: tSYN}
		for _, o := range opts {
			o(&f)
		}
		return f
	}
	// stack is the MPLS encapsulation of a flow: the top label keyed, the
	// label stack entries (as mpls() writes them) in the value.
	stack := func(labels ...uint32) func(*flow) {
		return func(f *flow) {
			f.tunnel, f.tunnelID, f.labels = TunnelMPLS, labels[0], nil
			for i, l := range labels {
				f.labels = append(f.labels, lse(l, i == len(labels)-1))
			}
		}
	}
	session := encapOnly(TunnelPPPoE, 0x1234)

	mplsUC, mplsMC := layers.EthernetTypeMPLSUnicast, layers.EthernetTypeMPLSMulticast
	ses, disc := layers.EthernetTypePPPoESession, layers.EthernetTypePPPoEDiscovery
	udp4 := func(n int) []gopacket.SerializableLayer {
		return []gopacket.SerializableLayer{ipv4(layers.IPProtocolUDP), udp(1000, 2000), payload(n)}
	}
	tcp6 := []gopacket.SerializableLayer{ipv6(layers.IPProtocolTCP), tcp(40000, 443, tSYN)}
	with := func(l2 []gopacket.SerializableLayer, pre gopacket.Payload, inner []gopacket.SerializableLayer) []byte {
		return build(l2, append([]gopacket.SerializableLayer{pre}, inner...)...)
	}
	eight := []uint32{16, 17, 18, 19, 20, 21, 22, 23}
	// A PADI: discovery, code 0x09, with a service-name tag.
	padi := build(eth(disc), gopacket.Payload{0x11, 0x09, 0, 0, 0, 4, 0x01, 0x01, 0, 0})
	lcp := build(eth(ses), pppoe(pppLCP, 14), payload(14))
	cw := build(eth(mplsUC), mpls(true, 100), gopacket.Payload{0, 0, 0, 0}, payload(50)) // control word, then Ethernet

	cases := []encapCase{{
		name:   "mpls one label, ipv4",
		frames: []sent{{with(eth(mplsUC), mpls(true, 100), udp4(100)), 3}},
		want:   []flow{v4(1000, 2000, 3, 3*128, 3*(14+4+128), stack(100))},
	}, {
		name:   "mpls three labels, ipv4, short frame padded: the top label keyed, all three kept",
		frames: []sent{{with(eth(mplsUC), mpls(true, 100, 200, 300), udp4(2)), 1}},
		want:   []flow{v4(1000, 2000, 1, 30, 60, stack(100, 200, 300))},
	}, {
		name:   "mpls three labels, ipv6",
		frames: []sent{{with(eth(mplsUC), mpls(true, 100, 200, 300), tcp6), 2}},
		want:   []flow{v6(40000, 443, 2, 2*60, 2*(14+12+60), stack(100, 200, 300))},
	}, {
		name:   "mpls inside a VLAN tag: outer id kept",
		frames: []sent{{with(eth(mplsUC, 42), mpls(true, 100), udp4(100)), 1}, {with(eth(mplsUC, 42), mpls(true, 7, 8), tcp6), 1}},
		want:   []flow{v4(1000, 2000, 1, 128, 18+4+128, inVLAN(42), stack(100)), v6(40000, 443, 1, 60, 18+8+60, inVLAN(42), stack(7, 8))},
	}, {
		name:   "mpls inside QinQ",
		frames: []sent{{with(eth(mplsUC, 300, 42), mpls(true, 100), udp4(100)), 1}},
		want:   []flow{v4(1000, 2000, 1, 128, 22+4+128, inVLAN(300), stack(100))},
	}, {
		name:   "mpls multicast ethertype",
		frames: []sent{{with(eth(mplsMC), mpls(true, 100, 200), udp4(100)), 1}},
		want:   []flow{v4(1000, 2000, 1, 128, 14+8+128, stack(100, 200))},
	}, {
		name:   "mpls eight labels: the deepest stack followed, all kept",
		frames: []sent{{with(eth(mplsUC), mpls(true, eight...), udp4(100)), 1}},
		want:   []flow{v4(1000, 2000, 1, 128, 14+32+128, stack(eight...))},
	}, {
		name:   "mpls label 2^20-1: 20 bits of id",
		frames: []sent{{with(eth(mplsUC), mpls(true, 0xfffff, 1), udp4(100)), 1}},
		want:   []flow{v4(1000, 2000, 1, 128, 14+8+128, stack(0xfffff, 1))},
	}, {
		name: "mpls and plain ipv4 of one conversation: two flows (issue #13)",
		frames: []sent{{with(eth(mplsUC), mpls(true, 100), udp4(100)), 1}, {build(eth(layers.EthernetTypeIPv4), udp4(100)...), 1},
			{with(eth(mplsUC), mpls(true, 101), udp4(100)), 1}},
		want: []flow{v4(1000, 2000, 1, 128, 14+4+128, stack(100)), v4(1000, 2000, 1, 128, 14+128), v4(1000, 2000, 1, 128, 14+4+128, stack(101))},
	}, {
		name:   "mpls pseudowire control word (first nibble 0): not parsed, non-IP",
		frames: []sent{{cw, 1}},
		nonIP:  1,
	}, {
		name:   "pppoe ipv4",
		frames: []sent{{pppoeFrame(eth(ses), pppIPv4, udp4(100)...), 2}},
		want:   []flow{v4(1000, 2000, 2, 2*128, 2*(14+8+128), session)},
	}, {
		name:   "pppoe ipv6, ethernet padding not counted",
		frames: []sent{{pppoeFrame(eth(ses), pppIPv6, tcp6...), 1}, {pppoeFrame(eth(ses), pppIPv4, udp4(0)...), 1}},
		want:   []flow{v6(40000, 443, 1, 60, 14+8+60, session), v4(1000, 2000, 1, 28, 60, session)},
	}, {
		// As in pppoe-over-qinq.pcap: IP total length 46 (6 zero bytes
		// past the TCP header that TCP does not count), PPPoE length
		// 42 = 2 + 40. The IP header's length is the L3 octets, as for
		// plain IP; the frame bounds it, not the PPPoE length.
		name:     "pppoe length shorter than the IP packet: the IP length counts",
		frames:   []sent{{mutate(pppoeFrame(eth(ses), pppIPv4, udp4(100)...), func(f []byte) { binary.BigEndian.PutUint16(f[18:], 2+20) }), 1}},
		want:     []flow{v4(1000, 2000, 1, 128, 14+8+128, session)},
		noTshark: "tshark bounds the PPP payload by the PPPoE length (the IP header alone here) and dissects no UDP header",
	}, {
		name:   "pppoe over QinQ: outer id kept",
		frames: []sent{{pppoeFrame(eth(ses, 100, 200), pppIPv4, udp4(100)...), 1}, {pppoeFrame(eth(ses, 100, 200), pppIPv6, tcp6...), 1}},
		want:   []flow{v4(1000, 2000, 1, 128, 22+8+128, inVLAN(100), session), v6(40000, 443, 1, 60, 22+8+60, inVLAN(100), session)},
	}, {
		name:   "pppoe LCP: non-IP",
		frames: []sent{{lcp, 2}},
		nonIP:  2,
	}, {
		name:   "pppoe discovery: non-IP",
		frames: []sent{{padi, 1}},
		nonIP:  1,
	}}
	runEncapCases(t, cases)
}

func TestMPLSAndPPPoEMalformed(t *testing.T) {
	mplsUC := layers.EthernetTypeMPLSUnicast
	ses := layers.EthernetTypePPPoESession
	inner := serialize(ipv4(layers.IPProtocolUDP), udp(1, 2), payload(30))
	nine := []uint32{1, 2, 3, 4, 5, 6, 7, 8, 9}
	okPPPoE := build(eth(ses), pppoe(pppIPv4, len(inner)), gopacket.Payload(inner))
	// Frames cut short are not padded: raw bytes, as a test run takes them.
	cases := []struct {
		name   string
		frame  []byte
		reason string
	}{
		{"mpls label cut short", build(eth(mplsUC), mpls(true, 100))[:14+2], "mpls_truncated"},
		{"mpls second label cut short", build(eth(mplsUC), mpls(true, 100, 200))[:14+6], "mpls_truncated"},
		{"mpls bottom of stack and nothing after", build(eth(mplsUC), mpls(true, 100))[:14+4], "mpls_truncated"},
		{"mpls no bottom of stack in 8 labels", build(eth(mplsUC), mpls(true, nine...), gopacket.Payload(inner)), "mpls_stack_too_deep"},
		{"mpls stack that never ends (zero padding)", build(eth(mplsUC), mpls(false, 100)), "mpls_stack_too_deep"},
		{"mpls ipv4 cut short", build(eth(mplsUC), mpls(true, 100), gopacket.Payload(inner))[:14+4+19], "ipv4_truncated"},
		{"pppoe header cut short", okPPPoE[:14+5], "pppoe_truncated"},
		{"pppoe PPP protocol cut short", okPPPoE[:14+7], "pppoe_truncated"},
		{"pppoe bad version/type", mutate(okPPPoE, func(f []byte) { f[14] = 0x12 }), "pppoe_bad_header"},
		{"pppoe session frame with a discovery code", mutate(okPPPoE, func(f []byte) { f[15] = 0x09 }), "pppoe_bad_header"},
		{"pppoe length past the frame", mutate(okPPPoE, func(f []byte) { binary.BigEndian.PutUint16(f[18:], 200) }), "pppoe_bad_header"},
		{"pppoe length below the PPP protocol", mutate(okPPPoE, func(f []byte) { binary.BigEndian.PutUint16(f[18:], 1) }), "pppoe_bad_header"},
		{"ipv4 longer than the frame after pppoe",
			mutate(okPPPoE, func(f []byte) { binary.BigEndian.PutUint16(f[14+8+2:], uint16(len(inner)+1)) }), "ipv4_bad_length"},
	}
	dps := newDatapaths(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			checkMalformedIn(t, dps.get(Config{MaxFlows: 64, Action: Drop}), tc.frame, tc.reason)
		})
	}
}

package bpf

import (
	"encoding/binary"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/xdpflow/xdpflow/internal/testkit/trafficgen"
)

// IP tunnels and mirror encapsulations (issue #13), table tests through the
// real program. Each crafted frame is also dissected by tshark, and the
// flows the spec makes of tshark's view (tshark_test.go: specOf) must be
// the cases' expectations: three opinions, one answer.

// Tunnel endpoints, distinct from the inner conversation (v4a, v4b, v6a,
// v6b): tunnel i (1-5, outermost first) runs from ep4[i][0] to ep4[i][1].
var (
	ep4 = [...][2]string{1: {"192.0.2.1", "192.0.2.2"}, {"203.0.113.1", "203.0.113.2"}, {"198.51.100.1", "198.51.100.2"}, {"100.64.0.1", "100.64.0.2"}, {"10.255.0.1", "10.255.0.2"}}
	ep6 = [...][2]string{1: {"2001:db8:1::1", "2001:db8:1::2"}, {"2001:db8:2::1", "2001:db8:2::2"}, {"2001:db8:3::1", "2001:db8:3::2"}, {"2001:db8:4::1", "2001:db8:4::2"}}
	// The MACs of frames carried inside tunnels and mirrors.
	macC = trafficgen.CarriedSrcMAC
	macD = trafficgen.CarriedDstMAC
)

// o4 and o6 are the outer IP header of tunnel i.
func o4(i int, proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: proto, SrcIP: net.ParseIP(ep4[i][0]), DstIP: net.ParseIP(ep4[i][1])}
}

func o6(i int, next layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: next, SrcIP: net.ParseIP(ep6[i][0]), DstIP: net.ParseIP(ep6[i][1])}
}

// innerEth is eth() with the MACs of a carried frame.
func innerEth(et layers.EthernetType, vlans ...uint16) []gopacket.SerializableLayer {
	ls := eth(et, vlans...)
	e := *ls[0].(*layers.Ethernet)
	e.SrcMAC, e.DstMAC = macC, macD
	ls[0] = &e
	return ls
}

// frameOf is an Ethernet frame (l2: Ethernet and tags) around raw bytes.
func frameOf(l2 []gopacket.SerializableLayer, inner []byte) []byte {
	return build(l2, gopacket.Payload(inner))
}

// The encapsulation headers, shared with the end-to-end profile
// (trafficgen's headers.go).
var (
	greP    = trafficgen.GRE
	greK    = trafficgen.GREKeyed
	vxlan   = trafficgen.VXLAN
	geneve  = trafficgen.Geneve
	gtpu    = trafficgen.GTPU
	erspan2 = trafficgen.ERSPANII
	erspan3 = trafficgen.ERSPANIII
	tzsp    = trafficgen.TZSP
)

// Tunnel and mirror kinds, for frames nested n deep.
type nestKind int

const (
	nestGRE nestKind = iota
	nestVXLAN
	nestGTPU
	nestIPIP
	nestGeneve
)

// nest wraps inner (an IPv4 packet) in the given tunnels, outermost first
// (tunnel i uses endpoints ep4[i+1]), and returns the outermost tunnel's
// IP packet (for an Ethernet frame of type IPv4) and the innermost
// tunnel's type, id and endpoints.
func nest(inner []byte, kinds ...nestKind) (pkt []byte, typ TunnelType, id uint32, ep [2]string) {
	pkt = inner
	for i := len(kinds) - 1; i >= 0; i-- {
		n := i + 1
		key := uint32(1000 + n)
		var k TunnelType
		switch kinds[i] {
		case nestGRE:
			pkt, k = serialize(o4(n, layers.IPProtocolGRE), greK(layers.EthernetTypeIPv4, key), gopacket.Payload(pkt)), TunnelGRE
		case nestVXLAN:
			pkt = serialize(o4(n, layers.IPProtocolUDP), udp(49152, PortVXLAN), vxlan(key), gopacket.Payload(frameOf(innerEth(layers.EthernetTypeIPv4), pkt)))
			k = TunnelVXLAN
		case nestGTPU:
			pkt, k = serialize(o4(n, layers.IPProtocolUDP), udp(PortGTPU, PortGTPU), gtpu(key), gopacket.Payload(pkt)), TunnelGTPU
		case nestIPIP:
			pkt, k, key = serialize(o4(n, layers.IPProtocolIPv4), gopacket.Payload(pkt)), TunnelIPIP, 0
		case nestGeneve:
			pkt, k = serialize(o4(n, layers.IPProtocolUDP), udp(49152, PortGeneve), geneve(key, layers.EthernetTypeIPv4), gopacket.Payload(pkt)), TunnelGeneve
		}
		if i == len(kinds)-1 {
			typ, id, ep = k, key, ep4[n]
		}
	}
	return pkt, typ, id, ep
}

// encapCase is frames in, exactly these flows (and non-IP frames) out.
type encapCase struct {
	name   string
	cfg    Config
	frames []sent
	want   []flow
	nonIP  uint64
	// fragments is Stats.Fragments, -1 where the spec leaves it open (the
	// first fragment of a tunnel's packet, counted as a fragment).
	fragments int
	// noTshark says why tshark's dissection is not compared (empty: it is).
	noTshark string
}

// fl is a flow of packets frames of the given lengths, with options.
func fl(base flow, packets int, l3, l2 int, opts ...func(*flow)) flow {
	base.packets, base.bytes, base.l2 = uint64(packets), uint64(packets*l3), uint64(packets*l2)
	for _, o := range opts {
		o(&base)
	}
	return base
}

func tun(typ TunnelType, id uint32, ep [2]string) func(*flow) {
	return func(f *flow) { f.tunnel, f.tunnelID, f.tunSrc, f.tunDst = typ, id, ep[0], ep[1] }
}

// encapOnly is a tunnel type and id without endpoints (MPLS, PPPoE).
func encapOnly(typ TunnelType, id uint32) func(*flow) {
	return func(f *flow) { f.tunnel, f.tunnelID = typ, id }
}

func mirrored(typ MirrorType, id uint32) func(*flow) {
	return func(f *flow) { f.mirror, f.obsID = typ, id }
}

func inVLAN(id uint16) func(*flow) { return func(f *flow) { f.vlan = id } }

func withMACs(src, dst net.HardwareAddr) func(*flow) {
	return func(f *flow) { f.mac = [2]net.HardwareAddr{src, dst} }
}

func withLabels(lse ...uint32) func(*flow) { return func(f *flow) { f.labels = lse } }

func withFlags(fl uint32) func(*flow) { return func(f *flow) { f.flags = fl } }

var lse = trafficgen.LSE // the label stack entry mpls() writes

// runEncapCases runs each case through both programs on a datapath per
// configuration, and compares the expectations with tshark's view.
func runEncapCases(t *testing.T, cases []encapCase) {
	t.Helper()
	dps := newDatapaths(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.MaxFlows = 64
			d := dps.get(tc.cfg)
			for _, prog := range []string{"xdpflow", "xdpflow_frags"} {
				p := d.Program
				if prog == "xdpflow_frags" {
					p = d.FragsProgram
				}
				before, err := d.Stats()
				if err != nil {
					t.Fatal(err)
				}
				var frames, bytes uint64
				for _, s := range tc.frames {
					for i := 0; i < s.times; i++ {
						if ret := run(t, p, s.frame); ret != uint32(Pass) {
							t.Fatalf("%s: returned %d, want XDP_PASS", prog, ret)
						}
						frames++
						bytes += uint64(len(s.frame))
					}
				}
				checkFlows(t, drainAll(t, d), tc.want)
				after, err := d.Stats()
				if err != nil {
					t.Fatal(err)
				}
				st := statsSince(before, after)
				var inFlows, l3 uint64
				for _, w := range tc.want {
					inFlows += w.packets
					l3 += w.bytes
				}
				if st.Packets != frames || st.Bytes != bytes || st.FlowPackets != inFlows || st.FlowBytes != l3 ||
					st.NonIp != tc.nonIP || st.MalformedTotal() != 0 || st.NewFlows != uint64(len(tc.want)) || st.UpdateFailedPackets != 0 ||
					(tc.fragments >= 0 && st.Fragments != uint64(tc.fragments)) {
					t.Errorf("%s: stats %+v; want %d frames, %d bytes, %d in flows (%d L3 bytes), %d new flows, %d non-IP, %d fragments",
						prog, st, frames, bytes, inFlows, l3, len(tc.want), tc.nonIP, tc.fragments)
				}
				checkIdentity(t, st)
			}
		})
	}
	t.Run("tshark agrees", func(t *testing.T) { tsharkAgrees(t, cases) })
}

// tsharkAgrees dissects every case's frames with tshark (one run) and
// checks the spec, applied to tshark's layers, gives the case's flows.
func tsharkAgrees(t *testing.T, cases []encapCase) {
	var frames [][]byte
	var cfgs []Config
	for _, tc := range cases {
		if tc.noTshark == "" {
			for _, s := range tc.frames {
				frames = append(frames, s.frame)
			}
			cfgs = append(cfgs, tc.cfg)
		}
	}
	dissected := dissect(t, frames, decodeAsFor(cfgs...))
	for _, tc := range cases {
		if tc.noTshark != "" {
			t.Logf("%s: not compared with tshark: %s", tc.name, tc.noTshark)
			continue
		}
		var mine []tsharkFrame
		for _, s := range tc.frames {
			for i := 0; i < s.times; i++ {
				mine = append(mine, dissected[0])
			}
			dissected = dissected[1:]
		}
		t.Run(tc.name, func(t *testing.T) {
			spec := specFlows(t, mine, tc.cfg)
			want := map[FlowKey]FlowValue{}
			for _, w := range tc.want {
				v := FlowValue{Packets: w.packets, Bytes: w.bytes, L2Bytes: w.l2, TcpFlags: w.flags, IpTos: w.tos}
				v.TunnelSrcAddr, v.TunnelDstAddr, v.MplsLabels = w.encapValue()
				want[w.key()] = v
			}
			compareTables(t, want, spec.flows)
			if spec.nonIP != tc.nonIP || len(spec.malformed) != 0 {
				t.Errorf("tshark's view: %d non-IP, malformed %v; the case says %d non-IP, none malformed", spec.nonIP, spec.malformed, tc.nonIP)
			}
			if tc.fragments >= 0 && spec.fragments != uint64(tc.fragments) {
				t.Errorf("tshark's view: %d non-first fragments, the case says %d", spec.fragments, tc.fragments)
			}
			if t.Failed() {
				for _, f := range mine {
					t.Logf("tshark: %s", names(f.layers))
				}
			}
		})
	}
}

// encapOfReason is the tshark layer a malformed reason is about.
var encapOfReason = map[string]string{"gre": "gre", "vxlan": "vxlan", "geneve": "geneve", "gtpu": "gtp", "erspan": "erspan", "tzsp": "tzsp"}

// tsharkSeesEncap checks the bent frames are what they claim: tshark
// dissects the encapsulation the reason names (however it then fares),
// and a frame nested too deep has maxTunnelDepth+1 tunnels.
// declines names the cases whose header is too short for tshark to try.
func tsharkSeesEncap(t *testing.T, cases []malformedCase, declines map[string]string) {
	var frames [][]byte
	var cfgs []Config
	for _, tc := range cases {
		frames = append(frames, tc.frame)
		cfgs = append(cfgs, tc.cfg)
	}
	for i, f := range dissect(t, frames, decodeAsFor(cfgs...)) {
		tc := cases[i]
		stack := names(f.layers)
		if why := declines[tc.name]; why != "" {
			t.Logf("%s: tshark sees %s: %s", tc.name, stack, why)
			continue
		}
		prefix, _, _ := strings.Cut(tc.reason, "_")
		isIP := func(l layer) bool { return l.name == "ip" || l.name == "ipv6" }
		seen, tunnels := false, 0
		for i, l := range f.layers {
			if p := encapOfReason[prefix]; p != "" && strings.HasPrefix(l.name, p) {
				seen = true // gtp, or gtpv2 and gtpprime for a bent version
			}
			switch {
			case l.name == "gre" || l.name == "vxlan" || l.name == "gtp" || l.name == "geneve":
				tunnels++
			case isIP(l) && i+1 < len(f.layers) && isIP(f.layers[i+1]):
				tunnels++
			}
		}
		if encapOfReason[prefix] != "" && !seen {
			t.Errorf("%s: tshark sees %s, no %s", tc.name, stack, encapOfReason[prefix])
		}
		if tc.reason == "tunnel_too_deep" && tunnels != maxTunnelDepth+1 {
			t.Errorf("%s: tshark sees %d tunnels (%s), want %d", tc.name, tunnels, stack, maxTunnelDepth+1)
		}
	}
}

// malformedCase is a frame that must land under reason alone.
type malformedCase struct {
	name   string
	cfg    Config
	frame  []byte
	reason string
}

func runMalformedCases(t *testing.T, cases []malformedCase, declines map[string]string) {
	t.Helper()
	t.Run("tshark sees the encapsulation", func(t *testing.T) { tsharkSeesEncap(t, cases, declines) })
	dps := newDatapaths(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.MaxFlows, cfg.Action = 64, Drop
			checkMalformedIn(t, dps.get(cfg), tc.frame, tc.reason)
		})
	}
}

// The inner conversations every tunnel and mirror carries.
var (
	u4 = flow{ver: 4, proto: 17, src: "198.18.0.1", dst: "198.18.0.2", sport: 1000, dport: 2000}
	t6 = flow{ver: 6, proto: 6, src: "2001:db8::a", dst: "2001:db8::b", sport: 40000, dport: 443, flags: tSYN}
)

func innerPackets() (in4, in6 []byte) {
	return serialize(ipv4(layers.IPProtocolUDP), udp(1000, 2000), payload(100)), // 128 bytes
		serialize(ipv6(layers.IPProtocolTCP), tcp(40000, 443, tSYN)) // 60 bytes
}

// outer is the flow of tunnel i's outer packet.
func outer(ver uint8, i int, proto uint8, sport, dport uint16) flow {
	ep := ep4[i]
	if ver == 6 {
		ep = ep6[i]
	}
	return flow{ver: ver, proto: proto, src: ep[0], dst: ep[1], sport: sport, dport: dport}
}

func mirrorCfg(typ MirrorType, port uint16) Config {
	return Config{Mirrors: []Mirror{{Type: typ, Port: port}}}
}

func TestTunnelsAndMirrors(t *testing.T) {
	in4, in6 := innerPackets()
	P := func(b []byte) gopacket.Payload { return b }
	e4, e6 := eth(layers.EthernetTypeIPv4), eth(layers.EthernetTypeIPv6)
	const (
		ipip  = layers.IPProtocolIPv4
		ip6ip = layers.IPProtocolIPv6
		greN  = layers.IPProtocolGRE
		udpN  = layers.IPProtocolUDP
	)
	var (
		et4, et6, teb = layers.EthernetTypeIPv4, layers.EthernetTypeIPv6, layers.EthernetTypeTransparentEthernetBridging
		mplsUC        = layers.EthernetTypeMPLSUnicast
		erspanII      = layers.EthernetTypeERSPAN
		erspanIII     = layers.EthernetType(0x22eb)
		def           = Config{}
		outerCfg      = Config{TunnelsOuter: true}
		macsCfg       = Config{MACs: true}
		erspanCfg     = mirrorCfg(MirrorERSPAN, 0)
		vxlanMirror   = mirrorCfg(MirrorVXLAN, 0)
	)
	// eth4 and eth6 are the inner Ethernet frames of in4 and in6.
	eth4 := func(vlans ...uint16) []byte { return frameOf(innerEth(et4, vlans...), in4) }
	eth6 := func(vlans ...uint16) []byte { return frameOf(innerEth(et6, vlans...), in6) }
	// one is a case of one frame sent twice, one flow.
	one := func(name string, cfg Config, frame []byte, base flow, l3 int, opts ...func(*flow)) encapCase {
		return encapCase{name: name, cfg: cfg, frames: []sent{{frame, 2}}, want: []flow{fl(base, 2, l3, len(frame), opts...)}}
	}
	// mirror is a case of a mirrored frame sent twice: L2 bytes are the
	// inner frame's.
	mirror := func(name string, cfg Config, frame, inner []byte, base flow, l3 int, opts ...func(*flow)) encapCase {
		return encapCase{name: name, cfg: cfg, frames: []sent{{frame, 2}}, want: []flow{fl(base, 2, l3, len(inner), opts...)}}
	}
	nonIP := func(name string, cfg Config, frame []byte) encapCase {
		return encapCase{name: name, cfg: cfg, frames: []sent{{frame, 1}}, nonIP: 1}
	}

	ersII := &layers.GRE{Protocol: erspanII, SeqPresent: true, Seq: 9}
	vxInGRE := build(e4, o4(1, greN), greP(et4), o4(2, udpN), udp(49152, PortVXLAN), vxlan(5), P(eth4()))
	gtpEcho := &layers.GTPv1U{Version: 1, ProtocolType: 1, MessageType: 1, SequenceNumberFlag: true, SequenceNumber: 7}
	gtpEnd := &layers.GTPv1U{Version: 1, ProtocolType: 1, MessageType: 254, TEID: 0x5555}
	gtpSeq := gtpu(0x2000)
	gtpSeq.SequenceNumberFlag, gtpSeq.SequenceNumber = true, 42
	gtpNPDU := gtpu(0x2001)
	gtpNPDU.NPDUFlag, gtpNPDU.NPDU = true, 3
	pdcp := layers.GTPExtensionHeader{Type: 0xc0, Content: []byte{0x12, 0x34}}
	pduSession := layers.GTPExtensionHeader{Type: 0x85, Content: []byte{0x10, 0x09}}
	opt := func(class uint16, n int) *layers.GeneveOption {
		return &layers.GeneveOption{Class: class, Type: 0x80, Data: make([]byte, n)}
	}
	frag := func(ip *layers.IPv4, offset uint16, mf bool) *layers.IPv4 {
		ip.FragOffset = offset
		if mf {
			ip.Flags = layers.IPv4MoreFragments
		}
		return ip
	}
	pptp := concat([]byte{0x30, 0x01, 0x88, 0x0b, 0x00, 0x04, 0x00, 0x07, 0, 0, 0, 1}, []byte{0xff, 0x03, 0xc0, 0x21})

	// Frames of cases with several frames or flows.
	vxMirror4790 := build(e4, o4(1, udpN), udp(49152, 4790), vxlan(0x78), P(eth4()))
	vxTunnel4789 := build(e4, o4(1, udpN), udp(49152, PortVXLAN), vxlan(0x79), P(eth4()))
	tosIn := ipv4(layers.IPProtocolTCP)
	tosIn.TOS = 0xb8
	tosOut := o4(1, greN)
	tosOut.TOS = 0x28
	withTOS := serialize(tosIn, tcp(1, 2, tACK|tPSH), payload(10)) // 50 bytes
	vxInERSPAN := eth4Of(serialize(o4(2, udpN), udp(49152, PortVXLAN), vxlan(31), P(eth4())))
	erspanInVX := eth4Of(serialize(o4(2, greN), ersII, erspan2(1, 0), P(eth4())))
	greInMirror := eth4Of(serialize(o4(2, greN), greK(et4, 8), P(in4)))
	nest2, nest2Type, nest2ID, nest2EP := nest(in4, nestGRE, nestVXLAN)
	deepest := []nestKind{nestGRE, nestVXLAN, nestGTPU, nestGeneve, nestIPIP}[:maxTunnelDepth]
	nestMax, nestMaxType, nestMaxID, nestMaxEP := nest(in4, deepest...)
	deepInERSPAN := eth4Of(nestMax)
	nest66 := serialize(o6(1, ip6ip), o6(2, ip6ip), P(in6))

	cases := []encapCase{
		one("plain ipv4: no encapsulation fields", def, frameOf(e4, in4), u4, 128),

		// MPLS and PPPoE (with IP tunnels: the innermost tunnel keyed)
		one("mpls then gre: the gre tunnel keyed, labels kept", def, build(eth(mplsUC), mpls(true, 100), o4(1, greN), greK(et4, 4), P(in4)),
			u4, 128, tun(TunnelGRE, 4, ep4[1]), withLabels(lse(100, true))),
		one("pppoe then gre", def, pppoeFrame(eth(layers.EthernetTypePPPoESession), pppIPv4, o4(1, greN), greP(et4), P(in4)),
			u4, 128, tun(TunnelGRE, 0, ep4[1])),

		// IP-in-IP
		one("ipv4 in ipv4", def, build(e4, o4(1, ipip), P(in4)), u4, 128, tun(TunnelIPIP, 0, ep4[1])),
		one("ipv6 in ipv4 (6in4)", def, build(e4, o4(1, ip6ip), P(in6)), t6, 60, tun(TunnelIPIP, 0, ep4[1])),
		one("ipv4 in ipv6", def, build(e6, o6(1, ipip), P(in4)), u4, 128, tun(TunnelIPIP, 0, ep6[1])),
		one("ipv6 in ipv6", def, build(e6, o6(1, ip6ip), P(in6)), t6, 60, tun(TunnelIPIP, 0, ep6[1])),
		one("ipv6 in ipv6 in ipv6: the inner tunnel's endpoints", def, build(e6, P(nest66)), t6, 60, tun(TunnelIPIP, 0, ep6[2])),

		// GRE
		one("gre, ipv4 in ipv4, no key: id 0", def, build(e4, o4(1, greN), greP(et4), P(in4)), u4, 128, tun(TunnelGRE, 0, ep4[1])),
		one("gre: TOS and TCP flags are the innermost packet's", def, build(e4, tosOut, greP(et4), P(withTOS)),
			flow{ver: 4, proto: 6, src: "198.18.0.1", dst: "198.18.0.2", sport: 1, dport: 2, flags: tACK | tPSH, tos: 0xb8}, 50, tun(TunnelGRE, 0, ep4[1])),
		one("gre key: the id", def, build(e4, o4(1, greN), greK(et4, 0xdeadbeef), P(in4)), u4, 128, tun(TunnelGRE, 0xdeadbeef, ep4[1])),
		one("gre checksum, key and sequence number", def,
			build(e4, o4(1, greN), &layers.GRE{Protocol: et4, ChecksumPresent: true, KeyPresent: true, Key: 77, SeqPresent: true, Seq: 5}, P(in4)),
			u4, 128, tun(TunnelGRE, 77, ep4[1])),
		one("gre sequence number only", def, build(e4, o4(1, greN), &layers.GRE{Protocol: et6, SeqPresent: true, Seq: 5}, P(in6)),
			t6, 60, tun(TunnelGRE, 0, ep4[1])),
		one("gre, ipv6 in ipv6", def, build(e6, o6(1, greN), greK(et6, 6), P(in6)), t6, 60, tun(TunnelGRE, 6, ep6[1])),
		one("gre, ipv4 in ipv6 after a destination options header", def,
			build(e6, o6(1, layers.IPProtocolIPv6Destination), ext6(greN, 0), greK(et4, 7), P(in4)), u4, 128, tun(TunnelGRE, 7, ep6[1])),
		one("gre transparent ethernet bridging: the outer VLAN tag keyed, the inner frame's QinQ not", def,
			build(eth(et4, 10), o4(1, greN), greK(teb, 9), P(eth4(30, 31))), u4, 128, tun(TunnelGRE, 9, ep4[1]), inVLAN(10)),
		one("nvgre (VSID 0x123456, flow id 0x2a): the whole key", def,
			build(e4, o4(1, greN), greK(teb, 0x123456<<8|0x2a), P(eth6())), t6, 60, tun(TunnelGRE, 0x1234562a, ep4[1])),
		one("gre carrying mpls: gre keyed, the labels kept", def,
			build(e4, o4(1, greN), greK(mplsUC, 3), mpls(true, 100, 200), P(in4)),
			u4, 128, tun(TunnelGRE, 3, ep4[1]), withLabels(lse(100, false), lse(200, true))),
		one("gre version 1 (pptp): the outer GRE flow", def, build(e4, o4(1, greN), pptp), outer(4, 1, 47, 0, 0), 20+16),
		one("gre carrying erspan II, erspan not a mirror: the outer GRE flow", def,
			build(e4, o4(1, greN), ersII, erspan2(0x155, 0), P(eth4())), outer(4, 1, 47, 0, 0), 20+8+8+142),
		one("gre carrying erspan III, erspan not a mirror: the outer GRE flow", def,
			build(e4, o4(1, greN), greP(erspanIII), erspan3(2, 1, false), P(eth4())), outer(4, 1, 47, 0, 0), 20+4+12+142),
		one("gre carrying ARP (not decapsulated): the outer GRE flow", def,
			build(e4, o4(1, greN), greP(layers.EthernetTypeARP), payload(28)), outer(4, 1, 47, 0, 0), 20+4+28),

		// VXLAN
		one("vxlan, ipv4 inner", def, build(e4, o4(1, udpN), udp(49152, PortVXLAN), vxlan(5001), P(eth4())),
			u4, 128, tun(TunnelVXLAN, 5001, ep4[1])),
		one("vxlan: the outer VLAN tag keyed, the inner frame's QinQ not", def,
			build(eth(et4, 20), o4(1, udpN), udp(49152, PortVXLAN), vxlan(5002), P(eth4(30, 31))),
			u4, 128, tun(TunnelVXLAN, 5002, ep4[1]), inVLAN(20)),
		one("vxlan over ipv6, ipv6 inner, 24-bit VNI", def, build(e6, o6(1, udpN), udp(49152, PortVXLAN), vxlan(0xabcdef), P(eth6())),
			t6, 60, tun(TunnelVXLAN, 0xabcdef, ep6[1])),
		one("vxlan on a configured second port", Config{VXLANPorts: []uint16{PortVXLAN, 8472}},
			build(e4, o4(1, udpN), udp(49152, 8472), vxlan(5003), P(eth4())), u4, 128, tun(TunnelVXLAN, 5003, ep4[1])),
		one("vxlan on a port not configured: a UDP flow", def,
			build(e4, o4(1, udpN), udp(49152, 8472), vxlan(5004), P(eth4())), outer(4, 1, 17, 49152, 8472), 20+8+8+142),
		one("vxlan source port, not destination: a UDP flow", def,
			build(e4, o4(1, udpN), udp(PortVXLAN, 9999), vxlan(5005), P(eth4())), outer(4, 1, 17, PortVXLAN, 9999), 20+8+8+142),
		one("vxlan carrying mpls: vxlan keyed, the labels kept", def,
			build(e4, o4(1, udpN), udp(49152, PortVXLAN), vxlan(5006), P(frameOf(innerEth(mplsUC), concat(mpls(true, 300), in4)))),
			u4, 128, tun(TunnelVXLAN, 5006, ep4[1]), withLabels(lse(300, true))),
		nonIP("vxlan carrying ARP: non-IP", def, build(e4, o4(1, udpN), udp(49152, PortVXLAN), vxlan(5007),
			P(build(innerEth(layers.EthernetTypeARP), &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: et4, HwAddressSize: 6,
				ProtAddressSize: 4, Operation: 1, SourceHwAddress: macC, SourceProtAddress: v4a, DstHwAddress: make([]byte, 6), DstProtAddress: v4b})))),

		// Geneve
		one("geneve, ethernet inner", def, build(e4, o4(1, udpN), udp(49152, PortGeneve), geneve(0x10, teb), P(eth4())),
			u4, 128, tun(TunnelGeneve, 0x10, ep4[1])),
		one("geneve with options (8 + 12 bytes), ipv4 directly", def,
			build(e4, o4(1, udpN), udp(49152, PortGeneve), geneve(0x11, et4, opt(0x0102, 4), opt(0xffff, 8)), P(in4)),
			u4, 128, tun(TunnelGeneve, 0x11, ep4[1])),
		one("geneve over ipv6, ipv6 directly", def, build(e6, o6(1, udpN), udp(49152, PortGeneve), geneve(0xfedcba, et6), P(in6)),
			t6, 60, tun(TunnelGeneve, 0xfedcba, ep6[1])),
		one("geneve on a configured second port", Config{GenevePorts: []uint16{PortGeneve, 7000}},
			build(e4, o4(1, udpN), udp(49152, 7000), geneve(0x12, teb), P(eth6())), t6, 60, tun(TunnelGeneve, 0x12, ep4[1])),

		// GTP-U
		one("gtp-u, ipv4", def, build(e4, o4(1, udpN), udp(PortGTPU, PortGTPU), gtpu(0x1000), P(in4)), u4, 128, tun(TunnelGTPU, 0x1000, ep4[1])),
		one("gtp-u with a sequence number (12-byte header), ipv6", def, build(e4, o4(1, udpN), udp(40000, PortGTPU), gtpSeq, P(in6)),
			t6, 60, tun(TunnelGTPU, 0x2000, ep4[1])),
		one("gtp-u with an N-PDU number (12-byte header), over ipv6", def, build(e6, o6(1, udpN), udp(40000, PortGTPU), gtpNPDU, P(in4)),
			u4, 128, tun(TunnelGTPU, 0x2001, ep6[1])),
		one("gtp-u with a PDU session container extension header", def,
			build(e4, o4(1, udpN), udp(PortGTPU, PortGTPU), gtpu(0xffffffff, pduSession), P(in4)), u4, 128, tun(TunnelGTPU, 0xffffffff, ep4[1])),
		one("gtp-u with four extension headers: the most followed", def,
			build(e4, o4(1, udpN), udp(PortGTPU, PortGTPU), gtpu(0x3000, pduSession, pdcp, pdcp, pdcp), P(in6)), t6, 60, tun(TunnelGTPU, 0x3000, ep4[1])),
		one("gtp-u echo request: the outer UDP flow", def, build(e4, o4(1, udpN), udp(40000, PortGTPU), gtpEcho, payload(2)),
			outer(4, 1, 17, 40000, PortGTPU), 20+8+12+2),
		one("gtp-u end marker: the outer UDP flow", def, build(e4, o4(1, udpN), udp(PortGTPU, PortGTPU), gtpEnd),
			outer(4, 1, 17, PortGTPU, PortGTPU), 20+8+8),
		one("gtp-u G-PDU not carrying IP: the outer UDP flow", def, build(e4, o4(1, udpN), udp(PortGTPU, PortGTPU), gtpu(0x4000), payload(40)),
			outer(4, 1, 17, PortGTPU, PortGTPU), 20+8+8+40),
		// Not GTP-U version 1 on its port (GTP' has PT 0; zeek's
		// gtp4_udp_2152_inside.pcap has RTP there): the UDP flow.
		one("udp 2152, version 2: not gtp-u, a UDP flow", def, mutate(build(e4, o4(1, udpN), udp(PortGTPU, PortGTPU), gtpu(1), P(in4)), func(f []byte) { f[42] = 0x50 }),
			outer(4, 1, 17, PortGTPU, PortGTPU), 20+8+8+128),
		one("udp 2152, protocol type 0 (GTP'): not gtp-u, a UDP flow", def, mutate(build(e4, o4(1, udpN), udp(PortGTPU, PortGTPU), gtpu(1), P(in4)), func(f []byte) { f[42] = 0x20 }),
			outer(4, 1, 17, PortGTPU, PortGTPU), 20+8+8+128),
		one("gtp-u source port only: a UDP flow", def, build(e4, o4(1, udpN), udp(PortGTPU, 40000), gtpu(0x4001), P(in4)),
			outer(4, 1, 17, PortGTPU, 40000), 20+8+8+128),

		// Nesting
		one("nested 2: vxlan in gre, the vxlan keyed with its endpoints", def, build(e4, P(nest2)), u4, 128, tun(nest2Type, nest2ID, nest2EP)),
		one("nested maxTunnelDepth deep: the innermost keyed", def, build(e4, P(nestMax)), u4, 128, tun(nestMaxType, nestMaxID, nestMaxEP)),

		// Outer fragments are not decapsulated.
		{name: "outer ipv4 non-first fragment carrying gre: the outer flow", cfg: def,
			frames: []sent{{build(e4, frag(o4(1, greN), 100, false), greP(et4), P(in4)), 2}},
			want:   []flow{fl(outer(4, 1, 47, 0, 0), 2, 20+4+128, 14+20+4+128)}, fragments: 2},
		{name: "outer ipv6 non-first fragment carrying gre: the outer flow", cfg: def,
			frames: []sent{{build(e6, o6(1, layers.IPProtocolIPv6Fragment), frag6(greN, 10, false), greP(et4), P(in4)), 2}},
			want:   []flow{fl(outer(6, 1, 47, 0, 0), 2, 40+8+4+128, 14+40+8+4+128)}, fragments: 2},
		{name: "outer ipv4 first fragment carrying gre: the outer flow", cfg: def, fragments: -1,
			frames: []sent{{build(e4, frag(o4(1, greN), 0, true), greP(et4), P(in4)), 2}},
			want:   []flow{fl(outer(4, 1, 47, 0, 0), 2, 20+4+128, 14+20+4+128)}},
		// A first fragment keeps its ports, as a plain one does.
		{name: "outer ipv4 first fragment carrying vxlan: the outer flow", cfg: def, fragments: -1,
			frames: []sent{{build(e4, frag(o4(1, udpN), 0, true), udp(49152, PortVXLAN), vxlan(1), P(eth4())), 2}},
			want:   []flow{fl(outer(4, 1, 17, 49152, PortVXLAN), 2, 20+8+8+142, 14+20+8+8+142)}},

		// Tunnels counted as the outer packet
		one("tunnels outer: gre", outerCfg, build(e4, o4(1, greN), greK(et4, 5), P(in4)), outer(4, 1, 47, 0, 0), 20+8+128),
		one("tunnels outer: vxlan", outerCfg, build(e4, o4(1, udpN), udp(49152, PortVXLAN), vxlan(5), P(eth4())),
			outer(4, 1, 17, 49152, PortVXLAN), 20+8+8+142),
		one("tunnels outer: ipv6 in ipv4", outerCfg, build(e4, o4(1, ip6ip), P(in6)), outer(4, 1, 41, 0, 0), 20+60),
		one("tunnels outer: gtp-u over ipv6", outerCfg, build(e6, o6(1, udpN), udp(PortGTPU, PortGTPU), gtpu(1), P(in4)),
			outer(6, 1, 17, PortGTPU, PortGTPU), 40+8+8+128),
		one("tunnels outer: geneve", outerCfg, build(e4, o4(1, udpN), udp(49152, PortGeneve), geneve(9, et6), P(in6)),
			outer(4, 1, 17, 49152, PortGeneve), 20+8+8+60),
		one("tunnels outer: mpls still parsed", outerCfg, build(eth(mplsUC), mpls(true, 100, 200), P(in4)),
			u4, 128, encapOnly(TunnelMPLS, 100), withLabels(lse(100, false), lse(200, true))),
		one("tunnels outer: mpls then gre, the gre's outer packet", outerCfg, build(eth(mplsUC), mpls(true, 100), o4(1, greN), greP(et4), P(in4)),
			outer(4, 1, 47, 0, 0), 20+4+128, encapOnly(TunnelMPLS, 100), withLabels(lse(100, true))),
		one("tunnels outer: pppoe still parsed", outerCfg, pppoeFrame(eth(layers.EthernetTypePPPoESession), pppIPv6, P(in6)),
			t6, 60, encapOnly(TunnelPPPoE, 0x1234)),

		// MACs: of the received frame or of a mirror's inner frame, never
		// of a tunnel's inner frame
		one("macs: plain", macsCfg, frameOf(e4, in4), u4, 128, withMACs(macA, macB)),
		one("macs: mpls", macsCfg, build(eth(mplsUC), mpls(true, 16), P(in4)), u4, 128,
			withMACs(macA, macB), encapOnly(TunnelMPLS, 16), withLabels(lse(16, true))),
		one("macs: vxlan, the outer frame's", macsCfg, build(e4, o4(1, udpN), udp(49152, PortVXLAN), vxlan(5), P(eth4())),
			u4, 128, withMACs(macA, macB), tun(TunnelVXLAN, 5, ep4[1])),
		one("macs: gre bridging, the outer frame's", macsCfg, build(e4, o4(1, greN), greP(teb), P(eth6())),
			t6, 60, withMACs(macA, macB), tun(TunnelGRE, 0, ep4[1])),
		mirror("macs: a mirror's inner frame's", Config{MACs: true, Mirrors: vxlanMirror.Mirrors},
			build(e4, o4(1, udpN), udp(49152, PortVXLAN), vxlan(0x77), P(eth4())), eth4(), u4, 128, withMACs(macC, macD), mirrored(MirrorVXLAN, 0x77)),

		// Mirrors: the inner frame counted as if received, L2 bytes its own
		mirror("erspan type I: session 0", erspanCfg, build(e4, o4(1, greN), greP(erspanII), P(eth4())), eth4(),
			u4, 128, mirrored(MirrorERSPAN, 0)),
		mirror("erspan type II, inner 802.1Q: its tag keyed, the session's low 10 bits", erspanCfg,
			build(e4, o4(1, greN), ersII, erspan2(0x155, 77), P(eth4(30))), eth4(30), u4, 128, mirrored(MirrorERSPAN, 0x155), inVLAN(30)),
		mirror("erspan type II over a VLAN-tagged outer frame: the inner frame's (no) tag keyed", erspanCfg,
			build(eth(et4, 99), o4(1, greN), ersII, erspan2(0x3ff, 0), P(eth4())), eth4(), u4, 128, mirrored(MirrorERSPAN, 0x3ff)),
		mirror("erspan type II over ipv6", erspanCfg,
			build(e6, o6(1, greN), ersII, erspan2(0x001, 0), P(eth6())), eth6(), t6, 60, mirrored(MirrorERSPAN, 1)),
		mirror("erspan type III", erspanCfg, build(e4, o4(1, greN), greP(erspanIII), erspan3(2, 0x2aa, false), P(eth6())), eth6(),
			t6, 60, mirrored(MirrorERSPAN, 0x2aa)),
		mirror("erspan type III with the platform subheader (O bit), GRE sequence number, inner 802.1Q", erspanCfg,
			build(e4, o4(1, greN), &layers.GRE{Protocol: erspanIII, SeqPresent: true, Seq: 3}, erspan3(2, 0x3ff, true), P(eth4(10))), eth4(10),
			u4, 128, mirrored(MirrorERSPAN, 0x3ff), inVLAN(10)),
		mirror("erspan carrying a vxlan tunnel: the tunnel keyed inside the mirror", erspanCfg,
			build(e4, o4(1, greN), ersII, erspan2(0x155, 0), P(vxInERSPAN)), vxInERSPAN,
			u4, 128, mirrored(MirrorERSPAN, 0x155), tun(TunnelVXLAN, 31, ep4[2])),
		mirror("erspan carrying tunnels maxTunnelDepth deep: a mirror is not a tunnel level", erspanCfg,
			build(e4, o4(1, greN), ersII, erspan2(0x156, 0), P(deepInERSPAN)), deepInERSPAN,
			u4, 128, mirrored(MirrorERSPAN, 0x156), tun(nestMaxType, nestMaxID, nestMaxEP)),
		mirror("vxlan mirror, inner 802.1Q", vxlanMirror, build(e4, o4(1, udpN), udp(49152, PortVXLAN), vxlan(0x77), P(eth4(40))), eth4(40),
			u4, 128, mirrored(MirrorVXLAN, 0x77), inVLAN(40)),
		mirror("vxlan mirror over ipv6", vxlanMirror, build(e6, o6(1, udpN), udp(49152, PortVXLAN), vxlan(0x7a), P(eth6())), eth6(),
			t6, 60, mirrored(MirrorVXLAN, 0x7a)),
		{name: "vxlan mirror on port 4790: 4789 is still a tunnel", cfg: mirrorCfg(MirrorVXLAN, 4790),
			frames: []sent{{vxMirror4790, 1}, {vxTunnel4789, 1}},
			want: []flow{fl(u4, 1, 128, len(eth4()), mirrored(MirrorVXLAN, 0x78)),
				fl(u4, 1, 128, len(vxTunnel4789), tun(TunnelVXLAN, 0x79, ep4[1]))}},
		mirror("geneve mirror with options, ipv6 inside", mirrorCfg(MirrorGeneve, 0),
			build(e4, o4(1, udpN), udp(49152, PortGeneve), geneve(0x99, teb, opt(0x0103, 8)), P(eth6())), eth6(), t6, 60, mirrored(MirrorGeneve, 0x99)),
		mirror("tzsp mirror with padding and tags", mirrorCfg(MirrorTZSP, 0),
			build(e4, o4(1, udpN), udp(49152, PortTZSP), tzsp(0, 0, 40, 4, 0, 0, 0, 7, 41, 2, 0, 142, 10, 1, 0xd0), P(eth4())), eth4(),
			u4, 128, mirrored(MirrorTZSP, 0)),
		mirror("tzsp mirror on port 5555, no tags", mirrorCfg(MirrorTZSP, 5555),
			build(e4, o4(1, udpN), udp(49152, 5555), tzsp(), P(eth4(12))), eth4(12), u4, 128, mirrored(MirrorTZSP, 0), inVLAN(12)),
		one("a mirror only at the outermost layer: a vxlan mirror port inside gre is a UDP flow", vxlanMirror, vxInGRE,
			outer(4, 2, 17, 49152, PortVXLAN), 20+8+8+142, tun(TunnelGRE, 0, ep4[1])),
		one("erspan inside a vxlan tunnel: the GRE flow in the tunnel", erspanCfg,
			build(e4, o4(1, udpN), udp(49152, PortVXLAN), vxlan(6), P(erspanInVX)), outer(4, 2, 47, 0, 0), 20+8+8+142, tun(TunnelVXLAN, 6, ep4[1])),
		mirror("tunnels outer: a mirror still stripped, the tunnel inside counted outer", Config{TunnelsOuter: true, Mirrors: vxlanMirror.Mirrors},
			build(e4, o4(1, udpN), udp(49152, PortVXLAN), vxlan(0x7b), P(greInMirror)), greInMirror,
			outer(4, 2, 47, 0, 0), 20+8+128, mirrored(MirrorVXLAN, 0x7b)),
		one("an erspan mirror leaves vxlan a tunnel", erspanCfg, vxTunnel4789, u4, 128, tun(TunnelVXLAN, 0x79, ep4[1])),
	}
	runEncapCases(t, cases)
}

// eth4Of is an inner Ethernet frame (IPv4) around an IPv4 packet.
func eth4Of(pkt []byte) []byte { return frameOf(innerEth(layers.EthernetTypeIPv4), pkt) }

func TestTunnelsAndMirrorsMalformed(t *testing.T) {
	in4, in6 := innerPackets()
	P := func(b []byte) gopacket.Payload { return b }
	e4 := eth(layers.EthernetTypeIPv4)
	const (
		greN = layers.IPProtocolGRE
		udpN = layers.IPProtocolUDP
	)
	var (
		et4, et6, teb = layers.EthernetTypeIPv4, layers.EthernetTypeIPv6, layers.EthernetTypeTransparentEthernetBridging
		def           = Config{}
		erspanCfg     = mirrorCfg(MirrorERSPAN, 0)
		tzspCfg       = mirrorCfg(MirrorTZSP, 0)
		ersII         = &layers.GRE{Protocol: layers.EthernetTypeERSPAN, SeqPresent: true, Seq: 9}
		erspanIII     = layers.EthernetType(0x22eb)
	)
	eth4 := frameOf(innerEth(et4), in4)
	// short6 is an IPv6 packet (with a destination options header, so
	// that the frame needs no Ethernet padding) whose payload, of the
	// given protocol, is raw: a header cut short ends the frame.
	short6 := func(next layers.IPProtocol, raw ...[]byte) []byte {
		return build(eth(layers.EthernetTypeIPv6), o6(1, layers.IPProtocolIPv6Destination), ext6(next, 0), concat(raw...))
	}
	hdr := func(ls ...gopacket.SerializableLayer) []byte { return serialize(ls...) }
	// Headers at offset 42 (after Ethernet, IPv4, UDP) and 34 (GRE).
	okGRE := build(e4, o4(1, greN), greP(et4), P(in4))
	okGeneve := build(e4, o4(1, udpN), udp(49152, PortGeneve), geneve(5, teb), P(eth4))
	okGTPUExt := build(e4, o4(1, udpN), udp(PortGTPU, PortGTPU), gtpu(1, layers.GTPExtensionHeader{Type: 0x85, Content: []byte{0x10, 0x09}}), P(in4))
	okTZSP := build(e4, o4(1, udpN), udp(49152, PortTZSP), tzsp(), P(eth4))
	pdcp := layers.GTPExtensionHeader{Type: 0xc0, Content: []byte{0x12, 0x34}}
	var manyTags []byte
	for range 200 {
		manyTags = append(manyTags, 10, 1, 0)
	}
	tooDeep, _, _, _ := nest(in4, []nestKind{nestGRE, nestVXLAN, nestGTPU, nestGeneve, nestIPIP}[:maxTunnelDepth+1]...)
	ipipTooDeep, _, _, _ := nest(in4, []nestKind{nestIPIP, nestIPIP, nestIPIP, nestIPIP, nestIPIP}[:maxTunnelDepth+1]...)

	cases := []malformedCase{
		// GRE
		{"gre routing bit", def, mutate(okGRE, func(f []byte) { f[34] |= 0x40 }), "gre_bad_header"},
		{"gre version 2", def, mutate(okGRE, func(f []byte) { f[35] = 2 }), "gre_bad_header"},
		{"gre version 7 with a key", def, mutate(build(e4, o4(1, greN), greK(et4, 1), P(in4)), func(f []byte) { f[35] = 7 }), "gre_bad_header"},
		{"gre header cut short", def, short6(greN, []byte{0, 0}), "gre_truncated"},
		{"gre key cut short", def, short6(greN, []byte{0x20, 0, 0x08, 0, 0, 0}), "gre_truncated"},
		{"gre checksum, key, sequence number: the sequence number cut short", def,
			short6(greN, []byte{0xb0, 0, 0x08, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0}), "gre_truncated"},
		{"gre key in the ethernet padding, not in the packet", def, build(e4, o4(1, greN), P([]byte{0x20, 0, 0x08, 0})), "gre_truncated"},

		// VXLAN
		{"vxlan I flag clear", def, build(e4, o4(1, udpN), udp(49152, PortVXLAN), &layers.VXLAN{VNI: 5}, P(eth4)), "vxlan_no_vni"},
		{"vxlan header cut short", def, short6(udpN, rawL4(udp(49152, PortVXLAN), 5)), "vxlan_truncated"},
		{"vxlan inner ethernet cut short", def, short6(udpN, hdr(udp(49152, PortVXLAN), vxlan(5), payload(10))), "vxlan_truncated"},
		{"vxlan inner ethernet in the ethernet padding", def, build(e4, o4(1, udpN), udp(49152, PortVXLAN), vxlan(5)), "vxlan_truncated"},

		// Geneve
		{"geneve version 1", def, mutate(okGeneve, func(f []byte) { f[42] |= 0x40 }), "geneve_bad_header"},
		{"geneve protocol ARP", def, build(e4, o4(1, udpN), udp(49152, PortGeneve), geneve(5, layers.EthernetTypeARP), payload(28)), "geneve_bad_header"},
		{"geneve options past the packet", def, mutate(okGeneve, func(f []byte) { f[42] = 0x3f }), "geneve_truncated"},
		{"geneve header cut short", def, short6(udpN, rawL4(udp(49152, PortGeneve), 6)), "geneve_truncated"},
		{"geneve option cut short", def, short6(udpN, hdr(udp(49152, PortGeneve), P([]byte{0x01, 0, 0x08, 0, 0, 0, 5, 0, 1, 2, 0x80}))), "geneve_truncated"},

		// GTP-U
		{"gtp-u five extension headers", def,
			build(e4, o4(1, udpN), udp(PortGTPU, PortGTPU), gtpu(1, pdcp, pdcp, pdcp, pdcp, pdcp), P(in4)), "gtpu_bad_header"},
		{"gtp-u header cut short", def, short6(udpN, rawL4(udp(PortGTPU, PortGTPU), 6)), "gtpu_truncated"},
		{"gtp-u sequence number flag, optional fields cut short", def,
			short6(udpN, hdr(udp(PortGTPU, PortGTPU), P([]byte{0x32, 0xff, 0, 2, 0, 0, 0, 1, 0, 0}))), "gtpu_truncated"},
		{"gtp-u extension header past the packet", def, mutate(okGTPUExt, func(f []byte) { f[54] = 255 }), "gtpu_truncated"},

		// ERSPAN (a configured mirror)
		{"erspan type II version 2", erspanCfg, build(e4, o4(1, greN), ersII, &layers.ERSPANII{Version: 2, SessionID: 1}, P(eth4)), "erspan_bad_version"},
		{"erspan type II version 0", erspanCfg, build(e4, o4(1, greN), ersII, &layers.ERSPANII{Version: 0, SessionID: 1}, P(eth4)), "erspan_bad_version"},
		{"erspan type III version 1", erspanCfg, build(e4, o4(1, greN), greP(erspanIII), erspan3(1, 1, false), P(eth4)), "erspan_bad_version"},
		{"erspan type II header cut short", erspanCfg, short6(greN, hdr(ersII), make([]byte, 5)), "erspan_truncated"},
		{"erspan type III header cut short", erspanCfg, short6(greN, hdr(greP(erspanIII)), erspan3(2, 1, false)[:8]), "erspan_truncated"},
		{"erspan type III platform subheader cut short", erspanCfg, short6(greN, hdr(greP(erspanIII)), erspan3(2, 1, true)[:16]), "erspan_truncated"},

		// TZSP (a configured mirror)
		{"tzsp version 2", tzspCfg, mutate(okTZSP, func(f []byte) { f[42] = 2 }), "tzsp_bad_header"},
		{"tzsp type 1 (transmitted)", tzspCfg, mutate(okTZSP, func(f []byte) { f[43] = 1 }), "tzsp_bad_header"},
		{"tzsp encapsulation 18 (802.11)", tzspCfg, mutate(okTZSP, func(f []byte) { f[45] = 18 }), "tzsp_bad_header"},
		// "not received" (the enum's comment): a keepalive (type 4)
		// carries no frame.
		{"tzsp type 4 (keepalive)", tzspCfg, mutate(okTZSP, func(f []byte) { f[43] = 4 }), "tzsp_bad_header"},
		{"tzsp 200 tags", tzspCfg, build(e4, o4(1, udpN), udp(49152, PortTZSP), tzsp(manyTags...), P(eth4)), "tzsp_bad_header"},
		{"tzsp header cut short", tzspCfg, short6(udpN, rawL4(udp(49152, PortTZSP), 3)), "tzsp_truncated"},
		{"tzsp tags without END", tzspCfg, short6(udpN, hdr(udp(49152, PortTZSP), P([]byte{1, 0, 0, 1, 10, 1, 0, 0, 0}))), "tzsp_truncated"},
		{"tzsp tag length past the packet", tzspCfg, short6(udpN, hdr(udp(49152, PortTZSP), P([]byte{1, 0, 0, 1, 10, 200, 0}))), "tzsp_truncated"},

		// Nesting
		{"tunnels nested maxTunnelDepth+1 deep", def, build(e4, P(tooDeep)), "tunnel_too_deep"},
		{"ip-in-ip nested maxTunnelDepth+1 deep", def, build(e4, P(ipipTooDeep)), "tunnel_too_deep"},

		// The packet inside a tunnel or mirror, by the rules of plain IP
		{"vxlan inner ipv4 IHL < 5", def,
			build(e4, o4(1, udpN), udp(49152, PortVXLAN), vxlan(5), P(mutate(eth4, func(f []byte) { f[14] = 0x44 }))), "ipv4_bad_ihl"},
		{"gre inner ipv6 cut short", def, build(e4, o4(1, greN), greP(et6), P(in6[:30])), "ipv6_truncated"},
		{"ip-in-ip inner ipv4 total length past the frame", def,
			mutate(build(e4, o4(1, layers.IPProtocolIPv4), P(in4)), func(f []byte) { binary.BigEndian.PutUint16(f[14+20+2:], 1500) }), "ipv4_bad_length"},
		{"gtp-u inner udp cut short", def,
			build(e4, o4(1, udpN), udp(PortGTPU, PortGTPU), gtpu(1), P(serialize(ipv4(udpN), payload(4)))), "l4_truncated"},
		{"geneve protocol IPv4 carrying IPv6", def, build(e4, o4(1, udpN), udp(49152, PortGeneve), geneve(5, et4), P(in6)), "ip_version_mismatch"},
		{"gre mpls: bottom of stack and nothing after", def,
			short6(greN, hdr(greP(layers.EthernetTypeMPLSUnicast)), mpls(true, 100)), "mpls_truncated"},
		// Headers inside a tunnel end with the outer IP packet, not with
		// the frame: Ethernet padding is no header (as for L4).
		{"gre mpls: bottom of stack at the packet's end, ethernet padding after", def,
			build(e4, o4(1, greN), greP(layers.EthernetTypeMPLSUnicast), mpls(true, 100)), "mpls_truncated"},
		{"gre bridging: no inner frame in the packet, 22 bytes of ethernet padding", def,
			build(e4, o4(1, greN), greP(teb)), "eth_truncated"},
		{"vxlan mirror: inner ipv4 total length past the frame", mirrorCfg(MirrorVXLAN, 0),
			build(e4, o4(1, udpN), udp(49152, PortVXLAN), vxlan(5), P(mutate(eth4, func(f []byte) { binary.BigEndian.PutUint16(f[16:], 1500) }))),
			"ipv4_bad_length"},
	}
	runMalformedCases(t, cases, map[string]string{
		"gre header cut short":   "2 bytes, too short for tshark to try GRE",
		"gtp-u header cut short": "6 bytes, too short for tshark to try GTP",
		"tzsp header cut short":  "3 bytes, too short for tshark to try TZSP",
	})
}

func TestParseMirror(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Mirror
		ok   bool
	}{
		{"erspan", Mirror{Type: MirrorERSPAN}, true},
		{"vxlan", Mirror{Type: MirrorVXLAN}, true},
		{"vxlan:4790", Mirror{Type: MirrorVXLAN, Port: 4790}, true},
		{"geneve:65535", Mirror{Type: MirrorGeneve, Port: 65535}, true},
		{"tzsp", Mirror{Type: MirrorTZSP}, true},
		{"erspan:4789", Mirror{}, false}, // GRE: no port
		{"vxlan:0", Mirror{}, false},
		{"tzsp:65536", Mirror{}, false},
		{"geneve:", Mirror{}, false},
		{"gre", Mirror{}, false},
		{"", Mirror{}, false},
	} {
		m, err := ParseMirror(tc.in)
		if (err == nil) != tc.ok || m != tc.want {
			t.Errorf("ParseMirror(%q) = %+v, %v; want %+v (ok %v)", tc.in, m, err, tc.want, tc.ok)
		}
		if tc.ok {
			if back, err := ParseMirror(m.String()); err != nil || back != m {
				t.Errorf("%q: String %q parses back as %+v, %v", tc.in, m.String(), back, err)
			}
		}
	}
}

// The encapsulation settings a Config refuses name their field.
func TestEncapConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   Config
		field string
	}{
		{"three VXLAN ports", Config{VXLANPorts: []uint16{1, 2, 3}}, "VXLANPorts"},
		{"three Geneve ports", Config{GenevePorts: []uint16{1, 2, 3}}, "GenevePorts"},
		{"a mirror twice", Config{Mirrors: []Mirror{{Type: MirrorVXLAN}, {Type: MirrorVXLAN, Port: 4790}}}, "Mirrors"},
		{"an unknown mirror", Config{Mirrors: []Mirror{{Type: 9}}}, "Mirrors"},
	} {
		err := tc.cfg.setDefaults()
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Field != tc.field {
			t.Errorf("%s: %v; want a ConfigError for %s", tc.name, err, tc.field)
		}
	}
	c := Config{Mirrors: []Mirror{{Type: MirrorERSPAN}, {Type: MirrorGeneve}, {Type: MirrorTZSP, Port: 5555}}}
	if err := c.setDefaults(); err != nil {
		t.Fatal(err)
	}
	if c.Mirrors[0].Port != 0 || c.Mirrors[1].Port != PortGeneve || c.Mirrors[2].Port != 5555 ||
		len(c.VXLANPorts) != 1 || c.VXLANPorts[0] != PortVXLAN || len(c.GenevePorts) != 0 {
		t.Errorf("defaults (the Geneve mirror's port is no tunnel port): %+v", c)
	}
}

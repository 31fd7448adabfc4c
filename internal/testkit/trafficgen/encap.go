package trafficgen

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/xdpflow/xdpflow/schemas"
)

// Encapsulated traffic (issue #13): a conversation carried in tunnels and
// remote-mirroring encapsulations, and what a flow probe must count of
// it, computed from the headers built here, under each way the probe can
// be set to look at it (View).

// Extras are what a flow probe keys and exports with a flow besides its
// IP conversation and VLAN (schemas/FIELDS.md): zero for a plain frame.
type Extras struct {
	TunnelType           schemas.TunnelType
	TunnelID             uint32
	TunnelSrc, TunnelDst netip.Addr // an IP tunnel's outer endpoints (IPv4: 4-byte)
	MirrorType           schemas.MirrorType
	ObservationPoint     uint32                        // the mirror session
	SrcMAC, DstMAC       schemas.MAC                   // with --macs
	MPLSLabels           [schemas.MaxMplsLabels]uint32 // label stack entries, top first, as on the wire
}

// EncapKind is one encapsulation header.
type EncapKind uint8

const (
	EncapMPLS      EncapKind = iota + 1 // a label stack (Labels), IP inside
	EncapPPPoE                          // a PPPoE session (ID), IP inside
	EncapGRE                            // GRE carrying IP or what the next Encap is; ID: the key, none when 0
	EncapGREBridge                      // GRE transparent Ethernet bridging: an Ethernet frame; ID: the key, none when 0
	EncapIPIP                           // IPv4 or IPv6 in IP (protocol 4 or 41)
	EncapVXLAN                          // an Ethernet frame; ID: the VNI
	EncapGeneve                         // an Ethernet frame; ID: the VNI
	EncapGTPU                           // IP; ID: the TEID

	// Remote mirroring, each carrying an Ethernet frame: stripped only as
	// the outermost encapsulation, and only with --mirror-encap.
	EncapERSPANII    // GRE; ID: the session (10 bits)
	EncapERSPANIII   // GRE; ID: the session (10 bits)
	EncapVXLANMirror // UDP; ID: the VNI
	EncapTZSP        // UDP
)

func (k EncapKind) mirror() bool { return k >= EncapERSPANII }

// carriesEthernet says the encapsulation carries an Ethernet frame.
func (k EncapKind) carriesEthernet() bool {
	return k == EncapGREBridge || k == EncapVXLAN || k == EncapGeneve || k.mirror()
}

// udpPorts are the kind's default UDP ports (0, 0: not UDP).
func (k EncapKind) udpPorts() (src, dst uint16) {
	switch k {
	case EncapVXLAN, EncapVXLANMirror:
		return 49152, PortVXLAN
	case EncapGeneve:
		return 49152, PortGeneve
	case EncapGTPU:
		return PortGTPU, PortGTPU
	case EncapTZSP:
		return 49152, PortTZSP
	}
	return 0, 0
}

// Encap is one encapsulation header (with its outer IP header when it has
// one).
type Encap struct {
	Kind             EncapKind
	ID               uint32
	Labels           []uint32   // EncapMPLS: label values, top first
	Src, Dst         netip.Addr // the outer IP header (all but MPLS and PPPoE)
	SrcPort, DstPort uint16     // UDP kinds: 0 is the kind's default (source 49152; GTP-U 2152)
	VLAN             uint16     // an 802.1Q tag on the Ethernet frame carried (0: none)
}

// EncapFlow is Packets frames, each the conversation Flow (addresses,
// ports, protocol, payload; VLAN and InnerVLAN tag the outer frame)
// inside Encaps, outermost first.
type EncapFlow struct {
	Name string
	Flow
	Encaps []Encap
}

// View is how the probe is set to look at encapsulations.
type View struct {
	TunnelsOuter bool // --tunnels outer
	Mirrors      bool // --mirror-encap with every MirrorEncaps of the profile
	MACs         bool // --macs
}

// MirrorEncaps are the --mirror-encap values that strip the profile's
// mirror encapsulations.
func MirrorEncaps(flows []EncapFlow) []string {
	var out []string
	for _, f := range flows {
		if len(f.Encaps) == 0 || !f.Encaps[0].Kind.mirror() {
			continue
		}
		e := f.Encaps[0]
		_, def := e.Kind.udpPorts()
		port := e.DstPort
		var s string
		switch e.Kind {
		case EncapERSPANII, EncapERSPANIII:
			s = "erspan"
		case EncapVXLANMirror:
			s = "vxlan"
		case EncapTZSP:
			s = "tzsp"
		}
		if port != 0 && port != def {
			s += ":" + strconv.Itoa(int(port))
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// BuildEncap builds every flow's frame (outer frame from srcMAC to
// dstMAC) and what a probe set as v must count of it.
func BuildEncap(flows []EncapFlow, srcMAC, dstMAC net.HardwareAddr, v View) ([]Built, error) {
	out := make([]Built, len(flows))
	for i, f := range flows {
		b, err := f.build(srcMAC, dstMAC, v)
		if err != nil {
			return nil, fmt.Errorf("trafficgen: %s: %w", f.Name, err)
		}
		out[i] = b
	}
	return out, nil
}

func ethertypeOf(a netip.Addr) layers.EthernetType {
	if a.Is4() {
		return layers.EthernetTypeIPv4
	}
	return layers.EthernetTypeIPv6
}

func (e Encap) ip(proto layers.IPProtocol) gopacket.SerializableLayer {
	if e.Src.Is4() {
		return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: proto, SrcIP: e.Src.AsSlice(), DstIP: e.Dst.AsSlice()}
	}
	return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: e.Src.AsSlice(), DstIP: e.Dst.AsSlice()}
}

func (e Encap) ports() (src, dst uint16) {
	src, dst = e.Kind.udpPorts()
	if e.SrcPort != 0 {
		src = e.SrcPort
	}
	if e.DstPort != 0 {
		dst = e.DstPort
	}
	return src, dst
}

// layer is what building one encapsulation left for the counting: the
// flow of its outer IP packet and that packet's length, and the length of
// the Ethernet frame it carries.
type layer struct {
	proto            layers.IPProtocol
	srcPort, dstPort uint16
	ipLen, carried   int
}

func (f EncapFlow) build(srcMAC, dstMAC net.HardwareAddr, v View) (Built, error) {
	inner, err := f.Packet()
	if err != nil {
		return Built{}, err
	}
	p, et := inner, ethertypeOf(f.Src)
	ls := make([]layer, len(f.Encaps))
	for i := len(f.Encaps) - 1; i >= 0; i-- {
		e := f.Encaps[i]
		if e.Kind != EncapMPLS && e.Kind != EncapPPPoE && (!e.Src.IsValid() || e.Src.Is4() != e.Dst.Is4()) {
			return Built{}, fmt.Errorf("encapsulation %d: outer addresses %v, %v", i, e.Src, e.Dst)
		}
		isIP := et == layers.EthernetTypeIPv4 || et == layers.EthernetTypeIPv6
		var carried []byte
		if e.Kind.carriesEthernet() {
			carried = ethernet(CarriedSrcMAC, CarriedDstMAC, et, p, e.VLAN, 0)
		}
		sport, dport := e.ports()
		l := layer{srcPort: sport, dstPort: dport, carried: len(carried)}
		switch e.Kind {
		case EncapMPLS, EncapPPPoE, EncapIPIP, EncapGTPU:
			if !isIP {
				return Built{}, fmt.Errorf("encapsulation %d (%d) carries IP only", i, e.Kind)
			}
		case EncapERSPANII, EncapERSPANIII:
			if e.ID > 0x3ff {
				return Built{}, fmt.Errorf("ERSPAN session %d: 10 bits", e.ID)
			}
		}
		switch e.Kind {
		case EncapMPLS:
			if len(e.Labels) == 0 || len(e.Labels) > schemas.MaxMplsLabels {
				return Built{}, fmt.Errorf("%d MPLS labels", len(e.Labels))
			}
			p, et = append(MPLS(true, e.Labels...), p...), layers.EthernetTypeMPLSUnicast
			continue
		case EncapPPPoE:
			proto := uint16(PPPIPv4)
			if et == layers.EthernetTypeIPv6 {
				proto = PPPIPv6
			}
			p, et = append(PPPoE(uint16(e.ID), proto, len(p)), p...), layers.EthernetTypePPPoESession
			continue
		case EncapGRE, EncapGREBridge:
			gt := et
			if e.Kind == EncapGREBridge {
				gt, p = layers.EthernetTypeTransparentEthernetBridging, carried
			}
			gre := GRE(gt)
			if e.ID != 0 {
				gre = GREKeyed(gt, e.ID)
			}
			l.proto = layers.IPProtocolGRE
			p = serialize(e.ip(l.proto), gre, gopacket.Payload(p))
		case EncapIPIP:
			l.proto = layers.IPProtocolIPv4
			if et == layers.EthernetTypeIPv6 {
				l.proto = layers.IPProtocolIPv6
			}
			p = serialize(e.ip(l.proto), gopacket.Payload(p))
		case EncapVXLAN, EncapVXLANMirror:
			l.proto = layers.IPProtocolUDP
			p = serialize(e.ip(l.proto), udpLayer(sport, dport), VXLAN(e.ID), gopacket.Payload(carried))
		case EncapGeneve:
			l.proto = layers.IPProtocolUDP
			p = serialize(e.ip(l.proto), udpLayer(sport, dport), Geneve(e.ID, layers.EthernetTypeTransparentEthernetBridging), gopacket.Payload(carried))
		case EncapGTPU:
			l.proto = layers.IPProtocolUDP
			p = serialize(e.ip(l.proto), udpLayer(sport, dport), GTPU(e.ID), gopacket.Payload(p))
		case EncapERSPANII:
			l.proto = layers.IPProtocolGRE
			p = serialize(e.ip(l.proto), ERSPANGRE(uint32(i)), ERSPANII(uint16(e.ID), 0), gopacket.Payload(carried))
		case EncapERSPANIII:
			l.proto = layers.IPProtocolGRE
			p = serialize(e.ip(l.proto), GRE(EthernetTypeERSPANIII), ERSPANIII(2, uint16(e.ID), false), gopacket.Payload(carried))
		case EncapTZSP:
			l.proto = layers.IPProtocolUDP
			p = serialize(e.ip(l.proto), udpLayer(sport, dport), TZSP(), gopacket.Payload(carried))
		default:
			return Built{}, fmt.Errorf("encapsulation %d: unknown kind %d", i, e.Kind)
		}
		l.ipLen, et = len(p), ethertypeOf(e.Src)
		ls[i] = l
	}
	frame := ethernet(srcMAC, dstMAC, et, p, f.VLAN, f.InnerVLAN)

	// What is counted: walk in from the outer frame.
	b := Built{Flow: f.Flow, Frame: frame, L3: len(inner), L2: len(frame)}
	macs := [2]net.HardwareAddr{srcMAC, dstMAC}
	x := &b.Extras
walk:
	for i, e := range f.Encaps {
		k := e.Kind
		switch {
		case k == EncapMPLS:
			for j, l := range e.Labels {
				x.MPLSLabels[j] = LSE(l, j == len(e.Labels)-1)
			}
			if x.TunnelType == schemas.TunnelNone { // an IP tunnel inside keys over it
				x.TunnelType, x.TunnelID = schemas.TunnelMPLS, e.Labels[0]
			}
		case k == EncapPPPoE:
			if x.TunnelType == schemas.TunnelNone {
				x.TunnelType, x.TunnelID = schemas.TunnelPPPoE, e.ID
			}
		case k.mirror() && i == 0 && v.Mirrors:
			// The mirrored frame, counted as if received.
			x.MirrorType, x.ObservationPoint = mirrorTypes[k], e.ID
			if k == EncapTZSP {
				x.ObservationPoint = 0 // TZSP has no session
			}
			b.VLAN, b.InnerVLAN, b.L2 = e.VLAN, 0, ls[i].carried
			macs = [2]net.HardwareAddr{CarriedSrcMAC, CarriedDstMAC}
		case k.mirror() || v.TunnelsOuter:
			// Not stripped, or a tunnel counted as it is: the flow of
			// this IP packet.
			l := ls[i]
			b.Src, b.Dst, b.Proto, b.SrcPort, b.DstPort, b.L3 = e.Src, e.Dst, l.proto, l.srcPort, l.dstPort, l.ipLen
			b.TCPFlags = 0
			break walk
		default:
			x.TunnelType, x.TunnelID, x.TunnelSrc, x.TunnelDst = tunnelTypes[k], e.ID, e.Src.Unmap(), e.Dst.Unmap()
		}
	}
	if v.MACs {
		x.SrcMAC, x.DstMAC = schemas.MAC(macs[0]), schemas.MAC(macs[1])
	}
	return b, nil
}

var tunnelTypes = map[EncapKind]schemas.TunnelType{
	EncapGRE: schemas.TunnelGRE, EncapGREBridge: schemas.TunnelGRE, EncapIPIP: schemas.TunnelIPIP,
	EncapVXLAN: schemas.TunnelVXLAN, EncapGeneve: schemas.TunnelGeneve, EncapGTPU: schemas.TunnelGTPU,
}

var mirrorTypes = map[EncapKind]schemas.MirrorType{
	EncapERSPANII: schemas.MirrorERSPAN, EncapERSPANIII: schemas.MirrorERSPAN,
	EncapVXLANMirror: schemas.MirrorVXLAN, EncapTZSP: schemas.MirrorTZSP,
}

func udpLayer(src, dst uint16) *layers.UDP {
	return &layers.UDP{SrcPort: layers.UDPPort(src), DstPort: layers.UDPPort(dst)}
}

// EncapMix is a mix of encapsulated flows for the end-to-end tests, each
// a conversation of its own, several packets each: MPLS, PPPoE, GRE with
// a key, GRE bridging, IPv4 and IPv6 in IPv4, VXLAN (two tenants with the
// same inner conversation in two VNIs, and the same conversation plain
// beside them: three flows), Geneve, GTP-U, VXLAN in GRE; the mirror
// encapsulations ERSPAN II and III, VXLAN on a mirror port (4790) and
// TZSP. Some outer frames are tagged (802.1Q, QinQ), some carried ones
// too. Addresses come from the benchmarking and documentation ranges
// only: conversations 198.18.0.0/16 and 2001:db8:e::/48, tunnel endpoints
// 198.19.0.0/16 and 2001:db8:f::/48.
func EncapMix() []EncapFlow {
	a4 := func(s string) netip.Addr { return netip.MustParseAddr("198.18." + s) }
	e4 := func(s string) netip.Addr { return netip.MustParseAddr("198.19." + s) }
	a6 := func(s string) netip.Addr { return netip.MustParseAddr("2001:db8:e::" + s) }
	e6 := func(s string) netip.Addr { return netip.MustParseAddr("2001:db8:f::" + s) }
	udp, tcp := layers.IPProtocolUDP, layers.IPProtocolTCP
	const ack, psh = 0x10, 0x08
	tenant := Flow{Src: a4("3.1"), Dst: a4("3.2"), Proto: udp, SrcPort: 5000, DstPort: 5001, VLAN: 20, Payload: 300}
	withPackets := func(f Flow, n int) Flow { f.Packets = n; return f }
	return []EncapFlow{
		{Name: "mpls, two labels", Flow: Flow{Src: a4("1.1"), Dst: a4("1.2"), Proto: udp, SrcPort: 1001, DstPort: 2001, Payload: 100, Packets: 10},
			Encaps: []Encap{{Kind: EncapMPLS, Labels: []uint32{100, 200}}}},
		{Name: "pppoe over qinq, ipv6 inside", Flow: Flow{Src: a6("1"), Dst: a6("2"), Proto: tcp, SrcPort: 40002, DstPort: 443, TCPFlags: ack | psh,
			VLAN: 300, InnerVLAN: 7, Payload: 200, Packets: 8},
			Encaps: []Encap{{Kind: EncapPPPoE, ID: 0x1234}}},
		{Name: "gre with a key", Flow: Flow{Src: a4("2.1"), Dst: a4("2.2"), Proto: udp, SrcPort: 1003, DstPort: 2003, Payload: 120, Packets: 12},
			Encaps: []Encap{{Kind: EncapGRE, ID: 0x1001, Src: e4("0.1"), Dst: e4("0.2")}}},
		{Name: "gre bridging over ipv6, a tagged frame inside", Flow: Flow{Src: a6("3"), Dst: a6("4"), Proto: udp, SrcPort: 1004, DstPort: 2004, Payload: 80, Packets: 7},
			Encaps: []Encap{{Kind: EncapGREBridge, ID: 0x2002, Src: e6("1"), Dst: e6("2"), VLAN: 33}}},
		{Name: "ipv4 in ipv4", Flow: Flow{Src: a4("4.1"), Dst: a4("4.2"), Proto: tcp, SrcPort: 40005, DstPort: 22, TCPFlags: ack, Payload: 64, Packets: 9},
			Encaps: []Encap{{Kind: EncapIPIP, Src: e4("0.5"), Dst: e4("0.6")}}},
		{Name: "ipv6 in ipv4", Flow: Flow{Src: a6("5"), Dst: a6("6"), Proto: layers.IPProtocolICMPv6, DstPort: 128 << 8, Payload: 56, Packets: 6},
			Encaps: []Encap{{Kind: EncapIPIP, Src: e4("0.7"), Dst: e4("0.8")}}},
		{Name: "vxlan tenant 100, outer vlan 20", Flow: withPackets(tenant, 11),
			Encaps: []Encap{{Kind: EncapVXLAN, ID: 100, Src: e4("1.1"), Dst: e4("1.2"), SrcPort: 49153}}},
		{Name: "vxlan tenant 200, the same inner conversation", Flow: withPackets(tenant, 13),
			Encaps: []Encap{{Kind: EncapVXLAN, ID: 200, Src: e4("1.1"), Dst: e4("1.2"), SrcPort: 49154}}},
		{Name: "the tenants' conversation, plain", Flow: withPackets(tenant, 4)},
		{Name: "geneve over ipv6", Flow: Flow{Src: a4("5.1"), Dst: a4("5.2"), Proto: udp, SrcPort: 1006, DstPort: 2006, Payload: 150, Packets: 5},
			Encaps: []Encap{{Kind: EncapGeneve, ID: 0x300, Src: e6("3"), Dst: e6("4")}}},
		{Name: "gtp-u, outer vlan 41", Flow: Flow{Src: a4("6.1"), Dst: a4("6.2"), Proto: tcp, SrcPort: 40007, DstPort: 80, TCPFlags: ack, VLAN: 41, Payload: 500, Packets: 8},
			Encaps: []Encap{{Kind: EncapGTPU, ID: 0x4000, Src: e4("2.1"), Dst: e4("2.2")}}},
		{Name: "vxlan in gre", Flow: Flow{Src: a6("7"), Dst: a6("8"), Proto: udp, SrcPort: 1008, DstPort: 2008, Payload: 90, Packets: 6},
			Encaps: []Encap{{Kind: EncapGRE, ID: 0x5005, Src: e4("3.1"), Dst: e4("3.2")}, {Kind: EncapVXLAN, ID: 500, Src: e4("3.5"), Dst: e4("3.6")}}},
		{Name: "erspan type II, a tagged frame mirrored", Flow: Flow{Src: a4("7.1"), Dst: a4("7.2"), Proto: udp, SrcPort: 1009, DstPort: 2009, Payload: 110, Packets: 7},
			Encaps: []Encap{{Kind: EncapERSPANII, ID: 0x155, Src: e4("4.1"), Dst: e4("4.2"), VLAN: 30}}},
		{Name: "erspan type III over ipv6, outer vlan 40: the mirrored frame's (no) tag", Flow: Flow{Src: a6("9"), Dst: a6("a"), Proto: tcp, SrcPort: 40010, DstPort: 443, TCPFlags: ack,
			VLAN: 40, Payload: 70, Packets: 6},
			Encaps: []Encap{{Kind: EncapERSPANIII, ID: 0x2aa, Src: e6("5"), Dst: e6("6")}}},
		{Name: "vxlan on a mirror port", Flow: Flow{Src: a4("8.1"), Dst: a4("8.2"), Proto: udp, SrcPort: 1011, DstPort: 2011, Payload: 130, Packets: 9},
			Encaps: []Encap{{Kind: EncapVXLANMirror, ID: 0x77, Src: e4("5.1"), Dst: e4("5.2"), DstPort: 4790}}},
		{Name: "tzsp, a tagged frame mirrored", Flow: Flow{Src: a6("b"), Dst: a6("c"), Proto: udp, SrcPort: 1012, DstPort: 2012, Payload: 60, Packets: 5},
			Encaps: []Encap{{Kind: EncapTZSP, Src: e4("6.1"), Dst: e4("6.2"), VLAN: 12}}},
	}
}

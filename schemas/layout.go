package schemas

import (
	"fmt"
	"net/netip"
	"reflect"
)

// The probe's flow templates are derived from one table, Exported: the
// encoder (probe/export/ipfix) compiles its record writers from it and the
// collector (collector/decode) takes its setters from it, so a field is
// added in one place. FIELDS.md has the recipe.

// Kind is how the probe writes a field's value.
type Kind uint8

const (
	// KindUint: the unsigned integer Flow field, big-endian, in Length
	// bytes (the Go field's size).
	KindUint Kind = iota + 1
	// KindAddr: the netip.Addr Flow field, 4 bytes (IPv4 templates) or
	// 16; Family 0 (an address whose family is not the record's): 16
	// bytes, IPv4-mapped, zero for no address.
	KindAddr
	// KindTime: the Unix ns Flow field as IPFIX dateTimeMilliseconds (8
	// bytes); NetFlow v9 sends V9IE instead, 4-byte sysUptime ms.
	KindTime
	// KindICMP: icmpTypeCode, the Flow field (DstPort: type<<8|code) for
	// ICMP and ICMPv6 records, else 0.
	KindICMP
	// KindDirection: flowDirection from the Direction Flow field: 0
	// ingress, 1 egress (only records of a known direction carry it).
	KindDirection
	// KindInitiator: biflowDirection, always 1 (the forward direction is
	// the initiator's): the bool Flow field (Biflow) chose the template.
	KindInitiator
	// KindMAC: the MAC Flow field, 6 bytes.
	KindMAC
	// KindMPLS: entry Index of the MplsLabels Flow field (label<<12 |
	// TC<<9 | S<<8 | TTL) as mplsLabelStackSection wants it: 3 bytes,
	// label<<4 | TC<<1 | S, the TTL dropped.
	KindMPLS
	// KindMillis, KindSeconds, KindMicros: the uint64 ns Flow field as a
	// uint32: whole milliseconds (ntop's *_LATENCY_MS, IPFIX); whole
	// seconds and the microseconds past them (nProbe's *_SEC and *_USEC
	// pairs, NetFlow v9, which nfdump adds up).
	KindMillis
	KindSeconds
	KindMicros
)

// Wire limits a field to one protocol's templates.
type Wire uint8

const (
	WireBoth  Wire = iota
	WireIPFIX      // IPFIX templates only
	WireV9         // NetFlow v9 templates only
)

// Part is which of the probe's data templates carry a field.
type Part uint8

const (
	PartBase      Part = iota // every flow template (256, 257 and those below)
	PartDirection             // with a known direction: 260, 261, 264, 265
	// The extras: fields most records do not have, in templates of their
	// own (Extras; ie.go numbers them) used only by records that have them.
	PartMAC    // with --macs: the frame's MACs
	PartMPLS   // an MPLS label stack
	PartTunnel // came through a tunnel (IPFIX: enterprise IEs)
	PartMirror // a mirrored frame: the mirror session
	PartTCP    // TCP health measured (--tcp-health): latencies, counts (ntop's IEs)
	PartBiflow // biflows (IPFIX): 262-265, after the others
)

// Extras is a set of the extra parts (PartMAC to PartTCP): which a
// record has, which a template carries.
type Extras uint8

const (
	ExtraMAC    Extras = 1 << (PartMAC - PartMAC)
	ExtraMPLS   Extras = 1 << (PartMPLS - PartMAC)
	ExtraTunnel Extras = 1 << (PartTunnel - PartMAC)
	ExtraMirror Extras = 1 << (PartMirror - PartMAC)
	ExtraTCP    Extras = 1 << (PartTCP - PartMAC)
	AllExtras          = ExtraMAC | ExtraMPLS | ExtraTunnel | ExtraMirror | ExtraTCP
)

// extra is the Extras bit of an extra part, 0 for the others.
func (p Part) extra() Extras {
	if p < PartMAC || p > PartTCP {
		return 0
	}
	return 1 << (p - PartMAC)
}

// Extras are the extra parts f has values for. Hot path: the encoder
// asks it of every record.
func (f *Flow) Extras() Extras {
	var x Extras
	if f.ClientNwDelayNs|f.ServerNwDelayNs|f.ApplLatencyNs|uint64(f.TcpRetransmitted|f.TcpOutOfOrder) != 0 {
		x = ExtraTCP
	}
	if f.SrcMac.word()|f.DstMac.word()|f.MplsLabels[0]|uint32(f.TunnelType)|uint32(f.MirrorType) == 0 {
		return x // no encapsulation: one test
	}
	if f.SrcMac != (MAC{}) || f.DstMac != (MAC{}) {
		x |= ExtraMAC
	}
	if f.MplsLabels[0] != 0 {
		x |= ExtraMPLS
	}
	if f.TunnelType != TunnelNone {
		x |= ExtraTunnel
	}
	if f.MirrorType != MirrorNone {
		x |= ExtraMirror
	}
	return x
}

// ExportField is one field of the probe's flow templates.
type ExportField struct {
	IE      uint16 // IANA IE; with Reverse, the forward IE (sent with PEN 29305)
	Length  uint16 // bytes (IPFIX)
	V9IE    uint16 // NetFlow v9's IE when it differs (KindTime: FIRST/LAST_SWITCHED, 4 bytes)
	Reverse bool   // an RFC 5103 reverse IE (PartBiflow only)
	// Enterprise: IE is ours, sent with the enterprise number the
	// encoder is given (IPFIX only; none given, not sent): FIELDS.md says
	// why there is no fixed one.
	Enterprise bool
	// PEN: IE is under this fixed enterprise number (IPFIX; another
	// vendor's IEs, such as ntop's); V9IE is its NetFlow v9 number.
	PEN    uint32
	Wire   Wire  // WireBoth, or the one protocol whose templates carry it
	Index  uint8 // KindMPLS: the MplsLabels entry
	Family uint8 // 4 or 6: only in that family's templates; 0: both
	Part   Part
	Kind   Kind
	Flow   string // the schemas.Flow field (Go name) the value is read from
	Proto  string // the FlowMessage (flow.proto, JSON) field it becomes
	// Set stores the field's wire value (big-endian unsigned, any
	// length) on a FlowMessage, for fields whose meaning needs nothing
	// else of the record. nil: the collector needs the whole record
	// (address family, counters with fallbacks, times by precision,
	// ICMP against the protocol, VLAN against dot1qVlanId) and reads the
	// IE itself (collector/decode/fields.go).
	Set func(m *FlowMessage, v uint64)
}

// Exported lists the probe's flow fields in record order: a template is
// the entries of its family and parts, in this order.
var Exported = exported()

func exported() []ExportField {
	t := []ExportField{
		{IE: IESourceIPv4Address, Length: 4, Family: 4, Kind: KindAddr, Flow: "SrcAddr", Proto: "src_addr"},
		{IE: IESourceIPv6Address, Length: 16, Family: 6, Kind: KindAddr, Flow: "SrcAddr", Proto: "src_addr"},
		{IE: IEDestinationIPv4Address, Length: 4, Family: 4, Kind: KindAddr, Flow: "DstAddr", Proto: "dst_addr"},
		{IE: IEDestinationIPv6Address, Length: 16, Family: 6, Kind: KindAddr, Flow: "DstAddr", Proto: "dst_addr"},
		{IE: IESourceTransportPort, Length: 2, Kind: KindUint, Flow: "SrcPort", Proto: "src_port",
			Set: func(m *FlowMessage, v uint64) { m.SrcPort = uint32(v) }},
		{IE: IEDestinationTransportPort, Length: 2, Kind: KindUint, Flow: "DstPort", Proto: "dst_port",
			Set: func(m *FlowMessage, v uint64) { m.DstPort = uint32(v) }},
		{IE: IEProtocolIdentifier, Length: 1, Kind: KindUint, Flow: "Proto", Proto: "proto",
			Set: func(m *FlowMessage, v uint64) { m.Proto = uint32(v) }},
		{IE: IETCPControlBits, Length: 2, Kind: KindUint, Flow: "TcpFlags", Proto: "tcp_flags",
			Set: func(m *FlowMessage, v uint64) { m.TcpFlags = uint32(v) }},
		{IE: IEIPClassOfService, Length: 1, Kind: KindUint, Flow: "IpTos", Proto: "ip_tos",
			Set: func(m *FlowMessage, v uint64) { m.IpTos = uint32(v) }},
		{IE: IEVlanID, Length: 2, Kind: KindUint, Flow: "VlanId", Proto: "vlan_id"},
		{IE: IEIngressInterface, Length: 4, Kind: KindUint, Flow: "InIf", Proto: "in_if",
			Set: func(m *FlowMessage, v uint64) { m.InIf = uint32(v) }},
		{IE: IEICMPTypeCodeIPv4, Length: 2, Family: 4, Kind: KindICMP, Flow: "DstPort", Proto: "icmp_type"},
		{IE: IEICMPTypeCodeIPv6, Length: 2, Family: 6, Kind: KindICMP, Flow: "DstPort", Proto: "icmp_type"},
		{IE: IEOctetDeltaCount, Length: 8, Kind: KindUint, Flow: "Bytes", Proto: "bytes"},
		{IE: IEPacketDeltaCount, Length: 8, Kind: KindUint, Flow: "Packets", Proto: "packets"},
		{IE: IELayer2OctetDeltaCount, Length: 8, Kind: KindUint, Flow: "L2Bytes", Proto: "l2_bytes",
			Set: func(m *FlowMessage, v uint64) { m.L2Bytes = v }},
		{IE: IEFlowStartMilliseconds, Length: 8, V9IE: IEFirstSwitched, Kind: KindTime, Flow: "TimeFlowStartNs", Proto: "time_flow_start_ns"},
		{IE: IEFlowEndMilliseconds, Length: 8, V9IE: IELastSwitched, Kind: KindTime, Flow: "TimeFlowEndNs", Proto: "time_flow_end_ns"},
		{IE: IEFlowEndReason, Length: 1, Kind: KindUint, Flow: "EndReason", Proto: "end_reason",
			Set: func(m *FlowMessage, v uint64) { m.EndReason = FlowMessage_EndReason(v) }},

		{IE: IEFlowDirection, Length: 1, Part: PartDirection, Kind: KindDirection, Flow: "FlowDirection", Proto: "flow_direction",
			Set: func(m *FlowMessage, v uint64) {
				if v <= 1 { // 0 ingress, 1 egress
					m.FlowDirection = FlowMessage_FlowDirection(v + 1)
				}
			}},

		// MACs: the collector reads 56 and 80 itself, against the post
		// (57, 81) IEs other exporters send.
		{IE: IESourceMacAddress, Length: 6, Part: PartMAC, Kind: KindMAC, Flow: "SrcMac", Proto: "src_mac"},
		{IE: IEDestinationMacAddress, Length: 6, Part: PartMAC, Kind: KindMAC, Flow: "DstMac", Proto: "dst_mac"},
	}
	for i := range uint8(MaxMplsLabels) { // mplsTopLabelStackSection, mplsLabelStackSection2...
		t = append(t, ExportField{IE: IEMplsTopLabelStackSection + uint16(i), Length: 3, Part: PartMPLS, Kind: KindMPLS,
			Index: i, Flow: "MplsLabels", Proto: "mpls_labels", Set: func(m *FlowMessage, v uint64) { SetMplsLabel(m, int(i), v) }})
	}
	return append(t, []ExportField{
		{IE: IETunnelType, Length: 1, Enterprise: true, Part: PartTunnel, Kind: KindUint, Flow: "TunnelType", Proto: "tunnel_type",
			Set: func(m *FlowMessage, v uint64) { m.TunnelType = FlowMessage_TunnelType(v) }},
		{IE: IETunnelID, Length: 4, Enterprise: true, Part: PartTunnel, Kind: KindUint, Flow: "TunnelId", Proto: "tunnel_id",
			Set: func(m *FlowMessage, v uint64) { m.TunnelId = uint32(v) }},
		{IE: IETunnelSourceAddress, Length: 16, Enterprise: true, Part: PartTunnel, Kind: KindAddr, Flow: "TunnelSrcAddr", Proto: "tunnel_src_addr"},
		{IE: IETunnelDestinationAddress, Length: 16, Enterprise: true, Part: PartTunnel, Kind: KindAddr, Flow: "TunnelDstAddr", Proto: "tunnel_dst_addr"},

		{IE: IEObservationPointID, Length: 4, Part: PartMirror, Kind: KindUint, Flow: "ObservationPointId", Proto: "observation_point_id",
			Set: func(m *FlowMessage, v uint64) { m.ObservationPointId = uint32(v) }},
		{IE: IEMirrorType, Length: 1, Enterprise: true, Part: PartMirror, Kind: KindUint, Flow: "MirrorType", Proto: "mirror_type",
			Set: func(m *FlowMessage, v uint64) { m.MirrorType = FlowMessage_MirrorType(v) }},

		// TCP health: ntop's IEs, which nfdump (NetFlow v9: nProbe's
		// latency pairs) and Wireshark (IPFIX) decode by name.
		{IE: IENtopClientNwDelaySec, V9IE: ntopV9(IENtopClientNwDelaySec), PEN: PENNtop, Wire: WireV9, Length: 4, Part: PartTCP, Kind: KindSeconds,
			Flow: "ClientNwDelayNs", Proto: "client_nw_delay_ns", Set: func(m *FlowMessage, v uint64) { m.ClientNwDelayNs += v * 1e9 }},
		{IE: IENtopClientNwDelayUsec, V9IE: ntopV9(IENtopClientNwDelayUsec), PEN: PENNtop, Wire: WireV9, Length: 4, Part: PartTCP, Kind: KindMicros,
			Flow: "ClientNwDelayNs", Proto: "client_nw_delay_ns", Set: func(m *FlowMessage, v uint64) { m.ClientNwDelayNs += v * 1e3 }},
		{IE: IENtopServerNwDelaySec, V9IE: ntopV9(IENtopServerNwDelaySec), PEN: PENNtop, Wire: WireV9, Length: 4, Part: PartTCP, Kind: KindSeconds,
			Flow: "ServerNwDelayNs", Proto: "server_nw_delay_ns", Set: func(m *FlowMessage, v uint64) { m.ServerNwDelayNs += v * 1e9 }},
		{IE: IENtopServerNwDelayUsec, V9IE: ntopV9(IENtopServerNwDelayUsec), PEN: PENNtop, Wire: WireV9, Length: 4, Part: PartTCP, Kind: KindMicros,
			Flow: "ServerNwDelayNs", Proto: "server_nw_delay_ns", Set: func(m *FlowMessage, v uint64) { m.ServerNwDelayNs += v * 1e3 }},
		{IE: IENtopApplLatencySec, V9IE: ntopV9(IENtopApplLatencySec), PEN: PENNtop, Wire: WireV9, Length: 4, Part: PartTCP, Kind: KindSeconds,
			Flow: "ApplLatencyNs", Proto: "appl_latency_ns", Set: func(m *FlowMessage, v uint64) { m.ApplLatencyNs += v * 1e9 }},
		{IE: IENtopApplLatencyUsec, V9IE: ntopV9(IENtopApplLatencyUsec), PEN: PENNtop, Wire: WireV9, Length: 4, Part: PartTCP, Kind: KindMicros,
			Flow: "ApplLatencyNs", Proto: "appl_latency_ns", Set: func(m *FlowMessage, v uint64) { m.ApplLatencyNs += v * 1e3 }},
		{IE: IENtopClientNwLatencyMs, PEN: PENNtop, Wire: WireIPFIX, Length: 4, Part: PartTCP, Kind: KindMillis,
			Flow: "ClientNwDelayNs", Proto: "client_nw_delay_ns", Set: func(m *FlowMessage, v uint64) { setIfZero(&m.ClientNwDelayNs, v*1e6) }},
		{IE: IENtopServerNwLatencyMs, PEN: PENNtop, Wire: WireIPFIX, Length: 4, Part: PartTCP, Kind: KindMillis,
			Flow: "ServerNwDelayNs", Proto: "server_nw_delay_ns", Set: func(m *FlowMessage, v uint64) { setIfZero(&m.ServerNwDelayNs, v*1e6) }},
		{IE: IENtopApplLatencyMs, PEN: PENNtop, Wire: WireIPFIX, Length: 4, Part: PartTCP, Kind: KindMillis,
			Flow: "ApplLatencyNs", Proto: "appl_latency_ns", Set: func(m *FlowMessage, v uint64) { setIfZero(&m.ApplLatencyNs, v*1e6) }},
		{IE: IENtopRetransmittedInPkts, V9IE: ntopV9(IENtopRetransmittedInPkts), PEN: PENNtop, Length: 4, Part: PartTCP, Kind: KindUint,
			Flow: "TcpRetransmitted", Proto: "tcp_retransmitted_packets", Set: func(m *FlowMessage, v uint64) { m.TcpRetransmittedPackets = uint32(v) }},
		{IE: IENtopOOOrderInPkts, V9IE: ntopV9(IENtopOOOrderInPkts), PEN: PENNtop, Length: 4, Part: PartTCP, Kind: KindUint,
			Flow: "TcpOutOfOrder", Proto: "tcp_out_of_order_packets", Set: func(m *FlowMessage, v uint64) { m.TcpOutOfOrderPackets = uint32(v) }},

		{IE: IEBiflowDirection, Length: 1, Part: PartBiflow, Kind: KindInitiator, Flow: "Biflow", Proto: "biflow",
			Set: func(m *FlowMessage, _ uint64) { m.Biflow = true }},
		{IE: IEOctetDeltaCount, Length: 8, Reverse: true, Part: PartBiflow, Kind: KindUint, Flow: "ReverseBytes", Proto: "reverse_bytes",
			Set: func(m *FlowMessage, v uint64) { m.ReverseBytes = v }},
		{IE: IEPacketDeltaCount, Length: 8, Reverse: true, Part: PartBiflow, Kind: KindUint, Flow: "ReversePackets", Proto: "reverse_packets",
			Set: func(m *FlowMessage, v uint64) { m.ReversePackets = v }},
		{IE: IELayer2OctetDeltaCount, Length: 8, Reverse: true, Part: PartBiflow, Kind: KindUint, Flow: "ReverseL2Bytes", Proto: "reverse_l2_bytes",
			Set: func(m *FlowMessage, v uint64) { m.ReverseL2Bytes = v }},
		{IE: IEFlowStartMilliseconds, Length: 8, Reverse: true, Part: PartBiflow, Kind: KindTime, Flow: "ReverseTimeFlowStartNs", Proto: "reverse_time_flow_start_ns",
			Set: func(m *FlowMessage, v uint64) { m.ReverseTimeFlowStartNs = v * 1e6 }},
		{IE: IEFlowEndMilliseconds, Length: 8, Reverse: true, Part: PartBiflow, Kind: KindTime, Flow: "ReverseTimeFlowEndNs", Proto: "reverse_time_flow_end_ns",
			Set: func(m *FlowMessage, v uint64) { m.ReverseTimeFlowEndNs = v * 1e6 }},
		{IE: IETCPControlBits, Length: 2, Reverse: true, Part: PartBiflow, Kind: KindUint, Flow: "ReverseTcpFlags", Proto: "reverse_tcp_flags",
			Set: func(m *FlowMessage, v uint64) { m.ReverseTcpFlags = uint32(v) }},
	}...)
}

// SetMplsLabel stores the mplsLabelStackSection value v (label<<4 | TC<<1
// | S) of stack entry i as a label stack entry (TTL 0: the IE has none).
// 0, an entry past the bottom, is not stored: the stack ends at its last
// entry.
func SetMplsLabel(m *FlowMessage, i int, v uint64) {
	if v == 0 {
		return
	}
	for len(m.MplsLabels) <= i {
		m.MplsLabels = append(m.MplsLabels, 0)
	}
	m.MplsLabels[i] = uint32(v&0xffffff) << 8
}

// setIfZero stores v unless a more precise field of the record (the
// *_SEC/*_USEC pair) stored one already.
func setIfZero(p *uint64, v uint64) {
	if *p == 0 {
		*p = v
	}
}

// Field returns the IE and length x has in NetFlow v9 (v9) or IPFIX
// (with x's fixed PEN, if any). Reverse IEs are the forward IE: the
// template adds the enterprise bit and PEN 29305.
func (x *ExportField) Field(v9 bool) Field {
	switch {
	case v9 && x.V9IE != 0:
		return Field{ID: x.V9IE, Length: 4}
	case !v9 && x.PEN != 0:
		return Field{ID: x.IE, Length: x.Length, PEN: x.PEN}
	}
	return Field{ID: x.IE, Length: x.Length}
}

// FlowField is the schemas.Flow field x is read from.
func (x *ExportField) FlowField() reflect.StructField {
	sf, _ := reflect.TypeFor[Flow]().FieldByName(x.Flow)
	return sf
}

// TemplateKey says which data template a record uses: IPv4 or IPv6, with
// flowDirection or not, biflow or not, and its extra parts.
type TemplateKey struct {
	V6, Dir, Bi bool
	Extras      Extras
}

// FlowTemplate returns the entries of one data template of NetFlow v9
// (v9) or IPFIX in record order, the Enterprise ones only with enterprise
// (IPFIX given an enterprise number). NetFlow v9 has no biflow templates:
// it has no enterprise IEs.
func FlowTemplate(k TemplateKey, enterprise, v9 bool) []*ExportField {
	var out []*ExportField
	for i := range Exported {
		x := &Exported[i]
		switch {
		case x.Family == 4 && k.V6, x.Family == 6 && !k.V6,
			x.Part == PartDirection && !k.Dir, x.Part == PartBiflow && !k.Bi,
			x.Part.extra() != 0 && k.Extras&x.Part.extra() == 0,
			x.Enterprise && !enterprise,
			x.Wire == WireIPFIX && v9, x.Wire == WireV9 && !v9:
			continue
		}
		out = append(out, x)
	}
	return out
}

// TemplateExtras are the extras that have fields in a template without or
// with enterprise IEs: those a record's extras are narrowed to, so that a
// record never picks a template that differs from another in its id only.
func TemplateExtras(enterprise bool) Extras {
	var x Extras
	for i := range Exported {
		if e := &Exported[i]; !e.Enterprise || enterprise {
			x |= e.Part.extra()
		}
	}
	return x
}

// Fields returns a template's fields in NetFlow v9 (v9) or IPFIX: the
// forward ones (Enterprise ones with enterprise number pen), then the
// reverse ones (sent with PEN 29305).
func Fields(t []*ExportField, v9 bool, pen uint32) (fields, reverse []Field) {
	for _, x := range t {
		f := x.Field(v9)
		switch {
		case x.Reverse:
			reverse = append(reverse, f)
		case x.Enterprise:
			f.PEN = pen
			fallthrough
		default:
			fields = append(fields, f)
		}
	}
	return fields, reverse
}

// checkExported panics on a table the encoder or the collector could not
// follow: a Flow field of the wrong type for its kind, parts out of
// order, a reverse IE outside the biflow part or a v9 IE off times.
func checkExported() {
	addr := reflect.TypeFor[netip.Addr]()
	var last Part
	for i := range Exported {
		x := &Exported[i]
		sf, ok := reflect.TypeFor[Flow]().FieldByName(x.Flow)
		bad := func(why string) { panic(fmt.Sprintf("schemas.Exported[%d] (IE %d, %s): %s", i, x.IE, x.Flow, why)) }
		if !ok {
			bad("no such schemas.Flow field")
		}
		t := sf.Type
		switch x.Kind {
		case KindUint:
			if k := t.Kind(); k < reflect.Uint8 || k > reflect.Uint64 || t.Size() != uintptr(x.Length) {
				bad(fmt.Sprintf("KindUint needs an unsigned Flow field of Length (%d) bytes, not %v", x.Length, t))
			}
		case KindAddr:
			if t != addr || (x.Family == 4) != (x.Length == 4) || x.Family != 4 && x.Length != 16 {
				bad("KindAddr needs a netip.Addr Flow field, Family 4 and Length 4, or Length 16")
			}
		case KindTime:
			if t.Kind() != reflect.Int64 || x.Length != 8 || (x.V9IE == 0) != x.Reverse {
				bad("KindTime needs an int64 (Unix ns) Flow field, Length 8, and a V9IE unless Reverse")
			}
		case KindICMP:
			if t.Kind() != reflect.Uint16 || x.Length != 2 {
				bad("KindICMP needs a uint16 Flow field, Length 2")
			}
		case KindDirection:
			if t != reflect.TypeFor[Direction]() || x.Length != 1 {
				bad("KindDirection needs a Direction Flow field, Length 1")
			}
		case KindInitiator:
			if t.Kind() != reflect.Bool || x.Length != 1 {
				bad("KindInitiator needs a bool Flow field, Length 1")
			}
		case KindMAC:
			if t != reflect.TypeFor[MAC]() || x.Length != 6 {
				bad("KindMAC needs a MAC Flow field, Length 6")
			}
		case KindMPLS:
			if t != reflect.TypeFor[[MaxMplsLabels]uint32]() || x.Length != 3 || x.Index >= MaxMplsLabels {
				bad("KindMPLS needs the [MaxMplsLabels]uint32 Flow field, an Index in it, Length 3")
			}
		case KindMillis, KindSeconds, KindMicros:
			if t.Kind() != reflect.Uint64 || x.Length != 4 {
				bad("KindMillis, KindSeconds and KindMicros need a uint64 (ns) Flow field, Length 4")
			}
		default:
			bad("no Kind")
		}
		if x.Kind != KindTime && x.V9IE != 0 && x.PEN == 0 {
			bad("V9IE is for KindTime and fixed-PEN IEs only")
		}
		if x.PEN != 0 && (x.Enterprise || x.Reverse || x.Part.extra() == 0 || (x.V9IE == 0) != (x.Wire == WireIPFIX)) {
			bad("fixed-PEN IEs go in the extras, neither Enterprise nor reversed, with a V9IE unless IPFIX only")
		}
		if x.Reverse && x.Part != PartBiflow {
			bad("reverse IEs go in PartBiflow")
		}
		if x.Part < last || i > 0 && Exported[i-1].Reverse && !x.Reverse {
			bad("entries must come in Part order (base, direction, the extras, biflow), reverse IEs last")
		}
		if x.Enterprise && (x.Reverse || x.Part.extra() == 0 || x.IE >= maxEnterpriseIE) {
			bad("enterprise IEs go in the extras, below maxEnterpriseIE, not reversed")
		}
		last = x.Part
	}
}

func init() { checkExported() }

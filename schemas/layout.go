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
	// KindAddr: the netip.Addr Flow field, 4 bytes (IPv4 templates) or 16.
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
)

// Part is which of the probe's data templates carry a field.
type Part uint8

const (
	PartBase      Part = iota // every flow template (256, 257 and those below)
	PartDirection             // with a known direction: 260, 261, 264, 265
	PartBiflow                // biflows (IPFIX): 262-265, after the others
)

// ExportField is one field of the probe's flow templates.
type ExportField struct {
	IE      uint16 // IANA IE; with Reverse, the forward IE (sent with PEN 29305)
	Length  uint16 // bytes (IPFIX)
	V9IE    uint16 // NetFlow v9's IE when it differs (KindTime: FIRST/LAST_SWITCHED, 4 bytes)
	Reverse bool   // an RFC 5103 reverse IE (PartBiflow only)
	Family  uint8  // 4 or 6: only in that family's templates; 0: both
	Part    Part
	Kind    Kind
	Flow    string // the schemas.Flow field (Go name) the value is read from
	Proto   string // the FlowMessage (flow.proto, JSON) field it becomes
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
var Exported = []ExportField{
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
}

// Field returns the IE and length x has in NetFlow v9 (v9) or IPFIX.
// Reverse IEs are the forward IE: the template adds the enterprise bit
// and PEN 29305.
func (x *ExportField) Field(v9 bool) Field {
	if v9 && x.V9IE != 0 {
		return Field{x.V9IE, 4}
	}
	return Field{x.IE, x.Length}
}

// FlowField is the schemas.Flow field x is read from.
func (x *ExportField) FlowField() reflect.StructField {
	sf, _ := reflect.TypeFor[Flow]().FieldByName(x.Flow)
	return sf
}

// FlowTemplate returns the entries of one data template in record order:
// IPv4 or IPv6, with flowDirection or not, biflow or not (NetFlow v9 has
// no biflow templates: it has no enterprise IEs).
func FlowTemplate(v6, dir, bi bool) []*ExportField {
	var out []*ExportField
	for i := range Exported {
		x := &Exported[i]
		switch {
		case x.Family == 4 && v6, x.Family == 6 && !v6,
			x.Part == PartDirection && !dir, x.Part == PartBiflow && !bi:
			continue
		}
		out = append(out, x)
	}
	return out
}

// Fields returns a template's fields in NetFlow v9 (v9) or IPFIX: the
// forward ones, then the reverse ones (sent with PEN 29305).
func Fields(t []*ExportField, v9 bool) (fields, reverse []Field) {
	for _, x := range t {
		if x.Reverse {
			reverse = append(reverse, x.Field(v9))
		} else {
			fields = append(fields, x.Field(v9))
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
			if t != addr || (x.Family == 4) != (x.Length == 4) || x.Family == 0 || (x.Family == 6) != (x.Length == 16) {
				bad("KindAddr needs a netip.Addr Flow field, Family 4 and Length 4 or Family 6 and Length 16")
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
		default:
			bad("no Kind")
		}
		if x.Kind != KindTime && x.V9IE != 0 {
			bad("V9IE is for KindTime only")
		}
		if x.Reverse && x.Part != PartBiflow {
			bad("reverse IEs go in PartBiflow")
		}
		if x.Part < last || i > 0 && Exported[i-1].Reverse && !x.Reverse {
			bad("entries must come in Part order (base, direction, biflow), reverse IEs last")
		}
		last = x.Part
	}
}

func init() { checkExported() }

// Package schemas is the contract between the probe, the collector and
// everything downstream: the flow record every exporter writes, and the
// IPFIX / NetFlow v9 information elements and templates that carry it
// (FIELDS.md describes each field). Nothing here knows about kernel maps.
package schemas

import (
	"fmt"
	"net/netip"
)

// EndReason is why a flow record was exported: IPFIX flowEndReason (IE 136,
// RFC 7011 / IANA).
type EndReason uint8

const (
	EndIdle            EndReason = 1 // idle timeout
	EndActive          EndReason = 2 // active timeout: the flow goes on
	EndOfFlow          EndReason = 3 // TCP FIN or RST seen
	EndForced          EndReason = 4 // probe shutting down
	EndLackOfResources EndReason = 5 // table pressure: expired early
)

func (r EndReason) String() string {
	switch r {
	case EndIdle:
		return "idle"
	case EndActive:
		return "active"
	case EndOfFlow:
		return "end-of-flow"
	case EndForced:
		return "forced"
	case EndLackOfResources:
		return "lack-of-resources"
	}
	return "unknown"
}

// Flow is one exported flow record: what was seen of one flow key between
// two exports. Packets and Bytes of all records of a flow add up to the
// traffic of that flow, exactly.
type Flow struct {
	SrcAddr         netip.Addr `json:"src_addr"` // IPv4 addresses are 4-byte (never IPv4-mapped)
	DstAddr         netip.Addr `json:"dst_addr"`
	SrcPort         uint16     `json:"src_port"`           // ICMP/ICMPv6: 0
	DstPort         uint16     `json:"dst_port"`           // ICMP/ICMPv6: type<<8|code
	Proto           uint8      `json:"proto"`              // IANA protocol number
	VlanId          uint16     `json:"vlan_id"`            // outer VLAN id, 0 when untagged
	InIf            uint32     `json:"in_if"`              // ingress ifindex (ingressInterface)
	Packets         uint64     `json:"packets"`            // packetDeltaCount
	Bytes           uint64     `json:"bytes"`              // octetDeltaCount: L3 octets
	L2Bytes         uint64     `json:"l2_bytes"`           // layer2OctetDeltaCount: frame octets
	TimeFlowStartNs int64      `json:"time_flow_start_ns"` // first packet, Unix ns; StartNs <= EndNs
	TimeFlowEndNs   int64      `json:"time_flow_end_ns"`   // last packet, Unix ns
	TcpFlags        uint16     `json:"tcp_flags"`          // tcpControlBits (RFC 7125), OR over the record
	IpTos           uint8      `json:"ip_tos"`             // ipClassOfService
	EndReason       EndReason  `json:"end_reason"`         // flowEndReason
	FlowDirection   Direction  `json:"flow_direction"`     // against --local-net; flowDirection

	// Encapsulations, zero for a plain flow (FIELDS.md has each IE): the
	// tunnel nearest the inner conversation, the mirror session a mirrored
	// frame arrived in, the frame's MACs (--macs); its tunnel endpoints and
	// MPLS label stack are last. The few bytes Extras tests for each
	// record come first, so that a plain record's encoding reads little
	// more than it did.
	TunnelType TunnelType `json:"tunnel_type,omitzero"`
	MirrorType MirrorType `json:"mirror_type,omitzero"`
	SrcMac     MAC        `json:"src_mac,omitzero"`
	DstMac     MAC        `json:"dst_mac,omitzero"`
	// MplsLabels are label stack entries, top first, as on the wire
	// (label<<12 | TC<<9 | S<<8 | TTL); 0 past the bottom of the stack.
	// The first packet's, as are the tunnel endpoints.
	MplsLabels         [MaxMplsLabels]uint32 `json:"mpls_labels,omitzero"`
	TunnelId           uint32                `json:"tunnel_id,omitzero"`            // VNI, GRE key, TEID, top label, PPPoE session
	ObservationPointId uint32                `json:"observation_point_id,omitzero"` // mirror session: ERSPAN session id, VNI

	// Biflow is set on a record that pairs both directions of a
	// conversation (--biflow, RFC 5103): the fields above are the
	// initiator's direction, these the reverse one's.
	Biflow                 bool   `json:"biflow,omitempty"`
	ReversePackets         uint64 `json:"reverse_packets,omitempty"`
	ReverseBytes           uint64 `json:"reverse_bytes,omitempty"`
	ReverseL2Bytes         uint64 `json:"reverse_l2_bytes,omitempty"`
	ReverseTimeFlowStartNs int64  `json:"reverse_time_flow_start_ns,omitempty"`
	ReverseTimeFlowEndNs   int64  `json:"reverse_time_flow_end_ns,omitempty"`
	ReverseTcpFlags        uint16 `json:"reverse_tcp_flags,omitempty"`

	// The tunnel's outer endpoints (IP tunnels); IPv4 is 4-byte, like
	// SrcAddr; the tunnel's family is not the flow's.
	TunnelSrcAddr netip.Addr `json:"tunnel_src_addr,omitzero"`
	TunnelDstAddr netip.Addr `json:"tunnel_dst_addr,omitzero"`

	// TCP health (--tcp-health): the conversation's handshake latencies
	// (ns, 0 when not measured) and this direction's segment counts.
	ClientNwDelayNs  uint64 `json:"client_nw_delay_ns,omitzero"` // handshake ACK - SYN-ACK
	ServerNwDelayNs  uint64 `json:"server_nw_delay_ns,omitzero"` // SYN-ACK - SYN
	ApplLatencyNs    uint64 `json:"appl_latency_ns,omitzero"`    // server's first data - client's
	TcpRetransmitted uint32 `json:"tcp_retransmitted_packets,omitzero"`
	TcpOutOfOrder    uint32 `json:"tcp_out_of_order_packets,omitzero"`
	TcpZeroWindow    uint32 `json:"tcp_zero_window_packets,omitzero"`
}

// Direction is where a flow goes relative to the probe's local networks.
type Direction uint8

const (
	DirectionUnknown Direction = 0 // no local networks, or both ends (or neither) local
	DirectionIngress Direction = 1 // into the local networks: flowDirection 0
	DirectionEgress  Direction = 2 // out of them: flowDirection 1
)

func (d Direction) String() string {
	switch d {
	case DirectionIngress:
		return "ingress"
	case DirectionEgress:
		return "egress"
	}
	return "unknown"
}

// MarshalText writes the direction's name in JSON.
func (d Direction) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads a name written by MarshalText.
func (d *Direction) UnmarshalText(b []byte) error {
	for c := DirectionUnknown; c <= DirectionEgress; c++ {
		if c.String() == string(b) {
			*d = c
			return nil
		}
	}
	return fmt.Errorf("unknown flow direction %q", b)
}

// MarshalText writes the reason's name in JSON.
func (r EndReason) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText reads a name written by MarshalText.
func (r *EndReason) UnmarshalText(b []byte) error {
	for c := EndIdle; c <= EndLackOfResources; c++ {
		if c.String() == string(b) {
			*r = c
			return nil
		}
	}
	return fmt.Errorf("unknown flow end reason %q", b)
}

// IsICMP tells whether DstPort carries an ICMP or ICMPv6 type and code.
func (f *Flow) IsICMP() bool { return f.Proto == 1 || f.Proto == 58 }

// Reverse returns the reverse direction of a biflow record as a record of
// its own (addresses and ports swapped; ICMP gets the answering type).
// Its frames went the other way through the same tunnel and mirror
// session: MACs and tunnel endpoints swap, tunnel and mirror ids stay
// (pairing, biflow.ReverseKey, required them equal). Its MPLS labels are
// not known: labels are chosen per hop and direction, and the record
// carries the initiator's, so the reverse record has none; nor has it TCP
// segment counts (the biflow carries the initiator's only), but it has the
// conversation's latencies.
func (f *Flow) Reverse() Flow {
	r := f.Forward()
	r.SrcAddr, r.DstAddr, r.SrcPort, r.DstPort = f.DstAddr, f.SrcAddr, f.DstPort, f.SrcPort
	r.SrcMac, r.DstMac = f.DstMac, f.SrcMac
	r.TunnelSrcAddr, r.TunnelDstAddr = f.TunnelDstAddr, f.TunnelSrcAddr
	r.MplsLabels = [MaxMplsLabels]uint32{}
	if f.IsICMP() {
		r.SrcPort = 0
		r.DstPort, _ = ReverseICMP(f.Proto, f.DstPort)
	}
	r.TcpRetransmitted, r.TcpOutOfOrder, r.TcpZeroWindow = 0, 0, 0 // the initiator's: the reverse ones were not carried
	r.Packets, r.Bytes, r.L2Bytes, r.TimeFlowStartNs, r.TimeFlowEndNs, r.TcpFlags = f.ReversePackets, f.ReverseBytes, f.ReverseL2Bytes, f.ReverseTimeFlowStartNs, f.ReverseTimeFlowEndNs, f.ReverseTcpFlags
	switch f.FlowDirection {
	case DirectionIngress:
		r.FlowDirection = DirectionEgress
	case DirectionEgress:
		r.FlowDirection = DirectionIngress
	}
	return r
}

// Forward returns the initiator's direction of a record, without the
// reverse counts.
func (f *Flow) Forward() Flow {
	r := *f
	r.Biflow, r.ReversePackets, r.ReverseBytes, r.ReverseL2Bytes, r.ReverseTimeFlowStartNs, r.ReverseTimeFlowEndNs, r.ReverseTcpFlags = false, 0, 0, 0, 0, 0, 0
	return r
}

// ReverseICMP is the ICMP type<<8|code that answers typeCode: echo
// request and reply (ICMP 8/0, ICMPv6 128/129). ok is false for the rest,
// which have no reverse direction to pair with.
func ReverseICMP(proto uint8, typeCode uint16) (rev uint16, ok bool) {
	switch {
	case proto == 1 && typeCode == 8<<8:
		return 0, true
	case proto == 1 && typeCode == 0:
		return 8 << 8, true
	case proto == 58 && typeCode == 128<<8:
		return 129 << 8, true
	case proto == 58 && typeCode == 129<<8:
		return 128 << 8, true
	}
	return 0, false
}

// Package schemas is the contract between the probe, the collector and
// everything downstream: the flow record every exporter writes, and the
// IPFIX / NetFlow v9 information elements and templates that carry it
// (FIELDS.md describes each field). Nothing here knows about kernel maps.
package schemas

import "net/netip"

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
	Src, Dst         netip.Addr // IPv4 addresses are 4-byte (never IPv4-mapped)
	SrcPort, DstPort uint16     // ICMP/ICMPv6: SrcPort 0, DstPort type<<8|code
	Proto            uint8      // IANA protocol number
	VLAN             uint16     // outer VLAN id, 0 when untagged
	InIf             uint32     // ingress ifindex (ingressInterface)
	Packets          uint64     // packetDeltaCount
	Bytes            uint64     // octetDeltaCount: L3 octets
	L2Bytes          uint64     // layer2OctetDeltaCount: frame octets
	StartNs, EndNs   int64      // first and last packet, Unix nanoseconds; StartNs <= EndNs
	TCPFlags         uint16     // tcpControlBits (RFC 7125), OR over the record
	TOS              uint8      // ipClassOfService
	EndReason        EndReason  // flowEndReason
}

// IsICMP tells whether DstPort carries an ICMP or ICMPv6 type and code.
func (f *Flow) IsICMP() bool { return f.Proto == 1 || f.Proto == 58 }

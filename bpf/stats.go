package bpf

import "fmt"

// Stats are the datapath counters summed over CPUs. Every frame is counted
// in exactly one of NonIp, Malformed, FlowPackets and UpdateFailedPackets.
type Stats = xdpflowDatapathStats

// MalformedReasons names Stats.Malformed's entries, in order, for logs and
// metrics labels.
var MalformedReasons = [...]string{
	xdpflowMalformedReasonMALFORMED_ETH_TRUNCATED:       "eth_truncated",
	xdpflowMalformedReasonMALFORMED_VLAN_TRUNCATED:      "vlan_truncated",
	xdpflowMalformedReasonMALFORMED_IPV4TRUNCATED:       "ipv4_truncated",
	xdpflowMalformedReasonMALFORMED_IPV4BAD_IHL:         "ipv4_bad_ihl",
	xdpflowMalformedReasonMALFORMED_IPV4BAD_LENGTH:      "ipv4_bad_length",
	xdpflowMalformedReasonMALFORMED_IP_VERSION:          "ip_version_mismatch",
	xdpflowMalformedReasonMALFORMED_IPV6TRUNCATED:       "ipv6_truncated",
	xdpflowMalformedReasonMALFORMED_IPV6BAD_LENGTH:      "ipv6_bad_length",
	xdpflowMalformedReasonMALFORMED_IPV6EXT_TRUNCATED:   "ipv6_ext_truncated",
	xdpflowMalformedReasonMALFORMED_IPV6EXT_CHAIN:       "ipv6_ext_chain_too_long",
	xdpflowMalformedReasonMALFORMED_L4TRUNCATED:         "l4_truncated",
	xdpflowMalformedReasonMALFORMED_MPLS_TRUNCATED:      "mpls_truncated",
	xdpflowMalformedReasonMALFORMED_MPLS_STACK_TOO_DEEP: "mpls_stack_too_deep",
	xdpflowMalformedReasonMALFORMED_PPPOE_TRUNCATED:     "pppoe_truncated",
	xdpflowMalformedReasonMALFORMED_PPPOE_BAD_HEADER:    "pppoe_bad_header",
	xdpflowMalformedReasonMALFORMED_GRE_TRUNCATED:       "gre_truncated",
	xdpflowMalformedReasonMALFORMED_GRE_BAD_HEADER:      "gre_bad_header",
	xdpflowMalformedReasonMALFORMED_ERSPAN_TRUNCATED:    "erspan_truncated",
	xdpflowMalformedReasonMALFORMED_ERSPAN_BAD_VERSION:  "erspan_bad_version",
	xdpflowMalformedReasonMALFORMED_VXLAN_TRUNCATED:     "vxlan_truncated",
	xdpflowMalformedReasonMALFORMED_VXLAN_NO_VNI:        "vxlan_no_vni",
	xdpflowMalformedReasonMALFORMED_GENEVE_TRUNCATED:    "geneve_truncated",
	xdpflowMalformedReasonMALFORMED_GENEVE_BAD_HEADER:   "geneve_bad_header",
	xdpflowMalformedReasonMALFORMED_GTPU_TRUNCATED:      "gtpu_truncated",
	xdpflowMalformedReasonMALFORMED_GTPU_BAD_HEADER:     "gtpu_bad_header",
	xdpflowMalformedReasonMALFORMED_TZSP_TRUNCATED:      "tzsp_truncated",
	xdpflowMalformedReasonMALFORMED_TZSP_BAD_HEADER:     "tzsp_bad_header",
	xdpflowMalformedReasonMALFORMED_TUNNEL_TOO_DEEP:     "tunnel_too_deep",
	xdpflowMalformedReasonMALFORMED_IPV6V4MAPPED:        "ipv6_v4mapped_addr",
}

// The Go table must name every reason the C enum has.
var _ [len(xdpflowDatapathStats{}.Malformed)]struct{} = [len(MalformedReasons)]struct{}{}

// Stats reads the datapath counters, summed over CPUs.
func (d *Datapath) Stats() (Stats, error) {
	var perCPU []Stats
	if err := d.objs.Stats.Lookup(uint32(0), &perCPU); err != nil {
		return Stats{}, fmt.Errorf("read datapath stats: %w", err)
	}
	var s Stats
	for _, c := range perCPU {
		s.Packets += c.Packets
		s.Bytes += c.Bytes
		s.NonIp += c.NonIp
		for i := range s.Malformed {
			s.Malformed[i] += c.Malformed[i]
		}
		s.FlowPackets += c.FlowPackets
		s.FlowBytes += c.FlowBytes
		s.NewFlows += c.NewFlows
		s.UpdateFailedPackets += c.UpdateFailedPackets
		s.UpdateFailedBytes += c.UpdateFailedBytes
		s.Fragments += c.Fragments
		s.Samples += c.Samples
		s.SamplesLost += c.SamplesLost
		s.TcpConvsFull += c.TcpConvsFull
	}
	return s, nil
}

// MalformedTotal is the number of frames counted as malformed.
func (s Stats) MalformedTotal() uint64 {
	var n uint64
	for _, m := range s.Malformed {
		n += m
	}
	return n
}

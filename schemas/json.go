package schemas

import (
	"encoding/base64"
	"strconv"
	"unicode/utf8"
)

// The JSON form of the messages (FormatJSON) is protojson with the .proto
// field names. AppendFlowJSON and AppendSampleJSON write it by hand because
// the collector writes millions of records a second as JSON lines and
// protojson was the bottleneck there. On a 2-vCPU AMD EPYC (go test -bench
// 'EncodeFlow|FlowJSON' -benchmem), with every FlowMessage field set,
// protojson takes 3.3-4.3 µs, 648 B and 30 allocations, AppendFlowJSON
// 0.4-0.5 µs and none (SampleMessage: 1.1-1.3 µs and 13 allocations against
// 0.14-0.23 µs); the probe's record-to-bytes path, BenchmarkEncodeFlow/json,
// went from 2.2-3.0 µs and 16 allocations to 0.2-0.3 µs and none.
// json_test.go holds them to protojson: for every field of both messages
// (walked through the descriptors, so a field added to flow.proto and not
// here fails the tests), for edge values and for 10k random messages, the
// output is protojson's byte for byte once protojson's deliberately random
// whitespace is removed, and protojson.Unmarshal reads it back into a
// message proto.Equal to the input.
//
// protojson's conventions, which the output follows:
//   - keys are the .proto field names, in declaration order (protojson's
//     order), without whitespace;
//   - fields with their zero value (0, "", empty bytes, the zero enum) are
//     left out, so the zero message is {};
//   - uint32 is a JSON number, uint64 a JSON string of decimal digits;
//   - bytes are standard base64 with padding;
//   - enums are their value's name, or the number when the value is not in
//     flow.proto (a newer writer's value);
//   - strings escape only '"', '\\' and control characters (\b \f \n \r \t
//     by name, the others as \u00XX); everything else, non-ASCII included,
//     is written as it is.
//
// One difference: protojson refuses to write a string field that is not
// valid UTF-8 (as does proto.Marshal for proto3). These encoders never fail;
// they write each byte of an invalid sequence as U+FFFD, as encoding/json
// does, so the output stays valid JSON and the rest of the record is kept
// (an interface name is any bytes to the kernel). Such a string does not
// round-trip.

// AppendFlowJSON appends m's JSON form (see above) to b. It does not
// allocate when b has the capacity.
func AppendFlowJSON(b []byte, m *FlowMessage) []byte {
	if m == nil {
		return append(b, "{}"...)
	}
	b = append(b, '{')
	o := len(b) // nothing written yet while len(b) == o
	b = jsonEnum(b, o, `,"type":`, int32(m.Type), flowTypeNames, FlowMessage_FlowType_name)
	b = jsonU64(b, o, `,"time_received_ns":`, m.TimeReceivedNs)
	b = jsonU32(b, o, `,"sequence_num":`, m.SequenceNum)
	b = jsonU64(b, o, `,"sampling_rate":`, m.SamplingRate)
	b = jsonBytes(b, o, `,"sampler_address":`, m.SamplerAddress)
	b = jsonU64(b, o, `,"time_flow_start_ns":`, m.TimeFlowStartNs)
	b = jsonU64(b, o, `,"time_flow_end_ns":`, m.TimeFlowEndNs)
	b = jsonU64(b, o, `,"bytes":`, m.Bytes)
	b = jsonU64(b, o, `,"packets":`, m.Packets)
	b = jsonBytes(b, o, `,"src_addr":`, m.SrcAddr)
	b = jsonBytes(b, o, `,"dst_addr":`, m.DstAddr)
	b = jsonU32(b, o, `,"etype":`, m.Etype)
	b = jsonU32(b, o, `,"proto":`, m.Proto)
	b = jsonU32(b, o, `,"src_port":`, m.SrcPort)
	b = jsonU32(b, o, `,"dst_port":`, m.DstPort)
	b = jsonU32(b, o, `,"in_if":`, m.InIf)
	b = jsonU32(b, o, `,"out_if":`, m.OutIf)
	b = jsonU64(b, o, `,"src_mac":`, m.SrcMac)
	b = jsonU64(b, o, `,"dst_mac":`, m.DstMac)
	b = jsonU32(b, o, `,"vlan_id":`, m.VlanId)
	b = jsonU32(b, o, `,"ip_tos":`, m.IpTos)
	b = jsonU32(b, o, `,"forwarding_status":`, m.ForwardingStatus)
	b = jsonU32(b, o, `,"tcp_flags":`, m.TcpFlags)
	b = jsonU32(b, o, `,"icmp_type":`, m.IcmpType)
	b = jsonU32(b, o, `,"icmp_code":`, m.IcmpCode)
	b = jsonU32(b, o, `,"src_as":`, m.SrcAs)
	b = jsonU32(b, o, `,"dst_as":`, m.DstAs)
	b = jsonBytes(b, o, `,"next_hop":`, m.NextHop)
	b = jsonU32(b, o, `,"src_net":`, m.SrcNet)
	b = jsonU32(b, o, `,"dst_net":`, m.DstNet)
	b = jsonBytes(b, o, `,"bgp_next_hop":`, m.BgpNextHop)
	b = jsonU32(b, o, `,"observation_domain_id":`, m.ObservationDomainId)
	b = jsonU32(b, o, `,"observation_point_id":`, m.ObservationPointId)
	b = jsonU32(b, o, `,"schema_version":`, m.SchemaVersion)
	b = jsonEnum(b, o, `,"end_reason":`, int32(m.EndReason), endReasonNames, FlowMessage_EndReason_name)
	b = jsonU64(b, o, `,"l2_bytes":`, m.L2Bytes)
	b = jsonString(b, o, `,"probe_host":`, m.ProbeHost)
	b = jsonString(b, o, `,"in_if_name":`, m.InIfName)
	b = jsonEnum(b, o, `,"flow_direction":`, int32(m.FlowDirection), directionNames, FlowMessage_FlowDirection_name)
	if m.Biflow {
		b = append(jsonKey(b, o, `,"biflow":`), "true"...)
	}
	b = jsonU64(b, o, `,"reverse_bytes":`, m.ReverseBytes)
	b = jsonU64(b, o, `,"reverse_packets":`, m.ReversePackets)
	b = jsonU64(b, o, `,"reverse_l2_bytes":`, m.ReverseL2Bytes)
	b = jsonU64(b, o, `,"reverse_time_flow_start_ns":`, m.ReverseTimeFlowStartNs)
	b = jsonU64(b, o, `,"reverse_time_flow_end_ns":`, m.ReverseTimeFlowEndNs)
	b = jsonU32(b, o, `,"reverse_tcp_flags":`, m.ReverseTcpFlags)
	b = jsonEnum(b, o, `,"tunnel_type":`, int32(m.TunnelType), tunnelTypeNames, FlowMessage_TunnelType_name)
	b = jsonU32(b, o, `,"tunnel_id":`, m.TunnelId)
	b = jsonBytes(b, o, `,"tunnel_src_addr":`, m.TunnelSrcAddr)
	b = jsonBytes(b, o, `,"tunnel_dst_addr":`, m.TunnelDstAddr)
	b = jsonEnum(b, o, `,"mirror_type":`, int32(m.MirrorType), mirrorTypeNames, FlowMessage_MirrorType_name)
	b = jsonU32s(b, o, `,"mpls_labels":`, m.MplsLabels)
	b = jsonU64(b, o, `,"client_nw_delay_ns":`, m.ClientNwDelayNs)
	b = jsonU64(b, o, `,"server_nw_delay_ns":`, m.ServerNwDelayNs)
	b = jsonU64(b, o, `,"appl_latency_ns":`, m.ApplLatencyNs)
	b = jsonU32(b, o, `,"tcp_retransmitted_packets":`, m.TcpRetransmittedPackets)
	b = jsonU32(b, o, `,"tcp_out_of_order_packets":`, m.TcpOutOfOrderPackets)
	b = jsonU32(b, o, `,"tcp_zero_window_packets":`, m.TcpZeroWindowPackets)
	return append(b, '}')
}

// AppendSampleJSON appends m's JSON form (see above) to b. It does not
// allocate when b has the capacity.
func AppendSampleJSON(b []byte, m *SampleMessage) []byte {
	if m == nil {
		return append(b, "{}"...)
	}
	b = append(b, '{')
	o := len(b)
	b = jsonU32(b, o, `,"schema_version":`, m.SchemaVersion)
	b = jsonString(b, o, `,"probe_host":`, m.ProbeHost)
	b = jsonU32(b, o, `,"in_if":`, m.InIf)
	b = jsonString(b, o, `,"in_if_name":`, m.InIfName)
	b = jsonU64(b, o, `,"time_received_ns":`, m.TimeReceivedNs)
	b = jsonU64(b, o, `,"sampling_rate":`, m.SamplingRate)
	b = jsonU32(b, o, `,"orig_len":`, m.OrigLen)
	b = jsonBytes(b, o, `,"data":`, m.Data)
	b = jsonU32(b, o, `,"observation_domain_id":`, m.ObservationDomainId)
	return append(b, '}')
}

// jsonKey appends key (`,"name":`), without its comma for the object's
// first field (o is where the object's fields start).
func jsonKey(b []byte, o int, key string) []byte {
	if len(b) == o {
		key = key[1:]
	}
	return append(b, key...)
}

func jsonU32(b []byte, o int, key string, v uint32) []byte {
	if v == 0 {
		return b
	}
	return strconv.AppendUint(jsonKey(b, o, key), uint64(v), 10)
}

// jsonU32s writes a repeated uint32 as an array of numbers.
func jsonU32s(b []byte, o int, key string, v []uint32) []byte {
	if len(v) == 0 {
		return b
	}
	b = append(jsonKey(b, o, key), '[')
	for i, x := range v {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, uint64(x), 10)
	}
	return append(b, ']')
}

func jsonU64(b []byte, o int, key string, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = append(jsonKey(b, o, key), '"')
	return append(strconv.AppendUint(b, v, 10), '"')
}

func jsonBytes(b []byte, o int, key string, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	b = append(jsonKey(b, o, key), '"')
	return append(base64.StdEncoding.AppendEncode(b, v), '"')
}

func jsonEnum(b []byte, o int, key string, v int32, names []string, byNumber map[int32]string) []byte {
	if v == 0 {
		return b
	}
	b = jsonKey(b, o, key)
	if v > 0 && int(v) < len(names) && names[v] != "" {
		b = append(b, '"')
		b = append(b, names[v]...)
		return append(b, '"')
	}
	if name, ok := byNumber[v]; ok {
		b = append(b, '"')
		b = append(b, name...)
		return append(b, '"')
	}
	return strconv.AppendInt(b, int64(v), 10)
}

// Enum names by number, for the numbers below 256 (the others go to the
// generated map), so the usual lookup is an index. They are built from the
// generated maps, which hold the name protojson writes (the first declared,
// with aliases); the descriptors are not ready at variable initialization.
var (
	flowTypeNames   = enumNames(FlowMessage_FlowType_name)
	endReasonNames  = enumNames(FlowMessage_EndReason_name)
	directionNames  = enumNames(FlowMessage_FlowDirection_name)
	tunnelTypeNames = enumNames(FlowMessage_TunnelType_name)
	mirrorTypeNames = enumNames(FlowMessage_MirrorType_name)
)

func enumNames(byNumber map[int32]string) []string {
	var names []string
	for n, name := range byNumber {
		if n >= 0 && n < 256 {
			if int(n) >= len(names) {
				names = append(names, make([]string, int(n)+1-len(names))...)
			}
			names[n] = name
		}
	}
	return names
}

func jsonString(b []byte, o int, key string, s string) []byte {
	if s == "" {
		return b
	}
	return appendJSONString(jsonKey(b, o, key), s)
}

// appendJSONString appends s as a JSON string the way protojson writes it,
// except that each byte of invalid UTF-8 becomes U+FFFD instead of an error.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0 // s[start:i] is still to be copied as it is
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				b = append(b, s[start:i]...)
				b = append(b, "\uFFFD"...)
				i++
				start = i
				continue
			}
			i += n
			continue
		}
		if c >= ' ' && c != '"' && c != '\\' {
			i++
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			const hex = "0123456789abcdef"
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

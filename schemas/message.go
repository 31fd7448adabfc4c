package schemas

import (
	"bytes"
	"fmt"
	"net/netip"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// SchemaVersion is written in every message's schema_version (flow.proto
// says when it changes).
const SchemaVersion = 1

// Format is how a message is written to Kafka (or a file).
type Format uint8

const (
	FormatProto Format = iota // protobuf binary, one message per Kafka record
	FormatJSON                // protojson with the .proto field names
)

// ParseFormat reads "proto" or "json".
func ParseFormat(s string) (Format, error) {
	switch s {
	case "proto":
		return FormatProto, nil
	case "json":
		return FormatJSON, nil
	}
	return 0, fmt.Errorf("format %q: want proto or json", s)
}

func (f Format) String() string {
	if f == FormatJSON {
		return "json"
	}
	return "proto"
}

var jsonForm = protojson.MarshalOptions{UseProtoNames: true}

// Append appends m in format f to b. FormatJSON writes FlowMessage and
// SampleMessage with AppendFlowJSON and AppendSampleJSON (protojson's
// output, without its cost; a string that is not UTF-8 is written with
// U+FFFD where protojson would fail) and any other message with protojson.
func (f Format) Append(b []byte, m proto.Message) ([]byte, error) {
	if f == FormatJSON {
		switch m := m.(type) {
		case *FlowMessage:
			return AppendFlowJSON(b, m), nil
		case *SampleMessage:
			return AppendSampleJSON(b, m), nil
		}
		return jsonForm.MarshalAppend(b, m)
	}
	return proto.MarshalOptions{}.MarshalAppend(b, m)
}

// Unmarshal reads a message written by Append.
func (f Format) Unmarshal(b []byte, m proto.Message) error {
	if f == FormatJSON {
		return protojson.Unmarshal(b, m)
	}
	return proto.Unmarshal(b, m)
}

// Meta is what the writer of a message knows that a flow record does not.
type Meta struct {
	ProbeHost         string
	ObservationDomain uint32
	SamplingRate      uint64
	IfNames           map[uint32]string // ifindex -> name
}

// ToMessage fills m from f, re-using m's address buffers. Addresses are
// always 16 bytes (IPv4-mapped for IPv4, etype tells the family), so a
// ClickHouse IPv6 / FixedString(16) column takes them as they are.
func (f *Flow) ToMessage(m *FlowMessage, meta *Meta, receivedNs uint64) {
	src, dst := f.SrcAddr.As16(), f.DstAddr.As16()
	m.Type = FlowMessage_XDPFLOW
	m.TimeReceivedNs = receivedNs
	m.SamplingRate = meta.SamplingRate
	m.TimeFlowStartNs = uint64(f.TimeFlowStartNs)
	m.TimeFlowEndNs = uint64(f.TimeFlowEndNs)
	m.Bytes = f.Bytes
	m.Packets = f.Packets
	m.SrcAddr = append(m.SrcAddr[:0], src[:]...)
	m.DstAddr = append(m.DstAddr[:0], dst[:]...)
	m.Etype = 0x0800
	if f.SrcAddr.Is6() {
		m.Etype = 0x86dd
	}
	m.Proto = uint32(f.Proto)
	m.SrcPort, m.DstPort, m.IcmpType, m.IcmpCode = uint32(f.SrcPort), uint32(f.DstPort), 0, 0
	if f.IsICMP() {
		m.SrcPort, m.DstPort = 0, 0
		m.IcmpType, m.IcmpCode = uint32(f.DstPort>>8), uint32(f.DstPort&0xff)
	}
	m.InIf = f.InIf
	m.InIfName = meta.IfNames[f.InIf]
	m.VlanId = uint32(f.VlanId)
	m.IpTos = uint32(f.IpTos)
	m.TcpFlags = uint32(f.TcpFlags)
	m.ObservationDomainId = meta.ObservationDomain
	m.SchemaVersion = SchemaVersion
	m.EndReason = FlowMessage_EndReason(f.EndReason)
	m.L2Bytes = f.L2Bytes
	m.ProbeHost = meta.ProbeHost
	m.FlowDirection = FlowMessage_FlowDirection(f.FlowDirection)
	m.Biflow = f.Biflow
	m.ReverseBytes, m.ReversePackets, m.ReverseL2Bytes = f.ReverseBytes, f.ReversePackets, f.ReverseL2Bytes
	m.ReverseTimeFlowStartNs, m.ReverseTimeFlowEndNs = uint64(f.ReverseTimeFlowStartNs), uint64(f.ReverseTimeFlowEndNs)
	m.ReverseTcpFlags = uint32(f.ReverseTcpFlags)
	m.TunnelType, m.TunnelId = FlowMessage_TunnelType(f.TunnelType), f.TunnelId
	m.TunnelSrcAddr = appendAddr(m.TunnelSrcAddr[:0], f.TunnelSrcAddr)
	m.TunnelDstAddr = appendAddr(m.TunnelDstAddr[:0], f.TunnelDstAddr)
	m.ObservationPointId, m.MirrorType = f.ObservationPointId, FlowMessage_MirrorType(f.MirrorType)
	m.SrcMac, m.DstMac = f.SrcMac.Uint64(), f.DstMac.Uint64()
	m.MplsLabels = append(m.MplsLabels[:0], f.MplsLabels[:MplsDepth(&f.MplsLabels)]...)
	m.ClientNwDelayNs, m.ServerNwDelayNs, m.ApplLatencyNs = f.ClientNwDelayNs, f.ServerNwDelayNs, f.ApplLatencyNs
	m.TcpRetransmittedPackets, m.TcpOutOfOrderPackets, m.TcpZeroWindowPackets = f.TcpRetransmitted, f.TcpOutOfOrder, f.TcpZeroWindow
}

// appendAddr appends a 16-byte (IPv4-mapped) a, nothing for no address.
func appendAddr(b []byte, a netip.Addr) []byte {
	if !a.IsValid() {
		return b
	}
	a16 := a.As16()
	return append(b, a16[:]...)
}

// Flow reads back the record a message was made from (ToMessage's
// inverse for the record's fields).
func (m *FlowMessage) Flow() Flow {
	f := Flow{SrcAddr: Addr(m.SrcAddr), DstAddr: Addr(m.DstAddr), SrcPort: uint16(m.SrcPort), DstPort: uint16(m.DstPort),
		Proto: uint8(m.Proto), VlanId: uint16(m.VlanId), InIf: m.InIf, Packets: m.Packets, Bytes: m.Bytes, L2Bytes: m.L2Bytes,
		TimeFlowStartNs: int64(m.TimeFlowStartNs), TimeFlowEndNs: int64(m.TimeFlowEndNs), TcpFlags: uint16(m.TcpFlags), IpTos: uint8(m.IpTos),
		EndReason: EndReason(m.EndReason), FlowDirection: Direction(m.FlowDirection),
		Biflow: m.Biflow, ReverseBytes: m.ReverseBytes, ReversePackets: m.ReversePackets, ReverseL2Bytes: m.ReverseL2Bytes,
		ReverseTimeFlowStartNs: int64(m.ReverseTimeFlowStartNs), ReverseTimeFlowEndNs: int64(m.ReverseTimeFlowEndNs), ReverseTcpFlags: uint16(m.ReverseTcpFlags),
		TunnelType: TunnelType(m.TunnelType), TunnelId: m.TunnelId, TunnelSrcAddr: Addr(m.TunnelSrcAddr), TunnelDstAddr: Addr(m.TunnelDstAddr),
		ObservationPointId: m.ObservationPointId, MirrorType: MirrorType(m.MirrorType), SrcMac: MACFrom(m.SrcMac), DstMac: MACFrom(m.DstMac),
		ClientNwDelayNs: m.ClientNwDelayNs, ServerNwDelayNs: m.ServerNwDelayNs, ApplLatencyNs: m.ApplLatencyNs,
		TcpRetransmitted: m.TcpRetransmittedPackets, TcpOutOfOrder: m.TcpOutOfOrderPackets, TcpZeroWindow: m.TcpZeroWindowPackets}
	copy(f.MplsLabels[:], m.MplsLabels) // a longer stack (IPFIX has room for 10) keeps its top 8
	if f.IsICMP() {
		f.DstPort = uint16(m.IcmpType<<8 | m.IcmpCode)
	}
	return f
}

// AppendKey appends m's Kafka message key: protocol, then the two
// (address, port) ends in a fixed order, so both directions of a
// conversation have the same key and land in the same partition.
func AppendKey(b []byte, m *FlowMessage) []byte {
	a, ap := m.SrcAddr, m.SrcPort
	z, zp := m.DstAddr, m.DstPort
	if less(z, zp, a, ap) {
		a, ap, z, zp = z, zp, a, ap
	}
	b = append(b, byte(m.Proto))
	b = append(append(b, a...), byte(ap>>8), byte(ap))
	return append(append(b, z...), byte(zp>>8), byte(zp))
}

func less(a []byte, ap uint32, b []byte, bp uint32) bool {
	if c := bytes.Compare(a, b); c != 0 {
		return c < 0
	}
	return ap < bp
}

// Addr reads a message address (16 bytes, IPv4-mapped for IPv4; 4-byte
// addresses from other writers are read too).
func Addr(b []byte) netip.Addr {
	a, _ := netip.AddrFromSlice(b)
	return a.Unmap()
}

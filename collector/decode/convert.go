package decode

import (
	"encoding/binary"

	"github.com/xdpflow/xdpflow/schemas"
)

// msgHeader is what a data record's meaning depends on from its message.
type msgHeader struct {
	version    uint16 // 5, 9, 10
	seq        uint32
	domain     uint32
	exportSecs uint32 // IPFIX export time, v5/v9 unix_secs
	exportNs   uint32 // v5 unix_nsecs
	uptimeMs   uint32 // v5/v9 sysUptime
	receivedNs uint64
}

func (h *msgHeader) flowType() schemas.FlowMessage_FlowType {
	switch h.version {
	case 5:
		return schemas.FlowMessage_NETFLOW_V5
	case 9:
		return schemas.FlowMessage_NETFLOW_V9
	}
	return schemas.FlowMessage_IPFIX
}

// Bits of converter.have: fields whose use depends on other fields of the
// record (fallbacks, family, units).
const (
	hOctets = 1 << iota
	hOctetsTotal
	hOctetsOut
	hPackets
	hPacketsTotal
	hPacketsOut
	hFirst // FIRST_SWITCHED 22
	hLast  // LAST_SWITCHED 21
	hSysInit
	hIPVersion
	hICMPTypeCode
	hICMPType
	hICMPCode
	hVlan
	hSrcMac
	hDstMac
)

// Time sources by precedence: the most precise absolute time wins.
const (
	precNone = iota
	precUptime
	precDelta
	precSec
	precMs
	precUs
	precNs
)

// converter maps one data record, field by field, onto a FlowMessage. A
// record's fields come in template order, so values that need others of
// the same record are kept until finish.
type converter struct {
	m   *schemas.FlowMessage
	h   *msgHeader
	dom *domain
	record
	ifName []byte // options data: interfaceName
}

// record is what the converter keeps of one record. begin resets it whole:
// the converter is pooled and shared by every exporter, so a value left
// over would land in another exporter's record. It holds no pointers, so
// that the reset is a plain clear.
type record struct {
	have                         uint32
	octets, octetsTot, octetsOut uint64
	pkts, pktsTot, pktsOut       uint64
	first, last                  uint32
	sysInitMs                    uint64
	ipVersion                    uint8
	icmpTC                       uint16
	icmpType, icmpCode           uint8
	startNs, endNs               uint64
	startPrec, endPrec           uint8
	samp                         sampling

	// Addresses by family: templates may carry both families and fill one
	// with zeros, so the family is chosen in finish.
	src4, dst4, src6, dst6 addr
	nh4, nh6, bgp4, bgp6   addr

	// Options data records.
	ifIndex uint32
	hasIf   bool
}

// addr is an address IE's value, n == 0 when the record has none.
type addr struct {
	b [16]byte
	n uint8
}

func (a *addr) set(v []byte) { a.n = uint8(copy(a.b[:], v)) }

func (a *addr) bytes() []byte { return a.b[:a.n] }

func (a *addr) zero() bool { return allZero(a.b[:a.n]) }

// beUint reads an unsigned big-endian number of 1 to 8 bytes (reduced-size
// encoding, RFC 7011 6.2); longer values keep their low 8 bytes.
func beUint(v []byte) uint64 {
	switch len(v) {
	case 1:
		return uint64(v[0])
	case 2:
		return uint64(binary.BigEndian.Uint16(v))
	case 4:
		return uint64(binary.BigEndian.Uint32(v))
	case 8:
		return binary.BigEndian.Uint64(v)
	}
	if len(v) > 8 {
		v = v[len(v)-8:]
	}
	var n uint64
	for _, b := range v {
		n = n<<8 | uint64(b)
	}
	return n
}

var v4Mapped = [12]byte{10: 0xff, 11: 0xff}

// putAddr stores a 4- or 16-byte address as 16 bytes (IPv4-mapped) in
// dst's buffer; other lengths leave dst unchanged.
func putAddr(dst []byte, v []byte) []byte {
	switch len(v) {
	case 4:
		return append(append(dst[:0], v4Mapped[:]...), v...)
	case 16:
		return append(dst[:0], v...)
	}
	return dst
}

// begin starts a record: every field of m is reset (its byte buffers kept)
// and the message-level fields are filled.
func (c *converter) begin(m *schemas.FlowMessage, h *msgHeader, dom *domain, exporter *[16]byte) {
	c.m, c.h, c.dom = m, h, dom
	c.record = record{}
	m.Type = h.flowType()
	m.TimeReceivedNs = h.receivedNs
	m.SequenceNum = h.seq
	m.SamplingRate = 0
	m.SamplerAddress = append(m.SamplerAddress[:0], exporter[:]...)
	m.TimeFlowStartNs, m.TimeFlowEndNs = 0, 0
	m.Bytes, m.Packets = 0, 0
	m.SrcAddr, m.DstAddr = m.SrcAddr[:0], m.DstAddr[:0]
	m.Etype, m.Proto, m.SrcPort, m.DstPort = 0, 0, 0, 0
	m.InIf, m.OutIf, m.SrcMac, m.DstMac = 0, 0, 0, 0
	m.VlanId, m.IpTos, m.ForwardingStatus, m.TcpFlags = 0, 0, 0, 0
	m.IcmpType, m.IcmpCode, m.SrcAs, m.DstAs = 0, 0, 0, 0
	m.NextHop, m.BgpNextHop = m.NextHop[:0], m.BgpNextHop[:0]
	m.SrcNet, m.DstNet = 0, 0
	m.ObservationDomainId = h.domain
	m.SchemaVersion = schemas.SchemaVersion
	m.EndReason, m.FlowDirection = 0, 0
	m.Biflow, m.ReverseBytes, m.ReversePackets, m.ReverseL2Bytes = false, 0, 0, 0
	m.ReverseTimeFlowStartNs, m.ReverseTimeFlowEndNs, m.ReverseTcpFlags = 0, 0, 0
	m.L2Bytes = 0
	m.ProbeHost, m.InIfName = "", ""
	m.TunnelType, m.TunnelId, m.MirrorType, m.ObservationPointId = 0, 0, 0, 0
	m.TunnelSrcAddr, m.TunnelDstAddr, m.MplsLabels = m.TunnelSrcAddr[:0], m.TunnelDstAddr[:0], m.MplsLabels[:0]
	m.ClientNwDelayNs, m.ServerNwDelayNs, m.ApplLatencyNs = 0, 0, 0
	m.TcpRetransmittedPackets, m.TcpOutOfOrderPackets, m.TcpZeroWindowPackets = 0, 0, 0
}

// setStart / setEnd keep the most precise flow time a record gives.
func (c *converter) setStart(ns uint64, prec uint8) {
	if prec > c.startPrec {
		c.startNs, c.startPrec = ns, prec
	}
}

func (c *converter) setEnd(ns uint64, prec uint8) {
	if prec > c.endPrec {
		c.endNs, c.endPrec = ns, prec
	}
}

// ntpNs converts an RFC 7011 dateTimeMicroseconds / dateTimeNanoseconds
// value (NTP format: seconds since 1900, 2^-32 s fraction) to Unix ns.
func ntpNs(v uint64, micro bool) uint64 {
	const ntpToUnix = 2_208_988_800
	sec, frac := v>>32, v&0xffffffff
	if micro {
		frac &^= 0x7ff // RFC 7011 6.1.9: the low 11 bits carry nothing for microseconds
	}
	if sec < ntpToUnix {
		return 0
	}
	return (sec-ntpToUnix)*1e9 + frac*1e9>>32
}

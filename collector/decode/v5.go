package decode

import (
	"encoding/binary"

	"github.com/xdpflow/xdpflow/schemas"
)

const (
	v5HeaderLen = 24
	v5RecordLen = 48
)

// decodeV5 decodes a NetFlow v5 message: a fixed header and fixed
// 48-byte records, read at their offsets through the same field mapping as
// v9 (the v5 record is v9's fields 8, 12, 15, 10, 14, 2, 1, 22, 21, 7, 11,
// 6, 4, 5, 16, 17, 9, 13). Its observation domain is engine_type<<8 |
// engine_id; its sequence number counts flows.
//
// Hand-written rather than goflow2's decoders/netflowlegacy: that decoder
// sizes its record slice from the header's count before checking the
// datagram's length (up to 3 MB for a lying 24-byte datagram) and
// allocates per record; BenchmarkDecode measures this code at 19.6 M
// router v5 records/s and 0 allocations, goflow2's at 4.5 M and 3.2.
func (e *exporter) decodeV5(s *scratch, msg []byte, receivedNs uint64, emit func(*schemas.FlowMessage)) error {
	be := binary.BigEndian
	if len(msg) < v5HeaderLen {
		return drop(ReasonTruncated, "%d-byte NetFlow v5 message", len(msg))
	}
	count := int(be.Uint16(msg[2:]))
	if need := v5HeaderLen + v5RecordLen*count; len(msg) < need {
		return drop(ReasonLength, "NetFlow v5 count %d needs %d bytes, message has %d", count, need, len(msg))
	}
	h := &s.hdr
	*h = msgHeader{version: 5, receivedNs: receivedNs,
		uptimeMs: be.Uint32(msg[4:]), exportSecs: be.Uint32(msg[8:]), exportNs: be.Uint32(msg[12:]),
		seq: be.Uint32(msg[16:]), domain: uint32(msg[20])<<8 | uint32(msg[21])}
	dom, err := e.domain(5, h.domain)
	if err != nil {
		return err
	}
	e.c.Messages++
	dom.seq.observeUptime(h.uptimeMs, &e.c)
	dom.seq.observe(h.seq, uint32(count), true, seqRecords, &e.c)
	dom.sampling.domain = uint64(be.Uint16(msg[22:]) & 0x3fff) // the top 2 bits are the sampling mode

	c, m := &s.conv, &s.m
	for i := range count {
		r := msg[v5HeaderLen+v5RecordLen*i:][:v5RecordLen]
		c.begin(m, h, dom, &e.addr16)
		// Always IPv4: set directly, not through finish's choice between
		// families (v5-30: 1,344 against 1,175 ns a message that way).
		m.SrcAddr, m.DstAddr, m.NextHop = putAddr(m.SrcAddr, r[0:4]), putAddr(m.DstAddr, r[4:8]), putAddr(m.NextHop, r[8:12])
		c.ipVersion, c.have = 4, c.have|hIPVersion
		m.InIf = uint32(be.Uint16(r[12:]))
		c.field(ieEgressInterface, r[14:16])
		c.field(schemas.IEPacketDeltaCount, r[16:20])
		c.field(schemas.IEOctetDeltaCount, r[20:24])
		c.field(schemas.IEFirstSwitched, r[24:28])
		c.field(schemas.IELastSwitched, r[28:32])
		// Set directly, not through field (which finds them in
		// schemas.Exported's setters): 1.70 against 1.47 µs per 30-record
		// message that way (min of 5 runs).
		m.SrcPort, m.DstPort = uint32(be.Uint16(r[32:])), uint32(be.Uint16(r[34:]))
		m.TcpFlags, m.Proto, m.IpTos = uint32(r[37]), uint32(r[38]), uint32(r[39])
		c.field(ieSrcAS, r[40:42])
		c.field(ieDstAS, r[42:44])
		c.field(ieSrcMask, r[44:45])
		c.field(ieDstMask, r[45:46])
		c.finish()
		e.c.Records++
		emit(m)
	}
	return nil
}

package ipfix

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/xdpflow/xdpflow/schemas"
)

// testBase is the clock of the encoder tests: flows start after it, and the
// v9 sysUptime origin sits an hour before it.
var testBase = time.Date(2025, 3, 14, 15, 9, 26, 535_000_000, time.UTC)

// fixedFlows covers every field and both families, with values that would
// show truncation: counters past 2^32, sub-millisecond times, ICMP.
func fixedFlows() []schemas.Flow {
	t0 := testBase.UnixNano()
	return []schemas.Flow{
		{SrcAddr: netip.MustParseAddr("10.0.0.1"), DstAddr: netip.MustParseAddr("192.0.2.200"), SrcPort: 40001, DstPort: 443, Proto: 6,
			InIf: 3, Packets: 12, Bytes: 9000, L2Bytes: 9168, TimeFlowStartNs: t0 + 1_234_567, TimeFlowEndNs: t0 + 5_000_999_999,
			TcpFlags: 0x1b, IpTos: 0xb8, EndReason: schemas.EndOfFlow},
		{SrcAddr: netip.MustParseAddr("10.0.0.2"), DstAddr: netip.MustParseAddr("10.0.0.3"), SrcPort: 5353, DstPort: 53, Proto: 17, VlanId: 4094,
			InIf: 0xfffffffe, Packets: 5_000_000_000, Bytes: 1 << 40, L2Bytes: 1<<40 + 18*5_000_000_000, TimeFlowStartNs: t0, TimeFlowEndNs: t0 + 60e9,
			EndReason: schemas.EndActive},
		{SrcAddr: netip.MustParseAddr("198.51.100.7"), DstAddr: netip.MustParseAddr("203.0.113.9"), SrcPort: 0, DstPort: 8 << 8, Proto: 1,
			InIf: 2, Packets: 3, Bytes: 252, L2Bytes: 294, TimeFlowStartNs: t0 + 999_999, TimeFlowEndNs: t0 + 2_000_000, EndReason: schemas.EndIdle},
		{SrcAddr: netip.MustParseAddr("2001:db8::1"), DstAddr: netip.MustParseAddr("2001:db8:ffff::abcd"), SrcPort: 12345, DstPort: 80, Proto: 6,
			VlanId: 100, InIf: 3, Packets: 7, Bytes: 1200, L2Bytes: 1298, TimeFlowStartNs: t0 + 3e9, TimeFlowEndNs: t0 + 4e9, TcpFlags: 0x02, IpTos: 0x20,
			EndReason: schemas.EndForced},
		{SrcAddr: netip.MustParseAddr("fe80::1"), DstAddr: netip.MustParseAddr("ff02::1"), SrcPort: 0, DstPort: 128<<8 | 0, Proto: 58,
			InIf: 4, Packets: 1, Bytes: 104, L2Bytes: 118, TimeFlowStartNs: t0 + 7e9, TimeFlowEndNs: t0 + 7e9, EndReason: schemas.EndLackOfResources},
	}
}

// randomFlows returns n reproducible flows; v6 is the share of IPv6 ones.
func randomFlows(n int, v6 float64, seed uint64) []schemas.Flow {
	r := rand.New(rand.NewPCG(seed, 1))
	t0 := testBase.UnixNano()
	out := make([]schemas.Flow, n)
	for i := range out {
		f := &out[i]
		if r.Float64() < v6 {
			var a, b [16]byte
			for j := range a {
				a[j], b[j] = byte(r.Uint32()), byte(r.Uint32())
			}
			a[0], b[0] = 0x20, 0x20
			f.SrcAddr, f.DstAddr = netip.AddrFrom16(a), netip.AddrFrom16(b)
		} else {
			f.SrcAddr = netip.AddrFrom4([4]byte{10, byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())})
			f.DstAddr = netip.AddrFrom4([4]byte{192, 0, 2, byte(r.Uint32())})
		}
		f.Proto = []uint8{6, 17, 1, 58}[r.IntN(4)]
		f.SrcPort, f.DstPort = uint16(r.Uint32()), uint16(r.Uint32())
		if f.IsICMP() {
			f.SrcPort = 0
		}
		f.VlanId = uint16(r.IntN(4096))
		f.InIf = uint32(r.IntN(8))
		f.Packets = uint64(r.IntN(1e6)) + 1
		f.Bytes = f.Packets * uint64(40+r.IntN(1460))
		f.L2Bytes = f.Bytes + 14*f.Packets
		f.TimeFlowStartNs = t0 + r.Int64N(60e9)
		f.TimeFlowEndNs = f.TimeFlowStartNs + r.Int64N(60e9)
		f.TcpFlags = uint16(r.IntN(0x200))
		f.IpTos = uint8(r.Uint32())
		f.EndReason = schemas.EndReason(1 + r.IntN(5))
	}
	return out
}

// newTestEncoder returns an encoder on a fixed clock that keeps a copy of
// every message.
func newTestEncoder(cfg Config) (*Encoder, *[][]byte) {
	var msgs [][]byte
	e := NewEncoder(cfg, func(m []byte) error {
		msgs = append(msgs, append([]byte(nil), m...))
		return nil
	})
	e.now = func() time.Time { return testBase.Add(2 * time.Minute) }
	e.setBoot(testBase.Add(-time.Hour))
	return e, &msgs
}

// encodeAll encodes templates, flows and a final flush.
func encodeAll(t testing.TB, cfg Config, flows []schemas.Flow) [][]byte {
	t.Helper()
	e, msgs := newTestEncoder(cfg)
	now := e.now()
	if err := e.SendTemplates(now); err != nil {
		t.Fatal(err)
	}
	for i := range flows {
		if err := e.Add(&flows[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Flush(now); err != nil {
		t.Fatal(err)
	}
	return *msgs
}

// wantFlow is what a collector should read back: times in whole ms.
func wantFlow(f schemas.Flow) schemas.Flow {
	f.TimeFlowStartNs = f.TimeFlowStartNs / 1e6 * 1e6
	f.TimeFlowEndNs = f.TimeFlowEndNs / 1e6 * 1e6
	return f
}

// The test's own reading of RFC 7011 / RFC 3954, written from the RFCs,
// not from the encoder.

type parsedSet struct {
	id   uint16
	body []byte // without the set header
}

type parsedMsg struct {
	version           uint16
	count             uint16 // v9
	length            uint16 // IPFIX
	secs, uptime      uint32
	seq, domain       uint32
	size              int
	sets              []parsedSet
	records, dataRecs int // all records / data records (flows + options data)
	flowRecs          int
	setIDs            []uint16
}

type parsedTemplate struct {
	scope  []schemas.Field // options templates (v9: scope types)
	fields []schemas.Field
}

// decoded is everything a sequence of messages said.
type decoded struct {
	proto     Protocol
	templates map[uint16]parsedTemplate
	flows     []schemas.Flow
	icmp      []uint16 // icmpTypeCode of each flow
	sampling  []map[uint16]uint64
	ifaces    map[uint32]string
	msgs      []parsedMsg
}

func newDecoded(p Protocol) *decoded {
	return &decoded{proto: p, templates: map[uint16]parsedTemplate{}, ifaces: map[uint32]string{}}
}

func (d *decoded) feed(b []byte) error {
	be := binary.BigEndian
	hdr := ipfixHeaderLenRFC
	if d.proto == NetFlowV9 {
		hdr = v9HeaderLenRFC
	}
	if len(b) < hdr {
		return fmt.Errorf("message of %d bytes is shorter than a header", len(b))
	}
	m := parsedMsg{version: be.Uint16(b), size: len(b)}
	if int(m.version) != int(d.proto) {
		return fmt.Errorf("version %d, want %d", m.version, d.proto)
	}
	if d.proto == IPFIX {
		m.length, m.secs, m.seq, m.domain = be.Uint16(b[2:]), be.Uint32(b[4:]), be.Uint32(b[8:]), be.Uint32(b[12:])
		if int(m.length) != len(b) {
			return fmt.Errorf("header length %d, message is %d bytes", m.length, len(b))
		}
	} else {
		m.count, m.uptime, m.secs, m.seq, m.domain = be.Uint16(b[2:]), be.Uint32(b[4:]), be.Uint32(b[8:]), be.Uint32(b[12:]), be.Uint32(b[16:])
	}
	rest := b[hdr:]
	for len(rest) > 0 {
		if len(rest) < 4 {
			return fmt.Errorf("%d stray bytes after the last set", len(rest))
		}
		id, l := be.Uint16(rest), int(be.Uint16(rest[2:]))
		if l < 4 || l > len(rest) {
			return fmt.Errorf("set %d: length %d, %d bytes left", id, l, len(rest))
		}
		if d.proto == NetFlowV9 && l%4 != 0 {
			return fmt.Errorf("v9 flowset %d: length %d is not padded to 4 bytes (RFC 3954 5.2)", id, l)
		}
		s := parsedSet{id: id, body: rest[4:l]}
		m.sets = append(m.sets, s)
		m.setIDs = append(m.setIDs, id)
		if err := d.set(&m, s); err != nil {
			return fmt.Errorf("set %d: %w", id, err)
		}
		rest = rest[l:]
	}
	if d.proto == NetFlowV9 && int(m.count) != m.records {
		return fmt.Errorf("v9 count %d, message holds %d records", m.count, m.records)
	}
	d.msgs = append(d.msgs, m)
	return nil
}

const (
	ipfixHeaderLenRFC = 16 // RFC 7011 3.1
	v9HeaderLenRFC    = 20 // RFC 3954 5.1
)

func (d *decoded) set(m *parsedMsg, s parsedSet) error {
	be := binary.BigEndian
	b := s.body
	tmplSet, optSet := uint16(2), uint16(3)
	if d.proto == NetFlowV9 {
		tmplSet, optSet = 0, 1
	}
	switch {
	case s.id == tmplSet:
		for len(b) >= 4 {
			id, n := be.Uint16(b), int(be.Uint16(b[2:]))
			if id < 256 || len(b) < 4+4*n {
				return fmt.Errorf("template %d with %d fields in %d bytes", id, n, len(b))
			}
			var tp parsedTemplate
			for i := range n {
				tp.fields = append(tp.fields, schemas.Field{ID: be.Uint16(b[4+4*i:]), Length: be.Uint16(b[6+4*i:])})
			}
			d.templates[id] = tp
			b = b[4+4*n:]
			m.records++
		}
	case s.id == optSet:
		for len(b) >= 6 {
			id := be.Uint16(b)
			var nScope, nOpt int
			if d.proto == NetFlowV9 { // lengths in bytes (RFC 3954 6.1)
				nScope, nOpt = int(be.Uint16(b[2:]))/4, int(be.Uint16(b[4:]))/4
			} else { // total field count, scope field count (RFC 7011 3.4.2.2)
				nScope, nOpt = int(be.Uint16(b[4:])), int(be.Uint16(b[2:]))-int(be.Uint16(b[4:]))
			}
			if nScope < 1 || nOpt < 0 || len(b) < 6+4*(nScope+nOpt) {
				return fmt.Errorf("options template %d: %d scope, %d option fields in %d bytes", id, nScope, nOpt, len(b))
			}
			var tp parsedTemplate
			for i := range nScope + nOpt {
				f := schemas.Field{ID: be.Uint16(b[6+4*i:]), Length: be.Uint16(b[8+4*i:])}
				if i < nScope {
					tp.scope = append(tp.scope, f)
				} else {
					tp.fields = append(tp.fields, f)
				}
			}
			d.templates[id] = tp
			b = b[6+4*(nScope+nOpt):]
			m.records++
		}
	case s.id >= 256:
		tp, ok := d.templates[s.id]
		if !ok {
			return fmt.Errorf("data set before its template")
		}
		all := append(append([]schemas.Field(nil), tp.scope...), tp.fields...)
		rl := 0
		for _, f := range all {
			rl += int(f.Length)
		}
		for len(b) >= rl {
			if tp.scope != nil {
				d.optionsRecord(tp, b[:rl])
			} else {
				if err := d.flowRecord(m, all, b[:rl]); err != nil {
					return err
				}
				m.flowRecs++
			}
			b = b[rl:]
			m.records++
			m.dataRecs++
		}
		if d.proto == IPFIX && len(b) != 0 {
			return fmt.Errorf("%d bytes after the last %d-byte record (the encoder does not pad IPFIX sets)", len(b), rl)
		}
		if len(b) >= 4 {
			return fmt.Errorf("%d padding bytes", len(b))
		}
		for _, c := range b {
			if c != 0 {
				return fmt.Errorf("non-zero padding")
			}
		}
	default:
		return fmt.Errorf("unexpected set id")
	}
	if s.id < 256 && len(b) >= 4 {
		return fmt.Errorf("%d bytes left in a template set", len(b))
	}
	return nil
}

func uintOf(b []byte) uint64 {
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}

func (d *decoded) flowRecord(m *parsedMsg, fields []schemas.Field, b []byte) error {
	var f schemas.Flow
	var icmp uint16
	for _, fl := range fields {
		v := b[:fl.Length]
		b = b[fl.Length:]
		u := uintOf(v)
		switch fl.ID {
		case schemas.IESourceIPv4Address, schemas.IESourceIPv6Address:
			f.SrcAddr, _ = netip.AddrFromSlice(v)
		case schemas.IEDestinationIPv4Address, schemas.IEDestinationIPv6Address:
			f.DstAddr, _ = netip.AddrFromSlice(v)
		case schemas.IESourceTransportPort:
			f.SrcPort = uint16(u)
		case schemas.IEDestinationTransportPort:
			f.DstPort = uint16(u)
		case schemas.IEProtocolIdentifier:
			f.Proto = uint8(u)
		case schemas.IETCPControlBits:
			f.TcpFlags = uint16(u)
		case schemas.IEIPClassOfService:
			f.IpTos = uint8(u)
		case schemas.IEVlanID:
			f.VlanId = uint16(u)
		case schemas.IEIngressInterface:
			f.InIf = uint32(u)
		case schemas.IEICMPTypeCodeIPv4, schemas.IEICMPTypeCodeIPv6:
			icmp = uint16(u)
		case schemas.IEOctetDeltaCount:
			f.Bytes = u
		case schemas.IEPacketDeltaCount:
			f.Packets = u
		case schemas.IELayer2OctetDeltaCount:
			f.L2Bytes = u
		case schemas.IEFlowStartMilliseconds:
			f.TimeFlowStartNs = int64(u) * 1e6
		case schemas.IEFlowEndMilliseconds:
			f.TimeFlowEndNs = int64(u) * 1e6
		case schemas.IEFirstSwitched, schemas.IELastSwitched:
			// RFC 3954: sysUptime-relative; absolute = unix secs - (sysUptime - switched).
			ms := int64(m.secs)*1000 - int64(m.uptime) + int64(u)
			if fl.ID == schemas.IEFirstSwitched {
				f.TimeFlowStartNs = ms * 1e6
			} else {
				f.TimeFlowEndNs = ms * 1e6
			}
		case schemas.IEFlowEndReason:
			f.EndReason = schemas.EndReason(u)
		default:
			return fmt.Errorf("unexpected field %d in a flow template", fl.ID)
		}
	}
	d.flows = append(d.flows, f)
	d.icmp = append(d.icmp, icmp)
	return nil
}

func (d *decoded) optionsRecord(tp parsedTemplate, b []byte) {
	vals := map[uint16]uint64{}
	var name string
	var scope uint64
	for i, fl := range append(append([]schemas.Field(nil), tp.scope...), tp.fields...) {
		v := b[:fl.Length]
		b = b[fl.Length:]
		if i == 0 {
			scope = uintOf(v)
		}
		if fl.ID == schemas.IEInterfaceName && i > 0 {
			n := 0
			for n < len(v) && v[n] != 0 {
				n++
			}
			name = string(v[:n])
			continue
		}
		vals[fl.ID] = uintOf(v)
	}
	if name != "" {
		d.ifaces[uint32(scope)] = name
		return
	}
	d.sampling = append(d.sampling, vals)
}

// decodeAll decodes msgs in order; any layout error fails the test.
func decodeAll(t testing.TB, p Protocol, msgs [][]byte) *decoded {
	t.Helper()
	d := newDecoded(p)
	for i, m := range msgs {
		if err := d.feed(m); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	return d
}

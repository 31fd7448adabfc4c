package decode

import (
	"encoding/binary"

	"github.com/xdpflow/xdpflow/schemas"
)

const (
	v9HeaderLen    = 20
	ipfixHeaderLen = 16
	setHeaderLen   = 4
)

// decodeTemplated decodes a NetFlow v9 or IPFIX message. The message's
// structure (header, set lengths, template records) is checked whole
// before anything is learnt or emitted, so a malformed message changes no
// state.
func (d *Decoder) decodeTemplated(e *exporter, s *scratch, version uint16, msg []byte, receivedNs uint64, emit func(*schemas.FlowMessage)) error {
	be := binary.BigEndian
	h := &s.hdr // not on the stack: the converter keeps a pointer to it
	*h = msgHeader{version: version, receivedNs: receivedNs}
	var body []byte
	if version == 9 {
		if len(msg) < v9HeaderLen {
			return drop(ReasonTruncated, "%d-byte NetFlow v9 message", len(msg))
		}
		h.uptimeMs, h.exportSecs = be.Uint32(msg[4:]), be.Uint32(msg[8:])
		h.seq, h.domain = be.Uint32(msg[12:]), be.Uint32(msg[16:])
		body = msg[v9HeaderLen:]
	} else {
		if len(msg) < ipfixHeaderLen {
			return drop(ReasonTruncated, "%d-byte IPFIX message", len(msg))
		}
		if n := int(be.Uint16(msg[2:])); n != len(msg) {
			return drop(ReasonLength, "IPFIX header length %d, message %d bytes", n, len(msg))
		}
		h.exportSecs, h.seq, h.domain = be.Uint32(msg[4:]), be.Uint32(msg[8:]), be.Uint32(msg[12:])
		body = msg[ipfixHeaderLen:]
	}
	if err := checkSets(version, body); err != nil {
		return err
	}
	dom, err := e.domain(version, h.domain)
	if err != nil {
		return err
	}
	e.c.Messages++
	d.expirePending(e, receivedNs)
	if version == 9 {
		dom.seq.observeUptime(h.uptimeMs, &e.c)
	}

	var nData uint32
	known := true
	var recErr error
	for b := body; !isPadding(b); {
		id, n := be.Uint16(b), int(be.Uint16(b[2:]))
		set := b[setHeaderLen:n]
		b = b[n:]
		switch {
		case isTemplateSet(version, id):
			walkTemplates(id, set, func(r tmplRecord) { d.learn(e, dom, s, version, id, r, emit) })
		default: // a data set: checkSets let nothing else through
			t := dom.templates[id]
			if t == nil {
				e.c.TemplateMisses++
				d.hold(e, dom, id, h, set)
				known = false
				continue
			}
			n, err := e.decodeData(s, dom, t, h, set, emit)
			nData += n
			if err != nil && recErr == nil {
				recErr = err
			}
		}
	}
	if version == 9 {
		dom.seq.observe(h.seq, 1, true, seqPackets, &e.c)
	} else {
		dom.seq.observe(h.seq, nData, known, seqRecords, &e.c)
	}
	return recErr
}

// checkSets walks the sets of a message body and every template record
// in them.
func checkSets(version uint16, b []byte) error {
	be := binary.BigEndian
	for !isPadding(b) {
		id, n := be.Uint16(b), int(be.Uint16(b[2:]))
		if n < setHeaderLen || n > len(b) {
			return drop(ReasonSetLength, "set %d: length %d, %d bytes left", id, n, len(b))
		}
		switch {
		case isTemplateSet(version, id):
			if err := walkTemplates(id, b[setHeaderLen:n], nil); err != nil {
				return err
			}
		case id < minDataSetID:
			return drop(ReasonSetID, "set id %d", id)
		}
		b = b[n:]
	}
	return nil
}

// isPadding tells the end of a message's sets: nothing left, fewer bytes
// than a set header, or only zeros. Exporters pad (Palo Alto to 1,400
// bytes, Cisco ACI template messages with 64 zero bytes); a set id 0 of
// length 0 is never a set, so a zero tail cannot hide one.
func isPadding(b []byte) bool {
	return len(b) < setHeaderLen || allZero(b)
}

// learn applies one checked template record: a new or refreshed template,
// or an IPFIX withdrawal. Data waiting for a new template is decoded now.
func (d *Decoder) learn(e *exporter, dom *domain, s *scratch, version, setID uint16, r tmplRecord, emit func(*schemas.FlowMessage)) {
	options := setID == setV9Options || setID == setIPFIXOptions
	if r.withdraw {
		e.c.Withdrawals++
		if r.id != setID {
			d.deleteTemplate(dom, r.id)
			return
		}
		for id, t := range dom.templates { // withdraw all (options) templates
			if t.options == options {
				d.deleteTemplate(dom, id)
			}
		}
		return
	}
	t, err := compile(version, setID, r, d.cfg.EnterpriseNumber)
	if err != nil {
		e.c.Dropped[ReasonTemplate]++ // checked already: goflow2 disagreeing is a bug somewhere
		return
	}
	if !d.putTemplate(dom, r.id, t) {
		return
	}
	e.c.Templates++
	if len(dom.pending) > 0 {
		d.replay(e, dom, s, r.id, t, emit)
	}
}

// decodeData decodes the records of one data set with template t and
// returns how many it read (IPFIX sequence numbers count them). Trailing
// bytes too short for a record are padding (RFC 7011 3.3.1). A record
// whose variable-length fields run past the set ends the set, and a set
// with no record in non-zero bytes is an error too.
func (e *exporter) decodeData(s *scratch, dom *domain, t *template, h *msgHeader, b []byte, emit func(*schemas.FlowMessage)) (uint32, error) {
	c, m := &s.conv, &s.m
	var n uint32
	for len(b) >= t.minLen {
		if t.options {
			c.beginOptions()
		} else {
			c.begin(m, h, dom, &e.addr16)
		}
		p := 0
		for i := range t.fields {
			f := &t.fields[i]
			l := int(f.length)
			if f.varLen {
				if p >= len(b) {
					return n, drop(ReasonRecord, "variable length past the set end")
				}
				l = int(b[p])
				p++
				if l == 255 {
					if p+2 > len(b) {
						return n, drop(ReasonRecord, "variable length past the set end")
					}
					l = int(b[p])<<8 | int(b[p+1])
					p += 2
				}
			}
			if p+l > len(b) {
				return n, drop(ReasonRecord, "field %d: %d bytes at %d, set has %d", f.id, l, p, len(b))
			}
			switch {
			case f.set != nil:
				f.set(m, beUint(b[p:p+l]))
			case f.id != 0:
				if t.options {
					c.optionsField(f.id, b[p:p+l])
				} else {
					c.field(f.id, b[p:p+l])
				}
			}
			p += l
		}
		b = b[p:]
		n++
		if t.options {
			c.finishOptions(dom)
			e.c.OptionsRecords++
		} else {
			c.finish()
			e.c.Records++
			emit(m)
		}
		if p == 0 {
			break // cannot happen (templates have no zero-length record), but never spin
		}
	}
	if n == 0 && !allZero(b) {
		// Not padding: a set too short for one record of its template
		// (a wrong template, or a record cut short) must not vanish.
		return 0, drop(ReasonRecord, "data set of %d bytes, records of template need %d", len(b), t.minLen)
	}
	return n, nil
}

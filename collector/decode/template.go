package decode

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/xdpflow/xdpflow/schemas"

	"github.com/netsampler/goflow2/v2/decoders/netflow"
)

// Set ids (RFC 3954 5.2, RFC 7011 3.3.2).
const (
	setV9Template       = 0
	setV9Options        = 1
	setIPFIXTemplate    = 2
	setIPFIXOptions     = 3
	minDataSetID        = 256
	ipfixVarLen         = 0xffff
	ipfixEnterpriseBit  = 0x8000
	ieReverse           = 0x8000             // tfield.id of an RFC 5103 reverse IE: the forward IE with this bit
	ieOurs              = 0x4000             // tfield.id of an IE of xdpflow's own (Config.EnterpriseNumber): the IE with this bit
	ieNtop              = ieReverse | ieOurs // tfield.id of one of ntop's IEs (PEN 35632; v9 57472 + IE): the IE with both bits
	v9ScopeInterface    = 2                  // RFC 3954 6.1 scope type "Interface"
	ieIngressInterfaceV = 10
)

// tfield is one field of a compiled template. id 0 means "skip": an
// enterprise-specific field, or a v9 scope this package does not read.
type tfield struct {
	id, length uint16
	varLen     bool                               // IPFIX variable length (RFC 7011 7)
	set        func(*schemas.FlowMessage, uint64) // data templates: id's schemas.Exported setter, if any
}

// template is a compiled template: options templates have their scope
// fields first, as the records do.
type template struct {
	fields  []tfield
	options bool
	minLen  int // bytes of a record whose variable-length fields are empty
}

func isTemplateSet(version, id uint16) bool {
	if version == 9 {
		return id == setV9Template || id == setV9Options
	}
	return id == setIPFIXTemplate || id == setIPFIXOptions
}

// tmplRecord is one record of a template or options template set.
type tmplRecord struct {
	id       uint16
	withdraw bool   // IPFIX withdrawal (field count 0); id == the set id: all of that kind
	raw      []byte // the whole record, which goflow2 parses
	nfields  int
}

// nextTemplate checks the template record at the start of b, in a set
// with id setID, against what RFC 3954 / 7011 allow and the set's length.
// n == 0 means the rest of the set is padding.
func nextTemplate(setID uint16, b []byte) (r tmplRecord, n int, err *DropError) {
	be := binary.BigEndian
	hdr := 4 // id, field count
	if setID == setV9Options || setID == setIPFIXOptions {
		hdr = 6 // + v9 scope and option lengths / IPFIX scope field count
	}
	if len(b) < 4 || (len(b) < hdr && setID == setV9Options) {
		return r, 0, nil
	}
	r.id = be.Uint16(b)
	count := int(be.Uint16(b[2:]))
	if r.id == 0 && count == 0 {
		return r, 0, nil // zero padding
	}
	if count == 0 && setID >= setIPFIXTemplate {
		if r.id != setID && r.id < minDataSetID {
			return r, 0, drop(ReasonTemplateID, "withdrawal of template id %d", r.id)
		}
		r.withdraw, r.raw = true, b[:4]
		return r, 4, nil
	}
	if r.id < minDataSetID {
		return r, 0, drop(ReasonTemplateID, "template id %d in set %d", r.id, setID)
	}
	if len(b) < hdr {
		return r, 0, drop(ReasonTemplate, "template %d: record header past the set end", r.id)
	}
	switch setID {
	case setV9Options:
		scope, opts := int(be.Uint16(b[2:])), int(be.Uint16(b[4:]))
		if scope%4 != 0 || opts%4 != 0 {
			return r, 0, drop(ReasonTemplate, "options template %d: scope length %d, option length %d: not multiples of 4", r.id, scope, opts)
		}
		count = (scope + opts) / 4
	case setIPFIXOptions:
		if scope := int(be.Uint16(b[4:])); scope == 0 || scope > count {
			return r, 0, drop(ReasonTemplate, "options template %d: %d scope fields of %d", r.id, scope, count)
		}
	}
	if count == 0 || count > maxTemplateFields {
		return r, 0, drop(ReasonTemplate, "template %d: %d fields", r.id, count)
	}
	p := hdr
	for i := range count {
		if p+4 > len(b) {
			return r, 0, drop(ReasonTemplate, "template %d: field %d of %d past the set end", r.id, i, count)
		}
		// A field of length 0 is accepted (Juniper SRX and MX send v9
		// options with a System scope of length 0): it reads no bytes.
		typ := be.Uint16(b[p:])
		p += 4
		if typ&ipfixEnterpriseBit != 0 && setID >= setIPFIXTemplate {
			p += 4 // enterprise number
			if p > len(b) {
				return r, 0, drop(ReasonTemplate, "template %d: enterprise number of field %d past the set end", r.id, i)
			}
		}
	}
	r.raw, r.nfields = b[:p], count
	return r, p, nil
}

// walkTemplates checks (fn nil) or applies every record of a template set.
func walkTemplates(setID uint16, b []byte, fn func(tmplRecord)) *DropError {
	for len(b) > 0 {
		r, n, err := nextTemplate(setID, b)
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if fn != nil {
			fn(r)
		}
		b = b[n:]
	}
	return nil
}

// compile has goflow2 parse a checked template record and compiles it;
// IEs under enterprise number pen are xdpflow's own.
func compile(version, setID uint16, r tmplRecord, pen uint32) (*template, error) {
	buf := bytes.NewBuffer(r.raw)
	var scopes, opts []netflow.Field
	switch setID {
	case setV9Template, setIPFIXTemplate:
		recs, err := netflow.DecodeTemplateSet(version, buf)
		if err != nil || len(recs) != 1 {
			return nil, fmt.Errorf("goflow2: template %d: %d records: %w", r.id, len(recs), err)
		}
		opts = recs[0].Fields
	case setV9Options:
		recs, err := netflow.DecodeNFv9OptionsTemplateSet(buf)
		if err != nil || len(recs) != 1 {
			return nil, fmt.Errorf("goflow2: options template %d: %d records: %w", r.id, len(recs), err)
		}
		scopes, opts = recs[0].Scopes, recs[0].Options
	case setIPFIXOptions:
		recs, err := netflow.DecodeIPFIXOptionsTemplateSet(buf)
		if err != nil || len(recs) != 1 {
			return nil, fmt.Errorf("goflow2: options template %d: %d records: %w", r.id, len(recs), err)
		}
		scopes, opts = recs[0].Scopes, recs[0].Options
	}
	if len(scopes)+len(opts) != r.nfields {
		return nil, fmt.Errorf("goflow2 read %d fields of template %d, want %d", len(scopes)+len(opts), r.id, r.nfields)
	}
	t := &template{options: setID == setV9Options || setID == setIPFIXOptions, fields: make([]tfield, 0, r.nfields)}
	alias := aliases(opts)
	add := func(f netflow.Field, id uint16) {
		// Length 65535 is variable length in v9 too (H3C's strings), read
		// as RFC 7011 7 says: RFC 3954 reserves no length.
		tf := tfield{id: id, length: f.Length, varLen: f.Length == ipfixVarLen}
		typ := f.Type &^ ipfixEnterpriseBit
		ntop, isNtop := schemas.NtopIE(f.Type)
		switch {
		case version == 9 && isNtop && ntop < ieOurs: // nProbe's (TCP latencies)
			tf.id = ieNtop | ntop
		case f.PenProvided && f.Pen == schemas.PENNtop && typ < ieOurs:
			tf.id = ieNtop | typ
		case typ >= ieOurs: // no IE this package reads; keeps the flag bits free
			tf.id = 0
		case !f.PenProvided:
		case f.Pen == schemas.PENReverse: // RFC 5103: the reverse direction's IE
			tf.id = ieReverse | typ
		case f.Pen == pen && pen != 0:
			tf.id = ieOurs | typ
		default:
			tf.id = 0
		}
		if !t.options && tf.id < ieReverse {
			tf.id = alias.get(tf.id)
		}
		if !t.options {
			tf.set = setter(tf.id)
		}
		t.fields = append(t.fields, tf)
		if tf.varLen {
			t.minLen++
		} else {
			t.minLen += int(f.Length)
		}
	}
	for _, f := range scopes {
		id := f.Type
		if version == 9 { // v9 scopes are scope types, not field types
			id = 0
			if f.Type == v9ScopeInterface {
				id = ieIngressInterfaceV
			}
		}
		add(f, id)
	}
	for _, f := range opts {
		add(f, f.Type)
	}
	if t.minLen == 0 { // no variable-length field either: records of 0 bytes
		return nil, fmt.Errorf("template %d: records of 0 bytes", r.id)
	}
	return t, nil
}

// aliasIE is an IE read as another when a template lacks that other.
var aliasIE = []struct{ ie, as, unless uint16 }{
	{ieInitiatorOctets, schemas.IEOctetDeltaCount, schemas.IEOctetDeltaCount},
	{ieInitiatorPackets, schemas.IEPacketDeltaCount, schemas.IEPacketDeltaCount},
	{ieResponderOctets, ieResponderOctets, schemas.IEOctetDeltaCount},
	{ieResponderPackets, ieResponderPackets, schemas.IEPacketDeltaCount},
	{ieIngressPhysicalIf, schemas.IEIngressInterface, schemas.IEIngressInterface},
	{ieEgressPhysicalIf, ieEgressInterface, ieEgressInterface},
}

// aliasMap maps a field id to itself but for the aliases that apply.
type aliasMap map[uint16]uint16

func (a aliasMap) get(id uint16) uint16 {
	if to, ok := a[id]; ok {
		return to
	}
	return id
}

// aliases decides, per template, which IEs stand in for absent ones:
// NSEL's initiator/responder counters (Cisco ASA sends no delta counters)
// and the physical interfaces when the logical ones are absent. An IE of
// aliasIE that does not apply is skipped (id 0).
func aliases(fields []netflow.Field) aliasMap {
	var a aliasMap
	for _, al := range aliasIE {
		present, unless := false, false
		for _, f := range fields {
			if f.PenProvided {
				continue
			}
			switch f.Type {
			case al.ie:
				present = true
			case al.unless:
				unless = true
			}
		}
		if !present {
			continue
		}
		if a == nil {
			a = aliasMap{}
		}
		if unless {
			a[al.ie] = 0
		} else {
			a[al.ie] = al.as
		}
	}
	return a
}

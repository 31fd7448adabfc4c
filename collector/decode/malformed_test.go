package decode

import (
	"errors"
	"testing"

	"github.com/xdpflow/xdpflow/schemas"
)

// Every kind of malformed message is dropped, counted under its reason,
// and emits nothing.
func TestMalformed(t *testing.T) {
	varTmpl := tmpl(301, 8, 4, 82, 0xffff) // address + variable-length interfaceName
	cases := []struct {
		name    string
		msg     []byte
		reason  Reason
		records int // emitted before the bad part (bad_record only)
	}{
		{"empty", nil, ReasonTruncated, 0},
		{"one byte", []byte{0}, ReasonTruncated, 0},
		{"unknown version", cat(be16(7), make([]byte, 30)), ReasonVersion, 0},
		{"sflow-like garbage", cat(be32(5), make([]byte, 40)), ReasonVersion, 0},
		{"ipfix short header", cat(be16(10), be16(10), make([]byte, 6)), ReasonTruncated, 0},
		{"ipfix length past the datagram", func() []byte { m := ipfixMsg(0, 1, set(2, tmpl300)); m[3] += 8; return m }(), ReasonLength, 0},
		{"ipfix length short of the datagram", append(ipfixMsg(0, 1, set(2, tmpl300)), 0, 0, 0, 0), ReasonLength, 0},
		{"ipfix length below header", cat(be16(10), be16(8), make([]byte, 12)), ReasonLength, 0},
		{"set length below 4", ipfixMsg(0, 1, cat(be16(2), be16(2), make([]byte, 8))), ReasonSetLength, 0},
		{"set length past the end", ipfixMsg(0, 1, cat(be16(300), be16(400), make([]byte, 8))), ReasonSetLength, 0},
		{"non-zero bytes after the last set", ipfixMsg(0, 1, set(2, tmpl300), []byte{0, 0, 0, 0, 0, 1}), ReasonSetLength, 0},
		{"v9 non-zero bytes after the last set", v9Msg(1000, 0, 1, set(0, tmpl300), []byte{0, 0, 0, 0, 0, 1}), ReasonSetLength, 0},
		{"reserved set id", ipfixMsg(0, 1, set(5, make([]byte, 8))), ReasonSetID, 0},
		{"ipfix set id 0", ipfixMsg(0, 1, set(0, tmpl300)), ReasonSetID, 0},
		{"v9 set id 2", v9Msg(1000, 0, 1, set(2, tmpl300)), ReasonSetID, 0},
		{"template id below 256", ipfixMsg(0, 1, set(2, tmpl(255, 8, 4))), ReasonTemplateID, 0},
		{"v9 template id below 256", v9Msg(1000, 0, 1, set(0, tmpl(17, 8, 4))), ReasonTemplateID, 0},
		{"withdrawal of id below 256", ipfixMsg(0, 1, set(2, tmpl(9))), ReasonTemplateID, 0},
		{"huge field count", ipfixMsg(0, 1, set(2, cat(be16(300), be16(65535), be16(8), be16(4)))), ReasonTemplate, 0},
		{"field count past the set", ipfixMsg(0, 1, set(2, cat(be16(300), be16(3), be16(8), be16(4)))), ReasonTemplate, 0},
		{"enterprise number past the set", ipfixMsg(0, 1, set(2, cat(be16(300), be16(1), be16(0x8001), be16(4)))), ReasonTemplate, 0},
		{"options scope count 0", ipfixMsg(0, 1, set(3, cat(be16(400), be16(1), be16(0), be16(34), be16(4)))), ReasonTemplate, 0},
		{"options scope count > field count", ipfixMsg(0, 1, set(3, cat(be16(400), be16(1), be16(2), be16(34), be16(4)))), ReasonTemplate, 0},
		{"v9 options length not /4", v9Msg(1000, 0, 1, set(1, cat(be16(400), be16(3), be16(4), be16(1), be16(4), be16(34), be16(4)))), ReasonTemplate, 0},
		{"v9 template with no fields", v9Msg(1000, 0, 1, set(0, tmpl(300))), ReasonTemplate, 0},
		{"v9 short header", cat(be16(9), make([]byte, 10)), ReasonTruncated, 0},
		{"v5 short header", cat(be16(5), make([]byte, 10)), ReasonTruncated, 0},
		{"v5 count past the datagram", func() []byte { m := v5Msg(0, 100000, 2); m[3] = 30; return m }(), ReasonLength, 0},
		{"variable-length field past the set", ipfixMsg(0, 1, set(2, varTmpl),
			set(301, []byte{10, 0, 0, 1, 3, 'e', 't', 'h'}, []byte{10, 0, 0, 2, 255, 0, 200, 'x'})), ReasonRecord, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := New(Config{})
			n := 0
			err := d.Decode(testExporter, tc.msg, 1, func(*schemas.FlowMessage) { n++ })
			var de *DropError
			if !errors.As(err, &de) || !errors.Is(err, ErrDropped) || de.Reason != tc.reason {
				t.Fatalf("error %v, want reason %v", err, tc.reason)
			}
			if n != tc.records {
				t.Errorf("%d records emitted, want %d", n, tc.records)
			}
			st := d.Stats().Total
			if st.Dropped[tc.reason] != 1 || len(st.Bad()) != 1 {
				t.Errorf("drops %v, want one %v", st.Bad(), tc.reason)
			}
			if tc.reason != ReasonRecord && (st.Templates != 0 || st.Messages != 0) {
				t.Errorf("a dropped message changed state: %+v", st)
			}
		})
	}
}

// A message that is not malformed but claims odd things decodes sanely.
func TestOddButValid(t *testing.T) {
	d := New(Config{})
	// v9 padding after the last set, and a template set padded to 4 bytes.
	msg := v9Msg(1000, 0, 1, set(0, tmpl300, []byte{0, 0, 0, 0}), set(300, rec300(1), rec300(2), []byte{0, 0}), []byte{0, 0})
	n := 0
	if err := d.Decode(testExporter, msg, 1, func(*schemas.FlowMessage) { n++ }); err != nil || n != 2 {
		t.Fatalf("%d records, %v", n, err)
	}
	// IPFIX enterprise fields are skipped with their length.
	ent := cat(be16(302), be16(2), be16(0x8000|5), be16(4), be32(29305), be16(8), be16(4))
	msg = ipfixMsg(0, 1, set(2, ent), set(302, cat(be32(0xdeadbeef), []byte{192, 0, 2, 1})))
	var src string
	if err := d.Decode(testExporter, msg, 1, func(m *schemas.FlowMessage) { src = schemas.Addr(m.SrcAddr).String() }); err != nil || src != "192.0.2.1" {
		t.Fatalf("src %q, %v", src, err)
	}
}

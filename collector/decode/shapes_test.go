package decode

import (
	"encoding/binary"
	"math"
	"net/netip"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/xdpflow/xdpflow/schemas"
)

// Export shapes seen from real exporters (issue #14, classes 1-8), built
// by hand from RFC 3954 / 7011 / 5477 / 7270 and the vendors' documented
// layouts. Expected values are stated in each test.

// fv is a template field and the value one record gives it.
type fv struct {
	ie, length uint16
	val        []byte
}

func f(ie uint16, val []byte) fv { return fv{ie, uint16(len(val)), val} }

func u8(v uint8) []byte   { return []byte{v} }
func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
func ip(s string) []byte  { return netip.MustParseAddr(s).AsSlice() }

func fieldSpecs(fs []fv) []byte {
	var b []byte
	for _, x := range fs {
		b = append(b, cat(be16(x.ie), be16(x.length))...)
	}
	return b
}

// tmplOf is a template record of fs's fields.
func tmplOf(id uint16, fs ...fv) []byte {
	return cat(be16(id), be16(uint16(len(fs))), fieldSpecs(fs))
}

// recOf is a record of fs's values.
func recOf(fs ...fv) []byte {
	var b []byte
	for _, x := range fs {
		b = append(b, x.val...)
	}
	return b
}

// v9OptTmpl is a NetFlow v9 options template record (RFC 3954 6.1): scope
// types, then option fields.
func v9OptTmpl(id uint16, scopes, opts []fv) []byte {
	return cat(be16(id), be16(uint16(4*len(scopes))), be16(uint16(4*len(opts))), fieldSpecs(scopes), fieldSpecs(opts))
}

// ipfixOptTmpl is an IPFIX options template record (RFC 7011 3.4.2.2).
func ipfixOptTmpl(id uint16, scopes, opts []fv) []byte {
	return cat(be16(id), be16(uint16(len(scopes)+len(opts))), be16(uint16(len(scopes))), fieldSpecs(scopes), fieldSpecs(opts))
}

// decodeOne decodes msgs from one exporter and returns copies of the
// records, failing on any drop.
func decodeMsgs(t *testing.T, d *Decoder, from netip.AddrPort, msgs ...[]byte) []*schemas.FlowMessage {
	t.Helper()
	recs := decodeAll(t, d, from, msgs, 1)
	if st := d.Stats().Total; len(st.Bad()) != 0 {
		bad := st.Bad()
		t.Fatalf("drops: %v", bad)
	}
	return recs
}

func addrOf(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return schemas.Addr(b).String()
}

// Class 1: templates with both address families, one pair zero-filled
// (IOS XR, Procera): the family that is set, or the one ipVersion names.
func TestBothAddressFamilies(t *testing.T) {
	z4, z6 := make([]byte, 4), make([]byte, 16)
	rec := func(s4, d4, s6, d6, nh4, nh6 []byte) []fv {
		return []fv{f(8, s4), f(12, d4), f(27, s6), f(28, d6), f(15, nh4), f(62, nh6), f(1, be32(1500)), f(2, be32(3))}
	}
	withVersion := func(v uint8, fs []fv) []fv { return append([]fv{f(60, u8(v))}, fs...) }
	cases := []struct {
		name              string
		fields            []fv
		src, dst, nextHop string
		etype             uint32
	}{
		{"v4 set, v6 zero", rec(ip("10.0.0.1"), ip("10.0.0.2"), z6, z6, ip("192.0.2.1"), z6), "10.0.0.1", "10.0.0.2", "192.0.2.1", 0x0800},
		{"v6 set, v4 zero", rec(z4, z4, ip("2001:db8::1"), ip("2001:db8::2"), z4, ip("2001:db8::fe")), "2001:db8::1", "2001:db8::2", "2001:db8::fe", 0x86dd},
		{"v6 set, next hop v4 only", rec(z4, z4, ip("2001:db8::1"), ip("2001:db8::2"), ip("192.0.2.9"), z6), "2001:db8::1", "2001:db8::2", "192.0.2.9", 0x86dd},
		{"only the v6 source set", rec(z4, z4, ip("2001:db8::1"), z6, z4, z6), "2001:db8::1", "::", "::", 0x86dd},
		{"all zero", rec(z4, z4, z6, z6, z4, z6), "0.0.0.0", "0.0.0.0", "0.0.0.0", 0x0800},
		{"ipVersion 6 names the zero family", withVersion(6, rec(ip("10.0.0.1"), z4, z6, z6, z4, z6)), "::", "::", "::", 0x86dd},
		{"ipVersion 4", withVersion(4, rec(z4, ip("10.9.9.9"), z6, ip("2001:db8::2"), z4, z6)), "0.0.0.0", "10.9.9.9", "0.0.0.0", 0x0800},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, v9 := range []bool{false, true} {
				msg := ipfixMsg(0, 1, set(2, tmplOf(310, tc.fields...)), set(310, recOf(tc.fields...)))
				if v9 {
					msg = v9Msg(1000, 0, 1, set(0, tmplOf(310, tc.fields...)), set(310, recOf(tc.fields...)))
				}
				recs := decodeMsgs(t, New(Config{}), testExporter, msg)
				if len(recs) != 1 {
					t.Fatalf("v9 %v: %d records", v9, len(recs))
				}
				m := recs[0]
				if addrOf(m.SrcAddr) != tc.src || addrOf(m.DstAddr) != tc.dst || addrOf(m.NextHop) != tc.nextHop || m.Etype != tc.etype {
					t.Errorf("v9 %v: src %s dst %s next hop %s etype %#x, want %s %s %s %#x", v9,
						addrOf(m.SrcAddr), addrOf(m.DstAddr), addrOf(m.NextHop), m.Etype, tc.src, tc.dst, tc.nextHop, tc.etype)
				}
				if m.Bytes != 1500 || m.Packets != 3 {
					t.Errorf("v9 %v: bytes %d packets %d, want 1500 3", v9, m.Bytes, m.Packets)
				}
			}
		})
	}
}

// Class 2: the converter is shared by every exporter; nothing of one
// exporter's record may reach another's. Three exporters interleaved in
// one decoder give exactly what each gives in a decoder of its own, and
// the values stated.
func TestExportersInterleaved(t *testing.T) {
	a := netip.MustParseAddrPort("192.0.2.1:1000")
	b := netip.MustParseAddrPort("192.0.2.2:1000")
	c := netip.MustParseAddrPort("192.0.2.3:1000")
	// A: sampling in the record, 1 selected then 255 skipped; ipVersion;
	// both families; NSEL counters.
	recA := []fv{f(60, u8(6)), f(8, make([]byte, 4)), f(27, ip("2001:db8::a")), f(305, be32(1)), f(306, be32(255)),
		f(231, u64(7000)), f(298, u64(7)), f(232, u64(900)), f(299, u64(2)), f(252, be32(17))}
	// B: samplingPacketInterval only (nothing skipped: 1 in 1), IPv4.
	recB := []fv{f(8, ip("10.0.0.2")), f(1, be32(300)), f(2, be32(1)), f(305, be32(1))}
	// C: v9, no sampling at all, no counters.
	recC := []fv{f(8, ip("10.0.0.3")), f(4, u8(17))}
	msgs := map[netip.AddrPort][][]byte{
		a: {ipfixMsg(0, 1, set(2, tmplOf(300, recA...)), set(300, recOf(recA...))), ipfixMsg(1, 1, set(300, recOf(recA...)))},
		b: {ipfixMsg(0, 1, set(2, tmplOf(300, recB...)), set(300, recOf(recB...))), ipfixMsg(1, 1, set(300, recOf(recB...)))},
		c: {v9Msg(1000, 0, 1, set(0, tmplOf(300, recC...)), set(300, recOf(recC...))), v9Msg(1001, 1, 1, set(300, recOf(recC...)))},
	}
	type want struct {
		rate, bytes, pkts, revBytes, revPkts uint64
		src                                  string
		etype, inIf                          uint32
		biflow                               bool
	}
	wants := map[netip.AddrPort]want{
		a: {256, 7000, 7, 900, 2, "2001:db8::a", 0x86dd, 17, true},
		b: {1, 300, 1, 0, 0, "10.0.0.2", 0x0800, 0, false},
		c: {0, 0, 0, 0, 0, "10.0.0.3", 0x0800, 0, false},
	}
	alone := map[netip.AddrPort][]*schemas.FlowMessage{}
	for from, ms := range msgs {
		alone[from] = decodeMsgs(t, New(Config{}), from, ms...)
	}
	d := New(Config{})
	for i := range 2 {
		for j, from := range []netip.AddrPort{a, b, c} {
			recs := decodeMsgs(t, d, from, msgs[from][i])
			w := wants[from]
			for _, m := range recs {
				got := want{m.SamplingRate, m.Bytes, m.Packets, m.ReverseBytes, m.ReversePackets, addrOf(m.SrcAddr), m.Etype, m.InIf, m.Biflow}
				if got != w {
					t.Errorf("exporter %d message %d: %+v, want %+v", j, i, got, w)
				}
				if !proto.Equal(m, alone[from][i]) {
					t.Errorf("exporter %d message %d: %v, alone %v", j, i, m, alone[from][i])
				}
			}
		}
	}
}

// Class 3: selectorAlgorithm (RFC 5477) names the IEs that give the rate;
// 0 when it cannot be known.
func TestSamplingAlgorithms(t *testing.T) {
	f64 := func(p float64) []byte { return u64(math.Float64bits(p)) }
	f32 := func(p float32) []byte { return be32(math.Float32bits(p)) }
	cases := []struct {
		name string
		opts []fv
		rate uint64
	}{
		{"random 1 out of 256", []fv{f(304, be16(3)), f(309, be32(1)), f(310, be32(256))}, 256},
		{"random 3 out of 1000, rounded", []fv{f(304, be16(3)), f(309, be32(3)), f(310, be32(1000))}, 333},
		{"random n-out-of-N over a packet interval", []fv{f(304, be16(3)), f(305, be32(1)), f(309, be32(2)), f(310, be32(1024))}, 512},
		{"random, population missing", []fv{f(304, be16(3)), f(309, be32(1)), f(34, be32(100))}, 0},
		{"systematic count", []fv{f(304, be16(1)), f(305, be32(1)), f(306, be32(99))}, 100},
		{"systematic count, runs of 10", []fv{f(304, be16(1)), f(305, be32(10)), f(306, be32(90))}, 10},
		{"systematic time", []fv{f(304, be16(2)), f(307, be32(1000)), f(308, be32(99000)), f(34, be32(100))}, 0},
		{"uniform probabilistic", []fv{f(304, be16(4)), f(311, f64(0.01))}, 100},
		{"uniform probabilistic, float32", []fv{f(304, be16(4)), f(311, f32(0.25))}, 4},
		{"probability out of range", []fv{f(304, be16(4)), f(311, f64(1.5))}, 0},
		{"property match filtering", []fv{f(304, be16(5))}, 1},
		{"hash-based filtering", []fv{f(304, be16(6)), f(34, be32(10))}, 0},
		{"unknown algorithm", []fv{f(304, be16(99)), f(305, be32(1)), f(306, be32(9))}, 0},
		{"samplingAlgorithm random, samplingInterval", []fv{f(35, u8(2)), f(34, be32(512))}, 512},
		{"samplerMode, samplerRandomInterval", []fv{f(49, u8(2)), f(50, be32(2000))}, 2000},
		{"n-out-of-N without selectorAlgorithm", []fv{f(309, be32(1)), f(310, be32(64))}, 64},
		{"the probe's own", []fv{f(305, be32(1)), f(306, be32(1023)), f(304, be16(1)), f(34, be32(1024)), f(35, u8(1))}, 1024},
	}
	data := []fv{f(8, ip("10.0.0.1")), f(1, be32(100)), f(2, be32(1))}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			scope := []fv{f(149, be32(1))}
			// First a known rate, so that "unknown" must replace it.
			first := []fv{f(34, be32(7))}
			msg := ipfixMsg(0, 1,
				set(3, ipfixOptTmpl(400, scope, first), ipfixOptTmpl(401, scope, tc.opts)),
				set(2, tmplOf(300, data...)),
				set(400, recOf(append(scope, first...)...)),
				set(401, recOf(append(scope, tc.opts...)...)),
				set(300, recOf(data...)))
			recs := decodeMsgs(t, New(Config{}), testExporter, msg)
			if len(recs) != 1 || recs[0].SamplingRate != tc.rate {
				t.Fatalf("%d records, rate %d, want %d", len(recs), recs[0].SamplingRate, tc.rate)
			}
			// The same IEs in the flow record itself.
			recFields := append(append([]fv(nil), data...), tc.opts...)
			msg = ipfixMsg(0, 1, set(2, tmplOf(302, recFields...)), set(302, recOf(recFields...)))
			recs = decodeMsgs(t, New(Config{}), testExporter, msg)
			if len(recs) != 1 || recs[0].SamplingRate != tc.rate {
				t.Fatalf("in the record: %d records, rate %d, want %d", len(recs), recs[0].SamplingRate, tc.rate)
			}
		})
	}
}

// Class 4: several samplers in one exporter (v9 FLOW_SAMPLER_ID in the
// records, rates in options data naming the sampler; IPFIX selectorId as
// the options scope): each record gets its sampler's rate.
func TestPerSamplerRates(t *testing.T) {
	t.Run("v9", func(t *testing.T) {
		// Cisco: scope System, options FLOW_SAMPLER_ID 48, _MODE 49, _RANDOM_INTERVAL 50.
		sampler := func(id uint8, n uint32) []fv {
			return []fv{f(48, u8(id)), f(49, u8(2)), f(50, be32(n))}
		}
		system := []fv{f(1, be32(0))}
		rec := func(id uint8) []fv { return []fv{f(8, ip("10.0.0.1")), f(1, be32(100)), f(2, be32(1)), f(48, u8(id))} }
		noID := []fv{f(8, ip("10.0.0.1")), f(1, be32(100)), f(2, be32(1))}
		msg := v9Msg(1000, 0, 1,
			set(1, v9OptTmpl(257, system, sampler(0, 0))),
			set(0, tmplOf(260, rec(0)...), tmplOf(261, noID...)),
			set(257, recOf(append(system, sampler(1, 100)...)...), recOf(append(system, sampler(2, 1000)...)...)),
			set(260, recOf(rec(2)...), recOf(rec(1)...), recOf(rec(3)...)),
			set(261, recOf(noID...)))
		recs := decodeMsgs(t, New(Config{}), testExporter, msg)
		var rates []uint64
		for _, m := range recs {
			rates = append(rates, m.SamplingRate)
		}
		// Sampler 2, 1, an unknown sampler, no sampler named (two known: unknown).
		if want := []uint64{1000, 100, 0, 0}; !equal(rates, want) {
			t.Errorf("rates %v, want %v", rates, want)
		}
	})
	t.Run("one sampler, records naming none", func(t *testing.T) {
		system := []fv{f(1, be32(0))}
		opts := []fv{f(48, u8(1)), f(50, be32(64))}
		data := []fv{f(8, ip("10.0.0.1")), f(1, be32(100))}
		msg := v9Msg(1000, 0, 1, set(1, v9OptTmpl(257, system, opts)), set(0, tmplOf(260, data...)),
			set(257, recOf(append(system, opts...)...)), set(260, recOf(data...)))
		if recs := decodeMsgs(t, New(Config{}), testExporter, msg); len(recs) != 1 || recs[0].SamplingRate != 64 {
			t.Errorf("rate %d, want 64", recs[0].SamplingRate)
		}
	})
	t.Run("ipfix selectorId scope", func(t *testing.T) {
		scope := func(id uint64) []fv { return []fv{f(302, u64(id))} }
		opts := func(space uint32) []fv { return []fv{f(304, be16(1)), f(305, be32(1)), f(306, be32(space))} }
		rec := func(id uint64) []fv { return []fv{f(8, ip("10.0.0.1")), f(302, u64(id))} }
		msg := ipfixMsg(0, 1, set(3, ipfixOptTmpl(400, scope(0), opts(0))), set(2, tmplOf(300, rec(0)...)),
			set(400, recOf(append(scope(5), opts(9)...)...), recOf(append(scope(6), opts(99)...)...)),
			set(300, recOf(rec(6)...), recOf(rec(5)...)))
		recs := decodeMsgs(t, New(Config{}), testExporter, msg)
		if len(recs) != 2 || recs[0].SamplingRate != 100 || recs[1].SamplingRate != 10 {
			t.Errorf("rates %d %d, want 100 10", recs[0].SamplingRate, recs[1].SamplingRate)
		}
	})
}

func equal[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Class 5: zero-length scopes and fields are accepted (Juniper SRX/MX: v9
// options with a System scope of length 0).
func TestZeroLengthFields(t *testing.T) {
	system0 := []fv{{ie: 1, length: 0}}
	opts := []fv{f(34, be32(1000)), f(35, u8(2))}
	data := []fv{f(8, ip("10.0.0.1")), {ie: 7, length: 0}, f(12, ip("10.0.0.2")), f(1, be32(1234)), {ie: 94, length: 0}, f(2, be32(5))}
	noScope := []fv{f(82, []byte("ge-0/0/1\x00\x00"))}
	ifScope := []fv{f(2, be32(9))}
	d := New(Config{})
	msg := v9Msg(1000, 0, 1,
		set(1, v9OptTmpl(257, system0, opts), v9OptTmpl(258, ifScope, noScope)),
		set(0, tmplOf(260, data...)),
		set(257, recOf(append(system0, opts...)...)),
		set(258, recOf(append(ifScope, noScope...)...)),
		set(260, recOf(data...), recOf(data...)))
	recs := decodeMsgs(t, d, testExporter, msg)
	if len(recs) != 2 {
		t.Fatalf("%d records, want 2", len(recs))
	}
	for _, m := range recs {
		if addrOf(m.SrcAddr) != "10.0.0.1" || addrOf(m.DstAddr) != "10.0.0.2" || m.Bytes != 1234 || m.Packets != 5 || m.SamplingRate != 1000 {
			t.Errorf("%s -> %s bytes %d packets %d rate %d, want 10.0.0.1 -> 10.0.0.2 1234 5 1000",
				addrOf(m.SrcAddr), addrOf(m.DstAddr), m.Bytes, m.Packets, m.SamplingRate)
		}
	}
	// A template whose records would be 0 bytes is refused and counted;
	// the rest of its message is still read.
	d = New(Config{})
	msg = v9Msg(1000, 0, 1, set(0, tmplOf(261, fv{ie: 1, length: 0}), tmplOf(260, data...)), set(260, recOf(data...)))
	if n := count(t, d, testExporter, msg, 1); n != 1 {
		t.Errorf("%d records, want 1", n)
	}
	if st := d.Stats().Total; st.Dropped[ReasonTemplate] != 1 || st.Templates != 1 {
		t.Errorf("bad_template %d templates %d, want 1 1", st.Dropped[ReasonTemplate], st.Templates)
	}
}

// Class 6: padding after the last set.
func TestMessagePadding(t *testing.T) {
	pad := func(msg []byte, to int) []byte { return append(msg, make([]byte, to-len(msg))...) }
	cases := []struct {
		name    string
		msg     []byte
		records int
	}{
		// Palo Alto: v9 messages padded with zeros to 1,400 bytes.
		{"v9 padded to 1400", pad(v9Msg(1000, 0, 1, set(0, tmpl300), set(300, rec300(1), rec300(2))), 1400), 2},
		// Cisco ACI: template messages ending in 64 zero bytes, inside
		// the IPFIX message's length...
		{"ipfix 64 zero bytes after the sets", func() []byte {
			m := append(ipfixMsg(0, 1, set(2, tmpl300), set(300, rec300(1))), make([]byte, 64)...)
			binary.BigEndian.PutUint16(m[2:], uint16(len(m)))
			return m
		}(), 1},
		// ...or inside the template set.
		{"ipfix 64 zero bytes in the template set", ipfixMsg(0, 1, set(2, tmpl300, make([]byte, 64)), set(300, rec300(1))), 1},
		{"ipfix 3 bytes after the last set", func() []byte {
			m := append(ipfixMsg(0, 1, set(2, tmpl300), set(300, rec300(1))), 1, 2, 3)
			binary.BigEndian.PutUint16(m[2:], uint16(len(m)))
			return m
		}(), 1},
		{"v9 3 bytes after the last set", append(v9Msg(1000, 0, 1, set(0, tmpl300), set(300, rec300(1))), 9, 9, 9), 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := New(Config{})
			recs := decodeMsgs(t, d, testExporter, tc.msg)
			if len(recs) != tc.records {
				t.Fatalf("%d records, want %d", len(recs), tc.records)
			}
			if addrOf(recs[0].SrcAddr) != "10.0.0.1" || recs[0].Bytes != 1001 {
				t.Errorf("first record %s bytes %d, want 10.0.0.1 1001", addrOf(recs[0].SrcAddr), recs[0].Bytes)
			}
			if st := d.Stats().Total; st.Templates != 1 || st.Messages != 1 {
				t.Errorf("templates %d messages %d, want 1 1", st.Templates, st.Messages)
			}
		})
	}
}

// Class 7: v9 fields of length 65535 (H3C's strings) are variable length,
// as RFC 7011 7 encodes them.
func TestV9VariableLength(t *testing.T) {
	long := make([]byte, 300)
	for i := range long {
		long[i] = 'a' + byte(i%26)
	}
	tm := cat(be16(300), be16(5), be16(8), be16(4), be16(94), be16(0xffff), be16(12), be16(4), be16(1), be16(4), be16(2), be16(4))
	rec := func(i byte, s []byte) []byte {
		l := []byte{byte(len(s))}
		if len(s) >= 255 {
			l = cat([]byte{255}, be16(uint16(len(s))))
		}
		return cat([]byte{10, 0, 0, i}, l, s, []byte{10, 0, 1, i}, be32(1000+uint32(i)), be32(uint32(i)))
	}
	// Interface names in options data, variable length too.
	ifTmpl := cat(be16(257), be16(4), be16(4), be16(2), be16(4), be16(82), be16(0xffff))
	ifRec := cat(be32(9), []byte{7}, []byte("xge-1/0"))
	tm2 := cat(be16(301), be16(2), be16(8), be16(4), be16(10), be16(4))
	msg := v9Msg(1000, 0, 1, set(1, ifTmpl), set(0, tm, tm2), set(257, ifRec),
		set(300, rec(1, []byte("abc")), rec(2, long), rec(3, nil)), set(301, cat(ip("10.0.0.9"), be32(9))))
	d := New(Config{})
	recs := decodeMsgs(t, d, testExporter, msg)
	if len(recs) != 4 {
		t.Fatalf("%d records, want 4", len(recs))
	}
	for i, m := range recs[:3] {
		n := byte(i + 1)
		if addrOf(m.SrcAddr) != netip.AddrFrom4([4]byte{10, 0, 0, n}).String() || addrOf(m.DstAddr) != netip.AddrFrom4([4]byte{10, 0, 1, n}).String() ||
			m.Bytes != 1000+uint64(n) || m.Packets != uint64(n) {
			t.Errorf("record %d: %s -> %s bytes %d packets %d", i, addrOf(m.SrcAddr), addrOf(m.DstAddr), m.Bytes, m.Packets)
		}
	}
	if m := recs[3]; m.InIf != 9 || m.InIfName != "xge-1/0" {
		t.Errorf("in_if %d %q, want 9 xge-1/0", m.InIf, m.InIfName)
	}
	// A variable length running past the set is counted, not skipped.
	bad := v9Msg(1000, 1, 1, set(300, cat([]byte{10, 0, 0, 1}, []byte{200}, []byte("short"))))
	if err := d.Decode(testExporter, bad, 1, nil); err == nil || d.Stats().Total.Dropped[ReasonRecord] != 1 {
		t.Errorf("error %v, bad_record %d, want 1", err, d.Stats().Total.Dropped[ReasonRecord])
	}
}

// Class 8: NSEL (Cisco ASA) initiator/responder counters when the delta
// counters are absent; physical interfaces when the logical ones are.
func TestNSELAndPhysicalInterfaces(t *testing.T) {
	key := []fv{f(8, ip("10.0.0.1")), f(12, ip("10.0.0.2")), f(7, be16(40000)), f(11, be16(443)), f(4, u8(6))}
	nsel := []fv{f(231, u64(5000)), f(232, u64(80000)), f(298, u64(40)), f(299, u64(60))}
	phys := []fv{f(252, be32(3)), f(253, be32(4))}
	type want struct {
		bytes, pkts, revBytes, revPkts uint64
		biflow                         bool
		in, out                        uint32
	}
	cases := []struct {
		name   string
		fields []fv
		want   want
	}{
		{"ASA", append(append(append([]fv(nil), key...), nsel...), phys...), want{5000, 40, 80000, 60, true, 3, 4}},
		{"delta counters present", append(append(append([]fv(nil), key...), f(1, u64(111)), f(2, u64(2))), nsel...), want{111, 2, 0, 0, false, 0, 0}},
		{"total counters and NSEL", append(append(append([]fv(nil), key...), f(85, u64(9999)), f(86, u64(99))), nsel...), want{5000, 40, 80000, 60, true, 0, 0}},
		{"total counters only", append(append([]fv(nil), key...), f(85, u64(9999)), f(86, u64(99))), want{9999, 99, 0, 0, false, 0, 0}},
		{"logical interfaces present", append(append(append([]fv(nil), key...), f(10, be32(30)), f(14, be32(40))), phys...), want{0, 0, 0, 0, false, 30, 40}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, v9 := range []bool{false, true} {
				msg := ipfixMsg(0, 1, set(2, tmplOf(263, tc.fields...)), set(263, recOf(tc.fields...)))
				if v9 {
					msg = v9Msg(1000, 0, 1, set(0, tmplOf(263, tc.fields...)), set(263, recOf(tc.fields...)))
				}
				recs := decodeMsgs(t, New(Config{}), testExporter, msg)
				m := recs[0]
				got := want{m.Bytes, m.Packets, m.ReverseBytes, m.ReversePackets, m.Biflow, m.InIf, m.OutIf}
				if got != tc.want {
					t.Errorf("v9 %v: %+v, want %+v", v9, got, tc.want)
				}
			}
		})
	}
}

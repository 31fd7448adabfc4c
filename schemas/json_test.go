package schemas

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	goflowpb "github.com/netsampler/goflow2/v2/pb"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// The hand-written JSON encoders are held to protojson (jsonForm): same
// bytes once protojson's random whitespace is compacted away, same value
// when both are decoded as plain JSON, and a protojson.Unmarshal round trip.

// appendJSON is the hand-written encoder for m's type.
func appendJSON(t testing.TB, b []byte, m proto.Message) []byte {
	switch m := m.(type) {
	case *FlowMessage:
		return AppendFlowJSON(b, m)
	case *SampleMessage:
		return AppendSampleJSON(b, m)
	}
	t.Fatalf("no hand-written encoder for %T", m)
	return nil
}

// protojsonCompact is protojson's output without the whitespace protojson
// adds at random to keep people from depending on its exact bytes.
func protojsonCompact(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := jsonForm.Marshal(m)
	if err != nil {
		t.Fatalf("protojson: %v", err)
	}
	var c bytes.Buffer
	if err := json.Compact(&c, b); err != nil {
		t.Fatalf("protojson output is not JSON: %v\n%s", err, b)
	}
	return c.Bytes()
}

// checkJSON checks the hand-written encoding of m against protojson's.
func checkJSON(t testing.TB, m proto.Message) []byte {
	t.Helper()
	// Append to a non-empty buffer: the encoder must only append.
	const prefix = "prefix\n"
	out := appendJSON(t, []byte(prefix), m)
	if !strings.HasPrefix(string(out), prefix) {
		t.Fatalf("encoder changed the buffer's contents: %q", out)
	}
	got := out[len(prefix):]
	if !json.Valid(got) {
		t.Fatalf("not valid JSON: %s", got)
	}
	want := protojsonCompact(t, m)
	if !bytes.Equal(got, want) {
		t.Errorf("bytes differ from protojson's\n got %s\nwant %s", got, want)
	}
	var gotMap, wantMap map[string]any
	if err := json.Unmarshal(got, &gotMap); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(want, &wantMap); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gotMap, wantMap) {
		t.Errorf("value differs from protojson's\n got %v\nwant %v", gotMap, wantMap)
	}
	back := m.ProtoReflect().New().Interface()
	if err := protojson.Unmarshal(got, back); err != nil {
		t.Fatalf("protojson.Unmarshal: %v\n%s", err, got)
	}
	if !proto.Equal(back, m) {
		t.Errorf("round trip:\n got %v\nwant %v\njson %s", back, m, got)
	}
	return got
}

// fullFlow has every field set.
func fullFlow() *FlowMessage {
	var m FlowMessage
	f := testFlows()[0]
	f.ToMessage(&m, meta, 1764000000123456789)
	m.Type = FlowMessage_IPFIX
	m.SequenceNum = 77
	m.SamplingRate = 1000
	m.SamplerAddress = netip.MustParseAddr("::ffff:192.0.2.1").AsSlice()
	m.OutIf = 4
	m.SrcMac, m.DstMac = 0x0200_5e00_0001, 0xffff_ffff_ffff
	m.ForwardingStatus = 64
	m.IcmpType, m.IcmpCode = 3, 1
	m.SrcAs, m.DstAs = 64512, 4200000000
	m.NextHop = netip.MustParseAddr("2001:db8::fe").AsSlice()
	m.SrcNet, m.DstNet = 24, 128
	m.BgpNextHop = netip.MustParseAddr("::ffff:10.0.0.1").AsSlice()
	m.InIfName = "eth1"
	return &m
}

func fullSample() *SampleMessage {
	return &SampleMessage{SchemaVersion: SchemaVersion, ProbeHost: "probe-1", InIf: 3, InIfName: "eth1",
		TimeReceivedNs: 1764000000123456789, SamplingRate: 100, OrigLen: 1514, Data: bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef, 0x00}, 25),
		ObservationDomainId: 1}
}

// jsonStrings are string field values that valid UTF-8 makes round-trip.
var jsonStrings = []string{
	"",
	"probe-1",
	`quote " and backslash \ and both \"`,
	`\u0041 is not an escape here`,
	"/slash/ <html> & 'single'",
	"tab\there, newline\nthere, cr\r, bs\b, ff\f",
	"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f",
	"DEL \x7f",
	"héllo wörld",
	"日本語のインターフェース",
	"emoji 🚀🏳️‍🌈",
	"line separators \u2028 \u2029",
	"replacement char \uFFFD is valid UTF-8",
	"max rune \U0010FFFF",
	strings.Repeat("a", 300) + "\n" + strings.Repeat("é", 100),
}

func TestFlowJSON(t *testing.T) {
	v4 := func(s string) []byte { a := netip.MustParseAddr(s).As16(); return a[:] }
	full := fullFlow()
	tests := []struct {
		name string
		m    *FlowMessage
	}{
		{"zero", &FlowMessage{}},
		{"nil", nil},
		{"full", full},
		{"max", &FlowMessage{Type: FlowMessage_XDPFLOW, TimeReceivedNs: math.MaxUint64, SequenceNum: math.MaxUint32,
			SamplingRate: math.MaxUint64, TimeFlowStartNs: math.MaxUint64, TimeFlowEndNs: math.MaxUint64, Bytes: math.MaxUint64,
			Packets: math.MaxUint64, Etype: math.MaxUint32, Proto: math.MaxUint32, SrcPort: math.MaxUint32, DstPort: math.MaxUint32,
			InIf: math.MaxUint32, OutIf: math.MaxUint32, SrcMac: math.MaxUint64, DstMac: math.MaxUint64, VlanId: math.MaxUint32,
			IpTos: math.MaxUint32, ForwardingStatus: math.MaxUint32, TcpFlags: math.MaxUint32, IcmpType: math.MaxUint32,
			IcmpCode: math.MaxUint32, SrcAs: math.MaxUint32, DstAs: math.MaxUint32, SrcNet: math.MaxUint32, DstNet: math.MaxUint32,
			ObservationDomainId: math.MaxUint32, SchemaVersion: math.MaxUint32, EndReason: FlowMessage_END_REASON_LACK_OF_RESOURCES,
			L2Bytes: math.MaxUint64, SrcAddr: bytes.Repeat([]byte{0xff}, 16), DstAddr: bytes.Repeat([]byte{0xff}, 16)}},
		{"ones", &FlowMessage{TimeReceivedNs: 1, SequenceNum: 1, Bytes: 1, Packets: 1, Proto: 1, SrcAddr: []byte{1}}},
		{"ipv4-mapped", &FlowMessage{SrcAddr: v4("198.18.0.1"), DstAddr: v4("0.0.0.0"), NextHop: v4("255.255.255.255"),
			BgpNextHop: v4("10.1.2.3"), SamplerAddress: v4("192.0.2.1"), Etype: 0x800}},
		{"ipv6", &FlowMessage{SrcAddr: v4("2001:db8::1"), DstAddr: v4("fe80::1:2:3:4"), NextHop: v4("::"),
			BgpNextHop: v4("ff02::1"), SamplerAddress: v4("::1"), Etype: 0x86dd}},
		{"4-byte addresses", &FlowMessage{SrcAddr: []byte{198, 18, 0, 1}, DstAddr: []byte{0, 0, 0, 0}}},
		// base64 padding: lengths 1, 2, 3 (==, =, none).
		{"bytes 1", &FlowMessage{SrcAddr: []byte{0xfb}}},
		{"bytes 2", &FlowMessage{SrcAddr: []byte{0xfb, 0xff}}},
		{"bytes 3", &FlowMessage{SrcAddr: []byte{0xfb, 0xff, 0xbf}}},
		{"empty non-nil bytes", &FlowMessage{SrcAddr: []byte{}, DstAddr: []byte{}, SchemaVersion: 1}},
		{"only last field", &FlowMessage{InIfName: "x"}},
		{"only first field", &FlowMessage{Type: FlowMessage_SFLOW_5}},
	}
	for _, f := range testFlows() {
		var m FlowMessage
		f.ToMessage(&m, meta, 42)
		tests = append(tests, struct {
			name string
			m    *FlowMessage
		}{"ToMessage " + f.SrcAddr.String(), &m})
	}
	for i, s := range jsonStrings {
		tests = append(tests, struct {
			name string
			m    *FlowMessage
		}{fmt.Sprintf("string %d", i), &FlowMessage{ProbeHost: s, InIfName: s, SchemaVersion: 1}})
	}
	// Every enum value, and numbers flow.proto does not have (protojson
	// writes those as numbers).
	for _, n := range enumNumbers(FlowMessage_FlowType(0).Descriptor()) {
		m := proto.Clone(full).(*FlowMessage)
		m.Type = FlowMessage_FlowType(n)
		tests = append(tests, struct {
			name string
			m    *FlowMessage
		}{fmt.Sprintf("type %d", n), m})
	}
	for _, n := range enumNumbers(FlowMessage_EndReason(0).Descriptor()) {
		m := proto.Clone(full).(*FlowMessage)
		m.EndReason = FlowMessage_EndReason(n)
		tests = append(tests, struct {
			name string
			m    *FlowMessage
		}{fmt.Sprintf("end_reason %d", n), m})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.m == nil {
				if got := AppendFlowJSON(nil, nil); string(got) != "{}" {
					t.Errorf("nil message: %s", got)
				}
				return
			}
			checkJSON(t, tc.m)
		})
	}
}

// enumNumbers returns the enum's values and numbers it does not have.
func enumNumbers(ed protoreflect.EnumDescriptor) []protoreflect.EnumNumber {
	var ns []protoreflect.EnumNumber
	for i := 0; i < ed.Values().Len(); i++ {
		ns = append(ns, ed.Values().Get(i).Number())
	}
	for _, n := range []protoreflect.EnumNumber{-1, 7, 99, 255, 256, 1000, math.MaxInt32, math.MinInt32} {
		if ed.Values().ByNumber(n) == nil {
			ns = append(ns, n)
		}
	}
	return ns
}

func TestSampleJSON(t *testing.T) {
	tests := []struct {
		name string
		m    *SampleMessage
	}{
		{"zero", &SampleMessage{}},
		{"full", fullSample()},
		{"max", &SampleMessage{SchemaVersion: math.MaxUint32, InIf: math.MaxUint32, TimeReceivedNs: math.MaxUint64,
			SamplingRate: math.MaxUint64, OrigLen: math.MaxUint32, ObservationDomainId: math.MaxUint32, Data: bytes.Repeat([]byte{0xff}, 256)}},
		{"data 1", &SampleMessage{Data: []byte{0}}},
		{"data 2", &SampleMessage{Data: []byte{0, 0}}},
		{"data 3", &SampleMessage{Data: []byte{0, 0, 0}}},
	}
	for i, s := range jsonStrings {
		tests = append(tests, struct {
			name string
			m    *SampleMessage
		}{fmt.Sprintf("string %d", i), &SampleMessage{ProbeHost: s, InIfName: s}})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { checkJSON(t, tc.m) })
	}
	if got := AppendSampleJSON(nil, nil); string(got) != "{}" {
		t.Errorf("nil message: %s", got)
	}
}

// TestJSONInvalidUTF8: protojson refuses a string field that is not UTF-8;
// the hand-written encoders write each bad byte as U+FFFD, like
// encoding/json, and keep the record.
func TestJSONInvalidUTF8(t *testing.T) {
	for _, s := range []string{"\xff", "eth\xff0", "a\xc3", "\xc3(", "\xed\xa0\x80 surrogate", "\xc0\xaf overlong",
		"\xf4\x90\x80\x80 too big", "ok é then \xe6\x97 cut", "\x80\x80\x80", "\"\xff\\\n"} {
		t.Run(fmt.Sprintf("%q", s), func(t *testing.T) {
			m := &FlowMessage{ProbeHost: s, InIfName: s, SchemaVersion: 1}
			if _, err := jsonForm.Marshal(m); err == nil {
				t.Errorf("protojson now writes invalid UTF-8: update the comment in json.go")
			}
			got := AppendFlowJSON(nil, m)
			if !json.Valid(got) {
				t.Fatalf("not valid JSON: %q", got)
			}
			var back FlowMessage
			if err := protojson.Unmarshal(got, &back); err != nil {
				t.Fatalf("protojson.Unmarshal: %v\n%q", err, got)
			}
			// encoding/json replaces the same bytes.
			enc, _ := json.Marshal(s)
			var want string
			if err := json.Unmarshal(enc, &want); err != nil {
				t.Fatal(err)
			}
			if back.ProbeHost != want || back.InIfName != want || back.SchemaVersion != 1 {
				t.Errorf("read back %q, %q, want %q", back.ProbeHost, back.InIfName, want)
			}
			if !utf8.ValidString(back.ProbeHost) {
				t.Errorf("read back invalid UTF-8 %q", back.ProbeHost)
			}
			// Format.Append takes it too.
			if _, err := FormatJSON.Append(nil, m); err != nil {
				t.Errorf("FormatJSON.Append: %v", err)
			}
			sgot := AppendSampleJSON(nil, &SampleMessage{ProbeHost: s, InIfName: s})
			var sback SampleMessage
			if err := protojson.Unmarshal(sgot, &sback); err != nil || sback.ProbeHost != want || sback.InIfName != want {
				t.Errorf("SampleMessage: %v, read back %q, %q, want %q", err, sback.ProbeHost, sback.InIfName, want)
			}
		})
	}
}

// nonZero returns a random non-zero value for a field. It knows every
// scalar kind, so a new field of any scalar type gets a value, and fails on
// the others (a message, list or map field needs this test and the encoders
// extended).
func nonZero(t testing.TB, r *rand.Rand, fd protoreflect.FieldDescriptor) protoreflect.Value {
	if fd.IsMap() || fd.IsList() && fd.Kind() != protoreflect.Uint32Kind {
		t.Fatalf("%s: map fields, and repeated fields but uint32 ones, are not handled by the JSON encoder or this test", fd.FullName())
	}
	if fd.IsList() { // 1 to 4 entries, 0 among them at times
		mt, err := protoregistry.GlobalTypes.FindMessageByName(fd.ContainingMessage().FullName())
		if err != nil {
			t.Fatal(err)
		}
		l := mt.New().NewField(fd).List()
		for n := 1 + r.IntN(4); n > 0; n-- {
			l.Append(protoreflect.ValueOfUint32(uint32(r.Uint64() >> r.IntN(65))))
		}
		return protoreflect.ValueOfList(l)
	}
	// Random bit lengths, so that small and large numbers both come up.
	u64 := func() uint64 { return max(1, r.Uint64()>>r.IntN(64)) }
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(true)
	case protoreflect.EnumKind:
		values := fd.Enum().Values()
		if r.IntN(4) == 0 {
			// A number flow.proto does not have, sometimes.
			n := protoreflect.EnumNumber(r.Int32())
			if r.IntN(2) == 0 {
				n = -n
			}
			if n != 0 && values.ByNumber(n) == nil {
				return protoreflect.ValueOfEnum(n)
			}
		}
		if values.Len() < 2 {
			return protoreflect.ValueOfEnum(1)
		}
		return protoreflect.ValueOfEnum(values.Get(1 + r.IntN(values.Len()-1)).Number())
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(max(1, int32(u64())))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(max(1, int64(u64())))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(max(1, uint32(u64()>>r.IntN(33))))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(u64())
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(r.Float32() + 1)
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(r.NormFloat64()*1e10 + 1)
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(randString(r))
	case protoreflect.BytesKind:
		b := make([]byte, 1+r.IntN(40))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return protoreflect.ValueOfBytes(b)
	}
	t.Fatalf("%s: no test value for %s fields: extend this test and the JSON encoders", fd.FullName(), fd.Kind())
	return protoreflect.Value{}
}

// randString is a non-empty valid UTF-8 string mixing what JSON escapes
// with ASCII and multi-byte runes.
func randString(r *rand.Rand) string {
	pieces := []string{"a", "Z", "0", "-", ".", " ", `"`, `\`, "/", "\n", "\t", "\x00", "\x1f", "\x7f", "é", "ß", "日", "🚀",
		"\u2028", "\uFFFD", "<", ">", "&", "eth", "probe-host"}
	var sb strings.Builder
	for n := 1 + r.IntN(20); n > 0; n-- {
		sb.WriteString(pieces[r.IntN(len(pieces))])
	}
	return sb.String()
}

var jsonMessages = []proto.Message{&FlowMessage{}, &SampleMessage{}}

// TestJSONEveryField walks the message descriptors: each field alone, and
// all of them at once, must be written by the hand-written encoder as
// protojson writes it. A field added to flow.proto and not to json.go fails
// here.
func TestJSONEveryField(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, empty := range jsonMessages {
		md := empty.ProtoReflect().Descriptor()
		all := empty.ProtoReflect().New()
		fields := md.Fields()
		if fields.Len() == 0 {
			t.Fatalf("%s has no fields", md.FullName())
		}
		for i := 0; i < fields.Len(); i++ {
			fd := fields.Get(i)
			t.Run(string(md.Name())+"/"+string(fd.Name()), func(t *testing.T) {
				m := empty.ProtoReflect().New()
				v := nonZero(t, r, fd)
				m.Set(fd, v)
				all.Set(fd, v)
				got := appendJSON(t, nil, m.Interface())
				if !bytes.Contains(got, []byte(`"`+fd.TextName()+`":`)) {
					t.Fatalf("the hand-written encoder does not write %s (got %s): add it to json.go", fd.FullName(), got)
				}
				checkJSON(t, m.Interface())
			})
		}
		t.Run(string(md.Name())+"/all", func(t *testing.T) {
			got := checkJSON(t, all.Interface())
			var keys map[string]any
			if err := json.Unmarshal(got, &keys); err != nil {
				t.Fatal(err)
			}
			if len(keys) != fields.Len() {
				t.Errorf("%d keys for %d fields: %s", len(keys), fields.Len(), got)
			}
		})
	}
}

// randMessage sets each field of m, or leaves it zero, at random.
func randMessage(t testing.TB, r *rand.Rand, m protoreflect.Message) {
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if r.IntN(3) == 0 {
			m.Clear(fd)
			continue
		}
		v := nonZero(t, r, fd)
		if fd.Kind() == protoreflect.BytesKind && r.IntN(3) == 0 {
			// Addresses mostly: 4 or 16 bytes.
			v = protoreflect.ValueOfBytes(v.Bytes()[:min(len(v.Bytes()), 4+12*r.IntN(2))])
		}
		m.Set(fd, v)
	}
}

func TestJSONRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(20260501, 1))
	for _, empty := range jsonMessages {
		for i := 0; i < 10000; i++ {
			m := empty.ProtoReflect().New()
			randMessage(t, r, m)
			checkJSON(t, m.Interface())
			if t.Failed() {
				t.Fatalf("%s number %d: %v", m.Descriptor().Name(), i, m.Interface())
			}
		}
	}
}

func TestJSONNoAllocs(t *testing.T) {
	flow, sample := fullFlow(), fullSample()
	flow.ProbeHost = "needs \"escaping\"\n日本"
	flow.Type = 99 // unknown: written as a number
	buf := make([]byte, 0, 4096)
	if n := testing.AllocsPerRun(100, func() { buf = AppendFlowJSON(buf[:0], flow) }); n != 0 {
		t.Errorf("AppendFlowJSON: %v allocations", n)
	}
	if n := testing.AllocsPerRun(100, func() { buf = AppendSampleJSON(buf[:0], sample) }); n != 0 {
		t.Errorf("AppendSampleJSON: %v allocations", n)
	}
}

// TestFormatJSONAppend: FormatJSON uses the hand-written encoders for our
// messages and protojson for any other.
func TestFormatJSONAppend(t *testing.T) {
	for _, m := range []proto.Message{fullFlow(), fullSample()} {
		got, err := FormatJSON.Append([]byte("x"), m)
		if err != nil {
			t.Fatal(err)
		}
		if want := appendJSON(t, []byte("x"), m); !bytes.Equal(got, want) {
			t.Errorf("%T: FormatJSON.Append wrote\n%s\nnot\n%s", m, got, want)
		}
		back := m.ProtoReflect().New().Interface()
		if err := FormatJSON.Unmarshal(got[1:], back); err != nil || !proto.Equal(back, m) {
			t.Errorf("%T: round trip: %v, %v", m, err, back)
		}
	}
	other := &goflowpb.FlowMessage{Bytes: 1500, SrcAddr: []byte{1, 2, 3, 4}, Type: goflowpb.FlowMessage_IPFIX}
	got, err := FormatJSON.Append(nil, other)
	if err != nil {
		t.Fatal(err)
	}
	if want := protojsonCompact(t, other); !bytes.Equal(compactJSON(t, got), want) {
		t.Errorf("other message: %s, want %s", got, want)
	}
}

func compactJSON(t testing.TB, b []byte) []byte {
	var c bytes.Buffer
	if err := json.Compact(&c, b); err != nil {
		t.Fatal(err)
	}
	return c.Bytes()
}

// BenchmarkFlowJSON compares protojson with the hand-written encoders on a
// message with every field set.
func BenchmarkFlowJSON(b *testing.B) {
	flow, sample := fullFlow(), fullSample()
	for _, bc := range []struct {
		name string
		f    func([]byte) ([]byte, error)
	}{
		{"flow/protojson", func(buf []byte) ([]byte, error) { return jsonForm.MarshalAppend(buf, flow) }},
		{"flow/AppendFlowJSON", func(buf []byte) ([]byte, error) { return AppendFlowJSON(buf, flow), nil }},
		{"sample/protojson", func(buf []byte) ([]byte, error) { return jsonForm.MarshalAppend(buf, sample) }},
		{"sample/AppendSampleJSON", func(buf []byte) ([]byte, error) { return AppendSampleJSON(buf, sample), nil }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			buf := make([]byte, 0, 4096)
			b.ReportAllocs()
			var err error
			for b.Loop() {
				if buf, err = bc.f(buf[:0]); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(len(buf)))
		})
	}
}

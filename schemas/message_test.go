package schemas

import (
	"bytes"
	"net/netip"
	"testing"

	goflowpb "github.com/netsampler/goflow2/v2/pb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

var meta = &Meta{ProbeHost: "probe-1", ObservationDomain: 7, SamplingRate: 1, IfNames: map[uint32]string{3: "veth0"}}

func testFlows() []Flow {
	return []Flow{
		{SrcAddr: netip.MustParseAddr("198.18.0.1"), DstAddr: netip.MustParseAddr("198.18.0.2"), SrcPort: 40000, DstPort: 443, Proto: 6,
			VlanId: 100, InIf: 3, Packets: 10, Bytes: 1500, L2Bytes: 1640, TimeFlowStartNs: 1_700_000_000_000_000_000, TimeFlowEndNs: 1_700_000_000_500_000_000,
			TcpFlags: 0x1b, IpTos: 0x28, EndReason: EndOfFlow},
		{SrcAddr: netip.MustParseAddr("2001:db8::1"), DstAddr: netip.MustParseAddr("2001:db8::2"), Proto: 58, DstPort: 128<<8 | 0,
			InIf: 9, Packets: 1, Bytes: 104, L2Bytes: 118, TimeFlowStartNs: 5, TimeFlowEndNs: 5, EndReason: EndIdle},
		{SrcAddr: netip.MustParseAddr("198.18.0.9"), DstAddr: netip.MustParseAddr("198.18.0.1"), Proto: 1, DstPort: 3<<8 | 1,
			InIf: 3, Packets: 2, Bytes: 112, L2Bytes: 140, TimeFlowStartNs: 1, TimeFlowEndNs: 2, EndReason: EndForced},
	}
}

func TestFlowMessageRoundTrip(t *testing.T) {
	for _, format := range []Format{FormatProto, FormatJSON} {
		for _, f := range testFlows() {
			t.Run(format.String()+"/"+f.SrcAddr.String(), func(t *testing.T) {
				var m FlowMessage
				f.ToMessage(&m, meta, 42)
				b, err := format.Append(nil, &m)
				if err != nil {
					t.Fatal(err)
				}
				var got FlowMessage
				if err := format.Unmarshal(b, &got); err != nil {
					t.Fatalf("%v\n%s", err, b)
				}
				if g := got.Flow(); g != f {
					t.Errorf("round trip:\n got %+v\nwant %+v", g, f)
				}
				if got.SchemaVersion != SchemaVersion || got.ProbeHost != "probe-1" || got.ObservationDomainId != 7 ||
					got.TimeReceivedNs != 42 || got.SamplingRate != 1 || got.Type != FlowMessage_XDPFLOW {
					t.Errorf("metadata: %v", &got)
				}
				if want := meta.IfNames[f.InIf]; got.InIfName != want {
					t.Errorf("in_if_name %q, want %q", got.InIfName, want)
				}
				if len(got.SrcAddr) != 16 || len(got.DstAddr) != 16 {
					t.Errorf("addresses are %d and %d bytes, want 16", len(got.SrcAddr), len(got.DstAddr))
				}
				if wantEtype := map[bool]uint32{false: 0x800, true: 0x86dd}[f.SrcAddr.Is6()]; got.Etype != wantEtype {
					t.Errorf("etype %#x, want %#x", got.Etype, wantEtype)
				}
			})
		}
	}
}

// TestGoflow2Compatible reads our binary message with goflow2's FlowMessage:
// the fields both have must carry the same values.
func TestGoflow2Compatible(t *testing.T) {
	f := testFlows()[0]
	var m FlowMessage
	f.ToMessage(&m, meta, 42)
	b, err := proto.Marshal(&m)
	if err != nil {
		t.Fatal(err)
	}
	var g goflowpb.FlowMessage
	if err := proto.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(g.SrcAddr, m.SrcAddr) || !bytes.Equal(g.DstAddr, m.DstAddr) || g.SrcPort != 40000 || g.DstPort != 443 ||
		g.Proto != 6 || g.Bytes != 1500 || g.Packets != 10 || g.TimeFlowStartNs != uint64(f.TimeFlowStartNs) || g.TimeFlowEndNs != uint64(f.TimeFlowEndNs) ||
		g.InIf != 3 || g.VlanId != 100 || g.IpTos != 0x28 || g.TcpFlags != 0x1b || g.Etype != 0x800 || g.SamplingRate != 1 ||
		g.ObservationDomainId != 7 || g.TimeReceivedNs != 42 {
		t.Errorf("goflow2 reads %v", &g)
	}
	// Our own fields are unknown to goflow2: they must be numbered apart
	// from every goflow2 field so they never collide.
	for _, n := range []protowire.Number{200, 201, 202, 203, 204} {
		if fd := g.ProtoReflect().Descriptor().Fields().ByNumber(n); fd != nil {
			t.Errorf("field %d is goflow2's %s", n, fd.Name())
		}
	}
}

func TestAppendKeySymmetric(t *testing.T) {
	f := testFlows()[0]
	r := f
	r.SrcAddr, r.DstAddr, r.SrcPort, r.DstPort = f.DstAddr, f.SrcAddr, f.DstPort, f.SrcPort
	other := f
	other.SrcPort++
	var a, b, c FlowMessage
	f.ToMessage(&a, meta, 0)
	r.ToMessage(&b, meta, 0)
	other.ToMessage(&c, meta, 0)
	ka, kb, kc := AppendKey(nil, &a), AppendKey(nil, &b), AppendKey(nil, &c)
	if !bytes.Equal(ka, kb) {
		t.Errorf("the two directions have different keys:\n%x\n%x", ka, kb)
	}
	if bytes.Equal(ka, kc) {
		t.Errorf("different conversations share a key %x", ka)
	}
	if len(ka) != 1+2*18 {
		t.Errorf("key is %d bytes", len(ka))
	}
}

func TestParseFormat(t *testing.T) {
	for in, want := range map[string]Format{"proto": FormatProto, "json": FormatJSON} {
		if got, err := ParseFormat(in); err != nil || got != want {
			t.Errorf("ParseFormat(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseFormat("avro"); err == nil {
		t.Error("ParseFormat(avro) succeeded")
	}
}

// BenchmarkEncodeFlow is the Kafka exporter's per-flow work: record ->
// message -> bytes, plus the key.
func BenchmarkEncodeFlow(b *testing.B) {
	for _, format := range []Format{FormatProto, FormatJSON} {
		b.Run(format.String(), func(b *testing.B) {
			flows := testFlows()
			var m FlowMessage
			buf := make([]byte, 0, 4096)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				f := &flows[i%len(flows)]
				f.ToMessage(&m, meta, uint64(i))
				var err error
				if buf, err = format.Append(buf[:0], &m); err != nil {
					b.Fatal(err)
				}
				buf = AppendKey(buf, &m)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "flows/s")
		})
	}
}

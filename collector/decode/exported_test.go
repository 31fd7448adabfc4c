package decode

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/netsampler/goflow2/v2/decoders/netflow"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/xdpflow/xdpflow/probe/export/ipfix"
	"github.com/xdpflow/xdpflow/probe/export/ipfix/ipfixtest"
	"github.com/xdpflow/xdpflow/schemas"
)

// TestExportedFields holds the probe's encoder and this package's decoder
// to schemas.Exported, entry by entry: a distinctive value put in the
// entry's schemas.Flow field is encoded by the real Encoder (IPFIX and
// NetFlow v9, biflow, direction and every extra part included, our own
// IEs under RFC 5612's documentation enterprise number), read back by
// goflow2's decoder under the entry's IE, and by Decoder into the
// entry's FlowMessage field. The field's bytes are then changed on the
// wire, and the FlowMessage field must follow: the decoder reads that IE,
// not another carrying the same value. An entry added to the table that
// the decoder does not read fails here.
func TestExportedFields(t *testing.T) {
	now := time.Now().Truncate(time.Second).Add(time.Second) // after the encoder's v9 sysUptime origin
	covered := map[*schemas.ExportField]bool{}
	for _, p := range []ipfix.Protocol{ipfix.IPFIX, ipfix.NetFlowV9} {
		for _, v6 := range []bool{false, true} {
			bi := p == ipfix.IPFIX
			tmpl := schemas.FlowTemplate(schemas.TemplateKey{V6: v6, Dir: true, Bi: bi, Extras: schemas.AllExtras}, bi, p == ipfix.NetFlowV9)
			for i, x := range tmpl {
				covered[x] = true
				name := fmt.Sprintf("%v/v6=%v/%d-%s", p, v6, x.IE, x.Flow)
				if x.Reverse {
					name = fmt.Sprintf("%v/v6=%v/reverse-%d-%s", p, v6, x.IE, x.Flow)
				}
				t.Run(name, func(t *testing.T) {
					f := baseFlow(v6, bi, now.UnixNano())
					setDistinct(t, &f, x, i, v6, now.UnixNano())
					msgs := ipfixtest.Encode(t, ipfix.Config{Protocol: p, FlowDirection: true, Biflow: true, EnterpriseNumber: schemas.PENDocumentation},
						[]schemas.Flow{f}, now.Add(time.Minute))
					if len(msgs) != 2 {
						t.Fatalf("%d messages, want templates and one data message (with its template)", len(msgs))
					}
					wire, off := goflowField(t, p, msgs, x)
					if want := wantWire(x, &f, p, msgs[1]); !bytes.Equal(wire, want) {
						t.Errorf("goflow2 reads IE %d as %x, want %x (the Flow's %s)", x.IE, wire, want, x.Flow)
					}
					m := decodeAll(t, New(testConfig), testExporter, msgs, 1)
					if len(m) != 1 {
						t.Fatalf("%d records decoded", len(m))
					}
					if got, want := protoValue(t, m[0], x), wantProto(x, wire, p, msgs[1], &f); got != want {
						t.Errorf("decoded %s = %s, want %s", x.Proto, got, want)
					}
					if got, want := flowField(m[0].Flow(), x), flowField(wantFlow(f, p), x); got != want {
						t.Errorf("decoded record's %s = %v, want %v", x.Flow, got, want)
					}
					if x.Kind == schemas.KindInitiator {
						return // a constant: the template, not the value, says biflow
					}
					// Change the field on the wire: the decoder must follow.
					data := bytes.Clone(msgs[1])
					w := data[off : off+len(wire)]
					for j := len(w) - 1; j >= 0; j-- { // +1, big-endian
						if w[j]++; w[j] != 0 {
							break
						}
					}
					if x.Kind == schemas.KindDirection {
						w[0] = 1 - wire[0]
					}
					m = decodeAll(t, New(testConfig), testExporter, [][]byte{msgs[0], data}, 1)
					if got, want := protoValue(t, m[0], x), wantProto(x, w, p, data, &f); got != want {
						t.Errorf("IE %d changed on the wire to %x: decoded %s = %s, want %s", x.IE, w, x.Proto, got, want)
					}
				})
			}
		}
	}
	for i := range schemas.Exported {
		if !covered[&schemas.Exported[i]] {
			t.Errorf("schemas.Exported[%d] (IE %d) is in no template", i, schemas.Exported[i].IE)
		}
	}
}

// testConfig decodes our own IEs as TestExportedFields encodes them.
var testConfig = Config{EnterpriseNumber: schemas.PENDocumentation}

// baseFlow has every extra part, so that its template carries them all.
func baseFlow(v6, bi bool, t0 int64) schemas.Flow {
	f := schemas.Flow{SrcAddr: netip.MustParseAddr("10.1.2.3"), DstAddr: netip.MustParseAddr("10.4.5.6"),
		SrcPort: 1000, DstPort: 2000, Proto: 17, VlanId: 5, InIf: 6, Packets: 7, Bytes: 800, L2Bytes: 900,
		TimeFlowStartNs: t0 + 1e9, TimeFlowEndNs: t0 + 2e9, TcpFlags: 0x10, IpTos: 4, EndReason: schemas.EndIdle,
		FlowDirection: schemas.DirectionEgress,
		TunnelType:    schemas.TunnelVXLAN, TunnelId: 8, TunnelSrcAddr: netip.MustParseAddr("192.0.2.9"), TunnelDstAddr: netip.MustParseAddr("192.0.2.10"),
		ObservationPointId: 11, MirrorType: schemas.MirrorERSPAN,
		SrcMac: schemas.MAC{2, 0, 0, 0, 0, 12}, DstMac: schemas.MAC{2, 0, 0, 0, 0, 13},
		MplsLabels:      [schemas.MaxMplsLabels]uint32{14<<12 | 1<<8 | 64},
		ClientNwDelayNs: 1_234_567_891, ServerNwDelayNs: 2_345_678_912, ApplLatencyNs: 3_456_789_123, TcpRetransmitted: 15, TcpOutOfOrder: 16}
	if v6 {
		f.SrcAddr, f.DstAddr = netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	}
	if bi {
		f.Biflow, f.ReversePackets, f.ReverseBytes, f.ReverseL2Bytes = true, 3, 300, 342
		f.ReverseTimeFlowStartNs, f.ReverseTimeFlowEndNs, f.ReverseTcpFlags = t0+1e9+5e6, t0+2e9, 0x12
	}
	return f
}

// setDistinct puts a value in x's Flow field that no other field has.
func setDistinct(t *testing.T, f *schemas.Flow, x *schemas.ExportField, i int, v6 bool, t0 int64) {
	v := reflect.ValueOf(f).Elem().FieldByName(x.Flow)
	switch x.Kind {
	case schemas.KindUint:
		v.SetUint(map[uintptr]uint64{1: 0xa0, 2: 0x0a10, // fits vlanId's 12 bits
			4: 0xc1020300, 8: 0xd1020304050600}[v.Type().Size()] + uint64(i))
	case schemas.KindAddr:
		if x.Family == 0 { // not the record's family: of the other one
			v6 = !v6
		}
		a := netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})
		if v6 {
			a = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0xff, 15: byte(i)})
		}
		v.Set(reflect.ValueOf(a))
	case schemas.KindTime:
		v.SetInt(t0 + int64(10+i)*1e9 + 123_456_789) // sub-ms: the wire has ms
	case schemas.KindICMP:
		f.Proto = 1
		if v6 {
			f.Proto = 58
		}
		v.SetUint(11<<8 | uint64(i))
	case schemas.KindDirection:
		v.Set(reflect.ValueOf(schemas.DirectionIngress))
	case schemas.KindInitiator:
		v.SetBool(true)
	case schemas.KindMAC:
		v.Set(reflect.ValueOf(schemas.MAC{0x02, 0xa0, 0, 0, 0, byte(i)}))
	case schemas.KindMPLS: // label, TC 5, bottom of stack, TTL 64 (which the IE drops); the top stays set
		f.MplsLabels[x.Index] = (0xa0000+uint32(i))<<12 | 5<<9 | 1<<8 | 64
	case schemas.KindMillis, schemas.KindSeconds, schemas.KindMicros: // sub-µs: the wire has µs at best
		v.SetUint(uint64(i+10)*1e9 + 345_678_912)
	default:
		t.Fatalf("kind %d: the test does not know it", x.Kind)
	}
}

// goflowField decodes msgs with goflow2 and returns x's value in the data
// record and its offset in the data message.
func goflowField(t *testing.T, p ipfix.Protocol, msgs [][]byte, x *schemas.ExportField) ([]byte, int) {
	ts := netflow.CreateTemplateSystem()
	var sets []any
	for i, m := range msgs {
		var v9 netflow.NFv9Packet
		var fix netflow.IPFIXPacket
		if err := netflow.DecodeMessageVersion(bytes.NewBuffer(m), ts, &v9, &fix); err != nil {
			t.Fatalf("message %d: goflow2: %v", i, err)
		}
		sets = fix.FlowSets
		if p == ipfix.NetFlowV9 {
			sets = v9.FlowSets
		}
	}
	off := dataSet(t, msgs[len(msgs)-1], p) + 4
	want := x.Field(p == ipfix.NetFlowV9)
	var pen uint32
	switch {
	case x.PEN != 0 && p == ipfix.IPFIX:
		pen = x.PEN
	case x.Reverse:
		pen = schemas.PENReverse
	case x.Enterprise:
		pen = schemas.PENDocumentation
	}
	for _, s := range sets {
		ds, ok := s.(netflow.DataFlowSet)
		if !ok || len(ds.Records) != 1 {
			continue
		}
		for _, v := range ds.Records[0].Values {
			b := v.Value.([]byte)
			id := v.Type
			if p == ipfix.IPFIX { // the enterprise bit; v9 has none (57581 is 57581)
				id &^= 0x8000
			}
			if id == want.ID && v.PenProvided == (pen != 0) && (pen == 0 || v.Pen == pen) {
				return b, off
			}
			off += len(b)
		}
	}
	t.Fatalf("goflow2 found no IE %d (reverse %v) in the data record", want.ID, x.Reverse)
	return nil, 0
}

// dataSet is the offset of the (first) data set in msg.
func dataSet(t *testing.T, msg []byte, p ipfix.Protocol) int {
	off := 20 // v9 header
	if p == ipfix.IPFIX {
		off = 16
	}
	for off+4 <= len(msg) {
		if binary.BigEndian.Uint16(msg[off:]) >= 256 {
			return off
		}
		off += int(binary.BigEndian.Uint16(msg[off+2:]))
	}
	t.Fatal("no data set in the message")
	return 0
}

// wantWire is x's value as it should be on the wire.
func wantWire(x *schemas.ExportField, f *schemas.Flow, p ipfix.Protocol, data []byte) []byte {
	v := reflect.ValueOf(f).Elem().FieldByName(x.Flow)
	be := binary.BigEndian
	switch x.Kind {
	case schemas.KindUint:
		return be.AppendUint64(nil, v.Uint())[8-x.Length:]
	case schemas.KindAddr:
		if a := v.Interface().(netip.Addr); x.Length == 16 {
			a16 := a.As16()
			return a16[:]
		} else {
			return a.AsSlice()
		}
	case schemas.KindMAC:
		m := v.Interface().(schemas.MAC)
		return m[:]
	case schemas.KindMPLS:
		return be.AppendUint32(nil, f.MplsLabels[x.Index])[:3]
	case schemas.KindTime:
		ms := uint64(v.Int() / 1e6)
		if p == ipfix.NetFlowV9 { // sysUptime ms: unix_secs*1000 - sysUptime is the origin
			return be.AppendUint32(nil, uint32(ms-(uint64(be.Uint32(data[8:]))*1000-uint64(be.Uint32(data[4:])))))
		}
		return be.AppendUint64(nil, ms)
	case schemas.KindICMP:
		return be.AppendUint16(nil, f.DstPort)
	case schemas.KindDirection:
		return []byte{uint8(f.FlowDirection) - 1}
	case schemas.KindInitiator:
		return []byte{1}
	case schemas.KindMillis:
		return be.AppendUint32(nil, uint32(v.Uint()/1e6))
	case schemas.KindSeconds:
		return be.AppendUint32(nil, uint32(v.Uint()/1e9))
	case schemas.KindMicros:
		return be.AppendUint32(nil, uint32(v.Uint()%1e9/1e3))
	}
	return nil
}

// wantProto is what the FlowMessage field should hold for wire value w,
// formatted as protoValue formats it. A seconds or microseconds field is
// half of a pair: the other half is f's.
func wantProto(x *schemas.ExportField, w []byte, p ipfix.Protocol, data []byte, f *schemas.Flow) string {
	var n uint64
	for _, b := range w {
		n = n<<8 | uint64(b)
	}
	switch x.Kind {
	case schemas.KindAddr:
		a, _ := netip.AddrFromSlice(w)
		b := a.As16()
		return fmt.Sprintf("%x", b[:])
	case schemas.KindTime:
		if p == ipfix.NetFlowV9 {
			be := binary.BigEndian
			n += uint64(be.Uint32(data[8:]))*1000 - uint64(be.Uint32(data[4:]))
		}
		return fmt.Sprint(n * 1e6)
	case schemas.KindICMP:
		return fmt.Sprint(n>>8, "/", n&0xff) // icmp_type / icmp_code
	case schemas.KindDirection:
		return fmt.Sprint(n + 1)
	case schemas.KindInitiator:
		return "true"
	case schemas.KindMPLS:
		return fmt.Sprint(n << 8) // a label stack entry, TTL 0
	case schemas.KindMillis:
		return fmt.Sprint(n * 1e6)
	case schemas.KindSeconds:
		return fmt.Sprint(n*1e9 + flowField(*f, x).(uint64)%1e9/1e3*1e3)
	case schemas.KindMicros:
		return fmt.Sprint(flowField(*f, x).(uint64)/1e9*1e9 + n*1e3)
	}
	return fmt.Sprint(n)
}

// protoValue reads x's FlowMessage field by its flow.proto name.
func protoValue(t *testing.T, m *schemas.FlowMessage, x *schemas.ExportField) string {
	r := m.ProtoReflect()
	get := func(name string) protoreflect.Value {
		fd := r.Descriptor().Fields().ByName(protoreflect.Name(name))
		if fd == nil {
			t.Fatalf("FlowMessage has no field %q", name)
		}
		return r.Get(fd)
	}
	v := get(x.Proto)
	if x.Kind == schemas.KindMPLS {
		if l := v.List(); int(x.Index) < l.Len() {
			return fmt.Sprint(l.Get(int(x.Index)).Uint())
		}
		return "none"
	}
	switch fd := r.Descriptor().Fields().ByName(protoreflect.Name(x.Proto)); fd.Kind() {
	case protoreflect.BytesKind:
		return fmt.Sprintf("%x", v.Bytes())
	case protoreflect.EnumKind:
		return fmt.Sprint(v.Enum())
	case protoreflect.BoolKind:
		return fmt.Sprint(v.Bool())
	}
	if x.Kind == schemas.KindICMP {
		return fmt.Sprint(v.Uint(), "/", get("icmp_code").Uint())
	}
	return fmt.Sprint(v.Uint())
}

func flowField(f schemas.Flow, x *schemas.ExportField) any {
	return reflect.ValueOf(f).FieldByName(x.Flow).Interface()
}

// wantFlow is the record a collector reads back: times in whole ms, TCP
// latencies in whole ms (IPFIX) or µs (NetFlow v9), no zero-window count.
func wantFlow(f schemas.Flow, p ipfix.Protocol) schemas.Flow {
	prec := uint64(1e6)
	if p == ipfix.NetFlowV9 {
		prec = 1e3
	}
	f.ClientNwDelayNs = f.ClientNwDelayNs / prec * prec
	f.ServerNwDelayNs = f.ServerNwDelayNs / prec * prec
	f.ApplLatencyNs = f.ApplLatencyNs / prec * prec
	f.TcpZeroWindow = 0
	f.TimeFlowStartNs = f.TimeFlowStartNs / 1e6 * 1e6
	f.TimeFlowEndNs = f.TimeFlowEndNs / 1e6 * 1e6
	f.ReverseTimeFlowStartNs = f.ReverseTimeFlowStartNs / 1e6 * 1e6
	f.ReverseTimeFlowEndNs = f.ReverseTimeFlowEndNs / 1e6 * 1e6
	for i := range f.MplsLabels {
		f.MplsLabels[i] &^= 0xff // mplsLabelStackSection has no TTL
	}
	return f
}

package decode

import (
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/xdpflow/xdpflow/schemas"
)

// TestBeginResetsEveryField: the converter reuses one message and resets
// it field by field (zeroing the whole struct costs ~20 ns a record);
// this fails when flow.proto gains a field begin does not reset.
func TestBeginResetsEveryField(t *testing.T) {
	m := &schemas.FlowMessage{}
	r := m.ProtoReflect()
	fields := r.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		var v protoreflect.Value
		switch {
		case fd.IsList() && fd.Kind() == protoreflect.Uint32Kind:
			l := r.NewField(fd).List()
			l.Append(protoreflect.ValueOfUint32(7))
			v = protoreflect.ValueOfList(l)
		case fd.IsList():
			t.Fatalf("field %s: repeated %s not covered by this test", fd.Name(), fd.Kind())
		}
		switch fd.Kind() {
		case protoreflect.BoolKind:
			v = protoreflect.ValueOfBool(true)
		case protoreflect.EnumKind:
			v = protoreflect.ValueOfEnum(1)
		case protoreflect.Uint32Kind:
			if !fd.IsList() {
				v = protoreflect.ValueOfUint32(7)
			}
		case protoreflect.Uint64Kind:
			v = protoreflect.ValueOfUint64(7)
		case protoreflect.StringKind:
			v = protoreflect.ValueOfString("x")
		case protoreflect.BytesKind:
			v = protoreflect.ValueOfBytes([]byte{1, 2, 3})
		default:
			t.Fatalf("field %s: kind %s not covered by this test", fd.Name(), fd.Kind())
		}
		r.Set(fd, v)
	}
	var c converter
	var exporter [16]byte
	c.begin(m, &msgHeader{version: 10}, nil, &exporter)
	// What begin sets from the message header.
	set := map[protoreflect.Name]bool{"type": true, "sampler_address": true, "schema_version": true}
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if r.Has(fd) && !set[fd.Name()] {
			t.Errorf("begin leaves %s = %v from the previous record", fd.Name(), r.Get(fd))
		}
	}
}

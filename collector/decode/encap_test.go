package decode

import (
	"slices"
	"testing"

	"github.com/xdpflow/xdpflow/schemas"
)

// TestOtherExportersEncap: the IANA IEs other exporters send for what
// the probe sends as its own: a router's ten-label stack (70-79, 3 bytes
// each, no TTL), a vSwitch's VXLAN segment (layer2SegmentId 351, type
// 0x01), a GRE key (296), a GTP-U TEID (507), an observation point (138,
// 8 bytes as IANA defines it). Our enterprise IEs under another
// enterprise number are not ours.
func TestOtherExportersEncap(t *testing.T) {
	labels := []uint16{}
	var stack []byte
	var want []uint32
	for i := range uint32(10) {
		labels = append(labels, uint16(70+i), 3)
		s := uint32(0)
		if i == 9 {
			s = 1
		}
		stack = append(stack, byte((100+i)>>12), byte((100+i)>>4), byte((100+i)<<4|2<<1|s))
		want = append(want, (100+i)<<12|2<<9|s<<8)
	}
	for _, tc := range []struct {
		name   string
		fields []uint16
		value  []byte
		check  func(m *schemas.FlowMessage) bool
	}{
		{"MPLS, ten labels", labels, stack, func(m *schemas.FlowMessage) bool { return slices.Equal(m.MplsLabels, want) }},
		{"MPLS, two labels padded (label 6, TC 2, S; then zeros)", labels[:8], append(stack[:3:3], 0, 0, 0x65, 0, 0, 0, 0, 0, 0), func(m *schemas.FlowMessage) bool {
			return slices.Equal(m.MplsLabels, []uint32{want[0], 6<<12 | 2<<9 | 1<<8})
		}},
		{"VXLAN segment", []uint16{351, 8}, []byte{1, 0, 0, 0, 0, 0xab, 0xcd, 0xef}, func(m *schemas.FlowMessage) bool {
			return m.TunnelType == schemas.FlowMessage_TUNNEL_TYPE_VXLAN && m.TunnelId == 0xabcdef
		}},
		{"NVGRE segment: not a GRE key", []uint16{351, 8}, []byte{2, 0, 0, 0, 0, 0xab, 0xcd, 0xef}, func(m *schemas.FlowMessage) bool {
			return m.TunnelType == 0 && m.TunnelId == 0
		}},
		{"GRE key", []uint16{296, 4}, []byte{0xde, 0xad, 0xbe, 0xef}, func(m *schemas.FlowMessage) bool {
			return m.TunnelType == schemas.FlowMessage_TUNNEL_TYPE_GRE && m.TunnelId == 0xdeadbeef
		}},
		{"GTP-U TEID", []uint16{507, 4}, []byte{0, 1, 0, 2}, func(m *schemas.FlowMessage) bool {
			return m.TunnelType == schemas.FlowMessage_TUNNEL_TYPE_GTPU && m.TunnelId == 0x10002
		}},
		{"observation point, 8 bytes", []uint16{138, 8}, []byte{0, 0, 0, 0, 0, 0, 0x10, 0x92}, func(m *schemas.FlowMessage) bool {
			return m.ObservationPointId == 4242
		}},
		{"tunnel type under another enterprise number", []uint16{0x8000 | schemas.IETunnelType, 1, 0, 9999}, []byte{5},
			func(m *schemas.FlowMessage) bool { return m.TunnelType == 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := tmpl(400, append([]uint16{8, 4, 12, 4}, tc.fields...)...)
			if tc.fields[0]&0x8000 != 0 { // an enterprise field: 3 fields, not 4 pairs
				tr[3] = 3
			}
			msg := ipfixMsg(1, 1, set(2, tr),
				set(400, []byte{10, 0, 0, 1}, []byte{10, 0, 0, 2}, tc.value))
			got := decodeAll(t, New(testConfig), testExporter, [][]byte{msg}, 1)
			if len(got) != 1 {
				t.Fatalf("%d records", len(got))
			}
			if !tc.check(got[0]) {
				t.Errorf("decoded %v", got[0])
			}
		})
	}
}

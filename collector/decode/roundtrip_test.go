package decode

import (
	"testing"
	"time"

	"github.com/xdpflow/xdpflow/probe/export/ipfix"
	"github.com/xdpflow/xdpflow/probe/export/ipfix/ipfixtest"
	"github.com/xdpflow/xdpflow/schemas"
)

// TestRoundTripProbeEncoder decodes the probe's own IPFIX and v9 export
// and expects every field back, the interface names from options template
// 259 and sampling rate 1 from 258.
func TestRoundTripProbeEncoder(t *testing.T) {
	ifNames := map[uint32]string{1: "eth0", 2: "eth1", 3: "enp1s0f1", 4: "a-fifteen-chars"}
	for _, tc := range []struct {
		name  string
		proto ipfix.Protocol
		typ   schemas.FlowMessage_FlowType
		max   int
	}{
		{"ipfix", ipfix.IPFIX, schemas.FlowMessage_IPFIX, 0},
		{"ipfix-jumbo", ipfix.IPFIX, schemas.FlowMessage_IPFIX, 9000},
		{"netflow-v9", ipfix.NetFlowV9, schemas.FlowMessage_NETFLOW_V9, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Now()
			cfg := ipfix.Config{Protocol: tc.proto, ObservationDomain: 77, Interfaces: ifNames, MaxMessageBytes: tc.max}
			flows := testFlows(3000, now.Add(time.Second), 1)
			msgs := ipfixtest.Encode(t, cfg, flows, now)
			d := New(Config{})
			got := decodeAll(t, d, testExporter, msgs, 1234)
			if len(got) != len(flows) {
				t.Fatalf("%d records, want %d", len(got), len(flows))
			}
			sampler := testExporter.Addr().As16()
			for i, m := range got {
				if g, w := m.Flow(), msOnly(flows[i]); g != w {
					t.Fatalf("record %d:\n got %+v\nwant %+v", i, g, w)
				}
				if m.InIfName != ifNames[m.InIf] || m.SamplingRate != 1 || m.Type != tc.typ || m.ObservationDomainId != 77 ||
					string(m.SamplerAddress) != string(sampler[:]) || m.TimeReceivedNs != 1234 || m.SchemaVersion != schemas.SchemaVersion ||
					len(m.SrcAddr) != 16 || len(m.DstAddr) != 16 {
					t.Fatalf("record %d: in_if_name %q sampling %d type %v domain %d sampler %x received %d schema %d", i,
						m.InIfName, m.SamplingRate, m.Type, m.ObservationDomainId, m.SamplerAddress, m.TimeReceivedNs, m.SchemaVersion)
				}
				wantEtype := uint32(0x0800)
				if flows[i].SrcAddr.Is6() {
					wantEtype = 0x86dd
				}
				if m.Etype != wantEtype {
					t.Fatalf("record %d: etype %#x, want %#x", i, m.Etype, wantEtype)
				}
			}
			st := d.Stats()
			if st.Total.Records != uint64(len(flows)) || st.Total.Lost != 0 || st.Total.Resets != 0 || st.Total.TemplateMisses != 0 ||
				st.Total.Messages != uint64(len(msgs)) || len(st.Total.Bad()) != 0 || st.Total.Templates != 4 {
				t.Errorf("stats %+v, bad %v", st.Total, st.Total.Bad())
			}
		})
	}
}

// TestSamplingRateFromOptions: the probe's encoder with a sampling
// interval: IPFIX says it with 305/306 (and 34), v9 with 34.
func TestSamplingRateFromOptions(t *testing.T) {
	for _, p := range []ipfix.Protocol{ipfix.IPFIX, ipfix.NetFlowV9} {
		now := time.Now()
		msgs := ipfixtest.Encode(t, ipfix.Config{Protocol: p, SamplingInterval: 1000}, testFlows(10, now.Add(time.Second), 2), now)
		got := decodeAll(t, New(Config{}), testExporter, msgs, 1)
		for _, m := range got {
			if m.SamplingRate != 1000 {
				t.Fatalf("%v: sampling rate %d, want 1000", p, m.SamplingRate)
			}
		}
	}
}

// TestRoundTripFlowDirection: the probe's templates 260/261 (--local-net)
// give flow_direction back; records without a direction keep it unknown.
func TestRoundTripFlowDirection(t *testing.T) {
	now := time.Now()
	flows := testFlows(300, now.Add(time.Second), 3)
	for i := range flows {
		flows[i].FlowDirection = schemas.Direction(i % 3)
	}
	for _, proto := range []ipfix.Protocol{ipfix.IPFIX, ipfix.NetFlowV9} {
		msgs := ipfixtest.Encode(t, ipfix.Config{Protocol: proto, FlowDirection: true}, flows, now)
		got := decodeAll(t, New(Config{}), testExporter, msgs, 1)
		if len(got) != len(flows) {
			t.Fatalf("%d records, want %d", len(got), len(flows))
		}
		for i, m := range got {
			if g, w := m.Flow(), msOnly(flows[i]); g != w {
				t.Fatalf("%v record %d:\n got %+v\nwant %+v", proto, i, g, w)
			}
		}
	}
}

// TestRoundTripBiflow: the probe's RFC 5103 records (templates 262-265)
// come back with the reverse direction's counts; NetFlow v9 gets the two
// directions as one-way records.
func TestRoundTripBiflow(t *testing.T) {
	now := time.Now()
	flows := testFlows(200, now.Add(time.Second), 5)
	for i := range flows {
		f := &flows[i]
		f.FlowDirection = schemas.Direction(i % 3)
		if i%2 == 0 && !f.IsICMP() {
			f.Biflow = true
			f.ReversePackets, f.ReverseBytes, f.ReverseL2Bytes = uint64(i+1), uint64(60*(i+1)), uint64(74*(i+1))
			f.ReverseTimeFlowStartNs, f.ReverseTimeFlowEndNs, f.ReverseTcpFlags = f.TimeFlowStartNs+1e6, f.TimeFlowEndNs, 0x12
		}
	}
	msgs := ipfixtest.Encode(t, ipfix.Config{FlowDirection: true, Biflow: true}, flows, now)
	got := decodeAll(t, New(Config{}), testExporter, msgs, 1)
	if len(got) != len(flows) {
		t.Fatalf("%d records, want %d", len(got), len(flows))
	}
	for i, m := range got {
		w := msOnly(flows[i])
		w.ReverseTimeFlowStartNs, w.ReverseTimeFlowEndNs = w.ReverseTimeFlowStartNs/1e6*1e6, w.ReverseTimeFlowEndNs/1e6*1e6
		if g := m.Flow(); g != w {
			t.Fatalf("record %d:\n got %+v\nwant %+v", i, g, w)
		}
	}
	v9 := decodeAll(t, New(Config{}), testExporter, ipfixtest.Encode(t, ipfix.Config{Protocol: ipfix.NetFlowV9, Biflow: true}, flows, now), 1)
	want := 0
	for _, f := range flows {
		want++
		if f.Biflow {
			want++
		}
	}
	if len(v9) != want {
		t.Errorf("v9: %d records, want %d (a biflow as its two directions)", len(v9), want)
	}
}

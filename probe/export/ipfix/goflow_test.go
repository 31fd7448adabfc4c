package ipfix

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"

	"github.com/netsampler/goflow2/v2/decoders/netflow"

	"github.com/xdpflow/xdpflow/schemas"
)

// goflowDecode runs every message through goflow2's decoder (an independent
// implementation that collectors use) and rebuilds the flows and options.
func goflowDecode(t *testing.T, p Protocol, msgs [][]byte) (flows []schemas.Flow, sampling []map[uint16]uint64, ifaces map[uint32]string) {
	t.Helper()
	ts := netflow.CreateTemplateSystem()
	ifaces = map[uint32]string{}
	for i, m := range msgs {
		var v9 netflow.NFv9Packet
		var ipfix netflow.IPFIXPacket
		if err := netflow.DecodeMessageVersion(bytes.NewBuffer(m), ts, &v9, &ipfix); err != nil {
			t.Fatalf("message %d: goflow2: %v", i, err)
		}
		sets := ipfix.FlowSets
		var secs, uptime uint32
		if p == NetFlowV9 {
			sets, secs, uptime = v9.FlowSets, v9.UnixSeconds, v9.SystemUptime
			if v9.Version != 9 || v9.SourceId != 1 {
				t.Fatalf("message %d: v9 header %+v", i, v9)
			}
		} else if ipfix.Version != 10 || ipfix.ObservationDomainId != 1 || int(ipfix.Length) != len(m) {
			t.Fatalf("message %d: IPFIX header %+v", i, ipfix)
		}
		for _, s := range sets {
			switch s := s.(type) {
			case netflow.DataFlowSet:
				for _, r := range s.Records {
					flows = append(flows, goflowFlow(t, r.Values, secs, uptime))
				}
			case netflow.OptionsDataFlowSet:
				for _, r := range s.Records {
					vals := map[uint16]uint64{}
					var name string
					for _, v := range append(append([]netflow.DataField(nil), r.ScopesValues...), r.OptionsValues...) {
						b := v.Value.([]byte)
						if v.Type == schemas.IEInterfaceName && len(r.ScopesValues) > 0 && len(b) == ifNameLen {
							name = string(bytes.TrimRight(b, "\x00"))
							continue
						}
						vals[v.Type] = uintOf(b)
					}
					if name != "" {
						ifaces[uint32(uintOf(r.ScopesValues[0].Value.([]byte)))] = name
					} else {
						sampling = append(sampling, vals)
					}
				}
			case netflow.RawFlowSet:
				t.Fatalf("message %d: goflow2 could not decode set %d (no template?)", i, s.Id)
			}
		}
	}
	return flows, sampling, ifaces
}

func goflowFlow(t *testing.T, vals []netflow.DataField, secs, uptime uint32) schemas.Flow {
	var f schemas.Flow
	var icmp uint16
	for _, v := range vals {
		b := v.Value.([]byte)
		u := uintOf(b)
		switch v.Type {
		case netflow.IPFIX_FIELD_sourceIPv4Address, netflow.IPFIX_FIELD_sourceIPv6Address:
			f.SrcAddr, _ = netip.AddrFromSlice(b)
		case netflow.IPFIX_FIELD_destinationIPv4Address, netflow.IPFIX_FIELD_destinationIPv6Address:
			f.DstAddr, _ = netip.AddrFromSlice(b)
		case netflow.IPFIX_FIELD_sourceTransportPort:
			f.SrcPort = uint16(u)
		case netflow.IPFIX_FIELD_destinationTransportPort:
			f.DstPort = uint16(u)
		case netflow.IPFIX_FIELD_protocolIdentifier:
			f.Proto = uint8(u)
		case netflow.IPFIX_FIELD_tcpControlBits:
			f.TcpFlags = uint16(u)
		case netflow.IPFIX_FIELD_ipClassOfService:
			f.IpTos = uint8(u)
		case netflow.IPFIX_FIELD_vlanId:
			f.VlanId = uint16(u)
		case netflow.IPFIX_FIELD_ingressInterface:
			f.InIf = uint32(u)
		case netflow.IPFIX_FIELD_icmpTypeCodeIPv4, netflow.IPFIX_FIELD_icmpTypeCodeIPv6:
			icmp = uint16(u)
		case netflow.IPFIX_FIELD_octetDeltaCount:
			f.Bytes = u
		case netflow.IPFIX_FIELD_packetDeltaCount:
			f.Packets = u
		case netflow.IPFIX_FIELD_layer2OctetDeltaCount:
			f.L2Bytes = u
		case netflow.IPFIX_FIELD_flowStartMilliseconds:
			f.TimeFlowStartNs = int64(u) * 1e6
		case netflow.IPFIX_FIELD_flowEndMilliseconds:
			f.TimeFlowEndNs = int64(u) * 1e6
		case netflow.NFV9_FIELD_FIRST_SWITCHED: // what goflow2's producer does with v9 times
			f.TimeFlowStartNs = (int64(secs)*1000 - int64(uptime) + int64(u)) * 1e6
		case netflow.NFV9_FIELD_LAST_SWITCHED:
			f.TimeFlowEndNs = (int64(secs)*1000 - int64(uptime) + int64(u)) * 1e6
		case netflow.IPFIX_FIELD_flowEndReason:
			f.EndReason = schemas.EndReason(u)
		default:
			t.Fatalf("goflow2 decoded unexpected field %d", v.Type)
		}
	}
	want := uint16(0)
	if f.IsICMP() {
		want = f.DstPort
	}
	if icmp != want {
		t.Fatalf("icmpTypeCode %#x, want %#x (flow %+v)", icmp, want, f)
	}
	return f
}

func TestGoflow2Decodes(t *testing.T) {
	flows := append(fixedFlows(), randomFlows(2000, 0.4, 7)...)
	ifs := map[uint32]string{1: "lo", 2: "eth0", 3: "enp1s0f0np0"}
	for _, p := range []Protocol{IPFIX, NetFlowV9} {
		for _, max := range []int{512, 1400, 8000} {
			t.Run(fmt.Sprintf("%v/%d", p, max), func(t *testing.T) {
				e, msgs := newTestEncoder(Config{Protocol: p, MaxMessageBytes: max, SamplingInterval: 1, Interfaces: ifs})
				now := e.now()
				// Templates, half the records, a refresh mid-stream, the rest.
				if err := e.SendTemplates(now); err != nil {
					t.Fatal(err)
				}
				for i := range flows {
					if i == len(flows)/2 {
						if err := e.SendTemplates(now); err != nil {
							t.Fatal(err)
						}
					}
					if err := e.Add(&flows[i]); err != nil {
						t.Fatal(err)
					}
				}
				if err := e.Flush(now); err != nil {
					t.Fatal(err)
				}
				got, sampling, gotIfs := goflowDecode(t, p, *msgs)
				if len(got) != len(flows) {
					t.Fatalf("goflow2 decoded %d records, %d sent", len(got), len(flows))
				}
				for i := range flows {
					if want := wantFlow(flows[i]); got[i] != want {
						t.Fatalf("record %d:\n got %+v\nwant %+v", i, got[i], want)
					}
				}
				if len(sampling) != 2 {
					t.Fatalf("%d sampling records, want 2 (one per template send)", len(sampling))
				}
				for _, s := range sampling {
					if s[netflow.IPFIX_FIELD_samplingInterval] != 1 || s[netflow.IPFIX_FIELD_samplingAlgorithm] != 1 {
						t.Errorf("sampling options %v", s)
					}
				}
				if len(gotIfs) != len(ifs) {
					t.Errorf("interfaces %v, want %v", gotIfs, ifs)
				}
				for k, v := range ifs {
					if gotIfs[k] != v {
						t.Errorf("interface %d: %q, want %q", k, gotIfs[k], v)
					}
				}
			})
		}
	}
}

// TestGoflow2Sequence checks goflow2 reads the sequence numbers we mean.
func TestGoflow2Sequence(t *testing.T) {
	flows := randomFlows(500, 0.3, 11)
	for _, p := range []Protocol{IPFIX, NetFlowV9} {
		msgs := encodeAll(t, Config{Protocol: p}, flows)
		ts := netflow.CreateTemplateSystem()
		var records uint32
		for i, m := range msgs {
			var v9 netflow.NFv9Packet
			var ipfix netflow.IPFIXPacket
			if err := netflow.DecodeMessageVersion(bytes.NewBuffer(m), ts, &v9, &ipfix); err != nil {
				t.Fatal(err)
			}
			if p == NetFlowV9 {
				if v9.SequenceNumber != uint32(i) {
					t.Fatalf("v9 packet %d: sequence %d", i, v9.SequenceNumber)
				}
				continue
			}
			if ipfix.SequenceNumber != records {
				t.Fatalf("IPFIX message %d: sequence %d, want %d data records before it", i, ipfix.SequenceNumber, records)
			}
			for _, s := range ipfix.FlowSets {
				switch s := s.(type) {
				case netflow.DataFlowSet:
					records += uint32(len(s.Records))
				case netflow.OptionsDataFlowSet:
					records += uint32(len(s.Records))
				}
			}
		}
	}
}

package bpf

import (
	"testing"

	"github.com/xdpflow/xdpflow/internal/testkit/trafficgen"
)

// TestEncapMix: the end-to-end tests' encapsulated profile
// (trafficgen.EncapMix) through the program, in each way the probe can
// be set to look at it, against what the profile says must be counted
// and against the spec applied to tshark's dissection of the same
// frames: the profile's arithmetic is checked here, where a difference
// is the datapath's or the profile's alone, before the probe and the
// exporters are judged by it (probe/encap_test.go).
func TestEncapMix(t *testing.T) {
	mix := trafficgen.EncapMix()
	var mirrors []Mirror
	for _, s := range trafficgen.MirrorEncaps(mix) {
		m, err := ParseMirror(s)
		if err != nil {
			t.Fatal(err)
		}
		mirrors = append(mirrors, m)
	}
	views := []trafficgen.View{{}, {Mirrors: true, MACs: true}, {TunnelsOuter: true}, {TunnelsOuter: true, Mirrors: true}}
	cfgs := make([]Config, len(views))
	for i, v := range views {
		cfgs[i] = Config{MaxFlows: 64, TunnelsOuter: v.TunnelsOuter, MACs: v.MACs}
		if v.Mirrors {
			cfgs[i].Mirrors = mirrors
		}
	}
	// The frames are the same in every view: tshark dissects them once.
	frames, err := trafficgen.BuildEncap(mix, macA, macB, trafficgen.View{})
	if err != nil {
		t.Fatal(err)
	}
	var raw [][]byte
	for _, f := range frames {
		raw = append(raw, f.Frame)
	}
	dissected := dissect(t, raw, decodeAsFor(cfgs...))
	dps := newDatapaths(t)
	for i, v := range views {
		t.Run(viewName(v), func(t *testing.T) {
			frames, err := trafficgen.BuildEncap(mix, macA, macB, v)
			if err != nil {
				t.Fatal(err)
			}
			want := map[FlowKey]FlowValue{}
			var seen []tsharkFrame
			d := dps.get(cfgs[i])
			for j, f := range frames {
				k, val := keyOf(f)
				w := want[k]
				if w.Packets == 0 {
					w.TunnelSrcAddr, w.TunnelDstAddr, w.MplsLabels = val.TunnelSrcAddr, val.TunnelDstAddr, val.MplsLabels
				}
				w.Packets += uint64(f.Packets)
				w.Bytes += uint64(f.Packets * f.L3)
				w.L2Bytes += uint64(f.Packets * f.L2)
				w.TcpFlags |= val.TcpFlags
				want[k] = w
				for range f.Packets {
					if ret := run(t, d.Program, f.Frame); ret != uint32(Pass) {
						t.Fatalf("%s: returned %d, want XDP_PASS", mix[j].Name, ret)
					}
					seen = append(seen, dissected[j])
				}
			}
			compareTables(t, drainAll(t, d), want)
			t.Run("tshark agrees", func(t *testing.T) {
				spec := specFlows(t, seen, cfgs[i])
				compareTables(t, spec.flows, want)
				if spec.nonIP != 0 || len(spec.malformed) != 0 {
					t.Errorf("tshark's view: %d non-IP, malformed %v", spec.nonIP, spec.malformed)
				}
			})
		})
	}
}

func viewName(v trafficgen.View) string {
	n := "tunnels inner"
	if v.TunnelsOuter {
		n = "tunnels outer"
	}
	if v.Mirrors {
		n += ", mirrors stripped"
	}
	if v.MACs {
		n += ", macs"
	}
	return n
}

// keyOf is the flow key of what a probe must count of f (on testIfindex)
// and the value of one of its frames: TCP flags, tunnel endpoints, labels.
func keyOf(f trafficgen.Built) (FlowKey, FlowValue) {
	sport, dport := f.Ports()
	x := f.Extras
	k := FlowKey{InIf: testIfindex, VlanId: f.VLAN, SrcPort: sport, DstPort: dport, Proto: uint8(f.Proto),
		SrcAddr: f.Src.As16(), DstAddr: f.Dst.As16(), TunnelType: uint8(x.TunnelType), TunnelId: x.TunnelID,
		MirrorType: uint8(x.MirrorType), ObservationPointId: x.ObservationPoint, SrcMac: x.SrcMAC, DstMac: x.DstMAC}
	v := FlowValue{TcpFlags: uint32(f.TCPFlags), MplsLabels: x.MPLSLabels}
	if x.TunnelSrc.IsValid() {
		v.TunnelSrcAddr, v.TunnelDstAddr = x.TunnelSrc.As16(), x.TunnelDst.As16()
	}
	return k, v
}

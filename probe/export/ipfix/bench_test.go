package ipfix

import (
	"fmt"
	"testing"
	"time"

	"github.com/xdpflow/xdpflow/schemas"
)

// BenchmarkEncoder measures Add in steady state: messages are built and
// handed to a send that discards them.
func BenchmarkEncoder(b *testing.B) {
	for _, p := range []Protocol{IPFIX, NetFlowV9} {
		for _, fam := range []struct {
			name string
			v6   float64
		}{{"ipv4", 0}, {"ipv6", 1}} {
			b.Run(fmt.Sprintf("%v/%s", p, fam.name), func(b *testing.B) {
				flows := randomFlows(4096, fam.v6, 1)
				var bytes int
				e := NewEncoder(Config{Protocol: p}, func(m []byte) error { bytes += len(m); return nil })
				e.setBoot(testBase.Add(-time.Hour))
				addAll(b, e, flows)
				b.SetBytes(int64(bytes / max(b.N, 1)))
			})
		}
	}
	// Biflow records with a known direction (templates 264/265): the
	// flowDirection, biflowDirection and reverse fields.
	b.Run("ipfix/ipv4-dir-biflow", func(b *testing.B) {
		flows := randomFlows(4096, 0, 1)
		for i := range flows {
			f := &flows[i]
			f.FlowDirection = schemas.Direction(1 + i%2)
			f.Biflow, f.ReversePackets, f.ReverseBytes, f.ReverseL2Bytes = true, f.Packets/2, f.Bytes/2, f.L2Bytes/2
			f.ReverseTimeFlowStartNs, f.ReverseTimeFlowEndNs, f.ReverseTcpFlags = f.TimeFlowStartNs+1e6, f.TimeFlowEndNs, f.TcpFlags
		}
		addAll(b, NewEncoder(Config{FlowDirection: true, Biflow: true}, func([]byte) error { return nil }), flows)
	})
	// Records with every extra part (templates 496/497: MACs, MPLS
	// labels, tunnel, mirror), our IEs under an enterprise number, half
	// IPv4 and half IPv6.
	b.Run("ipfix/extras", func(b *testing.B) {
		flows := randomFlows(4096, 0.5, 1)
		x := extraFlows()[1]
		for i := range flows {
			f := &flows[i]
			f.TunnelType, f.TunnelId, f.TunnelSrcAddr, f.TunnelDstAddr = x.TunnelType, uint32(i), x.TunnelSrcAddr, x.TunnelDstAddr
			f.ObservationPointId, f.MirrorType, f.SrcMac, f.DstMac, f.MplsLabels = x.ObservationPointId, x.MirrorType, x.SrcMac, x.DstMac, x.MplsLabels
		}
		addAll(b, NewEncoder(Config{EnterpriseNumber: schemas.PENDocumentation}, func([]byte) error { return nil }), flows)
	})
}

// addAll measures e.Add over flows (4096 of them), in records/s.
func addAll(b *testing.B, e *Encoder, flows []schemas.Flow) {
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if err := e.Add(&flows[i&4095]); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

func TestEncoderZeroAllocs(t *testing.T) {
	flows := randomFlows(1024, 0.5, 2)
	for _, p := range []Protocol{IPFIX, NetFlowV9} {
		e := NewEncoder(Config{Protocol: p}, func([]byte) error { return nil })
		i := 0
		allocs := testing.AllocsPerRun(10000, func() {
			if err := e.Add(&flows[i&1023]); err != nil {
				t.Fatal(err)
			}
			i++
		})
		if allocs != 0 {
			t.Errorf("%v: %.2f allocations per record, want 0", p, allocs)
		}
	}
}

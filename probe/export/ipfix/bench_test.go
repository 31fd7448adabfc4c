package ipfix

import (
	"fmt"
	"testing"
	"time"
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
				b.ReportAllocs()
				b.ResetTimer()
				for i := range b.N {
					if err := e.Add(&flows[i&4095]); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
				b.SetBytes(int64(bytes / max(b.N, 1)))
			})
		}
	}
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

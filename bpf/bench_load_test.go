package bpf

import "testing"

// BenchmarkLoad: what the verifier does with the program in the
// configurations that give it the most paths: the time of a Load (every
// program verified) and the instructions it processed for xdpflow (its
// limit is 1,000,000). docs/benchmarks.md ("Tunnels and mirrors") has the
// figures.
func BenchmarkLoad(b *testing.B) {
	mirrors := []Mirror{{Type: MirrorERSPAN}, {Type: MirrorVXLAN, Port: 4790}, {Type: MirrorGeneve, Port: 6082}, {Type: MirrorTZSP}}
	for _, c := range []struct {
		name string
		cfg  Config
	}{
		{"default", Config{}},
		{"macs+tcp-health", Config{MACs: true, TCPHealth: true}},
		{"mirrors", Config{Mirrors: mirrors}},
		{"mirrors+macs+tcp-health", Config{Mirrors: mirrors, MACs: true, TCPHealth: true}},
		{"outer+mirrors+macs+tcp-health", Config{TunnelsOuter: true, Mirrors: mirrors, MACs: true, TCPHealth: true}},
	} {
		b.Run(c.name, func(b *testing.B) {
			var insns uint32
			for b.Loop() {
				c.cfg.MaxFlows = 1024
				d := load(b, c.cfg)
				b.StopTimer()
				info, err := d.Program.Info()
				if err != nil {
					b.Fatal(err)
				}
				n, ok := info.VerifiedInstructions()
				if !ok {
					b.Fatal("the kernel does not report the instructions verified")
				}
				insns = n
				d.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(insns), "insns")
		})
	}
}

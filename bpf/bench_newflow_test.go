package bpf

import "testing"

// This file uses only what package bpf's tests had before the tunnel
// parser (commit 67b3420): docs/benchmarks-history.md copies it into that
// commit's tree to compare the plain paths of the two builds.

// rotateAndDrain empties the flow table between chunks of a new-flow
// benchmark, so that every packet really inserts.
func rotateAndDrain(b *testing.B, d *Datapath) func() {
	return func() {
		old, err := d.Rotate()
		if err != nil {
			b.Fatal(err)
		}
		if err := d.Drain(old, func(FlowKey, FlowValue) {}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNewFlowFrames is NewFlow for each plain frame: every
// packet a new flow.
func BenchmarkNewFlowFrames(b *testing.B) {
	for _, name := range []string{"ipv4-tcp", "ipv6-udp", "vlan-tcp", "mpls-tcp", "pppoe-tcp"} {
		b.Run(name, func(b *testing.B) {
			pinCPU(b)
			d := load(b, Config{benchFlows: 1<<32 - 1})
			measure(b, d.Program, benchFrames()[name], benchChunk, rotateAndDrain(b, d))
		})
	}
}

package main

import (
	"strings"
	"testing"
)

// TestSummarize: medians per case, each probe's cost is its median minus
// the baseline's, and a ratio needs xdpflow's cost above 0.
func TestSummarize(t *testing.T) {
	run := func(k kind, napi, probe float64) rateResult {
		return rateResult{kind: k, sent: 2e6, received: 1e6, napi: napi, probe: probe, counted: 1e6}
	}
	by := summarize([]rateResult{
		run(baseline, 0.10, 0), run(baseline, 0.30, 0), run(baseline, 0.12, 0),
		run(xdpflowDrop, 0.15, 0.01), run(xdpflowDrop, 0.16, 0), run(xdpflowDrop, 0.50, 0),
		run(softflowd, 0.50, 0.12), run(softflowd, 0.60, 0.10), run(softflowd, 0.40, 0.15),
	})
	near := func(got, want float64) bool { return got > want-1e-9 && got < want+1e-9 }
	if cs := by[xdpflowDrop]; !near(cs.rxSide, 0.16) || !near(cs.cost, 0.04) || !near(cs.minCost, 0.06) {
		t.Errorf("xdpflow: rxSide %v cost %v minCost %v, want 0.16 0.04 0.06", cs.rxSide, cs.cost, cs.minCost)
	}
	if cs := by[softflowd]; !near(cs.cost, 0.50) || !near(cs.recvFrac, 0.5) || !near(cs.worstCount, 1) {
		t.Errorf("softflowd: cost %v recvFrac %v worstCount %v, want 0.50 0.5 1", cs.cost, cs.recvFrac, cs.worstCount)
	}
	if got := ratio(by[softflowd].cost, by[xdpflowDrop].cost); got != "12.50x" {
		t.Errorf("ratio = %s, want 12.50x", got)
	}
	if got := verdict(true, false); !strings.HasPrefix(got, "unsettled") {
		t.Errorf("verdict(median met, lowest not) = %s", got)
	}
	if got := ratio(0.5, -0.01); !strings.HasPrefix(got, "no ratio") {
		t.Errorf("ratio over a negative cost = %s, want no ratio", got)
	}
}

func TestLibpcapStatistics(t *testing.T) {
	pm := "INFO ( default/core ): OK, Exiting ...\nNOTICE ( default/core ): +++\nNOTICE ( default/core ): [xfpb1-b,0] received_packets=47830 dropped_packets=3\nNOTICE ( default/core ): ---\n"
	if got := pmacctdDrops(pm); got != "received_packets=47830 dropped_packets=3" {
		t.Errorf("pmacctdDrops = %q", got)
	}
	sf := "softflowd[1]: Accumulated statistics since 2026-11-29T17:00:00 UTC:\nNumber of active flows: 0\nPackets processed: 47830\nPackets dropped by libpcap: 0\n"
	if got := softflowdDrops(sf); got != "Packets dropped by libpcap: 0" {
		t.Errorf("softflowdDrops = %q", got)
	}
}

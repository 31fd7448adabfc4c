package main

import (
	"slices"
	"strings"

	"github.com/xdpflow/xdpflow/internal/cmd/benchstat"
)

// encapRows are the encapsulation rows of BenchmarkExistingFlow
// (encapBenchFrames in bpf/bench_test.go): the plain row whose innermost
// packet each one carries, and how many levels of tunnel or mirror
// encapsulation wrap it (0: an outer view, the tunnel not parsed).
// TestEncapRowsMatchBenchmarks keeps this list equal to that function's.
var encapRows = map[string]struct {
	plain  string
	levels int
}{
	"gre-key":        {"ipv4-tcp", 1},
	"ipv4-in-ipv4":   {"ipv4-tcp", 1},
	"ipv6-in-ipv4":   {"ipv6-udp", 1},
	"vxlan":          {"ipv4-tcp", 1},
	"geneve":         {"ipv4-tcp", 1},
	"gtpu":           {"ipv4-tcp", 1},
	"vxlan-in-gre":   {"ipv4-tcp", 2},
	"vxlan-x3":       {"ipv4-tcp", 3},
	"erspan2-mirror": {"ipv4-tcp", 1},
	"vxlan-mirror":   {"ipv4-tcp", 1},
	"tzsp-mirror":    {"ipv4-tcp", 1},
	"vxlan-outer":    {"ipv4-tcp", 0},
	"gre-outer":      {"ipv4-tcp", 0},
}

// against is the row a row is compared with in the same round, beyond the
// floor: what an encapsulation level, --tcp-health, the multi-buffer
// program, sampling or --local-net adds to the path it extends. levels
// divides the difference (encapsulation levels); 1 otherwise, and for an
// outer view (0 levels) the plain difference is reported.
type against struct {
	row    string
	levels int
}

// baseOf finds the row that row is compared with among rows (every row
// the run reported), or ok false. The row names of the table design
// change ("ExistingFlow/Hash/ipv4-tcp" with a map type per row, or
// "ExistingFlow/ipv4-tcp"): the base is looked up by its last element
// under the same prefix, or under either naming.
func baseOf(row string, rows map[string]bool) (against, bool) {
	first := func(names ...string) (string, bool) {
		for _, n := range names {
			if rows[n] {
				return n, true
			}
		}
		return "", false
	}
	existing := func(frame string) (string, bool) {
		return first("ExistingFlow/Hash/"+frame, "ExistingFlow/"+frame)
	}
	dir, last := "", row
	if i := strings.LastIndexByte(row, '/'); i >= 0 {
		dir, last = row[:i], row[i+1:]
	}
	var base string
	var ok bool
	levels := 1
	switch {
	case strings.HasPrefix(row, "ExistingFlow/"):
		e, isEncap := encapRows[last]
		if !isEncap {
			return against{}, false
		}
		base, ok = first(dir + "/" + e.plain)
		levels = e.levels
	case strings.HasPrefix(row, "TCPHealth/on/"):
		base, ok = first("TCPHealth/off/" + last)
	case strings.HasPrefix(row, "ExistingFlowFrags/"):
		base, ok = existing(last)
	case strings.HasPrefix(row, "Sampling/"):
		base, ok = existing("ipv4-tcp")
	case strings.HasPrefix(row, "NewFlowFreshTableTCPHealth/"):
		base, ok = first("NewFlowFreshTable")
	case row == "NewFlowLocalNets":
		base, ok = first("NewFlow/Hash", "NewFlow")
	}
	if !ok {
		return against{}, false
	}
	return against{base, levels}, true
}

// pathOrder is the order of the benchmarks in the table.
var pathOrder = []string{"ExistingFlow", "ExistingFlowFrags", "TCPHealth", "Sampling",
	"NewFlow", "NewFlowFrames", "NewFlowLocalNets", "NewFlowFreshTable", "NewFlowFreshTableTCPHealth", "MillionFlows"}

// spread is the median, least and greatest of a row's per-round figures.
type spread struct {
	med, lo, hi float64
	n           int
}

func spreadOf(xs []float64) spread {
	if len(xs) == 0 {
		return spread{}
	}
	return spread{benchstat.Median(xs), slices.Min(xs), slices.Max(xs), len(xs)}
}

// rowStats is one row of the report. Every difference and ratio is formed
// within a round (one process) before the median over rounds is taken:
// the machine's speed drifts between rounds, not within one.
type rowStats struct {
	name    string
	ns      spread // ns/pkt
	above   spread // ns/pkt minus the floor's in the same round
	ratio   spread // ns/pkt divided by the floor's
	base    against
	hasBase bool
	over    spread             // (ns/pkt minus the base's) / levels, same round
	others  map[string]float64 // medians of the other metrics (lost/sample)
}

// summarize turns the rounds into report rows, in the order they first
// ran; the floor row is first. Rows without ns/pkt (none of the
// datapath's) are left out.
func summarize(rounds []*round, floor string) []rowStats {
	var order []string
	seen := map[string]bool{}
	for _, rd := range rounds {
		for _, r := range rd.order {
			if _, ok := rd.ns(r); ok && !seen[r] {
				seen[r] = true
				order = append(order, r)
			}
		}
	}
	// The floor first, then the paths in the order a reader follows them
	// (the test binary runs them in source file order); rows of other
	// benchmarks after those, in the order they ran.
	rank := func(row string) int {
		top, _, _ := strings.Cut(row, "/")
		if top == floor {
			return -1
		}
		if i := slices.Index(pathOrder, top); i >= 0 {
			return i
		}
		return len(pathOrder)
	}
	slices.SortStableFunc(order, func(a, b string) int { return rank(a) - rank(b) })
	var out []rowStats
	for _, name := range order {
		rs := rowStats{name: name, others: map[string]float64{}}
		rs.base, rs.hasBase = baseOf(name, seen)
		var ns, above, ratio, over []float64
		others := map[string][]float64{}
		for _, rd := range rounds {
			v, ok := rd.ns(name)
			if !ok {
				continue
			}
			ns = append(ns, v)
			if f, ok := rd.ns(floor); ok && f > 0 {
				above = append(above, v-f)
				ratio = append(ratio, v/f)
			}
			if b, ok := rd.ns(rs.base.row); rs.hasBase && ok {
				d := v - b
				if rs.base.levels > 1 {
					d /= float64(rs.base.levels)
				}
				over = append(over, d)
			}
			for unit, x := range rd.metrics[name] {
				if unit != unitNsPkt && unit != "ns/op" {
					others[unit] = append(others[unit], x)
				}
			}
		}
		rs.ns, rs.above, rs.ratio, rs.over = spreadOf(ns), spreadOf(above), spreadOf(ratio), spreadOf(over)
		for unit, xs := range others {
			rs.others[unit] = benchstat.Median(xs)
		}
		out = append(out, rs)
	}
	return out
}

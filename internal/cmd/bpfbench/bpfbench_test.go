package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Two rounds of go test output as the bpf test binary prints them with
// -test.cpu 2: a row name ending in digits, a metric besides ns/pkt, a
// failed row, log lines.
const round0 = `goos: linux
goarch: amd64
pkg: github.com/xdpflow/xdpflow/bpf
cpu: AMD EPYC
BenchmarkEmptyProgram-2                	 2000000	        10.00 ns/op	        10.00 ns/pkt
BenchmarkExistingFlow/Hash/ipv4-tcp-2  	 2000000	        52.00 ns/op	        50.00 ns/pkt
BenchmarkExistingFlow/Hash/vxlan-x3-2  	 2000000	        95.00 ns/op	        95.00 ns/pkt
BenchmarkExistingFlow/Hash/vxlan-outer-2	 2000000	        55.00 ns/op	        55.00 ns/pkt
BenchmarkExistingFlowFrags/ipv4-udp-8928-2	 2000000	        80.00 ns/op	        80.00 ns/pkt
BenchmarkTCPHealth/off/ipv4-tcp-data-2 	 2000000	        60.00 ns/op	        60.00 ns/pkt
BenchmarkTCPHealth/on/ipv4-tcp-data-2  	 2000000	        70.00 ns/op	        70.00 ns/pkt
BenchmarkSampling/1-in-100-2           	 2000000	        53.00 ns/op	        53.00 ns/pkt	         0 lost/sample
--- FAIL: BenchmarkMillionFlows/Hash
BenchmarkNewFlowFreshTable-2           	--- FAIL: BenchmarkNewFlowFreshTable-2
    bench_test.go:250: load XDP program: map create: cannot allocate memory
    bench_test.go:280: 3 packets found no slot
BenchmarkDrain-2                       	 1000000	       342.0 ns/op	   2923976 flows/s
FAIL
`

const round1 = `BenchmarkEmptyProgram-2                	 2000000	        20.00 ns/op	        20.00 ns/pkt
BenchmarkExistingFlow/Hash/ipv4-tcp-2  	 2000000	        62.00 ns/op	        62.00 ns/pkt
BenchmarkExistingFlow/Hash/vxlan-x3-2  	 2000000	        98.00 ns/op	        98.00 ns/pkt
BenchmarkExistingFlow/Hash/vxlan-outer-2	 2000000	        60.00 ns/op	        60.00 ns/pkt
BenchmarkTCPHealth/off/ipv4-tcp-data-2 	 2000000	        66.00 ns/op	        66.00 ns/pkt
BenchmarkTCPHealth/on/ipv4-tcp-data-2  	 2000000	        80.00 ns/op	        80.00 ns/pkt
BenchmarkSampling/1-in-100-2           	 2000000	        63.00 ns/op	        63.00 ns/pkt	         0 lost/sample
`

func mustParse(t *testing.T, s string) *round {
	t.Helper()
	rd, err := parseRound(strings.NewReader(s), 2)
	if err != nil {
		t.Fatal(err)
	}
	return rd
}

func TestParseRound(t *testing.T) {
	rd := mustParse(t, round0)
	if v, ok := rd.ns("ExistingFlowFrags/ipv4-udp-8928"); !ok || v != 80 {
		t.Errorf("ExistingFlowFrags/ipv4-udp-8928 = %v, %v: want 80 (only the -2 of -test.cpu removed)", v, ok)
	}
	if got := rd.metrics["Sampling/1-in-100"]["lost/sample"]; got != 0 {
		t.Errorf("lost/sample = %v", got)
	}
	if _, ok := rd.metrics["Sampling/1-in-100"]["lost/sample"]; !ok {
		t.Error("lost/sample not parsed")
	}
	if !slices.Equal(rd.failed, []string{"MillionFlows/Hash", "NewFlowFreshTable"}) {
		t.Errorf("failed = %v, want [MillionFlows/Hash NewFlowFreshTable]", rd.failed)
	}
	if _, ok := rd.ns("Drain"); ok {
		t.Error("Drain has no ns/pkt")
	}
	if rd.order[0] != "EmptyProgram" || len(rd.order) != 9 {
		t.Errorf("order = %v", rd.order)
	}
	// With -test.cpu 1 Go adds no suffix: a name's own digits stay.
	one, err := parseRound(strings.NewReader("BenchmarkExistingFlowFrags/ipv4-udp-8928 \t 100 \t 80.00 ns/pkt\n"), 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := one.ns("ExistingFlowFrags/ipv4-udp-8928"); !ok {
		t.Errorf("-test.cpu 1: rows %v", one.order)
	}
	if _, err := parseRound(strings.NewReader("BenchmarkX-2 \t 100 \t abc ns/pkt\n"), 2); err == nil {
		t.Error("a value that is not a number: no error")
	}
}

func TestSummarize(t *testing.T) {
	rows := summarize([]*round{mustParse(t, round0), mustParse(t, round1)}, "EmptyProgram")
	by := map[string]rowStats{}
	for _, r := range rows {
		by[r.name] = r
	}
	var names []string
	for _, r := range rows {
		names = append(names, r.name)
	}
	// The floor first, the paths in pathOrder (Sampling before
	// ExistingFlowFrags ran), each path's rows as they ran.
	if want := []string{"EmptyProgram", "ExistingFlow/Hash/ipv4-tcp", "ExistingFlow/Hash/vxlan-x3", "ExistingFlow/Hash/vxlan-outer",
		"ExistingFlowFrags/ipv4-udp-8928", "TCPHealth/off/ipv4-tcp-data", "TCPHealth/on/ipv4-tcp-data", "Sampling/1-in-100"}; !slices.Equal(names, want) {
		t.Errorf("rows %v, want %v", names, want)
	}
	near := func(got, want float64) bool { return got > want-1e-9 && got < want+1e-9 }
	// Within each round: 50-10=40 and 62-20=42; ratios 5 and 3.1.
	e := by["ExistingFlow/Hash/ipv4-tcp"]
	if !near(e.above.med, 41) || !near(e.above.lo, 40) || !near(e.above.hi, 42) {
		t.Errorf("above the floor %+v, want 41 (40–42)", e.above)
	}
	if !near(e.ratio.med, 4.05) || !near(e.ratio.lo, 3.1) {
		t.Errorf("ratio %+v, want median 4.05, least 3.1 (per round, not 56/15)", e.ratio)
	}
	if e.hasBase {
		t.Errorf("a plain row compared with %v", e.base)
	}
	// Three levels: (95-50)/3 = 15, (98-62)/3 = 12.
	x3 := by["ExistingFlow/Hash/vxlan-x3"]
	if x3.base != (against{"ExistingFlow/Hash/ipv4-tcp", 3}) || !near(x3.over.med, 13.5) || !near(x3.over.lo, 12) {
		t.Errorf("vxlan-x3: against %v, per level %+v; want ipv4-tcp, 3 levels, 13.5 (12–15)", x3.base, x3.over)
	}
	// An outer view: the plain difference, 5 and -2.
	if o := by["ExistingFlow/Hash/vxlan-outer"]; o.base.levels != 0 || !near(o.over.med, 1.5) || !near(o.over.lo, -2) {
		t.Errorf("vxlan-outer: %v %+v, want 0 levels, 1.5 (-2–5)", o.base, o.over)
	}
	if h := by["TCPHealth/on/ipv4-tcp-data"]; h.base.row != "TCPHealth/off/ipv4-tcp-data" || !near(h.over.med, 12) {
		t.Errorf("TCP health on: against %v, %+v, want off, 12", h.base, h.over)
	}
	if s := by["Sampling/1-in-100"]; s.base.row != "ExistingFlow/Hash/ipv4-tcp" || !near(s.over.med, 2) {
		t.Errorf("sampling: against %v, %+v, want ExistingFlow/Hash/ipv4-tcp, 2", s.base, s.over)
	}
	// Only in round 0, and no plain row to compare with.
	if j := by["ExistingFlowFrags/ipv4-udp-8928"]; j.ns.n != 1 || j.hasBase {
		t.Errorf("jumbo: %d rounds, base %v", j.ns.n, j.base)
	}
	if _, ok := by["Drain"]; ok {
		t.Error("Drain (no ns/pkt) in the table")
	}
	if got := withRange(spread{med: 1.5, lo: -2, hi: 5}, signed); got != "+1.5 (−2..+5)" {
		t.Errorf("withRange = %q", got)
	}
	var b strings.Builder
	writeTable(&b, rows, report{floor: "EmptyProgram", rounds: 2})
	if !strings.Contains(b.String(), "| `ExistingFlow/Hash/vxlan-x3` | 96.5 | 81.5 (78..85) | 7.20x (4.90..9.50) | `ExistingFlow/Hash/ipv4-tcp`, 3 levels | +13.5 (+12..+15) |") {
		t.Errorf("table:\n%s", b.String())
	}
}

// The other naming, one table design and no map type per row
// ("ExistingFlow/vxlan"): the base is found all the same.
func TestBaseOfWithoutMapType(t *testing.T) {
	rows := map[string]bool{"ExistingFlow/ipv4-tcp": true, "ExistingFlow/ipv6-udp": true, "NewFlow": true}
	for row, want := range map[string]against{
		"ExistingFlow/ipv6-in-ipv4":  {"ExistingFlow/ipv6-udp", 1},
		"ExistingFlowFrags/vlan-tcp": {},
		"ExistingFlowFrags/ipv4-tcp": {"ExistingFlow/ipv4-tcp", 1},
		"NewFlowLocalNets":           {"NewFlow", 1},
	} {
		got, ok := baseOf(row, rows)
		if got != want || ok != (want.row != "") {
			t.Errorf("baseOf(%s) = %v, %v; want %v", row, got, ok, want)
		}
	}
}

// TestEncapRowsMatchBenchmarks reads encapBenchFrames in bpf/bench_test.go:
// every row there must be in encapRows with the same plain frame and
// levels, and no other.
func TestEncapRowsMatchBenchmarks(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "../../../bpf/bench_test.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		fd, ok := n.(*ast.FuncDecl)
		if !ok || fd.Name.Name != "encapBenchFrames" {
			return true
		}
		ast.Inspect(fd.Body, func(n ast.Node) bool {
			cl, ok := n.(*ast.CompositeLit)
			if !ok || len(cl.Elts) < 5 {
				return true
			}
			// {name, cfg, frame, plain, levels, tunnel, mirror}
			name, ok1 := stringLit(cl.Elts[0])
			plain, ok2 := stringLit(cl.Elts[3])
			lv, ok3 := cl.Elts[4].(*ast.BasicLit)
			if !ok1 || !ok2 || !ok3 || lv.Kind != token.INT {
				return true
			}
			levels, _ := strconv.Atoi(lv.Value)
			seen[name] = true
			if e, ok := encapRows[name]; !ok || e.plain != plain || e.levels != levels {
				t.Errorf("bpf/bench_test.go has %s: %s, %d levels; encapRows has %+v (ok %v)", name, plain, levels, e, ok)
			}
			return false
		})
		return false
	})
	if len(seen) == 0 {
		t.Fatal("no rows found in encapBenchFrames: has its literal changed shape?")
	}
	for name := range encapRows {
		if !seen[name] {
			t.Errorf("encapRows has %s, bpf/bench_test.go does not", name)
		}
	}
}

func stringLit(e ast.Expr) (string, bool) {
	bl, ok := e.(*ast.BasicLit)
	if !ok || bl.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(bl.Value)
	return s, err == nil
}

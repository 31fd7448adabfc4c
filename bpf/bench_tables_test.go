package bpf

import (
	"os"
	"strconv"
	"testing"

	"github.com/xdpflow/xdpflow/bpf/bpftest"
)

// Issue #16: the real program's per-packet work over other flow table
// designs (bpf/testdata/tables.c, loaded by bpf/bpftest), on the paths the
// real program's benchmarks measure. Run it with EmptyProgram and those
// rows in the same process: docs/benchmarks-history.md, "Table designs measured
// for issue #16", has the command and the figures.

type designRow struct {
	name string
	cfg  bpftest.TablesConfig
	// Which paths: existing IPv4/TCP, existing IPv6/UDP, new flows,
	// 1M flows cycling.
	e4, e6, newFlow, million bool
}

func designRows() []designRow {
	const (
		hash    = bpftest.DesignHash
		compact = bpftest.DesignCompact
		oa      = bpftest.DesignOA
	)
	return []designRow{
		{"hash", bpftest.TablesConfig{Design: hash}, true, true, true, true},
		{"hash-168", bpftest.TablesConfig{Design: hash, Value168: true}, true, false, true, true},
		{"hash-percpu", bpftest.TablesConfig{Design: hash, PerCPU: true}, true, false, true, true},
		{"hash-lean", bpftest.TablesConfig{Design: hash, Lean: true}, true, false, false, false},
		{"hash-noclock", bpftest.TablesConfig{Design: hash, NoClock: true}, true, false, false, false},
		{"compact", bpftest.TablesConfig{Design: compact}, true, false, true, true},
		{"oa", bpftest.TablesConfig{Design: oa}, true, true, true, true},
		{"oa-168", bpftest.TablesConfig{Design: oa, Value168: true}, true, false, true, true},
		{"oa-percpu", bpftest.TablesConfig{Design: oa, PerCPU: true}, true, false, true, true},
		{"oa-lean", bpftest.TablesConfig{Design: oa, Lean: true}, true, false, false, false},
		{"oa-noclock", bpftest.TablesConfig{Design: oa, NoClock: true}, true, false, false, false},
		{"oa-lean-noclock", bpftest.TablesConfig{Design: oa, Lean: true, NoClock: true}, true, false, true, true},
		{"oa-percpu-lean-noclock", bpftest.TablesConfig{Design: oa, PerCPU: true, Lean: true, NoClock: true}, true, false, false, false},
	}
}

// BenchmarkTableDesigns runs each design on existing/<row> (one flow in
// the table, ipv4-tcp; existing6 ipv6-udp), new/<row> (every packet a new
// flow, the tables rotated and drained between chunks: the probe's steady
// state, as NewFlow) and million/<row> (1M live flows cycling, as
// MillionFlows). XDPFLOW_BENCH_ROTATE=r starts each path's rows at the r-th,
// so that rounds can alternate the order.
func BenchmarkTableDesigns(b *testing.B) {
	rows := designRows()
	if r, err := strconv.Atoi(os.Getenv("XDPFLOW_BENCH_ROTATE")); err == nil {
		r %= len(rows)
		rows = append(rows[r:], rows[:r]...)
	}
	frames := benchFrames()
	paths := []struct {
		name string
		on   func(designRow) bool
		run  func(*testing.B, bpftest.TablesConfig)
	}{
		{"existing", func(r designRow) bool { return r.e4 }, func(b *testing.B, cfg bpftest.TablesConfig) {
			tb := loadTables(b, cfg)
			measure(b, tb.Program, frames["ipv4-tcp"], 1<<30, nil)
		}},
		{"existing6", func(r designRow) bool { return r.e6 }, func(b *testing.B, cfg bpftest.TablesConfig) {
			tb := loadTables(b, cfg)
			measure(b, tb.Program, frames["ipv6-udp"], 1<<30, nil)
		}},
		{"new", func(r designRow) bool { return r.newFlow }, func(b *testing.B, cfg bpftest.TablesConfig) {
			pinCPU(b)
			cfg.BenchFlows = 1<<32 - 1
			tb := loadTables(b, cfg)
			measure(b, tb.Program, frames["ipv4-tcp"], benchChunk, func() {
				if err := tb.Rotate(); err != nil {
					b.Fatal(err)
				}
				if err := tb.Drain(func(bpftest.Flow) {}); err != nil {
					b.Fatal(err)
				}
			})
			checkFailed(b, tb)
		}},
		{"million", func(r designRow) bool { return r.million }, func(b *testing.B, cfg bpftest.TablesConfig) {
			const flows = 1 << 20
			pinCPU(b)
			cfg.MaxFlows, cfg.BenchFlows = flows, flows
			tb := loadTables(b, cfg)
			if _, _, err := tb.Program.Benchmark(frames["ipv4-tcp"], flows, nil); err != nil { // fill
				b.Fatal(err)
			}
			b.ResetTimer()
			measure(b, tb.Program, frames["ipv4-tcp"], 1<<30, nil)
			checkFailed(b, tb)
			mem, err := tb.Memlock()
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(mem)/flows, "B/flow") // both generations
		}},
	}
	for _, p := range paths {
		for _, r := range rows {
			if !p.on(r) {
				continue
			}
			b.Run(p.name+"/"+r.name, func(b *testing.B) {
				if b.N == 1 && p.name != "existing" && p.name != "existing6" {
					// The framework's first call, before the -benchtime
					// count: not worth creating 1M-flow tables for.
					return
				}
				cfg := r.cfg
				cfg.MaxFlows = DefaultMaxFlows
				p.run(b, cfg)
			})
		}
	}
}

// checkFailed fails a benchmark whose table turned packets away: it would
// have measured a full table, not the design.
func checkFailed(b *testing.B, tb *bpftest.Tables) {
	b.Helper()
	st, err := tb.Stats()
	if err != nil {
		b.Fatal(err)
	}
	if st.UpdateFailedPackets != 0 {
		b.Fatalf("%d packets found no slot", st.UpdateFailedPackets)
	}
}

// BenchmarkTableDesignsDrain is BenchmarkDrain for the designs: 200,000
// flows a table of DefaultMaxFlows, one op a flow read and cleared. An
// open-addressing drain reads the whole array through its memory mapping
// (the state word of each of its 2 x DefaultMaxFlows slots) and zeroes the
// used slots.
func BenchmarkTableDesignsDrain(b *testing.B) {
	for _, r := range designRows() {
		if r.name != "hash" && r.name != "oa" {
			continue
		}
		b.Run(r.name, func(b *testing.B) {
			pinCPU(b)
			cfg := r.cfg
			cfg.MaxFlows, cfg.BenchFlows = DefaultMaxFlows, 1<<32-1
			tb := loadTables(b, cfg)
			frame := benchFrames()["ipv4-tcp"]
			b.ResetTimer()
			drained := 0
			for left := b.N; left > 0; {
				n := min(left, 200000)
				b.StopTimer()
				if _, _, err := tb.Program.Benchmark(frame, n, nil); err != nil {
					b.Fatal(err)
				}
				if err := tb.Rotate(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if err := tb.Drain(func(bpftest.Flow) { drained++ }); err != nil {
					b.Fatal(err)
				}
				left -= n
			}
			b.StopTimer()
			if drained < b.N { // an interrupted test run repeats packets: more flows
				b.Fatalf("drained %d flows, want %d", drained, b.N)
			}
			b.ReportMetric(float64(drained)/b.Elapsed().Seconds(), "flows/s")
		})
	}
}

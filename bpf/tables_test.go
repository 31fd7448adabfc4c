package bpf

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/xdpflow/xdpflow/bpf/bpftest"
)

// The issue #16 table designs (bpf/testdata/tables.c) must count what the
// real program counts, so that their benchmarks measure correct designs.

func loadTables(t testing.TB, cfg bpftest.TablesConfig) *bpftest.Tables {
	t.Helper()
	tb, err := bpftest.LoadTables(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tb.Close() })
	return tb
}

// drainTables rotates and drains, adding up the slots of a key met more
// than once (allowed with dups: per-CPU open addressing holds a flow once
// per CPU, and shared open addressing may when a claimer stalled); it
// returns how many slots were merged so.
func drainTables(t testing.TB, tb *bpftest.Tables, dups bool) (map[[bpftest.KeySize]byte]bpftest.Flow, int) {
	t.Helper()
	if err := tb.Rotate(); err != nil {
		t.Fatal(err)
	}
	got := map[[bpftest.KeySize]byte]bpftest.Flow{}
	merged := 0
	err := tb.Drain(func(f bpftest.Flow) {
		if o, ok := got[f.Key]; ok {
			merged++
			if !dups {
				t.Errorf("key %x drained twice", f.Key)
			}
			f.Packets += o.Packets
			f.Bytes += o.Bytes
			f.L2Bytes += o.L2Bytes
			f.TCPFlags |= o.TCPFlags
		}
		got[f.Key] = f
	})
	if err != nil {
		t.Fatal(err)
	}
	return got, merged
}

func tablesIdentity(t testing.TB, s bpftest.Stats) {
	t.Helper()
	var malformed uint64
	for _, m := range s.Malformed {
		malformed += m
	}
	if sum := s.NonIp + malformed + s.FlowPackets + s.UpdateFailedPackets; sum != s.Packets {
		t.Errorf("stats do not add up: %d frames, non-IP %d + malformed %d + in flows %d + failed %d = %d",
			s.Packets, s.NonIp, malformed, s.FlowPackets, s.UpdateFailedPackets, sum)
	}
}

var tableDesigns = map[string]bpftest.TablesConfig{
	"hash":        {Design: bpftest.DesignHash},
	"hash-percpu": {Design: bpftest.DesignHash, PerCPU: true},
	"hash-168":    {Design: bpftest.DesignHash, Value168: true},
	"compact":     {Design: bpftest.DesignCompact},
	"oa":          {Design: bpftest.DesignOA},
	"oa-percpu":   {Design: bpftest.DesignOA, PerCPU: true},
	"oa-168":      {Design: bpftest.DesignOA, Value168: true},
	"oa-lean":     {Design: bpftest.DesignOA, Lean: true, NoClock: true},
}

// Every design counts a small mix as the real program does.
func TestTableDesignsCount(t *testing.T) {
	e4 := eth(layers.EthernetTypeIPv4)
	mix := []sent{
		{build(e4, ipv4(layers.IPProtocolTCP), tcp(1, 2, tSYN), payload(10)), 3},
		{build(e4, ipv4(layers.IPProtocolTCP), tcp(1, 2, tFIN)), 1},
		{build(eth(layers.EthernetTypeIPv4, 7), ipv4(layers.IPProtocolUDP), udp(5, 53)), 2},
		{build(eth(layers.EthernetTypeIPv6), ipv6(layers.IPProtocolUDP), udp(40000, 53), payload(3)), 2},
		{build(eth(layers.EthernetTypeARP), payload(28)), 1},                   // non-IP
		{build(e4, ipv4(layers.IPProtocolTCP), tcp(1, 2, tACK))[:14+20+10], 1}, // ipv4_bad_length
	}
	d := load(t, Config{MaxFlows: 64})
	for _, s := range mix {
		for range s.times {
			run(t, d.Program, s.frame)
		}
	}
	want := map[[bpftest.KeySize]byte]FlowValue{}
	for k, v := range drainAll(t, d) {
		want[*(*[bpftest.KeySize]byte)(unsafe.Pointer(&k))] = v
	}
	for name, cfg := range tableDesigns {
		t.Run(name, func(t *testing.T) {
			cfg.MaxFlows = 64
			tb := loadTables(t, cfg)
			for _, s := range mix {
				for range s.times {
					run(t, tb.Program, s.frame)
				}
			}
			got, _ := drainTables(t, tb, cfg.PerCPU)
			if len(got) != len(want) {
				t.Errorf("%d flows, want %d", len(got), len(want))
			}
			for k, w := range want {
				g := got[k]
				if g.Packets != w.Packets || g.Bytes != w.Bytes || g.L2Bytes != w.L2Bytes || g.TCPFlags != w.TcpFlags {
					t.Errorf("flow %x: %d packets %d bytes %d L2 flags %#x; want %d %d %d %#x",
						k, g.Packets, g.Bytes, g.L2Bytes, g.TCPFlags, w.Packets, w.Bytes, w.L2Bytes, w.TcpFlags)
				}
			}
			st, err := tb.Stats()
			if err != nil {
				t.Fatal(err)
			}
			if st.NonIp != 1 || st.Malformed[xdpflowMalformedReasonMALFORMED_IPV4BAD_LENGTH] != 1 || st.NewFlows != uint64(len(want)) {
				t.Errorf("stats %+v: want 1 non-IP, 1 ipv4_bad_length, %d new flows", st, len(want))
			}
			if !cfg.Lean {
				tablesIdentity(t, st)
			}
		})
	}
}

// onCPU runs fn on a thread pinned to cpu.
func onCPU(t testing.TB, cpu int, fn func()) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var set, old unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		t.Error(err)
		return
	}
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		t.Error(err)
		return
	}
	defer unix.SchedSetaffinity(0, &old)
	fn()
}

// repeat runs the frame n times in one BPF_PROG_TEST_RUN.
func repeat(t testing.TB, p *ebpf.Program, frame []byte, n int) {
	if _, _, err := p.Benchmark(frame, n, nil); err != nil {
		t.Error(err)
	}
}

// ranAsSent skips a case whose packets were not run exactly as sent: a
// signal interrupts BPF_PROG_TEST_RUN (EINTR) after some runs, and the
// library runs the whole repeat again.
func ranAsSent(t *testing.T, st bpftest.Stats, sent uint64) {
	t.Helper()
	if st.Packets != sent {
		t.Skipf("the program ran %d times for %d packets sent: a test run was interrupted and repeated", st.Packets, sent)
	}
}

// Open addressing counts exactly: N distinct flows x M packets in, each
// flow drained once with exactly M packets; past its capacity, every
// packet without a slot is counted as failed; two CPUs creating the same
// flows at once make each once; a rotation while the other CPU writes
// loses nothing and never shows a half-written slot.
func TestOpenAddressingExact(t *testing.T) {
	frame := benchFrames()["ipv4-tcp"]
	frame6 := benchFrames()["ipv6-udp"]
	const l3, l3v6, l2 = 40, 48, 64

	t.Run("distinct", func(t *testing.T) {
		const n, m = 4096, 5
		tb := loadTables(t, bpftest.TablesConfig{Design: bpftest.DesignOA, MaxFlows: n * 2, BenchFlows: n})
		onCPU(t, 0, func() {
			repeat(t, tb.Program, frame, n*m)
			repeat(t, tb.Program, frame6, n*m)
		})
		got, _ := drainTables(t, tb, false)
		st, _ := tb.Stats()
		ranAsSent(t, st, 2*n*m)
		if len(got) != 2*n {
			t.Fatalf("%d flows, want %d", len(got), 2*n)
		}
		for k, f := range got {
			want := uint64(l3)
			if k[10] != 0xff {
				want = l3v6
			}
			if f.Packets != m || f.Bytes != m*want || f.L2Bytes != m*l2 {
				t.Fatalf("flow %x: %+v, want %d packets", k, f, m)
			}
		}
		if st.NewFlows != 2*n || st.FlowPackets != 2*n*m || st.UpdateFailedPackets != 0 {
			t.Errorf("stats %+v: want %d new flows, %d packets in flows, none failed", st, 2*n, 2*n*m)
		}
		tablesIdentity(t, st)
	})

	t.Run("full", func(t *testing.T) {
		// 32 home slots and the window's 127: 159 slots for 1000 flows.
		const maxFlows, n, m = 16, 1000, 2
		slots := maxFlows*bpftest.OAHomePerFlow + bpftest.OAWindow - 1
		tb := loadTables(t, bpftest.TablesConfig{Design: bpftest.DesignOA, MaxFlows: maxFlows, BenchFlows: n})
		onCPU(t, 0, func() { repeat(t, tb.Program, frame, n*m) })
		got, _ := drainTables(t, tb, false)
		st, _ := tb.Stats()
		ranAsSent(t, st, n*m)
		for k, f := range got {
			if f.Packets != m {
				t.Errorf("flow %x: %d packets, want %d", k, f.Packets, m)
			}
		}
		if len(got) != slots || st.NewFlows != uint64(slots) || st.FlowPackets != uint64(m*slots) ||
			st.UpdateFailedPackets != uint64(m*(n-slots)) || st.UpdateFailedBytes != uint64(l3*m*(n-slots)) {
			t.Errorf("%d flows, stats %+v; want every one of %d slots used, %d packets failed",
				len(got), st, slots, m*(n-slots))
		}
		tablesIdentity(t, st)
	})

	if runtime.NumCPU() < 2 {
		t.Log("one CPU: the concurrent cases are skipped")
		return
	}
	for _, perCPU := range []bool{false, true} {
		t.Run(fmt.Sprintf("two-cpus/percpu=%v", perCPU), func(t *testing.T) {
			// Both CPUs walk the same flows in the same order: their first
			// packets race for the same slots.
			const n, m = 8192, 4
			tb := loadTables(t, bpftest.TablesConfig{Design: bpftest.DesignOA, PerCPU: perCPU, MaxFlows: n, BenchFlows: n})
			var wg sync.WaitGroup
			for cpu := range 2 {
				wg.Go(func() { onCPU(t, cpu, func() { repeat(t, tb.Program, frame, n*m) }) })
			}
			wg.Wait()
			got, merged := drainTables(t, tb, true)
			st, _ := tb.Stats()
			ranAsSent(t, st, 2*n*m)
			if len(got) != n {
				t.Errorf("%d flows, want %d", len(got), n)
			}
			for k, f := range got {
				if f.Packets != 2*m || f.Bytes != 2*m*l3 {
					t.Fatalf("flow %x: %d packets %d bytes, want %d, %d (stats %+v)", k, f.Packets, f.Bytes, 2*m, 2*m*l3, st)
				}
			}
			// Per-CPU: one slot per flow and CPU. Shared: a second slot
			// only where a claimer stalled past the wait (rare).
			if perCPU && merged != n || !perCPU && merged > n/100 {
				t.Errorf("%d flows had a second slot", merged)
			}
			if merged > 0 && !perCPU {
				t.Logf("%d of %d flows took a second slot", merged, n)
			}
			if st.NewFlows != uint64(n+merged) || st.UpdateFailedPackets != 0 || st.FlowPackets != 2*n*m {
				t.Errorf("stats %+v: want %d slots taken, none failed", st, n+merged)
			}
			tablesIdentity(t, st)
		})
	}

	t.Run("rotate-under-load", func(t *testing.T) {
		// CPU 1 writes flows while CPU 0 rotates and drains: each drain
		// must find no half-written slot, and all of them together every
		// packet the program counted.
		const n, per, rotations = 2048, 5000, 12
		tb := loadTables(t, bpftest.TablesConfig{Design: bpftest.DesignOA, MaxFlows: n, BenchFlows: n})
		var stop atomic.Bool
		done := make(chan struct{})
		go func() {
			defer close(done)
			onCPU(t, 1, func() {
				for !stop.Load() {
					repeat(t, tb.Program, frame, per)
				}
			})
		}()
		var drained uint64
		drain := func() {
			got, _ := drainTables(t, tb, true)
			for _, f := range got {
				drained += f.Packets
			}
		}
		onCPU(t, 0, func() {
			for range rotations {
				drain()
			}
		})
		stop.Store(true)
		<-done
		drain() // the generation in service when the writer stopped
		// Against the program's own count: an interrupted test run is
		// run again, so it may have seen more than was sent.
		st, _ := tb.Stats()
		if drained != st.Packets || st.FlowPackets != st.Packets || st.UpdateFailedPackets != 0 {
			t.Errorf("drained %d packets; the program ran %d times, counted %d in flows, %d failed",
				drained, st.Packets, st.FlowPackets, st.UpdateFailedPackets)
		}
		t.Logf("%d packets in %d rotations", st.Packets, rotations+1)
	})
}

package bpf

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// The open-addressing tables under concurrency, in the real program.

// drainMerged rotates and drains d, adding up the slots of a key met more
// than once (a flow takes a second slot where its first packet's writer
// stalled past the wait, see oa_window in xdpflow.c); it returns how many
// slots were merged so.
func drainMerged(t testing.TB, d *Datapath) (map[FlowKey]FlowValue, int) {
	t.Helper()
	old, err := d.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	got := map[FlowKey]FlowValue{}
	merged := 0
	if err := d.Drain(old, func(k FlowKey, v FlowValue) {
		if o, ok := got[k]; ok {
			merged++
			v.Merge(o)
		}
		got[k] = v
	}); err != nil {
		t.Fatal(err)
	}
	return got, merged
}

// ranAsSentDP skips a case whose packets were not run exactly as sent: a
// signal interrupts BPF_PROG_TEST_RUN (EINTR) after some runs, and the
// library runs the whole repeat again.
func ranAsSentDP(t *testing.T, st Stats, sent uint64) {
	t.Helper()
	if st.Packets != sent {
		t.Skipf("the program ran %d times for %d packets sent: a test run was interrupted and repeated", st.Packets, sent)
	}
}

func TestOpenAddressingConcurrent(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("one CPU: nothing runs concurrently")
	}
	frame := benchFrames()["ipv4-tcp"]
	const l3 = 40

	t.Run("two-cpus", func(t *testing.T) {
		// Both CPUs walk the same flows in the same order: their first
		// packets race for the same slots.
		const n, m = 8192, 4
		d := load(t, Config{MaxFlows: n, benchFlows: n})
		var wg sync.WaitGroup
		for cpu := range 2 {
			wg.Go(func() { onCPU(t, cpu, func() { repeat(t, d.Program, frame, n*m) }) })
		}
		wg.Wait()
		got, merged := drainMerged(t, d)
		st, _ := d.Stats()
		ranAsSentDP(t, st, 2*n*m)
		if len(got) != n {
			t.Errorf("%d flows, want %d", len(got), n)
		}
		for k, f := range got {
			if f.Packets != 2*m || f.Bytes != 2*m*l3 {
				t.Fatalf("flow %v: %d packets %d bytes, want %d, %d (stats %+v)", k, f.Packets, f.Bytes, 2*m, 2*m*l3, st)
			}
		}
		// A second slot only where a claimer stalled past the wait.
		if merged > n/100 {
			t.Errorf("%d flows had a second slot", merged)
		}
		if st.NewFlows != uint64(n+merged) || st.UpdateFailedPackets != 0 || st.FlowPackets != 2*n*m {
			t.Errorf("stats %+v: want %d slots taken, none failed", st, n+merged)
		}
		checkIdentity(t, st)
	})

	t.Run("rotate-under-load", func(t *testing.T) {
		// CPU 1 writes flows while CPU 0 rotates and drains: each drain
		// must find no half-written slot (Drain fails on a BUSY one), and
		// all of them together every packet the program counted.
		const n, per, rotations = 2048, 5000, 12
		d := load(t, Config{MaxFlows: n, benchFlows: n, TCPHealth: true})
		var stop atomic.Bool
		done := make(chan struct{})
		go func() {
			defer close(done)
			onCPU(t, 1, func() {
				for !stop.Load() {
					repeat(t, d.Program, frame, per)
				}
			})
		}()
		var drained uint64
		drain := func() {
			got, _ := drainMerged(t, d)
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
		drain() // the table in service when the writer stopped
		// Against the program's own count: an interrupted test run is
		// run again, so it may have seen more than was sent.
		st, _ := d.Stats()
		if drained != st.Packets || st.FlowPackets != st.Packets || st.UpdateFailedPackets != 0 {
			t.Errorf("drained %d packets; the program ran %d times, counted %d in flows, %d failed",
				drained, st.Packets, st.FlowPackets, st.UpdateFailedPackets)
		}
		t.Logf("%d packets in %d rotations", st.Packets, rotations+1)
	})
}

// TestCloseUnmapsTables: Close releases the tables' memory mappings, or a
// process that loads datapaths again and again (the benchmarks, a probe
// whose restarts reload) keeps every table alive until it exits.
func TestCloseUnmapsTables(t *testing.T) {
	d := load(t, Config{MaxFlows: 1024})
	page := uint64(os.Getpagesize())
	size := (uint64(d.tables[0].MaxEntries())*uint64(d.tables[0].ValueSize()) + page - 1) / page * page
	// Mappings of a BPF map of the tables' size (cilium maps the
	// program's small data sections too, and unmaps them lazily).
	tables := func() int {
		b, err := os.ReadFile("/proc/self/maps")
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, l := range strings.Split(string(b), "\n") {
			var lo, hi uint64
			if strings.Contains(l, "anon_inode:bpf-map") {
				if _, err := fmt.Sscanf(l, "%x-%x", &lo, &hi); err == nil && hi-lo == size {
					n++
				}
			}
		}
		return n
	}
	if n := tables(); n != 2 {
		t.Fatalf("%d mappings of %d bytes with a datapath loaded: want its two tables", n, size)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if n := tables(); n != 0 {
		t.Errorf("%d mappings of %d bytes after Close: want none", n, size)
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

package main

// Per-probe CPU accounting: what each probe adds on the receiving side per
// packet, without the sender.
//
//   - xdpflow-probe: its XDP program's run time as the kernel accounts it
//     (BPF_ENABLE_STATS(BPF_STATS_RUN_TIME), held for the whole benchmark:
//     run_time_ns and run_cnt of the program attached to B), plus the
//     probe process's utime+stime.
//   - softflowd: its process's utime+stime, plus the kernel's cost of
//     delivering frames into its AF_PACKET socket, taken as the softirq
//     time (/proc/stat) of the softflowd run minus that of the no-probe
//     baseline: with the xdp sender, B's NAPI runs in softirq, and the
//     sender does not.
//
// With --pin the sender threads (and this program) run on CPU 1, B's veth
// NAPI runs in a kernel thread (threaded NAPI) pinned to CPU 0 with the
// probe process, and CPU 0's busy time is measured as well (per million
// frames B received).

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xdpflow/xdpflow/internal/cmd/benchproc"
	"github.com/xdpflow/xdpflow/internal/cmd/benchstat"
	"github.com/xdpflow/xdpflow/internal/testkit/testnet"
)

// cpuTimes from /proc/stat, in USER_HZ ticks.
type cpuTimes struct {
	at      time.Time
	busy    uint64   // whole system: user+nice+system+irq+softirq
	softirq uint64   // whole system
	cpuIdle []uint64 // idle+iowait+steal per CPU, by CPU number
}

// cpuBusy is how long cpu was busy between t0 and t1, in seconds: the
// time between the reads minus its idle (and iowait and steal) time. The
// kernel measures idle time exactly (NO_HZ) but samples busy time at each
// tick, which misses short bursts between idle periods with the tick
// stopped (B's NAPI thread woken for each batch).
func cpuBusy(t0, t1 cpuTimes, cpu int) float64 {
	return t1.at.Sub(t0.at).Seconds() - float64(t1.cpuIdle[cpu]-t0.cpuIdle[cpu])/benchproc.UserHZ
}

func readCPUTimes() (cpuTimes, error) {
	t := cpuTimes{at: time.Now()}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return t, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 || !strings.HasPrefix(f[0], "cpu") {
			continue
		}
		var v [9]uint64
		for i := 1; i < len(v) && i < len(f); i++ {
			if v[i], err = strconv.ParseUint(f[i], 10, 64); err != nil {
				return t, fmt.Errorf("/proc/stat: %q: %w", line, err)
			}
		}
		busy := v[1] + v[2] + v[3] + v[6] + v[7] // user nice system [idle iowait] irq softirq
		if f[0] == "cpu" {
			t.busy, t.softirq = busy, v[7]
			continue
		}
		n, err := strconv.Atoi(f[0][3:])
		if err != nil {
			return t, fmt.Errorf("/proc/stat: %q", line)
		}
		for len(t.cpuIdle) <= n {
			t.cpuIdle = append(t.cpuIdle, 0)
		}
		t.cpuIdle[n] = v[4] + v[5] + v[8] // idle iowait steal
	}
	if t.busy == 0 {
		return t, fmt.Errorf("/proc/stat: no cpu line")
	}
	return t, nil
}

// enableBPFStats turns on the kernel's run time accounting of BPF programs
// (what sysctl kernel.bpf_stats_enabled=1 does) for as long as the
// returned closer is open; it also ends when this process exits.
func enableBPFStats() (func(), error) {
	c, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return nil, fmt.Errorf("BPF_ENABLE_STATS (run time of the XDP programs): %w", err)
	}
	return func() { c.Close() }, nil
}

// progStats is the run time accounting of the XDP program attached to B
// (ok false when none is attached).
type progStats struct {
	ok      bool
	id      ebpf.ProgramID
	runtime time.Duration
	runs    uint64
}

func readProgStats(pair *testnet.Pair) (progStats, error) {
	var s progStats
	h, err := netlink.NewHandleAt(pair.B)
	if err != nil {
		return s, err
	}
	defer h.Close()
	l, err := h.LinkByName(pair.LinkB)
	if err != nil {
		return s, err
	}
	x := l.Attrs().Xdp
	if x == nil || !x.Attached || x.ProgId == 0 {
		return s, nil
	}
	prog, err := ebpf.NewProgramFromID(ebpf.ProgramID(x.ProgId))
	if err != nil {
		return s, fmt.Errorf("XDP program %d on %s: %w", x.ProgId, pair.LinkB, err)
	}
	defer prog.Close()
	st, err := prog.Stats()
	if err != nil {
		return s, fmt.Errorf("XDP program %d: stats: %w", x.ProgId, err)
	}
	return progStats{ok: true, id: ebpf.ProgramID(x.ProgId), runtime: st.Runtime, runs: st.RunCount}, nil
}

// The CPUs of --pin.
const (
	rxCPU   = 0 // B's NAPI thread and the probe process
	sendCPU = 1 // the senders and this program (collector included)
)

// pinSenderThread pins the calling (locked) thread to sendCPU under --pin.
func pinSenderThread(cfg *config) error {
	if !cfg.pin {
		return nil
	}
	if err := unix.SchedSetaffinity(0, benchproc.CPUSet(sendCPU)); err != nil {
		return fmt.Errorf("pin sender to CPU %d: %w", sendCPU, err)
	}
	return nil
}

// pinArgs prefixes a probe's command line with taskset under --pin
// (taskset and `ip netns exec` both exec in place: the pid is the probe's).
func pinArgs(cfg *config, argv []string) []string {
	if !cfg.pin {
		return argv
	}
	return append([]string{"taskset", "-c", strconv.Itoa(rxCPU)}, argv...)
}

// enableThreadedNAPI makes B's veth NAPI run in a kernel thread
// (napi/<B>-<id>) instead of softirq on the sending CPU, so that it can be
// pinned to rxCPU (pinNAPI).
func enableThreadedNAPI(pair *testnet.Pair) error {
	out, err := exec.Command("ip", "netns", "exec", pair.NsName("b"), "sh", "-c",
		fmt.Sprintf("echo 1 > /sys/class/net/%s/threaded", pair.LinkB)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("threaded NAPI on %s: %v: %s", pair.LinkB, err, out)
	}
	return nil
}

// napiThreads are the pids of B's NAPI kernel threads.
func napiThreads(pair *testnet.Pair) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	prefix := "napi/" + pair.LinkB + "-"
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if err != nil {
			continue
		}
		// comm is cut at 15 bytes: also match a truncated name.
		c := strings.TrimSpace(string(comm))
		if strings.HasPrefix(c, prefix) || (len(c) == 15 && strings.HasPrefix(prefix, c)) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// pinNAPI pins B's NAPI threads to rxCPU and returns their pids.
func pinNAPI(pair *testnet.Pair) ([]int, error) {
	pids, err := napiThreads(pair)
	if err != nil {
		return nil, err
	}
	if len(pids) == 0 {
		return nil, fmt.Errorf("no NAPI thread for %s (threaded NAPI not enabled?)", pair.LinkB)
	}
	for _, pid := range pids {
		if err := unix.SchedSetaffinity(pid, benchproc.CPUSet(rxCPU)); err != nil {
			return nil, fmt.Errorf("pin NAPI thread %d to CPU %d: %w", pid, rxCPU, err)
		}
	}
	return pids, nil
}

// ticksOf sums procTicks over pids.
func ticksOf(pids []int) (uint64, error) {
	var sum uint64
	for _, pid := range pids {
		t, err := benchproc.CPUTicks(pid)
		if err != nil {
			return 0, err
		}
		sum += t
	}
	return sum, nil
}

// reportProbeCPU prints section 4: the CPU each probe adds on the
// receiving side, per million frames B's veth received (medians).
func reportProbeCPU(cfg *config, rates []rateResult) {
	w := os.Stdout
	fmt.Fprintf(w, "\n-- 4. Per-probe CPU on the receiving side, sender excluded: s per million frames B's veth received, median of %d runs\n", cfg.reps)
	fmt.Fprintf(w, "XDP program: run_time_ns / run_cnt of the program attached to B (BPF_ENABLE_STATS, BPF_STATS_RUN_TIME) over the window; softirq: whole-system softirq time (/proc/stat, tick-sampled at CONFIG_HZ)")
	if cfg.xdpSender && !cfg.pin {
		fmt.Fprintf(w, ", where B's NAPI runs (the sender's thread runs it when it re-enables bottom halves; the sender's own work is system time)")
	}
	if cfg.pin {
		fmt.Fprintf(w, "\n--pin: senders and this program on CPU %d; B's threaded NAPI and the probe on CPU %d. CPU %d busy: time minus its idle time (/proc/stat; includes anything else the scheduler put there); NAPI thread and probe process: /proc/<pid>/stat\n", sendCPU, rxCPU, rxCPU)
		fmt.Fprintf(w, "probe's CPU: xdpflow-probe = XDP program + probe process; softflowd = process + (NAPI thread - the baseline's NAPI thread: delivery into its packet socket)\n")
	} else {
		fmt.Fprintf(w, "\nprobe's CPU: xdpflow-probe = XDP program + probe process; softflowd = process + (softirq - the baseline's softirq: delivery into its packet socket)\n")
	}
	if !cfg.progStats {
		fmt.Fprintf(w, "(--prog-stats=false: no XDP program run times)\n")
	}
	type key struct {
		k kind
		s int
	}
	group := map[key][]rateResult{}
	for _, r := range rates {
		group[key{r.kind, r.senders}] = append(group[key{r.kind, r.senders}], r)
	}
	yes := func(b bool) string {
		if b {
			return "met"
		}
		return "NOT met"
	}
	for _, s := range cfg.senders {
		fmt.Fprintf(w, "\n%d sender(s):\n\n", s)
		fmt.Fprintf(w, "| case | B received (median) | XDP program runs / B received | XDP program ns/run | XDP program s/Mpkt | softirq s/Mpkt | softirq minus baseline | probe process s/Mpkt | probe's CPU s/Mpkt (each run) |")
		if cfg.pin {
			fmt.Fprintf(w, " CPU %d busy s/Mpkt | minus baseline | NAPI thread + probe process s/Mpkt |", rxCPU)
		}
		fmt.Fprintf(w, "\n|---|---|---|---|---|---|---|---|---|")
		if cfg.pin {
			fmt.Fprintf(w, "---|---|---|")
		}
		fmt.Fprintln(w)
		per := func(r rateResult, sec float64) float64 {
			if r.delivered() == 0 {
				return 0
			}
			return sec / (float64(r.delivered()) / 1e6)
		}
		baseSoft, baseCPU0, baseNAPI := 0.0, 0.0, 0.0
		if rs := group[key{none, s}]; len(rs) > 0 {
			var soft, cpu0, napi []float64
			for _, r := range rs {
				soft = append(soft, per(r, r.softirq))
				cpu0 = append(cpu0, per(r, r.rxCPUBusy))
				napi = append(napi, per(r, r.napiCPU))
			}
			baseSoft, baseCPU0, baseNAPI = benchstat.Median(soft), benchstat.Median(cpu0), benchstat.Median(napi)
		}
		// Medians per case (s/Mpkt; nsRun in ns).
		probeCPU := map[kind]float64{}
		procOnly := map[kind]float64{}
		cpu0 := map[kind]float64{}
		rxSide := map[kind]float64{}
		kern := map[kind]float64{} // softirq, or the NAPI thread with --pin
		progM := map[kind]float64{}
		nsRunM := map[kind]float64{}
		for _, k := range cfg.cases() {
			rs := group[key{k, s}]
			if len(rs) == 0 {
				continue
			}
			var recv, runsPer, nsRun, progS, soft, proc, probe, c0, rx, napi []float64
			var each []string
			for _, r := range rs {
				runs := r.prog1.runs - r.prog0.runs
				rt := (r.prog1.runtime - r.prog0.runtime).Seconds()
				recv = append(recv, float64(r.delivered()))
				if r.prog0.ok && r.delivered() > 0 {
					runsPer = append(runsPer, float64(runs)/float64(r.delivered()))
				}
				if runs > 0 {
					nsRun = append(nsRun, rt*1e9/float64(runs))
				}
				progS = append(progS, per(r, rt))
				soft = append(soft, per(r, r.softirq))
				proc = append(proc, per(r, r.probeCPU))
				c0 = append(c0, per(r, r.rxCPUBusy))
				rx = append(rx, per(r, r.napiCPU+r.probeCPU))
				napi = append(napi, per(r, r.napiCPU))
				p := 0.0
				switch {
				case k.isXDPFlow():
					p = per(r, rt+r.probeCPU)
				case k == softflowd && cfg.pin:
					p = per(r, r.probeCPU) + per(r, r.napiCPU) - baseNAPI
				case k == softflowd:
					p = per(r, r.probeCPU) + per(r, r.softirq) - baseSoft
				case k.noExport() && k != none:
					p = per(r, rt)
				}
				probe = append(probe, p)
				each = append(each, fmt.Sprintf("%.3f", p))
			}
			dash := func(ok bool, f string, v float64) string {
				if !ok {
					return "-"
				}
				return fmt.Sprintf(f, v)
			}
			hasProg := len(nsRun) > 0
			// xdpflow-probe's figure needs its program's run time.
			hasProbe := k != none && (hasProg || !(k.isXDPFlow() || k.noExport()))
			probeCell := "-"
			if hasProbe {
				probeCell = fmt.Sprintf("**%.3f** (%s)", benchstat.Median(probe), strings.Join(each, ", "))
			}
			row := fmt.Sprintf("| %s | %.0f | %s | %s | %s | %.3f | %s | %s | %s |", k, benchstat.Median(recv),
				dash(hasProg, "%.3f", benchstat.Median(runsPer)), dash(hasProg, "%.1f", benchstat.Median(nsRun)), dash(hasProg, "%.3f", benchstat.Median(progS)),
				benchstat.Median(soft), dash(k != none, "%.3f", benchstat.Median(soft)-baseSoft),
				dash(k != none && !k.noExport(), "%.3f", benchstat.Median(proc)),
				probeCell)
			if cfg.pin {
				row += fmt.Sprintf(" %.3f | %s | %.3f |", benchstat.Median(c0), dash(k != none, "%.3f", benchstat.Median(c0)-baseCPU0), benchstat.Median(rx))
			}
			fmt.Fprintln(w, row)
			if hasProbe {
				probeCPU[k] = benchstat.Median(probe)
			}
			if hasProg {
				progM[k], nsRunM[k] = benchstat.Median(progS), benchstat.Median(nsRun)
			}
			procOnly[k], cpu0[k], rxSide[k] = benchstat.Median(proc), benchstat.Median(c0), benchstat.Median(rx)
			kern[k] = benchstat.Median(soft)
			if cfg.pin {
				kern[k] = benchstat.Median(napi)
			}
		}
		fmt.Fprintln(w)
		kernName := "softirq"
		if cfg.pin {
			kernName = "NAPI thread"
		}
		// Each action's floor: an XDP program that only returns it.
		floorOf := map[kind]kind{xdpflowDrop: xdpEmptyDrop, xdpflow: xdpEmpty}
		for _, k := range []kind{xdpflowDrop, xdpflow} {
			_, ok1 := kern[k]
			_, ok2 := kern[floorOf[k]]
			if !ok1 || !ok2 {
				continue
			}
			fmt.Fprintf(w, "cross-check: %s minus %s, %s: %.3f s/Mpkt", k, floorOf[k], kernName, kern[k]-kern[floorOf[k]])
			if _, ok := progM[k]; ok {
				fmt.Fprintf(w, "; XDP program run time (bpf stats): %.3f s/Mpkt", progM[k]-progM[floorOf[k]])
			}
			fmt.Fprintln(w)
		}
		sf, ok := probeCPU[softflowd]
		if !ok {
			continue
		}
		for _, k := range []kind{xdpflowDrop, xdpflow} {
			x, ok := probeCPU[k]
			if !ok || x <= 0 {
				continue
			}
			fmt.Fprintf(w, "softflowd / %s, probe's CPU: %.3f / %.3f = %.2fx (10x goal %s); softflowd's process alone (favours softflowd): %.3f / %.3f = %.2fx\n",
				k, sf, x, sf/x, yes(sf/x >= 10), procOnly[softflowd], x, procOnly[softflowd]/x)
			if e, ok := progM[floorOf[k]]; ok && x-e > 0 {
				fmt.Fprintf(w, "  xdpflow's program counted above the empty program's run time (%.1f ns a run: the call, and the clock reads of bpf stats, which production does not pay): %.3f / %.3f = %.2fx (10x goal %s)\n",
					nsRunM[floorOf[k]], sf, x-e, sf/(x-e), yes(sf/(x-e) >= 10))
			}
			if cfg.pin {
				ab, sfAb := cpu0[k]-baseCPU0, cpu0[softflowd]-baseCPU0
				if ab > 0 {
					fmt.Fprintf(w, "  CPU %d above baseline: %.3f / %.3f = %.2fx", rxCPU, sfAb, ab, sfAb/ab)
				} else {
					fmt.Fprintf(w, "  CPU %d above baseline: %s %.3f (not above), softflowd %.3f: no ratio", rxCPU, k, ab, sfAb)
				}
				fmt.Fprintf(w, "; CPU %d totals: %.3f / %.3f = %.2fx; NAPI thread + probe process: %.3f / %.3f = %.2fx\n",
					rxCPU, cpu0[softflowd], cpu0[k], cpu0[softflowd]/cpu0[k], rxSide[softflowd], rxSide[k], rxSide[softflowd]/rxSide[k])
			}
		}
	}
}

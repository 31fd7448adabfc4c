package main

// CPU accounting of the receiving side. B's veth NAPI runs in a kernel
// thread (threaded NAPI) pinned to rxCPU, with the probe's processes; the
// sender (and this program, collector included) runs on sendCPU. A run's
// receiving-side CPU is the NAPI thread's utime+stime plus the probe's
// processes' (/proc/<pid>/stat, descendants included): B's XDP program
// runs inside the NAPI thread, and so does the kernel's delivery of each
// frame to the stack and to a packet socket (softflowd's and pmacctd's
// libpcap). Whole-system busy time (/proc/stat) is kept as context.

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
	"github.com/xdpflow/xdpflow/internal/testkit/testnet"
)

// cpuTimes from /proc/stat, in USER_HZ ticks.
type cpuTimes struct {
	at      time.Time
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

// allBusy is cpuBusy summed over every CPU: the whole system.
func allBusy(t0, t1 cpuTimes) float64 {
	sum := 0.0
	for cpu := range t1.cpuIdle {
		sum += cpuBusy(t0, t1, cpu)
	}
	return sum
}

func readCPUTimes() (cpuTimes, error) {
	t := cpuTimes{at: time.Now()}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return t, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 9 || !strings.HasPrefix(f[0], "cpu") || f[0] == "cpu" {
			continue
		}
		var v [9]uint64
		for i := 1; i < len(v); i++ {
			if v[i], err = strconv.ParseUint(f[i], 10, 64); err != nil {
				return t, fmt.Errorf("/proc/stat: %q: %w", line, err)
			}
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
	if len(t.cpuIdle) == 0 {
		return t, fmt.Errorf("/proc/stat: no cpuN line")
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

// The CPUs of the receiving side and of the sender.
const (
	rxCPU   = 0 // B's NAPI thread and the probe process
	sendCPU = 1 // the sender and this program (collector included)
)

// pinSenderThread pins the calling (locked) thread to sendCPU.
func pinSenderThread() error {
	if err := unix.SchedSetaffinity(0, benchproc.CPUSet(sendCPU)); err != nil {
		return fmt.Errorf("pin sender to CPU %d: %w", sendCPU, err)
	}
	return nil
}

// pinArgs prefixes a probe's command line with taskset (taskset and
// `ip netns exec` both exec in place: the pid is the probe's).
func pinArgs(argv []string) []string {
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

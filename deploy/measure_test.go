package deploy

// The measurement behind the resource requests in kubernetes/ and the
// figures in README.md ("Resource requests: measured"). It is not part of
// `make test` (it runs for about two minutes and needs root); run it with
//
//	sudo XDPFLOW_MEASURE=1 go test -count=1 -run TestMeasureResources -v ./deploy/
//
// It builds both programs, creates two throwaway network namespaces joined
// by a veth pair (internal/testkit/testnet; nothing on the host is touched), runs
// xdpflow-probe on one end with IPFIX to xdpflow-collector and Kafka to an
// in-process Kafka-protocol broker (kfake) inside that namespace, sends
// traffic phases from the other end, and samples both processes from /proc
// once a second: VmRSS, VmHWM, user+system CPU time, and the memory of the
// BPF maps the probe holds (the memlock: lines of its map fds' fdinfo;
// kernel memory, charged to the probe's memory cgroup on kernels >= 5.11).

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/xdpflow/xdpflow/internal/cmd/benchstat"
	"github.com/xdpflow/xdpflow/internal/syncbuf"
	"github.com/xdpflow/xdpflow/internal/testkit/kafkacheck"
	"github.com/xdpflow/xdpflow/internal/testkit/testnet"
	"github.com/xdpflow/xdpflow/internal/testkit/trafficgen"
)

// procSample is one reading of a process.
type procSample struct {
	rssKiB, hwmKiB int64
	cpuTicks       int64 // utime + stime, clock ticks
	bpfMemlock     int64 // bytes, BPF maps only
}

const clkTck = 100 // USER_HZ on Linux

func readProc(pid int) (procSample, error) {
	var s procSample
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 2 {
			continue
		}
		switch fs[0] {
		case "VmRSS:":
			s.rssKiB, _ = strconv.ParseInt(fs[1], 10, 64)
		case "VmHWM:":
			s.hwmKiB, _ = strconv.ParseInt(fs[1], 10, 64)
		}
	}
	f.Close()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// Fields after the command name (which may hold spaces): state is 3,
	// utime 14, stime 15.
	rest := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	ut, _ := strconv.ParseInt(rest[11], 10, 64)
	st, _ := strconv.ParseInt(rest[12], 10, 64)
	s.cpuTicks = ut + st
	fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fdinfo/*", pid))
	for _, fd := range fds {
		b, err := os.ReadFile(fd)
		if err != nil || !strings.Contains(string(b), "map_type:") {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "memlock:"); ok {
				n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				s.bpfMemlock += n
			}
		}
	}
	return s, nil
}

// phaseResult summarises one phase for one process.
type phaseResult struct {
	name            string
	seconds         float64
	frames          int
	rssMaxKiB       int64
	hwmKiB          int64
	cpuCores        float64 // average over the phase
	cpuPeakCores    float64 // highest one-second average
	bpfMemlockBytes int64
}

func TestMeasureResources(t *testing.T) {
	if os.Getenv("XDPFLOW_MEASURE") == "" {
		t.Skip("set XDPFLOW_MEASURE=1 (as root) to measure the probe's and the collector's memory and CPU (about 2 minutes)")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces and XDP")
	}
	phaseLen := 30 * time.Second
	if v := os.Getenv("XDPFLOW_MEASURE_PHASE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatal(err)
		}
		phaseLen = d
	}
	dir := t.TempDir()
	probeBin, collBin := filepath.Join(dir, "xdpflow-probe"), filepath.Join(dir, "xdpflow-collector")
	for bin, pkg := range map[string]string{probeBin: "../probe", collBin: "../collector"} {
		if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	pair, err := testnet.NewPair("xfmeas", testnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer pair.Close()
	inB := func(fn func() error) error { return pair.In(pair.B, fn) }
	broker := kafkacheck.Start(t, 3, []string{"xdpflow-flows"}, inB)

	// The collector listens on B's loopback; the probe exports IPFIX to it.
	var collLog, probeLog syncbuf.Buffer
	coll := exec.Command("ip", "netns", "exec", pair.NsName("b"), collBin,
		"--listen", "udp://127.0.0.1:4739", "--out", "/dev/null",
		"--kafka-brokers", broker.Addr, "--kafka-spool-dir", filepath.Join(dir, "coll-spool"))
	coll.Stderr = &collLog
	if err := coll.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if coll.ProcessState == nil {
			coll.Process.Signal(syscall.SIGTERM)
			coll.Wait()
		}
	}()
	probe := exec.Command("ip", "netns", "exec", pair.NsName("b"), probeBin, "-i", pair.LinkB, "--action", "drop",
		"--ipfix", "udp://127.0.0.1:4739",
		"--kafka-brokers", broker.Addr, "--kafka-spool-dir", filepath.Join(dir, "probe-spool"))
	probe.Stderr = &probeLog
	if err := probe.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if probe.ProcessState == nil {
			probe.Process.Signal(syscall.SIGTERM)
			probe.Wait()
		}
	}()
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(probeLog.String(), "attached"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("probe did not start:\n%s", probeLog.String())
		}
	}

	// Traffic: the project's mix (every shape the datapath parses), and
	// N distinct UDP flows sent round-robin so all N stay active.
	mix, err := trafficgen.Build(trafficgen.Mix(), pair.MACA, pair.MACB, 1)
	if err != nil {
		t.Fatal(err)
	}
	manyFlows := func(n int) []trafficgen.Built {
		out := make([]trafficgen.Built, n)
		base := netip.MustParseAddr("198.18.0.0").As4()
		for i := range out {
			a := base
			a[1] |= byte(i >> 16 & 1) // 198.18.0.0/15
			a[2], a[3] = byte(i>>8), byte(i)
			f := trafficgen.Flow{Src: netip.AddrFrom4(a), Dst: netip.MustParseAddr("198.19.255.254"), Proto: layers.IPProtocolUDP,
				SrcPort: uint16(10000 + i%50000), DstPort: 53, Payload: 64, Packets: 1}
			frame, l3, err := f.Frame(pair.MACA, pair.MACB)
			if err != nil {
				t.Fatal(err)
			}
			out[i] = trafficgen.Built{Flow: f, Frame: frame, L3: l3, L2: len(frame)}
		}
		return out
	}
	phases := []struct {
		name   string
		frames []trafficgen.Built
	}{
		{"idle (attached, no traffic)", nil},
		{"mix: trafficgen.Mix, 25 flows, max rate", mix},
		{"10k active UDP flows, max rate", manyFlows(10_000)},
		{"100k active UDP flows, max rate", manyFlows(100_000)},
		{"200k active UDP flows, max rate", manyFlows(200_000)},
	}
	procs := []struct {
		name string
		pid  int
	}{{"xdpflow-probe", probe.Process.Pid}, {"xdpflow-collector", coll.Process.Pid}}
	results := make([][]phaseResult, len(procs))
	for _, ph := range phases {
		stop := make(chan struct{})
		sent := make(chan int, 1)
		go func() {
			n := 0
			defer func() { sent <- n }()
			if ph.frames == nil {
				<-stop
				return
			}
			pair.In(pair.A, func() error {
				s, err := trafficgen.NewSender(pair.IfindexA)
				if err != nil {
					t.Error(err)
					return err
				}
				defer s.Close()
				for {
					for i := range ph.frames {
						if err := s.Send(ph.frames[i].Frame); err != nil {
							t.Error(err)
							return err
						}
						n++
						if n&1023 == 0 {
							select {
							case <-stop:
								return nil
							default:
							}
						}
					}
				}
			})
		}()
		res := make([]phaseResult, len(procs))
		first := make([]procSample, len(procs))
		prev := make([]procSample, len(procs))
		for i, p := range procs {
			s, err := readProc(p.pid)
			if err != nil {
				t.Fatalf("%s: %v\n%s%s", p.name, err, probeLog.String(), collLog.String())
			}
			first[i], prev[i] = s, s
			res[i].name = ph.name
		}
		start := time.Now()
		for tick := time.NewTicker(time.Second); time.Since(start) < phaseLen; {
			<-tick.C
			for i, p := range procs {
				s, err := readProc(p.pid)
				if err != nil {
					t.Fatalf("%s: %v\n%s%s", p.name, err, probeLog.String(), collLog.String())
				}
				r := &res[i]
				r.rssMaxKiB = max(r.rssMaxKiB, s.rssKiB)
				r.hwmKiB = s.hwmKiB
				r.bpfMemlockBytes = s.bpfMemlock
				r.cpuPeakCores = max(r.cpuPeakCores, float64(s.cpuTicks-prev[i].cpuTicks)/clkTck)
				prev[i] = s
			}
		}
		close(stop)
		n := <-sent
		el := time.Since(start).Seconds()
		for i := range procs {
			res[i].seconds = el
			res[i].frames = n
			res[i].cpuCores = float64(prev[i].cpuTicks-first[i].cpuTicks) / clkTck / el
			results[i] = append(results[i], res[i])
		}
		// Let the phase's flows expire (idle timeout 15 s) before the next.
		time.Sleep(20 * time.Second)
	}
	// VmHWM after the last phase's flows expired and were exported.
	var final []procSample
	for _, p := range procs {
		s, err := readProc(p.pid)
		if err != nil {
			t.Fatal(err)
		}
		final = append(final, s)
	}
	probe.Process.Signal(syscall.SIGTERM)
	if err := probe.Wait(); err != nil {
		t.Errorf("probe: %v", err)
	}
	coll.Process.Signal(syscall.SIGTERM)
	coll.Wait()

	var b strings.Builder
	fmt.Fprintf(&b, "kernel %s, %d CPUs, phases of %v\n", benchstat.KernelRelease(), benchstat.NumCPU(), phaseLen)
	for i, p := range procs {
		fmt.Fprintf(&b, "\n%s\n%-42s %10s %9s %9s %9s %9s %10s\n", p.name, "phase", "frames/s", "RSS MiB", "HWM MiB", "CPU avg", "CPU peak", "BPF MiB")
		for _, r := range results[i] {
			fmt.Fprintf(&b, "%-42s %10.0f %9.1f %9.1f %9.3f %9.2f %10.1f\n", r.name, float64(r.frames)/r.seconds,
				float64(r.rssMaxKiB)/1024, float64(r.hwmKiB)/1024, r.cpuCores, r.cpuPeakCores, float64(r.bpfMemlockBytes)/(1<<20))
		}
		fmt.Fprintf(&b, "%-42s %10s %9.1f %9.1f\n", "after the last flows expired", "", float64(final[i].rssKiB)/1024, float64(final[i].hwmKiB)/1024)
	}
	t.Logf("\n%s\nprobe log (tail):\n%s\ncollector log (tail):\n%s", b.String(), tail(probeLog.String(), 12), tail(collLog.String(), 12))
	if out := os.Getenv("XDPFLOW_MEASURE_OUT"); out != "" {
		os.WriteFile(out, []byte(b.String()), 0o644)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Command peerbench measures what flow monitoring costs per packet on top
// of receiving the traffic at all, for xdpflow-probe and its peers on the
// same veth and the same traffic (`sudo make bench-peers`; not part of
// `make test`). It creates two throwaway network namespaces joined by a
// veth pair, sends from one end, and runs each probe in turn on the other
// end (B), exporting IPFIX to a collector on B's loopback:
//
//  1. accuracy (accuracy.go): trafficgen.Mix() scaled plus thousands of
//     distinct UDP flows at a moderate rate from an AF_PACKET socket; the
//     export is decoded with goflow2 (flowcheck) and compared with the
//     truth flow by flow;
//  2. monitoring cost (rate.go, cpuacct.go): millions of 64-byte frames
//     enter veth A as XDP frames (xdpsend.go) from a sender on CPU 1, as
//     fast as it goes; B's veth NAPI runs in a kernel thread pinned to
//     CPU 0 with the probe. A run's cost is the CPU time of that thread
//     and of the probe's processes per frame B received; the baseline is
//     an XDP program that only returns XDP_DROP on B, the least any host
//     can spend on a frame; a probe's monitoring cost is its median minus
//     the baseline's. The probe's counts of the same run are checked
//     against what B received.
//
// The probes: xdpflow-probe --action drop (span port) and --action pass
// (inline), softflowd and pmacctd (Debian's packages; a missing one is
// skipped, with what to install). netobserv-ebpf-agent is not run: see
// netobservWhy.
//
// It touches no interface of the host, ends only the processes it started
// (by pid / process group id), and removes everything on exit, on error,
// on Ctrl-C, and when --timeout passes.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/xdpflow/xdpflow/internal/cmd/benchproc"
	"github.com/xdpflow/xdpflow/internal/cmd/benchstat"
	"github.com/xdpflow/xdpflow/internal/testkit/testnet"
)

type config struct {
	probe, softflowd, pmacctd string
	packets, reps             int
	accFlows, accScale        int
	accPPS                    int
	progStats                 bool // --prog-stats: the kernel's run time accounting of BPF programs (cpuacct.go)

	peers   []kind          // the probes that run, in order
	skipped []skippedProbe  // those that do not, and why
	version map[kind]string // of softflowd and pmacctd, for the report
}

// skippedProbe is a probe this run leaves out, and why.
type skippedProbe struct{ name, why string }

// netobservWhy is why netobserv-ebpf-agent is not among the probes: it
// could not be built here. Building it is the one way to have it on these
// machines (no prebuilt binary can be fetched), and the Go module proxy
// refuses the module, its cmd/ package and a tagged release alike.
const netobservWhy = "not built: the Go module proxy refuses it. " +
	"`GOFLAGS=-mod=mod go install github.com/netobserv/netobserv-ebpf-agent/cmd/netobserv-ebpf-agent@latest` " +
	"(and `go get github.com/netobserv/netobserv-ebpf-agent@v1.9.0-community`) failed with " +
	"\"reading <the proxy>/github.com/netobserv/netobserv-ebpf-agent/cmd/netobserv-ebpf-agent/@v/list: " +
	"403 Forbidden; server response: This module version is not available.\" (Go 1.26.8, November 2026)"

// cases of the rate runs, in the order they run in each round.
func (cfg *config) cases() []kind { return append([]kind{baseline}, cfg.peers...) }

var (
	cleanupMu   sync.Mutex
	cleanupPair *testnet.Pair
	cleanupDirs []string
)

// cleanup kills every child this program started and removes the
// namespaces (the veth pair goes with them) and temporary files.
func cleanup() {
	benchproc.KillAll()
	cleanupMu.Lock()
	defer cleanupMu.Unlock()
	if cleanupPair != nil {
		if err := cleanupPair.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "peerbench: cleanup:", err)
		}
		cleanupPair = nil
	}
	for _, d := range cleanupDirs {
		os.RemoveAll(d)
	}
	cleanupDirs = nil
}

func main() {
	cfg := &config{}
	pflag.CommandLine.SortFlags = false
	pflag.StringVar(&cfg.probe, "probe", "bin/xdpflow-probe", "the xdpflow-probe binary")
	pflag.StringVar(&cfg.softflowd, "softflowd", "softflowd", "the softflowd binary (skipped if missing)")
	pflag.StringVar(&cfg.pmacctd, "pmacctd", "pmacctd", "the pmacctd binary (skipped if missing)")
	pflag.IntVar(&cfg.packets, "packets", 8640000, "frames sent per rate run (rounded down to a multiple of --xdp-flows)")
	pflag.IntVar(&cfg.reps, "reps", 7, "rate runs per case, interleaved (the median is reported): this VM's host slows it by up to 2x for seconds at a time")
	pflag.IntVar(&xdpFrames, "xdp-flows", xdpFrames, "flows of the rate runs (distinct frames, one BPF_PROG_TEST_RUN call each per run), at most 3,840")
	pflag.IntVar(&cfg.accFlows, "accuracy-flows", 5000, "distinct UDP flows added to the mix in the accuracy run")
	pflag.IntVar(&cfg.accScale, "accuracy-scale", 10, "trafficgen.Mix() packets multiplied by this")
	pflag.IntVar(&cfg.accPPS, "accuracy-pps", 50000, "sending rate of the accuracy run")
	pflag.BoolVar(&cfg.progStats, "prog-stats", false, "turn on the kernel's run time accounting of BPF programs (BPF_ENABLE_STATS) and report the XDP programs' ns per run; it adds two clock reads to every XDP program run, the baseline's included, so it is off for the costs")
	timeout := pflag.Duration("timeout", 15*time.Minute, "give up, clean up and exit 2 after this long")
	pflag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: sudo go run ./internal/cmd/peerbench [flags]\n\n"+
			"xdpflow-probe, softflowd and pmacctd on the same veth and traffic: CPU per\n"+
			"packet above an empty XDP_DROP program, and accuracy; see docs/benchmarks.md.\n\n%s", pflag.CommandLine.FlagUsages())
	}
	pflag.Parse()

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sig
		fmt.Fprintf(os.Stderr, "peerbench: %v: cleaning up\n", s)
		cleanup()
		os.Exit(130)
	}()
	time.AfterFunc(*timeout, func() {
		fmt.Fprintf(os.Stderr, "peerbench: still running after %v: cleaning up and giving up\n", *timeout)
		cleanup()
		os.Exit(2)
	})
	err := run(cfg)
	cleanup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "peerbench:", err)
		os.Exit(1)
	}
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", a...)
}

// checkHost fails, saying what is missing, unless everything the
// benchmark itself needs is there. It installs nothing.
func checkHost(cfg *config) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root (network namespaces, XDP, AF_PACKET): run `sudo make bench-peers`")
	}
	if n := benchstat.NumCPU(); n < 2 {
		return fmt.Errorf("needs 2 CPUs (the sender on one, the receiving side on the other); this machine has %d", n)
	}
	if _, err := os.Stat(cfg.probe); err != nil {
		return fmt.Errorf("probe binary: %w (`make bench-peers` builds it)", err)
	}
	for bin, pkg := range map[string]string{"ip": "iproute2", "ethtool": "ethtool", "taskset": "util-linux"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("%s not found (Debian package %s): not installing it", bin, pkg)
		}
	}
	if xdpFrames < 1 || xdpFrames > rateFlows {
		return fmt.Errorf("--xdp-flows: %d is not in 1..%d", xdpFrames, rateFlows)
	}
	if cfg.reps < 1 {
		return fmt.Errorf("--reps: %d", cfg.reps)
	}
	return nil
}

// findPeers decides which probes run: both xdpflow-probe cases, and each
// peer whose programs are installed; the others are skipped with what to
// install.
func findPeers(cfg *config) {
	cfg.peers = []kind{xdpflowDrop, xdpflowPass}
	cfg.version = map[kind]string{}
	if why := missing(cfg.softflowd, "softflowctl"); why != "" {
		cfg.skipped = append(cfg.skipped, skippedProbe{"softflowd", why + ": `apt-get install softflowd`"})
	} else {
		cfg.peers = append(cfg.peers, softflowd)
		// softflowd -h exits 1 after printing its usage.
		cfg.version[softflowd] = versionAfter(cfg.softflowd, "-h", "softflowd version ")
	}
	if why := missing(cfg.pmacctd); why != "" {
		cfg.skipped = append(cfg.skipped, skippedProbe{"pmacctd", why + ": `apt-get install pmacct`"})
	} else {
		cfg.peers = append(cfg.peers, pmacctd)
		cfg.version[pmacctd] = versionAfter(cfg.pmacctd, "-V", "pmacctd ")
	}
	why := netobservWhy
	if path, err := exec.LookPath("netobserv-ebpf-agent"); err == nil {
		why = "found at " + path + ", but peerbench has no runner for it: it could not be built here to write and check one (" + netobservWhy + ")"
	}
	cfg.skipped = append(cfg.skipped, skippedProbe{"netobserv-ebpf-agent", why})
	for _, s := range cfg.skipped {
		logf("%s: skipped: %s", s.name, s.why)
	}
}

// missing names the programs of bins not found, "" if all are there.
func missing(bins ...string) string {
	var not []string
	for _, b := range bins {
		if _, err := exec.LookPath(b); err != nil {
			not = append(not, b)
		}
	}
	if len(not) == 0 {
		return ""
	}
	return strings.Join(not, " and ") + " not found"
}

// versionAfter runs `bin arg` and returns the word after prefix in its
// output ("unknown" if none).
func versionAfter(bin, arg, prefix string) string {
	out, _ := exec.Command(bin, arg).CombinedOutput()
	if _, v, ok := strings.Cut(string(out), prefix); ok {
		return strings.TrimSuffix(strings.Fields(v + " ?")[0], ".")
	}
	return "unknown"
}

func run(cfg *config) error {
	if err := checkHost(cfg); err != nil {
		return err
	}
	findPeers(cfg)
	cfg.packets = max(cfg.packets/xdpFrames*xdpFrames, xdpFrames)
	if cfg.progStats {
		stopStats, err := enableBPFStats()
		if err != nil {
			return err
		}
		defer stopStats()
	}
	if err := benchproc.PinSelf(sendCPU); err != nil {
		return err
	}
	logf("this program and the sender on CPU %d; B's NAPI thread and the probe on CPU %d", sendCPU, rxCPU)
	pair, err := newPair()
	if err != nil {
		return err
	}

	// 1. Accuracy, before GRO and threaded NAPI: AF_PACKET frames.
	seq, want, wantL2, err := accuracyTraffic(pair, cfg.accScale, cfg.accFlows)
	if err != nil {
		return err
	}
	var accs []accResult
	for _, k := range cfg.peers {
		logf("accuracy: %s, %d frames over %d flows at ~%d pps", k, len(seq), len(want), cfg.accPPS)
		a, err := runAccuracy(k, pair, cfg, seq, want, wantL2)
		if err != nil {
			return err
		}
		accs = append(accs, a)
	}

	// 2. Monitoring cost.
	if err := receiveInThread(pair); err != nil {
		return err
	}
	var rates []rateResult
	for rep := 1; rep <= cfg.reps; rep++ {
		for _, k := range cfg.cases() {
			r, err := runRate(k, pair, cfg, rep)
			if err != nil {
				return err
			}
			logf("rate: run %d %-34s %.0f pps offered, B received %d of %d (veth drops %d), counted %d; NAPI thread %.2f s, probe %.2f s: %.3f s per million received; CPU %d busy %.2f s",
				rep, k, float64(r.sent)/r.elapsed.Seconds(), r.received, r.sent, r.vethDrops, r.counted, r.napi, r.probe, r.rxSide(), rxCPU, r.rxCPUBusy)
			rates = append(rates, r)
		}
	}
	report(os.Stdout, cfg, len(seq), len(want), accs, rates)
	return nil
}

// newPair creates the namespaces and veth pair, registered for cleanup.
func newPair() (*testnet.Pair, error) {
	pair, err := testnet.NewPair(fmt.Sprintf("xfpb%d", os.Getpid()%100000), testnet.Options{})
	if err != nil {
		return nil, err
	}
	cleanupMu.Lock()
	cleanupPair = pair
	cleanupMu.Unlock()
	logf("namespaces %s and %s, veth %s -> %s", pair.NsName("a"), pair.NsName("b"), pair.LinkA, pair.LinkB)
	return pair, nil
}

// receiveInThread readies B for the rate runs: GRO on (veth then accepts
// XDP frames with no XDP program attached), its NAPI in a kernel thread
// pinned to rxCPU.
func receiveInThread(pair *testnet.Pair) error {
	if err := enableGRO(pair); err != nil {
		return err
	}
	if err := enableThreadedNAPI(pair); err != nil {
		return err
	}
	pids, err := pinNAPI(pair)
	if err != nil {
		return err
	}
	logf("GRO and threaded NAPI on %s: threads %v pinned to CPU %d", pair.LinkB, pids, rxCPU)
	return nil
}

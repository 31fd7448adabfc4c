// Command peerbench puts xdpflow-probe and softflowd side by side on the
// same veth and the same traffic (`sudo make bench-peers`; not part of
// `make test`). It creates two throwaway network namespaces joined by a
// veth pair, sends from one end, and runs each probe in turn on the other
// end, exporting IPFIX to a collector on that namespace's loopback:
//
//  1. accuracy: trafficgen.Mix() scaled plus thousands of distinct UDP
//     flows at a moderate rate; the export is decoded with goflow2
//     (flowcheck) and compared with the truth flow by flow;
//  2. rate: millions of 64-byte UDP frames over 3,840 flows as fast as the
//     sender can (netsniff-ng's trafgen, or Go AF_PACKET senders); the
//     fraction of the packets each probe counted;
//  3. CPU: whole-system busy time from /proc/stat over each rate run, with
//     no probe (baseline), xdpflow-probe and softflowd, and each probe
//     process's own time from /proc/<pid>/stat;
//  4. per-probe CPU, the sender excluded (cpuacct.go): xdpflow's XDP
//     program run time as the kernel accounts it plus its process;
//     softflowd's process plus the softirq time its packet socket adds.
//
// With --sender xdp the rate frames enter veth A as XDP frames
// (BPF_PROG_TEST_RUN live frames and a redirect, xdpsend.go), so B's XDP
// program runs on them without veth's copy of an skb, as on a NIC's
// receive buffer; the rate runs then also measure the span-port
// deployment: xdpflow-probe --action drop and an XDP_DROP-only program.
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
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/xdpflow/xdpflow/internal/cmd/benchproc"
	"github.com/xdpflow/xdpflow/internal/cmd/benchstat"
	"github.com/xdpflow/xdpflow/internal/testkit/flowcheck"
	"github.com/xdpflow/xdpflow/internal/testkit/testnet"
)

type config struct {
	probe, softflowd string
	pmacctd          string
	packets, reps    int
	senders          []int
	accFlows         int
	accScale         int
	accPPS           int
	trafgenConf      string // empty: Go AF_PACKET senders
	xdpMode          string // xdpflow-probe --xdp-mode
	xdpSender        bool   // --sender xdp: frames enter the veth as XDP frames (xdpsend.go)
	pin              bool   // --pin: senders on CPU 1; B's NAPI thread and the probe on CPU 0 (cpuacct.go)
	progStats        bool   // --prog-stats: the kernel's run time accounting of BPF programs (cpuacct.go)
}

// rateFlows: flows of the rate traffic.
func (cfg *config) rateFlows() int {
	if cfg.xdpSender {
		return xdpFrames
	}
	return rateFlows
}

// cases of the rate/CPU runs, in the order they run.
func (cfg *config) cases() []kind {
	if cfg.xdpSender {
		return []kind{none, xdpEmptyDrop, xdpEmpty, xdpflowDrop, xdpflow, softflowd, pmacctd}
	}
	return []kind{none, xdpEmpty, xdpflow, softflowd, pmacctd}
}

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
	pflag.StringVar(&cfg.softflowd, "softflowd", "softflowd", "the softflowd binary")
	pflag.StringVar(&cfg.pmacctd, "pmacctd", "pmacctd", "the pmacctd binary")
	pflag.StringVar(&cfg.xdpMode, "xdp-mode", "native", "xdpflow-probe --xdp-mode: native, or generic (veth's native XDP copies each frame first)")
	pflag.IntVar(&cfg.packets, "packets", 2304000, "frames per rate/CPU run (rounded down to a multiple of 3,840 x senders)")
	pflag.IntVar(&cfg.reps, "reps", 3, "runs per case for rate and CPU (the median is reported)")
	senders := pflag.String("senders", "1,2", "rate/CPU runs with these numbers of parallel senders (comma-separated)")
	sender := pflag.String("sender", "go", "rate sender: go (one AF_PACKET socket per sender, retries when the veth pushes back) trafgen (netsniff-ng; aborts on the veth's backpressure, so only for --senders 1), or xdp (BPF_PROG_TEST_RUN live frames redirected into A: B receives XDP frames, no veth copy; adds the --action drop cases)")
	pflag.IntVar(&xdpFrames, "xdp-flows", xdpFrames, "--sender xdp: flows (distinct frames, one BPF_PROG_TEST_RUN call each per run), at most 3,840")
	pflag.IntVar(&cfg.accFlows, "accuracy-flows", 5000, "distinct UDP flows added to the mix in the accuracy run")
	pflag.IntVar(&cfg.accScale, "accuracy-scale", 10, "trafficgen.Mix() packets multiplied by this")
	pflag.IntVar(&cfg.accPPS, "accuracy-pps", 50000, "sending rate of the accuracy run")
	pflag.BoolVar(&cfg.pin, "pin", false, "--sender xdp only: run the senders (and this program) on CPU 1, B's veth NAPI in a kernel thread (threaded NAPI) and the probe on CPU 0, and also report CPU 0's busy time per million frames B received")
	pflag.BoolVar(&cfg.progStats, "prog-stats", true, "turn on the kernel's run time accounting of BPF programs (BPF_ENABLE_STATS, as sysctl kernel.bpf_stats_enabled=1) for the XDP program columns; it adds its own cost (two sched_clock reads) to every XDP program run, in every CPU figure")
	timeout := pflag.Duration("timeout", 9*time.Minute, "give up, clean up and exit 2 after this long")
	pflag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: sudo go run ./internal/cmd/peerbench [flags]\n\n"+
			"xdpflow-probe and softflowd on the same veth and traffic: accuracy, rate,\n"+
			"CPU per packet; see docs/benchmarks.md.\n\n%s", pflag.CommandLine.FlagUsages())
	}
	pflag.Parse()
	for _, s := range strings.Split(*senders, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 64 {
			fmt.Fprintf(os.Stderr, "peerbench: --senders: bad value %q\n", s)
			os.Exit(2)
		}
		cfg.senders = append(cfg.senders, n)
	}

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
	err := run(cfg, *sender)
	cleanup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "peerbench:", err)
		os.Exit(1)
	}
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", a...)
}

func run(cfg *config, sender string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root (network namespaces, XDP, AF_PACKET): run `sudo make bench-peers`")
	}
	if _, err := os.Stat(cfg.probe); err != nil {
		return fmt.Errorf("probe binary: %w (`make bench-peers` builds it)", err)
	}
	for _, bin := range []string{cfg.softflowd, "softflowctl", cfg.pmacctd, "ip"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("%s not found: apt-get install softflowd iproute2 (and netsniff-ng for trafgen)", bin)
		}
	}
	sfVersion := "unknown"
	out, _ := exec.Command(cfg.softflowd, "-h").CombinedOutput() // exits 1 after printing its usage
	if _, v, ok := strings.Cut(string(out), "softflowd version "); ok {
		sfVersion = strings.TrimSuffix(strings.Fields(v + " ?")[0], ".")
	}
	cfg.xdpSender = sender == "xdp"
	if cfg.pin && (!cfg.xdpSender || benchstat.NumCPU() < 2) {
		return fmt.Errorf("--pin needs --sender xdp and at least 2 CPUs")
	}
	if xdpFrames < 1 || xdpFrames > rateFlows {
		return fmt.Errorf("--xdp-flows: %d is not in 1..%d", xdpFrames, rateFlows)
	}
	step := cfg.rateFlows() * lcm(cfg.senders)
	cfg.packets = cfg.packets / step * step
	if cfg.packets == 0 {
		cfg.packets = step
	}

	if cfg.progStats {
		stopStats, err := enableBPFStats()
		if err != nil {
			return err
		}
		defer stopStats()
	}
	if cfg.pin {
		if err := benchproc.PinSelf(sendCPU); err != nil {
			return err
		}
		logf("--pin: this program and the senders on CPU %d; B's NAPI thread and the probe on CPU %d", sendCPU, rxCPU)
	}

	tmp, err := os.MkdirTemp("", "peerbench")
	if err != nil {
		return err
	}
	cleanupMu.Lock()
	cleanupDirs = append(cleanupDirs, tmp)
	cleanupMu.Unlock()
	pair, err := testnet.NewPair(fmt.Sprintf("xfpb%d", os.Getpid()%100000), testnet.Options{})
	if err != nil {
		return err
	}
	cleanupMu.Lock()
	cleanupPair = pair
	cleanupMu.Unlock()
	logf("namespaces %s and %s, veth %s -> %s", pair.NsName("a"), pair.NsName("b"), pair.LinkA, pair.LinkB)

	senderName := "Go senders (one trafficgen.Sender AF_PACKET socket each)"
	switch sender {
	case "go", "trafgen":
	case "xdp":
		if _, err := exec.LookPath("ethtool"); err != nil {
			return fmt.Errorf("--sender xdp needs ethtool (GRO on B, A's xdp_xmit_errors)")
		}
		cfg.xdpSender = true
		senderName = fmt.Sprintf("the xdp sender (BPF_PROG_TEST_RUN live frames, batch %d, an XDP program redirecting into A, one thread in A per sender)", xdpBatch)
	default:
		return fmt.Errorf("--sender: %q is not go, trafgen or xdp", sender)
	}
	if sender == "trafgen" {
		conf, err := trafgenConfig(tmp, pair)
		if err == nil {
			err = trafgenWorks(pair, conf)
		}
		if err != nil {
			logf("trafgen does not work (%v): falling back to Go AF_PACKET senders", err)
		} else {
			cfg.trafgenConf, senderName = conf, "netsniff-ng trafgen"
		}
	}

	// 1. Accuracy.
	seq, want, wantL2, err := accuracyTraffic(pair, cfg.accScale, cfg.accFlows)
	if err != nil {
		return err
	}
	var accs []accResult
	for _, k := range []kind{xdpflow, softflowd, pmacctd} {
		logf("accuracy: %s, %d frames over %d flows at ~%d pps", k, len(seq), len(want), cfg.accPPS)
		a, err := runAccuracy(k, pair, cfg, seq, want, wantL2)
		if err != nil {
			return err
		}
		accs = append(accs, a)
	}

	// 2 and 3. Rate and CPU.
	if cfg.xdpSender {
		// After the accuracy runs, which AF_PACKET senders do without GRO.
		if err := enableGRO(pair); err != nil {
			return err
		}
		logf("GRO on for %s: veth NAPI enabled, so it accepts XDP frames with no XDP program attached", pair.LinkB)
		if cfg.pin {
			if err := enableThreadedNAPI(pair); err != nil {
				return err
			}
			pids, err := pinNAPI(pair)
			if err != nil {
				return err
			}
			logf("threaded NAPI on %s: threads %v pinned to CPU %d", pair.LinkB, pids, rxCPU)
		}
	}
	var rates []rateResult
	for _, s := range cfg.senders {
		for rep := 1; rep <= cfg.reps; rep++ {
			for _, k := range cfg.cases() {
				r, err := runRate(k, pair, cfg, s, rep)
				if err != nil {
					return err
				}
				logf("rate: %d sender(s) run %d %-22s %7.0f pps offered, B's veth received %d, counted %d of %d, CPU %.2f s (softirq %.2f s, probe process %.2f s, XDP program %d runs %.3f s), veth drops %d",
					s, rep, k, r.pps(), r.delivered(), r.counted, r.sent, r.busy, r.softirq, r.probeCPU, r.prog1.runs-r.prog0.runs, (r.prog1.runtime - r.prog0.runtime).Seconds(), r.drops())
				if cfg.pin {
					logf("rate: CPU %d busy %.2f s, NAPI thread %.2f s", rxCPU, r.rxCPUBusy, r.napiCPU)
				}
				rates = append(rates, r)
			}
		}
	}

	report(cfg, sfVersion, senderName, len(seq), len(want), accs, rates)
	reportProbeCPU(cfg, rates)
	return nil
}

func lcm(xs []int) int {
	gcd := func(a, b int) int {
		for b != 0 {
			a, b = b, a%b
		}
		return a
	}
	l := 1
	for _, x := range xs {
		l = l / gcd(l, x) * x
	}
	return l
}

type accResult struct {
	kind                              kind
	flows, exact, exactPkts, exactL2  int
	sentPkts, gotPkts                 uint64
	sentBytes, sentL2Bytes, gotBytes  uint64
	extraFlows                        int
	extraPkts, fillerPkts             uint64
	dec                               decoded
	examples                          []string
	stats                             string
	missingFlows, shortFlows, overPkt int
}

func runAccuracy(k kind, pair *testnet.Pair, cfg *config, seq [][]byte, want, wantL2 flowcheck.Sums) (accResult, error) {
	a := accResult{kind: k, flows: len(want)}
	r, err := startProbe(k, pair, cfg)
	if err != nil {
		return a, err
	}
	if err := sendPaced(pair, seq, cfg.accPPS); err != nil {
		r.abort()
		return a, err
	}
	time.Sleep(time.Second)
	msgs, err := r.finish(pair)
	if err != nil {
		return a, err
	}
	a.stats = r.stats
	a.dec = decodeAll(msgs)
	got := a.dec.sums
	a.fillerPkts = got[fillerID].Packets
	delete(got, fillerID)
	for id, w := range want {
		a.sentPkts += w.Packets
		a.sentBytes += w.Bytes
		a.sentL2Bytes += wantL2[id].Bytes
		g, ok := got[id]
		switch {
		case !ok:
			a.missingFlows++
		case g.Packets < w.Packets:
			a.shortFlows++
		case g.Packets > w.Packets:
			a.overPkt++
		}
		if g.Packets == w.Packets {
			a.exactPkts++
			if g.Bytes == w.Bytes {
				a.exact++
			}
			if g.Bytes == wantL2[id].Bytes {
				a.exactL2++
			}
		}
	}
	for id, g := range got {
		a.gotPkts += g.Packets
		a.gotBytes += g.Bytes
		if _, ok := want[id]; !ok {
			a.extraFlows++
			a.extraPkts += g.Packets
		}
	}
	diff := flowcheck.Diff(got, want)
	// Examples: the mix's flows first (they are the unusual ones).
	sort.SliceStable(diff, func(i, j int) bool {
		return !strings.Contains(diff[i], "> 198.18.0.2:53") && strings.Contains(diff[j], "> 198.18.0.2:53")
	})
	if len(diff) > 12 {
		diff = append(diff[:12], fmt.Sprintf("... and %d more", len(diff)-12))
	}
	a.examples = diff
	logf("accuracy: %s: %d/%d flows exact, %d of %d packets; %d records in %d messages",
		k, a.exact, a.flows, a.gotPkts, a.sentPkts, a.dec.records, a.dec.messages)
	return a, nil
}

type rateResult struct {
	kind           kind
	senders, rep   int
	sent           int
	elapsed        time.Duration
	l0, l1         linkCounters
	busy, probeCPU float64 // seconds
	counted        uint64
	exactFlows     int
	fillerPkts     uint64
	dec            decoded
	stats          string
	xdpSender      bool

	// Per-probe accounting (cpuacct.go): whole-system softirq seconds,
	// B's XDP program's run time accounting at the window's start and
	// end, and with --pin the seconds CPU rxCPU was busy and B's NAPI
	// thread(s) ran.
	softirq            float64
	prog0, prog1       progStats
	rxCPUBusy, napiCPU float64
}

func (r rateResult) pps() float64 { return float64(r.sent) / r.elapsed.Seconds() }

func (r rateResult) drops() uint64 {
	if r.xdpSender {
		// Counted once per frame in A's xdp_xmit_errors; the same frames
		// are also in A's tx_dropped and B's rx_dropped.
		return r.l1.xdpXmitErr - r.l0.xdpXmitErr
	}
	return (r.l1.aTxDrop - r.l0.aTxDrop) + (r.l1.bRxDrop - r.l0.bRxDrop)
}

func (r rateResult) delivered() uint64 { return r.l1.bRx - r.l0.bRx }

func runRate(k kind, pair *testnet.Pair, cfg *config, senders, rep int) (rateResult, error) {
	res := rateResult{kind: k, senders: senders, rep: rep, sent: cfg.packets, xdpSender: cfg.xdpSender}
	r, err := startProbe(k, pair, cfg)
	if err != nil {
		return res, err
	}
	fail := func(err error) (rateResult, error) {
		r.abort()
		return res, err
	}
	pid := r.PID()
	if res.l0, err = readLinks(pair); err != nil {
		return fail(err)
	}
	if cfg.xdpSender {
		if res.l0.xdpXmitErr, err = xdpXmitErrors(pair); err != nil {
			return fail(err)
		}
	}
	var napi []int
	var n0, n1 uint64
	if cfg.pin {
		// The NAPI thread can be new (XDP attached); the probe was started
		// pinned.
		if napi, err = pinNAPI(pair); err != nil {
			return fail(err)
		}
		if n0, err = ticksOf(napi); err != nil {
			return fail(err)
		}
	}
	if res.prog0, err = readProgStats(pair); err != nil {
		return fail(err)
	}
	b0, err := readCPUTimes()
	if err != nil {
		return fail(err)
	}
	var p0, p1 uint64
	if pid != 0 {
		if p0, err = benchproc.CPUTicks(pid); err != nil {
			return fail(err)
		}
	}
	t0 := time.Now()
	if err := sendRate(pair, cfg, senders, cfg.packets); err != nil {
		return fail(err)
	}
	res.elapsed = time.Since(t0)
	if res.l1, err = readLinks(pair); err != nil {
		return fail(err)
	}
	if cfg.xdpSender {
		if res.l1.xdpXmitErr, err = xdpXmitErrors(pair); err != nil {
			return fail(err)
		}
	}
	// The window goes on until the flows have expired and been exported
	// (idle timeout + expiry tick), the same length for every case, and
	// longer while a probe is still busy catching up.
	time.Sleep(time.Duration(idleTimeout+2) * time.Second)
	if pid != 0 {
		last, still := uint64(0), 0
		for deadline := time.Now().Add(60 * time.Second); still < 2 && time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
			if p1, err = benchproc.CPUTicks(pid); err != nil {
				return fail(err)
			}
			if p1 == last {
				still++
			} else {
				still = 0
			}
			last = p1
		}
	}
	b1, err := readCPUTimes()
	if err != nil {
		return fail(err)
	}
	if res.prog1, err = readProgStats(pair); err != nil {
		return fail(err)
	}
	if res.prog1.id != res.prog0.id {
		return fail(fmt.Errorf("%s: the XDP program on %s changed during the run (id %d, then %d)", k, pair.LinkB, res.prog0.id, res.prog1.id))
	}
	if cfg.pin {
		if n1, err = ticksOf(napi); err != nil {
			return fail(err)
		}
		res.napiCPU = float64(n1-n0) / benchproc.UserHZ
		res.rxCPUBusy = cpuBusy(b0, b1, rxCPU)
	}
	res.busy = float64(b1.busy-b0.busy) / benchproc.UserHZ
	res.softirq = float64(b1.softirq-b0.softirq) / benchproc.UserHZ
	res.probeCPU = float64(p1-p0) / benchproc.UserHZ
	msgs, err := r.finish(pair)
	if err != nil {
		return res, err
	}
	res.stats = r.stats
	if k.noExport() {
		return res, nil
	}
	res.dec = decodeAll(msgs)
	res.fillerPkts = res.dec.sums[fillerID].Packets
	truth := rateTruth(cfg.packets)
	if cfg.xdpSender {
		truth = xdpTruth(cfg.packets)
	}
	for id, w := range truth {
		g := res.dec.sums[id]
		res.counted += g.Packets
		if g == w {
			res.exactFlows++
		}
	}
	return res, nil
}

func pct(a, b uint64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.3f%%", 100*float64(a)/float64(b))
}

// softflowdDrops finds the pcap drop count in `softflowctl statistics`.
func softflowdDrops(stats string) string {
	for _, l := range strings.Split(stats, "\n") {
		if strings.Contains(strings.ToLower(l), "drop") {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

func report(cfg *config, sfVersion, senderName string, nframes, nflows int, accs []accResult, rates []rateResult) {
	w := os.Stdout
	fmt.Fprintf(w, "\n== xdpflow-probe vs softflowd %s: same veth, same traffic (%s, %d CPUs) ==\n", sfVersion, "Linux "+benchstat.KernelRelease(), benchstat.NumCPU())
	fmt.Fprintf(w, "\n-- 1. Accuracy: trafficgen.Mix() x%d + %d distinct UDP flows (%d flows, %d frames) at ~%d pps; export decoded by goflow2\n\n",
		cfg.accScale, cfg.accFlows, nflows, nframes, cfg.accPPS)
	fmt.Fprintf(w, "| probe | flows exact (packets and L3 bytes) | flows with exact packets | flows exact counting bytes after the Ethernet/VLAN header, padding included | packets counted / sent | bytes counted / sent (L3) |\n|---|---|---|---|---|---|\n")
	for _, a := range accs {
		fmt.Fprintf(w, "| %s | %d / %d (%.2f%%) | %d (%.2f%%) | %d (%.2f%%) | %d / %d (%s) | %d / %d (%s) |\n",
			a.kind, a.exact, a.flows, 100*float64(a.exact)/float64(a.flows),
			a.exactPkts, 100*float64(a.exactPkts)/float64(a.flows),
			a.exactL2, 100*float64(a.exactL2)/float64(a.flows),
			a.gotPkts, a.sentPkts, pct(a.gotPkts, a.sentPkts), a.gotBytes, a.sentBytes, pct(a.gotBytes, a.sentBytes))
	}
	for _, a := range accs {
		fmt.Fprintf(w, "\n%s: %d records in %d messages, %d decode errors, sequence numbers (%s) leave %d records unaccounted for; flows missing %d, with fewer packets %d, with more packets %d; flows nobody sent %d (%d packets); filler packets seen %d of %d\n",
			a.kind, a.dec.records, a.dec.messages, a.dec.decodeErrs, a.dec.seqConvention, a.dec.lostRecords, a.missingFlows, a.shortFlows, a.overPkt,
			a.extraFlows, a.extraPkts, a.fillerPkts, fillerBursts*fillerPerBurst)
		if a.dec.firstErr != nil {
			fmt.Fprintf(w, "  first decode error: %v\n", a.dec.firstErr)
		}
		if d := softflowdDrops(a.stats); d != "" {
			fmt.Fprintf(w, "  softflowctl statistics: %s\n", d)
		}
		for _, e := range a.examples {
			fmt.Fprintf(w, "  %s\n", e)
		}
	}

	fmt.Fprintf(w, "\n-- 2+3. Rate and CPU: %d x 64-byte UDP frames over %d flows per run, sent from A with %s as fast as it goes; median of %d runs\n",
		cfg.packets, cfg.rateFlows(), senderName, cfg.reps)
	if cfg.xdpSender && xdpCalls > 0 {
		fmt.Fprintf(w, "xdp sender: %d BPF_PROG_TEST_RUN calls, %.1f ms each on average (each repeats one frame)\n", xdpCalls, xdpCallTime.Seconds()*1000/float64(xdpCalls))
	}
	switch {
	case cfg.xdpSender:
		fmt.Fprintf(w, "veth drops: XDP frames redirected into A that veth could not put on B's ring (A's tx_queue_*_xdp_xmit_errors): lost, not retried; GRO on for B (veth NAPI) in every case\n")
	case cfg.trafgenConf == "":
		fmt.Fprintf(w, "veth drops: frames the veth refused (its XDP ring full); sendto returns ENOBUFS and the Go senders send them again: backpressure, not loss\n")
	}
	fmt.Fprintf(w, "CPU: whole-system busy time (/proc/stat user+nice+system+irq+softirq) from the start of sending until %d s after it ends and the probe process is idle, per million packets sent\n", idleTimeout+2)
	if cfg.progStats {
		fmt.Fprintf(w, "BPF program run time accounting on (--prog-stats): every XDP program run costs its two clock reads more, in every CPU figure (see the empty programs' ns/run in section 4)\n")
	}
	if cfg.pin {
		fmt.Fprintf(w, "--pin: B's NAPI in a thread on CPU %d, the senders on CPU %d: B's ring overflows (veth drops) and all CPU figures are off the one-CPU path the other runs measure\n", rxCPU, sendCPU)
	}
	type key struct {
		k kind
		s int
	}
	group := map[key][]rateResult{}
	for _, r := range rates {
		group[key{r.kind, r.senders}] = append(group[key{r.kind, r.senders}], r)
	}
	mpkt := float64(cfg.packets) / 1e6
	xdpNoLoss, xdpExact := true, true
	maxXDPpps := 0.0
	type ratio struct {
		k                kind
		s                int
		above, total     float64
		aboveOK          bool
		xdpAbove, sfAbov float64
	}
	var ratios []ratio
	for _, s := range cfg.senders {
		fmt.Fprintf(w, "\n%d sender(s):\n\n", s)
		fmt.Fprintf(w, "| case | offered pps | veth drops | B received / sent (each run) | packets counted / sent (each run) | counted / B received (each run) | flows exact (worst run) | whole-system CPU s/Mpkt | minus baseline | probe process s/Mpkt |\n|---|---|---|---|---|---|---|---|---|---|\n")
		base := 0.0
		above := map[kind]float64{}
		total := map[kind]float64{}
		for _, k := range cfg.cases() {
			rs := group[key{k, s}]
			if len(rs) == 0 {
				continue
			}
			var pps, busy, pcpu []float64
			var drops uint64
			var counted, got, ofGot []string
			worst := cfg.rateFlows()
			for _, r := range rs {
				pps = append(pps, r.pps())
				busy = append(busy, r.busy/mpkt)
				pcpu = append(pcpu, r.probeCPU/mpkt)
				drops += r.drops()
				got = append(got, pct(r.delivered(), uint64(r.sent)))
				counted = append(counted, pct(r.counted, uint64(r.sent)))
				ofGot = append(ofGot, pct(r.counted, r.delivered()))
				worst = min(worst, r.exactFlows)
				if k.isXDPFlow() {
					xdpNoLoss = xdpNoLoss && r.counted == uint64(r.sent)
					xdpExact = xdpExact && r.exactFlows == cfg.rateFlows()
					maxXDPpps = max(maxXDPpps, r.pps())
				}
			}
			mb := benchstat.Median(busy)
			total[k] = mb
			switch {
			case k == none:
				base = mb
				fmt.Fprintf(w, "| %s | %.0f | %d | %s | - | - | - | %.3f | - | - |\n", k, benchstat.Median(pps), drops, strings.Join(got, ", "), mb)
			case k.noExport():
				above[k] = mb - base
				fmt.Fprintf(w, "| %s | %.0f | %d | %s | - | - | - | %.3f | %.3f | - |\n", k, benchstat.Median(pps), drops, strings.Join(got, ", "), mb, mb-base)
			default:
				above[k] = mb - base
				fmt.Fprintf(w, "| %s | %.0f | %d | %s | %s | %s | %d / %d | %.3f | %.3f | %.3f |\n", k, benchstat.Median(pps), drops,
					strings.Join(got, ", "), strings.Join(counted, ", "), strings.Join(ofGot, ", "), worst, cfg.rateFlows(), mb, mb-base, benchstat.Median(pcpu))
			}
		}
		fmt.Fprintln(w)
		for _, k := range []kind{xdpflowDrop, xdpflow} {
			if _, ok := total[k]; !ok {
				continue
			}
			rt := ratio{k: k, s: s, total: total[softflowd] / total[k], aboveOK: above[k] > 0, xdpAbove: above[k], sfAbov: above[softflowd]}
			if rt.aboveOK {
				rt.above = above[softflowd] / above[k]
				fmt.Fprintf(w, "softflowd / %s, CPU above baseline: %.3f / %.3f = %.2fx; plain totals: %.3f / %.3f = %.2fx\n",
					k, above[softflowd], above[k], rt.above, total[softflowd], total[k], rt.total)
			} else {
				fmt.Fprintf(w, "softflowd / %s, CPU above baseline: %s is not measurably above the baseline (%.3f s/Mpkt; softflowd %.3f): no ratio; plain totals: %.3f / %.3f = %.2fx\n",
					k, k, above[k], above[softflowd], total[softflowd], total[k], rt.total)
			}
			ratios = append(ratios, rt)
		}
		for _, p := range [][2]kind{{xdpflowDrop, xdpEmptyDrop}, {xdpflow, xdpEmpty}} {
			if floor, ok := above[p[1]]; ok {
				if _, ok := above[p[0]]; ok {
					fmt.Fprintf(w, "context, not the goal's measure: %s above the %s floor: %.3f s/Mpkt\n", p[0], p[1], above[p[0]]-floor)
				}
			}
		}
		for _, r := range group[key{softflowd, s}] {
			if d := softflowdDrops(r.stats); d != "" {
				fmt.Fprintf(w, "softflowd run %d: softflowctl statistics: %s\n", r.rep, d)
			}
		}
	}

	fmt.Fprintf(w, "\n-- Goals (xdpflow-probe)\n")
	yes := func(b bool) string {
		if b {
			return "met"
		}
		return "NOT met"
	}
	fmt.Fprintf(w, "no loss (counted / sent, every xdpflow-probe rate run): %s (offered up to %.0f pps in a single run)\n", yes(xdpNoLoss), maxXDPpps)
	for _, r := range ratios {
		if r.aboveOK {
			fmt.Fprintf(w, "at least 10x less CPU per packet than softflowd, %s, %d sender(s): above baseline %s (%.2fx), plain totals %s (%.2fx)\n",
				r.k, r.s, yes(r.above >= 10), r.above, yes(r.total >= 10), r.total)
		} else {
			fmt.Fprintf(w, "at least 10x less CPU per packet than softflowd, %s, %d sender(s): above baseline: no ratio (%.3f vs %.3f s/Mpkt), plain totals %s (%.2fx)\n",
				r.k, r.s, r.xdpAbove, r.sfAbov, yes(r.total >= 10), r.total)
		}
	}
	exact := len(accs) > 0 && accs[0].kind == xdpflow && accs[0].exact == accs[0].flows && xdpExact
	fmt.Fprintf(w, "100%% exact counts: %s (accuracy run and every rate run)\n", yes(exact))
}

package main

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/xdpflow/xdpflow/internal/cmd/benchstat"
)

// caseStats are a case's medians over its rate runs.
type caseStats struct {
	runs                  []rateResult
	rxSide, cost          float64 // s per million received; cost: minus the baseline's rxSide
	minRxSide, minCost    float64 // the same from each case's least disturbed (lowest) run
	recvFrac, worstCount  float64 // received / sent; the lowest counted / received
	rxCPU, whole, nsPerRn float64 // CPU rxCPU per Mpkt received; whole system per Mpkt sent; XDP ns/run
}

func summarize(rates []rateResult) map[kind]*caseStats {
	by := map[kind]*caseStats{}
	for _, r := range rates {
		if by[r.kind] == nil {
			by[r.kind] = &caseStats{worstCount: 1}
		}
		by[r.kind].runs = append(by[r.kind].runs, r)
	}
	for _, cs := range by {
		var rx, frac, cpu0, whole, ns []float64
		for _, r := range cs.runs {
			rx = append(rx, r.rxSide())
			frac = append(frac, float64(r.received)/float64(r.sent))
			cpu0 = append(cpu0, r.perMpkt(r.rxCPUBusy))
			whole = append(whole, r.wholeBusy/(float64(r.sent)/1e6))
			ns = append(ns, r.nsPerRun())
			if r.received > 0 {
				cs.worstCount = min(cs.worstCount, float64(r.counted)/float64(r.received))
			}
		}
		cs.rxSide, cs.recvFrac, cs.minRxSide = benchstat.Median(rx), benchstat.Median(frac), slices.Min(rx)
		cs.rxCPU, cs.whole, cs.nsPerRn = benchstat.Median(cpu0), benchstat.Median(whole), benchstat.Median(ns)
	}
	if b := by[baseline]; b != nil {
		for _, cs := range by {
			cs.cost, cs.minCost = cs.rxSide-b.rxSide, cs.minRxSide-b.minRxSide
		}
	}
	return by
}

// ratio is cost / of, or why there is none.
func ratio(cost, of float64) string {
	if of <= 0 {
		return "no ratio (xdpflow's cost not above 0)"
	}
	return fmt.Sprintf("%.2fx", cost/of)
}

func (cfg *config) name(k kind) string {
	if v := cfg.version[k]; v != "" {
		return k.String() + " " + v
	}
	return k.String()
}

// report prints the table of monitoring costs and accuracy, then what
// lies behind it.
func report(w io.Writer, cfg *config, nframes, nflows int, accs []accResult, rates []rateResult) {
	by := summarize(rates)
	acc := map[kind]accResult{}
	for _, a := range accs {
		acc[a.kind] = a
	}
	var names []string
	for _, k := range cfg.peers {
		if !k.isXDPFlow() {
			names = append(names, cfg.name(k))
		}
	}
	fmt.Fprintf(w, "\n== Monitoring cost per packet: xdpflow-probe and %s on one veth (Linux %s, %d CPUs, %s) ==\n\n",
		strings.Join(names, ", "), benchstat.KernelRelease(), benchstat.NumCPU(), benchstat.CPUModel())
	fmt.Fprintf(w, "Rate runs: %d 64-byte UDP frames over %d flows per run, entering veth A as XDP frames (BPF_PROG_TEST_RUN live frames, batch %d, one thread on CPU %d) as fast as they go; %d runs per case, interleaved; medians.\n",
		cfg.packets, xdpFrames, xdpBatch, sendCPU, cfg.reps)
	fmt.Fprintf(w, "Receiving side: CPU time of B's veth NAPI thread (threaded NAPI) and of the probe's processes, all pinned to CPU %d (/proc/<pid>/stat), per million frames B received.\n", rxCPU)
	fmt.Fprintf(w, "Monitoring cost: the receiving side minus the baseline's, an XDP program that only returns XDP_DROP on B (the least a host can spend on a frame). Ratios: a cost over xdpflow-probe's, same run.\n")
	fmt.Fprintf(w, "Accuracy run: trafficgen.Mix() x%d + %d distinct UDP flows (%d flows, %d frames) at ~%d pps from an AF_PACKET socket, export decoded by goflow2; flows exact = packets and L3 bytes.\n\n",
		cfg.accScale, cfg.accFlows, nflows, nframes, cfg.accPPS)

	fmt.Fprintln(w, "| probe | receiving side s/Mpkt | monitoring cost s/Mpkt | ÷ xdpflow --action drop | ÷ xdpflow --action pass | B received / sent | rate runs: counted / B received (worst) | accuracy run: flows exact | accuracy run: packets counted / sent |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	xd, xp := by[xdpflowDrop], by[xdpflowPass]
	for _, k := range cfg.cases() {
		cs := by[k]
		if cs == nil {
			continue
		}
		if k == baseline {
			fmt.Fprintf(w, "| %s | %.3f | – | – | – | %.1f%% | – | – | – |\n", k, cs.rxSide, 100*cs.recvFrac)
			continue
		}
		a := acc[k]
		fmt.Fprintf(w, "| %s | %.3f | **%.3f** | %s | %s | %.1f%% | %.3f%% | %d / %d | %d / %d (%s) |\n",
			cfg.name(k), cs.rxSide, cs.cost, ratio(cs.cost, xd.cost), ratio(cs.cost, xp.cost), 100*cs.recvFrac,
			100*cs.worstCount, a.exact, a.flows, a.gotPkts, a.sentPkts, pct(a.gotPkts, a.sentPkts))
	}
	for _, s := range cfg.skipped {
		fmt.Fprintf(w, "| %s | not run: %s | | | | | | | |\n", s.name, s.why)
	}

	goal(w, by)
	behind(w, cfg, by)
	accuracyDetails(w, accs)
}

// goal prints the goal line for softflowd and pmacctd. On this
// VM the host slows both CPUs by up to 2x for seconds at a time, which
// moves a median of a few runs: the verdict is "met" or "NOT met" only
// when the medians and the least disturbed runs agree.
func goal(w io.Writer, by map[kind]*caseStats) {
	fmt.Fprintln(w)
	x := by[xdpflowDrop]
	for _, k := range []kind{softflowd, pmacctd} {
		cs := by[k]
		if cs == nil {
			continue
		}
		verdict := verdict(x.cost > 0 && cs.cost/x.cost >= 10, x.minCost > 0 && cs.minCost/x.minCost >= 10)
		fmt.Fprintf(w, "Goal, xdpflow-probe's monitoring cost at least 10x below %s's: %s (--action drop: %s on the medians, %s on each case's lowest run; --action pass: %s on the medians)\n",
			k, verdict, ratio(cs.cost, x.cost), ratio(cs.minCost, x.minCost), ratio(cs.cost, by[xdpflowPass].cost))
	}
}

func verdict(median, lowest bool) string {
	switch {
	case median && lowest:
		return "met"
	case !median && !lowest:
		return "NOT met"
	}
	return "unsettled (the medians and the lowest runs disagree: host noise)"
}

// behind prints what the table's figures stand on: each run, a
// cross-check, context, drops.
func behind(w io.Writer, cfg *config, by map[kind]*caseStats) {
	fmt.Fprintf(w, "\nEach run, receiving side s/Mpkt (the spread behind the medians):\n")
	for _, k := range cfg.cases() {
		var each []string
		for _, r := range by[k].runs {
			each = append(each, fmt.Sprintf("%.3f", r.rxSide()))
		}
		fmt.Fprintf(w, "  %s: %s\n", k, strings.Join(each, ", "))
	}
	fmt.Fprintf(w, "The same from each case's lowest run (the least disturbed by other work on the host), monitoring cost s/Mpkt and ÷ xdpflow --action drop's:")
	for _, k := range cfg.peers {
		fmt.Fprintf(w, " %s %.3f (%s);", k, by[k].minCost, ratio(by[k].minCost, by[xdpflowDrop].minCost))
	}
	fmt.Fprintf(w, "\nCross-check, CPU %d busy s per million received (all it did, from its idle time in /proc/stat):", rxCPU)
	for _, k := range cfg.cases() {
		fmt.Fprintf(w, " %s %.3f;", k, by[k].rxCPU)
	}
	fmt.Fprintf(w, "\nContext only, whole-system busy s per million frames *sent* (the sender included; B's share of the frames differs from case to case, so no ratio is formed from it):")
	for _, k := range cfg.cases() {
		fmt.Fprintf(w, " %s %.3f;", k, by[k].whole)
	}
	fmt.Fprintf(w, "\nB received / sent below 100%%: frames veth could not put on B's 256-entry ring (A's xdp_xmit_errors), lost before any probe; every cost above is per frame B received.\n")
	if cfg.progStats {
		fmt.Fprintf(w, "XDP program on B (--prog-stats, its clock reads included), ns per run:")
		for _, k := range []kind{baseline, xdpflowDrop, xdpflowPass} {
			fmt.Fprintf(w, " %s %.1f;", k, by[k].nsPerRn)
		}
		fmt.Fprintln(w)
	}
	if xdpCalls > 0 {
		fmt.Fprintf(w, "Sender: %d BPF_PROG_TEST_RUN calls, %.1f ms each on average (each repeats one frame).\n", xdpCalls, xdpCallTime.Seconds()*1000/float64(xdpCalls))
	}
	for _, k := range []kind{softflowd, pmacctd} {
		cs := by[k]
		if cs == nil {
			continue
		}
		var each []string
		for _, r := range cs.runs {
			each = append(each, r.stats)
		}
		fmt.Fprintf(w, "%s, libpcap statistics of each run: %s\n", k, strings.Join(each, "; "))
	}
}

// accuracyDetails prints, per probe, what its export of the accuracy run
// holds and how it differs from the truth.
func accuracyDetails(w io.Writer, accs []accResult) {
	fmt.Fprintf(w, "\n-- Accuracy run, per probe\n\n")
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
		if a.stats != "" {
			fmt.Fprintf(w, "  libpcap statistics: %s\n", a.stats)
		}
		for _, e := range a.examples {
			fmt.Fprintf(w, "  %s\n", e)
		}
	}
}

func pct(a, b uint64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.3f%%", 100*float64(a)/float64(b))
}

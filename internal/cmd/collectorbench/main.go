// Command collectorbench measures xdpflow-collector against goflow2 on the
// same input (issues #5 and #14): records/s from UDP to a JSON lines file
// (and to Kafka, --outputs file,kafka), with 0 loss, on 1 core and on
// more (--cores), plus CPU and allocations per record.
//
// Each collector runs pinned to --cores CPUs from --collector-cpu on
// (taskset -c, GOMAXPROCS the same), with as many UDP sockets on its port
// (xdpflow --udp-workers, goflow2 ?count=); this program, the paced sender
// (--exporters source ports, for the kernel's SO_REUSEPORT hash to spread)
// and (for Kafka) an in-process kfake broker run pinned to --send-cpu.
// For every offered
// rate a fresh collector is started on a free 127.0.0.1 port, the
// pre-generated IPFIX stream is sent for --duration, and the run passes
// when every record sent is in the output, the collector's socket dropped
// nothing (/proc/net/udp), and the output stopped growing within the
// collector's output latency after the last datagram (so that a backlog
// queued in memory does not count as keeping up). The rate is doubled
// until a run fails, then bisected.
//
//	go run ./internal/cmd/collectorbench --help
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/xdpflow/xdpflow/internal/cmd/benchproc"
	"github.com/xdpflow/xdpflow/internal/cmd/benchstat"
	"github.com/xdpflow/xdpflow/probe/export/ipfix"
)

type config struct {
	duration        time.Duration
	reps            int
	rateStart       float64
	rateMax         float64
	bisect          int
	collectors      []string
	outputs         []string
	protocol        string
	flows           int
	v6              float64
	msgBytes        int
	workdir         string
	sendCPU         int
	collectorCPU    int
	kafkaPartitions int
	xdpflowBin      string
	xdpflowBaseBin  string
	cores           []int
	exporters       int
	goflow2Bin      string
	goflow2Version  string
	rcvbuf          int
	xdpflowDefault  bool
	lagSlack        time.Duration
	maxOther        float64
	retries         int
	allocTime       time.Duration
	repo            string
}

func parseFlags() (*config, error) {
	c := &config{}
	fs := pflag.NewFlagSet("collectorbench", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.DurationVar(&c.duration, "duration", 3*time.Second, "how long each run sends at its offered rate")
	fs.IntVar(&c.reps, "reps", 3, "repetitions of each rate search (medians reported)")
	fs.Float64Var(&c.rateStart, "rate-start", 0, "first offered rate, records/s, doubled until a run fails, halved until one passes (0: half what the in-process measurement says one core can do, else 100000)")
	fs.Float64Var(&c.rateMax, "rate-max", 8e6, "highest offered rate tried, records/s")
	fs.IntVar(&c.bisect, "bisect", 4, "bisection steps between the last passing and the first failing rate")
	fs.StringSliceVar(&c.collectors, "collectors", []string{"xdpflow", "goflow2"}, "collectors to run: xdpflow, goflow2")
	fs.StringSliceVar(&c.outputs, "outputs", []string{"file"}, "outputs: file (JSON lines), kafka (JSON messages to an in-process kfake broker)")
	fs.StringVar(&c.protocol, "protocol", "ipfix", "export protocol of the input: ipfix or netflow9")
	fs.IntVar(&c.flows, "flows", 100000, "distinct flows in the input (replayed in a loop; each pass has its own sequence numbers)")
	fs.Float64Var(&c.v6, "v6-fraction", 0.25, "fraction of the flows that are IPv6")
	fs.IntVar(&c.msgBytes, "message-bytes", 1400, "largest export message, bytes (the probe's default)")
	fs.StringVar(&c.workdir, "workdir", "", "directory for the output files (default: a new directory under /dev/shm, else the temp dir); removed at the end")
	fs.IntVar(&c.sendCPU, "send-cpu", 0, "CPU of this program, the sender and the Kafka broker")
	fs.IntVar(&c.collectorCPU, "collector-cpu", 1, "first CPU the collector under test is pinned to (taskset -c)")
	fs.IntVar(&c.kafkaPartitions, "kafka-partitions", 4, "partitions of the Kafka topic")
	fs.StringVar(&c.xdpflowBin, "xdpflow-bin", "", "use this xdpflow-collector instead of building bin/xdpflow-collector")
	fs.StringVar(&c.xdpflowBaseBin, "xdpflow-base-bin", "", "also run this earlier xdpflow-collector (one without --udp-workers, e.g. built from main) on 1 core, as the baseline")
	fs.IntSliceVar(&c.cores, "cores", []int{1, runtime.NumCPU()}, "CPU counts to run each collector on: CPUs --collector-cpu, +1, ... (wrapping, so all of them includes --send-cpu), GOMAXPROCS and UDP sockets as many")
	fs.IntVar(&c.exporters, "exporters", 16, "exporters the input is split among, each with its own source port, flows, templates and sequence numbers (the kernel spreads exporters, not datagrams, over a collector's sockets)")
	fs.StringVar(&c.goflow2Bin, "goflow2-bin", "", "use this goflow2 instead of building it")
	fs.StringVar(&c.goflow2Version, "goflow2-version", "v2.2.6", "goflow2 version to build (go install github.com/netsampler/goflow2/v2/cmd/goflow2@VERSION)")
	fs.IntVar(&c.rcvbuf, "rcvbuf", 0, "socket receive buffer both collectors get, bytes as the kernel reports it (default: net.core.rmem_default, which goflow2 cannot change; xdpflow gets --udp-read-buffer half of it, the kernel doubles it)")
	fs.BoolVar(&c.xdpflowDefault, "xdpflow-default-rcvbuf", false, "also run xdpflow with its own default --udp-read-buffer (32 MiB)")
	fs.DurationVar(&c.lagSlack, "lag-slack", 250*time.Millisecond, "how much longer than its own output latency a collector may take to write its last record")
	fs.Float64Var(&c.maxOther, "max-other-cpu", 0.05, "a failed run during which other programs kept the collector's CPU busy for more than this fraction of the time is repeated")
	fs.IntVar(&c.retries, "retries", 3, "how often a disturbed run is repeated before its result is taken as is")
	fs.DurationVar(&c.allocTime, "alloc-time", 2*time.Second, "time of each in-process allocation measurement (0: skip)")
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: go run ./internal/cmd/collectorbench [flags]\n\n"+
			"Highest loss-free records/s of xdpflow-collector and goflow2 on --cores CPUs,\n"+
			"UDP on 127.0.0.1 to a JSON lines file (and Kafka); see docs/benchmarks.md.\n\n%s", fs.FlagUsages())
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		return nil, err
	}
	if runtime.NumCPU() < 2 || c.sendCPU == c.collectorCPU {
		return nil, fmt.Errorf("need two distinct CPUs (--send-cpu, --collector-cpu); this machine has %d", runtime.NumCPU())
	}
	for _, o := range c.outputs {
		if o != "file" && o != "kafka" {
			return nil, fmt.Errorf("--outputs: %q: want file or kafka", o)
		}
	}
	for _, n := range c.collectors {
		if n != "xdpflow" && n != "goflow2" {
			return nil, fmt.Errorf("--collectors: %q: want xdpflow or goflow2", n)
		}
	}
	if c.reps < 1 || c.duration <= 0 || c.rateStart < 0 || c.flows < 1 || c.exporters < 1 || c.flows < c.exporters {
		return nil, fmt.Errorf("--reps, --duration, --flows and --exporters must be positive, --flows at least --exporters")
	}
	slices.Sort(c.cores)
	c.cores = slices.Compact(c.cores)
	if len(c.cores) == 0 || c.cores[0] < 1 || c.cores[len(c.cores)-1] > runtime.NumCPU() {
		return nil, fmt.Errorf("--cores: want counts from 1 to %d", runtime.NumCPU())
	}
	return c, nil
}

func main() {
	cfg, err := parseFlags()
	if errors.Is(err, pflag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "collectorbench: %v\n", err)
		os.Exit(2)
	}
	benchproc.Main("collectorbench", func() error { return run(cfg) })
}

func run(cfg *config) error {
	started := time.Now()
	var err error
	if cfg.repo, err = repoRoot(); err != nil {
		return err
	}
	if err := buildAll(cfg); err != nil {
		return err
	}
	if cfg.workdir == "" {
		base := "/dev/shm"
		if st, err := os.Stat(base); err != nil || !st.IsDir() {
			base = os.TempDir()
		}
		if cfg.workdir, err = os.MkdirTemp(base, "collectorbench-"); err != nil {
			return err
		}
		defer os.RemoveAll(cfg.workdir)
	}
	rmemDefault, err := readInt("/proc/sys/net/core/rmem_default")
	if err != nil {
		return err
	}
	if cfg.rcvbuf == 0 {
		cfg.rcvbuf = rmemDefault
	}

	proto := ipfix.IPFIX
	if cfg.protocol == "netflow9" || cfg.protocol == "v9" {
		proto = ipfix.NetFlowV9
	}
	// Each exporter its own flows (its own seed): the same total.
	var ins []*input
	var msgs, dataMsgs, total, bytes int
	for i := range cfg.exporters {
		n := cfg.flows / cfg.exporters
		if i < cfg.flows%cfg.exporters {
			n++
		}
		in, err := genInput(proto, n, cfg.v6, cfg.msgBytes, uint64(1+i))
		if err != nil {
			return err
		}
		ins = append(ins, in)
		for _, n := range in.flows {
			if n > 0 {
				dataMsgs++
			}
		}
		msgs, total, bytes = msgs+len(in.msgs), total+in.total, bytes+in.bytes
	}
	in := ins[0] // for the in-process measurements
	fmt.Printf("input: %s, %d exporters (source ports), %d distinct flows (%.0f%% IPv6) in %d messages (%d with flow records, %.1f records and %.0f bytes a message on average), each exporter's templates at the start of its pass and every %d messages\n",
		proto, len(ins), total, cfg.v6*100, msgs, dataMsgs, float64(total)/float64(dataMsgs), float64(bytes)/float64(msgs), templateEvery)

	// From here on this program (sender, broker, bookkeeping) stays on
	// sendCPU; the collectors are started under taskset on collectorCPU.
	if err := benchproc.PinSelf(cfg.sendCPU); err != nil {
		return err
	}

	var cols []*collector
	for _, out := range cfg.outputs {
		if cfg.xdpflowBaseBin != "" {
			b := &collector{name: "xdpflow", base: true, bin: cfg.xdpflowBaseBin, output: out,
				lag: cfg.lagSlack + time.Second, rcvbuf: cfg.rcvbuf / 2, cores: 1}
			cols = append(cols, b)
			if cfg.xdpflowDefault {
				d := *b
				d.rcvbuf = 0
				cols = append(cols, &d)
			}
		}
		for _, cores := range cfg.cores {
			for _, name := range cfg.collectors {
				c := &collector{name: name, output: out, lag: cfg.lagSlack, cores: cores}
				switch name {
				case "xdpflow":
					c.bin = cfg.xdpflowBin
					c.rcvbuf = cfg.rcvbuf / 2
					c.lag += time.Second // --out is flushed every second
				case "goflow2":
					c.bin = cfg.goflow2Bin
					if cfg.rcvbuf != rmemDefault {
						return fmt.Errorf("--rcvbuf %d: goflow2 has no option for its socket buffer, it always gets net.core.rmem_default (%d)", cfg.rcvbuf, rmemDefault)
					}
					if out == "kafka" {
						c.lag += 5 * time.Second // -transport.kafka.flushfreq default
					}
				}
				cols = append(cols, c)
				if name == "xdpflow" && cfg.xdpflowDefault {
					d := *c
					d.rcvbuf = 0
					cols = append(cols, &d)
				}
			}
		}
	}

	// In-process allocations first, before the runs fill the page cache.
	allocs := map[string]allocResult{}
	if cfg.allocTime > 0 {
		for _, name := range cfg.collectors {
			var r allocResult
			if name == "xdpflow" {
				r, err = allocsXdpflow(in, cfg.allocTime)
			} else {
				r, err = allocsGoflow2(in, cfg.allocTime)
			}
			if err != nil {
				return fmt.Errorf("%s in-process: %w", name, err)
			}
			allocs[name] = r
			fmt.Printf("in-process %s: %.0f ns/record, %.2f allocs/record, %.0f B/record (%d records)\n",
				name, r.nsPerRecord, r.allocsPerRec, r.bytesPerRecord, r.records)
		}
	}

	snd := newSender(ins)
	results := map[*collector][]*searchResult{}
	for rep := 1; rep <= cfg.reps; rep++ {
		for _, c := range cols {
			fmt.Printf("\n== rep %d/%d: %s, %d core(s)\n", rep, cfg.reps, c.label(), c.cores)
			start := cfg.rateStart
			if start == 0 {
				start = 100000
				if a, ok := allocs[c.name]; ok && a.nsPerRecord > 0 {
					start = roundRate(0.5e9 / a.nsPerRecord)
				}
				start *= float64(c.cores)
			}
			r, err := search(cfg, c, snd, start)
			if err != nil {
				return fmt.Errorf("%s: %w", c.label(), err)
			}
			results[c] = append(results[c], r)
		}
	}
	report(cfg, cols, results, allocs, in, rmemDefault, time.Since(started))
	return nil
}

// searchResult is one rate search: the best passing run and the lowest
// failing one.
type searchResult struct {
	best      *trialResult // nil: nothing passed
	fail      *trialResult // nil: nothing failed up to --rate-max
	senderCap bool         // stopped by the sender, not the collector
}

// roundRate rounds to two significant digits.
func roundRate(r float64) float64 {
	p := 1.0
	for r/p >= 100 {
		p *= 10
	}
	return max(1000, float64(int(r/p+0.5))*p)
}

func search(cfg *config, c *collector, snd *sender, start float64) (*searchResult, error) {
	sr := &searchResult{}
	try := func(rate float64) (*trialResult, error) {
		var t *trialResult
		for attempt := 0; ; attempt++ {
			var err error
			if t, err = trial(cfg, c, snd, rate); err != nil {
				return nil, err
			}
			printTrial(cfg, t)
			// Only a failure can be blamed on a disturbance.
			if t.pass || t.otherCPU <= cfg.maxOther*cfg.duration.Seconds() || attempt >= cfg.retries {
				break
			}
			fmt.Printf("  (other programs used %.2f s of CPU %d during that run: repeating it)\n", t.otherCPU, cfg.collectorCPU)
			time.Sleep(time.Second)
		}
		if t.pass {
			sr.best = t
		} else if sr.fail == nil || t.rate < sr.fail.rate {
			sr.fail = t
		}
		if !t.pass && t.sent.rate() < 0.97*rate {
			sr.senderCap = true
		}
		return t, nil
	}
	rate := start
	for {
		t, err := try(rate)
		if err != nil {
			return nil, err
		}
		if !t.pass || rate >= cfg.rateMax {
			break
		}
		rate = min(rate*2, cfg.rateMax)
	}
	for sr.best == nil && rate > start/256 {
		rate /= 2
		if _, err := try(rate); err != nil {
			return nil, err
		}
	}
	if sr.best == nil || sr.fail == nil {
		return sr, nil
	}
	for range cfg.bisect {
		if sr.senderCap {
			break
		}
		if _, err := try((sr.best.rate + sr.fail.rate) / 2); err != nil {
			return nil, err
		}
	}
	return sr, nil
}

func printTrial(cfg *config, t *trialResult) {
	verdict := "pass"
	if !t.pass {
		var why []string
		if t.drops > 0 {
			why = append(why, fmt.Sprintf("%d socket drops", t.drops))
		}
		if t.lagged {
			why = append(why, fmt.Sprintf("still writing %.1f s after the last datagram", t.lastGrowth))
		}
		if t.loss() > 0 {
			why = append(why, fmt.Sprintf("%d of %d records missing", t.loss(), t.sent.records))
		}
		verdict = "FAIL (" + strings.Join(why, ", ") + ")"
	}
	fmt.Printf("  offered %9.0f rec/s (sent %9.0f, %6d msgs): written %9d, cpu %5.2f s (%3.0f%% of the core), drops %d, self-reported %d, snmp RcvbufErrors +%d, last write +%.2f s, others on its CPU %.2f s: %s",
		t.rate, t.sent.rate(), t.sent.msgs, t.written, t.cpu, 100*t.cpu/cfg.duration.Seconds(), t.drops, t.selfDrops, t.snmpRcvbuf, t.lastGrowth, t.otherCPU, verdict)
	if t.note != "" {
		fmt.Printf(" [%s]", t.note)
	}
	fmt.Println()
}

func report(cfg *config, cols []*collector, results map[*collector][]*searchResult, allocs map[string]allocResult, in *input, rmem int, took time.Duration) {
	fmt.Printf("\n== results: medians of %d rate searches, each collector on N CPUs from CPU %d on (GOMAXPROCS=N, N UDP sockets), sender on CPU %d, %d exporters, %v per run\n\n",
		cfg.reps, cfg.collectorCPU, cfg.sendCPU, cfg.exporters, cfg.duration)
	type row struct {
		rate, cpuPerM, util, rss float64
		rates                    []string
	}
	rows := map[*collector]row{}
	for _, c := range cols {
		var rates, cpm, util, rss []float64
		var r row
		for _, sr := range results[c] {
			if sr.best == nil {
				r.rates = append(r.rates, "none")
				continue
			}
			b := sr.best
			rates = append(rates, b.rate)
			cpm = append(cpm, b.cpu/(float64(b.sent.records)/1e6))
			util = append(util, b.cpu/cfg.duration.Seconds())
			rss = append(rss, float64(b.rssKB)/1024)
			s := fmt.Sprintf("%.0f", b.rate)
			if sr.senderCap { // each search's own, not the first's
				s += " (sender limit)"
			}
			r.rates = append(r.rates, s)
		}
		r.rate, r.cpuPerM, r.util, r.rss = benchstat.Median(rates), benchstat.Median(cpm), benchstat.Median(util), benchstat.Median(rss)
		rows[c] = r
	}
	// ratio is c's rate over that of the first collector o with match(o).
	ratio := func(c *collector, match func(o *collector) bool) string {
		for _, o := range cols {
			if o != c && match(o) && rows[o].rate > 0 {
				return fmt.Sprintf("%.2fx", rows[c].rate/rows[o].rate)
			}
		}
		return "–"
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "collector → output\tcores\tmax loss-free records/s (median)\truns\tvs goflow2, same cores\tvs xdpflow 1 core\tvs main 1 core\tcollector CPU at that rate (s per s sent)\tCPU s / M records\tpeak RSS MiB\tin-process ns/record\tallocs/record\tB/record")
	for _, c := range cols {
		r := rows[c]
		vsGoflow2, vsOne, vsBase := "–", "–", "–"
		if c.name == "xdpflow" && !c.base {
			vsGoflow2 = ratio(c, func(o *collector) bool { return o.name == "goflow2" && o.output == c.output && o.cores == c.cores })
			vsOne = ratio(c, func(o *collector) bool {
				return o.name == "xdpflow" && !o.base && o.output == c.output && o.cores == 1 && o.rcvbuf == c.rcvbuf
			})
			vsBase = ratio(c, func(o *collector) bool { return o.base && o.output == c.output && o.rcvbuf == c.rcvbuf })
		}
		a, ok := allocs[c.name]
		ns, al, by := "not measured", "not measured", "not measured"
		if ok && !c.base {
			ns, al, by = fmt.Sprintf("%.0f", a.nsPerRecord), fmt.Sprintf("%.2f", a.allocsPerRec), fmt.Sprintf("%.0f", a.bytesPerRecord)
		}
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%s\t%s\t%s\t%s\t%.0f%%\t%.3f\t%.0f\t%s\t%s\t%s\n", c.label(), c.cores, r.rate, strings.Join(r.rates, ", "),
			vsGoflow2, vsOne, vsBase, 100*r.util, r.cpuPerM, r.rss, ns, al, by)
	}
	tw.Flush()
	fmt.Println()
	for _, c := range cols {
		if c.name != "xdpflow" || c.base || c.cores != 1 {
			continue
		}
		for _, o := range cols {
			if o.name == "goflow2" && o.output == c.output && o.cores == 1 && rows[o].rate > 0 {
				ratio := rows[c].rate / rows[o].rate
				verdict := "NOT met"
				if ratio >= 3 {
					verdict = "met"
				}
				buf := "same socket buffer"
				if c.rcvbuf == 0 {
					buf = "xdpflow with its default 32 MiB socket buffer, goflow2 " + sizeStr(cfg.rcvbuf)
				}
				fmt.Printf("goal (≥ 3x goflow2's loss-free records/s on one core), UDP → %s, %s: %s (%.2fx)\n", c.output, buf, verdict, ratio)
			}
		}
	}
	for _, n := range cfg.cores {
		if slices.Contains(collectorCPUs(cfg, n), cfg.sendCPU) {
			fmt.Printf("note: runs on %d cores share CPU %d with the sender, which also carries the kernel's loopback receive path\n", n, cfg.sendCPU)
		}
	}
	fmt.Printf("\nsocket buffer: %s for each socket of both (net.core.rmem_default; xdpflow --udp-read-buffer %d, doubled by the kernel); input %s, %d flows from %d exporters, %.1f records a data message\n",
		sizeStr(cfg.rcvbuf), cfg.rcvbuf/2, in.proto, cfg.flows, cfg.exporters, float64(in.total)/float64(countNonZero(in.flows)))
	fmt.Printf("loss: records sent − records in the output; drops: the collector sockets' drops column in /proc/net/udp, summed\n")
	fmt.Printf("took %v; reproduce: go run ./internal/cmd/collectorbench %s\n", took.Round(time.Second), strings.Join(os.Args[1:], " "))
}

func countNonZero(xs []int) int {
	n := 0
	for _, x := range xs {
		if x > 0 {
			n++
		}
	}
	return n
}

func readInt(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// repoRoot is the directory of the go.mod above the working directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory: run from the repository")
		}
		dir = parent
	}
}

// buildAll builds bin/xdpflow-collector and goflow2 unless given.
func buildAll(cfg *config) error {
	if cfg.xdpflowBin == "" && slices.Contains(cfg.collectors, "xdpflow") {
		cfg.xdpflowBin = filepath.Join(cfg.repo, "bin", "xdpflow-collector")
		fmt.Printf("building %s\n", cfg.xdpflowBin)
		cmd := exec.Command("go", "build", "-o", cfg.xdpflowBin, "./collector")
		cmd.Dir, cmd.Stdout, cmd.Stderr = cfg.repo, os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go build ./collector: %w", err)
		}
	}
	if cfg.goflow2Bin == "" && slices.Contains(cfg.collectors, "goflow2") {
		dir := filepath.Join(os.TempDir(), "collectorbench-goflow2-"+cfg.goflow2Version)
		cfg.goflow2Bin = filepath.Join(dir, "goflow2")
		fmt.Printf("building goflow2 %s into %s\n", cfg.goflow2Version, dir)
		// Outside this module (its go.sum lacks goflow2's cmd-only
		// dependencies): go install pkg@version fetches them from the
		// module proxy and leaves go.mod alone.
		cmd := exec.Command("go", "install", "github.com/netsampler/goflow2/v2/cmd/goflow2@"+cfg.goflow2Version)
		cmd.Dir, cmd.Stdout, cmd.Stderr = os.TempDir(), os.Stdout, os.Stderr
		cmd.Env = append(os.Environ(), "GOBIN="+dir)
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go install goflow2: %w", err)
		}
	}
	return nil
}

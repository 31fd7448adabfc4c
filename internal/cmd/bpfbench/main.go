// Command bpfbench measures the datapath (package bpf's benchmarks,
// BPF_PROG_TEST_RUN) against the floor of the machine it runs on and
// prints one markdown table (`sudo make bench`; docs/benchmarks.md keeps
// its output).
//
// Absolute ns per packet differ from machine to machine and, on a shared
// VM, from minute to minute; a row's cost above an empty XDP program
// (BenchmarkEmptyProgram) measured in the same process is what carries
// over. So each of --rounds rounds runs the floor and every datapath row
// in one test process, and every difference and ratio is formed within a
// round before the median over rounds is taken. Each round holds the
// benchmark lock (--lock) that other benchmark runs on the machine take
// too.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/xdpflow/xdpflow/internal/cmd/benchproc"
	"github.com/xdpflow/xdpflow/internal/cmd/benchstat"
)

type config struct {
	testBin   string
	pkg       string
	rounds    int
	benchtime string
	bench     string
	skip      string
	floor     string
	lock      string
	timeout   time.Duration
	rawDir    string
	from      string
}

func parseFlags(args []string) (*config, error) {
	c := &config{}
	fs := pflag.NewFlagSet("bpfbench", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.StringVar(&c.pkg, "pkg", "./bpf/", "the package whose benchmarks run; its test binary runs in its directory, as under go test")
	fs.StringVar(&c.testBin, "test-bin", "", "run this test binary of --pkg (go test -c) instead of building one")
	fs.IntVar(&c.rounds, "rounds", 5, "rounds: test processes, each running the floor and every row once")
	fs.StringVar(&c.benchtime, "benchtime", "2000000x", "-test.benchtime of each row")
	fs.StringVar(&c.bench, "bench", ".", "-test.bench: the rows that run (the floor is always added)")
	fs.StringVar(&c.skip, "skip", "Drain|Rotate|^BenchmarkLoad$", "-test.skip: rows left out (the drain and rotation, which are userspace and not per packet; the verifier's Load)")
	fs.StringVar(&c.floor, "floor", "EmptyProgram", "the row every other is measured against")
	fs.StringVar(&c.lock, "lock", "/tmp/xdpflow-bench.lock", "file locked (flock) while each round runs, shared with the machine's other benchmark runs; \"\" for none")
	fs.DurationVar(&c.timeout, "round-timeout", 30*time.Minute, "kill a round's process after this long and fail")
	fs.StringVar(&c.rawDir, "raw", "", "also keep each round's go test output in this directory (round-N.txt)")
	fs.StringVar(&c.from, "from", "", "run nothing: print the table of the round-N.txt files a --raw run kept in this directory (the measured code and machine are then unknown)")
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: sudo go run ./internal/cmd/bpfbench [flags] > table.md\n\n"+
			"The datapath benchmarks (BPF_PROG_TEST_RUN) in --rounds processes, each row's\n"+
			"ns/pkt, cost above the floor and ratio to it within each process; one\n"+
			"markdown table on stdout, progress on stderr. See docs/benchmarks.md.\n\n%s", fs.FlagUsages())
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if c.rounds < 1 {
		return nil, fmt.Errorf("--rounds: %d: want at least 1", c.rounds)
	}
	return c, nil
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if errors.Is(err, pflag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bpfbench:", err)
		os.Exit(2)
	}
	benchproc.Main("bpfbench", func() error { return run(cfg) })
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+"bpfbench: "+format+"\n", a...)
}

func run(cfg *config) error {
	if cfg.from != "" {
		return fromRaw(cfg)
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root (BPF_PROG_TEST_RUN): run `sudo make bench`")
	}
	bin, measured, cleanup, err := testBinary(cfg)
	if err != nil {
		return err
	}
	defer cleanup()
	if cfg.rawDir != "" {
		if err := os.MkdirAll(cfg.rawDir, 0o755); err != nil {
			return fmt.Errorf("--raw: %w", err)
		}
	}
	procs := runtime.GOMAXPROCS(0)
	args := []string{"-test.run", "^$", "-test.bench", cfg.floor + "|" + cfg.bench, "-test.benchtime", cfg.benchtime,
		"-test.cpu", strconv.Itoa(procs), "-test.timeout", "0"}
	if cfg.skip != "" {
		args = append(args, "-test.skip", cfg.skip)
	}
	loadFrom := loadAvg()
	var rounds []*round
	var failed []string
	for i := range cfg.rounds {
		logf("round %d of %d", i+1, cfg.rounds)
		out, err := runRound(cfg, bin, args, i)
		if cfg.rawDir != "" {
			if werr := os.WriteFile(filepath.Join(cfg.rawDir, fmt.Sprintf("round-%d.txt", i)), out, 0o644); werr != nil {
				return fmt.Errorf("--raw: %w", werr)
			}
		}
		rd, perr := parseRound(bytes.NewReader(out), procs)
		if perr != nil {
			return fmt.Errorf("round %d: %w", i, perr)
		}
		if _, ok := rd.ns(cfg.floor); !ok {
			return fmt.Errorf("round %d: no %s row (err %v); output:\n%s", i, cfg.floor, err, tail(out, 40))
		}
		if err != nil {
			// A failed row fails the process, and the other rows still ran:
			// the table leaves that row out and names it.
			logf("round %d: %v; failed rows: %v", i, err, rd.failed)
			if len(rd.failed) == 0 {
				return fmt.Errorf("round %d: %w; output:\n%s", i, err, tail(out, 40))
			}
		}
		for _, f := range rd.failed {
			failed = appendNew(failed, f)
		}
		rounds = append(rounds, rd)
	}
	rep := report{
		floor:    cfg.floor,
		rounds:   cfg.rounds,
		machine:  machine(),
		loadFrom: loadFrom,
		loadTo:   loadAvg(),
		measured: measured,
		command:  command(),
		failed:   failed,
	}
	writeTable(os.Stdout, summarize(rounds, cfg.floor), rep)
	if len(failed) > 0 {
		return fmt.Errorf("rows failed: %s", strings.Join(failed, ", "))
	}
	return nil
}

// testBinary is --test-bin, or the package's test binary built into a
// temporary directory (removed by cleanup); measured says which code.
func testBinary(cfg *config) (bin, measured string, cleanup func(), err error) {
	cleanup = func() {}
	if cfg.testBin != "" {
		abs, err := filepath.Abs(cfg.testBin)
		if err != nil {
			return "", "", cleanup, fmt.Errorf("--test-bin: %w", err)
		}
		return abs, "test binary " + cfg.testBin, cleanup, nil
	}
	dir, err := os.MkdirTemp("", "bpfbench-")
	if err != nil {
		return "", "", cleanup, fmt.Errorf("temporary directory: %w", err)
	}
	cleanup = func() { os.RemoveAll(dir) }
	bin = filepath.Join(dir, "bpf.test")
	logf("building %s's test binary", cfg.pkg)
	cmd := exec.Command("go", "test", "-c", "-o", bin, cfg.pkg)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", "", cleanup, fmt.Errorf("go test -c %s: %w", cfg.pkg, err)
	}
	return bin, "commit " + gitDescribe(), cleanup, nil
}

// runRound runs the test binary once, under the lock, in the package's
// directory (where go test would run it).
func runRound(cfg *config, bin string, args []string, i int) ([]byte, error) {
	unlock, err := lock(cfg.lock)
	if err != nil {
		return nil, err
	}
	defer unlock()
	dir, err := filepath.Abs(cfg.pkg)
	if err != nil {
		return nil, fmt.Errorf("--pkg: %w", err)
	}
	p, err := benchproc.StartIn(dir, "bpf.test", nil, append([]string{bin}, args...)...)
	if err != nil {
		return nil, err
	}
	err = p.Wait(cfg.timeout)
	return []byte(p.Out.String()), err
}

// lock takes an exclusive flock on path, saying so when it has to wait
// for another run; unlock releases it.
func lock(path string) (unlock func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		logf("waiting for %s (another benchmark holds it)", path)
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
	}
	return func() { f.Close() }, nil // closing the file releases the lock
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func machine() string {
	s := fmt.Sprintf("Linux %s, %d CPUs", benchstat.KernelRelease(), benchstat.NumCPU())
	if m := benchstat.CPUModel(); m != "" {
		s += " (" + m + ")"
	}
	return s
}

// gitDescribe is the commit of the working tree ("d361581", "-dirty" if
// it has changes), or "unknown".
func gitDescribe() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty", "--abbrev=7").Output()
	if err != nil {
		return "unknown (not a git checkout)"
	}
	return strings.TrimSpace(string(out))
}

// command is how this run was started, to print with its table. Under
// `go run` the program's path is a temporary one: it is given as the
// package.
func command() string {
	args := os.Args[1:]
	for i, a := range args {
		if strings.ContainsAny(a, " |*$^()") {
			args[i] = "'" + a + "'"
		}
	}
	return strings.TrimSpace("go run ./internal/cmd/bpfbench " + strings.Join(args, " "))
}

func tail(b []byte, lines int) string {
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

func appendNew(xs []string, x string) []string {
	for _, y := range xs {
		if y == x {
			return xs
		}
	}
	return append(xs, x)
}

// fromRaw prints the table of the rounds a --raw run kept, in round
// order: for a run stopped before its last round, or to summarize again.
func fromRaw(cfg *config) error {
	var rounds []*round
	var failed []string
	for i := 0; ; i++ {
		b, err := os.ReadFile(filepath.Join(cfg.from, fmt.Sprintf("round-%d.txt", i)))
		if errors.Is(err, os.ErrNotExist) {
			break
		}
		if err != nil {
			return fmt.Errorf("--from: %w", err)
		}
		rd, err := parseRound(bytes.NewReader(b), runtime.GOMAXPROCS(0))
		if err != nil {
			return fmt.Errorf("--from: round %d: %w", i, err)
		}
		if _, ok := rd.ns(cfg.floor); !ok {
			return fmt.Errorf("--from: round %d has no %s row", i, cfg.floor)
		}
		for _, f := range rd.failed {
			failed = appendNew(failed, f)
		}
		rounds = append(rounds, rd)
	}
	if len(rounds) == 0 {
		return fmt.Errorf("--from: no round-0.txt in %s", cfg.from)
	}
	writeTable(os.Stdout, summarize(rounds, cfg.floor), report{
		floor: cfg.floor, rounds: len(rounds), machine: machine() + " (where summarized)", loadFrom: "?", loadTo: "?",
		measured: "the rounds kept in " + cfg.from, command: command(), failed: failed,
	})
	return nil
}

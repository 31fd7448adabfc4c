package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xdpflow/xdpflow/internal/cmd/benchproc"
	"github.com/xdpflow/xdpflow/internal/testkit/freeport"
)

// collector is one program under test with one output.
type collector struct {
	name   string // xdpflow, goflow2
	base   bool   // xdpflow: the --xdpflow-base-bin baseline (no --udp-workers)
	output string // file, kafka
	bin    string
	cores  int // CPUs, GOMAXPROCS and UDP sockets
	rcvbuf int // xdpflow only: --udp-read-buffer (0: goflow2, kernel default)
	// lag is how long after the last datagram the output may still grow
	// and count as keeping up: the program's own output latency (xdpflow
	// flushes its file every second; goflow2 writes each record at once
	// but its Kafka producer flushes every 5 s) plus slack.
	lag time.Duration
}

func (c *collector) label() string {
	s := c.name + " → " + c.output
	if c.base {
		s = "xdpflow (base) → " + c.output
	}
	if c.name == "xdpflow" {
		if c.rcvbuf != 0 {
			s += fmt.Sprintf(" (socket buffer %s)", sizeStr(2*c.rcvbuf))
		} else {
			s += " (default --udp-read-buffer 32 MiB)"
		}
	}
	return s
}

// collectorCPUs are the n CPUs a collector runs on: --collector-cpu and
// the next ones, wrapping.
func collectorCPUs(cfg *config, n int) []int {
	var cpus []int
	for i := range n {
		cpus = append(cpus, (cfg.collectorCPU+i)%runtime.NumCPU())
	}
	return cpus
}

// argv is the command line (under taskset) for a run on port.
func (c *collector) argv(cfg *config, port int, out string, kafka *kafkaSink) []string {
	var cpus []string
	for _, n := range collectorCPUs(cfg, c.cores) {
		cpus = append(cpus, strconv.Itoa(n))
	}
	argv := []string{"taskset", "-c", strings.Join(cpus, ","), c.bin}
	switch c.name {
	case "xdpflow":
		argv = append(argv, "--listen", fmt.Sprintf("udp://127.0.0.1:%d", port), "--log-level", "info")
		if !c.base {
			argv = append(argv, "--udp-workers", strconv.Itoa(c.cores))
		}
		if c.rcvbuf > 0 {
			argv = append(argv, "--udp-read-buffer", strconv.Itoa(c.rcvbuf))
		}
		if c.output == "file" {
			argv = append(argv, "--out", out)
		} else {
			argv = append(argv, "--kafka-brokers", kafka.addr, "--kafka-topic", kafka.topic, "--kafka-format", "json")
		}
	case "goflow2":
		argv = append(argv, "-listen", fmt.Sprintf("netflow://127.0.0.1:%d?count=%d", port, c.cores), "-addr", "", "-format", "json")
		if c.output == "file" {
			argv = append(argv, "-transport", "file", "-transport.file", out)
		} else {
			argv = append(argv, "-transport", "kafka", "-transport.kafka.brokers", kafka.addr, "-transport.kafka.topic", kafka.topic)
		}
	}
	return argv
}

// trialResult is one run at one offered rate.
type trialResult struct {
	rate       float64 // requested records/s
	sent       sendResult
	written    int64   // records in the output (lines, or Kafka records)
	drops      uint64  // the socket's drops, /proc/net/udp
	selfDrops  int64   // xdpflow's own kernel_drops (SO_RXQ_OVFL), -1 if not reported
	snmpRcvbuf uint64  // Udp RcvbufErrors delta, whole system
	lagged     bool    // the output still grew past the allowed lag
	lastGrowth float64 // s after the last datagram when the output last grew
	cpu        float64 // collector utime+stime over the run, s
	rssKB      int64
	otherCPU   float64 // busy time of the collector's CPU not spent by the collector, while sending, s
	pass       bool
	note       string
}

func (t *trialResult) loss() int64 { return int64(t.sent.records) - t.written }

var (
	reKernelDrops = regexp.MustCompile(`listener totals.*kernel_drops=(\d+)`)
	reLost        = regexp.MustCompile(`decode totals.* lost=(\d+)`)
)

// trial runs c once at rate records/s for cfg.duration.
func trial(cfg *config, c *collector, snd *sender, rate float64) (*trialResult, error) {
	res := &trialResult{rate: rate, selfDrops: -1}
	port, err := freeport.Find("udp")
	if err != nil {
		return nil, err
	}
	out := filepath.Join(cfg.workdir, fmt.Sprintf("%s-%d.json", c.name, port))
	defer os.Remove(out)
	var kafka *kafkaSink
	if c.output == "kafka" {
		if kafka, err = startKafka(cfg); err != nil {
			return nil, err
		}
		defer kafka.close()
	}
	p, err := benchproc.Start(c.name, []string{fmt.Sprintf("GOMAXPROCS=%d", c.cores)}, c.argv(cfg, port, out, kafka)...)
	if err != nil {
		return nil, err
	}
	defer p.Kill()
	if err := waitUDP(p, port, 10*time.Second); err != nil {
		return nil, err
	}
	if kafka != nil {
		// Let the producers connect and learn the topic's metadata.
		time.Sleep(500 * time.Millisecond)
	}

	snd.reset()
	if err := snd.dial(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}); err != nil {
		return nil, err
	}
	defer snd.close()
	if err := snd.prime(); err != nil {
		return nil, err
	}
	time.Sleep(100 * time.Millisecond)
	rcv0, _, _ := snmpUDP()
	cpu0, err := procCPU(p.PID())
	if err != nil {
		return nil, err
	}
	cpus := collectorCPUs(cfg, c.cores)
	busy0, err := cpuBusy(cpus)
	if err != nil {
		return nil, err
	}
	res.sent, err = snd.run(rate, cfg.duration)
	if err != nil {
		res.note = err.Error()
	}
	sendEnd := time.Now()
	busy1, _ := cpuBusy(cpus)
	cpuSend, _ := procCPU(p.PID())
	// What else ran on the collector's CPUs while sending: other programs
	// on this machine disturb a collector with a small socket buffer. Not
	// known when the sender shares them.
	if !slices.Contains(cpus, cfg.sendCPU) {
		res.otherCPU = (busy1 - busy0) - (cpuSend - cpu0)
	}

	// Dropped already: no need to wait for the output.
	early := false
	if sock, _ := readUDPSocket(port); sock.drops > 0 {
		early = true
	}

	// Watch the output until it has been still for long enough.
	progress := func() int64 {
		if kafka != nil {
			n, _ := kafka.records()
			return n
		}
		st, err := os.Stat(out)
		if err != nil {
			return 0
		}
		return st.Size()
	}
	last, lastChange := progress(), sendEnd
	settle := 500 * time.Millisecond
	for !early && (time.Since(sendEnd) < c.lag+settle || time.Since(lastChange) < settle) {
		if time.Since(sendEnd) > c.lag+10*time.Second {
			break // hopelessly behind
		}
		time.Sleep(50 * time.Millisecond)
		if v := progress(); v != last {
			last, lastChange = v, time.Now()
		}
	}
	res.lastGrowth = lastChange.Sub(sendEnd).Seconds()
	res.lagged = lastChange.Sub(sendEnd) > c.lag
	res.cpu, _ = procCPU(p.PID())
	res.cpu -= cpu0
	res.rssKB = procRSS(p.PID())
	sock, _ := readUDPSocket(port)
	res.drops = sock.drops
	if sock.rxQ > 0 {
		res.note = join(res.note, fmt.Sprintf("%d bytes still queued on the socket", sock.rxQ))
	}
	if res.lagged || early {
		// It would work through its backlog at SIGTERM: not wanted.
		p.Kill()
	} else if err := p.Stop(30 * time.Second); err != nil {
		res.note = join(res.note, err.Error())
	}
	rcv1, _, _ := snmpUDP()
	res.snmpRcvbuf = rcv1 - rcv0
	if m := reKernelDrops.FindStringSubmatch(p.Out.String()); m != nil {
		res.selfDrops, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := reLost.FindStringSubmatch(p.Out.String()); m != nil && m[1] != "0" {
		res.note = join(res.note, "xdpflow counted "+m[1]+" records lost by sequence number")
	}
	if kafka != nil {
		res.written, err = kafka.records()
		if err != nil {
			return nil, err
		}
	} else if res.written, err = countLines(out); err != nil {
		return nil, err
	}
	res.pass = !res.lagged && res.drops == 0 && res.written == int64(res.sent.records) &&
		res.sent.errs == 0 && res.sent.rate() >= 0.97*rate
	if res.sent.rate() < 0.97*rate {
		res.note = join(res.note, fmt.Sprintf("sender reached only %.0f records/s", res.sent.rate()))
	}
	if res.written > int64(res.sent.records) {
		res.note = join(res.note, fmt.Sprintf("%d records more than sent", res.written-int64(res.sent.records)))
	}
	return res, nil
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// countLines counts the newlines of a file.
func countLines(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		if os.IsNotExist(err) {
			return 0, nil
		}
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 4<<20)
	var n int64
	for {
		k, err := f.Read(buf)
		n += int64(bytes.Count(buf[:k], []byte{'\n'}))
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// procRSS is VmHWM (peak resident set) of pid in KiB, 0 if unknown.
func procRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	m := regexp.MustCompile(`VmHWM:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		return 0
	}
	n, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return n
}

func sizeStr(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return strconv.Itoa(n) + " B"
}

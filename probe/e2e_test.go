package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/netsampler/goflow2/v2/decoders/netflow"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/gopacket/gopacket/pcapgo"

	"google.golang.org/protobuf/proto"

	"github.com/xdpflow/xdpflow/internal/syncbuf"
	"github.com/xdpflow/xdpflow/internal/testkit/flowcheck"
	"github.com/xdpflow/xdpflow/internal/testkit/kafkacheck"
	"github.com/xdpflow/xdpflow/internal/testkit/testnet"
	"github.com/xdpflow/xdpflow/internal/testkit/trafficgen"
	"github.com/xdpflow/xdpflow/schemas"
)

// The end-to-end test runs the real xdpflow-probe binary in a test network
// namespace, sends a known mix across a veth, and checks the flows that
// independent decoders read from its IPFIX and NetFlow v9 export (goflow2's
// decoders; nfdump too when installed) against the truth: every flow there,
// packets and bytes summed over its records equal to what was sent, and
// nothing else.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// buildProbe builds the binary once per test run.
func buildProbe(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "xdpflow-probe")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "xdpflow-probe")
		cmd := exec.Command("go", "build", "-o", binPath, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0") // as `make build`: static, capabilities droppable
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build probe: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// Bad setups get one clear line saying what to do, and a non-zero exit.
func TestStartupErrors(t *testing.T) {
	bin := buildProbe(t)
	cases := []struct {
		name string
		cmd  []string
		want string
	}{
		{"missing interface", []string{bin, "-i", "xf-nosuch0", "--stdout"}, "check the name with `ip link`"},
		{"not root", []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", bin, "-i", "lo", "--stdout"},
			"run as root, or grant CAP_BPF"},
		{"bad flag value", []string{bin, "-i", "lo", "--stdout", "--idle-timeout", "soon"}, "idle-timeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := exec.Command(tc.cmd[0], tc.cmd[1:]...).CombinedOutput()
			if err == nil {
				t.Fatalf("exit 0; output:\n%s", out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("output %q, want it to say %q", out, tc.want)
			}
		})
	}
}

// collector listens on the loopback of the probe's namespace.
func collector(t *testing.T, pair *testnet.Pair) *flowcheck.Collector {
	t.Helper()
	conn, err := pair.ListenUDP(pair.B)
	if err != nil {
		t.Fatal(err)
	}
	return flowcheck.Collect(conn, nil)
}

// decode decodes every message with goflow2 and sums records per flow;
// it also counts the end reasons seen.
func decode(t *testing.T, who string, msgs [][]byte) (flowcheck.Sums, map[schemas.EndReason]int) {
	t.Helper()
	d := flowcheck.NewDecoder()
	got := flowcheck.Sums{}
	reasons := map[schemas.EndReason]int{}
	for i, m := range msgs {
		recs, err := d.Decode(m)
		if err != nil {
			t.Errorf("%s: message %d: %v", who, i, err)
		}
		for j := range recs {
			got.AddRecord(&recs[j])
			reasons[recs[j].EndReason]++
		}
	}
	return got, reasons
}

func compare(t *testing.T, who string, got, want flowcheck.Sums) {
	t.Helper()
	for _, d := range flowcheck.Diff(got, want) {
		t.Errorf("%s: %s", who, d)
	}
}

func TestEndToEnd(t *testing.T) {
	pair := newTestPair(t, "xfe")

	ipfixC := collector(t, pair)
	v9C := collector(t, pair)
	nf := flowcheck.StartNfcapd(t, pair)
	pcapPath := filepath.Join(t.TempDir(), "samples.pcap")
	kb := kafkacheck.Start(t, 3, []string{"xdpflow-flows", "xdpflow-samples"}, func(fn func() error) error { return pair.In(pair.B, fn) })
	pr := startProbe(t, pair, "--ipfix", ipfixC.URL(), "--netflow9", v9C.URL(), "--stdout", "--ipfix", nf.URL,
		"--idle-timeout", "2s", "--active-timeout", "3s", "--drain-interval", "200ms",
		"--sample-rate", "10", "--pcap", pcapPath,
		"--kafka-brokers", kb.Addr, "--kafka-samples-topic", "xdpflow-samples", "--kafka-spool-dir", t.TempDir())
	stdout, stderr := &pr.stdout, &pr.stderr

	// The truth, per flow.
	want := flowcheck.Sums{}
	mix, err := trafficgen.Build(trafficgen.Mix(), pair.MACA, pair.MACB, 1)
	if err != nil {
		t.Fatal(err)
	}
	// A long flow, sent in bursts across more than the active timeout.
	long, err := trafficgen.Build([]trafficgen.Flow{{Src: netip.MustParseAddr("198.18.5.5"), Dst: netip.MustParseAddr("198.18.0.2"),
		Proto: 17, SrcPort: 6000, DstPort: 6001, Payload: 500, Packets: 50}}, pair.MACA, pair.MACB, 1)
	if err != nil {
		t.Fatal(err)
	}
	const bursts = 9
	want.AddFrames(mix)
	want.AddSent(long[0], bursts)

	if err := pair.In(pair.A, func() error {
		s, err := trafficgen.NewSender(pair.IfindexA)
		if err != nil {
			return err
		}
		defer s.Close()
		if _, err := s.SendAll(mix); err != nil {
			return err
		}
		for _, j := range trafficgen.JunkMix(pair.MACA, pair.MACB) {
			for i := 0; i < j.Packets; i++ {
				if err := s.Send(j.Frame); err != nil {
					return err
				}
			}
		}
		for i := 0; i < bursts; i++ {
			if _, err := s.SendAll(long); err != nil {
				return err
			}
			time.Sleep(500 * time.Millisecond)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// Let idle timeouts expire the quiet flows, then send one more burst
	// and stop the probe at once: that burst must come out as a forced end.
	time.Sleep(2500 * time.Millisecond)
	checkMetrics(t, pair, want)
	want.AddSent(long[0], 1)
	send(t, pair, long)
	time.Sleep(50 * time.Millisecond) // the veth delivers asynchronously
	pr.stop(t)
	time.Sleep(100 * time.Millisecond)

	ipfixMsgs, v9Msgs := ipfixC.Stop(), v9C.Stop()
	for _, x := range []struct {
		port uint16
		msgs [][]byte
	}{{4739, ipfixMsgs}, {2055, v9Msgs}} {
		if _, err := flowcheck.Tshark(t.TempDir(), x.port, x.msgs); err != nil {
			t.Errorf("Wireshark on the export to port %d: %v", x.port, err)
		}
	}
	nSamples := checkSamples(t, pcapPath, stderr.String())

	got, reasons := decode(t, "IPFIX", ipfixMsgs)
	records := 0
	for _, n := range reasons {
		records += n
	}
	checkKafka(t, kb, records, nSamples, pair.LinkB, want)
	compare(t, "IPFIX (goflow2)", got, want)
	for _, r := range []schemas.EndReason{schemas.EndIdle, schemas.EndActive, schemas.EndOfFlow, schemas.EndForced} {
		if reasons[r] == 0 {
			t.Errorf("IPFIX: no record with end reason %s; got %v", r, reasons)
		}
	}
	got9, _ := decode(t, "NetFlow v9", v9Msgs)
	compare(t, "NetFlow v9 (goflow2)", got9, want)

	compare(t, "IPFIX (nfdump)", nf.Flows(t), want.WithoutL2()) // nfdump has no layer-2 octets

	gotJSON := flowcheck.Sums{}
	sc := bufio.NewScanner(strings.NewReader(stdout.String()))
	for sc.Scan() {
		var f schemas.Flow
		if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
			t.Fatalf("--stdout line %q: %v", sc.Text(), err)
		}
		gotJSON.AddRecord(&f)
		if f.TimeFlowStartNs > f.TimeFlowEndNs || time.Since(time.Unix(0, f.TimeFlowEndNs)) > time.Minute || time.Unix(0, f.TimeFlowEndNs).After(time.Now()) {
			t.Errorf("record times off: start %v end %v", time.Unix(0, f.TimeFlowStartNs), time.Unix(0, f.TimeFlowEndNs))
		}
	}
	compare(t, "--stdout JSON", gotJSON, want)
	if t.Failed() {
		t.Logf("probe log:\n%s", stderr.String())
	}
}

// newTestPair makes the two namespaces of one test (root only).
func newTestPair(t *testing.T, prefix string) *testnet.Pair {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the end-to-end test needs root (network namespaces, XDP): run `sudo make test`")
	}
	pair, err := testnet.NewPair(fmt.Sprintf("%s%d", prefix, os.Getpid()%100000), testnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pair.Close() })
	return pair
}

// probeProc is the probe binary running in side b of a pair.
type probeProc struct {
	cmd            *exec.Cmd
	stdout, stderr syncbuf.Buffer
	exited         chan error
}

// startProbe starts the probe on the pair's b side (native XDP) with
// args, and waits until it has attached.
func startProbe(t *testing.T, pair *testnet.Pair, args ...string) *probeProc {
	t.Helper()
	p := &probeProc{exited: make(chan error, 1)}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", pair.NsName("b"), buildProbe(t), "-i", pair.LinkB, "--xdp-mode", "native",
		"--state-dir", stateDir(t, pair)}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		p.exited <- <-p.exited
	})
	// The last start-up step, after every interface is attached.
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(p.stderr.String(), "capabilities dropped") &&
		!strings.Contains(p.stderr.String(), "capabilities not dropped"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("probe did not start:\n%s", p.stderr.String())
		}
	}
	return p
}

// stateDir is the test's flow state directory: the same for every probe
// a test starts on pair (a restart finds what the last one left), removed
// at the end.
func stateDir(t *testing.T, pair *testnet.Pair) string {
	dir := filepath.Join(os.TempDir(), "xdpflow-test-state", pair.Name)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// stop sends SIGTERM and waits for a clean exit.
func (p *probeProc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		p.exited <- err
		if err != nil {
			t.Fatalf("probe exit: %v\n%s", err, p.stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("probe did not exit on SIGTERM:\n%s", p.stderr.String())
	}
}

// send sends frames from side a of the pair.
func send(t *testing.T, pair *testnet.Pair, frames []trafficgen.Built) {
	t.Helper()
	if err := trafficgen.SendFrom(func(fn func() error) error { return pair.In(pair.A, fn) }, pair.IfindexA, frames); err != nil {
		t.Fatal(err)
	}
}

// TestLeastPrivilege: as an unprivileged user given only CAP_BPF,
// CAP_NET_ADMIN and CAP_PERFMON, the probe runs and counts exactly, and
// once attached it keeps CAP_BPF alone; without CAP_PERFMON it says so.
func TestLeastPrivilege(t *testing.T) {
	bin := buildProbe(t)
	pair := newTestPair(t, "xfl")
	col := collector(t, pair)
	as := func(caps string, args ...string) *exec.Cmd {
		return exec.Command("ip", append([]string{"netns", "exec", pair.NsName("b"), "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
			"--inh-caps=-all," + caps, "--ambient-caps=" + caps, bin, "-i", pair.LinkB, "--ipfix", col.URL(), "--pin-path", "", "--metrics", ""}, args...)...)
	}
	out, err := as("+bpf,+net_admin").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "grant CAP_PERFMON") {
		t.Errorf("without CAP_PERFMON: exit %v, output:\n%s", err, out)
	}

	cmd := as("+bpf,+net_admin,+perfmon", "--idle-timeout", "1s")
	var stderr syncbuf.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(stderr.String(), "capabilities dropped"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("probe did not start with the three capabilities:\n%s", stderr.String())
		}
	}
	// ip netns exec and setpriv exec in place: the pid is the probe's.
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	const capBPF = "0000008000000000"
	for _, want := range []string{"Uid:\t65534", "CapEff:\t" + capBPF, "CapPrm:\t" + capBPF, "CapInh:\t0000000000000000", "CapAmb:\t0000000000000000", "NoNewPrivs:\t1"} {
		if !strings.Contains(string(status), want) {
			t.Errorf("/proc/PID/status lacks %q:\n%s", want, status)
		}
	}
	mix, err := trafficgen.Build(trafficgen.Mix(), pair.MACA, pair.MACB, 1)
	if err != nil {
		t.Fatal(err)
	}
	want := flowcheck.Sent(mix)
	send(t, pair, mix)
	time.Sleep(100 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("probe exit: %v\n%s", err, stderr.String())
	}
	time.Sleep(100 * time.Millisecond)
	got, _ := decode(t, "IPFIX", col.Stop())
	compare(t, "IPFIX from an unprivileged probe", got, want)
	if t.Failed() {
		t.Logf("probe log:\n%s", stderr.String())
	}
}

// TestPinnedRestart: with --pin-path, a stopped probe leaves the program
// counting; the next start exports what it counted meanwhile, and
// `--detach` with an exporter exports the rest and removes everything.
// Four rounds of traffic (one while no probe runs, one before --detach)
// add up exactly at the collector.
func TestPinnedRestart(t *testing.T) {
	bin := buildProbe(t)
	pair := newTestPair(t, "xfp")
	// `ip netns exec` remounts /sys, so the pins go to a bpffs of the
	// test's own, mounted outside /sys.
	fsDir := t.TempDir()
	if err := unix.Mount("bpf", fsDir, "bpf", 0, "mode=0700"); err != nil {
		t.Fatalf("mount bpffs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(fsDir, unix.MNT_DETACH) })
	pins := filepath.Join(fsDir, "xdpflow", pair.LinkB)
	col := collector(t, pair)
	args := []string{"--ipfix", col.URL(), "--pin-path", pins, "--idle-timeout", "1s", "--drain-interval", "200ms"}

	mix, err := trafficgen.Build(trafficgen.Mix(), pair.MACA, pair.MACB, 1)
	if err != nil {
		t.Fatal(err)
	}
	want := flowcheck.Sums{}
	round := func() {
		want.AddFrames(mix)
		send(t, pair, mix)
		time.Sleep(100 * time.Millisecond)
	}
	attached := func() bool {
		var on bool
		pair.In(pair.B, func() error {
			l, err := netlink.LinkByName(pair.LinkB)
			on = err == nil && l.Attrs().Xdp != nil && l.Attrs().Xdp.Attached
			return err
		})
		return on
	}

	first := startProbe(t, pair, args...)
	round()
	first.stop(t)
	if !attached() {
		t.Fatalf("the pinned program was detached at exit:\n%s", first.stderr.String())
	}
	round() // no probe running: counted in the pinned table

	second := startProbe(t, pair, args...)
	if log := second.stderr.String(); !strings.Contains(log, "carrying on with the pinned datapath") || !strings.Contains(log, "took_over_pinned_link=true") {
		t.Errorf("second start did not take over the pins:\n%s", log)
	}
	round()
	second.stop(t)
	round() // again while none runs, exported by --detach

	out, err := exec.Command("ip", "netns", "exec", pair.NsName("b"), bin, "--detach", "-i", pair.LinkB,
		"--ipfix", col.URL(), "--pin-path", pins, "--state-dir", stateDir(t, pair)).CombinedOutput()
	if err != nil {
		t.Fatalf("--detach: %v\n%s", err, out)
	}
	if attached() {
		t.Error("still attached after --detach")
	}
	if _, err := os.Stat(pins); !os.IsNotExist(err) {
		t.Errorf("pins left after --detach: %v", err)
	}
	time.Sleep(100 * time.Millisecond)
	got, _ := decode(t, "IPFIX", col.Stop())
	compare(t, "IPFIX across restarts", got, want)
	if t.Failed() {
		t.Logf("first:\n%s\nsecond:\n%s\ndetach:\n%s", first.stderr.String(), second.stderr.String(), out)
	}
}

// TestKafkaSpoolAcrossRestart: the broker is away while the probe runs
// and stops, so the flows wait in the spool; the next start of the probe
// sends them, and the topic then holds exactly the traffic.
func TestKafkaSpoolAcrossRestart(t *testing.T) {
	bin := buildProbe(t)
	pair := newTestPair(t, "xfk")
	kb := kafkacheck.Start(t, 3, []string{"xdpflow-flows"}, func(fn func() error) error { return pair.In(pair.B, fn) })

	// A topic that does not exist is a clear error at start.
	out, err := exec.Command("ip", "netns", "exec", pair.NsName("b"), bin, "-i", pair.LinkB,
		"--kafka-brokers", kb.Addr, "--kafka-topic", "nosuch", "--state-dir", stateDir(t, pair)).CombinedOutput()
	if err == nil || !strings.Contains(string(out), `kafka topic "nosuch" does not exist`) {
		t.Errorf("missing topic: exit %v, output:\n%s", err, out)
	}

	kb.Stop()
	args := []string{"--kafka-brokers", kb.Addr, "--kafka-spool-dir", t.TempDir(), "--kafka-flush-timeout", "300ms",
		"--kafka-queue-messages", "10", "--drain-interval", "200ms", "--idle-timeout", "1s"}
	first := startProbe(t, pair, args...)
	mix, err := trafficgen.Build(trafficgen.Mix(), pair.MACA, pair.MACB, 1)
	if err != nil {
		t.Fatal(err)
	}
	want := flowcheck.Sent(mix)
	send(t, pair, mix)
	time.Sleep(1500 * time.Millisecond) // idle timeouts: exported into queue and spool
	send(t, pair, mix[:3])              // and some still in the table at stop
	want.AddFrames(mix[:3])
	time.Sleep(50 * time.Millisecond)
	first.stop(t)
	if log := first.stderr.String(); !strings.Contains(log, "kafka brokers unreachable") || !regexp.MustCompile(`"kafka totals" sent=0 .* dropped=0`).MatchString(log) {
		t.Fatalf("first run, broker away:\n%s", log)
	}

	kb.Restart()
	second := startProbe(t, pair, args...)
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(second.stderr.String(), "kafka spool holds messages"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("second run did not find the spool:\n%s", second.stderr.String())
		}
	}
	got := flowcheck.Sums{}
	recs := kb.Read("xdpflow-flows", len(want), 500*time.Millisecond, 20*time.Second)
	for _, r := range recs {
		var m schemas.FlowMessage
		if err := proto.Unmarshal(r.Value, &m); err != nil {
			t.Fatal(err)
		}
		f := m.Flow()
		got.AddRecord(&f)
	}
	second.stop(t)
	compare(t, "Kafka after a probe restart", got, want)
	if t.Failed() {
		t.Logf("first run:\n%s\nsecond run:\n%s", first.stderr.String(), second.stderr.String())
	}
}

// checkSamples reads the --pcap file: one frame head per sample the
// datapath wrote, cut at --sample-bytes with the original length kept.
// checkMetrics scrapes the probe (default --metrics, in its namespace):
// ready, and the packets and bytes drained so far equal what was sent.
func checkMetrics(t *testing.T, pair *testnet.Pair, sent flowcheck.Sums) {
	t.Helper()
	// net/http dials from its own goroutines: dial in the namespace.
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		pair.In(pair.B, func() error { c, err = (&net.Dialer{}).DialContext(ctx, network, addr); return nil })
		return c, err
	}}}
	get := func(path string) (int, string) {
		r, err := client.Get("http://127.0.0.1:9477" + path)
		if err != nil {
			t.Fatalf("scrape %s: %v", path, err)
		}
		defer r.Body.Close()
		body, _ := io.ReadAll(r.Body)
		return r.StatusCode, string(body)
	}
	if code, body := get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz: %d %s", code, body)
	}
	var pkts, bytes uint64
	for _, tot := range sent {
		pkts += tot.Packets
		bytes += tot.Bytes
	}
	_, body := get("/metrics")
	values := map[string]float64{}
	for _, line := range strings.Split(body, "\n") {
		if name, v, ok := strings.Cut(line, " "); ok && !strings.HasPrefix(line, "#") {
			values[name], _ = strconv.ParseFloat(v, 64)
		}
	}
	for series, want := range map[string]float64{
		fmt.Sprintf("xdpflow_probe_flow_packets_total{iface=%q}", pair.LinkB): float64(pkts),
		fmt.Sprintf("xdpflow_probe_flow_bytes_total{iface=%q}", pair.LinkB):   float64(bytes),
		fmt.Sprintf("xdpflow_probe_attached{iface=%q}", pair.LinkB):           1,
		"xdpflow_probe_unattributed_packets_total":                            0,
		`xdpflow_probe_malformed_frames_total{reason="ipv4_bad_ihl"}`:         4,
		"xdpflow_kafka_up": 1,
	} {
		if got, ok := values[series]; !ok || got != want {
			t.Errorf("/metrics: %s = %v (present %v), want %v", series, got, ok, want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", body)
	}
}

// checkKafka reads the flow and sample topics with an independent client:
// one message per exported record, summing to the truth exactly, and one
// per sample.
func checkKafka(t *testing.T, kb *kafkacheck.Broker, records, samples int, iface string, want flowcheck.Sums) {
	t.Helper()
	got := flowcheck.Sums{}
	for _, r := range kb.Read("xdpflow-flows", records, 300*time.Millisecond, 20*time.Second) {
		var m schemas.FlowMessage
		if err := proto.Unmarshal(r.Value, &m); err != nil {
			t.Fatalf("kafka message: %v", err)
		}
		if m.SchemaVersion != schemas.SchemaVersion || m.InIfName != iface || m.ProbeHost == "" || m.SamplingRate != 1 {
			t.Errorf("kafka message metadata: %v", &m)
		}
		if !bytes.Equal(r.Key, schemas.AppendKey(nil, &m)) {
			t.Errorf("kafka key %x, want %x", r.Key, schemas.AppendKey(nil, &m))
		}
		f := m.Flow()
		got.AddRecord(&f)
	}
	compare(t, "Kafka (proto, read by franz-go)", got, want)
	for _, r := range kb.Read("xdpflow-samples", samples, 300*time.Millisecond, 20*time.Second) {
		var m schemas.SampleMessage
		if err := proto.Unmarshal(r.Value, &m); err != nil {
			t.Fatalf("kafka sample: %v", err)
		}
		if len(m.Data) == 0 || int(m.OrigLen) < len(m.Data) || m.InIfName != iface || m.TimeReceivedNs == 0 {
			t.Errorf("kafka sample: %v", &m)
		}
	}
}

func checkSamples(t *testing.T, path, log string) int {
	t.Helper()
	m := regexp.MustCompile(`"datapath totals".* samples=(\d+) samples_lost=(\d+)`).FindStringSubmatch(log)
	if m == nil {
		t.Fatalf("no datapath totals in the log:\n%s", log)
	}
	written, _ := strconv.Atoi(m[1])
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	n, truncated := 0, 0
	for {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			break
		}
		n++
		if len(data) > 128 || ci.CaptureLength != len(data) || ci.Length < ci.CaptureLength {
			t.Errorf("sample %d: %d bytes captured of %d", n, ci.CaptureLength, ci.Length)
		}
		if ci.Length > ci.CaptureLength {
			truncated++
		}
	}
	if n == 0 || n != written || truncated == 0 {
		t.Errorf("pcap holds %d samples (%d truncated), the datapath wrote %d (lost %s)", n, truncated, written, m[2])
	}
	return n
}

// TestLocalNetDirection: with --local-net, every IPFIX record carries
// flowDirection (IE 61, read here with goflow2's decoder) as the addresses
// say: into the local networks ingress, out of them egress; records of
// flows with no known direction use the plain templates.
func TestLocalNetDirection(t *testing.T) {
	pair := newTestPair(t, "xfd")
	col := collector(t, pair)
	local := []netip.Prefix{netip.MustParsePrefix("198.18.0.2/32"), netip.MustParsePrefix("2001:db8::2/128")}
	pr := startProbe(t, pair, "--ipfix", col.URL(), "--local-net", local[0].String(), "--local-net", local[1].String(), "--pin-path", "")
	mix, err := trafficgen.Build(trafficgen.Mix(), pair.MACA, pair.MACB, 1)
	if err != nil {
		t.Fatal(err)
	}
	send(t, pair, mix)
	time.Sleep(100 * time.Millisecond)
	pr.stop(t)
	time.Sleep(100 * time.Millisecond)

	isLocal := func(a netip.Addr) bool { return local[0].Contains(a) || local[1].Contains(a) }
	templates := netflow.CreateTemplateSystem()
	seen := map[int]int{}
	for _, msg := range col.Stop() {
		var ipfixPkt netflow.IPFIXPacket
		if err := netflow.DecodeMessageVersion(bytes.NewBuffer(msg), templates, nil, &ipfixPkt); err != nil {
			t.Fatal(err)
		}
		for _, set := range ipfixPkt.FlowSets {
			data, ok := set.(netflow.DataFlowSet)
			if !ok {
				continue
			}
			for _, r := range data.Records {
				var src, dst netip.Addr
				dir := -1 // no flowDirection field
				for _, v := range r.Values {
					b, _ := v.Value.([]byte)
					switch v.Type {
					case schemas.IESourceIPv4Address, schemas.IESourceIPv6Address:
						src, _ = netip.AddrFromSlice(b)
					case schemas.IEDestinationIPv4Address, schemas.IEDestinationIPv6Address:
						dst, _ = netip.AddrFromSlice(b)
					case schemas.IEFlowDirection:
						dir = int(b[0])
					}
				}
				want := -1
				switch {
				case isLocal(dst) && !isLocal(src):
					want = 0
				case isLocal(src) && !isLocal(dst):
					want = 1
				}
				if dir != want {
					t.Errorf("%v > %v: flowDirection %d, want %d (-1: none)", src, dst, dir, want)
				}
				seen[dir]++
			}
		}
	}
	if seen[0] == 0 || seen[1] == 0 || seen[-1] == 0 {
		t.Errorf("records by direction %v: want ingress, egress and none", seen)
	}
}

// TestTwoInterfaces: one probe on two capture interfaces (a TAP gives each
// direction its own port) counts each exactly, with each record's
// ingressInterface telling them apart; frames to a unicast MAC that is not
// the interface's (what a mirror port delivers) are counted too.
func TestTwoInterfaces(t *testing.T) {
	pair := newTestPair(t, "xf2")
	// A second port: frames sent into its tapA arrive on tapB.
	port := secondPort(t, pair, "xt")
	tapB, idxA, idxB, macA := port.B, port.IdxA, port.IdxB, port.MacA
	col := collector(t, pair)
	pr := startProbe(t, pair, "--ipfix", col.URL(), "-i", tapB, "--action", "drop", "--pin-path", "")
	promisc := func() (on []bool) {
		pair.In(pair.B, func() error {
			for _, n := range []string{pair.LinkB, tapB} {
				l, err := netlink.LinkByName(n)
				on = append(on, err == nil && l.Attrs().Promisc == 1)
			}
			return nil
		})
		return on
	}
	if on := promisc(); !on[0] || !on[1] {
		t.Errorf("--action drop (span): promiscuous mode %v on the two interfaces, want both on", on)
	}

	mix, err := trafficgen.Build(trafficgen.Mix(), pair.MACA, pair.MACB, 1)
	if err != nil {
		t.Fatal(err)
	}
	foreign := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99} // nobody's
	other, err := trafficgen.Build([]trafficgen.Flow{
		{Src: netip.MustParseAddr("198.18.7.1"), Dst: netip.MustParseAddr("198.18.7.2"), Proto: 17, SrcPort: 7000, DstPort: 7001, Payload: 300, Packets: 120},
		{Src: netip.MustParseAddr("2001:db8:7::1"), Dst: netip.MustParseAddr("2001:db8:7::2"), Proto: 6, SrcPort: 7002, DstPort: 443, Payload: 900, Packets: 80},
	}, macA, foreign, 1)
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint32]flowcheck.Sums{uint32(pair.IfindexB): {}, uint32(idxB): {}}
	for _, f := range mix {
		want[uint32(pair.IfindexB)].AddSent(f, 1)
	}
	for _, f := range other {
		want[uint32(idxB)].AddSent(f, 1)
	}
	send(t, pair, mix)
	if err := trafficgen.SendFrom(func(fn func() error) error { return pair.In(pair.B, fn) }, idxA, other); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	pr.stop(t)
	time.Sleep(100 * time.Millisecond)
	if on := promisc(); on[0] || on[1] {
		t.Errorf("promiscuous mode %v after exit, want both restored to off", on)
	}

	got := map[uint32]flowcheck.Sums{}
	d := flowcheck.NewDecoder()
	for _, m := range col.Stop() {
		recs, err := d.Decode(m)
		if err != nil {
			t.Fatal(err)
		}
		for i := range recs {
			if got[recs[i].InIf] == nil {
				got[recs[i].InIf] = flowcheck.Sums{}
			}
			got[recs[i].InIf].AddRecord(&recs[i])
		}
	}
	if len(got) != 2 {
		t.Errorf("records from %d interfaces, want 2", len(got))
	}
	for idx, w := range want {
		compare(t, fmt.Sprintf("ingressInterface %d", idx), got[idx], w)
	}
	if t.Failed() {
		t.Logf("probe log:\n%s", pr.stderr.String())
	}
}

// TestBiflow: with --biflow, the two directions of each conversation come
// out as one RFC 5103 record; goflow2's decoder reads the reverse IEs
// (PEN 29305) and both sides' packets and bytes equal the traffic; tshark
// finds nothing malformed. The JSON lines carry the same pairs.
func TestBiflow(t *testing.T) {
	pair := newTestPair(t, "xfb")
	col := collector(t, pair)
	pr := startProbe(t, pair, "--ipfix", col.URL(), "--stdout", "--biflow", "--pin-path", "", "--local-net", "198.18.0.2/32")
	mix := trafficgen.Mix()
	// An echo request and its reply, to pair ICMP too.
	mix = append(mix,
		trafficgen.Flow{Src: netip.MustParseAddr("198.18.0.2"), Dst: netip.MustParseAddr("198.18.0.1"), Proto: 1, DstPort: 0, Payload: 56, Packets: 10})
	frames, err := trafficgen.Build(mix, pair.MACA, pair.MACB, 1)
	if err != nil {
		t.Fatal(err)
	}
	want := flowcheck.Sent(frames)
	send(t, pair, frames)
	time.Sleep(100 * time.Millisecond)
	pr.stop(t)
	time.Sleep(100 * time.Millisecond)

	msgs := col.Stop()
	if _, err := flowcheck.Tshark(t.TempDir(), 4739, msgs); err != nil {
		t.Errorf("Wireshark on the biflow export: %v", err)
	}
	d := flowcheck.NewDecoder()
	got := flowcheck.Sums{}
	biflows := 0
	for _, m := range msgs {
		recs, err := d.Decode(m)
		if err != nil {
			t.Fatal(err)
		}
		for i := range recs {
			if recs[i].Biflow {
				biflows++
				if recs[i].ReverseTimeFlowStartNs < recs[i].TimeFlowStartNs {
					t.Errorf("%v: reverse started before the initiator", flowcheck.IDOf(&recs[i]))
				}
			}
			got.AddRecord(&recs[i])
		}
	}
	compare(t, "IPFIX biflows (goflow2)", got, want)
	// TCP 40001<->443 and ICMP echo are the conversations with two sides.
	if biflows != 2 {
		t.Errorf("%d biflow records, want 2", biflows)
	}
	gotJSON := flowcheck.Sums{}
	sc := bufio.NewScanner(strings.NewReader(pr.stdout.String()))
	for sc.Scan() {
		var f schemas.Flow
		if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
			t.Fatal(err)
		}
		gotJSON.AddRecord(&f)
	}
	compare(t, "--stdout biflows", gotJSON, want)
}

// port is a second veth pair inside side b, to capture on as a second
// port: frames sent into A arrive on B.
type port struct {
	A, B       string
	IdxA, IdxB int
	MacA, MacB net.HardwareAddr
}

func secondPort(t *testing.T, pair *testnet.Pair, prefix string) port {
	t.Helper()
	p := port{A: fmt.Sprintf("%s%da", prefix, os.Getpid()%100000), B: fmt.Sprintf("%s%db", prefix, os.Getpid()%100000)}
	if err := pair.In(pair.B, func() error {
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: p.A}, PeerName: p.B}); err != nil {
			return err
		}
		for _, n := range []string{p.A, p.B} {
			l, err := netlink.LinkByName(n)
			if err != nil {
				return err
			}
			// No IPv6 on them: its router and MLD messages would be flows
			// nobody sent.
			if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+n+"/disable_ipv6", []byte("1"), 0o644); err != nil {
				return err
			}
			if err := netlink.LinkSetUp(l); err != nil {
				return err
			}
			if n == p.A {
				p.IdxA, p.MacA = l.Attrs().Index, l.Attrs().HardwareAddr
			} else {
				p.IdxB, p.MacB = l.Attrs().Index, l.Attrs().HardwareAddr
			}
		}
		for _, n := range []string{p.A, p.B} {
			if err := testnet.WaitUp(nil, n); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return p
}

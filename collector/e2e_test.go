package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/xdpflow/xdpflow/internal/syncbuf"
	"github.com/xdpflow/xdpflow/internal/testkit/flowcheck"
	"github.com/xdpflow/xdpflow/internal/testkit/testnet"
	"github.com/xdpflow/xdpflow/internal/testkit/trafficgen"
	"github.com/xdpflow/xdpflow/schemas"
)

// The end-to-end test runs real exporters on a veth in a test namespace —
// softflowd (IPFIX, NetFlow v9 and v5), pmacctd's nfprobe plugin and
// xdpflow-probe — and sends each one's export both to xdpflow-collector and
// to nfdump's nfcapd, through a tee that gives every exporter its own
// source address. The collector's output must agree with nfdump's decode of
// the same bytes, flow by flow; xdpflow-probe's must equal the traffic.

func build(t *testing.T, pkg, name string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), name)
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0") // as `make build`
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// proc is a program running on side b of the pair.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  syncbuf.Buffer
	done chan error
}

func startProc(t *testing.T, pair *testnet.Pair, name string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, done: make(chan error, 1)}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", pair.NsName("b")}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	// A group of its own: pmacctd forks its plugins, which hold the output
	// pipe, so killing the one process would leave Wait waiting.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		p.done <- <-p.done
	})
	return p
}

// stop signals the program and waits; a non-zero exit is the caller's to
// judge (softflowd exits 1 after a requested shutdown).
func (p *proc) stop(t *testing.T, sig syscall.Signal) error {
	t.Helper()
	if sig != 0 {
		p.cmd.Process.Signal(sig)
	}
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not exit:\n%s", p.name, p.out.String())
		return nil
	}
}

// tee receives an exporter's datagrams and forwards each to every target
// from its own source address.
type tee struct {
	in  *net.UDPConn
	out *net.UDPConn
	to  []*net.UDPAddr
	wg  sync.WaitGroup
	n   int
}

func newTee(t *testing.T, pair *testnet.Pair, src netip.Addr, to ...string) *tee {
	t.Helper()
	te := &tee{}
	if err := pair.In(pair.B, func() (err error) {
		if te.in, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
			return err
		}
		te.out, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for _, a := range to {
		ua, err := net.ResolveUDPAddr("udp4", strings.TrimPrefix(a, "udp://"))
		if err != nil {
			t.Fatal(err)
		}
		te.to = append(te.to, ua)
	}
	te.wg.Go(func() {
		buf := make([]byte, 65535)
		for {
			n, err := te.in.Read(buf)
			if err != nil {
				return
			}
			te.n++
			for _, a := range te.to {
				te.out.WriteToUDP(buf[:n], a)
			}
			// Keep the order the exporter sent in, and let the readers
			// keep up (loopback drops nothing but a full socket buffer).
			time.Sleep(50 * time.Microsecond)
		}
	})
	t.Cleanup(te.close)
	return te
}

func (te *tee) port() int { return te.in.LocalAddr().(*net.UDPAddr).Port }

func (te *tee) close() {
	te.in.Close()
	te.wg.Wait()
	te.out.Close()
}

func freeUDPPort(t *testing.T, pair *testnet.Pair) int {
	t.Helper()
	c, err := pair.ListenUDP(pair.B)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

func sendFrames(t *testing.T, pair *testnet.Pair, frames []trafficgen.Built, times int) {
	t.Helper()
	if err := pair.In(pair.A, func() error {
		s, err := trafficgen.NewSender(pair.IfindexA)
		if err != nil {
			return err
		}
		defer s.Close()
		for range times {
			if _, err := s.SendAll(frames); err != nil {
				return err
			}
			time.Sleep(100 * time.Millisecond)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// readOut reads the collector's JSON lines, per exporter address.
func readOut(t *testing.T, path string) map[netip.Addr]flowcheck.Sums {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[netip.Addr]flowcheck.Sums{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var m schemas.FlowMessage
		if err := protojson.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("--out line %q: %v", sc.Text(), err)
		}
		exp := schemas.Addr(m.SamplerAddress)
		if out[exp] == nil {
			out[exp] = flowcheck.Sums{}
		}
		f := m.Flow()
		out[exp].AddRecord(&f)
	}
	return out
}

// nfdumpICMPv6 mends one known nfdump difference: from softflowd's NetFlow
// v9, nfdump shows ICMPv6 type and code 0 (it reads them from the
// destination port only for IPv4), where the collector reads the real
// ones. Such a flow is taken as agreeing when the collector's type and code
// are what was sent.
func nfdumpICMPv6(nf, mine, want flowcheck.Sums) (fixed []string) {
	for id, tot := range nf {
		if id.Proto != 58 || id.DstPort != 0 {
			continue
		}
		if _, ok := mine[id]; ok {
			continue
		}
		for m := range mine {
			alt := id
			alt.DstPort = m.DstPort
			if m == alt && m.DstPort != 0 {
				if _, sent := want[m]; sent {
					delete(nf, id)
					nf[m] = tot
					fixed = append(fixed, fmt.Sprintf("nfdump shows %v with ICMPv6 type/code 0; the collector's %d/%d is what was sent", id, m.DstPort>>8, m.DstPort&0xff))
				}
			}
		}
	}
	return fixed
}

func TestRealExporters(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the end-to-end test needs root (network namespaces, XDP): run `sudo make test`")
	}
	for _, tool := range []string{"softflowd", "softflowctl", "pmacctd", "nfcapd", "nfdump"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: install Debian's softflowd, pmacct and nfdump packages (.ci/run does)", tool)
		}
	}
	collector := build(t, ".", "xdpflow-collector")
	probe := build(t, "../probe", "xdpflow-probe")
	pair, err := testnet.NewPair(fmt.Sprintf("xfc%d", os.Getpid()%100000), testnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pair.Close() })

	colPort := freeUDPPort(t, pair)
	outPath := filepath.Join(t.TempDir(), "flows.jsonl")
	col := startProc(t, pair, "xdpflow-collector", collector, "--listen", fmt.Sprintf("udp://127.0.0.1:%d", colPort), "--out", outPath)
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(col.out.String(), "listening"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("collector did not start:\n%s", col.out.String())
		}
	}

	type exporter struct {
		name string
		src  netip.Addr
		nf   *flowcheck.Nfcapd
		tee  *tee
		p    *proc
		ctl  string // softflowd's control socket
	}
	dir := t.TempDir()
	var exps []*exporter
	for i, name := range []string{"xdpflow-probe", "softflowd IPFIX", "softflowd v9", "softflowd v5", "pmacctd nfprobe"} {
		e := &exporter{name: name, src: netip.AddrFrom4([4]byte{127, 0, 0, byte(10 + i)})}
		e.nf = flowcheck.StartNfcapd(t, pair)
		e.tee = newTee(t, pair, e.src, fmt.Sprintf("127.0.0.1:%d", colPort), e.nf.URL)
		dest := fmt.Sprintf("127.0.0.1:%d", e.tee.port())
		switch {
		case name == "xdpflow-probe":
			e.p = startProc(t, pair, name, probe, "-i", pair.LinkB, "--xdp-mode", "native", "--ipfix", "udp://"+dest, "--idle-timeout", "1s",
				"--pin-path", "") // ip netns exec's private /sys: pins would die with it
		case strings.HasPrefix(name, "softflowd"):
			e.ctl = filepath.Join(dir, fmt.Sprintf("softflowd%d.ctl", i))
			version := map[string]string{"softflowd IPFIX": "10", "softflowd v9": "9", "softflowd v5": "5"}[name]
			e.p = startProc(t, pair, name, "softflowd", "-d", "-i", pair.LinkB, "-n", dest, "-v", version, "-T", "full",
				"-c", e.ctl, "-p", filepath.Join(dir, fmt.Sprintf("softflowd%d.pid", i)), "-t", "maxlife=3600")
		default:
			conf := filepath.Join(dir, "pmacctd.conf")
			os.WriteFile(conf, []byte(fmt.Sprintf("daemonize: false\npcap_interface: %s\nplugins: nfprobe\nnfprobe_receiver: %s\nnfprobe_version: 10\nnfprobe_timeouts: general=3600:maxlife=3600\n", pair.LinkB, dest)), 0o644)
			e.p = startProc(t, pair, name, "pmacctd", "-f", conf)
		}
		exps = append(exps, e)
	}
	// The probe attaches after loading (verifying) its programs, which
	// takes a second or more on a busy machine; the captures open meanwhile.
	for _, e := range exps {
		if e.name != "xdpflow-probe" {
			continue
		}
		for deadline := time.Now().Add(30 * time.Second); !strings.Contains(e.p.out.String(), "attached"); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("probe did not attach within 30 s:\n%s", e.p.out.String())
			}
		}
	}
	time.Sleep(time.Second) // the pcap captures open

	mix, err := trafficgen.Build(trafficgen.Mix(), pair.MACA, pair.MACB, 1)
	if err != nil {
		t.Fatal(err)
	}
	const rounds = 3
	want := flowcheck.Sums{}
	for _, f := range mix {
		want.AddSent(f, rounds)
	}
	sendFrames(t, pair, mix, rounds)
	// A filler burst pushes the tail of the traffic out of libpcap's ring
	// (softflowd, pmacctd); it is a flow of its own, left out below.
	filler, err := trafficgen.Build([]trafficgen.Flow{{Src: netip.MustParseAddr("198.18.99.99"), Dst: netip.MustParseAddr("198.18.0.2"),
		Proto: 17, SrcPort: 9, DstPort: 9, Payload: 100, Packets: 200}}, pair.MACA, pair.MACB, 1)
	if err != nil {
		t.Fatal(err)
	}
	sendFrames(t, pair, filler, 3)
	time.Sleep(500 * time.Millisecond)

	for _, e := range exps {
		switch {
		case e.ctl != "":
			exec.Command("softflowctl", "-c", e.ctl, "expire-all").Run()
			time.Sleep(300 * time.Millisecond)
			exec.Command("softflowctl", "-c", e.ctl, "shutdown").Run()
			e.p.stop(t, 0)
		case e.name == "pmacctd nfprobe":
			e.p.stop(t, syscall.SIGINT)
		default:
			if err := e.p.stop(t, syscall.SIGTERM); err != nil {
				t.Errorf("%s: %v\n%s", e.name, err, e.p.out.String())
			}
		}
	}
	time.Sleep(300 * time.Millisecond)
	for _, e := range exps {
		e.tee.close()
	}
	if err := col.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("collector: %v\n%s", err, col.out.String())
	}

	got := readOut(t, outPath)
	fillerID := func(s flowcheck.Sums) {
		for id := range s {
			if strings.Contains(id.String(), "198.18.99.99") {
				delete(s, id)
			}
		}
	}
	for _, e := range exps {
		nf := e.nf.Flows(t)
		mine := got[e.src]
		fillerID(nf)
		fillerID(mine)
		t.Logf("%s: %d datagrams, nfdump %d flows, collector %d flows", e.name, e.tee.n, len(nf), len(mine))
		for _, fix := range nfdumpICMPv6(nf, mine, want) {
			t.Logf("%s: %s", e.name, fix)
		}
		if len(mine) < len(want)/2 {
			t.Errorf("%s: the collector has %d flows of the %d sent\n%s", e.name, len(mine), len(want), e.p.out.String())
		}
		for _, d := range flowcheck.Diff(mine, nf) {
			t.Errorf("%s: collector vs nfdump: %s", e.name, d)
		}
		if e.name == "xdpflow-probe" {
			for _, d := range flowcheck.Diff(mine, want) {
				t.Errorf("%s: collector vs the traffic: %s", e.name, d)
			}
		}
	}
	if t.Failed() {
		t.Logf("collector log:\n%s", col.out.String())
	}
}

// TestProbeEncapsulations: issue #13 through our own collector. The
// probe counts trafficgen.EncapMix with tunnels inner, mirrors stripped
// and MACs, and sends its IPFIX with xdpflow's own IEs under an
// enterprise number; the collector, given the same number, writes every
// flow exactly, with its tunnel (type, id, endpoints), mirror session
// and type, MACs and labels (without their TTL, which IPFIX does not
// carry): the two VXLAN tenants with one inner conversation stay two
// flows.
func TestProbeEncapsulations(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the end-to-end test needs root (network namespaces, XDP): run `sudo make test`")
	}
	collector := build(t, ".", "xdpflow-collector")
	probe := build(t, "../probe", "xdpflow-probe")
	pair, err := testnet.NewPair(fmt.Sprintf("xfn%d", os.Getpid()%100000), testnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pair.Close() })
	const pen = "32473" // RFC 5612's, for documentation

	colPort := freeUDPPort(t, pair)
	outPath := filepath.Join(t.TempDir(), "flows.jsonl")
	col := startProc(t, pair, "xdpflow-collector", collector, "--listen", fmt.Sprintf("udp://127.0.0.1:%d", colPort), "--out", outPath,
		"--ipfix-enterprise-number", pen)
	mix := trafficgen.EncapMix()
	view := trafficgen.View{Mirrors: true, MACs: true}
	args := []string{"-i", pair.LinkB, "--xdp-mode", "native", "--ipfix", fmt.Sprintf("udp://127.0.0.1:%d", colPort),
		"--ipfix-enterprise-number", pen, "--macs", "--pin-path", ""}
	for _, m := range trafficgen.MirrorEncaps(mix) {
		args = append(args, "--mirror-encap", m)
	}
	p := startProc(t, pair, "xdpflow-probe", append([]string{probe}, args...)...)
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(col.out.String(), "listening") ||
		!strings.Contains(p.out.String(), "capabilities"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("collector or probe did not start:\n%s\n%s", col.out.String(), p.out.String())
		}
	}

	frames, err := trafficgen.BuildEncap(mix, pair.MACA, pair.MACB, view)
	if err != nil {
		t.Fatal(err)
	}
	want := flowcheck.Sent(frames)
	sendFrames(t, pair, frames, 1)
	if err := p.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("probe: %v\n%s", err, p.out.String())
	}
	time.Sleep(200 * time.Millisecond)
	if err := col.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("collector: %v\n%s", err, col.out.String())
	}
	got := readOut(t, outPath)[netip.MustParseAddr("127.0.0.1")]
	for _, d := range flowcheck.Diff(got, want.Map(flowcheck.LabelsNoTTL)) {
		t.Errorf("collector vs the traffic: %s", d)
	}
	if t.Failed() {
		t.Logf("probe log:\n%s\ncollector log:\n%s", p.out.String(), col.out.String())
	}
}

package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/netsampler/goflow2/v2/decoders/netflow"

	"github.com/xdpflow/xdpflow/internal/cmd/benchproc"
	"github.com/xdpflow/xdpflow/internal/testkit/flowcheck"
	"github.com/xdpflow/xdpflow/internal/testkit/testnet"
	"github.com/xdpflow/xdpflow/schemas"
)

// kind is what watches the receiving veth end in a run.
type kind int

const (
	baseline    kind = iota // an XDP program that only returns XDP_DROP: the least a host can spend on a frame
	xdpflowDrop             // xdpflow-probe --action drop: the span-port deployment
	xdpflowPass             // xdpflow-probe --action pass: inline, every frame goes on to the stack
	softflowd               // softflowd: libpcap, IPFIX
	pmacctd                 // pmacctd: libpcap, its nfprobe plugin exporting IPFIX
)

func (k kind) String() string {
	return [...]string{"empty XDP_DROP program (baseline)", "xdpflow-probe --action drop", "xdpflow-probe --action pass",
		"softflowd", "pmacctd"}[k]
}

// isXDPFlow: xdpflow-probe, either action.
func (k kind) isXDPFlow() bool { return k == xdpflowDrop || k == xdpflowPass }

// Timeouts given to every probe, so flows expire during a run as they
// would in production, only sooner.
const (
	idleTimeout   = 2  // s: xdpflow --idle-timeout; softflowd's and pmacctd's general/tcp/udp/icmp/...
	activeTimeout = 10 // s: xdpflow --active-timeout; softflowd's and pmacctd's maxlife
)

// newCollector listens on B's loopback.
func newCollector(pair *testnet.Pair) (*flowcheck.Collector, error) {
	conn, err := pair.ListenUDP(pair.B)
	if err != nil {
		return nil, err
	}
	return flowcheck.Collect(conn, nil), nil
}

// running is one probe started for one run.
type running struct {
	kind kind
	p    *benchproc.Proc
	xdp  link.Link // baseline only
	coll *flowcheck.Collector
	dir  string // softflowd's control socket and pid file; pmacctd's configuration
	ctl  string
	// softflowd's `softflowctl statistics` before the final expiry;
	// pmacctd's libpcap statistics, logged as it exits.
	stats string
}

func startProbe(k kind, pair *testnet.Pair, cfg *config) (*running, error) {
	r := &running{kind: k}
	if k == baseline {
		if err := r.attachDrop(pair); err != nil {
			return nil, err
		}
		return r, nil
	}
	var err error
	if r.coll, err = newCollector(pair); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			r.abort()
		}
	}()
	switch k {
	case xdpflowDrop, xdpflowPass:
		action := "pass"
		if k == xdpflowDrop {
			action = "drop"
		}
		r.p, err = benchproc.Start("xdpflow-probe", nil, pinArgs([]string{"ip", "netns", "exec", pair.NsName("b"), cfg.probe,
			"-i", pair.LinkB, "--xdp-mode", "native", "--action", action,
			"--ipfix", fmt.Sprintf("udp://127.0.0.1:%d", r.coll.Port()),
			"--idle-timeout", fmt.Sprintf("%ds", idleTimeout), "--active-timeout", fmt.Sprintf("%ds", activeTimeout),
			"--pin-path", ""})...) // ip netns exec's private /sys: pins would die with it
		if err != nil {
			return nil, err
		}
		for deadline := time.Now().Add(20 * time.Second); !strings.Contains(r.p.Out.String(), "attached"); time.Sleep(50 * time.Millisecond) {
			if r.p.Exited() || time.Now().After(deadline) {
				return nil, fmt.Errorf("xdpflow-probe did not attach:\n%s", r.p.Out.String())
			}
		}
	case softflowd:
		if r.dir, err = os.MkdirTemp("", "peerbench-softflowd"); err != nil {
			return nil, err
		}
		cleanupMu.Lock()
		cleanupDirs = append(cleanupDirs, r.dir) // removed on a signal or timeout too
		cleanupMu.Unlock()
		r.ctl = filepath.Join(r.dir, "ctl")
		args := []string{"ip", "netns", "exec", pair.NsName("b"), cfg.softflowd,
			"-d", "-i", pair.LinkB, "-n", fmt.Sprintf("127.0.0.1:%d", r.coll.Port()), "-v", "10",
			"-T", "vlan", "-m", "65536", "-c", r.ctl, "-p", filepath.Join(r.dir, "pid")}
		for _, t := range []string{"general", "tcp", "tcp.rst", "tcp.fin", "udp", "icmp"} {
			args = append(args, "-t", fmt.Sprintf("%s=%d", t, idleTimeout))
		}
		args = append(args, "-t", fmt.Sprintf("maxlife=%d", activeTimeout), "-t", "expint=1")
		if r.p, err = benchproc.Start("softflowd", nil, pinArgs(args)...); err != nil {
			return nil, err
		}
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if _, err := os.Stat(r.ctl); err == nil {
				break
			}
			if r.p.Exited() || time.Now().After(deadline) {
				return nil, fmt.Errorf("softflowd did not start (no control socket %s):\n%s", r.ctl, r.p.Out.String())
			}
		}
		time.Sleep(300 * time.Millisecond) // pcap open and filter set after the socket
	case pmacctd:
		if err := r.startPmacctd(pair, cfg); err != nil {
			return nil, err
		}
	}
	ok = true
	return r, nil
}

// pmacctdConf is pmacctd's configuration: libpcap on B (promiscuous, as
// on a span port), the nfprobe plugin exporting IPFIX with the timeouts
// the other probes get, and the queue between its core process and the
// plugin buffered as CONFIG-KEYS advises for heavy traffic (a buffer
// 1/256 of the queue; unbuffered, every packet is a write to the plugin).
const pmacctdConf = `daemonize: false
pcap_interface: %s
promisc: true
plugins: nfprobe
nfprobe_receiver: 127.0.0.1:%d
nfprobe_version: 10
nfprobe_maxflows: 65536
nfprobe_timeouts: general=%[3]d:tcp=%[3]d:tcp.rst=%[3]d:tcp.fin=%[3]d:udp=%[3]d:icmp=%[3]d:maxlife=%d:expint=1
aggregate: src_host, dst_host, src_port, dst_port, proto, tos, vlan
plugin_pipe_size: 16777216
plugin_buffer_size: 65536
`

// attachDrop attaches the baseline's program to B natively: XDP_DROP and
// nothing else, built with cilium/ebpf's asm.
func (r *running) attachDrop(pair *testnet.Pair) error {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.LoadImm(asm.R0, 1, asm.DWord), asm.Return()}}) // 1: XDP_DROP
	if err != nil {
		return fmt.Errorf("load the empty XDP_DROP program: %w", err)
	}
	defer prog.Close() // the link holds it
	return pair.In(pair.B, func() (err error) {
		if r.xdp, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: pair.IfindexB, Flags: link.XDPDriverMode}); err != nil {
			return fmt.Errorf("attach the empty XDP_DROP program: %w", err)
		}
		return nil
	})
}

func (r *running) startPmacctd(pair *testnet.Pair, cfg *config) error {
	var err error
	if r.dir, err = os.MkdirTemp("", "peerbench-pmacctd"); err != nil {
		return err
	}
	cleanupMu.Lock()
	cleanupDirs = append(cleanupDirs, r.dir)
	cleanupMu.Unlock()
	conf := filepath.Join(r.dir, "pmacctd.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, pmacctdConf, pair.LinkB, r.coll.Port(), idleTimeout, activeTimeout), 0o644); err != nil {
		return err
	}
	if r.p, err = benchproc.Start("pmacctd", nil, pinArgs([]string{"ip", "netns", "exec", pair.NsName("b"), cfg.pmacctd, "-f", conf})...); err != nil {
		return err
	}
	// The plugin logs its export target once it runs; the core logs the
	// link type once libpcap is open.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		out := r.p.Out.String()
		if strings.Contains(out, "link type is") && strings.Contains(out, "Exporting flows to") {
			break
		}
		if r.p.Exited() || time.Now().After(deadline) {
			return fmt.Errorf("pmacctd did not start:\n%s", out)
		}
	}
	time.Sleep(300 * time.Millisecond)
	return nil
}

// softflowdDrops finds the libpcap drop count in `softflowctl statistics`.
func softflowdDrops(stats string) string {
	for _, l := range strings.Split(stats, "\n") {
		if strings.Contains(strings.ToLower(l), "drop") {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

// pmacctdDrops is the libpcap statistics pmacctd logs as it exits
// ("NOTICE ( default/core ): [<if>,0] received_packets=N dropped_packets=M"):
// "received_packets=N dropped_packets=M".
func pmacctdDrops(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if i := strings.Index(l, "received_packets="); i >= 0 && strings.Contains(l, "dropped_packets=") {
			return strings.TrimSpace(l[i:])
		}
	}
	return ""
}

// pid of the probe's (first) process, 0 for the baseline.
func (r *running) PID() int {
	if r.p == nil {
		return 0
	}
	return r.p.PID()
}

func (r *running) ctlCmd(cmd string) (string, error) {
	out, err := exec.Command("softflowctl", "-c", r.ctl, cmd).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("softflowctl %s: %v: %s", cmd, err, out)
	}
	return string(out), nil
}

// finish ends the run the same way for every probe: a filler burst of an
// unrelated flow (it pushes the tail of the traffic out of libpcap's ring
// for softflowd and pmacctd, and is excluded from the accounting), then every
// flow is expired and exported, and the probe exits. It returns the
// collector's messages.
func (r *running) finish(pair *testnet.Pair) ([][]byte, error) {
	if r.xdp != nil {
		r.xdp.Close()
		r.xdp = nil
	}
	if r.kind == baseline {
		return nil, nil
	}
	defer r.cleanDir()
	if err := sendFiller(pair); err != nil {
		r.abort()
		return nil, err
	}
	var stopErr error
	switch r.kind {
	case xdpflowDrop, xdpflowPass:
		time.Sleep(200 * time.Millisecond)
		stopErr = r.p.Stop(20 * time.Second)
	case softflowd:
		time.Sleep(500 * time.Millisecond)
		out, _ := r.ctlCmd("statistics")
		r.stats = softflowdDrops(out)
		if _, err := r.ctlCmd("expire-all"); err != nil {
			stopErr = err
		}
		time.Sleep(time.Second)
		if _, err := r.ctlCmd("shutdown"); err != nil && stopErr == nil {
			stopErr = err
		}
		// softflowd 1.1.0 exits with status 1 after a requested shutdown:
		// only a hang is an error.
		if err := r.p.Wait(20 * time.Second); err != nil && stopErr == nil && !r.p.KilledOnTimeout() {
			err = nil
		} else if err != nil && stopErr == nil {
			stopErr = err
		}
	case pmacctd:
		// The flows expire by their idle timeout (expiry every second),
		// then SIGINT: the core stops the plugin, which exports what is
		// left, and logs libpcap's statistics.
		time.Sleep(time.Duration(idleTimeout+2) * time.Second)
		stopErr = r.p.Signal(syscall.SIGINT)
		// Its exit status after SIGINT is not documented: only a hang is
		// an error.
		if err := r.p.Wait(20 * time.Second); err != nil && stopErr == nil && r.p.KilledOnTimeout() {
			stopErr = err
		}
		r.stats = pmacctdDrops(r.p.Out.String())
	}
	time.Sleep(300 * time.Millisecond) // the last datagrams cross the loopback
	msgs := r.coll.Stop()
	if stopErr != nil {
		return msgs, fmt.Errorf("%s: %v\n%s", r.kind, stopErr, r.p.Out.String())
	}
	return msgs, nil
}

// abort kills the probe and closes the collector (error paths).
func (r *running) abort() {
	if r.xdp != nil {
		r.xdp.Close()
		r.xdp = nil
	}
	if r.p != nil {
		r.p.Kill()
		r.p.Wait(5 * time.Second)
	}
	if r.coll != nil {
		r.coll.Stop()
	}
	r.cleanDir()
}

func (r *running) cleanDir() {
	if r.dir != "" {
		os.RemoveAll(r.dir)
	}
}

// decoded is a run's export, decoded by goflow2 and summed per flow.
type decoded struct {
	sums       flowcheck.Sums
	records    int
	messages   int
	decodeErrs int
	firstErr   error
	// lostRecords: data records the IPFIX sequence numbers say were sent
	// but never arrived (export loss, not counting loss), under the
	// sequence convention the exporter follows (seqConvention).
	lostRecords   int64
	seqConvention string
}

func decodeAll(msgs [][]byte) decoded {
	d := decoded{sums: flowcheck.Sums{}, messages: len(msgs)}
	dec := flowcheck.NewDecoder()
	// A second goflow2 pass over the same messages, for what flowcheck
	// does not keep: icmpTypeCodeIPv4/IPv6 (softflowd's ICMP templates
	// carry the type and code there, not in the ports) and the options
	// data records (they count in the IPFIX sequence number).
	raw := netflow.CreateTemplateSystem()
	var next, prevSeq uint32
	var rfcGap, inclGap int64
	haveNext := false
	for _, m := range msgs {
		recs, err := dec.Decode(m)
		if err != nil {
			d.decodeErrs++
			if d.firstErr == nil {
				d.firstErr = err
			}
		}
		var v9 netflow.NFv9Packet
		var ipfix netflow.IPFIXPacket
		var icmp []int // per data record: type<<8|code, or -1
		nrec := 0
		if netflow.DecodeMessageVersion(bytes.NewBuffer(m), raw, &v9, &ipfix) == nil {
			for _, set := range append(v9.FlowSets, ipfix.FlowSets...) {
				switch fs := set.(type) {
				case netflow.DataFlowSet:
					for _, r := range fs.Records {
						tc := -1
						for _, v := range r.Values {
							if b, ok := v.Value.([]byte); ok && len(b) == 2 &&
								(v.Type == schemas.IEICMPTypeCodeIPv4 || v.Type == schemas.IEICMPTypeCodeIPv6) {
								tc = int(binary.BigEndian.Uint16(b))
							}
						}
						icmp = append(icmp, tc)
						nrec++
					}
				case netflow.OptionsDataFlowSet:
					nrec += len(fs.Records)
				}
			}
		}
		if len(m) >= 16 && binary.BigEndian.Uint16(m) == 10 {
			seq := binary.BigEndian.Uint32(m[8:])
			if haveNext {
				// RFC 7011: data records (options data too) sent before
				// this message. softflowd 1.1.0 instead sends the flow
				// records sent up to and including this message.
				rfcGap += absGap(seq, next)
				inclGap += absGap(seq, prevSeq+uint32(len(recs)))
			}
			next, prevSeq, haveNext = seq+uint32(nrec), seq, true
		}
		for i := range recs {
			if i < len(icmp) && icmp[i] >= 0 && recs[i].IsICMP() && recs[i].SrcPort == 0 && recs[i].DstPort == 0 {
				recs[i].DstPort = uint16(icmp[i])
			}
			d.sums.AddRecord(&recs[i])
		}
		d.records += len(recs)
	}
	d.lostRecords, d.seqConvention = rfcGap, "RFC 7011"
	if inclGap < rfcGap {
		d.lostRecords, d.seqConvention = inclGap, "records up to and including the message"
	}
	return d
}

func absGap(a, b uint32) int64 {
	g := int64(int32(a - b))
	if g < 0 {
		return -g
	}
	return g
}

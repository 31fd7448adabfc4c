package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/xdpflow/xdpflow/bpf/bpftest"
	"github.com/xdpflow/xdpflow/internal/testkit/flowcheck"
	"github.com/xdpflow/xdpflow/internal/testkit/trafficgen"
	"github.com/xdpflow/xdpflow/schemas"
)

// TCP health end to end (issue #15): the probe on a capture interface that
// sees both directions, as a mirror port does, checked against what the
// wire saw (a dumpcap capture of the same interface) through independent
// decoders: nfdump for the NetFlow v9 export, Wireshark for the IPFIX
// export and for the capture itself.

const (
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpPSH = 0x08
	tcpACK = 0x10
)

// The probe drains its tables every 200 ms in these tests, so that each
// conversation spans several table epochs and drains fall between its
// segments (retransmissions, gaps and their fills, the handshake): the
// latencies and counts must come out as if there were none
// (docs/datapath.md, "TCP health"). The generated conversations send
// their repeated and gap-filling segments acrossDrain after the first, so
// a drain falls in between every time.
const (
	healthDrain = 200 * time.Millisecond
	acrossDrain = healthDrain + 50*time.Millisecond
)

// needTools skips a test whose independent checks need a program that is
// not installed.
func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (.ci/run installs nfdump, tshark and iproute2): TCP health not checked end to end", tool)
		}
	}
}

// health is what one direction's records say, or must say.
type health struct {
	// Latencies; in the truth, none when there is none to measure
	// (a measured one may be 0 at the capture's 1 µs resolution).
	sl, cl, al            time.Duration // server, client network delay; application latency
	retrans, ooo, zeroWin uint32
}

func (h health) String() string {
	return fmt.Sprintf("sl %v cl %v al %v retrans %d ooo %d zero-window %d", h.sl, h.cl, h.al, h.retrans, h.ooo, h.zeroWin)
}

const none time.Duration = -1

func reverse(id flowcheck.ID) flowcheck.ID {
	id.Src, id.Dst, id.SrcPort, id.DstPort = id.Dst, id.Src, id.DstPort, id.SrcPort
	return id
}

// wireHandshakes reads a capture and times each TCP conversation's
// handshake from the capture's timestamps, by the rules docs/datapath.md
// states (server delay from the last SYN to the first SYN-ACK, client
// delay from the last SYN-ACK to the handshake's ACK, application latency
// from the client's first data to the server's first data). Keyed by the
// client's direction.
func wireHandshakes(t *testing.T, path string) map[flowcheck.ID]health {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	type times struct {
		lastSYN, firstSA, lastSA, ack, cData time.Time
		sData                                bool
	}
	convs := map[flowcheck.ID]*times{}
	out := map[flowcheck.ID]health{}
	get := func(id flowcheck.ID) health {
		if h, ok := out[id]; ok {
			return h
		}
		return health{sl: none, cl: none, al: none}
	}
	for {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.NoCopy)
		tl, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if tl == nil || p.NetworkLayer() == nil {
			continue
		}
		src, _ := netip.AddrFromSlice(p.NetworkLayer().NetworkFlow().Src().Raw())
		dst, _ := netip.AddrFromSlice(p.NetworkLayer().NetworkFlow().Dst().Raw())
		id := flowcheck.ID{Src: src, Dst: dst, SrcPort: uint16(tl.SrcPort), DstPort: uint16(tl.DstPort), Proto: 6}
		at := ci.Timestamp
		if tl.SYN && !tl.ACK {
			c := convs[id]
			if c == nil {
				c = &times{}
				convs[id] = c
			}
			if c.firstSA.IsZero() {
				c.lastSYN = at
			}
			continue
		}
		if c := convs[reverse(id)]; c != nil { // the server's
			h := get(reverse(id))
			switch {
			case tl.SYN && c.ack.IsZero():
				if c.firstSA.IsZero() {
					c.firstSA = at
					h.sl = at.Sub(c.lastSYN)
				}
				c.lastSA = at
			case len(tl.Payload) > 0 && !c.ack.IsZero() && !c.sData:
				// The server's first data: the answer to the client's
				// first, or (the server spoke first) no latency.
				c.sData = true
				if !c.cData.IsZero() {
					h.al = at.Sub(c.cData)
				}
			}
			out[reverse(id)] = h
		} else if c := convs[id]; c != nil { // the client's
			h := get(id)
			if tl.ACK && !c.lastSA.IsZero() && c.ack.IsZero() {
				c.ack = at
				h.cl = at.Sub(c.lastSA)
			}
			if len(tl.Payload) > 0 && !c.ack.IsZero() && c.cData.IsZero() {
				c.cData = at
			}
			out[id] = h
		}
	}
	return out
}

// tolerance is how far a measured latency may be from the wire's: 1 ms
// or 5%, whichever is larger (the bound).
func tolerance(want time.Duration) time.Duration { return max(time.Millisecond, want/20) }

func abs(d time.Duration) time.Duration { return max(d, -d) }

// healthChecker compares the records one output gives for each direction
// with the truth, and keeps the largest latency error seen.
type healthChecker struct {
	t     *testing.T
	who   string
	want  map[flowcheck.ID]health
	got   map[flowcheck.ID][]health
	worst time.Duration
	// near reports how far got is from want (0: as close as the
	// output can say) and whether that is within the tolerance.
	near func(got, want time.Duration) (time.Duration, bool)
}

func newHealthChecker(t *testing.T, who string, want map[flowcheck.ID]health) *healthChecker {
	return &healthChecker{t: t, who: who, want: want, got: map[flowcheck.ID][]health{}, near: func(got, want time.Duration) (time.Duration, bool) {
		return abs(got - want), abs(got-want) <= tolerance(want)
	}}
}

func (c *healthChecker) add(id flowcheck.ID, h health) { c.got[id] = append(c.got[id], h) }

// check: every direction has records; every record has the direction's
// latencies; the counts summed over its records are exact; no record of
// a TCP flow nobody sent.
func (c *healthChecker) check() {
	t := c.t
	t.Helper()
	for id := range c.got {
		if _, ok := c.want[id]; !ok && id.Proto == 6 {
			t.Errorf("%s: a record of %v, a TCP flow nobody sent", c.who, id)
		}
	}
	ids := slices.SortedFunc(func(yield func(flowcheck.ID) bool) {
		for id := range c.want {
			if !yield(id) {
				return
			}
		}
	}, func(a, b flowcheck.ID) int { return strings.Compare(a.String(), b.String()) })
	for _, id := range ids {
		want := c.want[id]
		recs := c.got[id]
		if len(recs) == 0 {
			t.Errorf("%s: no record of %v", c.who, id)
			continue
		}
		var sum health
		for _, h := range recs {
			for _, l := range []struct {
				name      string
				got, want time.Duration
			}{{"server delay", h.sl, want.sl}, {"client delay", h.cl, want.cl}, {"application latency", h.al, want.al}} {
				if l.want == none {
					if l.got != 0 {
						t.Errorf("%s: %v: %s %v, want none", c.who, id, l.name, l.got)
					}
					continue
				}
				d, ok := c.near(l.got, l.want)
				c.worst = max(c.worst, d)
				if !ok {
					t.Errorf("%s: %v: %s %v, the wire saw %v: %v off", c.who, id, l.name, l.got, l.want, d)
				}
			}
			sum.retrans += h.retrans
			sum.ooo += h.ooo
			sum.zeroWin += h.zeroWin
		}
		if sum.retrans != want.retrans || sum.ooo != want.ooo || sum.zeroWin != want.zeroWin {
			t.Errorf("%s: %v: retransmitted %d, out of order %d, zero window %d; want %d, %d, %d",
				c.who, id, sum.retrans, sum.ooo, sum.zeroWin, want.retrans, want.ooo, want.zeroWin)
		}
	}
}

// jsonHealth reads the probe's --stdout records.
func jsonHealth(t *testing.T, stdout string, c *healthChecker) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(stdout))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var f schemas.Flow
		if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
			t.Fatalf("--stdout line %q: %v", sc.Text(), err)
		}
		c.add(flowcheck.IDOf(&f), health{sl: time.Duration(f.ServerNwDelayNs), cl: time.Duration(f.ClientNwDelayNs), al: time.Duration(f.ApplLatencyNs),
			retrans: f.TcpRetransmitted, ooo: f.TcpOutOfOrder, zeroWin: f.TcpZeroWindow})
	}
}

// Conversations a mirror port sees, generated with known gaps.
type hsKind int

const (
	hsNormal        hsKind = iota
	hsSYNRetrans           // the SYN twice: server delay from the second; one retransmission
	hsSYNACKRetrans        // the SYN-ACK twice: server delay from the first, client delay from the second
	hsDataRetrans          // client data repeated (2 retransmissions), server data repeated (1)
	hsOutOfOrder           // a client segment past a gap, then the gap's: 1 out of order
	hsZeroWindow           // the server advertises a zero window twice
	hsRST                  // the server answers the SYN with a RST: no latencies
	hsSimOpen              // SYNs both ways, then SYN-ACKs both ways: no latencies, one retransmission each way
	hsKinds
)

// mirrorConv is one generated conversation: its client's direction, the
// gaps it was generated with, and the counts each direction must show.
type mirrorConv struct {
	kind           hsKind
	id             flowcheck.ID
	sl, cl, al     time.Duration
	client, server health // counts only
}

type mirrorSeg struct {
	at   time.Duration
	conv int
	flow trafficgen.Flow
}

// mirrorConversations generates n conversations, every kind in IPv4 and
// IPv6, the next one starting every 25 ms. Gaps are 2, 14 or 26 ms (SYN to
// SYN-ACK), 6, 18 or 30 ms (to the ACK) and 10, 22 or 34 ms (client data to
// server data), so no two latencies of a conversation are within 4 ms. A
// retransmitted SYN or SYN-ACK, the first repeated data segment each way
// and a gap's filling segment come acrossDrain after the segment before.
func mirrorConversations(n int) ([]mirrorConv, []mirrorSeg) {
	var convs []mirrorConv
	var segs []mirrorSeg
	for i := range n {
		kind := hsKind(i % int(hsKinds))
		cAddr, sAddr := netip.AddrFrom4([4]byte{198, 18, 10, byte(1 + i)}), netip.AddrFrom4([4]byte{198, 18, 20, byte(1 + i%7)})
		if (i/int(hsKinds))%2 == 1 {
			cAddr, sAddr = netip.MustParseAddr(fmt.Sprintf("2001:db8:10::%x", 1+i)), netip.MustParseAddr(fmt.Sprintf("2001:db8:20::%x", 1+i%7))
		}
		cv := mirrorConv{kind: kind, id: flowcheck.ID{Src: cAddr, Dst: sAddr, SrcPort: uint16(20000 + i), DstPort: []uint16{80, 443}[i%2], Proto: 6},
			sl: time.Duration(2+12*(i%3)) * time.Millisecond, cl: time.Duration(6+12*((i/3)%3)) * time.Millisecond,
			al: time.Duration(10+12*((i/9)%3)) * time.Millisecond}
		cisn, sisn := uint32(1000*(i+1)), uint32(5_000_000+7919*i)
		at := time.Duration(i) * 25 * time.Millisecond
		seg := func(server bool, flags uint16, seq uint32, payload int, zeroWin bool) {
			f := trafficgen.Flow{Src: cv.id.Src, Dst: cv.id.Dst, SrcPort: cv.id.SrcPort, DstPort: cv.id.DstPort, Proto: 6,
				TCPFlags: flags, Seq: seq, Ack: sisn + 1, Payload: payload, ZeroWindow: zeroWin, Packets: 1}
			if server {
				f.Src, f.Dst, f.SrcPort, f.DstPort, f.Ack = f.Dst, f.Src, f.DstPort, f.SrcPort, cisn+1
			}
			segs = append(segs, mirrorSeg{at: at, conv: i, flow: f})
		}
		seg(false, tcpSYN, cisn, 0, false)
		switch kind {
		case hsRST:
			at += cv.sl
			seg(true, tcpRST|tcpACK, 0, 0, false)
			convs = append(convs, cv)
			continue
		case hsSimOpen:
			// Each end's SYN-ACK repeats its SYN's sequence number.
			more := func(server bool, flags uint16, seq uint32, payload int) {
				at += time.Millisecond
				seg(server, flags, seq, payload, false)
			}
			more(true, tcpSYN, sisn, 0)
			more(false, tcpSYN|tcpACK, cisn, 0)
			more(true, tcpSYN|tcpACK, sisn, 0)
			more(false, tcpACK|tcpPSH, cisn+1, 100)
			more(true, tcpACK|tcpPSH, sisn+1, 300)
			cv.client.retrans, cv.server.retrans = 1, 1
			convs = append(convs, cv)
			continue
		}
		if kind == hsSYNRetrans {
			at += acrossDrain
			seg(false, tcpSYN, cisn, 0, false)
			cv.client.retrans = 1
		}
		at += cv.sl
		seg(true, tcpSYN|tcpACK, sisn, 0, false)
		if kind == hsSYNACKRetrans {
			at += acrossDrain
			seg(true, tcpSYN|tcpACK, sisn, 0, false)
			cv.server.retrans = 1
		}
		at += cv.cl
		seg(false, tcpACK, cisn+1, 0, false)
		at += 2 * time.Millisecond
		seg(false, tcpACK|tcpPSH, cisn+1, 100, false) // the request
		at += cv.al
		seg(true, tcpACK|tcpPSH, sisn+1, 300, false) // the answer
		more := func(server bool, flags uint16, seq uint32, payload int, zeroWin bool) {
			at += time.Millisecond
			seg(server, flags, seq, payload, zeroWin)
		}
		later := func(server bool, flags uint16, seq uint32, payload int, zeroWin bool) {
			at += acrossDrain
			seg(server, flags, seq, payload, zeroWin)
		}
		switch kind {
		case hsDataRetrans:
			more(false, tcpACK, cisn+101, 100, false)
			later(false, tcpACK, cisn+1, 100, false)  // again
			more(false, tcpACK, cisn+101, 100, false) // again
			more(true, tcpACK, sisn+301, 300, false)
			later(true, tcpACK, sisn+301, 300, false) // again
			cv.client.retrans, cv.server.retrans = 2, 1
		case hsOutOfOrder:
			more(false, tcpACK, cisn+201, 100, false)  // past a gap
			later(false, tcpACK, cisn+101, 100, false) // the gap
			more(false, tcpACK, cisn+301, 100, false)
			cv.client.ooo = 1
		case hsZeroWindow:
			more(true, tcpACK, sisn+301, 0, true)
			more(true, tcpACK, sisn+301, 0, true)
			more(true, tcpACK, sisn+301, 0, false)
			cv.server.zeroWin = 2
		}
		convs = append(convs, cv)
	}
	sort.SliceStable(segs, func(a, b int) bool { return segs[a].at < segs[b].at })
	return convs, segs
}

// TestTCPHealthMirror: 64 conversations (every handshake case, IPv4 and
// IPv6), both directions sent into the capture interface with known gaps
// between SYN, SYN-ACK, ACK and first data (no netem here: the generator
// sleeps between sends), a dumpcap capture of the interface giving what
// the wire saw. nfdump's %cl %sl %al from the probe's NetFlow v9, Wireshark's
// decoding of its IPFIX (ntop's elements) and its JSON lines give the
// latencies the wire saw within 1 ms or 5%, and the retransmission,
// out-of-order and zero-window counts exactly, with drains falling
// between retransmissions and what they repeat, and in handshakes.
func TestTCPHealthMirror(t *testing.T) {
	needTools(t, "nfcapd", "tshark", "dumpcap")
	pair := newTestPair(t, "t15m")
	convs, segs := mirrorConversations(64)

	ipfixC := collector(t, pair)
	nf := flowcheck.StartNfcapd(t, pair)
	capture, err := flowcheck.StartCapture(t.TempDir(), pair.NsName("b"), pair.LinkB)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { capture.Stop() })
	pr := startProbe(t, pair, "--netflow9", nf.URL, "--ipfix", ipfixC.URL(), "--stdout", "--pin-path", "", "--drain-interval", healthDrain.String())

	frames := make([][]byte, len(segs))
	for i, s := range segs {
		if frames[i], _, err = s.flow.Frame(pair.MACA, pair.MACB); err != nil {
			t.Fatal(err)
		}
	}
	if err := pair.In(pair.A, func() error {
		s, err := trafficgen.NewSender(pair.IfindexA)
		if err != nil {
			return err
		}
		defer s.Close()
		start := time.Now()
		for i, sg := range segs {
			time.Sleep(time.Until(start.Add(sg.at)))
			if err := s.Send(frames[i]); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the veth delivers asynchronously
	if err := capture.Stop(); err != nil {
		t.Fatal(err)
	}
	pr.stop(t)
	time.Sleep(100 * time.Millisecond)

	// The truth: the gaps the wire saw, and the generated counts.
	wire := wireHandshakes(t, capture.Path)
	want := map[flowcheck.ID]health{}
	var drift time.Duration // generated gap vs the wire's
	for _, cv := range convs {
		if cv.kind == hsRST || cv.kind == hsSimOpen { // no handshake to time
			cv.client.sl, cv.client.cl, cv.client.al = none, none, none
			cv.server.sl, cv.server.cl, cv.server.al = none, none, none
			want[cv.id], want[reverse(cv.id)] = cv.client, cv.server
			continue
		}
		w, ok := wire[cv.id]
		if !ok || w.sl == none || w.cl == none || w.al == none {
			t.Fatalf("%v: the capture lacks part of the handshake: %v", cv.id, w)
		}
		drift = max(drift, abs(w.sl-cv.sl), abs(w.cl-cv.cl), abs(w.al-cv.al))
		cl, sv := cv.client, cv.server
		cl.sl, cl.cl, cl.al = w.sl, w.cl, none
		sv.sl, sv.cl, sv.al = w.sl, w.cl, w.al
		want[cv.id], want[reverse(cv.id)] = cl, sv
	}

	js := newHealthChecker(t, "--stdout JSON", want)
	jsonHealth(t, pr.stdout.String(), js)
	js.check()

	// nfdump, as an operator asks it: latencies in ms with µs precision.
	// It shows no retransmission counts (nProbe's fields for them are not
	// among its elements): the JSON lines and Wireshark check those.
	nfWant := map[flowcheck.ID]health{}
	for id, h := range want {
		nfWant[id] = health{sl: h.sl, cl: h.cl, al: h.al}
	}
	nfc := newHealthChecker(t, "nfdump (NetFlow v9) %cl %sl %al", nfWant)
	for _, row := range nf.Format(t, "%sa|%sp|%da|%dp|%pr|%cl|%sl|%al") {
		if len(row) != 8 {
			t.Fatalf("nfdump row %q", row)
		}
		id := flowcheck.ID{Src: netip.MustParseAddr(row[0]), Dst: netip.MustParseAddr(row[2]), SrcPort: uint16(atoi(t, row[1])), DstPort: uint16(atoi(t, row[3]))}
		if row[4] == "TCP" || row[4] == "6" { // -N: the number
			id.Proto = 6
		}
		ms := func(s string) time.Duration {
			v, err := strconv.ParseFloat(s, 64)
			if err != nil {
				t.Fatalf("nfdump latency %q: %v", s, err)
			}
			return time.Duration(math.Round(v * 1e6))
		}
		nfc.add(id, health{cl: ms(row[5]), sl: ms(row[6]), al: ms(row[7])})
	}
	nfc.check()

	// Wireshark on the IPFIX export: ntop's elements, whole ms (the
	// encoder truncates), so a value v stands for [v, v+1) ms.
	flows, err := flowcheck.TsharkFlows(t.TempDir(), 4739, ipfixC.Stop())
	if err != nil {
		t.Fatal(err)
	}
	tsWant := map[flowcheck.ID]health{}
	for id, h := range want {
		h.zeroWin = 0 // ntop has no element for it: the JSON lines carry it
		tsWant[id] = h
	}
	tsc := newHealthChecker(t, "Wireshark (IPFIX, ntop's elements)", tsWant)
	tsc.near = func(got, want time.Duration) (time.Duration, bool) {
		d := max(got-want, want-(got+time.Millisecond), 0) // distance to [got, got+1ms)
		return d, d <= tolerance(want)
	}
	for _, f := range flows {
		if _, ok := f["cflow.protocol"]; !ok {
			continue // an options record (the exporter's statistics)
		}
		id := flowcheck.ID{SrcPort: uint16(atoi(t, f["cflow.srcport"])), DstPort: uint16(atoi(t, f["cflow.dstport"])), Proto: uint8(atoi(t, f["cflow.protocol"]))}
		for _, a := range []struct {
			to   *netip.Addr
			keys []string
		}{{&id.Src, []string{"cflow.srcaddr", "cflow.srcaddrv6"}}, {&id.Dst, []string{"cflow.dstaddr", "cflow.dstaddrv6"}}} {
			for _, k := range a.keys {
				if s, ok := f[k]; ok {
					*a.to = netip.MustParseAddr(s)
				}
			}
		}
		num := func(k string) uint64 {
			if s, ok := f[k]; ok {
				return uint64(atoi(t, s))
			}
			return 0
		}
		tsc.add(id, health{cl: time.Duration(num("cflow.pie.ntop.client_nw_latency_ms")) * time.Millisecond,
			sl:      time.Duration(num("cflow.pie.server_nw_latency_ms")) * time.Millisecond,
			al:      time.Duration(num("cflow.pie.ntop.appl_latency_ms")) * time.Millisecond,
			retrans: uint32(num("cflow.pie.ntop.retransmitted_in_pkts")), ooo: uint32(num("cflow.pie.ntop.ooorder_in_pkts"))})
	}
	tsc.check()

	t.Logf("%d conversations, %d segments: generated gaps vs the wire's: at most %v apart; the probe vs the wire: JSON %v, nfdump %v, Wireshark (whole ms) %v",
		len(convs), len(segs), drift, js.worst, nfc.worst, tsc.worst)
	keepCapture(t, capture)
	if t.Failed() {
		t.Logf("probe log:\n%s", pr.stderr.String())
	}
}

// keepCapture keeps a failed test's capture past its temporary
// directory, to read the bytes and times.
func keepCapture(t *testing.T, c *flowcheck.Capture) {
	if !t.Failed() {
		return
	}
	b, err := os.ReadFile(c.Path)
	if err == nil {
		path := filepath.Join(os.TempDir(), "xdpflow-"+t.Name()+".pcap")
		if err = os.WriteFile(path, b, 0o644); err == nil {
			t.Logf("the capture is kept in %s", path)
			return
		}
	}
	t.Logf("keeping the capture: %v", err)
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("number %q: %v", s, err)
	}
	return n
}

// routedConn is one real TCP connection of TestTCPHealthRouted.
type routedConn struct {
	v6                bool
	dropReq, dropResp bool // the request's (the answer's) first copy lost past the tap
	id                flowcheck.ID
}

func (c routedConn) marker(kind byte, i int) [4]byte {
	return [4]byte{kind, byte('0' + i/100), byte('0' + i/10%10), byte('0' + i%10)}
}

// TestTCPHealthRouted: real TCP connections (the kernel's stacks, Go's
// net) from a client namespace through a router namespace to a server
// namespace; the router copies both directions (tc mirred on its ingress)
// to a veth whose other end is the probe's capture interface: a span port
// in miniature. Some connections lose their request's or their answer's
// first copy past the tap (a tc program drops it once), so the stack
// retransmits. Checked against Wireshark reading a dumpcap capture of the
// capture interface: client + server delay equal to its
// tcp.analysis.initial_rtt within 0.1 ms, retransmissions (and out of
// order segments) per direction equal to its tcp.analysis counts;
// latencies below 1 ms, as on veths, but where a loss delayed the answer.
func TestTCPHealthRouted(t *testing.T) {
	needTools(t, "tshark", "dumpcap", "tc")
	pair := newTestPair(t, "t15r") // a: the router, b: the probe; their veth is the span port
	pfx := netip.MustParsePrefix
	client, err := pair.AddSpoke(pair.A, "c", []netip.Prefix{pfx("198.18.1.1/24"), pfx("2001:db8:1::1/64")}, []netip.Prefix{pfx("198.18.1.254/24"), pfx("2001:db8:1::fe/64")})
	if err != nil {
		t.Fatal(err)
	}
	server, err := pair.AddSpoke(pair.A, "s", []netip.Prefix{pfx("198.18.2.1/24"), pfx("2001:db8:2::1/64")}, []netip.Prefix{pfx("198.18.2.254/24"), pfx("2001:db8:2::fe/64")})
	if err != nil {
		t.Fatal(err)
	}
	if err := pair.In(pair.A, func() error {
		for _, k := range []string{"net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"} {
			if err := os.WriteFile("/proc/sys/"+k, []byte("1"), 0o644); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// The span: what enters the router from either host, copied out of
	// the pair's a end.
	for _, dev := range []string{client.HubLink, server.HubLink} {
		for _, args := range [][]string{{"qdisc", "add", "dev", dev, "clsact"},
			{"filter", "add", "dev", dev, "ingress", "protocol", "all", "prio", "1", "u32", "match", "u32", "0", "0", "action", "mirred", "egress", "mirror", "dev", pair.LinkA}} {
			if out, err := exec.Command("ip", append([]string{"netns", "exec", pair.NsName("a"), "tc"}, args...)...).CombinedOutput(); err != nil {
				t.Fatalf("tc %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}
	}

	const n, reqLen, respLen = 24, 200, 1200
	conns := make([]routedConn, n)
	var markers [][4]byte
	for i := range conns {
		c := &conns[i]
		c.v6 = i%2 == 1
		c.dropReq = i == 4 || i == 5 || i == 16 || i == 17
		c.dropResp = i == 10 || i == 11 || i == 16 || i == 17
		if c.dropReq {
			markers = append(markers, c.marker('Q', i))
		}
		if c.dropResp {
			markers = append(markers, c.marker('R', i))
		}
	}
	drop, err := bpftest.LoadDropOnce(markers...)
	if err != nil {
		t.Fatal(err)
	}
	defer drop.Close()
	// Past the tap: the request is lost on its way out to the server, the
	// answer on its way out to the client.
	if err := pair.In(pair.A, func() error {
		for _, idx := range []int{client.HubIdx, server.HubIdx} {
			l, err := link.AttachTCX(link.TCXOptions{Interface: idx, Program: drop.Program, Attach: ebpf.AttachTCXEgress})
			if err != nil {
				return fmt.Errorf("attach the drop-once program (tcx egress): %w", err)
			}
			t.Cleanup(func() { l.Close() })
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	capture, err := flowcheck.StartCapture(t.TempDir(), pair.NsName("b"), pair.LinkB)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { capture.Stop() })
	pr := startProbe(t, pair, "--stdout", "--pin-path", "", "--drain-interval", healthDrain.String())

	var ln net.Listener
	if err := pair.In(server.Ns, func() (err error) { ln, err = net.Listen("tcp", ":8080"); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var wg sync.WaitGroup
	serveErr := make(chan error, n)
	wg.Add(1)
	go func() { // the server: read a request, answer it, wait for the close
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				req := make([]byte, reqLen)
				if _, err := io.ReadFull(c, req); err != nil {
					serveErr <- fmt.Errorf("server read: %w", err)
					return
				}
				resp := make([]byte, respLen)
				copy(resp, []byte{'R', req[1], req[2], req[3]})
				if _, err := c.Write(resp); err != nil {
					serveErr <- fmt.Errorf("server write: %w", err)
					return
				}
				io.Copy(io.Discard, c)
			}()
		}
	}()
	for i := range conns {
		c := &conns[i]
		dst := "198.18.2.1:8080"
		if c.v6 {
			dst = "[2001:db8:2::1]:8080"
		}
		var conn net.Conn
		if err := pair.In(client.Ns, func() (err error) { conn, err = net.DialTimeout("tcp", dst, 5*time.Second); return err }); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		la, ra := conn.LocalAddr().(*net.TCPAddr).AddrPort(), conn.RemoteAddr().(*net.TCPAddr).AddrPort()
		c.id = flowcheck.ID{Src: la.Addr().Unmap(), Dst: ra.Addr().Unmap(), SrcPort: la.Port(), DstPort: ra.Port(), Proto: 6}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		req := make([]byte, reqLen)
		m := c.marker('Q', i)
		copy(req, m[:])
		_, err := conn.Write(req)
		resp := make([]byte, respLen)
		if err == nil {
			_, err = io.ReadFull(conn, resp)
		}
		conn.Close()
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
	}
	ln.Close()
	wg.Wait()
	close(serveErr)
	for err := range serveErr {
		t.Error(err)
	}
	time.Sleep(100 * time.Millisecond) // the veths deliver asynchronously
	if err := capture.Stop(); err != nil {
		t.Fatal(err)
	}
	pr.stop(t)
	for _, m := range markers {
		if seen, err := drop.Seen(m); err != nil || seen < 2 {
			t.Errorf("segment %q: seen %d times at the router's egress (%v), want the lost copy and at least one more", m[:], seen, err)
		}
	}

	// Wireshark on the capture: the handshake's round trip per
	// connection, retransmissions and out-of-order segments per direction.
	rtt := map[flowcheck.ID]time.Duration{}
	counts := map[flowcheck.ID]*health{}
	for _, c := range conns {
		counts[c.id], counts[reverse(c.id)] = &health{}, &health{}
	}
	fields := []string{"ip.src", "ipv6.src", "tcp.srcport", "ip.dst", "ipv6.dst", "tcp.dstport"}
	idOf := func(row []string) flowcheck.ID {
		addr := func(a, b string) netip.Addr { return netip.MustParseAddr(a + b) } // one of them is empty
		return flowcheck.ID{Src: addr(row[0], row[1]), Dst: addr(row[3], row[4]), SrcPort: uint16(atoi(t, row[2])), DstPort: uint16(atoi(t, row[5])), Proto: 6}
	}
	rows, err := flowcheck.TsharkFields(capture.Path, "tcp.analysis.initial_rtt && tcp.srcport != 8080", append(fields, "tcp.analysis.initial_rtt")...)
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range rows {
		s, err := strconv.ParseFloat(row[6], 64)
		if err != nil {
			t.Fatalf("tcp.analysis.initial_rtt %q: %v", row[6], err)
		}
		rtt[idOf(row)] = time.Duration(s * 1e9)
	}
	for _, a := range []struct {
		filter string
		count  func(*health)
	}{{"tcp.analysis.retransmission", func(h *health) { h.retrans++ }}, {"tcp.analysis.out_of_order", func(h *health) { h.ooo++ }}} {
		rows, err := flowcheck.TsharkFields(capture.Path, a.filter, fields...)
		if err != nil {
			t.Fatal(err)
		}
		for _, row := range rows {
			h := counts[idOf(row)]
			if h == nil {
				t.Fatalf("Wireshark: %s on %v, no connection of the test", a.filter, idOf(row))
			}
			a.count(h)
		}
	}

	// The probe's JSON lines, against Wireshark and against the wire's
	// times by the datapath's rules (wireHandshakes).
	wire := wireHandshakes(t, capture.Path)
	want := map[flowcheck.ID]health{}
	for _, c := range conns {
		w := wire[c.id]
		cl, sv := *counts[c.id], *counts[reverse(c.id)]
		cl.sl, cl.cl, cl.al = w.sl, w.cl, none
		sv.sl, sv.cl, sv.al = w.sl, w.cl, w.al
		want[c.id], want[reverse(c.id)] = cl, sv
		if c.dropReq && cl.retrans == 0 || c.dropResp && sv.retrans == 0 {
			t.Errorf("%v: Wireshark saw no retransmission where a copy was lost: client %v, server %v", c.id, cl, sv)
		}
	}
	js := newHealthChecker(t, "--stdout JSON (vs the capture)", want)
	js.near = func(got, want time.Duration) (time.Duration, bool) {
		return abs(got - want), abs(got-want) <= 100*time.Microsecond
	}
	jsonHealth(t, pr.stdout.String(), js)
	js.check()
	var worstRTT time.Duration
	var most health
	for i, c := range conns {
		recs := js.got[c.id]
		srecs := js.got[reverse(c.id)]
		if len(recs) == 0 || len(srecs) == 0 {
			continue // reported by check
		}
		h, s := recs[0], srecs[0]
		if h.sl <= 0 || h.cl <= 0 || s.al <= 0 || h.sl >= time.Millisecond || h.cl >= time.Millisecond || (!c.dropReq && s.al >= time.Millisecond) {
			t.Errorf("connection %d %v: server delay %v, client delay %v, application latency %v: want each present and below 1 ms on veths (the latter but where the request was lost)",
				i, c.id, h.sl, h.cl, s.al)
		}
		w, ok := rtt[c.id]
		if !ok {
			t.Errorf("%v: Wireshark has no initial RTT", c.id)
			continue
		}
		worstRTT = max(worstRTT, abs(h.sl+h.cl-w))
		if abs(h.sl+h.cl-w) > 100*time.Microsecond {
			t.Errorf("%v: server + client delay %v + %v = %v, Wireshark's initial RTT %v", c.id, h.sl, h.cl, h.sl+h.cl, w)
		}
		most.sl, most.cl, most.al = max(most.sl, h.sl), max(most.cl, h.cl), max(most.al, s.al)
		most.retrans += h.retrans + s.retrans
	}
	t.Logf("%d connections: server + client delay vs Wireshark's initial RTT at most %v apart, vs the capture's times %v; largest server delay %v, client delay %v, application latency %v; %d retransmissions (Wireshark: the same)",
		n, worstRTT, js.worst, most.sl, most.cl, most.al, most.retrans)
	keepCapture(t, capture)
	if t.Failed() {
		t.Logf("probe log:\n%s", pr.stderr.String())
	}
}

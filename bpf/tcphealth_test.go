package bpf

import (
	"fmt"
	"net"
	"testing"

	"github.com/gopacket/gopacket/layers"
)

// TCP health (issue #15): handshake latencies, retransmissions, out of
// order, zero windows, through the real program with the test clock, so
// every expected value is exact.

// seg is one TCP segment of a conversation between a client (v4a:40000
// or v6a) and a server (v4b:80 or v6b), at a time of the test clock.
type seg struct {
	at      uint64 // ns
	server  bool   // sent by the server
	flags   uint16
	seq     uint32
	payload int
	win     uint16 // 0 = 1024; zeroWin for a zero window
	rotate  bool   // drain the tables before this segment
	cport   uint16 // the client's port: 0 = 40000 (another conversation: other)
}

const zeroWin = 0xffff // seg.win meaning a window of 0

// hsWant is what one direction's flow must hold at the end.
type hsWant struct {
	sl, cl, al           uint64
	retrans, ooo, zeroWn uint32
}

func segFrame(s seg, v6 bool) []byte {
	cp := s.cport
	if cp == 0 {
		cp = 40000
	}
	t := tcp(cp, 80, s.flags)
	if s.server {
		t = tcp(80, cp, s.flags)
	}
	t.Seq = s.seq
	t.Ack = 1
	switch s.win {
	case 0:
		t.Window = 1024
	case zeroWin:
		t.Window = 0
	default:
		t.Window = s.win
	}
	if v6 {
		h := ipv6(layers.IPProtocolTCP)
		if s.server {
			h.SrcIP, h.DstIP = v6b, v6a
		}
		t.SetNetworkLayerForChecksum(h)
		return pad(build(eth(layers.EthernetTypeIPv6), h, t, payload(s.payload)), 60)
	}
	h := ipv4(layers.IPProtocolTCP)
	if s.server {
		h.SrcIP, h.DstIP = v4b, v4a
	}
	return pad(build(eth(layers.EthernetTypeIPv4), h, t, payload(s.payload)), 60)
}

// drainMode is where a segment marked rotate falls in the drain before
// it: the moments at which sequence state moves from one table to the next
// (docs/datapath.md, "The sequence carry").
type drainMode int

const (
	afterDrain  drainMode = iota // Rotate, Drain (carried, deleted), then the segment
	beforeDrain                  // Rotate, the segment, Drain: the table taken out still holds the flow
	beforeClear                  // Rotate, Read (carried), the segment, Clear: the probe with --state-dir
	drainModes
)

func (m drainMode) String() string {
	return [...]string{"after the drain", "between the swap and the drain", "between the read and the clear"}[m]
}

// runSegs sends the segments and returns both directions' values, merged
// over every drain.
func runSegs(t *testing.T, d *Datapath, segs []seg, v6 bool) (client, server FlowValue) {
	t.Helper()
	return runSegsMode(t, d, segs, v6, afterDrain)
}

// runSegsMode is runSegs with each rotate segment at mode in its drain.
func runSegsMode(t *testing.T, d *Datapath, segs []seg, v6 bool, mode drainMode) (client, server FlowValue) {
	t.Helper()
	ca, sa := net.IP(v4a), net.IP(v4b)
	if v6 {
		ca, sa = v6a, v6b
	}
	add := func(k FlowKey, v FlowValue) {
		switch {
		case k.Src().String() == ip(ca) && k.SrcPort == 40000:
			client.Merge(v)
		case k.Src().String() == ip(sa) && k.SrcPort == 80:
			server.Merge(v)
		case k.SrcPort != 40000 && k.DstPort != 40000: // another conversation (seg.cport)
		default:
			t.Errorf("unexpected flow %s", keyString(k))
		}
	}
	merge := func() {
		for k, v := range drainAll(t, d) {
			add(k, v)
		}
	}
	var finish func() error // the rest of a drain, after the segment
	for _, s := range segs {
		if s.rotate && mode == afterDrain {
			merge()
		} else if s.rotate {
			old, err := d.Rotate()
			if err != nil {
				t.Fatal(err)
			}
			finish = func() error { return d.Drain(old, add) }
			if mode == beforeClear {
				if err := d.Read(old, add); err != nil {
					t.Fatal(err)
				}
				finish = func() error { return d.Clear(old) }
			}
		}
		if err := d.setTestClock(s.at); err != nil {
			t.Fatal(err)
		}
		run(t, d.Program, segFrame(s, v6))
		if finish != nil {
			if err := finish(); err != nil {
				t.Fatal(err)
			}
			finish = nil
		}
	}
	merge()
	return client, server
}

func ip(a net.IP) string {
	if a4 := a.To4(); a4 != nil {
		return a4.String()
	}
	return a.String()
}

const (
	us = uint64(1000)
	ms = 1000 * us
	s1 = 1000 * ms
)

func TestTCPHealth(t *testing.T) {
	const cisn, sisn = 1000, 5000000
	// The handshake at 1 s: server delay 300 us, client delay 200 us.
	hs := []seg{
		{at: s1, flags: tSYN, seq: cisn},
		{at: s1 + 300*us, server: true, flags: tSYN | tACK, seq: sisn},
		{at: s1 + 500*us, flags: tACK, seq: cisn + 1},
	}
	withHS := func(more ...seg) []seg { return append(append([]seg{}, hs...), more...) }
	// The request at 2 s, the answer 5 ms later.
	req := seg{at: 2 * s1, flags: tACK | tPSH, seq: cisn + 1, payload: 100}
	resp := seg{at: 2*s1 + 5*ms, server: true, flags: tACK | tPSH, seq: sisn + 1, payload: 200}
	cases := []struct {
		name           string
		cfg            Config
		segs           []seg
		client, server hsWant
		convs          int // conversations left in tcp_convs
		full           uint64
	}{
		{name: "normal", segs: withHS(req, resp),
			client: hsWant{sl: 300 * us, cl: 200 * us},
			server: hsWant{sl: 300 * us, cl: 200 * us, al: 5 * ms}, convs: 1},
		{name: "data on the handshake ACK", segs: []seg{hs[0], hs[1],
			{at: s1 + 500*us, flags: tACK | tPSH, seq: cisn + 1, payload: 50},
			{at: s1 + 700*us, server: true, flags: tACK | tPSH, seq: sisn + 1, payload: 10}},
			client: hsWant{sl: 300 * us, cl: 200 * us},
			server: hsWant{sl: 300 * us, cl: 200 * us, al: 200 * us}, convs: 1},
		{name: "SYN retransmitted", segs: []seg{
			{at: s1, flags: tSYN, seq: cisn},
			{at: 2 * s1, flags: tSYN, seq: cisn},
			{at: 2*s1 + 300*us, server: true, flags: tSYN | tACK, seq: sisn},
			{at: 2*s1 + 500*us, flags: tACK, seq: cisn + 1}},
			// The server sent nothing after the handshake's ACK.
			client: hsWant{sl: 300 * us, cl: 200 * us, retrans: 1},
			server: hsWant{sl: 300 * us}, convs: 1},
		{name: "SYN-ACK retransmitted", segs: []seg{
			{at: s1, flags: tSYN, seq: cisn},
			{at: s1 + 300*us, server: true, flags: tSYN | tACK, seq: sisn},
			{at: 2*s1 + 300*us, server: true, flags: tSYN | tACK, seq: sisn},
			{at: 2*s1 + 400*us, flags: tACK, seq: cisn + 1}},
			client: hsWant{sl: 300 * us, cl: 100 * us},
			server: hsWant{sl: 300 * us, retrans: 1}, convs: 1},
		{name: "RST instead of SYN-ACK", segs: []seg{
			{at: s1, flags: tSYN, seq: cisn},
			{at: s1 + 300*us, server: true, flags: tRST | tACK, seq: 0}},
			convs: 0},
		{name: "simultaneous open", segs: []seg{
			{at: s1, flags: tSYN, seq: cisn},
			{at: s1 + 10*us, server: true, flags: tSYN, seq: sisn},
			{at: s1 + 20*us, flags: tSYN | tACK, seq: cisn},
			{at: s1 + 30*us, server: true, flags: tSYN | tACK, seq: sisn},
			{at: s1 + 40*us, flags: tACK | tPSH, seq: cisn + 1, payload: 10},
			{at: s1 + 50*us, server: true, flags: tACK | tPSH, seq: sisn + 1, payload: 10}},
			// Each end's SYN-ACK repeats its SYN's sequence number.
			client: hsWant{retrans: 1}, server: hsWant{retrans: 1}, convs: 1},
		{name: "data retransmitted", segs: withHS(req,
			seg{at: 2*s1 + 1*ms, flags: tACK, seq: cisn + 101, payload: 100},
			seg{at: 2*s1 + 2*ms, flags: tACK, seq: cisn + 1, payload: 100},   // again
			seg{at: 2*s1 + 3*ms, flags: tACK, seq: cisn + 51, payload: 100},  // overlaps, within
			seg{at: 2*s1 + 4*ms, flags: tACK, seq: cisn + 151, payload: 100}, // overlaps the end
			seg{at: 2*s1 + 5*ms, flags: tACK, seq: cisn + 251, payload: 100}, // new
			resp),
			client: hsWant{sl: 300 * us, cl: 200 * us, retrans: 3},
			server: hsWant{sl: 300 * us, cl: 200 * us, al: 5 * ms}, convs: 1},
		{name: "out of order", segs: withHS(req,
			seg{at: 2*s1 + 1*ms, flags: tACK, seq: cisn + 301, payload: 100}, // gap 101..301
			seg{at: 2*s1 + 2*ms, flags: tACK, seq: cisn + 101, payload: 100}, // fills its front
			seg{at: 2*s1 + 3*ms, flags: tACK, seq: cisn + 201, payload: 100}, // fills the rest
			seg{at: 2*s1 + 4*ms, flags: tACK, seq: cisn + 201, payload: 100}, // now a retransmission
			resp),
			client: hsWant{sl: 300 * us, cl: 200 * us, ooo: 2, retrans: 1},
			server: hsWant{sl: 300 * us, cl: 200 * us, al: 5 * ms}, convs: 1},
		{name: "zero window", segs: withHS(req, resp,
			seg{at: 3 * s1, flags: tACK, seq: cisn + 101, win: zeroWin},
			seg{at: 3*s1 + ms, flags: tACK, seq: cisn + 101, win: zeroWin},
			seg{at: 3*s1 + 2*ms, flags: tACK, seq: cisn + 101}),
			client: hsWant{sl: 300 * us, cl: 200 * us, zeroWn: 2},
			server: hsWant{sl: 300 * us, cl: 200 * us, al: 5 * ms}, convs: 1},
		{name: "handshake split across drains", segs: []seg{
			hs[0], {at: hs[1].at, server: true, flags: tSYN | tACK, seq: sisn, rotate: true},
			{at: hs[2].at, flags: tACK, seq: cisn + 1, rotate: true},
			{at: req.at, flags: req.flags, seq: req.seq, payload: req.payload, rotate: true},
			{at: resp.at, server: true, flags: resp.flags, seq: resp.seq, payload: resp.payload, rotate: true},
			// The client's flow in a later table: the network delays
			// again, the application latency still the server's only.
			{at: resp.at + ms, flags: tACK, seq: req.seq + 100, rotate: true}},
			client: hsWant{sl: 300 * us, cl: 200 * us},
			server: hsWant{sl: 300 * us, cl: 200 * us, al: 5 * ms}, convs: 1},
		{name: "ports reused", segs: withHS(req, resp,
			// A new connection's SYN, another ISN: a new sequence space,
			// past the mark or below it.
			seg{at: 4 * s1, flags: tSYN, seq: 7000000},
			seg{at: 4*s1 + ms, flags: tACK, seq: 7000001, payload: 100},
			seg{at: 5 * s1, flags: tSYN, seq: 500},
			seg{at: 5*s1 + ms, flags: tACK, seq: 501, payload: 100},
			seg{at: 5*s1 + 2*ms, flags: tACK, seq: 501, payload: 100}), // a retransmission
			client: hsWant{sl: 300 * us, cl: 200 * us, retrans: 1},
			server: hsWant{sl: 300 * us, cl: 200 * us, al: 5 * ms}, convs: 1},
		{name: "conversations full", cfg: Config{TCPConversations: 1}, segs: append([]seg{
			// Another conversation takes the only entry first.
			{at: s1 / 2, flags: tSYN, seq: 1, cport: 40001}}, withHS(req, resp)...),
			client: hsWant{}, server: hsWant{}, convs: 1, full: 1},
	}
	for _, v6 := range []bool{false, true} {
		for _, c := range cases {
			name := c.name + "/ipv4"
			if v6 {
				name = c.name + "/ipv6"
			}
			t.Run(name, func(t *testing.T) {
				cfg := c.cfg
				cfg.TCPHealth, cfg.testClock = true, true
				d := load(t, cfg)
				segs := c.segs
				client, server := runSegs(t, d, segs, v6)
				check := func(dir string, v FlowValue, w hsWant) {
					t.Helper()
					got := hsWant{v.ServerNwDelayNs, v.ClientNwDelayNs, v.ApplLatencyNs, v.TcpRetrans, v.TcpOoo, v.TcpZeroWin}
					if got != w {
						t.Errorf("%s flow: %+v, want %+v", dir, got, w)
					}
				}
				check("client", client, c.client)
				check("server", server, c.server)
				n := 0
				if err := d.TCPConversations(func(ConvKey, ConvState) { n++ }); err != nil {
					t.Fatal(err)
				}
				if n != c.convs {
					t.Errorf("%d conversations in the map, want %d", n, c.convs)
				}
				st, err := d.Stats()
				if err != nil {
					t.Fatal(err)
				}
				if st.TcpConvsFull != c.full {
					t.Errorf("tcp_convs_full %d, want %d", st.TcpConvsFull, c.full)
				}
				checkIdentity(t, st)
			})
		}
	}
}

// Sequence tracking across table rotations: a flow's first packet in a new
// table continues from where the flow left off, whenever it falls in the
// drain (drainMode): a retransmission is one, an out-of-order segment
// filling a gap left in an earlier table is one, and the handshake cases
// hold as without the drain.
func TestTCPHealthAcrossDrains(t *testing.T) {
	const cisn, sisn = 1000, 5000000
	hs := []seg{
		{at: s1, flags: tSYN, seq: cisn},
		{at: s1 + 300*us, server: true, flags: tSYN | tACK, seq: sisn},
		{at: s1 + 500*us, flags: tACK, seq: cisn + 1},
	}
	req := seg{at: 2 * s1, flags: tACK | tPSH, seq: cisn + 1, payload: 100}
	resp := seg{at: 2*s1 + 5*ms, server: true, flags: tACK | tPSH, seq: sisn + 1, payload: 200}
	// c is a client segment of payload bytes at seq cisn+off, at 3 s + i ms.
	c := func(i int, off uint32, payload int, rotate bool) seg {
		return seg{at: 3*s1 + uint64(i)*ms, flags: tACK, seq: cisn + off, payload: payload, rotate: rotate}
	}
	with := func(more ...seg) []seg { return append(append(append([]seg{}, hs...), req, resp), more...) }
	base := hsWant{sl: 300 * us, cl: 200 * us}
	server := hsWant{sl: 300 * us, cl: 200 * us, al: 5 * ms}
	want := func(w hsWant, retrans, ooo uint32) hsWant { w.retrans, w.ooo = retrans, ooo; return w }
	cases := []struct {
		name           string
		segs           []seg
		client, server hsWant
	}{
		{name: "retransmission first in the new table", segs: with(
			c(1, 101, 100, false),
			c(2, 101, 100, true)), // again, the flow's first packet after the swap
			client: want(base, 1, 0), server: server},
		{name: "retransmission after an epoch without the flow", segs: with(
			c(1, 101, 100, false),
			seg{at: 3*s1 + 2*ms, server: true, flags: tACK, seq: sisn + 201, rotate: true}, // the server only
			c(3, 101, 100, true)),
			client: want(base, 1, 0), server: server},
		{name: "retransmission over several drains", segs: with(
			c(1, 101, 100, true), c(2, 101, 100, true), c(3, 1, 200, true), c(4, 201, 100, true)),
			client: want(base, 2, 0), server: server},
		{name: "out of order fill after a swap", segs: with(
			c(1, 301, 100, false), // past a gap 101..301
			c(2, 101, 100, true),  // fills its front, first in the new table
			c(3, 201, 100, true),  // the rest, first in the next one
			c(4, 201, 100, true)), // now a retransmission
			client: want(base, 1, 2), server: server},
		{name: "new segments after a swap", segs: with(
			c(1, 101, 100, true), c(2, 201, 100, true), c(3, 301, 100, true)),
			client: base, server: server},
		{name: "handshake and SYN retransmission split across drains", segs: []seg{
			hs[0],
			{at: 2 * s1, flags: tSYN, seq: cisn, rotate: true}, // the SYN again
			{at: 2*s1 + 300*us, server: true, flags: tSYN | tACK, seq: sisn, rotate: true},
			{at: 2*s1 + 500*us, flags: tACK, seq: cisn + 1, rotate: true},
			{at: 3 * s1, flags: tACK | tPSH, seq: cisn + 1, payload: 100, rotate: true},
			{at: 3*s1 + 5*ms, server: true, flags: tACK | tPSH, seq: sisn + 1, payload: 200, rotate: true}},
			client: hsWant{sl: 300 * us, cl: 200 * us, retrans: 1},
			server: hsWant{sl: 300 * us, cl: 200 * us, al: 5 * ms}},
		{name: "SYN-ACK retransmitted across a drain", segs: []seg{
			hs[0], hs[1],
			{at: 2*s1 + 300*us, server: true, flags: tSYN | tACK, seq: sisn, rotate: true},
			{at: 2*s1 + 400*us, flags: tACK, seq: cisn + 1, rotate: true}},
			client: hsWant{sl: 300 * us, cl: 100 * us},
			server: hsWant{sl: 300 * us, retrans: 1}},
		{name: "simultaneous open across drains", segs: []seg{
			{at: s1, flags: tSYN, seq: cisn},
			{at: s1 + 10*us, server: true, flags: tSYN, seq: sisn, rotate: true},
			{at: s1 + 20*us, flags: tSYN | tACK, seq: cisn, rotate: true},
			{at: s1 + 30*us, server: true, flags: tSYN | tACK, seq: sisn, rotate: true},
			{at: s1 + 40*us, flags: tACK | tPSH, seq: cisn + 1, payload: 10, rotate: true},
			{at: s1 + 50*us, server: true, flags: tACK | tPSH, seq: sisn + 1, payload: 10, rotate: true}},
			client: hsWant{retrans: 1}, server: hsWant{retrans: 1}},
		{name: "ports reused by a new connection", segs: with(
			c(1, 101, 100, false),
			seg{at: 4 * s1, flags: tSYN, seq: 7000000, rotate: true}, // another ISN: a new sequence space
			seg{at: 4*s1 + ms, flags: tACK, seq: 7000001, payload: 100},
			seg{at: 4*s1 + 2*ms, flags: tSYN, seq: 1000, rotate: true}, // and again, below the mark
			seg{at: 4*s1 + 3*ms, flags: tACK, seq: 1001, payload: 100, rotate: true},
			seg{at: 4*s1 + 4*ms, flags: tACK, seq: 1001, payload: 100, rotate: true}), // a retransmission
			client: want(base, 1, 0), server: server},
	}
	// One load for all (a load verifies for about a second): each case
	// ends with both tables drained, and a sweep empties the rest.
	d := load(t, Config{TCPHealth: true, testClock: true})
	for _, v6 := range []bool{false, true} {
		for mode := range drainModes {
			for _, c := range cases {
				name := fmt.Sprintf("%s/%s/ipv4", c.name, mode)
				if v6 {
					name = fmt.Sprintf("%s/%s/ipv6", c.name, mode)
				}
				t.Run(name, func(t *testing.T) {
					if _, err := d.SweepTCP(^uint64(0)); err != nil {
						t.Fatal(err)
					}
					client, server := runSegsMode(t, d, c.segs, v6, mode)
					for _, x := range []struct {
						dir  string
						v    FlowValue
						want hsWant
					}{{"client", client, c.client}, {"server", server, c.server}} {
						got := hsWant{x.v.ServerNwDelayNs, x.v.ClientNwDelayNs, x.v.ApplLatencyNs, x.v.TcpRetrans, x.v.TcpOoo, x.v.TcpZeroWin}
						if got != x.want {
							t.Errorf("%s flow: %+v, want %+v", x.dir, got, x.want)
						}
					}
					if cs := d.CarryStats(); cs != (CarryStats{}) {
						t.Errorf("carry: %+v flows not carried, want none", cs)
					}
					st, err := d.Stats()
					if err != nil {
						t.Fatal(err)
					}
					checkIdentity(t, st)
				})
			}
		}
	}
}

// The carry full: the flows that do not fit are counted, and their
// sequence tracking starts afresh in the next table (a retransmission
// there is not seen as one: the cost the count owns up to).
func TestTCPCarryFull(t *testing.T) {
	// TCPConversations 1: room for 2 carried flows.
	d := load(t, Config{TCPHealth: true, testClock: true, TCPConversations: 1})
	data := func(at uint64, cport uint16, server bool, seq uint32, rotate bool) seg {
		return seg{at: at, cport: cport, server: server, flags: tACK, seq: seq, payload: 100, rotate: rotate}
	}
	client, _ := runSegs(t, d, []seg{
		// Another conversation's two directions fill the carry.
		data(s1, 40001, false, 1, false), data(s1, 40001, true, 1, false),
		// This one's client, then the drain, then its retransmission.
		data(2*s1, 0, false, 1000, true),
		data(3*s1, 0, false, 1000, true),
	}, false)
	if client.TcpRetrans != 0 {
		t.Errorf("client flow: %d retransmissions, want 0 (its state was not carried)", client.TcpRetrans)
	}
	// The client's flow did not fit at the second drain, nor at the last.
	if cs := d.CarryStats(); cs != (CarryStats{Full: 2}) {
		t.Errorf("carry: %+v, want 2 flows not carried (full)", cs)
	}
	n := 0
	if err := d.TCPCarried(func(k FlowKey, c SeqCarry) {
		n++
		if k.SrcPort != 40001 && k.DstPort != 40001 {
			t.Errorf("carried %s, want only the first conversation", keyString(k))
		}
	}); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("%d flows carried, want 2", n)
	}
	// A sweep frees the carry of the flows idle since the time it is
	// given (the flow clock), and only those.
	for _, sw := range []struct {
		before uint64
		left   int
	}{{1, 2}, {^uint64(0), 0}} {
		if _, err := d.SweepTCP(sw.before); err != nil {
			t.Fatal(err)
		}
		n = 0
		if err := d.TCPCarried(func(FlowKey, SeqCarry) { n++ }); err != nil {
			t.Fatal(err)
		}
		if n != sw.left {
			t.Errorf("%d flows carried after a sweep of those idle since %d, want %d", n, sw.before, sw.left)
		}
	}
}

// SweepTCP removes the conversations idle since before, and only those.
func TestSweepTCP(t *testing.T) {
	d := load(t, Config{TCPHealth: true, testClock: true})
	for i := range 3 {
		run(t, d.Program, segFrame(seg{at: s1, flags: tSYN, seq: 1, cport: 40000 + uint16(i)}, false))
	}
	var first, last uint64 = ^uint64(0), 0
	if err := d.TCPConversations(func(_ ConvKey, s ConvState) { first, last = min(first, s.LastNs), max(last, s.LastNs) }); err != nil {
		t.Fatal(err)
	}
	if first == 0 {
		t.Fatal("a conversation carries no last-update time")
	}
	if n, err := d.SweepTCP(first); err != nil || n != 0 {
		t.Fatalf("sweep before the first update removed %d (%v), want 0", n, err)
	}
	if n, err := d.SweepTCP(last + 1); err != nil || n != 3 {
		t.Fatalf("sweep after it removed %d (%v), want 3", n, err)
	}
}

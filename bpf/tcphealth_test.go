package bpf

import (
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

// runSegs sends the segments and returns both directions' values, merged
// over every drain.
func runSegs(t *testing.T, d *Datapath, segs []seg, v6 bool) (client, server FlowValue) {
	t.Helper()
	ca, sa := net.IP(v4a), net.IP(v4b)
	if v6 {
		ca, sa = v6a, v6b
	}
	merge := func() {
		for k, v := range drainAll(t, d) {
			switch {
			case k.Src().String() == ip(ca) && k.SrcPort == 40000:
				client.Merge(v)
			case k.Src().String() == ip(sa) && k.SrcPort == 80:
				server.Merge(v)
			case k.SrcPort == 40001 || k.DstPort == 40001: // the other conversation
			default:
				t.Errorf("unexpected flow %s", keyString(k))
			}
		}
	}
	for _, s := range segs {
		if s.rotate {
			merge()
		}
		if err := d.setTestClock(s.at); err != nil {
			t.Fatal(err)
		}
		run(t, d.Program, segFrame(s, v6))
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

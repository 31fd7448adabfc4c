package ipfix

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/xdpflow/xdpflow/internal/syncbuf"
	"github.com/xdpflow/xdpflow/internal/testkit/freeport"
	"github.com/xdpflow/xdpflow/schemas"
)

func testLogger(t *testing.T) (*slog.Logger, *syncbuf.Buffer) {
	buf := &syncbuf.Buffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("exporter log:\n%s", buf)
		}
	})
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// freePort returns a loopback address nobody listens on (for now).
func freePort(t *testing.T, network string) string {
	return fmt.Sprintf("127.0.0.1:%d", freeport.Get(t, network))
}

// fastTCP keeps the TCP tests short.
var fastTCP = tcpOptions{minBackoff: 10 * time.Millisecond, maxBackoff: 200 * time.Millisecond,
	dialTimeout: time.Second, writeTimeout: 2 * time.Second, drainTimeout: 2 * time.Second}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// readIPFIX reads IPFIX messages off a TCP stream (framed by the header
// length) until the decoder has want flow records.
func readIPFIX(t *testing.T, c net.Conn, d *decoded, want int) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for len(d.flows) < want {
		hdr := make([]byte, 4)
		if _, err := io.ReadFull(c, hdr); err != nil {
			t.Fatalf("reading: %v (have %d of %d records)", err, len(d.flows), want)
		}
		msg := make([]byte, binary.BigEndian.Uint16(hdr[2:]))
		copy(msg, hdr)
		if _, err := io.ReadFull(c, msg[4:]); err != nil {
			t.Fatalf("reading: %v", err)
		}
		if err := d.feed(msg); err != nil {
			t.Fatalf("message %d: %v", len(d.msgs), err)
		}
	}
}

func checkFlows(t *testing.T, got, sent []schemas.Flow) {
	t.Helper()
	if len(got) != len(sent) {
		t.Fatalf("%d records arrived, %d sent", len(got), len(sent))
	}
	for i := range sent {
		if want := wantFlow(sent[i]); got[i] != want {
			t.Fatalf("record %d:\n got %+v\nwant %+v", i, got[i], want)
		}
	}
}

func isTemplateSet(id uint16) bool { return id < 256 }

// shiftToNow moves flows from testBase to now, after the v9 sysUptime
// origin of an encoder created before (earlier starts clamp to the origin).
func shiftToNow(flows []schemas.Flow) []schemas.Flow {
	d := time.Now().UnixNano() - testBase.UnixNano()
	for i := range flows {
		flows[i].TimeFlowStartNs += d
		flows[i].TimeFlowEndNs += d
	}
	return flows
}

func TestExporterUDP(t *testing.T) {
	for _, p := range []Protocol{IPFIX, NetFlowV9} {
		t.Run(p.String(), func(t *testing.T) {
			pc, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			log, _ := testLogger(t)
			x, err := NewExporter("udp://"+pc.LocalAddr().String(), Config{Protocol: p, TemplateRefreshMessages: 5,
				Interfaces: map[uint32]string{7: "eth7"}}, log)
			if err != nil {
				t.Fatal(err)
			}
			defer x.Close()
			if want := p.String() + " udp://" + pc.LocalAddr().String(); x.String() != want {
				t.Errorf("String() = %q, want %q", x, want)
			}
			flows := shiftToNow(randomFlows(700, 0.5, 21)) // after the v9 sysUptime origin: NewExporter
			for i := 0; i < len(flows); i += 100 {
				if err := x.Export(flows[i : i+100]); err != nil {
					t.Fatal(err)
				}
			}
			d := newDecoded(p)
			var src net.Addr
			buf := make([]byte, 65536)
			pc.SetReadDeadline(time.Now().Add(5 * time.Second))
			for len(d.flows) < len(flows) {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					t.Fatalf("after %d records: %v", len(d.flows), err)
				}
				if src != nil && from.String() != src.String() {
					t.Fatalf("source moved from %v to %v: one socket for the exporter's life", src, from)
				}
				src = from
				if err := d.feed(append([]byte(nil), buf[:n]...)); err != nil {
					t.Fatalf("message %d: %v", len(d.msgs), err)
				}
			}
			checkFlows(t, d.flows, flows)
			if !isTemplateSet(d.msgs[0].setIDs[0]) {
				t.Errorf("first message starts with set %d, want templates", d.msgs[0].setIDs[0])
			}
			// TemplateRefreshMessages 5: templates go out again within every 6 messages.
			sinceTemplates := 0
			refreshes := 0
			for i, m := range d.msgs {
				if isTemplateSet(m.setIDs[0]) {
					sinceTemplates = 0
					refreshes++
					continue
				}
				if sinceTemplates++; sinceTemplates > 5 {
					t.Fatalf("message %d: %d data messages since the last templates", i, sinceTemplates)
				}
			}
			if refreshes < 2 || d.ifaces[7] != "eth7" {
				t.Errorf("%d template sends, interfaces %v", refreshes, d.ifaces)
			}
			st := x.Stats()
			if st.Records != uint64(len(flows)) || st.Messages != uint64(len(d.msgs)) || st.SendErrors != 0 || st.RecordsDropped != 0 {
				t.Errorf("stats %+v, %d messages received", st, len(d.msgs))
			}
		})
	}
}

func TestExporterUDPNoListener(t *testing.T) {
	log, logs := testLogger(t)
	addr := freePort(t, "udp")
	x, err := NewExporter("udp://"+addr, Config{Protocol: NetFlowV9}, log)
	if err != nil {
		t.Fatalf("NewExporter must not need a collector: %v", err)
	}
	defer x.Close()
	flows := randomFlows(10, 0, 3)
	waitFor(t, "a counted send error", 3*time.Second, func() bool {
		if err := x.Export(flows); err != nil {
			t.Fatalf("Export failed without a listener: %v", err)
		}
		return x.Stats().SendErrors > 1
	})
	st := x.Stats()
	if st.RecordsDropped == 0 || st.RecordsDropped+st.Records == 0 {
		t.Errorf("stats %+v: failed sends should count dropped records", st)
	}
	if n := strings.Count(logs.String(), "send failed"); n != 1 {
		t.Errorf("send failures logged %d times, want once per 10s:\n%s", n, logs)
	}
}

func TestExporterBadURL(t *testing.T) {
	for _, c := range []struct {
		url  string
		p    Protocol
		want string
	}{
		{"tcp://127.0.0.1:4739", NetFlowV9, "no TCP transport"},
		{"tcps://127.0.0.1:4739", NetFlowV9, "no TCP transport"},
		{"sctp://127.0.0.1:4739", IPFIX, "unsupported scheme"},
		{"udp://127.0.0.1", IPFIX, "need host and port"},
		{"127.0.0.1:4739", IPFIX, ""},
		{"udp://127.0.0.1:4739", Protocol(5), "unknown protocol"},
	} {
		x, err := NewExporter(c.url, Config{Protocol: c.p}, nil)
		if err == nil {
			x.Close()
			t.Errorf("%s (%v): no error", c.url, c.p)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s (%v): %v, want it to say %q", c.url, c.p, err, c.want)
		}
	}
}

func TestExporterInvalidFlow(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	x, err := NewExporter("udp://"+pc.LocalAddr().String(), Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	flows := fixedFlows()
	flows[1] = schemas.Flow{}
	if err := x.Export(flows); !errors.Is(err, ErrInvalidFlow) {
		t.Fatalf("Export = %v, want ErrInvalidFlow", err)
	}
	if st := x.Stats(); st.RecordsDropped != 1 || st.Records != uint64(len(flows)-1) {
		t.Errorf("stats %+v: want 1 dropped, the rest sent", st)
	}
}

// TestExporterTCPConnectLater starts the exporter before the collector.
func TestExporterTCPConnectLater(t *testing.T) {
	log, logs := testLogger(t)
	addr := freePort(t, "tcp")
	x, err := newExporter("tcp://"+addr, Config{}, log, fastTCP)
	if err != nil {
		t.Fatalf("NewExporter must not need the collector up: %v", err)
	}
	defer x.Close()
	flows := randomFlows(500, 0.5, 31)
	if err := x.Export(flows[:250]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // a few failed attempts
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := x.Export(flows[250:]); err != nil {
		t.Fatal(err)
	}
	c, err := acceptWithin(l, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d := newDecoded(IPFIX)
	readIPFIX(t, c, d, len(flows))
	checkFlows(t, d.flows, flows)
	if !isTemplateSet(d.msgs[0].setIDs[0]) {
		t.Errorf("connection starts with set %d, want templates", d.msgs[0].setIDs[0])
	}
	checkSequence(t, d)
	if n := strings.Count(logs.String(), "collector unreachable, retrying with backoff"); n != 1 {
		t.Errorf("unreachable logged %d times, want once:\n%s", n, logs)
	}
	// The writer counts a message once its write returns, which may be
	// after the reader has it.
	waitFor(t, "every record counted", 2*time.Second, func() bool { return x.Stats().Records >= uint64(len(flows)) })
	if st := x.Stats(); st.Records != uint64(len(flows)) || st.RecordsDropped != 0 || st.Reconnects != 0 {
		t.Errorf("stats %+v", st)
	}
}

// checkSequence: on each connection the IPFIX sequence counts data records.
func checkSequence(t *testing.T, d *decoded) {
	t.Helper()
	var n uint32
	for i, m := range d.msgs {
		if m.seq != n {
			t.Fatalf("message %d: sequence %d, want %d", i, m.seq, n)
		}
		n += uint32(m.dataRecs)
	}
}

func acceptWithin(l net.Listener, d time.Duration) (net.Conn, error) {
	l.(*net.TCPListener).SetDeadline(time.Now().Add(d))
	return l.Accept()
}

// TestExporterTCPReconnect closes the collector's side mid-stream.
func TestExporterTCPReconnect(t *testing.T) {
	log, logs := testLogger(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	x, err := newExporter("tcp://"+l.Addr().String(), Config{Interfaces: map[uint32]string{1: "eth0"}}, log, fastTCP)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	flows := randomFlows(600, 0.5, 41)

	c1, err := acceptWithin(l, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := x.Export(flows[:300]); err != nil {
		t.Fatal(err)
	}
	d1 := newDecoded(IPFIX)
	readIPFIX(t, c1, d1, 300)
	checkFlows(t, d1.flows, flows[:300])
	waitFor(t, "the first batch sent", 2*time.Second, func() bool { return x.Stats().Records == 300 })
	c1.Close() // the collector goes away mid-stream

	c2, err := acceptWithin(l, 5*time.Second)
	if err != nil {
		t.Fatalf("no reconnect: %v", err)
	}
	defer c2.Close()
	waitFor(t, "a reconnect counted", 2*time.Second, func() bool { return x.Stats().Reconnects == 1 })
	if err := x.Export(flows[300:]); err != nil {
		t.Fatal(err)
	}
	d2 := newDecoded(IPFIX) // a new collector session knows no templates
	readIPFIX(t, c2, d2, 300)
	checkFlows(t, d2.flows, flows[300:])
	if !isTemplateSet(d2.msgs[0].setIDs[0]) || d2.ifaces[1] != "eth0" {
		t.Errorf("reconnect starts with set %d (want templates), interfaces %v", d2.msgs[0].setIDs[0], d2.ifaces)
	}
	checkSequence(t, d2)
	if !strings.Contains(logs.String(), "connection lost, reconnecting") {
		t.Errorf("lost connection not logged:\n%s", logs)
	}
}

// TestExporterTCPQueueFull queues while the collector is down, drops and
// counts what does not fit, and delivers the rest once it is up.
func TestExporterTCPQueueFull(t *testing.T) {
	log, logs := testLogger(t)
	addr := freePort(t, "tcp")
	opt := fastTCP
	opt.queueLimit = 8 << 10
	x, err := newExporter("tcp://"+addr, Config{}, log, opt)
	if err != nil {
		t.Fatal(err)
	}
	flows := randomFlows(1000, 0.5, 51)
	for i := 0; i < len(flows); i += 50 {
		if err := x.Export(flows[i : i+50]); err != nil {
			t.Fatal(err)
		}
	}
	st := x.Stats()
	if st.RecordsDropped == 0 || st.RecordsDropped >= uint64(len(flows)) {
		t.Fatalf("stats %+v: an 8 KiB queue should hold some and drop the rest", st)
	}
	if !strings.Contains(logs.String(), "queue full") {
		t.Errorf("drops not logged:\n%s", logs)
	}

	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := acceptWithin(l, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	want := len(flows) - int(st.RecordsDropped)
	d := newDecoded(IPFIX)
	readIPFIX(t, c, d, want)
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	st = x.Stats()
	if st.Records != uint64(want) || st.Records+st.RecordsDropped != uint64(len(flows)) {
		t.Errorf("stats %+v: %d delivered; delivered + dropped must be %d", st, len(d.flows), len(flows))
	}
	// Whole messages were dropped, oldest kept: what arrived is a prefix.
	checkFlows(t, d.flows, flows[:want])
}

// TestExporterTCPStuckPeer: a collector that accepts but never reads must
// not block Export; the write deadline ends the connection.
func TestExporterTCPStuckPeer(t *testing.T) {
	log, _ := testLogger(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	opt := fastTCP
	opt.writeTimeout = 200 * time.Millisecond
	opt.queueLimit = 256 << 10
	opt.drainTimeout = 100 * time.Millisecond
	x, err := newExporter("tcp://"+l.Addr().String(), Config{MaxMessageBytes: 65535}, log, opt)
	if err != nil {
		t.Fatal(err)
	}
	c, err := acceptWithin(l, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close() // never read
	flows := randomFlows(5000, 0.5, 61)
	exported := 0
	// Keep exporting until the socket buffers are full and a write times
	// out; no Export call may block on the way.
	waitFor(t, "a write timeout", 10*time.Second, func() bool {
		start := time.Now()
		if err := x.Export(flows); err != nil {
			t.Fatal(err)
		}
		if el := time.Since(start); el > time.Second {
			t.Fatalf("Export blocked %v on a stuck collector", el)
		}
		exported += len(flows)
		return x.Stats().SendErrors > 0
	})
	start := time.Now()
	x.Close()
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("Close took %v", el)
	}
	st := x.Stats()
	if st.Records+st.RecordsDropped != uint64(exported) {
		t.Errorf("stats %+v: every record is either sent or counted as dropped", st)
	}
}

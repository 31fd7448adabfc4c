package listen

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// recorder is a Handler that keeps what it gets; block, when set, holds
// the first message until released.
type recorder struct {
	mu    sync.Mutex
	msgs  []string
	from  []netip.AddrPort
	block chan struct{}
}

func (r *recorder) Message(from netip.AddrPort, msg []byte) {
	if r.block != nil {
		<-r.block
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, string(msg))
	r.from = append(r.from, from)
}

func (r *recorder) Idle() {}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}

// ipfixMsg is a header-only IPFIX message with a payload of n bytes.
func ipfixMsg(seq uint32, n int) []byte {
	b := make([]byte, 16+n)
	binary.BigEndian.PutUint16(b, 10)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint32(b[8:], seq)
	return b
}

func serve(t *testing.T, url string, allow []string, opts Options, h Handler) (*Listener, context.CancelFunc, chan error) {
	t.Helper()
	prefixes, err := ParseAllow(allow)
	if err != nil {
		t.Fatal(err)
	}
	l, err := Listen(url, prefixes, opts, quiet)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Serve(ctx, func() Handler { return h }) }()
	t.Cleanup(func() { cancel(); <-done })
	return l, cancel, done
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		url, err string
	}{
		{"udp://:2055", ""}, {"tcp://127.0.0.1:4739", ""}, {"udp://[::1]:4739", ""}, {"tcps://:4739", ""},
		{"sctp://:4739", `scheme "sctp"`}, {"udp://host", "want udp://"}, {":2055", "want udp://"},
	} {
		_, _, err := ParseURL(tc.url)
		if (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("ParseURL(%q): %v, want %q", tc.url, err, tc.err)
		}
	}
	p, err := ParseAllow([]string{"198.18.0.0/15", "2001:db8::/32", "198.18.5.5", "198.18.1.77/24"})
	if err != nil || len(p) != 4 || p[2].Bits() != 32 || p[3].String() != "198.18.1.0/24" {
		t.Errorf("ParseAllow: %v %v", p, err)
	}
	if _, err := ParseAllow([]string{"198.18.0.0/33"}); err == nil {
		t.Error("bad CIDR accepted")
	}
}

// TestAllowUDP: a source outside --allow is counted and never reaches the
// handler.
func TestAllowUDP(t *testing.T) {
	h := &recorder{}
	l, _, _ := serve(t, "udp://127.0.0.1:0", []string{"127.0.0.2/32"}, Options{}, h)
	to := l.Addr().(*net.UDPAddr)
	for _, src := range []string{"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.2"} {
		c, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.ParseIP(src)}, to)
		if err != nil {
			t.Fatal(err)
		}
		c.Write(ipfixMsg(1, 0))
		c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for h.count() < 2 || l.Stats().Denied < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("got %d messages, %+v", h.count(), l.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	if st := l.Stats(); h.count() != 2 || st.Denied != 2 || st.Messages != 2 {
		t.Errorf("%d delivered, %+v; want 2 delivered, 2 denied", h.count(), st)
	}
	for _, f := range h.from {
		if f.Addr() != netip.MustParseAddr("127.0.0.2") {
			t.Errorf("delivered from %v", f)
		}
	}
}

// TestKernelDrops: datagrams the socket buffer could not hold are counted
// from SO_RXQ_OVFL, exactly: delivered + dropped = sent.
func TestKernelDrops(t *testing.T) {
	h := &recorder{block: make(chan struct{})}
	l, cancel, done := serve(t, "udp://127.0.0.1:0", nil, Options{UDPReadBuffer: 4096}, h)
	c, err := net.DialUDP("udp4", nil, l.Addr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	const sent = 2000
	for i := range sent {
		c.Write(ipfixMsg(uint32(i), 1000))
	}
	close(h.block)
	time.Sleep(300 * time.Millisecond)
	c.Write(ipfixMsg(sent, 0)) // carries the final drop count
	time.Sleep(300 * time.Millisecond)
	cancel()
	<-done
	done <- nil
	st := l.Stats()
	if st.KernelDrops == 0 || uint64(h.count())+st.KernelDrops != sent+1 {
		t.Errorf("%d delivered + %d dropped, %d sent", h.count(), st.KernelDrops, sent+1)
	}
}

// TestTCPStream: IPFIX messages cut out of a stream however it is split;
// a connection that ends mid-message or sends a bad header is dropped and
// counted; a denied source is closed at once.
func TestTCPStream(t *testing.T) {
	h := &recorder{}
	l, _, _ := serve(t, "tcp://127.0.0.1:0", []string{"127.0.0.0/8"}, Options{}, h)
	addr := l.Addr().String()
	dial := func(src string) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	// Three messages written one byte at a time.
	c := dial("127.0.0.1")
	var stream []byte
	for i := range 3 {
		stream = append(stream, ipfixMsg(uint32(i), 10*i)...)
	}
	for _, b := range stream {
		c.Write([]byte{b})
	}
	c.Close()
	// A message cut short.
	c = dial("127.0.0.1")
	c.Write(ipfixMsg(9, 100)[:50])
	c.Close()
	// Not IPFIX.
	c = dial("127.0.0.1")
	c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	c.Close()

	deadline := time.Now().Add(5 * time.Second)
	for l.Stats().StreamErrors < 2 || h.count() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d messages, %+v", h.count(), l.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if h.count() != 3 {
		t.Errorf("%d messages, want 3", h.count())
	}
	for i, m := range h.msgs {
		if m != string(ipfixMsg(uint32(i), 10*i)) {
			t.Errorf("message %d differs", i)
		}
	}
	if st := l.Stats(); st.StreamErrors != 2 || st.Connections != 3 {
		t.Errorf("%+v: want 3 connections, 2 stream errors", st)
	}
}

func TestTCPDenied(t *testing.T) {
	h := &recorder{}
	l, _, _ := serve(t, "tcp://127.0.0.1:0", []string{"198.18.0.0/15"}, Options{}, h)
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Write(ipfixMsg(1, 0))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("denied connection stays open")
	}
	c.Close()
	if st := l.Stats(); st.Denied != 1 || st.Connections != 0 || h.count() != 0 {
		t.Errorf("%+v, %d messages", st, h.count())
	}
}

// serveN serves a UDP listener with n sockets, each with a recorder of
// its own.
func serveN(t *testing.T, n int, opts Options, block chan struct{}) (*Listener, []*recorder, context.CancelFunc, chan error) {
	t.Helper()
	opts.UDPWorkers = n
	l, err := Listen("udp://127.0.0.1:0", nil, opts, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if l.Sockets() != n {
		t.Fatalf("%d sockets, want %d", l.Sockets(), n)
	}
	var (
		mu   sync.Mutex
		recs []*recorder
	)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- l.Serve(ctx, func() Handler {
			mu.Lock()
			defer mu.Unlock()
			r := &recorder{block: block}
			recs = append(recs, r)
			return r
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	// Serve makes every Handler before reading.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		mu.Lock()
		k := len(recs)
		mu.Unlock()
		if k == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d handlers, want %d", k, n)
		}
	}
	return l, recs, cancel, done
}

// TestReusePort: a udp:// listener's sockets share its port; each
// exporter (source address and port) reaches exactly one socket, its
// datagrams in the order sent, and the exporters spread over the sockets.
func TestReusePort(t *testing.T) {
	const workers, exporters, each = 4, 16, 50
	l, recs, _, _ := serveN(t, workers, Options{}, nil)
	var wg sync.WaitGroup
	for e := range exporters {
		c, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, byte(1+e%3))}, l.Addr().(*net.UDPAddr))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		wg.Go(func() {
			for i := range each {
				c.Write(ipfixMsg(uint32(i), e))
				if i%10 == 9 {
					time.Sleep(time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	total := func() (n int) {
		for _, r := range recs {
			n += r.count()
		}
		return n
	}
	for deadline := time.Now().Add(5 * time.Second); total() < exporters*each && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if st := l.Stats(); total() != exporters*each || st.Messages != exporters*each || st.KernelDrops != 0 {
		t.Fatalf("%d delivered, %+v; want %d, no drops", total(), st, exporters*each)
	}
	where := map[netip.AddrPort]int{} // exporter -> socket
	busy := 0
	for i, r := range recs {
		r.mu.Lock()
		next := map[netip.AddrPort]uint32{}
		for j, from := range r.from {
			if w, ok := where[from]; ok && w != i {
				t.Errorf("exporter %v on sockets %d and %d", from, w, i)
			}
			where[from] = i
			if seq := binary.BigEndian.Uint32([]byte(r.msgs[j])[8:]); seq != next[from] {
				t.Errorf("exporter %v: message %d after %d", from, seq, next[from]-1)
			} else {
				next[from]++
			}
		}
		if len(r.msgs) > 0 {
			busy++
		}
		r.mu.Unlock()
	}
	if len(where) != exporters {
		t.Errorf("%d exporters seen, want %d", len(where), exporters)
	}
	// 16 exporters all hashed to one of 4 sockets: a chance of 4^-15.
	if busy < 2 {
		t.Errorf("only %d of %d sockets received: SO_REUSEPORT not in effect", busy, workers)
	}
}

// TestReusePortTaken: a port another socket holds is refused, as with one
// socket, instead of joining it and splitting its traffic.
func TestReusePortTaken(t *testing.T) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	u := "udp://" + c.LocalAddr().String()
	for _, n := range []int{1, 3} {
		if l, err := Listen(u, nil, Options{UDPWorkers: n}, quiet); err == nil {
			l.Close()
			t.Errorf("%d workers: bound %s, which is taken", n, u)
		}
	}
	// Nor may a second collector join one with several sockets.
	l, err := Listen("udp://127.0.0.1:0", nil, Options{UDPWorkers: 3}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l2, err := Listen("udp://"+l.Addr().String(), nil, Options{UDPWorkers: 3}, quiet); err == nil {
		l2.Close()
		t.Errorf("a second listener joined %s", l.Addr())
	}
}

// TestKernelDropsSockets: with several sockets, each one's SO_RXQ_OVFL
// count is kept and the listener reports their sum, exactly.
func TestKernelDropsSockets(t *testing.T) {
	const workers, exporters, each = 3, 15, 300
	block := make(chan struct{})
	l, recs, cancel, done := serveN(t, workers, Options{UDPReadBuffer: 4096}, block)
	var cs []*net.UDPConn
	for range exporters {
		c, err := net.DialUDP("udp4", nil, l.Addr().(*net.UDPAddr))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cs = append(cs, c)
	}
	for i := range each {
		for _, c := range cs {
			c.Write(ipfixMsg(uint32(i), 1000))
		}
	}
	close(block)
	time.Sleep(300 * time.Millisecond)
	for _, c := range cs {
		// Carries its socket's final drop count; spaced, so that the tiny
		// buffer drops none of these.
		c.Write(ipfixMsg(each, 0))
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
	done <- nil
	delivered := 0
	for _, r := range recs {
		delivered += r.count()
	}
	dropping := 0
	for _, s := range l.udp {
		if s.drops.Load() > 0 {
			dropping++
		}
	}
	st := l.Stats()
	if dropping < 2 || uint64(delivered)+st.KernelDrops != exporters*(each+1) {
		t.Errorf("%d delivered + %d dropped (on %d sockets), %d sent", delivered, st.KernelDrops, dropping, exporters*(each+1))
	}
}

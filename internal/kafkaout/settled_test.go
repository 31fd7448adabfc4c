package kafkaout

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xdpflow/xdpflow/internal/testkit/kafkacheck"
)

// settledWatch sends through p and samples p.Settled all along, checking
// the watermark at every sample: it never goes down, never passes the
// messages given to Send, and never passes those acknowledged, spooled or
// dropped (counted before they settle).
type settledWatch struct {
	t    *testing.T
	p    *Producer
	sent atomic.Uint64 // given to Send
	done chan struct{}
	once sync.Once
	wg   sync.WaitGroup
}

func watchSettled(t *testing.T, p *Producer) *settledWatch {
	w := &settledWatch{t: t, p: p, done: make(chan struct{})}
	w.wg.Go(func() {
		var last uint64
		for {
			s := p.Settled()
			st := p.Stats()
			given := w.sent.Load()
			if s < last {
				t.Errorf("Settled went down from %d to %d", last, s)
			}
			if s > given {
				t.Errorf("Settled %d > %d messages given to Send", s, given)
			}
			if s > st.Sent+st.Spooled+st.Dropped {
				t.Errorf("Settled %d > acknowledged + spooled + dropped: %+v", s, st)
			}
			last = s
			select {
			case <-w.done:
				return
			case <-time.After(500 * time.Microsecond):
			}
		}
	})
	t.Cleanup(w.stop)
	return w
}

func (w *settledWatch) send(msgs []Message) {
	w.t.Helper()
	n := w.sent.Add(uint64(len(msgs)))
	if end := w.p.Send(msgs); end != n {
		w.t.Fatalf("Send returned %d after %d messages", end, n)
	}
}

func (w *settledWatch) stop() {
	w.once.Do(func() { close(w.done) })
	w.wg.Wait()
}

func waitSettled(t *testing.T, p *Producer, want uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for p.Settled() < want {
		if time.Now().After(deadline) {
			t.Fatalf("Settled %d, want %d: %+v", p.Settled(), want, p.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// holdsAt checks that Settled stays at want for d.
func holdsAt(t *testing.T, p *Producer, want uint64, d time.Duration) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if s := p.Settled(); s != want {
			t.Fatalf("Settled %d, want it to stay at %d: %+v", s, want, p.Stats())
		}
	}
}

// TestSettledDelivered: with the brokers up, every message settles once
// acknowledged.
func TestSettledDelivered(t *testing.T) {
	b := kafkacheck.Start(t, 3, []string{topic}, nil)
	p, err := New(context.Background(), testConfig(b.Addr), testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	w := watchSettled(t, p)
	if end := p.Send(nil); end != 0 || p.Settled() != 0 {
		t.Fatalf("Send(nil) = %d, Settled %d: want 0", end, p.Settled())
	}
	s := newStream(20)
	for range 20 {
		w.send(s.batch(1000))
	}
	waitSettled(t, p, 20000)
	w.stop()
	if st := p.Stats(); st.Sent != 20000 {
		t.Errorf("settled before acknowledged: %+v", st)
	}
}

// TestSettledOutageNoSpool: without a spool, what waits in memory while
// the broker is away is not settled, and neither is anything after it,
// dropped or not; the broker back, everything is.
func TestSettledOutageNoSpool(t *testing.T) {
	b := kafkacheck.Start(t, 3, []string{topic}, nil)
	cfg := testConfig(b.Addr)
	cfg.QueueMessages = 2000
	p, err := New(context.Background(), cfg, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	w := watchSettled(t, p)
	s := newStream(10)
	w.send(s.batch(3000))
	waitSettled(t, p, 3000)

	b.Stop()
	for range 5 {
		w.send(s.batch(1000)) // 5,000: more than queue and batch in flight hold
		time.Sleep(20 * time.Millisecond)
	}
	if st := p.Stats(); st.Dropped == 0 {
		t.Fatalf("%+v: want drops behind a full queue", st)
	}
	// Message 3000 waits in memory: it, and the newer dropped ones, are
	// not settled.
	holdsAt(t, p, 3000, 500*time.Millisecond)

	b.Restart()
	waitSettled(t, p, 8000)
	w.stop()
	if st := p.Stats(); st.Sent+st.Dropped != 8000 {
		t.Errorf("%+v: acknowledged + dropped != 8000", st)
	}
}

// TestSettledDrops: messages dropped at Send (too big, no room, after
// Close) are settled, once everything before them is.
func TestSettledDrops(t *testing.T) {
	b := kafkacheck.Start(t, 1, []string{topic}, nil)
	b.Stop()
	cfg := testConfig(b.Addr)
	cfg.QueueMessages = 10
	p, err := New(context.Background(), cfg, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	big := Message{Topic: topic, Value: make([]byte, maxMessageBytes+1)}
	small := Message{Topic: topic, Value: []byte("x")}
	// Dropped before anything is queued: settled at once.
	if end := p.Send([]Message{big, big}); end != 2 || p.Settled() != 2 {
		t.Fatalf("two oversized: Send = %d, Settled %d; want 2, 2", end, p.Settled())
	}
	// 2: oversized, settled; 3: queued; 4: oversized, behind 3; 5..13
	// queued; 14..19 dropped, no room.
	msgs := []Message{big, small, big}
	for range 15 {
		msgs = append(msgs, small)
	}
	if end := p.Send(msgs); end != 20 {
		t.Fatalf("Send = %d, want 20", end)
	}
	if st := p.Stats(); st.Dropped != 2+2+6 {
		t.Fatalf("%+v: want 10 dropped", st)
	}
	holdsAt(t, p, 3, 200*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	p.Close(ctx) // no spool: the queued ones are dropped and counted
	if s, st := p.Settled(), p.Stats(); s != 20 || st.Dropped != 20 {
		t.Errorf("after Close: Settled %d, %+v; want all 20 settled as dropped", s, st)
	}
	if end := p.Send([]Message{small}); end != 21 || p.Settled() != 21 {
		t.Errorf("Send after Close = %d, Settled %d; want 21, 21 (dropped, counted)", end, p.Settled())
	}
}

// TestSettledOutageSpool: with a spool, the first failed write moves what
// waits in memory to the spool, and what is sent during the outage goes
// there too: all of it settles while the broker is still away. Back, the
// broker gets everything, in order per key.
func TestSettledOutageSpool(t *testing.T) {
	b := kafkacheck.Start(t, 3, []string{topic}, nil)
	cfg := testConfig(b.Addr)
	cfg.QueueMessages = 2000
	cfg.SpoolDir = t.TempDir()
	p, err := New(context.Background(), cfg, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	w := watchSettled(t, p)
	s := newStream(10)
	w.send(s.batch(2000)) // the queue holds them all
	waitSettled(t, p, 2000)
	if st := p.Stats(); st.Sent != 2000 || st.Spooled != 0 {
		t.Fatalf("%+v: want all acknowledged", st)
	}

	b.Stop()
	for range 10 {
		w.send(s.batch(1000))
		time.Sleep(20 * time.Millisecond)
	}
	waitSettled(t, p, 12000) // the broker is still away
	st := p.Stats()
	if st.Sent != 2000 || st.Dropped != 0 || st.Spooled != 10000 || st.QueueDepth != 0 {
		t.Errorf("broker away, all settled: %+v; want 2,000 acknowledged and 10,000 spooled, once each", st)
	}
	w.send(s.batch(500))
	if got := p.Settled(); got != 12500 {
		t.Errorf("Settled %d right after Send during the outage, want 12,500 (spooled at Send)", got)
	}

	b.Restart()
	waitSent(t, p, uint64(s.total()))
	w.stop()
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := p.Stats(); st.Dropped != 0 || st.SpoolBytes != 0 || p.Settled() != uint64(s.total()) {
		t.Errorf("after the outage: %+v, Settled %d", st, p.Settled())
	}
	dups := s.verify(t, b.Read(topic, s.total(), 300*time.Millisecond, 30*time.Second))
	t.Logf("%d duplicates", dups)
}

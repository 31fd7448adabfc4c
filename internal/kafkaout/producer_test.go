package kafkaout

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/xdpflow/xdpflow/internal/testkit/kafkacheck"
)

const topic = "flows"

func testLog(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func testConfig(addr string) Config {
	return Config{Brokers: []string{addr}, Topic: topic, Format: "proto", Compression: "none", Acks: "all",
		QueueMessages: 100000, SpoolMaxBytes: 64 << 20, FlushTimeout: 5 * time.Second}
}

// stream makes messages for keys keys; message i of key k has value "k/i".
type stream struct {
	keys int
	next []int
}

func newStream(keys int) *stream { return &stream{keys: keys, next: make([]int, keys)} }

func (s *stream) batch(n int) []Message {
	msgs := make([]Message, n)
	for i := range msgs {
		k := i % s.keys
		msgs[i] = Message{Topic: topic, Key: []byte("key" + strconv.Itoa(k)), Value: fmt.Appendf(nil, "%d/%d", k, s.next[k])}
		s.next[k]++
	}
	return msgs
}

func (s *stream) total() (n int) {
	for _, c := range s.next {
		n += c
	}
	return n
}

// verify checks that every message of s arrived, that for each key the
// first arrivals are in order, and returns the number of duplicates.
func (s *stream) verify(t *testing.T, recs []*kgo.Record) (dups int) {
	t.Helper()
	seen := map[string]bool{}
	last := make([]int, s.keys)
	for i := range last {
		last[i] = -1
	}
	for _, r := range recs {
		v := string(r.Value)
		if seen[v] {
			dups++
			continue
		}
		seen[v] = true
		var k, i int
		if _, err := fmt.Sscanf(v, "%d/%d", &k, &i); err != nil || k >= s.keys {
			t.Fatalf("unexpected record %q", v)
		}
		if string(r.Key) != "key"+strconv.Itoa(k) {
			t.Fatalf("record %q has key %q", v, r.Key)
		}
		if i != last[k]+1 {
			t.Errorf("key %d: message %d arrived after %d", k, i, last[k])
		}
		last[k] = i
	}
	for k, n := range s.next {
		if last[k] != n-1 {
			t.Errorf("key %d: %d of %d messages arrived", k, last[k]+1, n)
		}
	}
	return dups
}

func waitSent(t *testing.T, p *Producer, want uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for p.Stats().Sent < want {
		if time.Now().After(deadline) {
			t.Fatalf("sent %+v, want %d", p.Stats(), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestDeliversInOrder(t *testing.T) {
	b := kafkacheck.Start(t, 3, []string{topic}, nil)
	p, err := New(context.Background(), testConfig(b.Addr), testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	s := newStream(50)
	for range 20 {
		p.Send(s.batch(1000))
	}
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := p.Stats()
	if st.Sent != uint64(s.total()) || st.Dropped != 0 || st.Spooled != 0 {
		t.Errorf("stats %+v, want %d sent", st, s.total())
	}
	if dups := s.verify(t, b.Read(topic, s.total(), 300*time.Millisecond, 30*time.Second)); dups != 0 {
		t.Errorf("%d duplicates without any failure", dups)
	}
}

// TestBrokerOutage stops the broker mid-stream for longer than the memory
// queue can hold, keeps sending, and starts it again: everything arrives,
// in order per key.
func TestBrokerOutage(t *testing.T) {
	b := kafkacheck.Start(t, 3, []string{topic}, nil)
	cfg := testConfig(b.Addr)
	cfg.QueueMessages = 2000
	cfg.SpoolDir = t.TempDir()
	p, err := New(context.Background(), cfg, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	s := newStream(20)
	p.Send(s.batch(3000))
	waitSent(t, p, 3000)

	b.Stop()
	for range 10 {
		p.Send(s.batch(1000)) // 10,000: five times the queue
		time.Sleep(50 * time.Millisecond)
	}
	st := p.Stats()
	if st.Spooled == 0 || st.Failures == 0 {
		t.Fatalf("broker down for 10,000 messages, queue of 2,000: %+v", st)
	}
	t.Logf("during the outage: %+v", st)

	b.Restart()
	for range 5 {
		p.Send(s.batch(1000))
		time.Sleep(20 * time.Millisecond)
	}
	waitSent(t, p, uint64(s.total()))
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	st = p.Stats()
	if st.Dropped != 0 || st.SpoolBytes != 0 {
		t.Errorf("after the outage: %+v", st)
	}
	dups := s.verify(t, b.Read(topic, s.total(), 500*time.Millisecond, 30*time.Second))
	t.Logf("after: %+v; %d messages, %d duplicates", st, s.total(), dups)
}

// TestSpoolSurvivesRestart: the broker is away when the producer stops,
// so its queue goes to the spool; the next producer sends it first.
func TestSpoolSurvivesRestart(t *testing.T) {
	b := kafkacheck.Start(t, 3, []string{topic}, nil)
	b.Stop()
	cfg := testConfig(b.Addr)
	cfg.QueueMessages = 3000
	cfg.SpoolDir = t.TempDir()
	p, err := New(context.Background(), cfg, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	s := newStream(10)
	p.Send(s.batch(2500)) // queue
	p.Send(s.batch(2500)) // 500 queue, 2000 spool
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if st := p.Stats(); st.Sent != 0 || st.Dropped != 0 || st.Spooled != 5000 {
		t.Fatalf("closed while the broker is away: %+v, want all 5,000 spooled", st)
	}

	b.Restart()
	p2, err := New(context.Background(), cfg, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	p2.Send(s.batch(1000))
	waitSent(t, p2, uint64(s.total()))
	if err := p2.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	// While the spool holds anything, new messages queue behind it there.
	if st := p2.Stats(); st.Replayed != 6000 || st.Spooled != 1000 || st.SpoolBytes != 0 || st.Dropped != 0 {
		t.Errorf("second run: %+v", st)
	}
	if dups := s.verify(t, b.Read(topic, s.total(), 300*time.Millisecond, 30*time.Second)); dups != 0 {
		t.Errorf("%d duplicates after a clean shutdown", dups)
	}
}

// TestDropsCounted: with the broker away, what neither queue nor spool
// holds is dropped and counted exactly.
func TestDropsCounted(t *testing.T) {
	b := kafkacheck.Start(t, 1, []string{topic}, nil)
	b.Stop()
	for _, tc := range []struct {
		name  string
		spool bool
	}{{"no spool", false}, {"spool full", true}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(b.Addr)
			cfg.QueueMessages = 1000
			if tc.spool {
				cfg.SpoolDir = t.TempDir()
				cfg.SpoolMaxBytes = segmentBytes
			}
			p, err := New(context.Background(), cfg, testLog(t))
			if err != nil {
				t.Fatal(err)
			}
			s := newStream(1)
			msgs := s.batch(200000)
			p.Send(msgs)
			st := p.Stats()
			held := uint64(st.QueueDepth) + st.Spooled
			if st.Dropped == 0 || held+st.Dropped != uint64(len(msgs)) {
				t.Errorf("%+v: held %d + dropped %d != %d sent", st, held, st.Dropped, len(msgs))
			}
			if tc.spool && (st.Spooled == 0 || st.SpoolBytes > segmentBytes) {
				t.Errorf("spool: %+v", st)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			p.Close(ctx)
			end := p.Stats()
			if !tc.spool && end.Dropped != uint64(len(msgs)) {
				t.Errorf("no spool, broker away at shutdown: %d of %d counted dropped", end.Dropped, len(msgs))
			}
		})
	}
}

// TestConcurrentSends: Send from several goroutines while the sender
// works; every message arrives once.
func TestConcurrentSends(t *testing.T) {
	b := kafkacheck.Start(t, 3, []string{topic}, nil)
	p, err := New(context.Background(), testConfig(b.Addr), testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	streams := make([]*stream, 4)
	var wg sync.WaitGroup
	for g := range streams {
		streams[g] = newStream(5)
		wg.Go(func() {
			for range 10 {
				msgs := streams[g].batch(500)
				for i := range msgs {
					msgs[i].Key = fmt.Appendf(nil, "g%d", g)
					msgs[i].Value = fmt.Appendf(msgs[i].Value[:0:0], "%d:%s", g, msgs[i].Value)
				}
				p.Send(msgs)
			}
		})
	}
	wg.Wait()
	p.Close(context.Background())
	recs := b.Read(topic, 20000, 300*time.Millisecond, 30*time.Second)
	seen := map[string]bool{}
	for _, r := range recs {
		if seen[string(r.Value)] {
			t.Fatalf("duplicate %s", r.Value)
		}
		seen[string(r.Value)] = true
	}
	if len(seen) != 20000 {
		t.Errorf("%d distinct messages, want 20000", len(seen))
	}
}

// TestOversizedDropped: a message no broker would take is dropped and
// counted at Send, and the rest of the batch is queued.
func TestOversizedDropped(t *testing.T) {
	b := kafkacheck.Start(t, 1, []string{topic}, nil)
	b.Stop()
	p, err := New(context.Background(), testConfig(b.Addr), testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	small := Message{Topic: topic, Value: []byte("x")}
	p.Send([]Message{small, {Topic: topic, Value: make([]byte, maxMessageBytes+1)}, small})
	if st := p.Stats(); st.Dropped != 1 {
		t.Errorf("%+v: want the big one dropped at Send", st)
	}
	// No spool and no broker: Close drops (and counts) the two it held.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	p.Close(ctx)
	if st := p.Stats(); st.Dropped != 3 || st.Sent != 0 {
		t.Errorf("%+v: want 1 + 2 dropped", st)
	}
}

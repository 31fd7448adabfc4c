package kafka

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xdpflow/xdpflow/bpf"
	"github.com/xdpflow/xdpflow/internal/kafkaout"
	"github.com/xdpflow/xdpflow/internal/testkit/kafkacheck"
	"github.com/xdpflow/xdpflow/schemas"
)

// settling drives a Flows exporter and samples its Settled all along: it
// never goes down and never passes the records given to Export.
type settling struct {
	t     *testing.T
	x     *Flows
	given atomic.Uint64
	done  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup
}

func watch(t *testing.T, x *Flows) *settling {
	s := &settling{t: t, x: x, done: make(chan struct{})}
	s.wg.Go(func() {
		var last uint64
		for {
			v := x.Settled()
			given := s.given.Load()
			if v < last {
				t.Errorf("Settled went down from %d to %d", last, v)
			}
			if v > given {
				t.Errorf("Settled %d > %d records given to Export", v, given)
			}
			last = v
			select {
			case <-s.done:
				return
			case <-time.After(500 * time.Microsecond):
			}
		}
	})
	t.Cleanup(s.stop)
	return s
}

func (s *settling) export(flows []schemas.Flow) error {
	s.given.Add(uint64(len(flows)))
	return s.x.Export(flows)
}

func (s *settling) stop() {
	s.once.Do(func() { close(s.done) })
	s.wg.Wait()
}

func waitFlowsSettled(t *testing.T, x *Flows, want uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for x.Settled() < want {
		if time.Now().After(deadline) {
			t.Fatalf("Settled %d, want %d", x.Settled(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func newProducer(t *testing.T, cfg kafkaout.Config) *kafkaout.Producer {
	t.Helper()
	p, err := kafkaout.New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func sample(s *Samples, t *testing.T, n int) {
	t.Helper()
	for i := range n {
		if err := s.Sample(&bpf.Sample{InIf: 2, OrigLen: 60, Data: []byte{byte(i), 1, 2, 3}}, time.Now().UnixNano()); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
}

// TestFlowsSettled: with the broker up, every record settles; samples
// through the same producer count in the producer's sequence, not in the
// exporter's records; a batch that fails to encode is never sent and
// settles in its turn.
func TestFlowsSettled(t *testing.T) {
	b := kafkacheck.Start(t, 3, []string{"flows", "samples"}, nil)
	p := newProducer(t, kafkaConfig(b.Addr, "flows"))
	defer p.Close(context.Background())
	meta := schemas.Meta{ProbeHost: "h", SamplingRate: 1, IfNames: map[uint32]string{99: "bad\xff"}} // not UTF-8: protobuf refuses it
	x := NewFlows(p, "flows", schemas.FormatProto, meta)
	smp := NewSamples(p, "samples", schemas.FormatProto, meta)
	w := watch(t, x)
	flows := kafkaFlowSource(4000)
	bad := kafkaFlowSource(10)
	bad[5].InIf = 99
	for i := 0; i < len(flows); i += 1000 {
		sample(smp, t, 300)
		if err := w.export(flows[i : i+1000]); err != nil {
			t.Fatal(err)
		}
		if i == 1000 {
			if err := w.export(bad); err == nil {
				t.Fatal("Export of an interface name that is not UTF-8: no error")
			}
		}
	}
	sample(smp, t, 300)
	waitFlowsSettled(t, x, 4010)
	// The last samples were produced after the last records: the records
	// can settle before they are acknowledged (a CI run saw 5,200).
	for deadline := time.Now().Add(30 * time.Second); p.Settled() < 4000+5*300 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	w.stop()
	if got := p.Settled(); got != 4000+5*300 {
		t.Errorf("producer settled %d messages, want 5,500 (flows and samples)", got)
	}
	if got := x.Settled(); got != 4010 {
		t.Errorf("Settled %d, want 4,010: the samples are not records", got)
	}
	if st := p.Stats(); st.Sent != 5500 {
		t.Errorf("%+v: want 5,500 acknowledged", st)
	}
}

// TestFlowsSettledOutage: with the broker away and no spool, the records
// waiting in memory are not settled, nor any after them, dropped records
// and samples included; back, every record is.
func TestFlowsSettledOutage(t *testing.T) {
	b := kafkacheck.Start(t, 3, []string{"flows", "samples"}, nil)
	cfg := kafkaConfig(b.Addr, "flows")
	cfg.QueueMessages = 1500
	p := newProducer(t, cfg)
	defer p.Close(context.Background())
	meta := schemas.Meta{ProbeHost: "h", SamplingRate: 1}
	x := NewFlows(p, "flows", schemas.FormatProto, meta)
	smp := NewSamples(p, "samples", schemas.FormatProto, meta)
	w := watch(t, x)
	flows := kafkaFlowSource(5000)
	if err := w.export(flows[:1000]); err != nil {
		t.Fatal(err)
	}
	waitFlowsSettled(t, x, 1000)

	b.Stop()
	sample(smp, t, 200) // ahead of the flows below, waiting with them
	for i := 1000; i < 4000; i += 1000 {
		if err := w.export(flows[i : i+1000]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := p.Stats(); st.Dropped == 0 {
		t.Fatalf("%+v: want drops beyond the queue", st)
	}
	for end := time.Now().Add(500 * time.Millisecond); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if s := x.Settled(); s != 1000 {
			t.Fatalf("broker away, no spool: Settled %d, want 1,000 (those before the outage)", s)
		}
	}

	b.Restart()
	if err := w.export(flows[4000:]); err != nil {
		t.Fatal(err)
	}
	waitFlowsSettled(t, x, 5000)
	w.stop()
}

// TestFlowsSettledSpool: with a spool, records settle while the broker is
// still away: once the first failed write moved the queue to the spool,
// each batch is settled when Export returns.
func TestFlowsSettledSpool(t *testing.T) {
	b := kafkacheck.Start(t, 3, []string{"flows"}, nil)
	b.Stop()
	cfg := kafkaConfig(b.Addr, "flows")
	cfg.QueueMessages = 300
	cfg.SpoolDir = t.TempDir()
	p := newProducer(t, cfg)
	x := NewFlows(p, "flows", schemas.FormatProto, schemas.Meta{ProbeHost: "h", SamplingRate: 1})
	w := watch(t, x)
	flows := kafkaFlowSource(3000)
	if err := w.export(flows[:1000]); err != nil { // 300 in memory, 700 spooled
		t.Fatal(err)
	}
	if s := x.Settled(); s != 0 {
		t.Errorf("Settled %d with the first 300 records in memory, want 0", s)
	}
	waitFlowsSettled(t, x, 1000) // a write failed: the memory went to the spool
	for i := 1000; i < len(flows); i += 1000 {
		if err := w.export(flows[i : i+1000]); err != nil {
			t.Fatal(err)
		}
		if s := x.Settled(); s != uint64(i+1000) {
			t.Errorf("Settled %d right after Export during the outage, want %d (spooled)", s, i+1000)
		}
	}
	if st := p.Stats(); st.Sent != 0 || st.Dropped != 0 || st.Spooled != 3000 {
		t.Errorf("%+v: want all 3,000 spooled, none sent", st)
	}

	b.Restart()
	deadline := time.Now().Add(30 * time.Second)
	for p.Stats().Sent < 3000 {
		if time.Now().After(deadline) {
			t.Fatalf("%+v, want 3,000 sent", p.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	w.stop()
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if recs := b.Read("flows", 3000, 300*time.Millisecond, 20*time.Second); len(recs) != 3000 {
		t.Errorf("%d messages for 3,000 flows", len(recs))
	}
}

// Package kafkaout writes messages to Kafka and loses none without counting
// it. Writes are batched and retried until the brokers acknowledge them;
// while the brokers are slow or away, messages wait in a bounded memory
// queue and then in an on-disk spool, delivered in order when the brokers
// return. Only when both are full is a message dropped, and then it is
// counted and logged. The probe and the collector share it.
package kafkaout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/xdpflow/xdpflow/internal/ratelimit"
)

// Message is one Kafka record to write.
type Message struct {
	Topic      string
	Key, Value []byte
}

// Stats are the producer's counters since it started.
type Stats struct {
	Sent       uint64 // acknowledged by the brokers
	Failures   uint64 // failed write attempts (their messages are retried)
	Spooled    uint64 // written to the spool
	Replayed   uint64 // read back from the spool for delivery
	Dropped    uint64 // lost: queue and spool full, no spool, or unreadable spool records
	QueueDepth int    // messages in memory, waiting
	SpoolBytes int64  // size of the spool on disk
}

const (
	maxBatch        = 10000            // messages per write call
	maxMessageBytes = 1 << 19          // key and value; far above any flow or sample
	logEvery        = 10 * time.Second // repeated drops and errors are logged at most this often
	backoffMin      = 100 * time.Millisecond
	backoffMax      = 5 * time.Second
)

// Producer delivers messages to Kafka in the order they were sent.
//
// Order: every message in the memory queue is older than every message in
// the spool. Send therefore appends to the spool, not the queue, while the
// spool holds anything; the sender empties the queue first, then the spool.
//
// Settled: each message given to Send has a sequence number, counting
// from 0 at New. A message is settled (a crash of this process can no
// longer lose it) once the brokers acknowledged it, it is in the spool
// file, or it was dropped and counted. Only the messages taken from the
// memory queue are ever unsettled, and the sender takes them in order from
// its front, so the oldest unsettled message is the batch in flight from
// the queue, else the queue's front: every message before it is settled.
// With a spool, a failed write moves the batch in flight and the queue to
// the head of the spool (spill), so while the brokers are away everything
// sent settles as it is spooled.
type Producer struct {
	cfg Config
	log *slog.Logger
	w   *kafka.Writer

	mu       sync.Mutex
	queue    []Message
	spool    *spool // nil: no --kafka-spool-dir
	closing  bool
	leftover []Message // undelivered work the sender gave up at Close
	leftSeg  uint64    // the spool segment leftover came from, if any

	// Sequence numbers, for Settled. seq is the next message's; qseq[i]
	// is queue[i]'s (the queue has gaps: messages dropped or spooled
	// between queued ones); inFlight tells that the sender holds a batch
	// taken from the queue, the oldest of which is flightSeq.
	seq       uint64
	qseq      []uint64
	inFlight  bool
	flightSeq uint64

	wake     chan struct{}
	done     chan struct{}
	cancel   context.CancelFunc // stops a write in progress
	writeCtx context.Context
	failing  atomic.Bool
	sent     atomic.Uint64
	failures atomic.Uint64
	spooled  atomic.Uint64
	replayed atomic.Uint64
	dropped  atomic.Uint64

	// Repeated events, each logged at most once per logEvery.
	dropLog, spoolLog, failLog, spillLog *ratelimit.Limiter
}

// New checks the brokers and starts the producer. Settings the brokers
// reject (TLS, SASL, a topic that does not exist) are errors; brokers that
// do not answer are logged, and messages wait for them in queue and spool.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Producer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	tr, err := cfg.transport()
	if err != nil {
		return nil, err
	}
	comp, _ := compression(cfg.Compression)
	ack, _ := acks(cfg.Acks)
	topics := []string{cfg.Topic}
	if cfg.SamplesTopic != "" {
		topics = append(topics, cfg.SamplesTopic)
	}
	if err := check(ctx, &cfg, tr, topics); err != nil {
		if !errors.Is(err, errUnreachable) {
			return nil, err
		}
		log.Error("kafka brokers unreachable: messages wait in memory and in --kafka-spool-dir until they answer", "err", err)
	}
	p := &Producer{
		cfg: cfg,
		log: log,
		w: &kafka.Writer{
			Addr: kafka.TCP(cfg.Brokers...),
			// Murmur2 is the Java client's partitioner: a key lands in the
			// partition any other producer would put it in.
			Balancer:        &kafka.Murmur2Balancer{},
			MaxAttempts:     3,
			WriteBackoffMin: 50 * time.Millisecond,
			WriteBackoffMax: 500 * time.Millisecond,
			BatchSize:       maxBatch,
			BatchBytes:      1 << 20, // about a broker's default message.max.bytes
			// Each write call waits this long for a partial batch.
			BatchTimeout: time.Millisecond,
			RequiredAcks: ack,
			Compression:  comp,
			Transport:    tr,
		},
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
		dropLog:  ratelimit.Every(logEvery),
		spoolLog: ratelimit.Every(logEvery),
		failLog:  ratelimit.Every(logEvery),
		spillLog: ratelimit.Every(logEvery),
	}
	p.writeCtx, p.cancel = context.WithCancel(context.Background())
	if cfg.SpoolDir != "" {
		if p.spool, err = openSpool(cfg.SpoolDir, cfg.SpoolMaxBytes); err != nil {
			return nil, err
		}
		if !p.spool.empty() {
			log.Info("kafka spool holds messages from an earlier run: replaying them first", "dir", cfg.SpoolDir, "bytes", p.spool.bytes)
		}
	}
	go p.run()
	return p, nil
}

// Send queues msgs for delivery. It does not wait for the brokers; what
// neither the queue nor the spool can take is dropped and counted. It
// returns the sequence number after msgs: how many messages were given to
// Send since New, msgs included (msgs[i] is number end-len(msgs)+i), to
// compare with Settled.
func (p *Producer) Send(msgs []Message) (end uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	first := p.seq
	p.seq += uint64(len(msgs))
	if len(msgs) == 0 {
		return p.seq
	}
	if p.closing {
		p.drop(len(msgs), "send after close")
		return p.seq
	}
	kept := p.dropOversized(msgs)
	if p.spool == nil || p.spool.empty() {
		n := min(len(kept), p.cfg.QueueMessages-len(p.queue))
		p.queue = append(p.queue, kept[:n]...)
		p.queueSeqs(msgs, len(kept) < len(msgs), first, n)
		kept = kept[n:]
	}
	if len(kept) > 0 {
		p.toSpool(kept)
	}
	select {
	case p.wake <- struct{}{}:
	default:
	}
	return p.seq
}

// queueSeqs records the sequence numbers of the n messages Send just
// queued: the first n of msgs (numbered from first) that are not oversized.
func (p *Producer) queueSeqs(msgs []Message, oversized bool, first uint64, n int) {
	for i := 0; n > 0; i++ {
		if oversized && tooBig(msgs[i]) {
			continue
		}
		p.qseq = append(p.qseq, first+uint64(i))
		n--
	}
}

func tooBig(m Message) bool { return len(m.Key)+len(m.Value) > maxMessageBytes }

// dropOversized drops (and counts) messages no broker would take.
func (p *Producer) dropOversized(msgs []Message) []Message {
	if !slices.ContainsFunc(msgs, tooBig) {
		return msgs // the usual case: the caller's slice as it is
	}
	kept := slices.DeleteFunc(slices.Clone(msgs), tooBig)
	p.drop(len(msgs)-len(kept), "message larger than a broker's default message.max.bytes")
	return kept
}

func (p *Producer) toSpool(msgs []Message) {
	if p.spool == nil {
		p.drop(len(msgs), "queue full and no --kafka-spool-dir (raise --kafka-queue-messages)")
		return
	}
	n, err := p.spool.append(msgs)
	if ferr := p.spool.flush(); err == nil {
		err = ferr
	}
	p.spooled.Add(uint64(n))
	if err != nil {
		p.spoolError("kafka spool write failed: messages dropped", err)
	}
	if n < len(msgs) {
		p.drop(len(msgs)-n, "queue and spool full (raise --kafka-queue-messages or --kafka-spool-max-bytes)")
	}
}

// drop counts n lost messages and logs why, at most once per logEvery:
// drops come with every Send while they last.
func (p *Producer) drop(n int, why string) {
	total := p.dropped.Add(uint64(n))
	if ok, suppressed := p.dropLog.Allow(time.Now()); ok {
		p.log.Error("kafka messages dropped", "count", n, "reason", why, "dropped_total", total, "suppressed", suppressed)
	}
}

// dropAtShutdown counts and always logs what Close loses.
func (p *Producer) dropAtShutdown(n int, why string) {
	p.dropped.Add(uint64(n))
	p.log.Error("kafka messages dropped", "count", n, "reason", why)
}

// spoolError logs a spool failure at most once per logEvery: a full or
// broken disk fails every Send.
func (p *Producer) spoolError(msg string, err error) {
	if ok, suppressed := p.spoolLog.Allow(time.Now()); ok {
		p.log.Error(msg, "dir", p.cfg.SpoolDir, "err", err, "suppressed", suppressed)
	}
}

// next hands the sender its next work: a batch from the queue, else the
// oldest spool segment (seg != 0). ok is false when the producer closes.
func (p *Producer) next() (work []Message, seg uint64, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		if n := min(len(p.queue), maxBatch); n > 0 {
			work = slices.Clone(p.queue[:n])
			p.queue = p.queue[n:]
			p.inFlight, p.flightSeq = true, p.qseq[0]
			p.qseq = p.qseq[n:]
			return work, 0, true
		}
		if p.closing {
			return nil, 0, false // the spool stays for the next start
		}
		if p.spool != nil {
			id, ok, err := p.spool.head()
			if err != nil {
				p.spoolError("kafka spool", err)
			}
			if ok {
				return nil, id, true
			}
		}
		p.mu.Unlock()
		<-p.wake
		p.mu.Lock()
	}
}

// run is the sender: it delivers work in order, one batch at a time.
func (p *Producer) run() {
	defer close(p.done)
	for {
		work, seg, ok := p.next()
		if !ok {
			return
		}
		if seg != 0 {
			msgs, corrupt, err := readSegment(p.spool.path(seg))
			if err != nil || corrupt {
				p.log.Error("kafka spool segment unreadable past a bad record: the rest is dropped", "segment", p.spool.path(seg), "err", err)
				p.dropped.Add(1) // at least one record was lost
			}
			p.replayed.Add(uint64(len(msgs)))
			work = msgs
		}
		for len(work) > 0 {
			if seg != 0 && p.isClosing() {
				break // the rest of the segment is spooled again by Close
			}
			chunk := work[:min(len(work), maxBatch)]
			var spill func([]Message) bool
			if seg == 0 && p.spool != nil {
				spill = p.spill // queue work is one chunk: next takes at most maxBatch
			}
			if rest := p.write(chunk, spill); rest != nil {
				work = append(rest, work[len(chunk):]...)
				break
			}
			work = work[len(chunk):]
		}
		if len(work) > 0 {
			p.mu.Lock()
			p.leftover, p.leftSeg = work, seg // still in flight: Close spools or drops it
			p.mu.Unlock()
			return
		}
		p.mu.Lock()
		if seg != 0 {
			if err := p.spool.remove(seg); err != nil {
				p.spoolError("kafka spool", err)
			}
		} else {
			p.inFlight = false // acknowledged, all of it
		}
		p.mu.Unlock()
	}
}

// spill moves inflight (the rest of the batch taken from the queue, whose
// write failed) and the queue to the head of the spool, ahead of what it
// holds: they are older. On disk they are settled, while the brokers are
// away, new messages follow them there, and the sender delivers them from
// the spool in order. False, keeping them in memory, when closing (Close
// spools them) or when the spool cannot take them all.
func (p *Producer) spill(inflight []Message) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closing {
		return false
	}
	msgs := append(slices.Clone(inflight), p.queue...)
	if !p.spool.room(msgs) {
		return false
	}
	n, err := p.spool.prepend(msgs)
	if err != nil || n < len(msgs) {
		// Kept in memory and retried; a partial segment written before
		// the error is delivered too (at-least-once).
		p.spoolError("kafka spool write failed: messages stay in memory", err)
		return false
	}
	p.spooled.Add(uint64(n))
	p.queue, p.qseq, p.inFlight = nil, nil, false
	if ok, suppressed := p.spillLog.Allow(time.Now()); ok {
		p.log.Warn("kafka write failed: messages in memory moved to the spool", "messages", n, "dir", p.cfg.SpoolDir, "suppressed", suppressed)
	}
	return true
}

func (p *Producer) isClosing() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closing
}

// write delivers chunk, retrying with backoff until the brokers take it,
// or, after a failed attempt, spill (if not nil) takes what is left of it.
// When Close stops it first, it returns what is not delivered (nil: all is).
func (p *Producer) write(chunk []Message, spill func([]Message) bool) []Message {
	backoff := backoffMin
	for {
		msgs := make([]kafka.Message, len(chunk))
		for i := range chunk {
			msgs[i] = kafka.Message{Topic: chunk[i].Topic, Key: chunk[i].Key, Value: chunk[i].Value}
		}
		err := p.w.WriteMessages(p.writeCtx, msgs...)
		if err == nil {
			p.sent.Add(uint64(len(chunk)))
			if p.failing.Swap(false) {
				p.log.Info("kafka brokers take messages again", "failed_attempts", p.failures.Load())
			}
			return nil
		}
		var werrs kafka.WriteErrors
		if errors.As(err, &werrs) && len(werrs) == len(chunk) {
			// Retry only what failed, in order: the rest is in.
			var failed []Message
			for i := range chunk {
				if werrs[i] != nil {
					failed = append(failed, chunk[i])
				}
			}
			p.sent.Add(uint64(len(chunk) - len(failed)))
			chunk = failed
		}
		if p.writeCtx.Err() != nil {
			return chunk
		}
		p.failures.Add(1)
		// The first failure of an outage is logged at once, then one line
		// per logEvery while it lasts.
		logged, attempts := p.failLog.Allow(time.Now())
		if !p.failing.Swap(true) {
			p.log.Error("kafka write failed: retrying, messages wait in the queue and spool", "err", err)
		} else if logged {
			s := p.Stats()
			p.log.Warn("kafka still failing", "attempts", attempts+1, "queued", s.QueueDepth, "spool_bytes", s.SpoolBytes, "err", err)
		}
		if spill != nil && spill(chunk) {
			return nil // the spool delivers it, after the brokers return
		}
		select {
		case <-time.After(backoff):
		case <-p.writeCtx.Done():
			return chunk
		}
		backoff = min(2*backoff, backoffMax)
	}
}

// Close delivers what it can until ctx ends, then writes whatever is
// still undelivered to the spool, ahead of what the spool already holds.
// Without a spool that remainder is dropped, counted and logged.
func (p *Producer) Close(ctx context.Context) error {
	p.mu.Lock()
	p.closing = true
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		p.cancel()
		<-p.done
	}
	p.cancel()

	p.mu.Lock()
	defer p.mu.Unlock()
	rest, left := append(p.leftover, p.queue...), len(p.leftover)
	p.queue, p.leftover = nil, nil
	// Spooled or dropped below, counted either way: settled.
	p.qseq, p.inFlight = nil, false
	var err error
	if p.spool != nil {
		n, perr := p.spool.prepend(rest)
		again := 0 // leftover of a spool segment: spooled already
		if p.leftSeg != 0 {
			again = min(n, left)
		}
		p.spooled.Add(uint64(n - again))
		if p.leftSeg != 0 {
			perr = errors.Join(perr, p.spool.remove(p.leftSeg))
		}
		if n < len(rest) {
			p.dropAtShutdown(len(rest)-n, "spool full at shutdown")
		}
		err = errors.Join(perr, p.spool.close())
		if n > 0 {
			p.log.Info("kafka messages spooled at shutdown: they are sent at the next start", "messages", n, "dir", p.cfg.SpoolDir)
		}
	} else if len(rest) > 0 {
		p.dropAtShutdown(len(rest), "brokers unreachable at shutdown and no --kafka-spool-dir")
	}
	return errors.Join(err, p.w.Close())
}

// Settled is how many of the messages given to Send since New, from the
// first, a crash of this process can no longer lose: acknowledged by the
// brokers, written to the spool, or dropped and counted. Messages waiting
// in the memory queue, or taken from it and not yet acknowledged, are not,
// and neither is anything sent after them: without a spool they wait there
// for as long as the brokers are away; with one, until the first failed
// write moves them to it. It only grows; compare with what Send returns.
func (p *Producer) Settled() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.inFlight:
		return p.flightSeq
	case len(p.qseq) > 0:
		return p.qseq[0]
	}
	return p.seq
}

// Stats returns the counters.
func (p *Producer) Stats() Stats {
	p.mu.Lock()
	q := len(p.queue)
	var sb int64
	if p.spool != nil {
		sb = p.spool.bytes
	}
	p.mu.Unlock()
	return Stats{Sent: p.sent.Load(), Failures: p.failures.Load(), Spooled: p.spooled.Load(), Replayed: p.replayed.Load(),
		Dropped: p.dropped.Load(), QueueDepth: q, SpoolBytes: sb}
}

func (p *Producer) String() string {
	return fmt.Sprintf("kafka://%s/%s", p.cfg.Brokers[0], p.cfg.Topic)
}

// Shutdown is Close with a deadline of timeout, then one log line of the
// producer's totals: what both programs do when they stop.
func (p *Producer) Shutdown(timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		p.log.Error("kafka close", "err", err)
	}
	st := p.Stats()
	p.log.Info("kafka totals", "sent", st.Sent, "failed_attempts", st.Failures, "spooled", st.Spooled,
		"replayed", st.Replayed, "dropped", st.Dropped, "spool_bytes", st.SpoolBytes)
}

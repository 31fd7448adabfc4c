package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xdpflow/xdpflow/collector/decode"
	"github.com/xdpflow/xdpflow/collector/listen"
	"github.com/xdpflow/xdpflow/collector/rotate"
	"github.com/xdpflow/xdpflow/internal/kafkaout"
	"github.com/xdpflow/xdpflow/internal/metrics"
	"github.com/xdpflow/xdpflow/internal/ratelimit"
	"github.com/xdpflow/xdpflow/schemas"
)

func run(ctx context.Context, c *config, log *slog.Logger) error {
	allow, _ := listen.ParseAllow(c.Allow)
	tcps := false
	for _, u := range c.Listen {
		n, _, _ := listen.ParseURL(u)
		tcps = tcps || n == "tcps"
	}
	tlsCfg, err := c.tlsConfig(tcps)
	if err != nil {
		return err
	}
	s := &sink{dec: decode.New(decode.Config{MaxExporters: c.MaxExporters, MaxTemplatesPerExporter: c.MaxTemplates,
		MaxTemplateBytes: c.MaxTemplateBytes, EnterpriseNumber: c.Enterprise}), log: log,
		outErrLog: ratelimit.Every(outErrLogInterval)}
	if c.Out != "" {
		if s.file, err = rotate.Open(rotate.Config{Path: c.Out, MaxBytes: c.RotateSize, MaxAge: c.RotateInterval}); err != nil {
			return err
		}
		defer s.file.Close()
	}
	if c.Kafka.Enabled() {
		if s.prod, err = kafkaout.New(ctx, c.Kafka, log); err != nil {
			return err
		}
		s.topic = c.Kafka.Topic
		s.format, _ = schemas.ParseFormat(c.Kafka.Format)
	}

	// Bind everything before serving anything: a bad --listen fails the
	// start, not a running collector.
	var ls []*listen.Listener
	for _, u := range c.Listen {
		l, err := listen.Listen(u, allow, listen.Options{UDPReadBuffer: c.UDPReadBuffer, UDPWorkers: c.UDPWorkers, TLS: tlsCfg}, log)
		if err != nil {
			for _, l := range ls {
				l.Close()
			}
			return err
		}
		ls = append(ls, l)
		log.Info("listening", "url", u, "addr", l.Addr(), "sockets", l.Sockets())
	}

	ms, err := metrics.Serve(c.Metrics, collectorMetrics(ls, s), collectorReady(s), log)
	if err != nil {
		for _, l := range ls {
			l.Close()
		}
		return err
	}
	defer ms.Close()

	var wg sync.WaitGroup
	errs := make(chan error, len(ls))
	for _, l := range ls {
		wg.Go(func() {
			if err := l.Serve(ctx, func() listen.Handler { return s.newWorker() }); err != nil {
				errs <- fmt.Errorf("%s: %w", l.URL, err)
			}
		})
	}
	flushDone := make(chan struct{})
	go s.flushLoop(ctx, flushDone)
	wg.Wait()
	<-flushDone
	close(errs)
	err = errors.Join(collect(errs)...)
	if s.prod != nil {
		s.prod.Shutdown(c.Kafka.FlushTimeout)
	}
	s.summary(ls)
	return err
}

func collect(ch chan error) (out []error) {
	for e := range ch {
		out = append(out, e)
	}
	return out
}

// sink is where decoded records go: the JSON lines file and Kafka.
type sink struct {
	dec    *decode.Decoder
	file   *rotate.Writer
	prod   *kafkaout.Producer
	topic  string
	format schemas.Format
	log    *slog.Logger

	encodeErrs atomic.Uint64      // records the Kafka format could not encode
	outErrLog  *ratelimit.Limiter // --out write errors: every worker's, shared
}

// outErrLogInterval: --out write errors (a full disk fails every batch)
// are logged at most this often.
const outErrLogInterval = 10 * time.Second

// outError logs a failed write to --out, at most once per
// outErrLogInterval, with how many were not logged since.
func (s *sink) outError(err error) {
	if ok, suppressed := s.outErrLog.Allow(time.Now()); ok {
		s.log.Error("write --out", "err", err, "suppressed", suppressed)
	}
}

// flushLoop pushes the file's buffer out every second (and rotates it on
// time), until ctx ends.
func (s *sink) flushLoop(ctx context.Context, done chan struct{}) {
	defer close(done)
	if s.file == nil {
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.file.Flush(); err != nil {
				s.outError(err)
			}
		}
	}
}

func (s *sink) newWorker() *worker {
	w := &worker{s: s}
	w.emit = w.add
	return w
}

func (s *sink) summary(ls []*listen.Listener) {
	for _, l := range ls {
		st := l.Stats()
		s.log.Info("listener totals", "url", l.URL, "messages", st.Messages, "denied", st.Denied,
			"kernel_drops", st.KernelDrops, "tcp_connections", st.Connections, "tcp_stream_errors", st.StreamErrors, "tls_errors", st.TLSErrors)
	}
	st := s.dec.Stats()
	s.log.Info("decode totals", append(counterAttrs(&st.Total), "exporters", st.Tracked, "kafka_encode_errors", s.encodeErrs.Load())...)
	n := 0
	for addr, c := range st.Exporters {
		if n++; n > 100 {
			s.log.Info("more exporters not shown", "count", len(st.Exporters)-100)
			break
		}
		s.log.Info("exporter totals", append([]any{"exporter", addr}, counterAttrs(&c)...)...)
	}
}

// worker turns the messages one receiving goroutine gets into output,
// batched per message and flushed when the batch is large or the
// listener goes idle.
type worker struct {
	s     *sink
	emit  func(*schemas.FlowMessage)
	lines []byte             // JSON lines for the file
	slab  []byte             // Kafka keys and values
	msgs  []kafkaout.Message // slices of slab
	since time.Time          // when the batch got its first record
}

// maxBatchAge bounds how long a record waits in a worker's batch: a
// socket that never goes quiet for the idle deadline, but gets too little
// to fill a batch (one of several workers, a slow exporter), would hold
// its records indefinitely.
const maxBatchAge = time.Second

func (w *worker) Message(exporter netip.AddrPort, msg []byte) {
	now := time.Now()
	// Decode errors are counted by the decoder, per exporter and reason.
	w.s.dec.Decode(exporter, msg, uint64(now.UnixNano()), w.emit)
	if len(w.lines) == 0 && len(w.msgs) == 0 {
		return
	}
	if w.since.IsZero() {
		w.since = now
	}
	if len(w.lines) > 256<<10 || len(w.msgs) > 4096 || now.Sub(w.since) >= maxBatchAge {
		w.Idle()
	}
}

func (w *worker) add(m *schemas.FlowMessage) {
	if w.s.file != nil {
		w.lines, _ = schemas.FormatJSON.Append(w.lines, m) // never fails for a FlowMessage
		w.lines = append(w.lines, '\n')
	}
	if w.s.prod != nil {
		if w.slab == nil {
			w.slab = make([]byte, 0, 512<<10)
		}
		start := len(w.slab)
		w.slab = schemas.AppendKey(w.slab, m)
		keyEnd := len(w.slab)
		b, err := w.s.format.Append(w.slab, m)
		if err != nil {
			// Not expected: the decoder makes strings valid UTF-8.
			w.slab = w.slab[:start]
			w.s.encodeErrs.Add(1)
			return
		}
		w.slab = b
		// Earlier messages keep pointing into the old array if slab grows.
		w.msgs = append(w.msgs, kafkaout.Message{Topic: w.s.topic, Key: w.slab[start:keyEnd:keyEnd], Value: w.slab[keyEnd:len(w.slab):len(w.slab)]})
	}
}

// Idle hands the batch over.
func (w *worker) Idle() {
	w.since = time.Time{}
	if len(w.lines) > 0 {
		if _, err := w.s.file.Write(w.lines); err != nil {
			w.s.outError(err)
		}
		w.lines = w.lines[:0]
	}
	if len(w.msgs) > 0 {
		w.s.prod.Send(w.msgs)
		// The producer holds the messages until delivered: start afresh.
		w.msgs, w.slab = nil, nil
	}
}

func counterAttrs(c *decode.Counters) []any {
	attrs := []any{"messages", c.Messages, "records", c.Records, "lost", c.Lost, "resets", c.Resets,
		"out_of_order", c.OutOfOrder, "template_misses", c.TemplateMisses, "pending_decoded", c.PendingDecoded,
		"pending_dropped", c.PendingDropped}
	for reason, n := range c.Bad() {
		attrs = append(attrs, "dropped_"+reason, n)
	}
	return attrs
}

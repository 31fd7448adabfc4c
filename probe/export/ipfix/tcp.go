package ipfix

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// tcpOptions tune the TCP transport; zero fields take the defaults. Tests
// shorten them.
type tcpOptions struct {
	minBackoff, maxBackoff time.Duration // reconnect backoff, doubling; default 100ms..30s
	dialTimeout            time.Duration // default 5s
	writeTimeout           time.Duration // a peer that takes no data this long is dropped; default 10s
	drainTimeout           time.Duration // Close waits this long for the queue to go out; default 5s
	queueLimit             int           // bytes of encoded messages kept while disconnected; default 4 MiB
	tlsSettle              time.Duration // TLS 1.3 with a client certificate asked for: wait this long for the collector's verdict; default 250ms
}

func (o tcpOptions) withDefaults() tcpOptions {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.minBackoff, 100*time.Millisecond)
	def(&o.maxBackoff, 30*time.Second)
	def(&o.dialTimeout, 5*time.Second)
	def(&o.writeTimeout, 10*time.Second)
	def(&o.drainTimeout, 5*time.Second)
	def(&o.tlsSettle, 250*time.Millisecond)
	if o.queueLimit <= 0 {
		o.queueLimit = 4 << 20
	}
	return o
}

// queued is one encoded message waiting for the connection.
type queued struct {
	b           []byte
	data, flows int    // data records (for the sequence number), flow records (for stats)
	start       uint64 // position of its first record among those given to Export (Settled)
}

// tcpSender owns the TCP (or TLS) connection. Export only appends encoded
// messages to a bounded queue, so a slow or absent collector never blocks
// it; one goroutine (run) connects with backoff, sends the templates first
// on every connection, then drains the queue with write deadlines.
type tcpSender struct {
	x    *Exporter
	addr string
	tls  *tls.Config // tcps:// only
	opt  tcpOptions
	tmpl *Encoder // encodes the templates for each new connection; used by run only

	mu     sync.Mutex
	q      []queued
	head   int      // q[head:] is waiting
	bytes  int      // bytes in q[head:]
	free   [][]byte // recycled message buffers: no allocation per message in steady state
	bufCap int
	// pending is the position (among the records given to Export) of the
	// first record not yet handed to enqueue: the start of the message the
	// encoder is building. Every queued message starts before it, and
	// every record before the oldest queued message's start (or before
	// pending, with the queue empty) is written, dropped or invalid: that
	// is Settled.
	pending uint64

	wake    chan struct{} // a message was queued
	closing chan struct{} // Close was called: drain, then stop
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{} // run returned

	conn net.Conn // current connection (a *tls.Conn for tcps://), run only
	seq  uint32   // IPFIX sequence number on conn; restarts with each transport session
}

func newTCPSender(x *Exporter, addr string, tlsCfg *tls.Config, cfg Config, opt tcpOptions) *tcpSender {
	s := &tcpSender{
		x:       x,
		addr:    addr,
		tls:     tlsCfg,
		opt:     opt.withDefaults(),
		bufCap:  cfg.MaxMessageBytes,
		wake:    make(chan struct{}, 1),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.tmpl = NewCountingEncoder(cfg, s.writeTemplate)
	return s
}

// enqueue is the Export-side encoder's send: copy the message into the
// queue, or drop and count its records when the queue is full.
func (s *tcpSender) enqueue(msg []byte, c Counts) error {
	data, flows := c.Data, c.Flows
	s.mu.Lock()
	// The message holds the records from pending on; the next one starts
	// with the record being added (or after the batch, on Flush).
	start := s.pending
	s.pending = max(s.pending, s.x.cur)
	if queued := s.bytes; queued+len(msg) > s.opt.queueLimit {
		s.x.dropped.Add(uint64(flows)) // counted before Settled can count them
		s.mu.Unlock()
		s.x.logError("queue full, dropping records (collector down or too slow)",
			fmt.Errorf("%d bytes queued, limit %d", queued, s.opt.queueLimit))
		return nil
	}
	var b []byte
	if n := len(s.free); n > 0 {
		b, s.free = s.free[n-1], s.free[:n-1]
	} else {
		b = make([]byte, 0, s.bufCap)
	}
	s.q = append(s.q, queued{b: append(b[:0], msg...), data: data, flows: flows, start: start})
	s.bytes += len(msg)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return nil
}

// handedOut records that every record before pos (a position among the
// records given to Export) is queued, dropped or invalid: Export calls it
// when the encoder's message holds no flow record.
func (s *tcpSender) handedOut(pos uint64) {
	s.mu.Lock()
	s.pending = max(s.pending, pos)
	s.mu.Unlock()
}

// settled is Exporter.Settled for TCP: the start of the oldest message not
// yet written (it stays queued until its write returns, across reconnects),
// else every record handed out.
func (s *tcpSender) settled() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.head < len(s.q) {
		return s.q[s.head].start
	}
	return s.pending
}

// peek returns the oldest queued message; it stays queued until pop.
func (s *tcpSender) peek() (queued, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.head == len(s.q) {
		return queued{}, false
	}
	return s.q[s.head], true
}

// pop removes the oldest message and recycles its buffer.
func (s *tcpSender) pop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.q[s.head]
	s.q[s.head] = queued{}
	s.head++
	s.bytes -= len(m.b)
	s.free = append(s.free, m.b)
	if s.head == len(s.q) {
		s.q, s.head = s.q[:0], 0
	} else if s.head > 64 && s.head > len(s.q)/2 {
		n := copy(s.q, s.q[s.head:])
		clear(s.q[n:])
		s.q, s.head = s.q[:n], 0
	}
}

func (s *tcpSender) isClosing() bool {
	select {
	case <-s.closing:
		return true
	default:
		return false
	}
}

// sleep waits d; false if the sender is closing.
func (s *tcpSender) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.closing:
		return false
	case <-s.ctx.Done():
		return false
	}
}

// connect dials the collector and, for tcps://, shakes hands. raw is the
// TCP connection under conn.
func (s *tcpSender) connect(d *net.Dialer) (conn, raw net.Conn, err error) {
	raw, err = d.DialContext(s.ctx, "tcp", s.addr)
	if err != nil || s.tls == nil {
		return raw, raw, err
	}
	tc, err := handshake(s.ctx, raw, s.tls, s.opt.dialTimeout, s.opt.tlsSettle)
	if err != nil {
		raw.Close()
		return nil, nil, err
	}
	return tc, raw, nil
}

// run connects, serves, and reconnects with exponential backoff until Close.
func (s *tcpSender) run() {
	defer close(s.done)
	log := s.x.log
	d := net.Dialer{Timeout: s.opt.dialTimeout}
	backoff := s.opt.minBackoff
	failures := 0
	everConnected := false
	logged := "" // the failure already logged at Warn in this run of failures
	for s.ctx.Err() == nil {
		conn, raw, err := s.connect(&d)
		if err != nil {
			if s.ctx.Err() != nil || s.isClosing() {
				return // Close counts what is still queued as dropped
			}
			failures++
			// Each kind of failure is logged once while it lasts, so
			// an untrusted certificate is not buried under retries.
			what := "collector unreachable"
			var te *tlsError
			if errors.As(err, &te) {
				s.x.tlsErrors.Add(1)
				what, err = te.hint, te.err
			}
			if what != logged {
				logged = what
				log.Warn(fmt.Sprintf("%s: %s, retrying with backoff: %v", s.x.name, what, err))
			} else {
				log.Debug(s.x.name+": connect failed", "err", err, "attempt", failures, "backoff", backoff)
			}
			if !s.sleep(backoff) {
				return
			}
			backoff = min(2*backoff, s.opt.maxBackoff)
			continue
		}
		if everConnected {
			s.x.reconnects.Add(1)
		}
		everConnected = true
		if tc, ok := conn.(*tls.Conn); ok {
			log.Info(s.x.name+": connected", "failed_attempts", failures, "tls", tls.VersionName(tc.ConnectionState().Version))
		} else {
			log.Info(s.x.name+": connected", "failed_attempts", failures)
		}
		failures, logged = 0, ""
		start := time.Now()
		err = s.serve(conn)
		if err == nil {
			conn.Close() // TLS: close_notify, the collector sees a clean end
		} else {
			raw.Close()
		}
		if err == nil || s.ctx.Err() != nil {
			return
		}
		if s.tls != nil && isAlert(err) {
			// A collector that checks client certificates after the
			// handshake and did not answer within tlsSettle.
			s.x.tlsErrors.Add(1)
			log.Warn(s.x.name+": "+refusedHint(s.tls)+", reconnecting", "err", err)
		} else {
			log.Warn(s.x.name+": connection lost, reconnecting", "err", err)
		}
		if time.Since(start) > s.opt.maxBackoff {
			backoff = s.opt.minBackoff // it was a good connection: start over
		}
		// A collector that accepts and drops at once is not hammered.
		if !s.sleep(backoff) {
			return
		}
		backoff = min(2*backoff, s.opt.maxBackoff)
	}
}

// serve sends the templates on a fresh connection, then the queue, until
// the connection fails (error) or the sender is closing with an empty queue
// (nil).
func (s *tcpSender) serve(conn net.Conn) error {
	// Collectors send nothing back: a read that returns means the peer
	// closed or reset, which we want to know before writing into the void.
	dead := make(chan error, 1)
	go func() {
		var b [256]byte
		for {
			if _, err := conn.Read(b[:]); err != nil {
				dead <- err
				return
			}
		}
	}()
	stop := context.AfterFunc(s.ctx, func() { conn.SetDeadline(time.Now()) }) // Close gave up waiting
	defer stop()

	// RFC 7011 8.1: templates first on each new TCP connection, and a new
	// transport session starts a new sequence number space.
	s.conn, s.seq = conn, 0
	if err := s.tmpl.SendTemplates(time.Now()); err != nil {
		return err
	}
	for {
		m, ok := s.peek()
		if !ok {
			if s.isClosing() {
				return nil
			}
			select {
			case <-s.wake:
			case <-s.closing:
			case err := <-dead:
				return fmt.Errorf("collector closed the connection: %w", err)
			case <-s.ctx.Done():
				return s.ctx.Err()
			}
			continue
		}
		select {
		case err := <-dead:
			return fmt.Errorf("collector closed the connection: %w", err)
		default:
		}
		if err := s.write(m.b, m.data); err != nil {
			return err // m stays queued: it goes out again after the templates
		}
		s.x.sent(len(m.b), m.flows) // counted before Settled can count them
		s.pop()
	}
}

// writeTemplate is the template encoder's send.
func (s *tcpSender) writeTemplate(msg []byte, c Counts) error {
	if err := s.write(msg, c.Data); err != nil {
		return err
	}
	s.x.sent(len(msg), 0)
	return nil
}

// write stamps the session's sequence number into an IPFIX message and
// writes it within the write timeout.
func (s *tcpSender) write(msg []byte, data int) error {
	binary.BigEndian.PutUint32(msg[8:], s.seq)
	if err := s.conn.SetWriteDeadline(time.Now().Add(s.opt.writeTimeout)); err != nil {
		return err
	}
	if _, err := s.conn.Write(msg); err != nil {
		s.x.sendErrors.Add(1)
		return fmt.Errorf("write: %w", err)
	}
	s.seq += uint32(data)
	return nil
}

// close lets run drain the queue for up to drainTimeout, then stops it and
// counts the records still queued as dropped.
func (s *tcpSender) close() {
	close(s.closing)
	t := time.NewTimer(s.opt.drainTimeout)
	select {
	case <-s.done:
	case <-t.C:
		s.x.log.Warn(s.x.name + ": closing before the queue was delivered")
	}
	t.Stop()
	s.cancel()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.q[s.head:] {
		s.x.dropped.Add(uint64(m.flows))
	}
	s.q, s.head, s.bytes = nil, 0, 0
}

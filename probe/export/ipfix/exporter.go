package ipfix

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xdpflow/xdpflow/internal/ratelimit"
	"github.com/xdpflow/xdpflow/probe/export"
	"github.com/xdpflow/xdpflow/schemas"
)

// ExporterStats are an Exporter's counters since it was created.
type ExporterStats = export.Stats

var (
	_ export.Exporter = (*Exporter)(nil)
	_ export.Counting = (*Exporter)(nil)
	_ export.Settling = (*Exporter)(nil)
)

// ErrClosed is returned by an Exporter used after Close.
var ErrClosed = errors.New("ipfix: exporter closed")

const errLogInterval = 10 * time.Second // send errors are logged at most this often

// Exporter sends flow records to one collector. Its methods may be called
// from several goroutines; Export calls are serialized.
type Exporter struct {
	name string // "ipfix udp://host:port"
	log  *slog.Logger

	mu     sync.Mutex // guards enc and closed
	enc    *Encoder
	closed bool

	udp *net.UDPConn // udp:// only
	tcp *tcpSender   // tcp:// and tcps:// only

	messages, records, bytes, sendErrors, dropped, reconnects, tlsErrors atomic.Uint64

	// given counts the records passed to Export (after Close: none); each
	// record's position in that stream is what Settled counts in. cur is
	// the position of the record being added (Export, under mu), for the
	// TCP sender to learn where each message starts.
	given atomic.Uint64
	cur   uint64

	errLog *ratelimit.Limiter
}

// NewExporter returns an exporter to rawURL: udp://host:port,
// tcp://host:port or tcps://host:port (IPFIX over TLS, RFC 7011 section 11,
// with cfg.TLS); TCP and TLS for IPFIX only. It does not need the collector
// to be up: UDP sends regardless, TCP and TLS connect in the background and
// retry with backoff, whatever the reason a connection failed.
func NewExporter(rawURL string, cfg Config, log *slog.Logger) (*Exporter, error) {
	return newExporter(rawURL, cfg, log, tcpOptions{})
}

func newExporter(rawURL string, cfg Config, log *slog.Logger, opt tcpOptions) (*Exporter, error) {
	cfg = cfg.withDefaults()
	if cfg.Protocol != IPFIX && cfg.Protocol != NetFlowV9 {
		return nil, fmt.Errorf("ipfix: unknown protocol %d: use ipfix.IPFIX or ipfix.NetFlowV9", int(cfg.Protocol))
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("ipfix: collector URL %q: %w (want udp://host:port, tcp://host:port or tcps://host:port)", rawURL, err)
	}
	if u.Port() == "" || u.Hostname() == "" {
		return nil, fmt.Errorf("ipfix: collector URL %q: need host and port, e.g. udp://127.0.0.1:4739", rawURL)
	}
	if log == nil {
		log = slog.Default()
	}
	x := &Exporter{log: log, errLog: ratelimit.Every(errLogInterval)}
	x.name = fmt.Sprintf("%s %s://%s", cfg.Protocol, u.Scheme, u.Host)

	switch u.Scheme {
	case "udp":
		// One connected socket for the exporter's life: the source port
		// stays the same, and collectors key template caches on it.
		c, err := net.Dial("udp", u.Host)
		if err != nil {
			return nil, fmt.Errorf("ipfix: %s: open UDP socket: %w (check the collector address)", x.name, err)
		}
		x.udp = c.(*net.UDPConn)
		x.enc = NewCountingEncoder(cfg, x.sendUDP)
		x.enc.refresh = true                // RFC 7011 10.3.6: UDP templates are resent periodically
		_ = x.enc.SendTemplates(time.Now()) // failures are counted and logged by sendUDP
	case "tcp", "tcps":
		if cfg.Protocol != IPFIX {
			return nil, fmt.Errorf("ipfix: %s: NetFlow v9 has no TCP transport (RFC 3954): use udp:// or protocol IPFIX", x.name)
		}
		var tlsCfg *tls.Config
		if u.Scheme == "tcps" {
			tlsCfg = clientTLS(cfg.TLS, u.Hostname())
		}
		x.tcp = newTCPSender(x, u.Host, tlsCfg, cfg, opt)
		x.enc = NewCountingEncoder(cfg, x.tcp.enqueue)
		x.tcp.tmpl.ann = x.enc.ann // each connection opens with every template the stream has used
		go x.tcp.run()
	default:
		return nil, fmt.Errorf("ipfix: collector URL %q: unsupported scheme %q: use udp://, tcp:// or tcps://", rawURL, u.Scheme)
	}
	return x, nil
}

// Export encodes flows and sends them, the partial last message included,
// so no record waits for a later call. UDP templates are resent first when
// due. Invalid records are skipped, counted as dropped, and reported in the
// returned error; send errors are counted, never returned.
func (x *Exporter) Export(flows []schemas.Flow) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		return ErrClosed
	}
	now := time.Now()
	var bad int
	var firstBad error
	if x.udp != nil && x.enc.templatesDue(now) { // the encoder checks again after each message
		_ = x.enc.SendTemplates(now)
	}
	base := x.given.Load()
	for i := range flows {
		x.cur = base + uint64(i)
		if x.tcp != nil && x.enc.msgFlows == 0 {
			x.tcp.handedOut(x.cur) // every record before it is queued, dropped or invalid
		}
		if err := x.enc.Add(&flows[i]); err != nil && errors.Is(err, ErrInvalidFlow) {
			x.dropped.Add(1) // counted before Settled can count it
			bad++
			if firstBad == nil {
				firstBad = err
			}
		}
	}
	x.cur = base + uint64(len(flows))
	_ = x.enc.Flush(now)
	if x.tcp != nil {
		x.tcp.handedOut(x.cur)
	}
	x.given.Store(x.cur)
	if bad > 0 {
		return fmt.Errorf("ipfix: %s: skipped %d invalid records (fix the flow source): first: %w", x.name, bad, firstBad)
	}
	return nil
}

// Flush sends the pending partial message, if any.
func (x *Exporter) Flush() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		return ErrClosed
	}
	return x.enc.Flush(time.Now())
}

// Close flushes, gives TCP a bounded time to deliver its queue, and closes
// the socket. Records still queued then are counted as dropped.
func (x *Exporter) Close() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		return nil
	}
	_ = x.enc.Flush(time.Now())
	x.closed = true
	if x.udp != nil {
		return x.udp.Close()
	}
	x.tcp.close()
	return nil
}

// Stats returns the counters.
func (x *Exporter) Stats() ExporterStats {
	return ExporterStats{
		Messages:       x.messages.Load(),
		Records:        x.records.Load(),
		Bytes:          x.bytes.Load(),
		SendErrors:     x.sendErrors.Load(),
		RecordsDropped: x.dropped.Load(),
		Reconnects:     x.reconnects.Load(),
		TLSErrors:      x.tlsErrors.Load(),
	}
}

// Settled implements export.Settling: how many of the records given to
// Export, from the first, a crash can no longer lose. UDP sends within
// Export, so that is every record. TCP and TLS count a record once the
// message holding it was written to the connection (a write that
// returned), or dropped and counted (queue full, still queued at Close);
// invalid records are dropped and counted by Export. A record is counted
// only when every record before it is: a message waiting in the queue
// holds back the records behind it, dropped or not. Templates are not
// records given to Export and count for nothing.
func (x *Exporter) Settled() uint64 {
	if x.tcp == nil {
		return x.given.Load()
	}
	return x.tcp.settled()
}

// String names the exporter, e.g. "ipfix udp://127.0.0.1:4739".
func (x *Exporter) String() string { return x.name }

// sent counts one message written to the socket.
func (x *Exporter) sent(bytes, flows int) {
	x.messages.Add(1)
	x.records.Add(uint64(flows))
	x.bytes.Add(uint64(bytes))
}

// sendUDP is the UDP encoder's send: a failed write (no listener: the
// kernel reports the ICMP port unreachable as ECONNREFUSED on the next
// send) is counted and logged now and then, never fatal.
func (x *Exporter) sendUDP(msg []byte, c Counts) error {
	if _, err := x.udp.Write(msg); err != nil {
		x.sendErrors.Add(1)
		x.dropped.Add(uint64(c.Flows))
		x.logError("send failed, records dropped (is the collector listening?)", err)
		return nil
	}
	x.sent(len(msg), c.Flows)
	return nil
}

// logError logs err at most once per errLogInterval, with how many were
// not logged since.
func (x *Exporter) logError(msg string, err error) {
	if ok, suppressed := x.errLog.Allow(time.Now()); ok {
		x.log.Warn(x.name+": "+msg, "err", err, "suppressed", suppressed)
	}
}

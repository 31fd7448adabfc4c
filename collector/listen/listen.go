// Package listen receives export messages over UDP, TCP and TLS for the
// collector: it parses --listen URLs, applies the --allow list before any
// decoding work (and before a TLS handshake), cuts IPFIX messages out of
// TCP and TLS streams, and counts what it drops and what the kernel
// dropped.
package listen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"runtime"
	"strings"
	"sync/atomic"

	"github.com/xdpflow/xdpflow/internal/ratelimit"
)

// Handler takes one export message from an exporter. msg is only valid
// during the call. Each receiving goroutine (a UDP socket, a TCP
// connection) has its own Handler; Handlers run concurrently.
type Handler interface {
	Message(exporter netip.AddrPort, msg []byte)
	// Idle is called when no message arrived for a while (and at the end),
	// so batches are flushed.
	Idle()
}

// Stats are a listener's counters.
type Stats struct {
	Messages     uint64 // handed to the Handler
	Denied       uint64 // from sources outside --allow
	KernelDrops  uint64 // UDP datagrams the socket buffer had no room for
	Connections  uint64 // TCP connections accepted (tcps: with the TLS handshake done)
	StreamErrors uint64 // TCP connections closed on a bad or cut message
	TLSErrors    uint64 // tcps: connections closed on a failed TLS handshake
}

// Listener is one --listen URL being served.
type Listener struct {
	URL   string
	allow []netip.Prefix
	log   *slog.Logger

	messages, denied, conns, streamErrs, tlsErrs atomic.Uint64 // UDP: messages per socket

	udp    []*udpSocket // --udp-workers sockets sharing the port (SO_REUSEPORT)
	tcp    *net.TCPListener
	tlsCfg *tls.Config        // tcps:// only
	tlsLog *ratelimit.Limiter // failed handshakes
}

// Stats returns the counters, summed over a UDP listener's sockets.
func (l *Listener) Stats() Stats {
	st := Stats{Messages: l.messages.Load(), Denied: l.denied.Load(),
		Connections: l.conns.Load(), StreamErrors: l.streamErrs.Load(), TLSErrors: l.tlsErrs.Load()}
	for _, s := range l.udp {
		st.Messages += s.messages.Load()
		st.KernelDrops += s.drops.Load()
	}
	return st
}

// Sockets is how many sockets receive for a UDP listener (1 for TCP).
func (l *Listener) Sockets() int {
	return max(1, len(l.udp))
}

// ParseURL checks a --listen URL: udp://[host]:port, tcp://[host]:port or
// tcps://[host]:port (IPFIX over TLS); network is the scheme.
func ParseURL(raw string) (network, addr string, err error) {
	u, err := url.Parse(raw)
	if err != nil || u.Port() == "" || u.Path != "" {
		return "", "", fmt.Errorf("--listen %q: want udp://[host]:port, tcp://[host]:port or tcps://[host]:port", raw)
	}
	switch u.Scheme {
	case "udp", "tcp", "tcps":
		return u.Scheme, u.Host, nil
	}
	return "", "", fmt.Errorf("--listen %q: scheme %q not supported (want udp, tcp or tcps)", raw, u.Scheme)
}

// ParseAllow reads --allow CIDRs (a bare address is a /32 or /128).
func ParseAllow(cidrs []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, c := range cidrs {
		if !strings.Contains(c, "/") {
			a, err := netip.ParseAddr(c)
			if err != nil {
				return nil, fmt.Errorf("--allow %q: want a CIDR like 198.18.0.0/15", c)
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return nil, fmt.Errorf("--allow %q: want a CIDR like 198.18.0.0/15: %w", c, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// allowed tells whether a source may send; an empty list allows all.
func (l *Listener) allowed(a netip.Addr) bool {
	if len(l.allow) == 0 {
		return true
	}
	a = a.Unmap()
	for _, p := range l.allow {
		if p.Contains(a) {
			return true
		}
	}
	l.denied.Add(1)
	return false
}

// Options tune the sockets.
type Options struct {
	UDPReadBuffer int // SO_RCVBUF bytes, of each UDP socket
	// UDPWorkers is how many sockets a udp:// listener opens on its port
	// (SO_REUSEPORT), each read and decoded by a goroutine of its own; 0:
	// GOMAXPROCS. The kernel picks the socket by a hash of the source and
	// destination address and port, so one exporter's datagrams stay on
	// one socket, in order.
	UDPWorkers int
	// TLS is the server side of tcps:// listeners (see ServerTLSConfig):
	// a certificate is required; ClientCAs with ClientAuth
	// RequireAndVerifyClientCert make exporters authenticate too. The
	// listener uses a copy; other schemes ignore it.
	TLS *tls.Config
}

// Listen opens rawURL; Serve then receives on it.
func Listen(rawURL string, allow []netip.Prefix, opts Options, log *slog.Logger) (*Listener, error) {
	network, addr, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	l := &Listener{URL: rawURL, allow: allow, log: log, tlsLog: ratelimit.Every(tlsLogInterval)}
	switch network {
	case "udp":
		n := opts.UDPWorkers
		if n <= 0 {
			n = runtime.GOMAXPROCS(0)
		}
		err = l.listenUDP(addr, n, opts.UDPReadBuffer)
	case "tcps":
		if l.tlsCfg, err = serverTLS(opts.TLS); err == nil {
			err = l.listenTCP(addr)
		}
	default:
		err = l.listenTCP(addr)
	}
	if err != nil {
		return nil, fmt.Errorf("--listen %s: %w", rawURL, err)
	}
	return l, nil
}

// Addr is the address actually bound (a port 0 URL gets one).
func (l *Listener) Addr() net.Addr {
	if l.udp != nil {
		return l.udp[0].c.LocalAddr()
	}
	return l.tcp.Addr()
}

// Close closes a listener that will not be served.
func (l *Listener) Close() error {
	if l.udp != nil {
		var errs []error
		for _, s := range l.udp {
			errs = append(errs, s.c.Close())
		}
		return errors.Join(errs...)
	}
	return l.tcp.Close()
}

// Serve receives until ctx ends, with a Handler per receiving goroutine
// from newHandler. It closes the sockets when it returns.
func (l *Listener) Serve(ctx context.Context, newHandler func() Handler) error {
	if l.udp != nil {
		return l.serveUDP(ctx, newHandler)
	}
	return l.serveTCP(ctx, newHandler)
}

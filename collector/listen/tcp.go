package listen

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/xdpflow/xdpflow/collector/decode"
)

func (l *Listener) listenTCP(addr string) error {
	ta, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return err
	}
	l.tcp, err = net.ListenTCP("tcp", ta)
	return err
}

// serveTCP accepts IPFIX-over-TCP exporters (RFC 7011 section 10.4) and,
// on tcps://, IPFIX over TLS (section 11): one goroutine and Handler per
// connection. --allow is checked at accept, before any handshake; the
// handshake runs on the connection's goroutine, so a slow one holds up
// no other exporter.
func (l *Listener) serveTCP(ctx context.Context, newHandler func() Handler) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	stop := context.AfterFunc(ctx, func() {
		l.tcp.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	defer stop()
	defer wg.Wait()
	for {
		c, err := l.tcp.AcceptTCP()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return err
		}
		from := c.RemoteAddr().(*net.TCPAddr).AddrPort()
		if !l.allowed(from.Addr()) {
			c.Close()
			continue
		}
		mu.Lock()
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Go(func() {
			l.accepted(ctx, c, from, newHandler)
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
		})
	}
}

// accepted serves one exporter's connection, after the TLS handshake on
// tcps://.
func (l *Listener) accepted(ctx context.Context, c net.Conn, from netip.AddrPort, newHandler func() Handler) {
	if l.tlsCfg != nil {
		tc, err := l.handshake(ctx, c, from)
		if err != nil {
			c.Close()
			return
		}
		c = tc
	}
	l.conns.Add(1)
	l.serveConn(c, from, newHandler())
}

func (l *Listener) serveConn(c net.Conn, from netip.AddrPort, h Handler) {
	defer c.Close()
	defer h.Idle()
	r := bufio.NewReaderSize(c, 256<<10)
	buf := make([]byte, 0, maxDatagram)
	first := true
	for {
		// Flush the batch when the exporter pauses.
		if r.Buffered() == 0 {
			h.Idle()
		}
		msg, err := decode.ReadIPFIXMessage(r, buf[:0])
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				l.streamErrs.Add(1)
				what := "IPFIX over TCP: connection dropped"
				if b, _ := r.Peek(3); first && len(b) == 3 && b[0] == 0x16 && b[1] == 3 {
					what += ": a TLS handshake on a tcp:// listener (a tcps:// exporter? listen with tcps://)"
				}
				l.log.Warn(what, "exporter", from, "err", err)
			}
			return
		}
		first = false
		l.messages.Add(1)
		h.Message(from, msg)
	}
}

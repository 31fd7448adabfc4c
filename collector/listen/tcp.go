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

// serveTCP accepts IPFIX-over-TCP exporters (RFC 7011 section 10.4): one
// goroutine and Handler per connection.
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
		l.conns.Add(1)
		mu.Lock()
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Go(func() {
			l.serveConn(c, from, newHandler())
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
		})
	}
}

func (l *Listener) serveConn(c net.Conn, from netip.AddrPort, h Handler) {
	defer c.Close()
	defer h.Idle()
	r := bufio.NewReaderSize(c, 256<<10)
	buf := make([]byte, 0, maxDatagram)
	for {
		// Flush the batch when the exporter pauses.
		if r.Buffered() == 0 {
			h.Idle()
		}
		msg, err := decode.ReadIPFIXMessage(r, buf[:0])
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				l.streamErrs.Add(1)
				l.log.Warn("IPFIX over TCP: connection dropped", "exporter", from, "err", err)
			}
			return
		}
		l.messages.Add(1)
		h.Message(from, msg)
	}
}

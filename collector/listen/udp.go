package listen

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// maxDatagram is the largest UDP payload.
const maxDatagram = 65535

// udpSocket is one of a udp:// listener's sockets, read by one goroutine.
type udpSocket struct {
	c        *net.UDPConn
	messages atomic.Uint64 // handed to the Handler
	// drops is the socket's SO_RXQ_OVFL total as last reported: each
	// socket has its own, so the listener's is their sum.
	drops atomic.Uint64
}

// listenUDP opens n sockets on addr. With n > 1 they share the port with
// SO_REUSEPORT; the kernel spreads datagrams over them by a hash of the
// 4-tuple, which keeps each exporter (address and port) on one socket.
func (l *Listener) listenUDP(addr string, n, rcvbuf int) error {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return err
	}
	if n > 1 {
		// SO_REUSEPORT would let this listener join sockets another
		// program already has on the port, and split the traffic with it
		// silently. A plain bind first fails in that case, as one socket
		// does; for port 0 it also picks a port nobody holds.
		probe, err := net.ListenUDP("udp", ua)
		if err != nil {
			return err
		}
		ua.Port = probe.LocalAddr().(*net.UDPAddr).Port
		probe.Close()
	}
	lc := net.ListenConfig{Control: func(_, _ string, raw syscall.RawConn) error {
		var serr error
		err := raw.Control(func(fd uintptr) {
			if n > 1 {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
				if serr != nil {
					serr = fmt.Errorf("SO_REUSEPORT: %w", serr)
				}
			}
			// SO_RXQ_OVFL: each datagram carries the socket's drop count,
			// so losses in the kernel are counted, not guessed.
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 1)
			if rcvbuf > 0 {
				// FORCE passes net.core.rmem_max when we may (root,
				// CAP_NET_ADMIN); else the plain option, capped.
				if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf) != nil {
					unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf)
				}
			}
		})
		return errors.Join(err, serr)
	}}
	for range n {
		pc, err := lc.ListenPacket(context.Background(), "udp", ua.String())
		if err != nil {
			for _, s := range l.udp {
				s.c.Close()
			}
			l.udp = nil
			return err
		}
		l.udp = append(l.udp, &udpSocket{c: pc.(*net.UDPConn)})
	}
	return nil
}

// serveUDP reads every socket on a goroutine of its own, with its own
// Handler, until ctx ends.
func (l *Listener) serveUDP(ctx context.Context, newHandler func() Handler) error {
	errs := make([]error, len(l.udp))
	var wg sync.WaitGroup
	for i, s := range l.udp {
		h := newHandler()
		wg.Go(func() {
			errs[i] = l.readUDP(ctx, s, h)
			if errs[i] != nil && len(l.udp) > 1 {
				// Closed, it leaves the port's group: the others get its
				// exporters.
				l.log.Error("udp socket failed; its exporters move to the others", "url", l.URL, "err", errs[i])
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (l *Listener) readUDP(ctx context.Context, s *udpSocket, h Handler) error {
	defer s.c.Close()
	buf := make([]byte, maxDatagram)
	oob := make([]byte, unix.CmsgSpace(4))
	var armed time.Time
	for {
		// A deadline wakes the loop when quiet, so the handler flushes its
		// batch and ctx is seen. Once ctx ends, what the socket already
		// holds is still read: a short deadline ends the loop when empty.
		// Re-armed at most every 50 ms: setting it costs more than a
		// datagram's decode.
		now := time.Now()
		if ctx.Err() != nil {
			s.c.SetReadDeadline(now.Add(20 * time.Millisecond))
		} else if now.Sub(armed) > 50*time.Millisecond {
			s.c.SetReadDeadline(now.Add(200 * time.Millisecond))
			armed = now
		}
		n, oobn, _, from, err := s.c.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			armed = time.Time{}
			h.Idle()
			if errors.Is(err, os.ErrDeadlineExceeded) {
				if ctx.Err() != nil {
					return nil
				}
				continue
			}
			return err
		}
		s.countDrops(oob[:oobn])
		if l.allowed(from.Addr()) {
			s.messages.Add(1)
			h.Message(from, buf[:n])
		}
	}
}

// countDrops reads SO_RXQ_OVFL, the socket's total drops so far, from the
// one control message the socket asks for (read in place: this runs for
// every datagram, and unix.ParseSocketControlMessage allocates).
func (s *udpSocket) countDrops(oob []byte) {
	if len(oob) < unix.CmsgLen(4) {
		return
	}
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	if h.Level != unix.SOL_SOCKET || h.Type != unix.SO_RXQ_OVFL || int(h.Len) < unix.CmsgLen(4) {
		return
	}
	// Only this socket's goroutine stores: no compare-and-swap needed.
	if total := uint64(binary.NativeEndian.Uint32(oob[unix.CmsgLen(0):])); total > s.drops.Load() {
		s.drops.Store(total)
	}
}

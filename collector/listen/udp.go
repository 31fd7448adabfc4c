package listen

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// maxDatagram is the largest UDP payload.
const maxDatagram = 65535

func (l *Listener) listenUDP(addr string, opts Options) error {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return err
	}
	c, err := net.ListenUDP("udp", ua)
	if err != nil {
		return err
	}
	raw, err := c.SyscallConn()
	if err == nil {
		raw.Control(func(fd uintptr) {
			// SO_RXQ_OVFL: each datagram carries the socket's drop count,
			// so losses in the kernel are counted, not guessed.
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 1)
			if opts.UDPReadBuffer > 0 {
				// FORCE passes net.core.rmem_max when we may (root,
				// CAP_NET_ADMIN); else the plain option, capped.
				if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, opts.UDPReadBuffer) != nil {
					unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, opts.UDPReadBuffer)
				}
			}
		})
	}
	l.udp = c
	return nil
}

func (l *Listener) serveUDP(ctx context.Context, h Handler) error {
	defer l.udp.Close()
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
			l.udp.SetReadDeadline(now.Add(20 * time.Millisecond))
		} else if now.Sub(armed) > 50*time.Millisecond {
			l.udp.SetReadDeadline(now.Add(200 * time.Millisecond))
			armed = now
		}
		n, oobn, _, from, err := l.udp.ReadMsgUDPAddrPort(buf, oob)
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
		l.countDrops(oob[:oobn])
		if l.allowed(from.Addr()) {
			l.messages.Add(1)
			h.Message(from, buf[:n])
		}
	}
}

// countDrops reads SO_RXQ_OVFL, the socket's total drops so far, from the
// one control message the socket asks for (read in place: this runs for
// every datagram, and unix.ParseSocketControlMessage allocates).
func (l *Listener) countDrops(oob []byte) {
	if len(oob) < unix.CmsgLen(4) {
		return
	}
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	if h.Level != unix.SOL_SOCKET || h.Type != unix.SO_RXQ_OVFL || int(h.Len) < unix.CmsgLen(4) {
		return
	}
	total := uint64(binary.NativeEndian.Uint32(oob[unix.CmsgLen(0):]))
	for {
		cur := l.kernelDrops.Load()
		if total <= cur || l.kernelDrops.CompareAndSwap(cur, total) {
			break
		}
	}
}

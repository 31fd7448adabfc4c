package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is struct mmsghdr (x/sys/unix has no sendmmsg wrapper).
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// sendResult is what one paced send did.
type sendResult struct {
	msgs, records int
	elapsed       time.Duration
	errs          int // datagrams the kernel refused (ECONNREFUSED, ENOBUFS...)
}

func (r sendResult) rate() float64 { return float64(r.records) / r.elapsed.Seconds() }

const maxBatch = 16

// sender replays the inputs of several exporters to one UDP address at a
// fixed total rate in records/s: each exporter has a socket (a source port)
// of its own, its own flows, templates and sequence numbers, so that a
// collector with several SO_REUSEPORT sockets sees several 4-tuples to
// spread. Exporters take turns, a batch of up to maxBatch messages each.
type sender struct {
	exps []*exporter
}

// exporter is one exporter's stream.
type exporter struct {
	in   *input
	copy [][]byte // private copies: the sequence numbers are rewritten
	pass uint32   // passes over the input so far (sequence numbers go on)
	next int      // next message
	fd   int      // dial's socket
}

func newSender(ins []*input) *sender {
	s := &sender{}
	for _, in := range ins {
		e := &exporter{in: in}
		for _, m := range in.msgs {
			e.copy = append(e.copy, append([]byte(nil), m...))
		}
		s.exps = append(s.exps, e)
	}
	return s
}

// reset starts the streams over: a fresh collector sees templates first and
// sequence numbers from 0.
func (s *sender) reset() {
	for _, e := range s.exps {
		e.pass, e.next = 0, 0
	}
}

// dial opens each exporter's socket, connected to addr: one source port
// per exporter for the whole run (goflow2 keys its templates by address
// and port).
func (s *sender) dial(addr *net.UDPAddr) error {
	for _, e := range s.exps {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			s.close()
			return err
		}
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
		sa := &unix.SockaddrInet4{Port: addr.Port}
		copy(sa.Addr[:], addr.IP.To4())
		if err := unix.Connect(fd, sa); err != nil {
			unix.Close(fd)
			s.close()
			return err
		}
		e.fd = fd
	}
	return nil
}

func (s *sender) close() {
	for _, e := range s.exps {
		if e.fd > 0 {
			unix.Close(e.fd)
			e.fd = 0
		}
	}
}

// prime sends each exporter's leading template messages (not paced, not
// counted) so that the collector knows the templates before data arrives:
// goflow2 decodes messages on several goroutines, and a data message
// racing the template message it follows is dropped for want of a
// template.
func (s *sender) prime() error {
	for _, e := range s.exps {
		for e.next < len(e.copy) && e.in.flows[e.next] == 0 {
			m := e.copy[e.next]
			binary.BigEndian.PutUint32(m[e.in.seqOff:], e.in.seqAt(e.next, e.pass))
			if _, err := unix.Write(e.fd, m); err != nil {
				return err
			}
			e.next++
		}
	}
	return nil
}

// run sends for d at rate records/s in all, pacing each message at the
// time its records are due (busy-waiting the last 100 µs, so the sender
// does not burst past a small socket buffer). The calling goroutine's
// thread is locked for the duration.
func (s *sender) run(rate float64, d time.Duration) (sendResult, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var (
		hdrs [maxBatch]mmsghdr
		iovs [maxBatch]unix.Iovec
		res  sendResult
		due  float64 // records due before the next message, in seconds
		turn int     // the exporter whose batch is next
	)
	start := time.Now()
	end := start.Add(d)
	for {
		now := time.Now()
		if !now.Before(end) {
			break
		}
		el := now.Sub(start).Seconds()
		e := s.exps[turn]
		n := 0
		for n < maxBatch && due <= el {
			m := e.copy[e.next]
			binary.BigEndian.PutUint32(m[e.in.seqOff:], e.in.seqAt(e.next, e.pass))
			iovs[n].Base = &m[0]
			iovs[n].SetLen(len(m))
			hdrs[n] = mmsghdr{}
			hdrs[n].hdr.Iov = &iovs[n]
			hdrs[n].hdr.SetIovlen(1)
			res.records += e.in.flows[e.next]
			due = float64(res.records) / rate
			if e.next++; e.next == len(e.copy) {
				e.next = 0
				e.pass++
			}
			n++
		}
		if n == 0 {
			if wait := time.Duration((due - el) * 1e9); wait > 150*time.Microsecond {
				time.Sleep(wait - 100*time.Microsecond)
			}
			continue
		}
		turn = (turn + 1) % len(s.exps)
		for off := 0; off < n; {
			r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(e.fd), uintptr(unsafe.Pointer(&hdrs[off])), uintptr(n-off), 0, 0, 0)
			if errno != 0 {
				if errno == unix.EINTR || errno == unix.EAGAIN {
					continue
				}
				// Count the datagram as sent (its records were offered)
				// and move on: a refused datagram is a loss the
				// collector's output shows.
				res.errs++
				off++
				continue
			}
			off += int(r)
		}
		res.msgs += n
		runtime.KeepAlive(e.copy)
	}
	res.elapsed = time.Since(start)
	if res.errs > 0 {
		return res, fmt.Errorf("%d datagrams refused by the kernel", res.errs)
	}
	return res, nil
}

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

// sender replays an input to one UDP address at a fixed rate in records/s.
type sender struct {
	in   *input
	copy [][]byte // private copies: the sequence numbers are rewritten
	pass uint32   // passes over the input so far (sequence numbers go on)
	next int      // next message
	fd   int      // dial's socket
}

func newSender(in *input) *sender {
	s := &sender{in: in}
	for _, m := range in.msgs {
		s.copy = append(s.copy, append([]byte(nil), m...))
	}
	return s
}

// reset starts the stream over: a fresh collector sees templates first and
// sequence numbers from 0.
func (s *sender) reset() { s.pass, s.next = 0, 0 }

// dial opens the sending socket, connected to addr: one source port for
// the whole run (goflow2 keys its templates by address and port).
func (s *sender) dial(addr *net.UDPAddr) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
	sa := &unix.SockaddrInet4{Port: addr.Port}
	copy(sa.Addr[:], addr.IP.To4())
	if err := unix.Connect(fd, sa); err != nil {
		unix.Close(fd)
		return err
	}
	s.fd = fd
	return nil
}

func (s *sender) close() {
	if s.fd > 0 {
		unix.Close(s.fd)
		s.fd = 0
	}
}

// prime sends the leading template messages (not paced, not counted) so
// that the collector knows the templates before data arrives: goflow2
// decodes messages on two goroutines, and a data message racing the
// template message it follows is dropped for want of a template.
func (s *sender) prime() error {
	for s.next < len(s.copy) && s.in.flows[s.next] == 0 {
		m := s.copy[s.next]
		binary.BigEndian.PutUint32(m[s.in.seqOff:], s.in.seqAt(s.next, s.pass))
		if _, err := unix.Write(s.fd, m); err != nil {
			return err
		}
		s.next++
	}
	return nil
}

// run sends on the dialled socket for d at rate records/s, pacing each message at the
// time its records are due (busy-waiting the last 100 µs, so the sender
// does not burst past a small socket buffer). The calling goroutine's
// thread is locked for the duration.
func (s *sender) run(rate float64, d time.Duration) (sendResult, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	fd := s.fd
	var (
		hdrs [maxBatch]mmsghdr
		iovs [maxBatch]unix.Iovec
		res  sendResult
		due  float64 // records due before the next message, in seconds
	)
	start := time.Now()
	end := start.Add(d)
	for {
		now := time.Now()
		if !now.Before(end) {
			break
		}
		el := now.Sub(start).Seconds()
		n := 0
		for n < maxBatch && due <= el {
			m := s.copy[s.next]
			binary.BigEndian.PutUint32(m[s.in.seqOff:], s.in.seqAt(s.next, s.pass))
			iovs[n].Base = &m[0]
			iovs[n].SetLen(len(m))
			hdrs[n] = mmsghdr{}
			hdrs[n].hdr.Iov = &iovs[n]
			hdrs[n].hdr.SetIovlen(1)
			res.records += s.in.flows[s.next]
			due = float64(res.records) / rate
			if s.next++; s.next == len(s.copy) {
				s.next = 0
				s.pass++
			}
			n++
		}
		if n == 0 {
			if wait := time.Duration((due - el) * 1e9); wait > 150*time.Microsecond {
				time.Sleep(wait - 100*time.Microsecond)
			}
			continue
		}
		for off := 0; off < n; {
			r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&hdrs[off])), uintptr(n-off), 0, 0, 0)
			if e != 0 {
				if e == unix.EINTR || e == unix.EAGAIN {
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
		runtime.KeepAlive(s.copy)
	}
	res.elapsed = time.Since(start)
	if res.errs > 0 {
		return res, fmt.Errorf("%d datagrams refused by the kernel", res.errs)
	}
	return res, nil
}

package flowcheck

import (
	"net"
	"sync"

	"golang.org/x/sys/unix"
)

// Collector keeps every datagram that arrives on a UDP socket, and hands
// each to an optional callback as it comes.
type Collector struct {
	conn *net.UDPConn
	mu   sync.Mutex
	msgs [][]byte
	done chan struct{}
}

// Collect starts reading conn. onMsg, when not nil, is called for every
// datagram from the reading goroutine. The socket buffer is forced to
// 32 MiB (past rmem_max, when root) so that a burst of export at shutdown is
// not lost here and blamed on the exporter.
func Collect(conn *net.UDPConn, onMsg func([]byte)) *Collector {
	c := &Collector{conn: conn, done: make(chan struct{})}
	forced := false
	if rc, err := conn.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) {
			forced = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 32<<20) == nil
		})
	}
	if !forced {
		conn.SetReadBuffer(32 << 20)
	}
	go func() {
		defer close(c.done)
		buf := make([]byte, 65536)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			m := append([]byte(nil), buf[:n]...)
			c.mu.Lock()
			c.msgs = append(c.msgs, m)
			c.mu.Unlock()
			if onMsg != nil {
				onMsg(m)
			}
		}
	}()
	return c
}

// Port is the UDP port the collector listens on.
func (c *Collector) Port() int { return c.conn.LocalAddr().(*net.UDPAddr).Port }

// URL is the collector's address as a probe flag value.
func (c *Collector) URL() string { return "udp://" + c.conn.LocalAddr().String() }

// Stop closes the socket and returns every datagram received.
func (c *Collector) Stop() [][]byte {
	c.conn.Close()
	<-c.done
	return c.msgs
}

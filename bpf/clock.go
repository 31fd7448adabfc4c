package bpf

import (
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Clock converts the datapath's CLOCK_MONOTONIC stamps (first/last seen,
// sample times) to Unix time. The offset is re-read by every Now, so a
// stepped wall clock is followed. Safe for concurrent use.
type Clock struct{ off atomic.Int64 }

// NewClock returns a Clock with its offset read.
func NewClock() *Clock {
	c := &Clock{}
	c.Now()
	return c
}

// Now returns CLOCK_MONOTONIC in ns and refreshes the offset.
func (c *Clock) Now() uint64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	mono := uint64(ts.Nano())
	c.off.Store(time.Now().UnixNano() - int64(mono))
	return mono
}

// Offset converts: unix ns = monotonic ns + Offset().
func (c *Clock) Offset() int64 { return c.off.Load() }

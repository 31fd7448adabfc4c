// Package ratelimit keeps an event that repeats (a failed send, a refused
// handshake, a drop) to one log line per interval: the first is logged at
// once, the next when the interval has passed, with how many were held
// back in between.
package ratelimit

import (
	"sync"
	"time"
)

// Limiter lets one event through per interval and counts the rest. It is
// safe for concurrent use.
type Limiter struct {
	every time.Duration

	mu         sync.Mutex
	last       time.Time // when the last event was let through; zero: none yet
	suppressed int       // events held back since
}

// Every returns a Limiter that lets one event through per d.
func Every(d time.Duration) *Limiter { return &Limiter{every: d} }

// Allow tells whether an event at now is let through (the first one, then
// the first at least the interval after the last one let through) and, if
// so, how many were held back since the last one let through.
func (l *Limiter) Allow(now time.Time) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		l.suppressed++
		return false, 0
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	return true, n
}

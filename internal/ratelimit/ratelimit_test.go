package ratelimit

import (
	"sync"
	"testing"
	"time"
)

func TestAllow(t *testing.T) {
	l := Every(10 * time.Second)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i, step := range []struct {
		at         time.Duration
		ok         bool
		suppressed int
	}{
		{0, true, 0}, // the first, at once
		{time.Second, false, 0},
		{9 * time.Second, false, 0},
		{10 * time.Second, true, 2}, // the interval passed: with the two held back
		{15 * time.Second, false, 0},
		{30 * time.Second, true, 1}, // measured from the last one let through
		{41 * time.Second, true, 0},
	} {
		ok, n := l.Allow(t0.Add(step.at))
		if ok != step.ok || n != step.suppressed {
			t.Errorf("step %d at +%v: got (%v, %d), want (%v, %d)", i, step.at, ok, n, step.ok, step.suppressed)
		}
	}
}

// TestConcurrent: of events from many goroutines inside one interval
// exactly one is let through, and every other one is counted once.
func TestConcurrent(t *testing.T) {
	l := Every(time.Hour)
	now := time.Now()
	const goroutines, each = 8, 1000
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if ok, _ := l.Allow(now); ok {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if allowed != 1 {
		t.Fatalf("%d let through, want 1", allowed)
	}
	if ok, n := l.Allow(now.Add(time.Hour)); !ok || n != goroutines*each-1 {
		t.Fatalf("after the interval: (%v, %d), want (true, %d)", ok, n, goroutines*each-1)
	}
}

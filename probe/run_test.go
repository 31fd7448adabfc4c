package main

import (
	"io"
	"log/slog"
	"testing"
	"time"
)

// Under kernel table pressure the drain interval halves (not below 50 ms),
// and relaxes back to the configured value once the pressure is gone.
func TestDrainIntervalFollowsPressure(t *testing.T) {
	p := &pipeline{log: slog.New(slog.NewTextHandler(io.Discard, nil)), max: 1000}
	conf := time.Second
	steps := []struct {
		drained int
		want    time.Duration
	}{
		{100, time.Second},
		{800, 500 * time.Millisecond},
		{900, 250 * time.Millisecond},
		{900, 125 * time.Millisecond},
		{900, 62500 * time.Microsecond},
		{900, 50 * time.Millisecond},
		{600, 50 * time.Millisecond}, // between 1/4 and 3/4: hold
		{100, 100 * time.Millisecond},
		{100, 200 * time.Millisecond},
		{0, 400 * time.Millisecond},
		{0, 800 * time.Millisecond},
		{0, time.Second},
		{0, time.Second},
	}
	cur := conf
	for i, s := range steps {
		p.lastDrain = s.drained
		cur = p.nextInterval(cur, conf)
		if cur != s.want {
			t.Fatalf("step %d (%d flows drained): interval %v, want %v", i, s.drained, cur, s.want)
		}
	}
	if p.pressure != 5 {
		t.Errorf("pressure ticks %d, want 5", p.pressure)
	}
}

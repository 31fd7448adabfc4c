package benchstat

import (
	"runtime"
	"slices"
	"testing"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		xs   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		in := slices.Clone(tc.xs)
		if got := Median(tc.xs); got != tc.want {
			t.Errorf("Median(%v) = %v, want %v", tc.xs, got, tc.want)
		}
		if !slices.Equal(in, tc.xs) {
			t.Errorf("Median reordered its input: %v", tc.xs)
		}
	}
}

func TestMachine(t *testing.T) {
	if KernelRelease() == "" {
		t.Error("no kernel release from /proc")
	}
	if n := NumCPU(); n < 1 {
		t.Errorf("NumCPU = %d", n)
	}
	if m := CPUModel(); runtime.GOARCH == "amd64" && m == "" {
		t.Error("no CPU model name in /proc/cpuinfo")
	}
}

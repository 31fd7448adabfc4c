// Package benchstat is what the benchmark programs (peerbench,
// collectorbench) and the deploy measurement share to summarise runs and
// name the machine they ran on.
package benchstat

import (
	"os"
	"slices"
	"strings"
)

// Median of xs; 0 for none. xs is not reordered.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// KernelRelease is the running kernel's release ("6.12.48+deb13-amd64");
// "" if /proc does not tell.
func KernelRelease() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// NumCPU is the number of CPUs online (the cpuN lines of /proc/stat),
// whatever this process's affinity mask (runtime.NumCPU counts only
// those); 0 if /proc does not tell.
func NumCPU() int {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	n := 0
	for l := range strings.SplitSeq(string(b), "\n") {
		if strings.HasPrefix(l, "cpu") && !strings.HasPrefix(l, "cpu ") {
			n++
		}
	}
	return n
}

// CPUModel is the first "model name" of /proc/cpuinfo ("AMD EPYC"), so
// that a report says which machine its ratios hold on; "" if it has none
// (not every architecture writes one).
func CPUModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

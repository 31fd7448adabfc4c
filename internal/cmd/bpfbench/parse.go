package main

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// round is what one test process reported: each benchmark row's metrics
// by unit ("ns/pkt", "lost/sample"), rows in the order they ran, and the
// rows that failed.
type round struct {
	order   []string
	metrics map[string]map[string]float64
	failed  []string
}

// parseRound reads `go test -bench` output. procs is the -test.cpu the
// binary ran with: Go appends "-<procs>" to every row name when it is not
// 1, and a row's own name may end in digits (ipv4-udp-8928), so only that
// exact suffix is removed.
func parseRound(r io.Reader, procs int) (*round, error) {
	rd := &round{metrics: map[string]map[string]float64{}}
	suffix := ""
	if procs != 1 {
		suffix = "-" + strconv.Itoa(procs)
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		// A failing row's FAIL line may follow its name on the same line
		// (the name is printed before the row runs).
		if _, after, ok := strings.Cut(line, "--- FAIL: Benchmark"); ok {
			name, _, _ := strings.Cut(after, " ")
			rd.failed = append(rd.failed, strings.TrimSuffix(name, suffix))
			continue
		}
		name, ok := strings.CutPrefix(line, "Benchmark")
		if !ok {
			continue
		}
		f := strings.Fields(name)
		// name, iterations, then value-unit pairs; a row that only logs
		// (no iterations) is not a result.
		if len(f) < 4 || len(f)%2 != 0 {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue
		}
		row := strings.TrimSuffix(f[0], suffix)
		m := map[string]float64{}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("row %s: value %q: %w", row, f[i], err)
			}
			m[f[i+1]] = v
		}
		if _, seen := rd.metrics[row]; !seen {
			rd.order = append(rd.order, row)
		}
		rd.metrics[row] = m
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read benchmark output: %w", err)
	}
	return rd, nil
}

// ns is a row's ns/pkt in this round.
func (rd *round) ns(row string) (float64, bool) {
	v, ok := rd.metrics[row][unitNsPkt]
	return v, ok
}

const unitNsPkt = "ns/pkt"

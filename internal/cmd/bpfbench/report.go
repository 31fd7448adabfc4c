package main

import (
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
)

// num prints a figure in ns: whole numbers as such (the kernel reports
// whole ns per run), halves from an even number of rounds with a decimal.
// Negative figures (a row below the one it is compared with) take a
// minus sign, which reads apart from the range's "..".
func num(x float64) string {
	s := fmt.Sprintf("%.1f", x)
	if x == math.Trunc(x) {
		s = fmt.Sprintf("%.0f", x)
	}
	return strings.Replace(s, "-", "−", 1)
}

// signed is num with a "+" on positive figures: a difference.
func signed(x float64) string {
	if x > 0 {
		return "+" + num(x)
	}
	return num(x)
}

// withRange is "median (min..max)", or the median alone when they agree.
func withRange(s spread, f func(float64) string) string {
	if s.lo == s.hi {
		return f(s.med)
	}
	return fmt.Sprintf("%s (%s..%s)", f(s.med), f(s.lo), f(s.hi))
}

// report is what the table says about its run besides the rows.
type report struct {
	floor    string
	rounds   int
	machine  string // kernel, CPUs, model
	loadFrom string // /proc/loadavg before the first round
	loadTo   string // and after the last
	measured string // the commit, or the test binary given
	command  string
	failed   []string // rows that failed in some round
}

// writeTable prints the markdown: how it was made, then one line a row.
func writeTable(w io.Writer, rows []rowStats, rep report) {
	fmt.Fprintf(w, "Measured: %s. Machine: %s; load average %s before, %s after.\n\n", rep.measured, rep.machine, rep.loadFrom, rep.loadTo)
	fmt.Fprintf(w, "```sh\n%s\n```\n\n", rep.command)
	fmt.Fprintf(w, "%d round(s), each one process running every row in turn. Every difference and ratio is taken within a round (the floor, `%s`, and the row compared with, of the same process), then the median over the rounds, with the least and greatest.\n\n", rep.rounds, rep.floor)
	fmt.Fprintln(w, "| benchmark | ns/pkt | above the floor | × floor | compared with | over it (per level) | other |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, r := range rows {
		ratio := fmt.Sprintf("%.2fx", r.ratio.med)
		if r.ratio.lo != r.ratio.hi {
			ratio = fmt.Sprintf("%.2fx (%.2f..%.2f)", r.ratio.med, r.ratio.lo, r.ratio.hi)
		}
		above := withRange(r.above, num)
		if r.name == rep.floor {
			above, ratio = "–", "1x"
		}
		cmp, over := "", ""
		if r.hasBase && r.over.n > 0 {
			cmp = "`" + r.base.row + "`"
			switch r.base.levels {
			case 0:
				cmp += ", outer view"
			case 1:
			default:
				cmp += fmt.Sprintf(", %d levels", r.base.levels)
			}
			over = withRange(r.over, signed)
		}
		var other []string
		for _, unit := range slices.Sorted(maps.Keys(r.others)) {
			other = append(other, fmt.Sprintf("%g %s", r.others[unit], unit))
		}
		n := ""
		if r.ns.n != rep.rounds {
			n = fmt.Sprintf(" (%d of %d rounds)", r.ns.n, rep.rounds)
		}
		fmt.Fprintf(w, "| `%s`%s | %s | %s | %s | %s | %s | %s |\n", r.name, n, num(r.ns.med), above, ratio, cmp, over, strings.Join(other, ", "))
	}
	if len(rep.failed) > 0 {
		fmt.Fprintf(w, "\nFailed (left out of the rounds they failed in): %s\n", strings.Join(rep.failed, ", "))
	}
}

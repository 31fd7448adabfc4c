package rotate

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// lines reads every file of dir in name order (finished files, then the
// live one) and returns all lines.
func lines(t *testing.T, dir string) (all []string, files int) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	names := []string{}
	for _, e := range ents {
		names = append(names, e.Name())
	}
	// Finished files sort by their time suffix; the live one ("out") last.
	slices.SortFunc(names, func(a, b string) int {
		if a == "out" {
			return 1
		}
		if b == "out" {
			return -1
		}
		return strings.Compare(a, b)
	})
	for _, n := range names {
		b, _ := os.ReadFile(filepath.Join(dir, n))
		if len(b) > 0 && b[len(b)-1] != '\n' {
			t.Errorf("%s ends mid-line", n)
		}
		for _, l := range bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n")) {
			if len(l) > 0 {
				all = append(all, string(l))
			}
		}
	}
	return all, len(names)
}

func TestRotate(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cfg       Config
		step      time.Duration
		wantFiles int
	}{
		{"no rotation", Config{}, time.Second, 1},
		{"by size", Config{MaxBytes: 1000}, 0, 10}, // 100 lines of ~100 bytes
		{"by age", Config{MaxAge: 10 * time.Second}, time.Second, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.cfg.Path = filepath.Join(dir, "out")
			clock := time.Date(2026, 11, 24, 22, 0, 0, 0, time.UTC)
			w := &Writer{cfg: tc.cfg, now: func() time.Time { return clock }}
			if err := w.open(); err != nil {
				t.Fatal(err)
			}
			var want []string
			for i := range 100 {
				l := fmt.Sprintf(`{"n":%d,"pad":"%s"}`, i, strings.Repeat("x", 80))
				want = append(want, l)
				if _, err := w.Write([]byte(l + "\n")); err != nil {
					t.Fatal(err)
				}
				clock = clock.Add(tc.step)
				if i%7 == 0 {
					w.Flush()
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			got, files := lines(t, dir)
			if !slices.Equal(got, want) {
				t.Errorf("lines differ: %d of %d", len(got), len(want))
			}
			if files != tc.wantFiles || w.Rotations() != tc.wantFiles-1 {
				t.Errorf("%d files, %d rotations; want %d files", files, w.Rotations(), tc.wantFiles)
			}
		})
	}
}

func TestOpenError(t *testing.T) {
	if _, err := Open(Config{Path: "/nonexistent/dir/out"}); err == nil || !strings.Contains(err.Error(), "--out") {
		t.Errorf("error %v", err)
	}
}

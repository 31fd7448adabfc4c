// Package rotate writes the collector's JSON lines file and rotates it by
// size or age: the finished file is renamed after the time it was begun
// (FILE.20261124T220501Z), and a new FILE is started. "-" is stdout, which
// never rotates.
package rotate

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// Config says where to write and when to rotate (0: never).
type Config struct {
	Path     string
	MaxBytes int64
	MaxAge   time.Duration
}

// Writer is safe for concurrent use; each Write must hold whole lines, so
// that a rotation never splits one.
type Writer struct {
	cfg Config
	now func() time.Time

	mu      sync.Mutex
	f       *os.File
	w       *bufio.Writer
	size    int64
	begun   time.Time
	rotated int
}

// Open opens (appending to) cfg.Path.
func Open(cfg Config) (*Writer, error) {
	w := &Writer{cfg: cfg, now: time.Now}
	if cfg.Path == "-" {
		w.f, w.w = os.Stdout, bufio.NewWriterSize(os.Stdout, 256<<10)
		return w, nil
	}
	return w, w.open()
}

func (w *Writer) open() error {
	f, err := os.OpenFile(w.cfg.Path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("--out: %w", err)
	}
	w.f, w.w, w.size, w.begun = f, bufio.NewWriterSize(f, 256<<10), st.Size(), w.now()
	return nil
}

// Write appends whole lines, rotating first when they would pass the size
// limit or the file is old enough.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.maybeRotate(int64(len(p))); err != nil {
		return 0, err
	}
	n, err := w.w.Write(p)
	w.size += int64(n)
	return n, err
}

func (w *Writer) maybeRotate(adding int64) error {
	if w.cfg.Path == "-" || w.size == 0 {
		return nil
	}
	bySize := w.cfg.MaxBytes > 0 && w.size+adding > w.cfg.MaxBytes
	byAge := w.cfg.MaxAge > 0 && w.now().Sub(w.begun) >= w.cfg.MaxAge
	if !bySize && !byAge {
		return nil
	}
	if err := errors.Join(w.w.Flush(), w.f.Close()); err != nil {
		return fmt.Errorf("--out rotate: %w", err)
	}
	name := w.cfg.Path + "." + w.begun.UTC().Format("20060102T150405Z")
	for i := 1; ; i++ {
		if _, err := os.Stat(name); errors.Is(err, os.ErrNotExist) {
			break
		}
		name = fmt.Sprintf("%s.%s.%d", w.cfg.Path, w.begun.UTC().Format("20060102T150405Z"), i)
	}
	if err := os.Rename(w.cfg.Path, name); err != nil {
		return fmt.Errorf("--out rotate: %w", err)
	}
	w.rotated++
	return w.open()
}

// Flush writes buffered lines out, and rotates a file that has grown old
// while quiet.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.w.Flush(); err != nil {
		return err
	}
	return w.maybeRotate(0)
}

// Rotations is how many files were finished.
func (w *Writer) Rotations() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.rotated
}

// Close flushes and closes the file.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	err := w.w.Flush()
	if w.f != os.Stdout {
		err = errors.Join(err, w.f.Close())
	}
	return err
}

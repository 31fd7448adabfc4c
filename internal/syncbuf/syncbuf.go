// Package syncbuf is a byte buffer one side writes (a child process's
// output, a logger) while another reads it.
package syncbuf

import (
	"bytes"
	"sync"
)

// Buffer collects what a process or a goroutine writes while others read
// it. The zero value is ready to use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

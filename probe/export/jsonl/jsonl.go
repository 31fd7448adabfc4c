// Package jsonl exports flow records as JSON lines (--stdout), with the
// field names of schemas/FIELDS.md.
package jsonl

import (
	"bufio"
	"encoding/json"
	"io"

	"github.com/xdpflow/xdpflow/schemas"
)

// Writer writes each flow as one JSON line.
type Writer struct {
	w    *bufio.Writer
	enc  *json.Encoder
	name string
}

// New returns a Writer to w, named name in logs and metrics.
func New(w io.Writer, name string) *Writer {
	bw := bufio.NewWriterSize(w, 64<<10)
	return &Writer{w: bw, enc: json.NewEncoder(bw), name: name}
}

// Export writes the batch and flushes it, so a reader sees whole ticks.
func (j *Writer) Export(flows []schemas.Flow) error {
	for i := range flows {
		if err := j.enc.Encode(&flows[i]); err != nil {
			return err
		}
	}
	return j.w.Flush()
}

func (j *Writer) Flush() error   { return j.w.Flush() }
func (j *Writer) Close() error   { return j.w.Flush() }
func (j *Writer) String() string { return j.name }

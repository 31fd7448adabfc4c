package main

import (
	"bufio"
	"encoding/json"
	"io"

	"github.com/xdpflow/xdpflow/schemas"
)

// jsonLines writes each flow as one JSON line (--stdout).
type jsonLines struct {
	w   *bufio.Writer
	enc *json.Encoder
}

func newJSONLines(w io.Writer) *jsonLines {
	bw := bufio.NewWriterSize(w, 64<<10)
	return &jsonLines{w: bw, enc: json.NewEncoder(bw)}
}

func (j *jsonLines) Export(flows []schemas.Flow) error {
	for i := range flows {
		if err := j.enc.Encode(&flows[i]); err != nil {
			return err
		}
	}
	return j.w.Flush()
}

func (j *jsonLines) Flush() error   { return j.w.Flush() }
func (j *jsonLines) Close() error   { return j.w.Flush() }
func (j *jsonLines) String() string { return "stdout" }

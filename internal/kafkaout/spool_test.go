package kafkaout

import (
	"fmt"
	"os"
	"slices"
	"testing"
)

func msgs(from, n int) []Message {
	out := make([]Message, n)
	for i := range out {
		out[i] = Message{Topic: "t", Key: fmt.Appendf(nil, "k%d", (from+i)%7), Value: fmt.Appendf(nil, "v%d", from+i)}
	}
	return out
}

// readAll delivers the spool head to tail as the sender does.
func readAll(t *testing.T, s *spool) (vals []string, corrupt bool) {
	t.Helper()
	for {
		id, ok, err := s.head()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return vals, corrupt
		}
		ms, bad, err := readSegment(s.path(id))
		if err != nil {
			t.Fatal(err)
		}
		corrupt = corrupt || bad
		for _, m := range ms {
			vals = append(vals, string(m.Value))
		}
		if err := s.remove(id); err != nil {
			t.Fatal(err)
		}
	}
}

func values(ms ...[]Message) (out []string) {
	for _, m := range ms {
		for i := range m {
			out = append(out, string(m[i].Value))
		}
	}
	return out
}

func TestSpoolOrderAcrossSegmentsAndReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := openSpool(dir, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 100<<10)
	first := msgs(0, 100)
	for i := range first {
		first[i].Value = append(slices.Clone(first[i].Value), big...) // several segments
	}
	if n, err := s.append(first); n != len(first) || err != nil {
		t.Fatalf("append: %d, %v", n, err)
	}
	second := msgs(100, 50)
	s.append(second)
	head := msgs(1000, 10) // undelivered at shutdown: older than all
	if n, err := s.prepend(head); n != 10 || err != nil {
		t.Fatalf("prepend: %d, %v", n, err)
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	if len(s.segs) < 4 {
		t.Fatalf("%d segments, want several", len(s.segs))
	}

	r, err := openSpool(dir, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if r.bytes != s.bytes {
		t.Errorf("reopened spool is %d bytes, was %d", r.bytes, s.bytes)
	}
	got, corrupt := readAll(t, r)
	want := values(head, first, second)
	for i := range want {
		want[i] = want[i][:min(len(want[i]), 8)]
	}
	for i := range got {
		got[i] = got[i][:min(len(got[i]), 8)]
	}
	if corrupt || !slices.Equal(got, want) {
		t.Errorf("corrupt %v; order:\n got %v\nwant %v", corrupt, got, want)
	}
	if !r.empty() || r.bytes != 0 {
		t.Errorf("spool not empty after reading: %d bytes", r.bytes)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("%d files left", len(ents))
	}
}

func TestSpoolTornTail(t *testing.T) {
	dir := t.TempDir()
	s, _ := openSpool(dir, 1<<30)
	s.append(msgs(0, 10))
	s.close()
	path := s.path(s.segs[0])
	b, _ := os.ReadFile(path)
	for _, cut := range []int{1, 5, 9} { // a crash mid-record
		os.WriteFile(path, b[:len(b)-cut], 0o600)
		ms, corrupt, err := readSegment(path)
		if err != nil || !corrupt || len(ms) != 9 {
			t.Errorf("cut %d: %d messages, corrupt %v, err %v; want the 9 whole ones", cut, len(ms), corrupt, err)
		}
	}
	flipped := slices.Clone(b)
	flipped[len(flipped)-1] ^= 0xff
	os.WriteFile(path, flipped, 0o600)
	if ms, corrupt, _ := readSegment(path); !corrupt || len(ms) != 9 {
		t.Errorf("bit flip: %d messages, corrupt %v", len(ms), corrupt)
	}
	os.WriteFile(path, []byte("not a spool"), 0o600)
	if ms, corrupt, _ := readSegment(path); !corrupt || len(ms) != 0 {
		t.Errorf("foreign file: %d messages, corrupt %v", len(ms), corrupt)
	}
}

func TestSpoolLimit(t *testing.T) {
	s, _ := openSpool(t.TempDir(), segmentBytes)
	ms := msgs(0, 300000)
	n, err := s.append(ms)
	if err != nil || n == 0 || n == len(ms) {
		t.Fatalf("append %d of %d, %v", n, len(ms), err)
	}
	if s.bytes > segmentBytes {
		t.Errorf("spool %d bytes over its %d limit", s.bytes, segmentBytes)
	}
	if m, _ := s.prepend(msgs(0, 10)); m != 0 {
		t.Errorf("prepend wrote %d into a full spool", m)
	}
}

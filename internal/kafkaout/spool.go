package kafkaout

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// The spool is a directory of segment files, oldest first by name. New
// messages go to the tail segment; the sender reads whole sealed segments
// from the head and deletes each once every message in it is delivered.
// A crash replays the segment being delivered from its start (at-least-once).
//
// Segment: magic, then records of
//
//	u32 body length | u32 CRC-32C of body | body
//	body: u16 topic length | topic | u32 key length | key | value
//
// A torn or corrupt record (a crash mid-write) ends the segment's reading;
// what follows it is counted as lost.
const (
	segmentMagic = "XDPFSPL1"
	segmentBytes = 4 << 20 // a tail segment is sealed at this size
	segmentExt   = ".spool"
	recordHeader = 8
	// Names count down from here for segments put before the head (the
	// unsent messages at shutdown) and up for new tails.
	firstSegment = uint64(1) << 62
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type spool struct {
	dir      string
	maxBytes int64
	segs     []uint64 // sealed segments, oldest first
	sizes    map[uint64]int64
	bytes    int64 // all segments, tail included

	tail     *os.File
	tailID   uint64
	tailW    *bufio.Writer
	tailSize int64
	tailMsgs int
}

func openSpool(dir string, maxBytes int64) (*spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("--kafka-spool-dir: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("--kafka-spool-dir: %w", err)
	}
	s := &spool{dir: dir, maxBytes: maxBytes, sizes: map[uint64]int64{}}
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), segmentExt)
		if !ok || e.IsDir() {
			continue
		}
		id, err := strconv.ParseUint(name, 16, 64)
		if err != nil {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return nil, fmt.Errorf("--kafka-spool-dir: %w", err)
		}
		s.segs = append(s.segs, id)
		s.sizes[id] = info.Size()
		s.bytes += info.Size()
	}
	slices.Sort(s.segs)
	return s, nil
}

func (s *spool) path(id uint64) string {
	return filepath.Join(s.dir, fmt.Sprintf("%016x%s", id, segmentExt))
}

// empty tells whether nothing is waiting in the spool.
func (s *spool) empty() bool { return len(s.segs) == 0 && s.tailMsgs == 0 }

func recordSize(m *Message) int64 {
	return recordHeader + 2 + int64(len(m.Topic)) + 4 + int64(len(m.Key)) + int64(len(m.Value))
}

// fits tells whether n more bytes of records fit under the size limit.
func (s *spool) fits(n int64) bool {
	extra := n
	if s.tail == nil {
		extra += int64(len(segmentMagic))
	}
	return s.bytes+extra <= s.maxBytes
}

// append writes msgs to the tail. It returns how many were written: the
// rest did not fit under the size limit, or the disk failed (err).
func (s *spool) append(msgs []Message) (int, error) {
	for i := range msgs {
		n := recordSize(&msgs[i])
		if !s.fits(n) {
			return i, nil
		}
		if s.tail == nil {
			next := firstSegment
			if len(s.segs) > 0 {
				next = max(next, s.segs[len(s.segs)-1]+1)
			}
			if err := s.openTail(next); err != nil {
				return i, err
			}
		}
		if err := writeRecord(s.tailW, &msgs[i]); err != nil {
			return i, fmt.Errorf("spool %s: %w", s.dir, err)
		}
		s.tailSize += n
		s.bytes += n
		s.tailMsgs++
		if s.tailSize >= segmentBytes {
			if err := s.seal(); err != nil {
				return i + 1, err
			}
		}
	}
	return len(msgs), nil
}

func (s *spool) openTail(id uint64) error {
	f, err := os.OpenFile(s.path(id), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	s.tail, s.tailID, s.tailW = f, id, bufio.NewWriterSize(f, 256<<10)
	s.tailSize, s.tailMsgs = int64(len(segmentMagic)), 0
	s.bytes += s.tailSize
	_, err = s.tailW.WriteString(segmentMagic)
	return err
}

func writeRecord(w *bufio.Writer, m *Message) error {
	body := make([]byte, 0, 6+len(m.Topic)+len(m.Key)+len(m.Value))
	body = binary.BigEndian.AppendUint16(body, uint16(len(m.Topic)))
	body = append(body, m.Topic...)
	body = binary.BigEndian.AppendUint32(body, uint32(len(m.Key)))
	body = append(append(body, m.Key...), m.Value...)
	var h [recordHeader]byte
	binary.BigEndian.PutUint32(h[:], uint32(len(body)))
	binary.BigEndian.PutUint32(h[4:], crc32.Checksum(body, castagnoli))
	w.Write(h[:])
	_, err := w.Write(body)
	return err
}

// flush pushes buffered records to the file (the page cache: they survive
// the process dying, not the machine).
func (s *spool) flush() error {
	if s.tailW == nil {
		return nil
	}
	return s.tailW.Flush()
}

// seal closes the tail: it becomes the newest sealed segment.
func (s *spool) seal() error {
	if s.tail == nil {
		return nil
	}
	err := errors.Join(s.tailW.Flush(), s.tail.Sync(), s.tail.Close())
	s.segs = append(s.segs, s.tailID)
	s.sizes[s.tailID] = s.tailSize
	s.tail, s.tailW, s.tailMsgs = nil, nil, 0
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	return nil
}

// room tells whether prepend can take all of msgs.
func (s *spool) room(msgs []Message) bool {
	size := int64(len(segmentMagic))
	for i := range msgs {
		size += recordSize(&msgs[i])
	}
	return s.bytes+size <= s.maxBytes
}

// prepend writes msgs as a new segment before every other: they are older
// than anything in the spool. It returns how many it wrote.
func (s *spool) prepend(msgs []Message) (int, error) {
	size, n := int64(len(segmentMagic)), 0
	for n < len(msgs) && s.bytes+size+recordSize(&msgs[n]) <= s.maxBytes {
		size += recordSize(&msgs[n])
		n++
	}
	if n == 0 {
		return 0, nil
	}
	id := firstSegment
	if len(s.segs) > 0 {
		id = s.segs[0] - 1
	}
	if s.tail != nil && s.tailID <= id {
		id = s.tailID - 1
	}
	f, err := os.OpenFile(s.path(id), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, fmt.Errorf("spool: %w", err)
	}
	w := bufio.NewWriterSize(f, 256<<10)
	w.WriteString(segmentMagic)
	for i := range msgs[:n] {
		writeRecord(w, &msgs[i])
	}
	err = errors.Join(w.Flush(), f.Sync(), f.Close())
	s.segs = slices.Insert(s.segs, 0, id)
	s.sizes[id] = size
	s.bytes += size
	if err != nil {
		return 0, fmt.Errorf("spool: %w", err)
	}
	return n, nil
}

// head returns the oldest segment to deliver, sealing the tail first when
// it is all that is left. ok is false when the spool is empty.
func (s *spool) head() (id uint64, ok bool, err error) {
	if len(s.segs) == 0 {
		if s.tailMsgs == 0 {
			return 0, false, nil
		}
		if err := s.seal(); err != nil {
			return 0, false, err
		}
	}
	return s.segs[0], true, nil
}

// remove deletes a delivered segment (the head).
func (s *spool) remove(id uint64) error {
	if i := slices.Index(s.segs, id); i >= 0 {
		s.segs = slices.Delete(s.segs, i, i+1)
	}
	s.bytes -= s.sizes[id]
	delete(s.sizes, id)
	if err := os.Remove(s.path(id)); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	return nil
}

// close seals the tail so the next start finds it.
func (s *spool) close() error { return s.seal() }

// readSegment reads every record of a sealed segment. corrupt is true
// when a bad record ended the reading early.
func readSegment(path string) (msgs []Message, corrupt bool, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, false, fmt.Errorf("spool: %w", err)
	}
	if len(b) < len(segmentMagic) || string(b[:len(segmentMagic)]) != segmentMagic {
		return nil, true, nil
	}
	b = b[len(segmentMagic):]
	for len(b) > 0 {
		m, rest, ok := parseRecord(b)
		if !ok {
			return msgs, true, nil
		}
		msgs = append(msgs, m)
		b = rest
	}
	return msgs, false, nil
}

func parseRecord(b []byte) (Message, []byte, bool) {
	if len(b) < recordHeader {
		return Message{}, nil, false
	}
	n := int(binary.BigEndian.Uint32(b))
	if n < 6 || len(b)-recordHeader < n {
		return Message{}, nil, false
	}
	body := b[recordHeader : recordHeader+n]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(b[4:]) {
		return Message{}, nil, false
	}
	tl := int(binary.BigEndian.Uint16(body))
	if 2+tl+4 > len(body) {
		return Message{}, nil, false
	}
	topic := string(body[2 : 2+tl])
	kl := int(binary.BigEndian.Uint32(body[2+tl:]))
	off := 2 + tl + 4
	if kl > len(body)-off {
		return Message{}, nil, false
	}
	return Message{Topic: topic, Key: body[off : off+kl], Value: body[off+kl:]}, b[recordHeader+n:], true
}

// Package samples takes the frame heads the datapath samples into its ring
// buffer and hands them to sinks: a pcap file (--pcap), Kafka.
//
// A sink that fails (a full disk under --pcap) is closed and gets no more
// samples: the failure is logged at once and what it would have got is
// counted (Dropped), while the other sinks and the flows go on.
package samples

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/xdpflow/xdpflow/bpf"
)

// Sink takes sampled frame heads.
type Sink interface {
	// Sample takes one sample; s.Data is only valid during the call.
	Sample(s *bpf.Sample, unixNs int64) error
	// Flush is called when the ring is idle and at the end.
	Flush() error
	Close() error
	String() string
}

// Reader drains the sample ring into its sinks.
type Reader struct {
	rd    *ringbuf.Reader
	sinks []Sink
	clock *bpf.Clock
	log   *slog.Logger

	read    atomic.Uint64 // samples read from the ring
	dropped atomic.Uint64 // sample deliveries lost to failed sinks
	failed  int           // sinks taken out after a failure
	err     error         // sink failures, for the exit status
}

// NewReader opens the ring (the datapath's Samples map) for sinks.
func NewReader(ring *ebpf.Map, sinks []Sink, clock *bpf.Clock, log *slog.Logger) (*Reader, error) {
	rd, err := ringbuf.NewReader(ring)
	if err != nil {
		return nil, fmt.Errorf("sample ring: %w", err)
	}
	return &Reader{rd: rd, sinks: sinks, clock: clock, log: log}, nil
}

// Read is the number of samples read from the ring.
func (r *Reader) Read() uint64 { return r.read.Load() }

// Dropped is the number of samples a failed sink did not get.
func (r *Reader) Dropped() uint64 { return r.dropped.Load() }

// Run reads until ctx ends, then hands the samples still in the ring to
// the sinks and closes them. It returns the first sink failure, already
// logged when it happened.
func (r *Reader) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { r.rd.Flush() })
	defer stop()
	err := r.loop()
	r.rd.Close()
	for _, k := range r.sinks {
		err = errors.Join(err, k.Close())
	}
	return errors.Join(r.err, err)
}

func (r *Reader) loop() error {
	var rec ringbuf.Record
	for {
		// The datapath wakes the reader only every 64 samples: poll for
		// the rest.
		r.rd.SetDeadline(time.Now().Add(200 * time.Millisecond))
		if err := r.rd.ReadInto(&rec); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				r.flush()
				continue
			}
			if errors.Is(err, ringbuf.ErrFlushed) || errors.Is(err, ringbuf.ErrClosed) {
				r.flush() // everything written before the stop is out
				return nil
			}
			return fmt.Errorf("sample ring: %w", err)
		}
		s, err := bpf.ParseSample(rec.RawSample)
		if err != nil {
			r.log.Warn("bad sample record", "err", err)
			continue
		}
		r.read.Add(1)
		r.dropped.Add(uint64(r.failed))
		ts := int64(s.TimeNs) + r.clock.Offset()
		for i := 0; i < len(r.sinks); i++ {
			if err := r.sinks[i].Sample(&s, ts); err != nil {
				r.fail(i, err)
				i--
			}
		}
	}
}

func (r *Reader) flush() {
	for i := 0; i < len(r.sinks); i++ {
		if err := r.sinks[i].Flush(); err != nil {
			r.fail(i, err)
			i--
		}
	}
}

// fail takes sink i out: it is closed, logged, and counted from now on.
func (r *Reader) fail(i int, err error) {
	k := r.sinks[i]
	r.log.Error("sample sink failed: it gets no more samples (flows are not affected)", "sink", k.String(), "err", err)
	r.err = errors.Join(r.err, fmt.Errorf("%s: %w", k, err), k.Close())
	r.sinks = append(r.sinks[:i], r.sinks[i+1:]...)
	r.failed++
	r.dropped.Add(1)
	if len(r.sinks) == 0 {
		r.log.Error("no sample sink left: samples are counted as dropped")
	}
}

// Pcap writes samples to a pcap file. Each record keeps the frame's
// original length, so Wireshark shows truncated captures.
type Pcap struct {
	f *os.File
	w *pcapgo.Writer
}

// NewPcap creates (truncates) the file at path.
func NewPcap(path string) (*Pcap, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(bpf.MaxSampleBytes, layers.LinkTypeEthernet); err != nil {
		f.Close()
		return nil, err
	}
	return &Pcap{f: f, w: w}, nil
}

func (p *Pcap) Sample(s *bpf.Sample, unixNs int64) error {
	ci := gopacket.CaptureInfo{
		Timestamp:      time.Unix(0, unixNs),
		CaptureLength:  len(s.Data),
		Length:         int(s.OrigLen),
		InterfaceIndex: int(s.InIf),
	}
	if err := p.w.WritePacket(ci, s.Data); err != nil {
		return fmt.Errorf("write pcap: %w", err)
	}
	return nil
}

func (p *Pcap) Flush() error   { return nil } // pcapgo writes through
func (p *Pcap) Close() error   { return p.f.Close() }
func (p *Pcap) String() string { return "pcap " + p.f.Name() }

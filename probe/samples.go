package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/xdpflow/xdpflow/bpf"
)

// sampleSink takes sampled frame heads: a pcap file, Kafka.
type sampleSink interface {
	// Sample takes one sample; s.Data is only valid during the call.
	Sample(s *bpf.Sample, unixNs int64) error
	// Flush is called when the ring is idle and at the end.
	Flush() error
	Close() error
}

// sampleReader drains the sample ring into its sinks.
type sampleReader struct {
	rd    *ringbuf.Reader
	sinks []sampleSink
	done  chan error
	n     int
}

func startSamples(d *bpf.Datapath, sinks []sampleSink, clock *wallClock, log *slog.Logger) (*sampleReader, error) {
	rd, err := ringbuf.NewReader(d.Samples)
	if err != nil {
		return nil, fmt.Errorf("sample ring: %w", err)
	}
	r := &sampleReader{rd: rd, sinks: sinks, done: make(chan error, 1)}
	go func() { r.done <- r.loop(clock, log) }()
	return r, nil
}

func (r *sampleReader) loop(clock *wallClock, log *slog.Logger) error {
	var rec ringbuf.Record
	for {
		// The datapath wakes the reader only every 64 samples: poll for
		// the rest.
		r.rd.SetDeadline(time.Now().Add(200 * time.Millisecond))
		if err := r.rd.ReadInto(&rec); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				if err := r.flush(); err != nil {
					return err
				}
				continue
			}
			if errors.Is(err, ringbuf.ErrFlushed) || errors.Is(err, ringbuf.ErrClosed) {
				return r.flush() // everything written before Close is out
			}
			return err
		}
		s, err := bpf.ParseSample(rec.RawSample)
		if err != nil {
			log.Warn("bad sample record", "err", err)
			continue
		}
		ts := int64(s.TimeNs) + clock.offset()
		for _, k := range r.sinks {
			if err := k.Sample(&s, ts); err != nil {
				return err
			}
		}
		r.n++
	}
}

func (r *sampleReader) flush() error {
	var errs []error
	for _, k := range r.sinks {
		errs = append(errs, k.Flush())
	}
	return errors.Join(errs...)
}

// Close hands the samples still in the ring to the sinks, stops reading and
// closes the sinks; it returns how many samples were read.
func (r *sampleReader) Close() (int, error) {
	r.rd.Flush()
	err := <-r.done
	r.rd.Close()
	for _, k := range r.sinks {
		err = errors.Join(err, k.Close())
	}
	return r.n, err
}

// pcapSink writes samples to a pcap file. Each record keeps the frame's
// original length, so Wireshark shows truncated captures.
type pcapSink struct {
	f *os.File
	w *pcapgo.Writer
}

func newPcapSink(path string) (*pcapSink, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--pcap: %w", err)
	}
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(bpf.MaxSampleBytes, layers.LinkTypeEthernet); err != nil {
		f.Close()
		return nil, fmt.Errorf("--pcap: %w", err)
	}
	return &pcapSink{f: f, w: w}, nil
}

func (p *pcapSink) Sample(s *bpf.Sample, unixNs int64) error {
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

func (p *pcapSink) Flush() error { return nil } // pcapgo writes through
func (p *pcapSink) Close() error { return p.f.Close() }

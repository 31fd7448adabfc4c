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

// pcapWriter drains the sample ring into a pcap file. Each record keeps
// the frame's original length, so Wireshark shows truncated captures.
type pcapWriter struct {
	rd   *ringbuf.Reader
	f    *os.File
	w    *pcapgo.Writer
	done chan error
	n    int
}

func startPcap(d *bpf.Datapath, path string, clock *wallClock, log *slog.Logger) (*pcapWriter, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--pcap: %w", err)
	}
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(bpf.MaxSampleBytes, layers.LinkTypeEthernet); err != nil {
		f.Close()
		return nil, fmt.Errorf("--pcap: %w", err)
	}
	rd, err := ringbuf.NewReader(d.Samples)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("sample ring: %w", err)
	}
	p := &pcapWriter{rd: rd, f: f, w: w, done: make(chan error, 1)}
	go func() { p.done <- p.loop(clock, log) }()
	return p, nil
}

func (p *pcapWriter) loop(clock *wallClock, log *slog.Logger) error {
	var rec ringbuf.Record
	for {
		// The datapath wakes the reader only every 64 samples: poll for
		// the rest.
		p.rd.SetDeadline(time.Now().Add(200 * time.Millisecond))
		if err := p.rd.ReadInto(&rec); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			if errors.Is(err, ringbuf.ErrFlushed) || errors.Is(err, ringbuf.ErrClosed) {
				return nil // everything written before Close is in the file
			}
			return err
		}
		s, err := bpf.ParseSample(rec.RawSample)
		if err != nil {
			log.Warn("bad sample record", "err", err)
			continue
		}
		ci := gopacket.CaptureInfo{
			Timestamp:      time.Unix(0, int64(s.TimeNs)+clock.offset()),
			CaptureLength:  len(s.Data),
			Length:         int(s.OrigLen),
			InterfaceIndex: int(s.Ifindex),
		}
		if err := p.w.WritePacket(ci, s.Data); err != nil {
			return fmt.Errorf("write pcap: %w", err)
		}
		p.n++
	}
}

// Close writes the samples still in the ring, stops reading and closes the
// file; it returns how many samples were written.
func (p *pcapWriter) Close() (int, error) {
	p.rd.Flush()
	err := <-p.done
	p.rd.Close()
	return p.n, errors.Join(err, p.f.Close())
}

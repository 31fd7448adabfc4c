package samples

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/xdpflow/xdpflow/bpf"
	"github.com/xdpflow/xdpflow/internal/testkit/trafficgen"
)

// countSink counts samples; with failAt > 0 the failAt-th sample fails.
type countSink struct {
	n, failAt, closed int
}

func (c *countSink) Sample(*bpf.Sample, int64) error {
	c.n++
	if c.n == c.failAt {
		return errors.New("disk full")
	}
	return nil
}
func (c *countSink) Flush() error   { return nil }
func (c *countSink) Close() error   { c.closed++; return nil }
func (c *countSink) String() string { return "count" }

// A sink that fails is closed once and gets nothing more; what it misses
// is counted; the other sinks get every sample; Run reports the failure.
// The datapath really samples: every frame run through the program
// (BPF_PROG_TEST_RUN) puts its head in the ring.
func TestFailingSinkDegrades(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("loads the XDP program: needs root")
	}
	d, err := bpf.Load(bpf.Config{MaxFlows: 1024, SampleRate: 1, SampleBytes: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	const frames = 50
	for i := range frames {
		f := trafficgen.Flow{Src: netip.AddrFrom4([4]byte{198, 18, 0, byte(i)}), Dst: netip.MustParseAddr("198.19.0.1"),
			Proto: layers.IPProtocolUDP, SrcPort: 1000, DstPort: 53, Packets: 1}
		b, _, err := f.Frame(net.HardwareAddr{2, 0, 0, 0, 0, 1}, net.HardwareAddr{2, 0, 0, 0, 0, 2})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.Program.Run(&ebpf.RunOptions{Data: b}); err != nil {
			t.Fatal(err)
		}
	}
	pcapPath := filepath.Join(t.TempDir(), "heads.pcap")
	pc, err := NewPcap(pcapPath)
	if err != nil {
		t.Fatal(err)
	}
	bad, good := &countSink{failAt: 3}, &countSink{}
	r, err := NewReader(d.Samples, []Sink{bad, good, pc}, bpf.NewClock(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // read what is in the ring, then stop
	err = r.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("Run: %v, want the sink's failure", err)
	}
	if r.Read() != frames || good.n != frames {
		t.Errorf("read %d, good sink got %d, want %d each", r.Read(), good.n, frames)
	}
	if bad.n != 3 || bad.closed != 1 {
		t.Errorf("failing sink: %d samples, closed %d times; want 3 and once", bad.n, bad.closed)
	}
	if r.Dropped() != frames-2 {
		t.Errorf("dropped %d, want %d (every sample from the failed one on)", r.Dropped(), frames-2)
	}
	// The pcap sink, beside the failure, holds every head.
	f, err := os.Open(pcapPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pr, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		if _, _, err := pr.ReadPacketData(); err != nil {
			break
		}
		n++
	}
	if n != frames {
		t.Errorf("pcap holds %d samples, want %d", n, frames)
	}
}

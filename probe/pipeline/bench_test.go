package pipeline

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket/layers"

	"github.com/xdpflow/xdpflow/bpf"
	"github.com/xdpflow/xdpflow/internal/testkit/trafficgen"
	"github.com/xdpflow/xdpflow/probe/export"
	"github.com/xdpflow/xdpflow/probe/export/ipfix"
	"github.com/xdpflow/xdpflow/probe/flowstate"
	"github.com/xdpflow/xdpflow/probe/flowtable"
	"github.com/xdpflow/xdpflow/schemas"
)

// encoderOnly exports into an IPFIX encoder whose messages go nowhere: the
// CPU cost of export without a network.
type encoderOnly struct{ e *ipfix.Encoder }

func (x encoderOnly) Export(flows []schemas.Flow) error {
	for i := range flows {
		if err := x.e.Add(&flows[i]); err != nil {
			return err
		}
	}
	return x.e.Flush(time.Now())
}
func (x encoderOnly) Flush() error   { return nil }
func (x encoderOnly) Close() error   { return nil }
func (x encoderOnly) String() string { return "discard" }

// BenchmarkPipeline: one tick of the probe over a kernel table holding
// 100,000 flows: rotate, batch-drain, merge into the flow table, expire
// them all (idle), encode IPFIX. Reported as flows/s. "state" does the
// same with the crash-safe flow state (in tmpfs): read, save, clear,
// export in one-message chunks, each marked; "state-held" keeps the flows
// instead of expiring them, so each save writes all of them.
func BenchmarkPipeline(b *testing.B) {
	for _, c := range []struct {
		name         string
		state, holds bool
	}{{"memory", false, false}, {"state", true, false}, {"state-held", true, true}} {
		b.Run(c.name, func(b *testing.B) { benchTick(b, c.state, c.holds) })
	}
}

func benchTick(b *testing.B, state, holds bool) {
	const flows = 100000
	d, err := bpf.Load(bpf.Config{MaxFlows: 2 * flows})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	frames := make([][]byte, flows)
	for i := range frames {
		f := trafficgen.Flow{Src: netipAddr(198, byte(18+i>>16), byte(i>>8), byte(i)), Dst: netipAddr(198, 19, 0, 1),
			Proto: layers.IPProtocolUDP, SrcPort: uint16(i), DstPort: 53, Packets: 1}
		frames[i], _, err = f.Frame(net.HardwareAddr{2, 0, 0, 0, 0, 1}, net.HardwareAddr{2, 0, 0, 0, 0, 2})
		if err != nil {
			b.Fatal(err)
		}
	}
	cfg := Config{Table: flowtable.Config{IdleTimeout: time.Nanosecond, ActiveTimeout: time.Hour}, KernelFlows: 2 * flows}
	want := flows
	if holds {
		cfg.Table.IdleTimeout, want = time.Hour, 0
	}
	if state {
		dir, err := os.MkdirTemp("/dev/shm", "xdpflow-bench-")
		if err != nil {
			b.Fatal(err)
		}
		defer os.RemoveAll(dir)
		st, err := flowstate.Open(dir)
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		cfg.Store = st
	}
	p := New(Kernel(d, state), []export.Exporter{encoderOnly{ipfix.NewEncoder(ipfix.Config{}, func([]byte) error { return nil })}},
		bpf.NewClock(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		for _, f := range frames {
			if _, err := d.Program.Run(&ebpf.RunOptions{Data: f}); err != nil {
				b.Fatal(err)
			}
		}
		time.Sleep(time.Millisecond) // past the 1 ns idle timeout on the datapath clock
		b.StartTimer()
		if err := p.Tick(false); err != nil {
			b.Fatal(err)
		}
		if p.lastRecords != want {
			b.Fatalf("exported %d flows, want %d", p.lastRecords, want)
		}
	}
	b.ReportMetric(float64(b.N*flows)/b.Elapsed().Seconds(), "flows/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*flows), "ns/flow")
}

func netipAddr(a, b, c, d byte) netip.Addr { return netip.AddrFrom4([4]byte{a, b, c, d}) }

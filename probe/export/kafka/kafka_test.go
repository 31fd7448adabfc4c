package kafka

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/xdpflow/xdpflow/internal/kafkaout"
	"github.com/xdpflow/xdpflow/internal/testkit/flowcheck"
	"github.com/xdpflow/xdpflow/internal/testkit/kafkacheck"
	"github.com/xdpflow/xdpflow/schemas"
)

// kafkaFlowSource is a driven flow source: conversations in both
// directions over IPv4 and IPv6, TCP, UDP and ICMP.
func kafkaFlowSource(n int) []schemas.Flow {
	flows := make([]schemas.Flow, 0, n)
	for i := 0; len(flows) < n; i++ {
		a := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		b := netip.MustParseAddr("198.19.0.1")
		if i%3 == 0 {
			a = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)})
			b = netip.MustParseAddr("2001:db8::1")
		}
		f := schemas.Flow{SrcAddr: a, DstAddr: b, SrcPort: uint16(1024 + i), DstPort: 443, Proto: 6, InIf: 2, VlanId: uint16(i % 4094),
			Packets: uint64(i + 1), Bytes: uint64(60 * (i + 1)), L2Bytes: uint64(74 * (i + 1)),
			TimeFlowStartNs: time.Now().UnixNano() - 1e9, TimeFlowEndNs: time.Now().UnixNano(), TcpFlags: 0x12, IpTos: 0x10, EndReason: schemas.EndIdle}
		switch i % 5 {
		case 3:
			f.Proto, f.SrcPort, f.DstPort, f.TcpFlags = 17, 5353, 53, 0
		case 4:
			f.Proto, f.SrcPort, f.DstPort, f.TcpFlags = 1, 0, 8<<8, 0
			if f.SrcAddr.Is6() {
				f.Proto = 58
			}
		}
		r := f // the answer
		r.SrcAddr, r.DstAddr, r.SrcPort, r.DstPort = f.DstAddr, f.SrcAddr, f.DstPort, f.SrcPort
		if f.IsICMP() {
			r.SrcPort, r.DstPort = 0, 0
		}
		flows = append(flows, f, r)
	}
	return flows[:n]
}

// TestKafkaExport: flows exported through the probe's Kafka exporter, in
// every format and compression, read back by an independent client equal
// the flows exactly, and both directions of a conversation share a
// partition.
func TestKafkaExport(t *testing.T) {
	b := kafkacheck.Start(t, 6, nil, nil)
	flows := kafkaFlowSource(4000)
	want := flowcheck.Sums{}
	for i := range flows {
		want.AddRecord(&flows[i])
	}
	for _, format := range []string{"proto", "json"} {
		for _, comp := range []string{"none", "gzip", "snappy", "lz4", "zstd"} {
			t.Run(format+"/"+comp, func(t *testing.T) {
				topic := "flows-" + format + "-" + comp
				if err := b.Cluster().CreateTopic(topic, 6, nil); err != nil {
					t.Fatal(err)
				}
				cfg := kafkaConfig(b.Addr, topic)
				cfg.Format, cfg.Compression = format, comp
				p, err := kafkaout.New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
				if err != nil {
					t.Fatal(err)
				}
				f, _ := schemas.ParseFormat(format)
				x := NewFlows(p, topic, f, schemas.Meta{ProbeHost: "h", SamplingRate: 1})
				for i := 0; i < len(flows); i += 1000 {
					if err := x.Export(flows[i : i+1000]); err != nil {
						t.Fatal(err)
					}
				}
				if err := p.Close(context.Background()); err != nil {
					t.Fatal(err)
				}
				got := flowcheck.Sums{}
				partition := map[string]int32{} // conversation -> partition
				recs := b.Read(topic, len(flows), 300*time.Millisecond, 20*time.Second)
				if len(recs) != len(flows) {
					t.Errorf("%d messages for %d flows", len(recs), len(flows))
				}
				for _, r := range recs {
					var m schemas.FlowMessage
					if err := f.Unmarshal(r.Value, &m); err != nil {
						t.Fatalf("%v: %q", err, r.Value)
					}
					fl := m.Flow()
					got.AddRecord(&fl)
					conv := string(schemas.AppendKey(nil, &m))
					if p, ok := partition[conv]; ok && p != r.Partition {
						t.Errorf("the two directions of %v went to partitions %d and %d", flowcheck.IDOf(&fl), p, r.Partition)
					}
					partition[conv] = r.Partition
				}
				for _, d := range flowcheck.Diff(got, want) {
					t.Error(d)
				}
			})
		}
	}
}

func kafkaConfig(addr, topic string) kafkaout.Config {
	return kafkaout.Config{Brokers: []string{addr}, Topic: topic, Format: "proto", Compression: "none", Acks: "all",
		QueueMessages: 1 << 20, SpoolMaxBytes: 1 << 30, FlushTimeout: 10 * time.Second}
}

// BenchmarkKafkaExport: flows encoded by the probe's Kafka exporter and
// produced to an in-process broker (kfake), acknowledged; flows/s and
// allocations per flow (the whole process: producer, kafka-go and the
// broker), for each format.
func BenchmarkKafkaExport(b *testing.B) {
	const batch = 10000
	flows := kafkaFlowSource(batch)
	for _, format := range []string{"proto", "json"} {
		b.Run(format, func(b *testing.B) {
			k := kafkacheck.Start(b, 6, []string{"bench"}, nil)
			cfg := kafkaConfig(k.Addr, "bench")
			cfg.Format = format
			p, err := kafkaout.New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				b.Fatal(err)
			}
			f, _ := schemas.ParseFormat(format)
			x := NewFlows(p, "bench", f, schemas.Meta{ProbeHost: "h", SamplingRate: 1})
			var ms0, ms1 runtime.MemStats
			runtime.ReadMemStats(&ms0)
			start := time.Now()
			n := 0
			for b.Loop() {
				x.Export(flows)
				n += batch
				// Keep at most two batches queued: measure delivery, not
				// queueing.
				for p.Stats().QueueDepth > 2*batch {
					time.Sleep(time.Millisecond)
				}
			}
			p.Close(context.Background())
			elapsed := time.Since(start) // with the last batches' delivery
			runtime.ReadMemStats(&ms1)
			if st := p.Stats(); st.Sent != uint64(n) || st.Dropped != 0 {
				b.Fatalf("%+v, want %d sent", st, n)
			}
			b.ReportMetric(float64(n)/elapsed.Seconds(), "flows/s")
			b.ReportMetric(float64(elapsed.Nanoseconds())/float64(n), "ns/flow")
			b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/float64(n), "allocs/flow")
			b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/float64(n), "B/flow")
		})
	}
}

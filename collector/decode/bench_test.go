package decode

import (
	"bytes"
	"runtime"
	"testing"
	"time"

	"github.com/netsampler/goflow2/v2/decoders/netflow"
	"github.com/netsampler/goflow2/v2/decoders/netflowlegacy"
	"github.com/netsampler/goflow2/v2/producer"
	protoproducer "github.com/netsampler/goflow2/v2/producer/proto"

	"github.com/xdpflow/xdpflow/probe/export/ipfix"
	"github.com/xdpflow/xdpflow/probe/export/ipfix/ipfixtest"
	"github.com/xdpflow/xdpflow/schemas"
)

// benchInput is a stream of messages: setup (templates) once, then data
// messages decoded round robin.
type benchInput struct {
	name  string
	setup [][]byte
	data  [][]byte
}

func benchInputs(b *testing.B) []benchInput {
	now := time.Now()
	var in []benchInput
	for _, p := range []ipfix.Protocol{ipfix.IPFIX, ipfix.NetFlowV9} {
		msgs := ipfixtest.Encode(b, ipfix.Config{Protocol: p, Interfaces: map[uint32]string{1: "eth0", 2: "eth1"}}, testFlows(4096, now.Add(time.Second), 4), now)
		in = append(in, benchInput{name: "probe-" + p.String(), setup: msgs[:1], data: msgs[1:]})
	}
	in = append(in, benchInput{name: "v5-30", data: [][]byte{v5Msg(0, 100_000, 30)}})
	if findVectors() != "" {
		v5 := readVector(b, "netflow5_test_juniper_mx80.dat")
		v9 := readVector(b, "netflow9_test_iptnetflow_reduced_size_encoding_tpldata260.dat")
		in = append(in, benchInput{name: "router-v5", data: [][]byte{v5}}, benchInput{name: "router-v9", data: [][]byte{v9}})
	}
	return in
}

// BenchmarkDecode measures records/s and allocations per record of this
// package and, on the same messages, of goflow2's decoder + ProtoProducer.
func BenchmarkDecode(b *testing.B) {
	for _, in := range benchInputs(b) {
		b.Run(in.name+"/xdpflow", func(b *testing.B) {
			d := New(Config{})
			var records int
			emit := func(*schemas.FlowMessage) { records++ }
			for _, m := range in.setup {
				if err := d.Decode(testExporter, m, 1, emit); err != nil {
					b.Fatal(err)
				}
			}
			loop(b, &records, func(i int) { d.Decode(testExporter, in.data[i%len(in.data)], 1, emit) })
		})
		b.Run(in.name+"/goflow2", func(b *testing.B) {
			cfg, err := (*protoproducer.ProducerConfig)(nil).Compile()
			if err != nil {
				b.Fatal(err)
			}
			prod, err := protoproducer.CreateProtoProducer(cfg, protoproducer.CreateSamplingSystem)
			if err != nil {
				b.Fatal(err)
			}
			templates := netflow.CreateTemplateSystem()
			args := &producer.ProduceArgs{Src: testExporter, SamplerAddress: testExporter.Addr(), TimeReceived: time.Now()}
			var records int
			run := func(m []byte) {
				var msgs []producer.ProducerMessage
				if m[1] == 5 {
					var p netflowlegacy.PacketNetFlowV5
					if err := netflowlegacy.DecodeMessageVersion(bytes.NewBuffer(m), &p); err != nil {
						b.Fatal(err)
					}
					msgs, _ = prod.Produce(&p, args)
				} else {
					var v9 netflow.NFv9Packet
					var ipx netflow.IPFIXPacket
					netflow.DecodeMessageVersion(bytes.NewBuffer(m), templates, &v9, &ipx) // the router's v9 has sets without templates
					if m[1] == 9 {
						msgs, _ = prod.Produce(&v9, args)
					} else {
						msgs, _ = prod.Produce(&ipx, args)
					}
				}
				records += len(msgs)
				prod.Commit(msgs)
			}
			for _, m := range in.setup {
				run(m)
			}
			loop(b, &records, func(i int) { run(in.data[i%len(in.data)]) })
		})
	}
}

// loop runs f b.N times and reports records/s and allocations per record.
func loop(b *testing.B, records *int, f func(i int)) {
	*records = 0
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		f(i)
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	if *records == 0 {
		b.Fatal("no records")
	}
	b.ReportMetric(float64(*records)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(*records), "allocs/record")
}

// TestZeroAllocs: steady-state decoding of the probe's IPFIX and v9 and of
// v5 allocates nothing.
var raceEnabled bool // set by race_test.go

func TestZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	now := time.Now()
	for _, p := range []ipfix.Protocol{ipfix.IPFIX, ipfix.NetFlowV9} {
		msgs := ipfixtest.Encode(t, ipfix.Config{Protocol: p, Interfaces: map[uint32]string{1: "eth0"}}, testFlows(500, now.Add(time.Second), 5), now)
		d := New(Config{})
		decodeAll(t, d, testExporter, msgs, 1)
		i := 0
		if a := testing.AllocsPerRun(200, func() {
			d.Decode(testExporter, msgs[1+i%(len(msgs)-1)], 1, func(*schemas.FlowMessage) {})
			i++
		}); a != 0 {
			t.Errorf("%v: %.1f allocations per message", p, a)
		}
	}
	d, v5 := New(Config{}), v5Msg(0, 100_000, 30)
	if a := testing.AllocsPerRun(200, func() { d.Decode(testExporter, v5, 1, func(*schemas.FlowMessage) {}) }); a != 0 {
		t.Errorf("v5: %.1f allocations per message", a)
	}
}

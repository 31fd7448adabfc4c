package main

import (
	"bytes"
	"fmt"
	"net/netip"
	"runtime"
	"runtime/metrics"
	"time"

	"github.com/netsampler/goflow2/v2/decoders/netflow"
	gfjson "github.com/netsampler/goflow2/v2/format/json"
	"github.com/netsampler/goflow2/v2/producer"
	protoproducer "github.com/netsampler/goflow2/v2/producer/proto"

	"github.com/xdpflow/xdpflow/collector/decode"
	"github.com/xdpflow/xdpflow/schemas"
)

// allocResult is the in-process cost of turning the input's messages into
// JSON lines: no sockets, no file (the lines go into a reused buffer).
type allocResult struct {
	records        int
	nsPerRecord    float64
	allocsPerRec   float64
	bytesPerRecord float64
}

var benchExporter = netip.MustParseAddrPort("127.0.0.1:40000")

// measure runs fn (one pass over the input, returning its records) until
// at least d has passed, after a warm-up pass, and reads the allocation
// counters of runtime/metrics around it.
func measure(d time.Duration, fn func() int) allocResult {
	fn() // templates learnt, buffers grown
	runtime.GC()
	samples := []metrics.Sample{{Name: "/gc/heap/allocs:objects"}, {Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(samples)
	o0, b0 := samples[0].Value.Uint64(), samples[1].Value.Uint64()
	start := time.Now()
	var r allocResult
	for time.Since(start) < d {
		r.records += fn()
	}
	el := time.Since(start)
	metrics.Read(samples)
	o1, b1 := samples[0].Value.Uint64(), samples[1].Value.Uint64()
	r.nsPerRecord = float64(el.Nanoseconds()) / float64(r.records)
	r.allocsPerRec = float64(o1-o0) / float64(r.records)
	r.bytesPerRecord = float64(b1-b0) / float64(r.records)
	return r
}

// allocsXdpflow is the collector's path per message (collector/run.go's
// worker.Message and worker.add): decode.Decoder.Decode with an emit that
// appends schemas.FormatJSON and a newline to a batch, handed over (here:
// dropped) past 256 KiB.
func allocsXdpflow(in *input, d time.Duration) (allocResult, error) {
	dec := decode.New(decode.Config{MaxExporters: 10000, MaxTemplatesPerExporter: 1000})
	var lines []byte
	emit := func(m *schemas.FlowMessage) {
		lines, _ = schemas.FormatJSON.Append(lines, m)
		lines = append(lines, '\n')
	}
	s := newSender([]*input{in}).exps[0]
	var err error
	pass := func() int {
		for i, m := range s.copy {
			putSeq(in, m, i, s.pass)
			if e := dec.Decode(benchExporter, m, uint64(time.Now().UnixNano()), emit); e != nil && err == nil {
				err = e
			}
			if len(lines) > 256<<10 {
				lines = lines[:0]
			}
		}
		s.pass++
		return in.total
	}
	r := measure(d, pass)
	return r, err
}

// allocsGoflow2 is goflow2's path per message (utils.NetFlowPipe.DecodeFlow
// with the sample producer and the json format): decoders/netflow, the
// ProtoProducer, format/json, Commit; the file transport's two write calls
// per record are replaced by appends to a buffer. Not included (so a lower
// bound for the goflow2 binary): its receiver (a *net.UDPAddr and a
// Message per datagram), the Prometheus metrics wrappers, its template
// system wrapper.
func allocsGoflow2(in *input, d time.Duration) (allocResult, error) {
	pcfg, err := (*protoproducer.ProducerConfig)(nil).Compile()
	if err != nil {
		return allocResult{}, err
	}
	prod, err := protoproducer.CreateProtoProducer(pcfg, protoproducer.CreateSamplingSystem)
	if err != nil {
		return allocResult{}, err
	}
	templates := netflow.CreateTemplateSystem()
	format := &gfjson.JsonDriver{}
	var out bytes.Buffer
	s := newSender([]*input{in}).exps[0]
	var firstErr error
	pass := func() int {
		for i, m := range s.copy {
			putSeq(in, m, i, s.pass)
			args := producer.ProduceArgs{Src: benchExporter, SamplerAddress: benchExporter.Addr(), TimeReceived: time.Now().UTC()}
			var v9 netflow.NFv9Packet
			var ipx netflow.IPFIXPacket
			if err := netflow.DecodeMessageVersion(bytes.NewBuffer(m), templates, &v9, &ipx); err != nil && firstErr == nil {
				firstErr = fmt.Errorf("goflow2 decode: %w", err)
			}
			var msgs []producer.ProducerMessage
			if m[1] == 9 {
				msgs, err = prod.Produce(&v9, &args)
			} else {
				msgs, err = prod.Produce(&ipx, &args)
			}
			if err != nil && firstErr == nil {
				firstErr = err
			}
			for _, fm := range msgs {
				_, data, err := format.Format(fm)
				if err != nil && firstErr == nil {
					firstErr = err
				}
				out.Write(data)
				out.WriteByte('\n')
			}
			prod.Commit(msgs)
			if out.Len() > 256<<10 {
				out.Reset()
			}
		}
		s.pass++
		return in.total
	}
	r := measure(d, pass)
	return r, firstErr
}

func putSeq(in *input, m []byte, i int, pass uint32) {
	v := in.seqAt(i, pass)
	m[in.seqOff], m[in.seqOff+1], m[in.seqOff+2], m[in.seqOff+3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
}

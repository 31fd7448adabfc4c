// Package kafka exports flow records and header samples to Kafka as
// schemas/ messages (protobuf or JSON), through internal/kafkaout's
// producer, which owns delivery (queue, spool, retries).
package kafka

import (
	"sync"
	"time"

	"github.com/xdpflow/xdpflow/bpf"
	"github.com/xdpflow/xdpflow/internal/kafkaout"
	"github.com/xdpflow/xdpflow/probe/export"
	"github.com/xdpflow/xdpflow/schemas"
)

var (
	_ export.Exporter = (*Flows)(nil)
	_ export.Settling = (*Flows)(nil)
)

// Flows writes each flow record as one Kafka message
// (schemas.FlowMessage), keyed so both directions of a conversation share
// a partition.
type Flows struct {
	p      *kafkaout.Producer
	topic  string
	format schemas.Format
	meta   schemas.Meta
	m      schemas.FlowMessage

	// For Settled: the producer numbers every message it is given, samples
	// included; spans maps this exporter's records to those numbers.
	mu      sync.Mutex
	records uint64 // records given to Export
	settled uint64 // Settled's last answer
	spans   []span // the Export calls not wholly settled, oldest first
}

// span is one Export call: producer messages seq..seq+n-1 carry records
// rec..rec+n-1, one message per record.
type span struct{ seq, rec, n uint64 }

// NewFlows returns an exporter of flow records to topic through p.
func NewFlows(p *kafkaout.Producer, topic string, format schemas.Format, meta schemas.Meta) *Flows {
	return &Flows{p: p, topic: topic, format: format, meta: meta}
}

// Export encodes the batch into one buffer: the producer holds the
// messages until the brokers have them, and one allocation per batch
// instead of one per flow keeps the GC out of the way.
func (k *Flows) Export(flows []schemas.Flow) error {
	if len(flows) == 0 {
		return nil
	}
	now := uint64(time.Now().UnixNano())
	per := 128
	if k.format == schemas.FormatJSON {
		per = 640
	}
	buf := make([]byte, 0, len(flows)*per)
	msgs := make([]kafkaout.Message, len(flows))
	n := uint64(len(flows))
	for i := range flows {
		flows[i].ToMessage(&k.m, &k.meta, now)
		start := len(buf)
		buf = schemas.AppendKey(buf, &k.m)
		keyEnd := len(buf)
		var err error
		if buf, err = k.format.Append(buf, &k.m); err != nil {
			// Nothing of the batch is sent, and sending it again would
			// fail the same way: it is settled, there is nothing to keep.
			k.mu.Lock()
			k.records += n
			k.mu.Unlock()
			return err
		}
		// If buf grew, earlier messages keep pointing into the old array,
		// which stays valid and unchanged.
		msgs[i] = kafkaout.Message{Topic: k.topic, Key: buf[start:keyEnd:keyEnd], Value: buf[keyEnd:len(buf):len(buf)]}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	end := k.p.Send(msgs) // numbers msgs end-n..end-1, samples aside
	k.spans = append(k.spans, span{seq: end - n, rec: k.records, n: n})
	k.records += n
	return nil
}

// Settled implements export.Settling: how many of the records given to
// Export, from the first, the producer has settled (acknowledged by the
// brokers, spooled, or dropped and counted: see kafkaout's
// Producer.Settled). Samples sharing the producer count for nothing here,
// though a sample waiting in the producer's memory queue holds back the
// records sent after it. Records of an Export that failed to encode are
// never sent: they settle with the records before them.
func (k *Flows) Settled() uint64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	w := k.p.Settled() // messages before w are settled
	for len(k.spans) > 0 {
		sp := k.spans[0]
		if w < sp.seq+sp.n {
			// Every record before this span is settled (the spans before
			// it, and batches that failed to encode), and so is its part
			// before w.
			k.settled = max(k.settled, sp.rec+(max(w, sp.seq)-sp.seq))
			return k.settled
		}
		k.settled = sp.rec + sp.n
		k.spans = k.spans[1:]
	}
	k.settled = k.records // Exports that failed to encode, after the rest
	return k.settled
}

func (k *Flows) Flush() error   { return nil } // the producer owns delivery
func (k *Flows) Close() error   { return nil } // the producer is closed by its owner
func (k *Flows) String() string { return k.p.String() }

// Samples writes each header sample as one schemas.SampleMessage, in
// batches handed over when the ring goes idle.
type Samples struct {
	p       *kafkaout.Producer
	topic   string
	format  schemas.Format
	meta    schemas.Meta
	m       schemas.SampleMessage
	pending []kafkaout.Message
}

// NewSamples returns a sample sink writing to topic through p.
func NewSamples(p *kafkaout.Producer, topic string, format schemas.Format, meta schemas.Meta) *Samples {
	return &Samples{p: p, topic: topic, format: format, meta: meta}
}

func (k *Samples) Sample(s *bpf.Sample, unixNs int64) error {
	k.m = schemas.SampleMessage{
		SchemaVersion:       schemas.SchemaVersion,
		ProbeHost:           k.meta.ProbeHost,
		InIf:                s.InIf,
		InIfName:            k.meta.IfNames[s.InIf],
		TimeReceivedNs:      uint64(unixNs),
		SamplingRate:        k.meta.SamplingRate,
		OrigLen:             s.OrigLen,
		Data:                s.Data,
		ObservationDomainId: k.meta.ObservationDomain,
	}
	b, err := k.format.Append(nil, &k.m)
	if err != nil {
		return err
	}
	k.pending = append(k.pending, kafkaout.Message{Topic: k.topic, Value: b})
	if len(k.pending) >= 1024 {
		return k.Flush()
	}
	return nil
}

func (k *Samples) Flush() error {
	k.p.Send(k.pending)
	k.pending = nil
	return nil
}

func (k *Samples) Close() error   { return k.Flush() }
func (k *Samples) String() string { return k.p.String() + " samples" }

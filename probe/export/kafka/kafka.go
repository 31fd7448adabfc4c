// Package kafka exports flow records and header samples to Kafka as
// schemas/ messages (protobuf or JSON), through internal/kafkaout's
// producer, which owns delivery (queue, spool, retries).
package kafka

import (
	"time"

	"github.com/xdpflow/xdpflow/bpf"
	"github.com/xdpflow/xdpflow/internal/kafkaout"
	"github.com/xdpflow/xdpflow/schemas"
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
}

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
	for i := range flows {
		flows[i].ToMessage(&k.m, &k.meta, now)
		start := len(buf)
		buf = schemas.AppendKey(buf, &k.m)
		keyEnd := len(buf)
		var err error
		if buf, err = k.format.Append(buf, &k.m); err != nil {
			return err
		}
		// If buf grew, earlier messages keep pointing into the old array,
		// which stays valid and unchanged.
		msgs[i] = kafkaout.Message{Topic: k.topic, Key: buf[start:keyEnd:keyEnd], Value: buf[keyEnd:len(buf):len(buf)]}
	}
	k.p.Send(msgs)
	return nil
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

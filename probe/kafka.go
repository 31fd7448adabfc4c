package main

import (
	"time"

	"github.com/xdpflow/xdpflow/bpf"
	"github.com/xdpflow/xdpflow/internal/kafkaout"
	"github.com/xdpflow/xdpflow/schemas"
)

// kafkaFlows writes each flow record as one Kafka message
// (schemas.FlowMessage), keyed so both directions of a conversation share
// a partition.
type kafkaFlows struct {
	p      *kafkaout.Producer
	topic  string
	format schemas.Format
	meta   schemas.Meta
	m      schemas.FlowMessage
}

// Export encodes the batch into one buffer: the producer holds the
// messages until the brokers have them, and one allocation per batch
// instead of one per flow keeps the GC out of the way.
func (k *kafkaFlows) Export(flows []schemas.Flow) error {
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

func (k *kafkaFlows) Flush() error   { return nil } // the producer owns delivery
func (k *kafkaFlows) Close() error   { return nil } // run closes the producer
func (k *kafkaFlows) String() string { return k.p.String() }

// kafkaSamples writes each header sample as one schemas.SampleMessage,
// in batches handed over when the ring goes idle.
type kafkaSamples struct {
	p       *kafkaout.Producer
	topic   string
	format  schemas.Format
	meta    schemas.Meta
	m       schemas.SampleMessage
	pending []kafkaout.Message
}

func (k *kafkaSamples) Sample(s *bpf.Sample, unixNs int64) error {
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

func (k *kafkaSamples) Flush() error {
	k.p.Send(k.pending)
	k.pending = nil
	return nil
}

func (k *kafkaSamples) Close() error { return k.Flush() }

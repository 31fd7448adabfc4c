package main

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/xdpflow/xdpflow/internal/testkit/freeport"
)

// kafkaSink is an in-process Kafka-protocol broker (franz-go's kfake, in
// memory) on 127.0.0.1, started afresh for each run, and a client that
// reads the topic's end offsets: the records written.
type kafkaSink struct {
	c     *kfake.Cluster
	cl    *kgo.Client
	addr  string
	topic string
	parts int32
}

func startKafka(cfg *config) (*kafkaSink, error) {
	port, err := freeport.Find("tcp")
	if err != nil {
		return nil, err
	}
	k := &kafkaSink{topic: "flows", parts: int32(cfg.kafkaPartitions)}
	listen := func(network, _ string) (net.Listener, error) {
		return net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
	}
	if k.c, err = kfake.NewCluster(kfake.Ports(port), kfake.ListenFn(listen), kfake.SeedTopics(k.parts, k.topic)); err != nil {
		return nil, fmt.Errorf("kfake: %w", err)
	}
	k.addr = fmt.Sprintf("127.0.0.1:%d", port)
	if k.cl, err = kgo.NewClient(kgo.SeedBrokers(k.addr)); err != nil {
		k.c.Close()
		return nil, err
	}
	return k, nil
}

// records sums the topic's high watermarks: one Kafka record is one flow
// for both collectors.
func (k *kafkaSink) records() (int64, error) {
	req := kmsg.NewPtrListOffsetsRequest()
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = k.topic
	for p := range k.parts {
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition = p
		rp.Timestamp = -1 // latest
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := req.RequestWith(ctx, k.cl)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if err := kerrErr(p.ErrorCode); err != nil {
				return 0, err
			}
			n += p.Offset
		}
	}
	return n, nil
}

func kerrErr(code int16) error {
	if code == 0 {
		return nil
	}
	return fmt.Errorf("kafka list offsets: error code %d", code)
}

func (k *kafkaSink) close() {
	k.cl.Close()
	k.c.Close()
}

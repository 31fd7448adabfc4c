package kafkaout

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/xdpflow/xdpflow/internal/metrics"
)

// Metrics returns the producer's counters as Prometheus metrics.
func (p *Producer) Metrics() prometheus.Collector {
	f := &metrics.Func{}
	sent := f.Desc("xdpflow_kafka_messages_sent_total", "Messages the Kafka brokers acknowledged.")
	failures := f.Desc("xdpflow_kafka_write_failures_total", "Failed Kafka write attempts (their messages are retried).")
	spooled := f.Desc("xdpflow_kafka_messages_spooled_total", "Messages written to the on-disk spool.")
	replayed := f.Desc("xdpflow_kafka_messages_replayed_total", "Messages read back from the spool for delivery.")
	dropped := f.Desc("xdpflow_kafka_messages_dropped_total", "Messages lost: memory queue and spool full, or no spool.")
	queue := f.Desc("xdpflow_kafka_queue_messages", "Messages waiting in memory.")
	spool := f.Desc("xdpflow_kafka_spool_bytes", "Size of the spool on disk.")
	up := f.Desc("xdpflow_kafka_up", "1 while Kafka writes succeed, 0 while they fail.")
	f.Fn = func(ch chan<- prometheus.Metric) {
		s := p.Stats()
		metrics.Counter(ch, sent, s.Sent)
		metrics.Counter(ch, failures, s.Failures)
		metrics.Counter(ch, spooled, s.Spooled)
		metrics.Counter(ch, replayed, s.Replayed)
		metrics.Counter(ch, dropped, s.Dropped)
		metrics.Gauge(ch, queue, float64(s.QueueDepth))
		metrics.Gauge(ch, spool, float64(s.SpoolBytes))
		metrics.Gauge(ch, up, boolFloat(!p.failing.Load()))
	}
	return f
}

// Failing tells whether the last write failed.
func (p *Producer) Failing() bool { return p.failing.Load() }

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

package main

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xdpflow/xdpflow/collector/decode"
	"github.com/xdpflow/xdpflow/collector/listen"
	"github.com/xdpflow/xdpflow/internal/metrics"
)

// collectorMetrics reads the listeners' and the decoder's counters at
// scrape time. Exporter labels are bounded by --max-exporters, plus two:
// "untracked" (drops before a source is tracked: truncated, bad_version,
// too_many_exporters) and "evicted" (the counts of exporters that gave up
// their slot), so that a sum over exporters never goes down.
func collectorMetrics(ls []*listen.Listener, s *sink) *prometheus.Registry {
	f := &metrics.Func{}
	msgs := f.Desc("xdpflow_collector_messages_total", "Export messages received and allowed, by listener.", "listener")
	denied := f.Desc("xdpflow_collector_denied_total", "Datagrams and connections from sources outside --allow, by listener.", "listener")
	kdrops := f.Desc("xdpflow_collector_kernel_drops_total", "UDP datagrams the socket buffer had no room for, by listener.", "listener")
	streamErrs := f.Desc("xdpflow_collector_tcp_stream_errors_total", "TCP connections closed on a bad or cut message, by listener.", "listener")
	tlsErrs := f.Desc("xdpflow_collector_tls_errors_total", "Failed TLS handshakes on tcps:// listeners, by listener.", "listener")
	decoded := f.Desc("xdpflow_collector_decoded_messages_total", "Messages accepted by the decoder (not dropped whole), by exporter.", "exporter")
	records := f.Desc("xdpflow_collector_records_total", "Flow records decoded, by exporter.", "exporter")
	lost := f.Desc("xdpflow_collector_lost_records_total", "Records (v9: export packets) missing from the sequence numbers, by exporter.", "exporter")
	resets := f.Desc("xdpflow_collector_sequence_resets_total", "Exporter restarts seen in sequence numbers, uptime or a new source port, by exporter.", "exporter")
	ooo := f.Desc("xdpflow_collector_out_of_order_total", "Messages behind the sequence (late or duplicate), by exporter.", "exporter")
	misses := f.Desc("xdpflow_collector_template_misses_total", "Data sets that arrived before their template, by exporter.", "exporter")
	pendDecoded := f.Desc("xdpflow_collector_pending_decoded_total", "Data sets held for their template and decoded when it came, by exporter.", "exporter")
	pendDropped := f.Desc("xdpflow_collector_pending_dropped_total", "Data sets held for their template and then dropped (aged out, over a limit, exporter evicted), by exporter.", "exporter")
	bad := f.Desc("xdpflow_collector_bad_messages_total", "Messages (or sets, templates) dropped as malformed or over a limit, by exporter and reason.", "exporter", "reason")
	exporters := f.Desc("xdpflow_collector_exporters", "Exporters tracked.")
	evictions := f.Desc("xdpflow_collector_exporter_evictions_total", "Exporters that gave up their slot to a new one at --max-exporters.")
	tmplBytes := f.Desc("xdpflow_collector_template_bytes", "Memory charged to --max-template-bytes: templates, observation domains, interface names.")
	tmplLimit := f.Desc("xdpflow_collector_template_bytes_limit", "--max-template-bytes.")
	pendBytes := f.Desc("xdpflow_collector_pending_bytes", "Data sets held for their template, bytes.")
	encErrs := f.Desc("xdpflow_collector_kafka_encode_errors_total", "Records the Kafka format could not encode.")
	f.Fn = func(ch chan<- prometheus.Metric) {
		for _, l := range ls {
			st := l.Stats()
			metrics.Counter(ch, msgs, st.Messages, l.URL)
			metrics.Counter(ch, denied, st.Denied, l.URL)
			metrics.Counter(ch, kdrops, st.KernelDrops, l.URL)
			metrics.Counter(ch, streamErrs, st.StreamErrors, l.URL)
			metrics.Counter(ch, tlsErrs, st.TLSErrors, l.URL)
		}
		// Held data of exporters gone silent is counted now, not when
		// another message comes.
		s.dec.Expire(uint64(time.Now().UnixNano()))
		st := s.dec.Stats()
		metrics.Gauge(ch, exporters, float64(st.Tracked))
		metrics.Counter(ch, evictions, st.Evictions)
		metrics.Gauge(ch, tmplBytes, float64(st.TemplateBytes))
		metrics.Gauge(ch, tmplLimit, float64(st.MaxTemplateBytes))
		metrics.Gauge(ch, pendBytes, float64(st.PendingBytes))
		series := func(e string, c *decode.Counters) {
			metrics.Counter(ch, decoded, c.Messages, e)
			metrics.Counter(ch, records, c.Records, e)
			metrics.Counter(ch, lost, c.Lost, e)
			metrics.Counter(ch, resets, c.Resets, e)
			metrics.Counter(ch, ooo, c.OutOfOrder, e)
			metrics.Counter(ch, misses, c.TemplateMisses, e)
			metrics.Counter(ch, pendDecoded, c.PendingDecoded, e)
			metrics.Counter(ch, pendDropped, c.PendingDropped, e)
			for r := decode.Reason(0); r < decode.NumReasons; r++ {
				metrics.Counter(ch, bad, c.Dropped[r], e, r.String())
			}
		}
		for addr, c := range st.Exporters {
			series(addr.String(), &c)
		}
		series("evicted", &st.Evicted)
		for r := decode.Reason(0); r < decode.NumReasons; r++ {
			metrics.Counter(ch, bad, st.Untracked.Dropped[r], "untracked", r.String())
		}
		metrics.Counter(ch, encErrs, s.encodeErrs.Load())
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(f)
	if s.prod != nil {
		reg.MustRegister(s.prod.Metrics())
	}
	return reg
}

// collectorReady is /readyz: listening (the server starts after binding),
// and Kafka writes going through.
func collectorReady(s *sink) func() error {
	return func() error {
		if s.prod != nil && s.prod.Failing() {
			return errors.New("kafka writes failing")
		}
		return nil
	}
}

package main

import (
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/xdpflow/xdpflow/collector/decode"
	"github.com/xdpflow/xdpflow/probe/export/ipfix"
	"github.com/xdpflow/xdpflow/probe/export/ipfix/ipfixtest"
)

// TestMetricsUntrackedEvicted: drops from sources not tracked and the
// counts of evicted exporters are in /metrics (not only in the shutdown
// log), with the template memory and held data.
func TestMetricsUntrackedEvicted(t *testing.T) {
	dec := decode.New(decode.Config{MaxExporters: 1, MaxTemplateBytes: 1 << 20})
	s := &sink{dec: dec}
	msgs := ipfixtest.Encode(t, ipfix.Config{ObservationDomain: 1}, testFlows(3, 1), time.Now())
	a, b := netip.MustParseAddrPort("192.0.2.1:2055"), netip.MustParseAddrPort("192.0.2.2:2055")
	now := uint64(time.Now().UnixNano())
	dec.Decode(b, []byte{0}, now, nil)           // truncated, untracked
	dec.Decode(b, []byte{0, 42, 0, 0}, now, nil) // bad version, untracked
	for _, m := range msgs {
		dec.Decode(a, m, now, nil)
	}
	dec.Decode(b, msgs[0], now+1, nil)                     // too many exporters: a decoded just now
	dec.Decode(b, msgs[0], now+uint64(2*time.Second), nil) // a is evicted
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(collectorMetrics(nil, s), promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`xdpflow_collector_bad_messages_total{exporter="untracked",reason="truncated"} 1`,
		`xdpflow_collector_bad_messages_total{exporter="untracked",reason="bad_version"} 1`,
		`xdpflow_collector_bad_messages_total{exporter="untracked",reason="too_many_exporters"} 1`,
		`xdpflow_collector_bad_messages_total{exporter="192.0.2.2",reason="template_memory"} 0`,
		`xdpflow_collector_records_total{exporter="evicted"} 3`,
		`xdpflow_collector_decoded_messages_total{exporter="evicted"} ` + itoa(len(msgs)),
		`xdpflow_collector_decoded_messages_total{exporter="192.0.2.2"} 1`,
		`xdpflow_collector_exporters 1`,
		`xdpflow_collector_exporter_evictions_total 1`,
		`xdpflow_collector_template_bytes_limit 1.048576e+06`,
		`xdpflow_collector_pending_bytes 0`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if !strings.Contains(body, "xdpflow_collector_template_bytes ") || strings.Contains(body, "xdpflow_collector_template_bytes 0\n") {
		t.Errorf("no template memory charged for 192.0.2.2's templates")
	}
	if t.Failed() {
		t.Log(body)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

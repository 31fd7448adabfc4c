package main

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xdpflow/xdpflow/bpf"
	"github.com/xdpflow/xdpflow/internal/kafkaout"
	"github.com/xdpflow/xdpflow/internal/metrics"
	"github.com/xdpflow/xdpflow/probe/export/ipfix"
	"github.com/xdpflow/xdpflow/probe/flowtable"
	"github.com/xdpflow/xdpflow/schemas"
)

// ifaceCounts are the packets and bytes drained per capture interface
// (written by the pipeline, read by scrapes).
type ifaceCounts struct {
	name           string
	packets, bytes atomic.Uint64
	attached       atomic.Bool
}

// probeMetrics reads the probe's counters at scrape time: the datapath's
// own (one map read), the pipeline's snapshot, the exporters'.
func probeMetrics(d *bpf.Datapath, p *pipeline, ifaces map[uint32]*ifaceCounts, exps []exporter, prod *kafkaout.Producer) *prometheus.Registry {
	f := &metrics.Func{}
	frames := f.Desc("xdpflow_probe_frames_total", "Frames the XDP program saw, all interfaces.")
	flowPkts := f.Desc("xdpflow_probe_flow_packets_total", "Packets counted in flows, by capture interface.", "iface")
	flowBytes := f.Desc("xdpflow_probe_flow_bytes_total", "Layer-3 bytes counted in flows, by capture interface.", "iface")
	nonIP := f.Desc("xdpflow_probe_nonip_frames_total", "Frames that are not IPv4/IPv6 (ARP, LLDP, ...).")
	malformed := f.Desc("xdpflow_probe_malformed_frames_total", "IP frames the datapath could not parse, by reason.", "reason")
	unattributed := f.Desc("xdpflow_probe_unattributed_packets_total", "Packets in no flow: the kernel table was full (raise --max-flows).")
	fragments := f.Desc("xdpflow_probe_fragments_total", "IP fragments (counted in flows with ports 0).")
	samples := f.Desc("xdpflow_probe_samples_total", "Frame heads sampled into the ring buffer.")
	samplesLost := f.Desc("xdpflow_probe_samples_lost_total", "Samples lost: the ring buffer was full.")
	active := f.Desc("xdpflow_probe_active_flows", "Flows held between exports.")
	kernelFlows := f.Desc("xdpflow_probe_kernel_table_flows", "Flows in the kernel table at the last drain.")
	kernelSize := f.Desc("xdpflow_probe_kernel_table_size", "Kernel flow table size (--max-flows).")
	pressure := f.Desc("xdpflow_probe_table_pressure_ticks_total", "Drains run early because the kernel table was filling.")
	exported := f.Desc("xdpflow_probe_flows_exported_total", "Flow records exported, by flowEndReason.", "reason")
	sendErrs := f.Desc("xdpflow_probe_export_errors_total", "Failed sends, by exporter.", "exporter")
	recDropped := f.Desc("xdpflow_probe_export_records_dropped_total", "Flow records an IPFIX/NetFlow exporter could not send, by exporter.", "exporter")
	recSent := f.Desc("xdpflow_probe_export_records_total", "Flow records sent, by IPFIX/NetFlow exporter.", "exporter")
	tlsErrs := f.Desc("xdpflow_probe_export_tls_errors_total", "Failed TLS handshakes and refused sessions, by tcps:// exporter.", "exporter")
	attached := f.Desc("xdpflow_probe_attached", "1 while the XDP program is attached to the interface.", "iface")
	f.Fn = func(ch chan<- prometheus.Metric) {
		if st, err := d.Stats(); err == nil {
			metrics.Counter(ch, frames, st.Packets)
			metrics.Counter(ch, nonIP, st.NonIp)
			for i, n := range st.Malformed {
				metrics.Counter(ch, malformed, n, bpf.MalformedReasons[i])
			}
			metrics.Counter(ch, unattributed, st.UpdateFailedPackets)
			metrics.Counter(ch, fragments, st.Fragments)
			metrics.Counter(ch, samples, st.Samples)
			metrics.Counter(ch, samplesLost, st.SamplesLost)
		}
		for _, c := range ifaces {
			metrics.Counter(ch, flowPkts, c.packets.Load(), c.name)
			metrics.Counter(ch, flowBytes, c.bytes.Load(), c.name)
			metrics.Gauge(ch, attached, boolGauge(c.attached.Load()), c.name)
		}
		if s := p.snap.Load(); s != nil {
			metrics.Gauge(ch, active, float64(s.table.Active))
			metrics.Gauge(ch, kernelFlows, float64(s.kernelFlows))
			metrics.Counter(ch, pressure, s.pressure)
			for r := schemas.EndIdle; r <= schemas.EndLackOfResources; r++ {
				metrics.Counter(ch, exported, s.table.Exported[r], r.String())
			}
		}
		metrics.Gauge(ch, kernelSize, float64(p.max))
		for _, x := range exps {
			if ix, ok := x.(*ipfix.Exporter); ok {
				st := ix.Stats()
				metrics.Counter(ch, sendErrs, st.SendErrors, x.String())
				metrics.Counter(ch, recDropped, st.RecordsDropped, x.String())
				metrics.Counter(ch, recSent, st.Records, x.String())
				metrics.Counter(ch, tlsErrs, st.TLSErrors, x.String())
			}
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(f)
	if prod != nil {
		reg.MustRegister(prod.Metrics())
	}
	return reg
}

// probeReady is /readyz: every interface attached, Kafka writes going
// through.
func probeReady(ifaces map[uint32]*ifaceCounts, prod *kafkaout.Producer) func() error {
	return func() error {
		var errs []error
		for _, c := range ifaces {
			if !c.attached.Load() {
				errs = append(errs, fmt.Errorf("%s: XDP program not attached", c.name))
			}
		}
		if prod != nil && prod.Failing() {
			errs = append(errs, errors.New("kafka writes failing"))
		}
		return errors.Join(errs...)
	}
}

// pipelineSnapshot is what scrapes read of the pipeline, replaced after
// every tick.
type pipelineSnapshot struct {
	table       flowtable.Stats
	kernelFlows int
	pressure    uint64
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

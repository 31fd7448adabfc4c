package lifecycle

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xdpflow/xdpflow/bpf"
	"github.com/xdpflow/xdpflow/internal/metrics"
	"github.com/xdpflow/xdpflow/probe/export"
	"github.com/xdpflow/xdpflow/schemas"
)

// registry reads the probe's counters at scrape time: the datapath's own
// (one map read), the pipeline's snapshot, the exporters', the sample
// reader's.
func (p *probe) registry() *prometheus.Registry {
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
	convsFull := f.Desc("xdpflow_probe_tcp_conversations_full_total", "TCP handshakes not timed: the conversation map was full (raise --tcp-conversations).")
	seqNotCarried := f.Desc("xdpflow_probe_tcp_seq_not_carried_total", "TCP flows whose sequence state a drain could not carry to the next kernel table, by reason (full: the carry map, 2 x --tcp-conversations flows, was full; raise it): their next retransmission may go uncounted.", "reason")
	convsSwept := f.Desc("xdpflow_probe_tcp_conversations_swept_total", "TCP conversations removed from the conversation map after --idle-timeout without a packet (ended with FIN, or just stopped).")
	active := f.Desc("xdpflow_probe_active_flows", "Flows held between exports.")
	kernelFlows := f.Desc("xdpflow_probe_kernel_table_flows", "Flows in the kernel table at the last drain.")
	kernelSize := f.Desc("xdpflow_probe_kernel_table_size", "Kernel flow table size (--max-flows).")
	pressure := f.Desc("xdpflow_probe_table_pressure_ticks_total", "Drains run early because the kernel table was filling.")
	exported := f.Desc("xdpflow_probe_flows_exported_total", "Flow records exported, by flowEndReason.", "reason")
	sendErrs := f.Desc("xdpflow_probe_export_errors_total", "Failed sends, by exporter.", "exporter")
	recDropped := f.Desc("xdpflow_probe_export_records_dropped_total", "Flow records an IPFIX/NetFlow exporter could not send, by exporter.", "exporter")
	recSent := f.Desc("xdpflow_probe_export_records_total", "Flow records sent, by IPFIX/NetFlow exporter.", "exporter")
	tlsErrs := f.Desc("xdpflow_probe_export_tls_errors_total", "Failed TLS handshakes and refused sessions, by tcps:// exporter.", "exporter")
	samplesDropped := f.Desc("xdpflow_probe_samples_dropped_total", "Samples read but not written: their sink (--pcap file, Kafka) failed and was closed.")
	pending := f.Desc("xdpflow_probe_pending_records", "Flow records some exporter has not settled yet (kept in the flow state until it has).")
	commitFails := f.Desc("xdpflow_probe_state_save_failures_total", "Ticks the flow state could not be saved (a full tmpfs): a crash then loses what was drained since the last save.")
	resent := f.Desc("xdpflow_probe_resent_records_total", "Flow records sent again after a restart that the probe before may have sent already (the message in flight at a crash): possible duplicates, by exporter.", "exporter")
	attached := f.Desc("xdpflow_probe_attached", "1 while the XDP program is attached to the interface.", "iface")
	f.Fn = func(ch chan<- prometheus.Metric) {
		if st, err := p.d.Stats(); err == nil {
			metrics.Counter(ch, frames, st.Packets)
			metrics.Counter(ch, nonIP, st.NonIp)
			for i, n := range st.Malformed {
				metrics.Counter(ch, malformed, n, bpf.MalformedReasons[i])
			}
			metrics.Counter(ch, unattributed, st.UpdateFailedPackets)
			metrics.Counter(ch, fragments, st.Fragments)
			metrics.Counter(ch, samples, st.Samples)
			metrics.Counter(ch, samplesLost, st.SamplesLost)
			if p.cfg.TCPHealth {
				metrics.Counter(ch, convsFull, st.TcpConvsFull)
			}
		}
		if r := p.samples.Load(); r != nil {
			metrics.Counter(ch, samplesDropped, r.Dropped())
		}
		for _, c := range p.pipe.Interfaces() {
			metrics.Counter(ch, flowPkts, c.Packets.Load(), c.Name)
			metrics.Counter(ch, flowBytes, c.Bytes.Load(), c.Name)
			metrics.Gauge(ch, attached, boolGauge(c.Attached.Load()), c.Name)
		}
		s := p.pipe.Snapshot()
		metrics.Gauge(ch, active, float64(s.Table.Active))
		metrics.Gauge(ch, kernelFlows, float64(s.KernelFlows))
		metrics.Counter(ch, pressure, s.Pressure)
		if p.cfg.TCPHealth {
			metrics.Counter(ch, convsSwept, s.TCPSwept)
			cs := p.d.CarryStats()
			metrics.Counter(ch, seqNotCarried, cs.Full, "full")
		}
		metrics.Gauge(ch, pending, float64(s.Pending))
		metrics.Counter(ch, commitFails, p.pipe.CommitErrors())
		for name, n := range p.pipe.Resent() {
			metrics.Counter(ch, resent, n, name)
		}
		for r := schemas.EndIdle; r <= schemas.EndLackOfResources; r++ {
			metrics.Counter(ch, exported, s.Table.Exported[r], r.String())
		}
		metrics.Gauge(ch, kernelSize, float64(p.cfg.MaxFlows))
		for _, x := range p.exps {
			if cx, ok := x.(export.Counting); ok {
				st := cx.Stats()
				metrics.Counter(ch, sendErrs, st.SendErrors, x.String())
				metrics.Counter(ch, recDropped, st.RecordsDropped, x.String())
				metrics.Counter(ch, recSent, st.Records, x.String())
				metrics.Counter(ch, tlsErrs, st.TLSErrors, x.String())
			}
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(f)
	if p.prod != nil {
		reg.MustRegister(p.prod.Metrics())
	}
	return reg
}

// ready is /readyz: every interface attached, Kafka writes going through.
func (p *probe) ready() error {
	var errs []error
	for _, c := range p.pipe.Interfaces() {
		if !c.Attached.Load() {
			errs = append(errs, fmt.Errorf("%s: XDP program not attached", c.Name))
		}
	}
	if p.prod != nil && p.prod.Failing() {
		errs = append(errs, errors.New("kafka writes failing"))
	}
	return errors.Join(errs...)
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

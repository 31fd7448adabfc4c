package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xdpflow/xdpflow/bpf"
	"github.com/xdpflow/xdpflow/internal/kafkaout"
	"github.com/xdpflow/xdpflow/internal/metrics"
	"github.com/xdpflow/xdpflow/probe/attach"
	"github.com/xdpflow/xdpflow/probe/biflow"
	"github.com/xdpflow/xdpflow/probe/caps"
	"github.com/xdpflow/xdpflow/probe/export/ipfix"
	"github.com/xdpflow/xdpflow/probe/flowtable"
	"github.com/xdpflow/xdpflow/probe/span"
	"github.com/xdpflow/xdpflow/schemas"
)

// exporter is where flow records go: IPFIX, NetFlow v9, JSON lines.
type exporter interface {
	Export([]schemas.Flow) error
	Flush() error
	Close() error
	String() string
}

// wallClock converts the datapath's CLOCK_MONOTONIC stamps to Unix time.
// The offset is re-read every tick, so a stepped wall clock is followed.
type wallClock struct{ off atomic.Int64 }

// now returns CLOCK_MONOTONIC in ns and refreshes the offset.
func (c *wallClock) now() uint64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	mono := uint64(ts.Nano())
	c.off.Store(time.Now().UnixNano() - int64(mono))
	return mono
}

func (c *wallClock) offset() int64 { return c.off.Load() }

func run(ctx context.Context, c *config, log *slog.Logger) error {
	if c.Detach && !c.exports() {
		return detachOnly(c, log)
	}

	names := map[uint32]string{}
	for _, iface := range c.Ifaces {
		i, err := net.InterfaceByName(iface)
		if err != nil {
			return fmt.Errorf("interface %q not found: check the name with `ip link` (and the network namespace)", iface)
		}
		names[uint32(i.Index)] = iface
	}
	action := bpf.Pass
	if c.Action == "drop" {
		action = bpf.Drop
	}
	d, err := bpf.Load(bpf.Config{MaxFlows: c.MaxFlows, SampleRate: c.SampleRate, SampleBytes: c.SampleBytes, Action: action, PinPath: c.PinPath, LocalNets: c.localNets})
	if err != nil {
		return err
	}
	defer d.Close()
	// Pins this start made are removed again if it fails before the
	// program is attached: nothing would ever read them.
	attachedOnce := false
	defer func() {
		if !attachedOnce && !d.Reused && c.PinPath != "" {
			bpf.Unpin(c.PinPath)
		}
	}()
	if d.Reused {
		log.Info("carrying on with the pinned datapath: what it counted while no probe ran is exported now", "pin_path", c.PinPath)
	}
	if d.LayoutChange != nil {
		log.Warn("pinned maps of another layout (an upgrade, or another --max-flows): exporting what they hold, then starting clean",
			"pin_path", c.PinPath, "readable_tables", len(d.Leftovers), "change", d.LayoutChange)
	}

	// Exporters first: a NetFlow v9 exporter's uptime starts when it is
	// created, and must not start after the first packet counted.
	meta := schemas.Meta{ObservationDomain: c.ObservationDomain, SamplingRate: 1, IfNames: names}
	meta.ProbeHost, _ = os.Hostname()
	var prod *kafkaout.Producer
	if c.Kafka.Enabled() {
		if prod, err = kafkaout.New(ctx, c.Kafka, log); err != nil {
			return err
		}
		// Deferred before the exporters, so it runs after their Close.
		defer prod.Shutdown(c.Kafka.FlushTimeout)
	}
	exps, err := newExporters(c, names, log)
	if err != nil {
		return err
	}
	defer func() {
		for _, x := range exps {
			x.Close()
		}
	}()
	format, _ := schemas.ParseFormat(c.Kafka.Format)
	if prod != nil {
		exps = append(exps, &kafkaFlows{p: prod, topic: c.Kafka.Topic, format: format, meta: meta})
	}
	ifaces := map[uint32]*ifaceCounts{}
	for idx, name := range names {
		ifaces[idx] = &ifaceCounts{name: name}
	}
	p := &pipeline{
		d:      d,
		table:  flowtable.New(flowtable.Config{IdleTimeout: c.IdleTimeout, ActiveTimeout: c.ActiveTimeout, MaxFlows: 4 * int(c.MaxFlows), Biflow: c.Biflow}),
		exps:   exps,
		log:    log,
		max:    int(c.MaxFlows),
		ifaces: ifaces,
		biflow: c.Biflow,
	}
	for _, m := range d.Leftovers {
		if _, err := p.drain(m); err != nil {
			log.Error("drain the old layout's table", "err", err)
		}
		m.Close()
	}
	ms, err := metrics.Serve(c.Metrics, probeMetrics(d, p, ifaces, exps, prod), probeReady(ifaces, prod), log)
	if err != nil {
		return err
	}
	defer ms.Close()

	mode, _ := attach.ParseMode(c.XDPMode)
	var atts []*attach.Attachment
	// release lets go of the program; pinned, it stays attached and
	// counting for the next probe, unless remove is set.
	release := func(remove bool) {
		for _, a := range atts {
			var err error
			if remove {
				err = a.Detach()
			} else {
				err = a.Close()
			}
			if err != nil {
				log.Error("detach", "iface", a.Iface, "err", err)
			}
			ifaces[uint32(a.Ifindex)].attached.Store(false)
		}
		atts = nil
	}
	// Ready the interfaces before attaching (some drivers refuse native
	// XDP while LRO is on); put them back after detaching, unless the
	// program stays pinned and counting.
	spanMode := c.Span || c.Action == "drop"
	// Where the driver hands XDP the VLAN tags the NIC strips, a
	// device-bound program variant reads them (native mode only).
	vlanMeta := map[string]bool{}
	if mode != attach.Generic {
		for _, iface := range c.Ifaces {
			vlanMeta[iface], _ = span.VLANMetadata(iface)
		}
	}
	var prepared []*span.Prepared
	defer func() {
		if c.PinPath != "" && !c.Detach && attachedOnce {
			for _, p := range prepared {
				if p.Changed() {
					log.Info("promiscuous mode and offloads stay as set for the pinned program; `xdpflow-probe --detach` does not restore them", "iface", p.Iface)
				}
			}
			return
		}
		for _, p := range prepared {
			if err := p.Restore(); err != nil {
				log.Error("restore interface", "iface", p.Iface, "err", err)
			}
		}
	}()
	for _, iface := range c.Ifaces {
		if !spanMode && !c.FixOffloads {
			for _, f := range span.Warnings(iface, vlanMeta[iface]) {
				log.Warn(f.Message, "iface", iface)
			}
			continue
		}
		p, err := span.Prepare(iface, span.Options{Promisc: spanMode, FixOffloads: c.FixOffloads, VLANMetadata: vlanMeta[iface]}, log)
		if err != nil {
			return err
		}
		prepared = append(prepared, p)
	}
	defer release(false)
	for _, iface := range c.Ifaces {
		prog := d.Program
		if vlanMeta[iface] {
			i, _ := net.InterfaceByName(iface)
			p, err := d.VLANProgram(i.Index)
			if err != nil {
				log.Warn("VLAN tags the NIC strips cannot be read from the driver: turn rxvlan off (--fix-offloads)", "iface", iface, "err", err)
			} else {
				defer p.Close() // the link holds it while attached
				prog = p
			}
		}
		a, err := attach.Attach(iface, prog, mode, c.Force, c.PinPath, log)
		if err != nil && prog != d.Program {
			log.Warn("attaching the VLAN-metadata program failed: using the plain one", "iface", iface, "err", err)
			prog = d.Program
			a, err = attach.Attach(iface, prog, mode, c.Force, c.PinPath, log)
		}
		if err != nil {
			return err
		}
		atts = append(atts, a)
		attachedOnce = true
		ifaces[uint32(a.Ifindex)].attached.Store(true)
		log.Info("attached", "iface", iface, "ifindex", a.Ifindex, "mode", a.Mode, "action", c.Action, "took_over_pinned_link", a.Reused,
			"vlan_metadata", prog != d.Program)
	}

	clock := &wallClock{}
	clock.now()
	var sinks []sampleSink
	if c.Pcap != "" {
		ps, err := newPcapSink(c.Pcap)
		if err != nil {
			return err
		}
		sinks = append(sinks, ps)
	}
	if c.Kafka.SamplesTopic != "" {
		sinks = append(sinks, &kafkaSamples{p: prod, topic: c.Kafka.SamplesTopic, format: format, meta: meta})
	}
	var samples *sampleReader
	if len(sinks) > 0 {
		if samples, err = startSamples(d, sinks, clock, log); err != nil {
			return err
		}
	} else if c.SampleRate > 0 {
		log.Warn("header sampling is on but nothing reads the samples: add --pcap FILE or --kafka-samples-topic", "sample_rate", c.SampleRate)
	}
	// Attached, sockets open: from here on only bpf() on our maps, and
	// netlink/ethtool at exit if interfaces must be put back.
	keep, kept := []int{caps.BPF}, "CAP_BPF"
	for _, p := range prepared {
		if p.Changed() {
			keep, kept = append(keep, caps.NetAdmin), "CAP_BPF CAP_NET_ADMIN"
			break
		}
	}
	if err := caps.Keep(keep...); err != nil {
		log.Warn("capabilities not dropped", "err", err)
	} else {
		log.Info("capabilities dropped", "kept", kept)
	}

	p.clock = clock
	interval := c.DrainInterval
	timer := time.NewTimer(interval)
	defer timer.Stop()
	done := ctx.Done()
	if c.Detach { // export what the pinned tables hold, then remove all
		now := make(chan struct{})
		close(now)
		done = now
	}
	for {
		select {
		case <-done:
			// Not pinned: detach first so nothing more arrives, then take
			// the last packets out and end every flow. Pinned: the program
			// keeps counting into the other table, for the next start.
			pinned := c.PinPath != "" && !c.Detach
			if !pinned {
				release(true)
			}
			err := p.tick(true)
			for _, x := range exps {
				if ferr := x.Flush(); ferr != nil {
					err = errors.Join(err, fmt.Errorf("flush %s: %w", x, ferr))
				}
			}
			if samples != nil {
				n, serr := samples.Close()
				log.Info("samples written", "pcap", c.Pcap, "kafka_topic", c.Kafka.SamplesTopic, "samples", n)
				err = errors.Join(err, serr)
			}
			p.summary()
			if pinned {
				log.Info("the XDP program stays attached and counting (pinned): the next start exports what it counts; `xdpflow-probe --detach -i IFACE` removes it",
					"pin_path", c.PinPath)
			} else if c.Detach {
				err = errors.Join(err, bpf.Unpin(c.PinPath))
				log.Info("XDP program removed, pinned maps exported and removed", "pin_path", c.PinPath)
			}
			return err
		case <-timer.C:
			if err := p.tick(false); err != nil {
				return err
			}
			interval = p.nextInterval(interval, c.DrainInterval)
			timer.Reset(interval)
		}
	}
}

func newExporters(c *config, names map[uint32]string, log *slog.Logger) ([]exporter, error) {
	var exps []exporter
	var tlsCfg *tls.Config
	if c.IPFIXTLS != (tlsFiles{}) {
		var err error
		if tlsCfg, err = c.IPFIXTLS.config(); err != nil {
			return nil, err
		}
	}
	add := func(proto ipfix.Protocol, urls []string) error {
		for _, u := range urls {
			x, err := ipfix.NewExporter(u, ipfix.Config{
				Protocol:                proto,
				ObservationDomain:       c.ObservationDomain,
				TemplateRefresh:         c.TemplateRefresh,
				TemplateRefreshMessages: c.TemplateRefreshN,
				SamplingInterval:        1, // the datapath counts every packet
				Interfaces:              names,
				TLS:                     tlsCfg, // tcps:// only
				FlowDirection:           len(c.localNets) > 0,
				Biflow:                  c.Biflow,
			}, log)
			if err != nil {
				return err
			}
			exps = append(exps, x)
		}
		return nil
	}
	if err := add(ipfix.IPFIX, c.IPFIX); err != nil {
		return nil, err
	}
	if err := add(ipfix.NetFlowV9, c.NetFlow9); err != nil {
		return nil, err
	}
	if c.Stdout {
		exps = append(exps, newJSONLines(os.Stdout))
	}
	return exps, nil
}

// pipeline is one pass of the data road: rotate, drain, expire, export.
type pipeline struct {
	d      *bpf.Datapath
	table  *flowtable.Table
	exps   []exporter
	clock  *wallClock
	log    *slog.Logger
	max    int  // kernel table size
	biflow bool // pair directions before export

	out        []schemas.Flow
	lastDrain  int       // flows in the last drained table
	failedSeen uint64    // datapath update failures already reported
	lastWarn   time.Time // rate limit for pressure warnings
	pressure   uint64    // ticks run early because of kernel table pressure

	ifaces map[uint32]*ifaceCounts          // per capture interface counts (metrics)
	snap   atomic.Pointer[pipelineSnapshot] // what scrapes read
}

// tick drains the kernel and exports what is due; final ends every flow.
func (p *pipeline) tick(final bool) error {
	// The table taken out holds every packet since the last tick; the
	// other one was emptied then.
	old, err := p.d.Rotate()
	if err != nil {
		return err
	}
	n, err := p.drain(old)
	if err != nil {
		return err
	}
	p.lastDrain = n
	now := p.clock.now()
	if final {
		p.out = p.table.Flush(schemas.EndForced, p.clock.offset(), p.out[:0])
	} else {
		p.out = p.table.Expire(now, p.clock.offset(), p.out[:0])
	}
	if p.biflow {
		p.out = biflow.Pair(p.out)
	}
	p.checkDatapath()
	var errs []error
	for _, x := range p.exps {
		if err := x.Export(p.out); err != nil {
			errs = append(errs, fmt.Errorf("export to %s: %w", x, err))
		}
	}
	// An exporter error is logged, not fatal: the others go on.
	for _, err := range errs {
		p.log.Error("export failed", "err", err)
	}
	p.snap.Store(&pipelineSnapshot{table: p.table.Stats(), kernelFlows: n, pressure: p.pressure})
	return nil
}

// drain takes every flow out of a kernel table into the flow table.
func (p *pipeline) drain(m *ebpf.Map) (n int, err error) {
	err = p.d.Drain(m, func(k bpf.FlowKey, v bpf.FlowValue) {
		p.table.Add(k, v)
		n++
		if c := p.ifaces[k.InIf]; c != nil {
			c.packets.Add(v.Packets)
			c.bytes.Add(v.Bytes)
		}
	})
	return n, err
}

// detachOnly is `--detach` without exporters: take the program off and
// remove the pins; what the pinned tables still hold is not exported.
func detachOnly(c *config, log *slog.Logger) error {
	for _, iface := range c.Ifaces {
		if err := attach.Detach(iface); err != nil {
			return err
		}
		if c.PinPath != "" {
			os.Remove(attach.LinkPin(c.PinPath, iface))
		}
		log.Info("XDP program removed", "iface", iface)
	}
	if c.PinPath == "" {
		return nil
	}
	if _, err := os.Stat(c.PinPath); err == nil {
		log.Warn("pinned tables removed without export: give --detach the exporters (--ipfix, --kafka-brokers, ...) to export what they held first", "pin_path", c.PinPath)
	}
	return bpf.Unpin(c.PinPath)
}

// nextInterval shortens the drain interval while the kernel table fills
// past 3/4 of its size (so flows are taken out before inserts fail) and
// relaxes it back once the pressure is gone.
func (p *pipeline) nextInterval(cur, configured time.Duration) time.Duration {
	switch {
	case p.lastDrain > p.max*3/4:
		p.pressure++
		if time.Since(p.lastWarn) > time.Minute {
			p.lastWarn = time.Now()
			p.log.Warn("kernel flow table nearly full: draining faster; raise --max-flows if this persists",
				"flows_in_interval", p.lastDrain, "max_flows", p.max)
		}
		return max(cur/2, 50*time.Millisecond)
	case p.lastDrain < p.max/4 && cur < configured:
		return min(cur*2, configured)
	}
	return cur
}

// checkDatapath reports packets the datapath could not put in a flow.
func (p *pipeline) checkDatapath() {
	st, err := p.d.Stats()
	if err != nil {
		p.log.Error("read datapath counters", "err", err)
		return
	}
	if st.UpdateFailedPackets > p.failedSeen {
		p.log.Warn("packets not attributed to any flow: the kernel table was full; raise --max-flows",
			"packets", st.UpdateFailedPackets-p.failedSeen)
		p.failedSeen = st.UpdateFailedPackets
	}
}

func (p *pipeline) summary() {
	st, err := p.d.Stats()
	if err != nil {
		return
	}
	ts := p.table.Stats()
	p.log.Info("datapath totals",
		"frames", st.Packets, "in_flows", st.FlowPackets, "non_ip", st.NonIp, "malformed", st.MalformedTotal(),
		"not_attributed", st.UpdateFailedPackets, "fragments", st.Fragments,
		"samples", st.Samples, "samples_lost", st.SamplesLost)
	if st.MalformedTotal() > 0 {
		var attrs []any
		for i, n := range st.Malformed {
			if n > 0 {
				attrs = append(attrs, bpf.MalformedReasons[i], n)
			}
		}
		p.log.Info("malformed frames by reason", attrs...)
	}
	p.log.Info("flow records exported",
		"idle", ts.Exported[schemas.EndIdle], "active", ts.Exported[schemas.EndActive],
		"end_of_flow", ts.Exported[schemas.EndOfFlow], "forced", ts.Exported[schemas.EndForced],
		"lack_of_resources", ts.Exported[schemas.EndLackOfResources], "pressure_ticks", p.pressure)
}

// Package lifecycle runs xdpflow-probe. It builds the probe's parts from
// its Config and starts them in a fixed order — datapath, flow state,
// exporters, pipeline, metrics, span preparation, attach, sample reader,
// privileges — each start returning its undo. It then runs the pipeline
// (and the sample reader) under one errgroup until told to stop, and
// undoes the parts in reverse order as the shutdown Plan says (Decide).
//
// Failures while running follow one rule: the pipeline failing (the
// datapath can no longer be read) ends the run; an exporter failing is
// logged every tick and counted, and the others go on; a sample sink
// failing is logged at once, that sink is closed, and its samples are
// counted as dropped.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/xdpflow/xdpflow/bpf"
	"github.com/xdpflow/xdpflow/internal/kafkaout"
	"github.com/xdpflow/xdpflow/internal/metrics"
	"github.com/xdpflow/xdpflow/probe/attach"
	"github.com/xdpflow/xdpflow/probe/caps"
	"github.com/xdpflow/xdpflow/probe/export"
	"github.com/xdpflow/xdpflow/probe/export/ipfix"
	"github.com/xdpflow/xdpflow/probe/export/jsonl"
	"github.com/xdpflow/xdpflow/probe/export/kafka"
	"github.com/xdpflow/xdpflow/probe/flowstate"
	"github.com/xdpflow/xdpflow/probe/flowtable"
	"github.com/xdpflow/xdpflow/probe/mountcheck"
	"github.com/xdpflow/xdpflow/probe/pipeline"
	"github.com/xdpflow/xdpflow/probe/samples"
	"github.com/xdpflow/xdpflow/probe/span"
	"github.com/xdpflow/xdpflow/schemas"
)

// undo stops a part as the plan says.
type undo func(Plan) error

// part is one component of the probe.
type part struct {
	name  string
	start func(context.Context) (undo, error)
}

// probe is the state the parts share while the probe runs.
type probe struct {
	cfg   *Config
	log   *slog.Logger
	names map[uint32]string // capture interfaces by ifindex
	clock *bpf.Clock

	d        *bpf.Datapath
	state    *flowstate.State // nil: no crash-safe state
	img      *flowstate.Image // what the state held at start
	prod     *kafkaout.Producer
	exps     []export.Exporter
	meta     schemas.Meta
	format   schemas.Format
	pipe     *pipeline.Pipeline
	prepared []*span.Prepared
	vlanMeta map[string]bool // interfaces whose driver hands XDP the stripped VLAN tags
	attached bool
	samples  atomic.Pointer[samples.Reader] // read by scrapes
}

// Run runs the probe until ctx ends (at once with --detach), then stops it.
func Run(ctx context.Context, c *Config, log *slog.Logger) error {
	if c.Detach && !c.Exports() {
		return detachOnly(c, log)
	}
	p := &probe{cfg: c, log: log, names: map[uint32]string{}, clock: bpf.NewClock()}
	for _, iface := range c.Ifaces {
		i, err := net.InterfaceByName(iface)
		if err != nil {
			return fmt.Errorf("interface %q not found: check the name with `ip link` (and the network namespace)", iface)
		}
		p.names[uint32(i.Index)] = iface
	}
	run := p.run
	if c.Detach { // export what the pinned tables hold, then remove all
		run = func(ctx context.Context) error {
			done, cancel := context.WithCancel(ctx)
			cancel()
			return p.run(done)
		}
	}
	plan, err := sequence(ctx, p.parts(), run, func() State {
		return State{Pinned: c.PinPath != "", Detach: c.Detach, Attached: p.attached, Reused: p.d != nil && p.d.Reused}
	})
	switch {
	case plan.KeepCounting && p.attached:
		log.Info("the XDP program stays attached and counting (pinned): the next start exports what it counts; `xdpflow-probe --detach -i IFACE` removes it",
			"pin_path", c.PinPath)
	case plan.Unpin && c.Detach:
		log.Info("XDP program removed, pinned maps exported and removed", "pin_path", c.PinPath)
	}
	return err
}

// sequence starts parts in order until one fails, runs run if none did,
// then undoes every part that returned an undo (a part that failed half-way
// may have), in reverse order, with the plan Decide makes of state() at
// that moment.
func sequence(ctx context.Context, parts []part, run func(context.Context) error, state func() State) (Plan, error) {
	var undos []func(Plan) error
	var err error
	for _, pt := range parts {
		var u undo
		u, err = pt.start(ctx)
		if u != nil {
			name := pt.name
			undos = append(undos, func(pl Plan) error {
				if err := u(pl); err != nil {
					return fmt.Errorf("stop %s: %w", name, err)
				}
				return nil
			})
		}
		if err != nil {
			break
		}
	}
	if err == nil {
		err = run(ctx)
	}
	plan := Decide(state())
	for i := len(undos) - 1; i >= 0; i-- {
		err = errors.Join(err, undos[i](plan))
	}
	return plan, err
}

// parts are the probe's components in start order.
func (p *probe) parts() []part {
	return []part{
		{"datapath", p.startDatapath},
		{"flow state", p.startState},
		// Exporters before anything counts: a NetFlow v9 exporter's uptime
		// starts when it is created.
		{"exporters", p.startExporters},
		{"pipeline", p.startPipeline},
		{"metrics", p.startMetrics},
		// Interfaces readied before attaching: some drivers refuse native
		// XDP while LRO is on.
		{"span", p.startSpan},
		{"attach", p.startAttach},
		{"samples", p.startSamples},
		{"privileges", p.dropPrivileges},
	}
}

// run ticks the pipeline, and reads samples, until ctx ends or the
// pipeline fails.
func (p *probe) run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return p.pipe.Run(gctx, p.cfg.DrainInterval) })
	if r := p.samples.Load(); r != nil {
		g.Go(func() error {
			err := r.Run(gctx)
			p.log.Info("samples written", "pcap", p.cfg.Pcap, "kafka_topic", p.cfg.Kafka.SamplesTopic, "samples", r.Read(), "dropped", r.Dropped())
			return err
		})
	}
	return g.Wait()
}

func (p *probe) startDatapath(context.Context) (undo, error) {
	c := p.cfg
	action := bpf.Pass
	if c.Action == "drop" {
		action = bpf.Drop
	}
	d, err := bpf.Load(bpf.Config{MaxFlows: c.MaxFlows, SampleRate: c.SampleRate, SampleBytes: c.SampleBytes, Action: action, PinPath: c.PinPath, LocalNets: c.LocalPrefixes,
		TunnelsOuter: c.Tunnels == "outer", VXLANPorts: ports16(c.VXLANPorts), GenevePorts: ports16(c.GenevePorts), Mirrors: c.Mirrors, MACs: c.MACs,
		TCPHealth: c.TCPHealth, TCPConversations: c.TCPConversations})
	if err != nil {
		return nil, err
	}
	p.d = d
	if d.Reused {
		p.log.Info("carrying on with the pinned datapath: what it counted while no probe ran is exported now", "pin_path", c.PinPath)
	}
	if d.LayoutChange != nil {
		p.log.Warn("pinned maps of another layout (an upgrade, or another --max-flows): exporting what they hold, then starting clean",
			"pin_path", c.PinPath, "readable_tables", len(d.Leftovers), "change", d.LayoutChange)
	}
	if c.PinPath != "" {
		if ok, why, err := mountcheck.Outlives(c.PinPath); err == nil && !ok {
			p.log.Warn("--pin-path is on a bpffs that dies with this process: neither the pinned tables nor the flow state will survive it; mount bpffs in the host namespace (mount -t bpf bpf DIR) and point --pin-path there",
				"pin_path", c.PinPath, "why", why)
		}
	}
	return func(pl Plan) error {
		var err error
		if pl.Unpin && c.PinPath != "" {
			err = bpf.Unpin(c.PinPath)
		}
		return errors.Join(err, d.Close())
	}, nil
}

// startState opens the crash-safe flow state that belongs to the pinned
// tables, and reads what a probe before this one left in it. A state this
// probe cannot read (another version, corrupt) is logged and replaced.
func (p *probe) startState(context.Context) (undo, error) {
	c := p.cfg
	if c.PinPath == "" || c.StateDir == "" {
		return nil, nil
	}
	st, err := flowstate.Open(c.StateDir)
	if err == nil {
		p.img, err = st.Load()
		if err != nil {
			st.Close()
		}
	}
	if errors.Is(err, flowstate.ErrIncompatible) {
		p.log.Warn("flow state of another probe version or damaged: it cannot be read and is replaced; the records it held are lost",
			"state_dir", c.StateDir, "err", err)
		if err = flowstate.Reset(c.StateDir); err == nil {
			st, err = flowstate.Open(c.StateDir)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("--state-dir %s: %w (give a writable tmpfs directory, or --state-dir '' to run without crash-safe state)", c.StateDir, err)
	}
	p.state = st
	if ok, why, err := mountcheck.Outlives(c.StateDir); err == nil && !ok {
		p.log.Warn("--state-dir is on a filesystem that dies with this process: the flow state will not survive it; use a directory mounted in the host namespace",
			"state_dir", c.StateDir, "why", why)
	}
	// A crash between saving a tick and emptying the kernel table it read
	// leaves that table's flows both there and in the state: empty it
	// before anything counts them again.
	if p.img != nil && !p.img.Cleared {
		if q := p.d.Quiet(); bpf.TableID(q) == p.img.QuietTable {
			if err := p.d.Clear(q); err != nil {
				return nil, fmt.Errorf("empty the kernel table the flow state holds: %w", err)
			}
		}
	}
	return func(pl Plan) error {
		// The exporters are closed: what they settled while closing is
		// saved, so a restart sends none of it again.
		if p.pipe != nil {
			p.pipe.Settle()
		}
		if pl.Unpin {
			return st.Remove()
		}
		return st.Close()
	}, nil
}

func (p *probe) startExporters(ctx context.Context) (undo, error) {
	c := p.cfg
	p.meta = schemas.Meta{ObservationDomain: c.ObservationDomain, SamplingRate: 1, IfNames: p.names}
	p.meta.ProbeHost, _ = os.Hostname()
	p.format, _ = schemas.ParseFormat(c.Kafka.Format)
	stop := func(Plan) error {
		var err error
		for _, x := range p.exps {
			err = errors.Join(err, x.Close())
		}
		// After the exporters: the Kafka one hands its last batch over.
		if p.prod != nil {
			p.prod.Shutdown(c.Kafka.FlushTimeout)
		}
		return err
	}
	if c.Kafka.Enabled() {
		prod, err := kafkaout.New(ctx, c.Kafka, p.log)
		if err != nil {
			return nil, err
		}
		p.prod = prod
	}
	if err := p.addIPFIX(); err != nil {
		return nil, errors.Join(err, stop(Plan{}))
	}
	if c.Stdout {
		p.exps = append(p.exps, jsonl.New(os.Stdout, "stdout"))
	}
	if p.prod != nil {
		p.exps = append(p.exps, kafka.NewFlows(p.prod, c.Kafka.Topic, p.format, p.meta))
	}
	return stop, nil
}

// addIPFIX adds an exporter per --ipfix and --netflow9 collector.
func (p *probe) addIPFIX() error {
	c := p.cfg
	cfg := ipfix.Config{
		ObservationDomain:       c.ObservationDomain,
		TemplateRefresh:         c.TemplateRefresh,
		TemplateRefreshMessages: c.TemplateRefreshN,
		SamplingInterval:        1, // the datapath counts every packet
		Interfaces:              p.names,
		FlowDirection:           len(c.LocalPrefixes) > 0,
		Biflow:                  c.Biflow,
		EnterpriseNumber:        c.IPFIXEnterprise,
	}
	if c.IPFIXTLS != (TLSFiles{}) {
		var err error
		if cfg.TLS, err = c.IPFIXTLS.Config(); err != nil { // tcps:// only
			return err
		}
	}
	for _, set := range []struct {
		proto ipfix.Protocol
		urls  []string
	}{{ipfix.IPFIX, c.IPFIX}, {ipfix.NetFlowV9, c.NetFlow9}} {
		cfg.Protocol = set.proto
		for _, u := range set.urls {
			x, err := ipfix.NewExporter(u, cfg, p.log)
			if err != nil {
				return err
			}
			p.exps = append(p.exps, x)
		}
	}
	return nil
}

func (p *probe) startPipeline(context.Context) (undo, error) {
	c := p.cfg
	cfg := pipeline.Config{
		Table:       flowtable.Config{IdleTimeout: c.IdleTimeout, ActiveTimeout: c.ActiveTimeout, MaxFlows: 4 * int(c.MaxFlows), Biflow: c.Biflow},
		KernelFlows: int(c.MaxFlows),
		Biflow:      c.Biflow,
		Interfaces:  p.names,
		TCPIdle:     tcpIdle(c),
	}
	if p.state != nil {
		cfg.Store = p.state
	}
	p.pipe = pipeline.New(pipeline.Kernel(p.d, p.state != nil), p.exps, p.clock, cfg, p.log)
	if p.img != nil {
		pending, resent := p.pipe.Restore(p.img)
		p.log.Info("carrying on from the flow state a probe before this one left",
			"state_dir", c.StateDir, "flows_held", len(p.img.Flows), "records_pending", pending,
			"records_maybe_sent_twice", resent, "saved_tick", p.img.Tick)
		p.img = nil
	}
	for _, m := range p.d.Leftovers {
		if err := p.d.Drain(m, p.pipe.Add); err != nil {
			p.log.Error("drain the old layout's table", "err", err)
		}
		m.Close()
	}
	// The last tick: what the kernel counted until now, and every flow
	// held, leave through the exporters before they close.
	return func(Plan) error {
		err := p.pipe.Finish()
		p.pipe.Summary()
		return err
	}, nil
}

func (p *probe) startMetrics(context.Context) (undo, error) {
	ms, err := metrics.Serve(p.cfg.Metrics, p.registry(), p.ready, p.log)
	if err != nil || ms == nil {
		return nil, err
	}
	return func(Plan) error { return ms.Close() }, nil
}

func (p *probe) startSpan(context.Context) (undo, error) {
	c := p.cfg
	mode, _ := attach.ParseMode(c.XDPMode)
	p.vlanMeta = map[string]bool{}
	if mode != attach.Generic {
		for _, iface := range c.Ifaces {
			p.vlanMeta[iface], _ = span.VLANMetadata(iface)
		}
	}
	spanMode := c.Span || c.Action == "drop"
	// Errors putting an interface back are logged: the rest of the stop goes on.
	stop := func(pl Plan) error {
		for _, sp := range p.prepared {
			if !pl.RestoreInterfaces {
				if sp.Changed() {
					p.log.Info("promiscuous mode and offloads stay as set for the pinned program; `xdpflow-probe --detach` does not restore them", "iface", sp.Iface)
				}
				continue
			}
			if err := sp.Restore(); err != nil {
				p.log.Error("restore interface", "iface", sp.Iface, "err", err)
			}
		}
		return nil
	}
	for _, iface := range c.Ifaces {
		if !spanMode && !c.FixOffloads {
			for _, f := range span.Warnings(iface, p.vlanMeta[iface]) {
				p.log.Warn(f.Message, "iface", iface)
			}
			continue
		}
		sp, err := span.Prepare(iface, span.Options{Promisc: spanMode, FixOffloads: c.FixOffloads, VLANMetadata: p.vlanMeta[iface]}, p.log)
		if err != nil {
			return nil, errors.Join(err, stop(Plan{RestoreInterfaces: true}))
		}
		p.prepared = append(p.prepared, sp)
	}
	return stop, nil
}

func (p *probe) startAttach(context.Context) (undo, error) {
	c := p.cfg
	mode, _ := attach.ParseMode(c.XDPMode)
	var atts []*attach.Attachment
	var owned []interface{ Close() error } // VLAN-metadata variants: the links hold them while attached
	ifaces := p.pipe.Interfaces()
	// Errors letting go of a link are logged: the rest of the stop goes on.
	stop := func(pl Plan) error {
		for _, a := range atts {
			var err error
			if pl.DetachLinks {
				err = a.Detach()
			} else {
				err = a.Close()
			}
			if err != nil {
				p.log.Error("detach", "iface", a.Iface, "err", err)
			}
			ifaces[uint32(a.Ifindex)].Attached.Store(false)
		}
		for _, prog := range owned {
			prog.Close()
		}
		return nil
	}
	for _, iface := range c.Ifaces {
		plain := attach.Programs{Plain: p.d.Program, Frags: p.d.FragsProgram}
		progs := plain
		if p.vlanMeta[iface] {
			i, _ := net.InterfaceByName(iface)
			vp, err := p.d.VLANProgram(i.Index)
			if err != nil {
				p.log.Warn("VLAN tags the NIC strips cannot be read from the driver: turn rxvlan off (--fix-offloads)", "iface", iface, "err", err)
			} else {
				progs = attach.Programs{Plain: vp}
				owned = append(owned, vp)
				// Its multi-buffer twin, for jumbo frames; without it the
				// plain program's twin is the fallback.
				if vf, err := p.d.VLANFragsProgram(i.Index); err == nil {
					progs.Frags = vf
					owned = append(owned, vf)
				}
			}
		}
		m := mode
		if progs != plain {
			// Device-bound: native mode only. Where the driver refuses it,
			// the plain program is tried in the mode asked for (auto
			// falling back to generic then).
			m = attach.Native
		}
		a, err := attach.AttachWith(iface, progs, m, c.Force, c.PinPath, p.log)
		if err != nil && progs != plain {
			vlanErr := err
			progs = plain
			a, err = attach.AttachWith(iface, progs, mode, c.Force, c.PinPath, p.log)
			switch {
			case err == nil && a.Mode == attach.Generic:
				// Native mode refused altogether: Attach said why, in
				// one line; the VLAN tags are one more thing it costs.
				p.log.Warn("VLAN tags the NIC strips cannot be read in generic mode: turn rxvlan off (--fix-offloads)", "iface", iface)
			case err == nil:
				p.log.Warn("attaching the VLAN-metadata program failed: using the plain one", "iface", iface, "err", vlanErr)
			}
		}
		if err != nil {
			// The plan decides what becomes of the interfaces attached so far.
			return stop, err
		}
		atts = append(atts, a)
		p.attached = true
		ifaces[uint32(a.Ifindex)].Attached.Store(true)
		p.log.Info("attached", "iface", iface, "ifindex", a.Ifindex, "mode", a.Mode, "action", c.Action, "took_over_pinned_link", a.Reused,
			"vlan_metadata", progs != plain, "multi_buffer", a.Frags)
	}
	return stop, nil
}

func (p *probe) startSamples(context.Context) (undo, error) {
	c := p.cfg
	var sinks []samples.Sink
	if c.Pcap != "" {
		ps, err := samples.NewPcap(c.Pcap)
		if err != nil {
			return nil, fmt.Errorf("--pcap: %w", err)
		}
		sinks = append(sinks, ps)
	}
	if c.Kafka.SamplesTopic != "" {
		sinks = append(sinks, kafka.NewSamples(p.prod, c.Kafka.SamplesTopic, p.format, p.meta))
	}
	if len(sinks) == 0 {
		if c.SampleRate > 0 {
			p.log.Warn("header sampling is on but nothing reads the samples: add --pcap FILE or --kafka-samples-topic", "sample_rate", c.SampleRate)
		}
		return nil, nil
	}
	r, err := samples.NewReader(p.d.Samples, sinks, p.clock, p.log)
	if err != nil {
		for _, k := range sinks {
			k.Close()
		}
		return nil, err
	}
	p.samples.Store(r) // run reads it; it stops when the run does
	return nil, nil
}

// dropPrivileges keeps only what the rest of the run needs: bpf() on our
// maps, and netlink/ethtool at exit if interfaces must be put back.
func (p *probe) dropPrivileges(context.Context) (undo, error) {
	keep, kept := []int{caps.BPF}, "CAP_BPF"
	for _, sp := range p.prepared {
		if sp.Changed() {
			keep, kept = append(keep, caps.NetAdmin), "CAP_BPF CAP_NET_ADMIN"
			break
		}
	}
	if err := caps.Keep(keep...); err != nil {
		p.log.Warn("capabilities not dropped", "err", err)
	} else {
		p.log.Info("capabilities dropped", "kept", kept)
	}
	return nil, nil
}

// detachOnly is `--detach` without exporters: take the program off and
// remove the pins; what the pinned tables still hold is not exported.
func detachOnly(c *Config, log *slog.Logger) error {
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

// ports16 converts validated flag ports (1-65535); nil stays nil (the
// datapath's defaults).
func ports16(p []uint) []uint16 {
	if p == nil {
		return nil
	}
	out := make([]uint16, len(p))
	for i, v := range p {
		out[i] = uint16(v)
	}
	return out
}

// tcpIdle is how long a TCP conversation's handshake state outlives its
// last packet: the flow idle timeout (a flow quiet for longer has ended
// anyway). Zero without --tcp-health.
func tcpIdle(c *Config) time.Duration {
	if !c.TCPHealth {
		return 0
	}
	return c.IdleTimeout
}

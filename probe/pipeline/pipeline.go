// Package pipeline is one pass of the probe's data road, run every drain
// interval: take the kernel's counts out (rotate and drain), merge them
// into the flow table, expire what is due, pair directions (--biflow) and
// hand the records to every exporter.
//
// It reads the kernel through Source, which the real datapath and the
// tests' fakes both satisfy.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/xdpflow/xdpflow/bpf"
	"github.com/xdpflow/xdpflow/internal/ratelimit"
	"github.com/xdpflow/xdpflow/probe/biflow"
	"github.com/xdpflow/xdpflow/probe/export"
	"github.com/xdpflow/xdpflow/probe/flowtable"
	"github.com/xdpflow/xdpflow/schemas"
)

// Source is where the counts come from.
type Source interface {
	// Rotate swaps the kernel tables and calls fn for every flow of the
	// one taken out, which is then empty.
	Rotate(fn func(bpf.FlowKey, bpf.FlowValue)) error
	// Stats are the datapath's own counters.
	Stats() (bpf.Stats, error)
}

// Config of a Pipeline.
type Config struct {
	Table flowtable.Config
	// KernelFlows is the size of a kernel table (--max-flows): past 3/4 of
	// it the drain interval shortens.
	KernelFlows int
	Biflow      bool // pair directions before export
	// Interfaces are the capture interfaces by ifindex, counted apart.
	Interfaces map[uint32]string
}

// Pipeline runs ticks. Tick and Run are for one goroutine; Snapshot and
// Interfaces may be read from any.
type Pipeline struct {
	src   Source
	table *flowtable.Table
	exps  []export.Exporter
	clock *bpf.Clock
	log   *slog.Logger
	cfg   Config

	out        []schemas.Flow
	lastDrain  int                // flows in the last drained table
	failedSeen uint64             // datapath update failures already reported
	pressure   uint64             // ticks run early because of kernel table pressure
	warn       *ratelimit.Limiter // pressure warnings

	ifaces map[uint32]*Interface
	snap   atomic.Pointer[Snapshot]
}

// Interface are the packets and bytes drained from one capture interface.
type Interface struct {
	Name           string
	Packets, Bytes atomic.Uint64
	Attached       atomic.Bool // set by whoever attaches the program
}

// Snapshot is what scrapes read of the pipeline, replaced after every tick.
type Snapshot struct {
	Table       flowtable.Stats
	KernelFlows int // flows in the last drained kernel table
	Pressure    uint64
}

// New returns a Pipeline reading src and exporting to exps.
func New(src Source, exps []export.Exporter, clock *bpf.Clock, cfg Config, log *slog.Logger) *Pipeline {
	p := &Pipeline{
		src:    src,
		table:  flowtable.New(cfg.Table),
		exps:   exps,
		clock:  clock,
		log:    log,
		cfg:    cfg,
		warn:   ratelimit.Every(time.Minute),
		ifaces: map[uint32]*Interface{},
	}
	for idx, name := range cfg.Interfaces {
		p.ifaces[idx] = &Interface{Name: name}
	}
	p.snap.Store(&Snapshot{Table: p.table.Stats()})
	return p
}

// Interfaces are the per-interface counters, by ifindex.
func (p *Pipeline) Interfaces() map[uint32]*Interface { return p.ifaces }

// Snapshot returns the counters as of the last tick.
func (p *Pipeline) Snapshot() *Snapshot { return p.snap.Load() }

// Add merges one flow into the table: the leftovers of an older datapath
// layout go in this way before the first tick.
func (p *Pipeline) Add(k bpf.FlowKey, v bpf.FlowValue) {
	p.table.Add(k, v)
	if c := p.ifaces[k.InIf]; c != nil {
		c.Packets.Add(v.Packets)
		c.Bytes.Add(v.Bytes)
	}
}

// Run ticks every interval (shorter under kernel table pressure) until
// ctx ends. A tick that fails ends it with that error: the datapath can
// no longer be read.
func (p *Pipeline) Run(ctx context.Context, interval time.Duration) error {
	cur := interval
	timer := time.NewTimer(cur)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
			if err := p.Tick(false); err != nil {
				return err
			}
			cur = p.nextInterval(cur, interval)
			timer.Reset(cur)
		}
	}
}

// Finish is the last tick: every flow ends (forced) and the exporters
// flush; it returns the flush errors.
func (p *Pipeline) Finish() error {
	err := p.Tick(true)
	for _, x := range p.exps {
		if ferr := x.Flush(); ferr != nil {
			err = errors.Join(err, fmt.Errorf("flush %s: %w", x, ferr))
		}
	}
	return err
}

// Tick drains the kernel and exports what is due; final ends every flow.
func (p *Pipeline) Tick(final bool) error {
	// The table taken out holds every packet since the last tick; the
	// other one was emptied then.
	n := 0
	err := p.src.Rotate(func(k bpf.FlowKey, v bpf.FlowValue) {
		p.Add(k, v)
		n++
	})
	if err != nil {
		return fmt.Errorf("drain the kernel flow table: %w", err)
	}
	p.lastDrain = n
	now := p.clock.Now()
	if final {
		p.out = p.table.Flush(schemas.EndForced, p.clock.Offset(), p.out[:0])
	} else {
		p.out = p.table.Expire(now, p.clock.Offset(), p.out[:0])
	}
	if p.cfg.Biflow {
		p.out = biflow.Pair(p.out)
	}
	p.checkDatapath()
	// An exporter error is logged, not fatal: the others go on.
	for _, x := range p.exps {
		if err := x.Export(p.out); err != nil {
			p.log.Error("export failed", "exporter", x.String(), "err", err)
		}
	}
	p.snap.Store(&Snapshot{Table: p.table.Stats(), KernelFlows: n, Pressure: p.pressure})
	return nil
}

// Records are the records of the last tick, valid until the next.
func (p *Pipeline) Records() []schemas.Flow { return p.out }

// nextInterval shortens the drain interval while the kernel table fills
// past 3/4 of its size (so flows are taken out before inserts fail) and
// relaxes it back once the pressure is gone.
func (p *Pipeline) nextInterval(cur, configured time.Duration) time.Duration {
	switch {
	case p.lastDrain > p.cfg.KernelFlows*3/4:
		p.pressure++
		if ok, held := p.warn.Allow(time.Now()); ok {
			p.log.Warn("kernel flow table nearly full: draining faster; raise --max-flows if this persists",
				"flows_in_interval", p.lastDrain, "max_flows", p.cfg.KernelFlows, "ticks_since_last_warning", held)
		}
		return max(cur/2, 50*time.Millisecond)
	case p.lastDrain < p.cfg.KernelFlows/4 && cur < configured:
		return min(cur*2, configured)
	}
	return cur
}

// checkDatapath reports packets the datapath could not put in a flow.
func (p *Pipeline) checkDatapath() {
	st, err := p.src.Stats()
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

// Summary logs the datapath's totals and the records exported by reason.
func (p *Pipeline) Summary() {
	st, err := p.src.Stats()
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

// Kernel is the Source of the real datapath.
func Kernel(d *bpf.Datapath) Source { return kernel{d} }

type kernel struct{ d *bpf.Datapath }

func (k kernel) Rotate(fn func(bpf.FlowKey, bpf.FlowValue)) error {
	old, err := k.d.Rotate()
	if err != nil {
		return err
	}
	return k.d.Drain(old, fn)
}

func (k kernel) Stats() (bpf.Stats, error) { return k.d.Stats() }

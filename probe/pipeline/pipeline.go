// Package pipeline is one pass of the probe's data road, run every drain
// interval: take the kernel's counts out (rotate and drain), merge them
// into the flow table, expire what is due, pair directions (--biflow) and
// hand the records to every exporter.
//
// It reads the kernel through Source, which the real datapath and the
// tests' fakes both satisfy. Given a Store (the flow state), every tick
// is saved so that a crash at any instruction loses nothing (see Tick);
// records wait in an outbox until every exporter has settled them.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"

	"github.com/xdpflow/xdpflow/bpf"
	"github.com/xdpflow/xdpflow/internal/ratelimit"
	"github.com/xdpflow/xdpflow/probe/biflow"
	"github.com/xdpflow/xdpflow/probe/export"
	"github.com/xdpflow/xdpflow/probe/flowstate"
	"github.com/xdpflow/xdpflow/probe/flowtable"
	"github.com/xdpflow/xdpflow/schemas"
)

// Source is where the counts come from.
type Source interface {
	// Rotate swaps the kernel tables and returns the one taken out.
	Rotate() (Quiet, error)
	// Stats are the datapath's own counters.
	Stats() (bpf.Stats, error)
}

// Quiet is a kernel table out of service: nothing writes into it.
type Quiet interface {
	// Read calls fn for every flow in the table.
	Read(fn func(bpf.FlowKey, bpf.FlowValue)) error
	// Clear empties the table (after Read, once what it held is safe).
	Clear() error
	// ID names the table across restarts of the probe.
	ID() uint32
}

// Store keeps the pipeline's state where a crash cannot take it
// (*flowstate.State).
type Store interface {
	Commit(*flowstate.Image) error
	MarkCleared()
	MarkSettled(exporter int, n uint64)
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
	// Store, when set, makes every tick crash-safe: see Tick.
	Store Store
	// TCPIdle, when set (--tcp-health), is how long a TCP conversation's
	// handshake state may go untouched before a tick sweeps it out of the
	// datapath (a Source that is a TCPSweeper), so conversations that end
	// with FIN or just stop do not fill the map. Sweeps run at most every
	// TCPIdle/2: each walks the whole map.
	TCPIdle time.Duration
}

// TCPSweeper is a Source holding TCP conversation state (*bpf.Datapath's
// SweepTCP): it removes the conversations not updated since before
// (CLOCK_MONOTONIC ns) and says how many.
type TCPSweeper interface {
	SweepTCP(before uint64) (int, error)
}

// SeqCarrier is a Source that carries TCP sequence state from one kernel
// table to the next (*bpf.Datapath's CarryStats): the flows it could not
// carry, by reason.
type SeqCarrier interface {
	CarryStats() bpf.CarryStats
}

// Pipeline runs ticks. Tick and Run are for one goroutine; Snapshot and
// Interfaces may be read from any.
type Pipeline struct {
	src   Source
	table *flowtable.Table
	exps  []*exporter
	clock *bpf.Clock
	log   *slog.Logger
	cfg   Config

	// outbox holds the records some exporter has not settled yet, oldest
	// first (without a Store: only the tick's records).
	outbox       []schemas.Flow
	held         []flowtable.Held // reused for each image
	tick         uint64           // ticks committed to the Store
	saved        bool             // the Store holds this outbox (the last save worked)
	lastRecords  int              // records the last tick made
	commitErrors atomic.Uint64    // ticks the Store could not save
	commitWarn   *ratelimit.Limiter

	lastDrain  int                // flows in the last drained table
	failedSeen uint64             // datapath update failures already reported
	carrySeen  bpf.CarryStats     // flows not carried already reported
	pressure   uint64             // ticks run early because of kernel table pressure
	warn       *ratelimit.Limiter // pressure warnings

	ifaces map[uint32]*Interface
	snap   atomic.Pointer[Snapshot]

	lastSweep uint64 // clock of the last TCP conversation sweep
	tcpSwept  uint64 // TCP conversations swept out, idle
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
	Pending     int    // records some exporter has not settled
	TCPSwept    uint64 // idle TCP conversations swept out of the datapath
}

// New returns a Pipeline reading src and exporting to exps.
func New(src Source, exps []export.Exporter, clock *bpf.Clock, cfg Config, log *slog.Logger) *Pipeline {
	p := &Pipeline{
		src:        src,
		table:      flowtable.New(cfg.Table),
		clock:      clock,
		log:        log,
		cfg:        cfg,
		warn:       ratelimit.Every(time.Minute),
		commitWarn: ratelimit.Every(10 * time.Second),
		ifaces:     map[uint32]*Interface{},
	}
	for _, x := range exps {
		e := &exporter{x: x}
		e.settling, _ = x.(export.Settling)
		p.exps = append(p.exps, e)
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
	for _, e := range p.exps {
		if ferr := e.x.Flush(); ferr != nil {
			err = errors.Join(err, fmt.Errorf("flush %s: %w", e.x, ferr))
		}
	}
	return err
}

// Tick drains the kernel and exports what is due; final ends every flow.
//
// With a Store, the order makes a crash at any instruction lose nothing:
// the quiet table is read, not emptied; the flows held and the records
// due are committed to the Store; only then is the table emptied (a
// restart empties it first if the crash came in between); records leave
// for each exporter in chunks that fit one message, each chunk marked
// settled once the exporter has it safe, so a crash can only send again
// the chunk in flight.
func (p *Pipeline) Tick(final bool) error {
	// The table taken out holds every packet since the last tick; the
	// other one was emptied then.
	q, err := p.src.Rotate()
	if err != nil {
		return fmt.Errorf("switch the kernel flow tables: %w", err)
	}
	n := 0
	err = q.Read(func(k bpf.FlowKey, v bpf.FlowValue) {
		p.Add(k, v)
		n++
	})
	if err != nil {
		return fmt.Errorf("drain the kernel flow table: %w", err)
	}
	p.lastDrain = n
	now := p.clock.Now()
	first := len(p.outbox)
	if final {
		p.outbox = p.table.Flush(schemas.EndForced, p.clock.Offset(), p.outbox)
	} else {
		p.outbox = p.table.Expire(now, p.clock.Offset(), p.outbox)
	}
	if p.cfg.Biflow {
		p.outbox = p.outbox[:first+len(biflow.Pair(p.outbox[first:]))]
	}
	p.lastRecords = len(p.outbox) - first
	p.checkDatapath()
	if err := p.sweepTCP(now); err != nil {
		return err
	}
	if p.cfg.Store != nil {
		p.commit(q.ID())
	}
	if err := q.Clear(); err != nil {
		return fmt.Errorf("clear the kernel flow table: %w", err)
	}
	if p.saved {
		p.cfg.Store.MarkCleared()
	}
	p.export()
	p.snap.Store(&Snapshot{Table: p.table.Stats(), KernelFlows: n, Pressure: p.pressure, Pending: len(p.outbox), TCPSwept: p.tcpSwept})
	return nil
}

// sweepTCP removes the TCP conversations idle for TCPIdle, at most every
// TCPIdle/2.
func (p *Pipeline) sweepTCP(now uint64) error {
	sw, ok := p.src.(TCPSweeper)
	idle := uint64(p.cfg.TCPIdle)
	if !ok || idle == 0 || now < idle || now-p.lastSweep < idle/2 {
		return nil
	}
	p.lastSweep = now
	n, err := sw.SweepTCP(now - idle)
	p.tcpSwept += uint64(n)
	if err != nil {
		return fmt.Errorf("sweep idle TCP conversations: %w", err)
	}
	return nil
}

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
	if c, ok := p.src.(SeqCarrier); ok {
		cs := c.CarryStats()
		if cs != p.carrySeen {
			p.log.Warn("TCP flows whose sequence state was not carried to the next kernel table: their next retransmission may go uncounted; raise --tcp-conversations",
				"flows", cs.Full-p.carrySeen.Full, "reason", "carry map full")
			p.carrySeen = cs
		}
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

// Kernel is the Source of the real datapath. With keep, Read leaves the
// quiet table as it is and Clear empties it (a Store needs that order);
// without, Read drains it in one pass and Clear has nothing to do.
func Kernel(d *bpf.Datapath, keep bool) Source { return kernel{d, keep} }

type kernel struct {
	d    *bpf.Datapath
	keep bool
}

func (k kernel) Rotate() (Quiet, error) {
	t, err := k.d.Rotate()
	return quiet{k.d, t, k.keep}, err
}

func (k kernel) Stats() (bpf.Stats, error) { return k.d.Stats() }

func (k kernel) SweepTCP(before uint64) (int, error) { return k.d.SweepTCP(before) }

func (k kernel) CarryStats() bpf.CarryStats { return k.d.CarryStats() }

type quiet struct {
	d    *bpf.Datapath
	t    *ebpf.Map
	keep bool
}

func (q quiet) Read(fn func(bpf.FlowKey, bpf.FlowValue)) error {
	if q.keep {
		return q.d.Read(q.t, fn)
	}
	return q.d.Drain(q.t, fn)
}

func (q quiet) Clear() error {
	if q.keep {
		return q.d.Clear(q.t)
	}
	return nil
}

func (q quiet) ID() uint32 { return bpf.TableID(q.t) }

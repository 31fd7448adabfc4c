package pipeline

import (
	"time"

	"github.com/xdpflow/xdpflow/probe/export"
	"github.com/xdpflow/xdpflow/probe/flowstate"
	"github.com/xdpflow/xdpflow/probe/flowtable"
)

// chunk is how many records go to an exporter at a time with a Store:
// the largest record (an IPv6 biflow with a direction, 143 bytes) fits 8
// to a 1400-byte message, so a crash sends at most one message again.
const chunk = 8

// exporter is an exporter and how far it has got through the outbox.
type exporter struct {
	x        export.Exporter
	settling export.Settling // nil: a batch is settled when Export returns
	given    int             // outbox[:given] were given to Export
	settled  int             // outbox[:settled] are settled (<= given)
	// off maps a settling exporter's Settled() count to the outbox: it
	// has settled outbox[:Settled()+off].
	off int
	// resent are the records given again after a restart that the crashed
	// probe may already have sent (the chunk in flight, or what a
	// background exporter had not settled): each may be a duplicate.
	resent uint64
}

// settledNow is how far a settling exporter has settled the outbox.
func (e *exporter) settledNow() int { return min(int(e.settling.Settled())+e.off, e.given) }

// commit saves the flows held and the outbox as tick p.tick+1, read from
// the kernel table id. A Store that fails (a full tmpfs) is logged and
// counted: the probe goes on, without crash safety until a commit works.
func (p *Pipeline) commit(id uint32) {
	p.held = p.held[:0]
	p.table.Each(func(h *flowtable.Held) { p.held = append(p.held, *h) })
	img := &flowstate.Image{Tick: p.tick + 1, QuietTable: id, Flows: p.held, Pending: p.outbox}
	for _, e := range p.exps {
		img.Exporters = append(img.Exporters, e.x.String())
		img.Settled = append(img.Settled, uint64(e.settled))
	}
	// Marks made after a failed save would land on the older image, whose
	// outbox they do not describe: none until a save works again.
	p.saved = false
	if err := p.cfg.Store.Commit(img); err != nil {
		p.commitErrors.Add(1)
		if ok, held := p.commitWarn.Allow(time.Now()); ok {
			p.log.Error("flow state not saved: a crash now would lose what was drained since the last save; free space where the state lives",
				"err", err, "failures_since_last_report", held)
		}
		return
	}
	p.tick++
	p.saved = true
}

// export gives each exporter the records it has not had, and drops from
// the outbox what every exporter has settled.
func (p *Pipeline) export() {
	size := len(p.outbox)
	if p.cfg.Store != nil {
		size = chunk
	}
	for i, e := range p.exps {
		var firstErr error
		for e.given < len(p.outbox) {
			end := min(e.given+size, len(p.outbox))
			// An error is about this batch (logged below, counted by the
			// exporter): the records are not sent again.
			if err := e.x.Export(p.outbox[e.given:end]); err != nil && firstErr == nil {
				firstErr = err
			}
			e.given = end
			// Marked chunk by chunk: a crash sends again at most the one
			// in flight.
			if e.settling == nil {
				p.markSettled(i, e, end)
			} else {
				p.markSettled(i, e, e.settledNow())
			}
		}
		if e.settling != nil { // what it settled since
			p.markSettled(i, e, e.settledNow())
		}
		if firstErr != nil {
			p.log.Error("export failed", "exporter", e.x.String(), "err", firstErr)
		}
	}
	p.compact()
}

func (p *Pipeline) markSettled(i int, e *exporter, n int) {
	if n <= e.settled {
		return
	}
	e.settled = n
	if p.saved {
		p.cfg.Store.MarkSettled(i, uint64(n))
	}
}

// compact drops the records every exporter has settled (without a Store,
// every record given: nothing would resend the rest after a crash).
func (p *Pipeline) compact() {
	k := len(p.outbox)
	for _, e := range p.exps {
		if p.cfg.Store != nil {
			k = min(k, e.settled)
		} else {
			k = min(k, e.given)
		}
	}
	if k == 0 {
		return
	}
	p.outbox = p.outbox[:copy(p.outbox, p.outbox[k:])]
	for _, e := range p.exps {
		e.given -= k
		e.settled = max(e.settled-k, 0)
		e.off -= k
	}
}

// Settle reads, once more, how far the exporters that send in the
// background have got (after they were closed: all of it) and saves it.
func (p *Pipeline) Settle() {
	for i, e := range p.exps {
		if e.settling != nil {
			p.markSettled(i, e, e.settledNow())
		}
	}
}

// Restore carries on from the state a crashed (or stopped) probe left:
// its flows go back into the table and its pending records to every
// exporter that has not settled them; an exporter the state does not know
// gets them all. It returns how many records are pending, and how many of
// those may reach a collector twice.
func (p *Pipeline) Restore(img *flowstate.Image) (pending, resent int) {
	for i := range img.Flows {
		p.table.Restore(&img.Flows[i])
	}
	p.outbox = append(p.outbox[:0], img.Pending...)
	for _, e := range p.exps {
		e.given, e.settled = 0, 0
		for j, name := range img.Exporters {
			if name == e.x.String() {
				e.given = int(min(img.Settled[j], uint64(len(p.outbox))))
				e.settled = e.given
				// At most the chunk in flight when the crash came can
				// have reached the collector: a background exporter's
				// unsettled records were still in the process (Kafka: a
				// batch the brokers took without the answer arriving can
				// be more).
				n := min(len(p.outbox)-e.given, chunk)
				e.resent += uint64(n)
				resent += n
			}
		}
		e.off = e.given
		if e.settling != nil { // what it settles from now on follows
			e.off -= int(e.settling.Settled())
		}
	}
	p.tick, p.saved = img.Tick, true
	return len(p.outbox), resent
}

// Resent counts, by exporter, the records given again after a restart
// that the crashed probe may have sent already.
func (p *Pipeline) Resent() map[string]uint64 {
	m := map[string]uint64{}
	for _, e := range p.exps {
		m[e.x.String()] = e.resent
	}
	return m
}

// CommitErrors counts the ticks the Store could not save.
func (p *Pipeline) CommitErrors() uint64 { return p.commitErrors.Load() }

package decode

import "github.com/xdpflow/xdpflow/schemas"

// pendingSet is a data set that arrived before its template, kept with its
// message's header so it decodes as it would have on arrival.
type pendingSet struct {
	tid  uint16
	h    msgHeader
	data []byte
}

// hold keeps a copy of a data set whose template is unknown, within
// PendingMessages per domain, maxPendingBytes per exporter and
// maxPendingTotal over all: the oldest of the domain make room, and what
// still does not fit is dropped (counted in PendingDropped, as is all
// held data that is never decoded).
func (d *Decoder) hold(e *exporter, dom *domain, tid uint16, h *msgHeader, set []byte) {
	if len(set) == 0 { // nothing to hold; counted so that misses = decoded + dropped
		e.c.PendingDropped++
		return
	}
	for len(dom.pending) > 0 && (len(dom.pending) >= d.cfg.PendingMessages || e.pendingBytes+len(set) > maxPendingBytes) {
		e.unholdFirst(dom)
		e.c.PendingDropped++
	}
	if e.pendingBytes+len(set) > maxPendingBytes || !e.pendingMem.take(int64(len(set))) {
		e.c.PendingDropped++
		return
	}
	dom.pending = append(dom.pending, pendingSet{tid: tid, h: *h, data: append([]byte(nil), set...)})
	e.pendingBytes += len(set)
	e.hasPending.Store(true)
}

// unholdFirst removes the domain's oldest held set; the caller counts it.
func (e *exporter) unholdFirst(dom *domain) {
	e.unheld(len(dom.pending[0].data))
	dom.pending[0] = pendingSet{}
	dom.pending = dom.pending[1:]
}

// unheld gives back n bytes of held data.
func (e *exporter) unheld(n int) {
	e.pendingBytes -= n
	e.pendingMem.give(int64(n))
	if e.pendingBytes == 0 {
		e.hasPending.Store(false)
	}
}

// expirePending drops held data sets older than PendingAge, by the
// receive time the caller gives.
func (d *Decoder) expirePending(e *exporter, nowNs uint64) {
	if e.pendingBytes == 0 {
		return
	}
	age := uint64(d.cfg.PendingAge)
	for _, dom := range e.domains {
		keep := dom.pending[:0]
		for _, p := range dom.pending {
			if p.h.receivedNs+age < nowNs {
				e.unheld(len(p.data))
				e.c.PendingDropped++
				continue
			}
			keep = append(keep, p)
		}
		clear(dom.pending[len(keep):])
		dom.pending = keep
	}
}

// replay decodes the held data sets of template tid, in arrival order.
func (d *Decoder) replay(e *exporter, dom *domain, s *scratch, tid uint16, t *template, emit func(*schemas.FlowMessage)) {
	keep := dom.pending[:0]
	for _, p := range dom.pending {
		if p.tid != tid {
			keep = append(keep, p)
			continue
		}
		e.unheld(len(p.data))
		e.c.PendingDecoded++
		s.replay = p.h
		if _, err := e.decodeData(s, dom, t, &s.replay, p.data, emit); err != nil {
			e.c.Dropped[ReasonRecord]++
		}
	}
	clear(dom.pending[len(keep):])
	dom.pending = keep
}

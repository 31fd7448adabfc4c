// Package flowtable turns the datapath's per-epoch counts into exported
// flow records: it merges each drained table into long-lived flows kept in
// userspace and decides, on every tick, which flows end (idle timeout, TCP
// FIN/RST, table pressure) and which emit an interim record (active
// timeout). The records of one flow add up exactly to its traffic: every
// packet is drained once (see docs/datapath.md) and is reported in exactly
// one record.
package flowtable

import (
	"net/netip"

	"sort"
	"time"

	"github.com/xdpflow/xdpflow/bpf"
	"github.com/xdpflow/xdpflow/probe/biflow"
	"github.com/xdpflow/xdpflow/schemas"
)

// Config of a Table.
type Config struct {
	IdleTimeout   time.Duration // no packet for this long: the flow ends
	ActiveTimeout time.Duration // a flow older than this emits a record and goes on
	// MaxFlows caps the flows kept in userspace; past it the least recently
	// seen are ended with reason lack-of-resources.
	MaxFlows int
	// Biflow ends a flow's reverse direction (biflow.ReverseKey: on any
	// interface, as a TAP delivers each direction on its own port) with
	// it, so that both are in the same batch to be paired (--biflow).
	Biflow bool
}

const (
	tcpFIN = 0x01
	tcpRST = 0x04
)

type entry struct {
	v        bpf.FlowValue // counts not yet exported; FirstSeenNs starts the pending record
	lastSeen uint64        // last packet ever (monotonic ns); survives an active export
}

// Stats of a Table.
type Stats struct {
	Active   int                          // flows held now
	Exported map[schemas.EndReason]uint64 // records by end reason
	Pressure uint64                       // flows ended early because MaxFlows was reached
}

// Table holds the flows between exports. It is not safe for concurrent use.
type Table struct {
	cfg      Config
	flows    map[bpf.FlowKey]*entry
	exported map[schemas.EndReason]uint64
	pressure uint64
	// ifs are the interfaces flows were added on (with Biflow only): a
	// reverse direction is looked up on each. A probe captures on a
	// handful, fixed at start.
	ifs []uint32
}

// New returns an empty table.
func New(cfg Config) *Table {
	return &Table{cfg: cfg, flows: make(map[bpf.FlowKey]*entry), exported: map[schemas.EndReason]uint64{}}
}

// Add merges one drained (key, value) into the table.
func (t *Table) Add(k bpf.FlowKey, v bpf.FlowValue) {
	if v.Packets == 0 {
		return
	}
	e, ok := t.flows[k]
	if !ok {
		t.flows[k] = &entry{v: v, lastSeen: v.LastSeenNs}
		if t.cfg.Biflow {
			t.noteIf(k.InIf)
		}
		return
	}
	e.v.Merge(v)
	if v.LastSeenNs > e.lastSeen {
		e.lastSeen = v.LastSeenNs
	}
}

// Held is one flow the table holds: the counts it has not exported yet,
// and the last packet it saw.
type Held struct {
	Key      bpf.FlowKey
	Value    bpf.FlowValue
	LastSeen uint64
}

// Each calls fn for every flow held, for the crash-safe flow state.
func (t *Table) Each(fn func(*Held)) {
	var h Held
	for k, e := range t.flows {
		h = Held{k, e.v, e.lastSeen}
		fn(&h)
	}
}

// Restore puts back a flow Each gave (a restarted probe carrying on).
func (t *Table) Restore(h *Held) {
	t.flows[h.Key] = &entry{v: h.Value, lastSeen: h.LastSeen}
	if t.cfg.Biflow {
		t.noteIf(h.Key.InIf)
	}
}

// Expire appends to out the records due at monotonic time now (ns) and
// forgets the flows that ended. wallOffset converts monotonic to Unix
// time: unix = mono + wallOffset.
func (t *Table) Expire(now uint64, wallOffset int64, out []schemas.Flow) []schemas.Flow {
	idle, active := uint64(t.cfg.IdleTimeout), uint64(t.cfg.ActiveTimeout)
	first := len(out)
	for k, e := range t.flows {
		switch {
		case e.v.Packets == 0:
			// Exported at an active timeout and quiet since: nothing to say.
			if since(now, e.lastSeen) >= idle {
				delete(t.flows, k)
			}
		case e.v.TcpFlags&(tcpFIN|tcpRST) != 0:
			out = t.emit(out, k, e, schemas.EndOfFlow, wallOffset)
			delete(t.flows, k)
		case since(now, e.lastSeen) >= idle:
			out = t.emit(out, k, e, schemas.EndIdle, wallOffset)
			delete(t.flows, k)
		case since(now, e.v.FirstSeenNs) >= active:
			out = t.emit(out, k, e, schemas.EndActive, wallOffset)
			e.v = bpf.FlowValue{}
		}
	}
	if t.cfg.Biflow {
		out = t.endPartners(out, first, wallOffset)
	}
	if t.cfg.MaxFlows > 0 && len(t.flows) > t.cfg.MaxFlows {
		out = t.shed(out, wallOffset)
	}
	return out
}

// noteIf adds i to the interfaces seen.
func (t *Table) noteIf(i uint32) {
	for _, x := range t.ifs {
		if x == i {
			return
		}
	}
	t.ifs = append(t.ifs, i)
}

// endPartners ends, with the same reason, the reverse directions
// (biflow.ReverseKey, on any interface) of the records out[first:] that
// are still held with packets pending.
func (t *Table) endPartners(out []schemas.Flow, first int, wallOffset int64) []schemas.Flow {
	for i := first; i < len(out); i++ {
		r, ok := biflow.ReverseKey(&out[i])
		if !ok {
			continue
		}
		reason := out[i].EndReason
		rk := bpf.FlowKey{VlanId: r.VlanId, SrcPort: r.SrcPort, DstPort: r.DstPort, Proto: r.Proto,
			SrcAddr: r.Src.As16(), DstAddr: r.Dst.As16(),
			TunnelType: uint8(r.TunnelType), TunnelId: r.TunnelId, ObservationPointId: r.ObservationPointId,
			MirrorType: uint8(r.MirrorType), SrcMac: r.SrcMac, DstMac: r.DstMac}
		for _, inIf := range t.ifs {
			rk.InIf = inIf
			e, ok := t.flows[rk]
			if !ok || e.v.Packets == 0 {
				continue
			}
			out = t.emit(out, rk, e, reason, wallOffset)
			if reason == schemas.EndActive {
				e.v = bpf.FlowValue{}
			} else {
				delete(t.flows, rk)
			}
		}
	}
	return out
}

// since is now - t, or 0 when t is later (the datapath's clock may run a
// tick ahead of the reader's).
func since(now, t uint64) uint64 {
	if t > now {
		return 0
	}
	return now - t
}

// shed ends the least recently seen flows until 90% of MaxFlows are left.
func (t *Table) shed(out []schemas.Flow, wallOffset int64) []schemas.Flow {
	type aged struct {
		k    bpf.FlowKey
		seen uint64
	}
	all := make([]aged, 0, len(t.flows))
	for k, e := range t.flows {
		all = append(all, aged{k, e.lastSeen})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].seen < all[j].seen })
	for _, a := range all[:len(all)-t.cfg.MaxFlows*9/10] {
		e := t.flows[a.k]
		if e.v.Packets > 0 {
			out = t.emit(out, a.k, e, schemas.EndLackOfResources, wallOffset)
		}
		delete(t.flows, a.k)
		t.pressure++
	}
	return out
}

// Flush ends every flow with reason (forced end at shutdown).
func (t *Table) Flush(reason schemas.EndReason, wallOffset int64, out []schemas.Flow) []schemas.Flow {
	for k, e := range t.flows {
		if e.v.Packets > 0 {
			out = t.emit(out, k, e, reason, wallOffset)
		}
		delete(t.flows, k)
	}
	return out
}

func (t *Table) emit(out []schemas.Flow, k bpf.FlowKey, e *entry, reason schemas.EndReason, wallOffset int64) []schemas.Flow {
	t.exported[reason]++
	start, end := int64(e.v.FirstSeenNs)+wallOffset, int64(e.v.LastSeenNs)+wallOffset
	if end < start {
		end = start
	}
	return append(out, schemas.Flow{
		SrcAddr:         k.Src(),
		DstAddr:         k.Dst(),
		SrcPort:         k.SrcPort,
		DstPort:         k.DstPort,
		Proto:           k.Proto,
		VlanId:          k.VlanId,
		InIf:            k.InIf,
		Packets:         e.v.Packets,
		Bytes:           e.v.Bytes,
		L2Bytes:         e.v.L2Bytes,
		TimeFlowStartNs: start,
		TimeFlowEndNs:   end,
		TcpFlags:        uint16(e.v.TcpFlags),
		IpTos:           e.v.IpTos,
		EndReason:       reason,
		FlowDirection:   schemas.Direction(e.v.FlowDirection),

		TunnelType:         schemas.TunnelType(k.TunnelType),
		TunnelId:           k.TunnelId,
		TunnelSrcAddr:      tunnelAddr(e.v.TunnelSrcAddr),
		TunnelDstAddr:      tunnelAddr(e.v.TunnelDstAddr),
		ObservationPointId: k.ObservationPointId,
		MirrorType:         schemas.MirrorType(k.MirrorType),
		SrcMac:             k.SrcMac,
		DstMac:             k.DstMac,
		MplsLabels:         e.v.MplsLabels,

		ClientNwDelayNs:  e.v.ClientNwDelayNs,
		ServerNwDelayNs:  e.v.ServerNwDelayNs,
		ApplLatencyNs:    e.v.ApplLatencyNs,
		TcpRetransmitted: e.v.TcpRetrans,
		TcpOutOfOrder:    e.v.TcpOoo,
		TcpZeroWindow:    e.v.TcpZeroWin,
	})
}

// tunnelAddr reads a tunnel endpoint (IPv4-mapped for IPv4, like the key's
// addresses; the tunnel's family is not the flow's): zero is no address.
func tunnelAddr(a [16]byte) netip.Addr {
	if a == ([16]byte{}) {
		return netip.Addr{}
	}
	return netip.AddrFrom16(a).Unmap()
}

// Stats returns a snapshot of the counters.
func (t *Table) Stats() Stats {
	s := Stats{Active: len(t.flows), Pressure: t.pressure, Exported: map[schemas.EndReason]uint64{}}
	for r, n := range t.exported {
		s.Exported[r] = n
	}
	return s
}

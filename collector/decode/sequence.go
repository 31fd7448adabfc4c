package decode

// seqTracker follows one domain's header sequence numbers. What a sequence
// number counts differs: IPFIX counts data records sent before the
// message, v5 flows, v9 export packets; the caller passes each message's
// count in the same unit.
type seqTracker struct {
	valid     bool
	next      uint32 // sequence number the next message should carry
	gap       uint64 // lost units not yet made up by late arrivals
	hasUptime bool
	uptime    uint32 // highest sysUptime seen (v5, v9)
}

// Thresholds, in the sequence's unit. A message behind the expected number
// by at most window is late (UDP reorders) or a duplicate; further behind,
// or ahead by more than maxGap, the exporter restarted (or its counter was
// reset): a reset, not a loss.
type seqLimits struct{ window, maxGap uint32 }

var (
	seqPackets = seqLimits{window: 1024, maxGap: 1 << 20}      // v9
	seqRecords = seqLimits{window: 1024 * 30, maxGap: 1 << 24} // IPFIX, v5
)

// uptimeSlackMs is how far sysUptime may go back (a late datagram) before
// it means the exporter restarted; uptimeWrapMs is how close to 2^32 ms
// (49.7 days) sysUptime must have been for a drop to be its wrap instead.
const (
	uptimeSlackMs = 60_000
	uptimeWrapMs  = 1<<32 - 3_600_000
)

// observeUptime checks a v5 / v9 header's sysUptime for an exporter
// restart before the sequence number is looked at.
func (t *seqTracker) observeUptime(uptime uint32, c *Counters) {
	if !t.hasUptime {
		t.hasUptime, t.uptime = true, uptime
		return
	}
	if uptime+uptimeSlackMs < t.uptime && t.uptime < uptimeWrapMs {
		c.Resets++
		t.valid = false // start over from this message, no loss counted
		t.gap = 0
		t.uptime = uptime
		return
	}
	if int32(uptime-t.uptime) > 0 {
		t.uptime = uptime
	}
}

// observe accounts for a message carrying sequence number seq and n units;
// known is false when n is not known (IPFIX data waiting for a template),
// in which case the next message resynchronises.
func (t *seqTracker) observe(seq, n uint32, known bool, lim seqLimits, c *Counters) {
	if !t.valid {
		t.valid, t.next = known, seq+n
		return
	}
	d := int64(int32(seq - t.next))
	switch {
	case d == 0:
	case d > 0 && d <= int64(lim.maxGap):
		c.Lost += uint64(d)
		t.gap += uint64(d)
	case d < 0 && -d <= int64(lim.window):
		// Late or duplicate: do not move next. A late message fills part
		// of a gap already counted as lost.
		c.OutOfOrder++
		fill := min(uint64(n), t.gap, c.Lost)
		c.Lost -= fill
		t.gap -= fill
		return
	default:
		c.Resets++
		t.gap = 0
	}
	t.valid, t.next = known, seq+n
}

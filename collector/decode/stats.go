package decode

import "net/netip"

// Reason is why a message (or part of one) was dropped.
type Reason uint8

const (
	ReasonTruncated        Reason = iota // shorter than its header
	ReasonVersion                        // not NetFlow v5, v9 or IPFIX
	ReasonLength                         // header length or v5 count disagrees with the datagram
	ReasonSetLength                      // a set shorter than its header or past the message end
	ReasonSetID                          // a reserved set id (IPFIX 0, 1, 4-255; v9 2-255)
	ReasonTemplateID                     // a template id below 256
	ReasonTemplate                       // a template record that does not fit its set, has no fields, too many fields or a record of length 0
	ReasonRecord                         // a data record running past its set (variable-length fields)
	ReasonTooManyExporters               // Config.MaxExporters reached
	ReasonTooManyDomains                 // too many observation domains from one exporter
	ReasonTooManyTemplates               // Config.MaxTemplatesPerExporter reached
	ReasonPanic                          // a bug: a panic was recovered while decoding
	ReasonTemplateMemory                 // Config.MaxTemplateBytes reached: a template, domain or interface name not kept
	NumReasons
)

var reasonNames = [NumReasons]string{
	"truncated", "bad_version", "bad_length", "bad_set_length", "bad_set_id", "bad_template_id",
	"bad_template", "bad_record", "too_many_exporters", "too_many_domains", "too_many_templates", "panic",
	"template_memory",
}

func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Counters are the decoder's counts, for one exporter or in total.
type Counters struct {
	Messages       uint64 // messages accepted (not dropped as malformed)
	Records        uint64 // flow records emitted
	OptionsRecords uint64 // options data records read (sampling, interface names, ...)
	Templates      uint64 // template and options template records learnt (refreshes included)
	Withdrawals    uint64 // IPFIX template withdrawals applied
	Lost           uint64 // sequence gaps: IPFIX and v5 data records, v9 export packets; net of late arrivals
	Resets         uint64 // exporter restarts seen (sequence or sysUptime jumping back)
	OutOfOrder     uint64 // messages arriving behind the sequence (late or duplicate)
	TemplateMisses uint64 // data sets that arrived before their template
	PendingDecoded uint64 // ...of which decoded later, once the template came
	PendingDropped uint64 // ...of which dropped: aged out or over the buffer's limits
	Dropped        [NumReasons]uint64
}

// Bad returns the drop counts by reason name, leaving out zeros.
func (c *Counters) Bad() map[string]uint64 {
	m := map[string]uint64{}
	for r, n := range c.Dropped {
		if n != 0 {
			m[Reason(r).String()] = n
		}
	}
	return m
}

func (c *Counters) add(o *Counters) {
	c.Messages += o.Messages
	c.Records += o.Records
	c.OptionsRecords += o.OptionsRecords
	c.Templates += o.Templates
	c.Withdrawals += o.Withdrawals
	c.Lost += o.Lost
	c.Resets += o.Resets
	c.OutOfOrder += o.OutOfOrder
	c.TemplateMisses += o.TemplateMisses
	c.PendingDecoded += o.PendingDecoded
	c.PendingDropped += o.PendingDropped
	for i := range c.Dropped {
		c.Dropped[i] += o.Dropped[i]
	}
}

// Stats is a snapshot of the decoder's counters.
type Stats struct {
	Total     Counters                // all of the below
	Exporters map[netip.Addr]Counters // exporters tracked now
	Untracked Counters                // drops before an exporter was known: truncated, bad_version, too_many_exporters
	Evicted   Counters                // exporters evicted, summed (they leave Exporters)
	Tracked   int                     // exporters tracked
	Evictions uint64                  // exporters that gave up their slot to a new one

	TemplateBytes    int64 // charged to Config.MaxTemplateBytes now
	MaxTemplateBytes int64 // Config.MaxTemplateBytes
	PendingBytes     int64 // data sets held for their template now
}

// Stats returns a snapshot of the counters. It holds the decoder's lock
// throughout so that an exporter evicted meanwhile is counted once, not
// zero times or twice.
func (d *Decoder) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := Stats{Untracked: d.untracked, Evicted: d.evicted, Exporters: make(map[netip.Addr]Counters, len(d.exporters)), Tracked: len(d.exporters), Evictions: d.evictions,
		TemplateBytes: d.state.used.Load(), MaxTemplateBytes: d.state.max, PendingBytes: d.pending.used.Load()}
	s.Total.add(&s.Untracked)
	s.Total.add(&s.Evicted)
	for _, e := range d.exporters {
		e.mu.Lock()
		c := e.c
		e.mu.Unlock()
		s.Total.add(&c)
		s.Exporters[e.addr] = c
	}
	return s
}

package decode

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xdpflow/xdpflow/schemas"
)

// Config bounds the decoder's state. Zero values take the defaults noted.
type Config struct {
	MaxExporters            int           // exporter addresses tracked at once; default 1024
	MaxTemplatesPerExporter int           // templates + options templates per exporter, all domains; default 256
	PendingMessages         int           // data sets held per exporter+domain until their template comes; default 16
	PendingAge              time.Duration // how long such a data set waits; default 10s
	// MaxTemplateBytes bounds, over all exporters, the memory of what
	// exporters teach: templates, observation domains and interface
	// names; what does not fit is counted (ReasonTemplateMemory) and
	// dropped. Default 128 MiB.
	MaxTemplateBytes int64
	// EnterpriseNumber is the PEN under which the probe sends the IEs
	// xdpflow defines itself (schemas.ExportField.Enterprise: tunnel,
	// mirror type); 0: such IEs are skipped like any enterprise IE.
	EnterpriseNumber uint32
}

const (
	defaultMaxExporters     = 1024
	defaultMaxTemplates     = 256
	defaultPendingMessages  = 16
	defaultPendingAge       = 10 * time.Second
	defaultMaxTemplateBytes = 128 << 20

	// Limits not worth a knob. Worst case memory is MaxTemplateBytes +
	// maxPendingTotal + MaxExporters x ~1 KiB: about 170 MiB live with the
	// defaults even when every exporter is hostile (the Go heap may reach
	// twice the live size), and a few MiB in practice.
	maxDomains        = 64        // observation domains / source ids per exporter
	maxTemplateFields = 512       // fields in one template (real ones have < 100)
	maxPendingBytes   = 256 << 10 // data waiting for templates, per exporter
	maxPendingTotal   = 32 << 20  // ...and over all exporters
	maxIfNames        = 4096      // interface names per domain
	maxIfNameLen      = 64
	// An exporter whose last decoded message is more recent than this
	// keeps its slot when MaxExporters is reached: a flood of new sources
	// sending valid messages then turns the newcomers away instead of
	// churning every exporter's templates out.
	evictMinIdle = time.Second
	// Held data sets of every exporter are aged out this often, on any
	// exporter's traffic (and at each Expire), so a silent exporter's do
	// not wait for it.
	sweepEvery = time.Second
)

func (c Config) withDefaults() Config {
	if c.MaxExporters <= 0 {
		c.MaxExporters = defaultMaxExporters
	}
	if c.MaxTemplatesPerExporter <= 0 {
		c.MaxTemplatesPerExporter = defaultMaxTemplates
	}
	if c.PendingMessages <= 0 {
		c.PendingMessages = defaultPendingMessages
	}
	if c.PendingAge <= 0 {
		c.PendingAge = defaultPendingAge
	}
	if c.MaxTemplateBytes <= 0 {
		c.MaxTemplateBytes = defaultMaxTemplateBytes
	}
	return c
}

// ErrDropped is wrapped by every error Decode returns for a message it
// dropped; errors.As with *DropError gives the reason.
var ErrDropped = errors.New("message dropped")

// DropError is why Decode dropped a message (or part of it).
type DropError struct {
	Reason Reason
	Detail string
}

func (e *DropError) Error() string { return fmt.Sprintf("decode: %v: %s", e.Reason, e.Detail) }
func (e *DropError) Unwrap() error { return ErrDropped }

func drop(r Reason, format string, args ...any) *DropError {
	return &DropError{Reason: r, Detail: fmt.Sprintf(format, args...)}
}

// Decoder decodes export messages, keeping templates and the rest of each
// exporter's state between them.
type Decoder struct {
	cfg       Config
	mu        sync.Mutex
	exporters map[netip.Addr]*exporter
	probation []*exporter // created and nothing decoded yet, oldest first: evicted first
	lru       []lruEntry  // the least recently decoded exporters at the last scan, oldest first
	untracked Counters    // drops before an exporter is known (or when none can be tracked)
	evicted   Counters    // counts of exporters evicted
	evictions uint64

	state       budget // Config.MaxTemplateBytes: templates, domains, interface names
	pending     budget // maxPendingTotal: data sets waiting for their template
	nextSweepNs atomic.Uint64
	scratch     sync.Pool
}

// New returns a Decoder for cfg (defaults filled in).
func New(cfg Config) *Decoder {
	cfg = cfg.withDefaults()
	d := &Decoder{cfg: cfg, exporters: map[netip.Addr]*exporter{}}
	d.state.max = cfg.MaxTemplateBytes
	d.pending.max = maxPendingTotal
	d.scratch.New = func() any { return new(scratch) }
	return d
}

// exporter is the state of one exporter address.
type exporter struct {
	addr       netip.Addr
	addr16     [16]byte
	lastGoodNs atomic.Uint64 // receive time of its last message decoded without a drop; 0: none yet
	hasPending atomic.Bool   // data sets held: Expire looks at it
	state      *budget
	pendingMem *budget

	mu           sync.Mutex
	gone         bool   // evicted: a Decode that found it before must look it up again
	port         uint16 // source port of the message being decoded: its transport session
	nowNs        uint64 // ...and its receive time
	c            Counters
	domains      map[uint64]*domain // key: version<<32 | observation domain / source id
	templates    int                // over all domains
	pendingBytes int                // over all domains
	stateBytes   int64              // charged to state: templates, domains, interface names
}

// charge takes n bytes of the decoder's state budget for e; false when it
// is spent (the caller counts ReasonTemplateMemory).
func (e *exporter) charge(n int64) bool {
	if e.gone || !e.state.take(n) {
		return false
	}
	e.stateBytes += n
	return true
}

func (e *exporter) release(n int64) {
	e.state.give(n)
	e.stateBytes -= n
}

// scratch is what one Decode call works in; pooled so that steady state
// does not allocate.
type scratch struct {
	m      schemas.FlowMessage
	conv   converter
	hdr    msgHeader // the message being decoded
	replay msgHeader // a held data set's message, while it is decoded
}

// Decode decodes one NetFlow v5/v9 or IPFIX message (one UDP datagram, or
// one IPFIX message cut from a TCP stream by ReadIPFIXMessage) from
// exporter, calling emit for each flow record. The message passed to emit
// is reused: it is only valid during the call. A dropped message returns
// an error wrapping ErrDropped (a *DropError); it is counted either way.
// Records of a message that decoded up to a bad data record are emitted,
// and the error names the bad record. A nil emit discards the records.
// receivedNs is the receive time (Unix ns, or any clock that Expire is
// given too).
func (d *Decoder) Decode(exporter netip.AddrPort, msg []byte, receivedNs uint64, emit func(*schemas.FlowMessage)) (err error) {
	if emit == nil {
		emit = func(*schemas.FlowMessage) {}
	}
	d.sweep(receivedNs) // before taking any exporter's lock
	addr := exporter.Addr().Unmap()
	if len(msg) < 2 {
		return d.dropUnknown(addr, drop(ReasonTruncated, "%d-byte message", len(msg)))
	}
	version := uint16(msg[0])<<8 | uint16(msg[1])
	if version != 5 && version != 9 && version != 10 {
		// Not counted against an exporter slot: garbage must not fill the table.
		return d.dropUnknown(addr, drop(ReasonVersion, "version %d", version))
	}
	e, err := d.lockExporter(addr, receivedNs)
	if err != nil {
		return err
	}
	defer e.mu.Unlock()
	e.port, e.nowNs = exporter.Port(), receivedNs
	s := d.scratch.Get().(*scratch)
	defer d.scratch.Put(s)
	defer func() {
		if p := recover(); p != nil {
			e.c.Dropped[ReasonPanic]++
			err = drop(ReasonPanic, "%v", p)
		}
	}()
	if version == 5 {
		err = e.decodeV5(s, msg, receivedNs, emit)
	} else {
		err = d.decodeTemplated(e, s, version, msg, receivedNs, emit)
	}
	if err != nil {
		if de := (*DropError)(nil); errors.As(err, &de) {
			e.c.Dropped[de.Reason]++
		}
		return err
	}
	// Only traffic that decodes keeps an exporter's slot (evictOne); 0
	// means never.
	if now := max(receivedNs, 1); now > e.lastGoodNs.Load() {
		e.lastGoodNs.Store(now)
	}
	return nil
}

// dropUnknown counts a drop against an exporter already tracked, or in the
// untracked counts.
func (d *Decoder) dropUnknown(addr netip.Addr, de *DropError) error {
	d.mu.Lock()
	e := d.exporters[addr]
	if e == nil {
		d.untracked.Dropped[de.Reason]++
	}
	d.mu.Unlock()
	if e != nil {
		e.mu.Lock()
		gone := e.gone
		if !gone {
			e.c.Dropped[de.Reason]++
		}
		e.mu.Unlock()
		if gone { // evicted meanwhile; d.mu is never taken under e.mu
			d.mu.Lock()
			d.evicted.Dropped[de.Reason]++
			d.mu.Unlock()
		}
	}
	return de
}

// lockExporter finds or creates addr's state and locks it. An exporter
// evicted between the lookup and the lock is looked up again.
func (d *Decoder) lockExporter(addr netip.Addr, nowNs uint64) (*exporter, error) {
	for range 3 {
		e, err := d.exporter(addr, nowNs)
		if err != nil {
			return nil, err
		}
		e.mu.Lock()
		if !e.gone {
			return e, nil
		}
		e.mu.Unlock()
	}
	// Only when slots change hands faster than a lookup: count it anyway.
	d.mu.Lock()
	d.untracked.Dropped[ReasonTooManyExporters]++
	d.mu.Unlock()
	return nil, drop(ReasonTooManyExporters, "%v: exporter slots churning", addr)
}

// exporter finds or creates addr's state. At MaxExporters it evicts one
// (evictOne), or turns the message away.
func (d *Decoder) exporter(addr netip.Addr, nowNs uint64) (*exporter, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.exporters[addr]
	if e == nil {
		if len(d.exporters) >= d.cfg.MaxExporters && !d.evictOne(nowNs) {
			d.untracked.Dropped[ReasonTooManyExporters]++
			return nil, drop(ReasonTooManyExporters, "%d exporters tracked, each decoded within %v", len(d.exporters), evictMinIdle)
		}
		e = &exporter{addr: addr, addr16: addr.As16(), domains: map[uint64]*domain{}, state: &d.state, pendingMem: &d.pending}
		d.exporters[addr] = e
		d.probation = append(d.probation, e)
		if len(d.probation) > 2*d.cfg.MaxExporters+64 { // graduated exporters left behind
			d.probation = slices.DeleteFunc(d.probation, func(p *exporter) bool { return d.exporters[p.addr] != p || p.lastGoodNs.Load() != 0 })
		}
	}
	return e, nil
}

// lruEntry is an exporter and its lastGoodNs when d.lru was filled: if
// that changed, the exporter was used since and the entry is stale.
type lruEntry struct {
	e      *exporter
	goodNs uint64
}

// lruBatch is how many of the least recently decoded exporters one scan
// keeps: evictions cost O(exporters / lruBatch) each, not O(exporters).
const lruBatch = 64

// evictOne makes room for a new exporter: the oldest exporter that never
// decoded a message, else the one whose last decoded message is the
// oldest, if that is older than evictMinIdle. The order is exact:
// lastGoodNs only grows, and new exporters start in probation.
func (d *Decoder) evictOne(nowNs uint64) bool {
	for len(d.probation) > 0 {
		e := d.probation[0]
		d.probation[0] = nil
		d.probation = d.probation[1:]
		if d.exporters[e.addr] == e && e.lastGoodNs.Load() == 0 {
			d.retire(e)
			return true
		}
	}
	for scanned := false; ; scanned = true {
		for len(d.lru) > 0 {
			c := d.lru[0]
			if d.exporters[c.e.addr] != c.e || c.e.lastGoodNs.Load() != c.goodNs {
				d.lru = d.lru[1:]
				continue
			}
			if nowNs < c.goodNs+uint64(evictMinIdle) {
				return false
			}
			d.lru = d.lru[1:]
			d.retire(c.e)
			return true
		}
		if scanned {
			return false
		}
		all := make([]lruEntry, 0, len(d.exporters))
		for _, e := range d.exporters {
			if g := e.lastGoodNs.Load(); g != 0 {
				all = append(all, lruEntry{e, g})
			}
		}
		slices.SortFunc(all, func(a, b lruEntry) int { return cmp.Compare(a.goodNs, b.goodNs) })
		d.lru = append(d.lru[:0], all[:min(len(all), lruBatch)]...)
	}
}

// retire evicts e (d.mu held): its counts go to d.evicted, its memory back
// to the budgets, and its held data sets are counted as dropped.
func (d *Decoder) retire(e *exporter) {
	delete(d.exporters, e.addr)
	d.evictions++
	e.mu.Lock()
	defer e.mu.Unlock()
	e.gone = true
	for _, dom := range e.domains {
		e.c.PendingDropped += uint64(len(dom.pending))
	}
	d.evicted.add(&e.c)
	e.c = Counters{}
	e.state.give(e.stateBytes)
	e.pendingMem.give(int64(e.pendingBytes))
	e.stateBytes, e.pendingBytes, e.templates = 0, 0, 0
	e.domains = map[uint64]*domain{}
	e.hasPending.Store(false)
}

// sweep runs Expire at most every sweepEvery of receive time, from
// whichever Decode call comes first.
func (d *Decoder) sweep(nowNs uint64) {
	next := d.nextSweepNs.Load()
	if nowNs < next || !d.nextSweepNs.CompareAndSwap(next, nowNs+uint64(sweepEvery)) {
		return
	}
	d.Expire(nowNs)
}

// Expire drops (and counts) the held data sets of every exporter older
// than Config.PendingAge at nowNs. Decode calls it on any exporter's
// traffic every second; call it from a timer or before reading Stats so
// that a silent exporter's are counted while nothing arrives. It must not
// be called from emit.
func (d *Decoder) Expire(nowNs uint64) {
	var held []*exporter
	d.mu.Lock()
	for _, e := range d.exporters {
		if e.hasPending.Load() {
			held = append(held, e)
		}
	}
	d.mu.Unlock()
	for _, e := range held {
		e.mu.Lock()
		if !e.gone {
			d.expirePending(e, nowNs)
		}
		e.mu.Unlock()
	}
}

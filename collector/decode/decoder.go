package decode

import (
	"errors"
	"fmt"
	"net/netip"
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
	// EnterpriseNumber is the PEN under which the probe sends the IEs
	// xdpflow defines itself (schemas.ExportField.Enterprise: tunnel,
	// mirror type); 0: such IEs are skipped like any enterprise IE.
	EnterpriseNumber uint32
}

const (
	defaultMaxExporters    = 1024
	defaultMaxTemplates    = 256
	defaultPendingMessages = 16
	defaultPendingAge      = 10 * time.Second

	// Limits not worth a knob. Worst case memory is about MaxExporters x
	// (MaxTemplatesPerExporter x maxTemplateFields x 4 B + maxPendingBytes
	// + maxDomains x maxIfNames x ~64 B): with the defaults well under 1 GiB
	// even when every exporter is hostile, and a few MiB in practice.
	maxDomains        = 64        // observation domains / source ids per exporter
	maxTemplateFields = 512       // fields in one template (real ones have < 100)
	maxPendingBytes   = 256 << 10 // data waiting for templates, per exporter
	maxIfNames        = 4096      // interface names per domain
	maxIfNameLen      = 64
	// An exporter silent this long gives its slot to a new one when
	// MaxExporters is reached.
	exporterIdle = 10 * time.Minute
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
	retired   Counters // evicted exporters, and drops before an exporter is known
	scratch   sync.Pool
}

// New returns a Decoder for cfg (defaults filled in).
func New(cfg Config) *Decoder {
	d := &Decoder{cfg: cfg.withDefaults(), exporters: map[netip.Addr]*exporter{}}
	d.scratch.New = func() any { return new(scratch) }
	return d
}

// exporter is the state of one exporter address.
type exporter struct {
	addr       netip.Addr
	addr16     [16]byte
	lastSeenNs atomic.Uint64

	mu           sync.Mutex
	c            Counters
	domains      map[uint64]*domain // key: version<<32 | observation domain / source id
	templates    int                // over all domains
	pendingBytes int                // over all domains
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
func (d *Decoder) Decode(exporter netip.AddrPort, msg []byte, receivedNs uint64, emit func(*schemas.FlowMessage)) (err error) {
	if emit == nil {
		emit = func(*schemas.FlowMessage) {}
	}
	addr := exporter.Addr().Unmap()
	if len(msg) < 2 {
		return d.dropUnknown(addr, drop(ReasonTruncated, "%d-byte message", len(msg)))
	}
	version := uint16(msg[0])<<8 | uint16(msg[1])
	if version != 5 && version != 9 && version != 10 {
		// Not counted against an exporter slot: garbage must not fill the table.
		return d.dropUnknown(addr, drop(ReasonVersion, "version %d", version))
	}
	e, err := d.exporter(addr, receivedNs)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
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
	}
	return err
}

// dropUnknown counts a drop against an exporter already tracked, or in the
// totals only.
func (d *Decoder) dropUnknown(addr netip.Addr, de *DropError) error {
	d.mu.Lock()
	e := d.exporters[addr]
	if e == nil {
		d.retired.Dropped[de.Reason]++
	}
	d.mu.Unlock()
	if e != nil {
		e.mu.Lock()
		e.c.Dropped[de.Reason]++
		e.mu.Unlock()
	}
	return de
}

// exporter finds or creates addr's state. At MaxExporters it evicts the
// exporter silent the longest if it has been silent for exporterIdle, and
// otherwise turns the message away.
func (d *Decoder) exporter(addr netip.Addr, nowNs uint64) (*exporter, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.exporters[addr]
	if e == nil {
		if len(d.exporters) >= d.cfg.MaxExporters && !d.evictIdle(nowNs) {
			d.retired.Dropped[ReasonTooManyExporters]++
			return nil, drop(ReasonTooManyExporters, "%d exporters tracked, none idle for %v", len(d.exporters), exporterIdle)
		}
		e = &exporter{addr: addr, addr16: addr.As16(), domains: map[uint64]*domain{}}
		d.exporters[addr] = e
	}
	e.lastSeenNs.Store(max(e.lastSeenNs.Load(), nowNs))
	return e, nil
}

func (d *Decoder) evictIdle(nowNs uint64) bool {
	var oldest *exporter
	for _, e := range d.exporters {
		if oldest == nil || e.lastSeenNs.Load() < oldest.lastSeenNs.Load() {
			oldest = e
		}
	}
	if oldest == nil || nowNs < oldest.lastSeenNs.Load()+uint64(exporterIdle) {
		return false
	}
	delete(d.exporters, oldest.addr)
	oldest.mu.Lock()
	d.retired.add(&oldest.c)
	oldest.c = Counters{} // a Decode still holding it counts from zero, into nothing
	oldest.mu.Unlock()
	return true
}

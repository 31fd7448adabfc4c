package ipfix

import (
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xdpflow/xdpflow/schemas"
)

// watchSettled samples x.Settled until the returned stop is called and
// checks the watermark at every sample: it never goes down, never passes
// the records given to Export (x.given counts a batch when Export returns,
// but Settled may count records of the batch in progress: export calls
// this exporter's export), and never passes the records written or dropped
// (counted before they settle), so a record is never settled before its
// own write or drop was counted.
func watchSettled(t *testing.T, x *Exporter) (stop func(), export func([]schemas.Flow) error) {
	t.Helper()
	var started atomic.Uint64
	export = func(flows []schemas.Flow) error {
		started.Add(uint64(len(flows)))
		return x.Export(flows)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		var last uint64
		for {
			s := x.Settled()
			st := x.Stats()
			given := started.Load()
			if s < last {
				t.Errorf("Settled went down from %d to %d", last, s)
			}
			if s > given {
				t.Errorf("Settled %d > %d records given to Export", s, given)
			}
			if s > st.Records+st.RecordsDropped {
				t.Errorf("Settled %d > %d written + %d dropped", s, st.Records, st.RecordsDropped)
			}
			last = s
			select {
			case <-done:
				return
			case <-time.After(200 * time.Microsecond):
			}
		}
	})
	var once sync.Once
	return func() { once.Do(func() { close(done) }); wg.Wait() }, export
}

func waitSettled(t *testing.T, x *Exporter, want uint64) {
	t.Helper()
	waitFor(t, "Settled to reach the records given", 5*time.Second, func() bool { return x.Settled() == want })
}

// TestSettledUDP: UDP sends within Export: every record given, invalid
// ones and failed sends included, is settled when Export returns.
func TestSettledUDP(t *testing.T) {
	addr := freePort(t, "udp") // nobody listens: sends fail, counted
	x, err := NewExporter("udp://"+addr, Config{Protocol: NetFlowV9}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	flows := fixedFlows()
	flows[2].SrcAddr = flows[3].SrcAddr // invalid: mixed families
	var given uint64
	for range 5 {
		_ = x.Export(flows)
		given += uint64(len(flows))
		if s := x.Settled(); s != given {
			t.Fatalf("Settled %d after Export of %d records", s, given)
		}
	}
}

// TestSettledTCP: with the collector up, every record settles once the
// writer has written it.
func TestSettledTCP(t *testing.T) {
	log, _ := testLogger(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	x, err := newExporter("tcp://"+l.Addr().String(), Config{}, log, fastTCP)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	stop, export := watchSettled(t, x)
	defer stop()
	c, err := acceptWithin(l, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	flows := randomFlows(2000, 0.5, 71)
	for i := range flows {
		if i%7 == 0 {
			flows[i].Biflow = true // two records on the wire for one given
		}
	}
	go io.Copy(io.Discard, c)
	for i := 0; i < len(flows); i += 100 {
		if err := export(flows[i : i+100]); err != nil {
			t.Fatal(err)
		}
	}
	waitSettled(t, x, uint64(len(flows)))
	stop()
	if st := x.Stats(); st.RecordsDropped != 0 {
		t.Errorf("stats %+v: nothing should be dropped", st)
	}
}

// TestSettledTCPCollectorLater: with nothing listening the records wait
// in the queue and none is settled, except the invalid one ahead of them;
// once the collector is up they all are.
func TestSettledTCPCollectorLater(t *testing.T) {
	log, _ := testLogger(t)
	addr := freePort(t, "tcp")
	x, err := newExporter("tcp://"+addr, Config{}, log, fastTCP)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	stop, export := watchSettled(t, x)
	defer stop()
	flows := randomFlows(500, 0.5, 81)
	flows[0].SrcAddr, flows[0].DstAddr = netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("2001:db8::1") // invalid: mixed families
	if err := export(flows[:1]); err == nil {
		t.Fatal("Export of an invalid record: no error")
	}
	if s := x.Settled(); s != 1 {
		t.Fatalf("Settled %d after one invalid record, want 1 (dropped and counted)", s)
	}
	for i := 1; i < len(flows); i += 100 {
		if err := export(flows[i:min(i+100, len(flows))]); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond) // a few failed connection attempts
	if s, st := x.Settled(), x.Stats(); s != 1 || st.Records != 0 {
		t.Fatalf("no collector: Settled %d, stats %+v; want 1 (the invalid record) and nothing written", s, st)
	}

	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := acceptWithin(l, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d := newDecoded(IPFIX)
	readIPFIX(t, c, d, len(flows)-1)
	checkFlows(t, d.flows, flows[1:])
	waitSettled(t, x, uint64(len(flows)))
}

// TestSettledTCPQueueFull: records dropped because the queue is full are
// settled (counted), but only once the older records queued ahead of them
// are: while the collector is away nothing is settled; once it is up,
// everything is, and Settled never passes the records given.
func TestSettledTCPQueueFull(t *testing.T) {
	log, _ := testLogger(t)
	addr := freePort(t, "tcp")
	opt := fastTCP
	opt.queueLimit = 8 << 10
	x, err := newExporter("tcp://"+addr, Config{}, log, opt)
	if err != nil {
		t.Fatal(err)
	}
	stop, export := watchSettled(t, x)
	defer stop()
	flows := randomFlows(1000, 0.5, 51)
	for i := 0; i < len(flows); i += 50 {
		if err := export(flows[i : i+50]); err != nil {
			t.Fatal(err)
		}
	}
	st := x.Stats()
	if st.RecordsDropped == 0 {
		t.Fatalf("stats %+v: an 8 KiB queue should drop some", st)
	}
	if s := x.Settled(); s != 0 {
		t.Fatalf("Settled %d with the oldest records queued and %d newer ones dropped: want 0", s, st.RecordsDropped)
	}

	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := acceptWithin(l, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d := newDecoded(IPFIX)
	readIPFIX(t, c, d, len(flows)-int(st.RecordsDropped))
	waitSettled(t, x, uint64(len(flows)))
	stop()
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	if s := x.Settled(); s != uint64(len(flows)) {
		t.Errorf("Settled %d after Close, want %d", s, len(flows))
	}
}

// TestSettledTCPStuckPeer: messages whose write timed out stay queued and
// unsettled; they settle when a write of them succeeds on the next
// connection (the templates sent first on it count for nothing), or at
// Close, dropped and counted.
func TestSettledTCPStuckPeer(t *testing.T) {
	log, _ := testLogger(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	opt := fastTCP
	opt.writeTimeout = 200 * time.Millisecond
	opt.queueLimit = 64 << 20 // more than the socket buffers: nothing is dropped
	x, err := newExporter("tcp://"+l.Addr().String(), Config{MaxMessageBytes: 65535}, log, opt)
	if err != nil {
		t.Fatal(err)
	}
	stop, export := watchSettled(t, x)
	defer stop()
	c1, err := acceptWithin(l, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close() // never read
	flows := randomFlows(2000, 0.5, 61)
	var given uint64
	waitFor(t, "a write timeout", 10*time.Second, func() bool {
		if err := export(flows); err != nil {
			t.Fatal(err)
		}
		given += uint64(len(flows))
		return x.Stats().SendErrors > 0
	})
	if s := x.Settled(); s >= given {
		t.Fatalf("Settled %d of %d with the collector stuck", s, given)
	}

	// The exporter reconnects; this time the collector reads.
	c2, err := acceptWithin(l, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	go io.Copy(io.Discard, c2)
	waitSettled(t, x, given)
	stop()
	st := x.Stats()
	if st.Reconnects != 1 || st.RecordsDropped != 0 {
		t.Errorf("stats %+v: want one reconnect, nothing dropped", st)
	}
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestSettledTCPClose: what is still queued at Close is dropped and
// counted, so settled.
func TestSettledTCPClose(t *testing.T) {
	log, _ := testLogger(t)
	opt := fastTCP
	opt.drainTimeout = 50 * time.Millisecond
	x, err := newExporter("tcp://"+freePort(t, "tcp"), Config{}, log, opt)
	if err != nil {
		t.Fatal(err)
	}
	flows := randomFlows(300, 0.5, 91)
	if err := x.Export(flows); err != nil {
		t.Fatal(err)
	}
	if s := x.Settled(); s != 0 {
		t.Fatalf("Settled %d with no collector", s)
	}
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	if s, st := x.Settled(), x.Stats(); s != uint64(len(flows)) || st.RecordsDropped != uint64(len(flows)) {
		t.Errorf("after Close: Settled %d, stats %+v; want all %d settled as dropped", s, st, len(flows))
	}
}

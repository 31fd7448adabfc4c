package decode

import (
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/xdpflow/xdpflow/schemas"
)

// TestSequenceRestartNewPort: sequence numbers are followed per transport
// session (address, source port) and domain. An exporter that restarts on
// a new source port with a sequence number far ahead (the 1.28 M "lost"
// records of issue #14) is a reset, not a loss; templates learnt before
// the restart still decode (they are kept per address).
func TestSequenceRestartNewPort(t *testing.T) {
	portA := testExporter
	portB := netip.AddrPortFrom(testExporter.Addr(), 40001)
	data := func(seq uint32, n int) []byte {
		var recs [][]byte
		for i := range n {
			recs = append(recs, rec300(byte(i)))
		}
		return ipfixMsg(seq, 1, set(300, recs...))
	}
	type step struct {
		from                     netip.AddrPort
		msg                      []byte
		lost, resets, ooo, nrecs uint64
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"ipfix restart far ahead on a new port", []step{
			{portA, ipfixMsg(5000, 1, set(2, tmpl300), set(300, rec300(1), rec300(2))), 0, 0, 0, 2},
			{portA, data(5002, 2), 0, 0, 0, 4},
			{portB, data(1_285_000, 2), 0, 1, 0, 6}, // restarted: no template sent yet, the old one decodes
			{portB, data(1_285_002, 1), 0, 1, 0, 7},
			{portB, data(1_285_010, 1), 7, 1, 0, 8}, // a real gap on the new session: 1_285_003..009
		}},
		{"ipfix restart from zero on a new port", []step{
			{portA, ipfixMsg(5_000_000, 1, set(2, tmpl300), set(300, rec300(1))), 0, 0, 0, 1},
			{portB, data(0, 2), 0, 1, 0, 3},
			{portB, data(2, 2), 0, 1, 0, 5},
		}},
		{"two sockets interleaved, each in order", []step{
			{portA, ipfixMsg(100, 1, set(2, tmpl300), set(300, rec300(1))), 0, 0, 0, 1},
			{portB, data(9000, 1), 0, 1, 0, 2}, // the second socket's first message: one reset
			{portA, data(101, 1), 0, 1, 0, 3},
			{portB, data(9001, 1), 0, 1, 0, 4},
			{portA, data(102, 1), 0, 1, 0, 5},
		}},
		{"v9 restart on a new port, uptime and sequence ahead", []step{
			{portA, v9Msg(100_000, 7, 1, set(0, tmpl300), set(300, rec300(1))), 0, 0, 0, 1},
			{portA, v9Msg(101_000, 8, 1, set(300, rec300(1))), 0, 0, 0, 2},
			{portB, v9Msg(900_000, 500_000, 1, set(300, rec300(1))), 0, 1, 0, 3},
			{portB, v9Msg(901_000, 500_002, 1, set(300, rec300(1))), 1, 1, 0, 4}, // 500_001 lost
		}},
		{"v5 restart on a new port", []step{
			{portA, v5Msg(1000, 100_000, 3), 0, 0, 0, 3},
			{portB, v5Msg(900_000, 200_000, 2), 0, 1, 0, 5},
			{portB, v5Msg(900_002, 200_100, 1), 0, 1, 0, 6},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := New(Config{})
			recs := uint64(0)
			for i, s := range tc.steps {
				recs += uint64(count(t, d, s.from, s.msg, 1))
				st := d.Stats().Exporters[testExporter.Addr()]
				if st.Lost != s.lost || st.Resets != s.resets || st.OutOfOrder != s.ooo || recs != s.nrecs {
					t.Fatalf("step %d: lost %d resets %d out-of-order %d records %d, want %d %d %d %d",
						i, st.Lost, st.Resets, st.OutOfOrder, recs, s.lost, s.resets, s.ooo, s.nrecs)
				}
			}
		})
	}
	t.Run("more ports than sessions", func(t *testing.T) {
		d := New(Config{})
		count(t, d, portA, ipfixMsg(0, 1, set(2, tmpl300)), 1)
		for p := range uint16(maxSessions + 2) {
			count(t, d, netip.AddrPortFrom(testExporter.Addr(), 50000+p), data(uint32(p)*1_000_000, 1), 1)
		}
		// Port A's session was the least recently used and gave way:
		// coming back is a new session again, with no loss counted.
		count(t, d, portA, data(0, 1), 1)
		st := d.Stats().Exporters[testExporter.Addr()]
		if st.Lost != 0 || st.Resets != maxSessions+3 || st.Records != maxSessions+3 {
			t.Errorf("lost %d resets %d records %d, want 0 %d %d", st.Lost, st.Resets, st.Records, maxSessions+3, maxSessions+3)
		}
	})
}

// TestUntracked: drops from sources not tracked (yet) are in
// Stats.Untracked and Total; drops from a tracked one are its own.
func TestUntracked(t *testing.T) {
	d := New(Config{MaxExporters: 1})
	good := ipfixMsg(0, 1, set(2, tmpl300), set(300, rec300(1)))
	a, b := netip.MustParseAddrPort("192.0.2.1:1"), netip.MustParseAddrPort("192.0.2.2:1")
	d.Decode(b, []byte{0}, 1, nil)                // truncated
	d.Decode(b, []byte{0, 7, 0, 0}, 1, nil)       // bad version
	count(t, d, a, good, 1)                       // a takes the only slot
	d.Decode(b, good, 2, nil)                     // too many exporters
	d.Decode(a, []byte{0, 7, 0, 0, 0, 0}, 3, nil) // a's own
	st := d.Stats()
	want := map[Reason]uint64{ReasonTruncated: 1, ReasonVersion: 1, ReasonTooManyExporters: 1}
	for r := range NumReasons {
		if st.Untracked.Dropped[r] != want[r] {
			t.Errorf("untracked %v: %d, want %d", r, st.Untracked.Dropped[r], want[r])
		}
	}
	if ca := st.Exporters[a.Addr()]; ca.Dropped[ReasonVersion] != 1 || st.Total.Dropped[ReasonVersion] != 2 || st.Total.Records != 1 {
		t.Errorf("a: %v, total: %v", ca.Bad(), st.Total.Bad())
	}
}

// TestEvictLeastRecentlyDecoded: when the table is full, the slot of an
// exporter that never decoded a message goes first (oldest first), then
// the one whose last decoded message is the oldest; exporters decoded
// within evictMinIdle keep theirs. A new legitimate exporter is no longer
// locked out for 10 minutes by sources that send garbage.
func TestEvictLeastRecentlyDecoded(t *testing.T) {
	ms := uint64(time.Millisecond)
	d := New(Config{MaxExporters: 3})
	good := ipfixMsg(0, 1, set(2, tmpl300), set(300, rec300(1)))
	bad := ipfixMsg(0, 1, set(300, rec300(1)))
	bad[3]++ // header length off by one: never decodes
	ep := func(i byte) netip.AddrPort { return netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, i}), 2055) }
	A, B, C, D, E := ep(1), ep(2), ep(3), ep(4), ep(5)
	S1, S2, S3 := ep(101), ep(102), ep(103)
	expect := func(step string, tracked ...netip.AddrPort) {
		t.Helper()
		var got, want []string
		for a := range d.Stats().Exporters {
			got = append(got, a.String())
		}
		for _, a := range tracked {
			want = append(want, a.Addr().String())
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("%s: tracked %v, want %v", step, got, want)
		}
	}
	count(t, d, A, good, 0)
	d.Decode(S1, bad, 1*ms, nil)
	d.Decode(S2, bad, 2*ms, nil)
	expect("full", A, S1, S2)
	count(t, d, B, good, 3*ms) // evicts S1, the oldest that never decoded
	expect("B in", A, B, S2)
	d.Decode(S3, bad, 4*ms, nil) // evicts S2
	count(t, d, C, good, 5*ms)   // evicts S3
	expect("C in", A, B, C)
	if err := d.Decode(D, good, 6*ms, nil); err == nil {
		t.Fatal("D got a slot while every exporter decoded within a second")
	}
	count(t, d, B, good, 1500*ms)
	count(t, d, D, good, 2000*ms) // A's last decoded message (0) is the oldest
	expect("D in", B, C, D)
	count(t, d, E, good, 2001*ms) // then C's (5 ms); B's is 1.5 s
	expect("E in", B, D, E)
	st := d.Stats()
	if st.Evictions != 5 || st.Evicted.Records != 2 || st.Evicted.Dropped[ReasonLength] != 3 || st.Untracked.Dropped[ReasonTooManyExporters] != 1 ||
		st.Total.Records != 6 {
		t.Errorf("evicted %d records, %v; untracked %v; total %d records", st.Evicted.Records, st.Evicted.Bad(), st.Untracked.Bad(), st.Total.Records)
	}
	if st.TemplateBytes != 3*(domainCost+templateCost(mustCompile(t, tmpl300))) {
		t.Errorf("%d template bytes held for 3 exporters", st.TemplateBytes)
	}

	t.Run("exact order past one scan", func(t *testing.T) {
		const n = 3 * lruBatch
		d := New(Config{MaxExporters: n})
		at := func(i int) uint64 { return uint64(i) * uint64(time.Second) }
		for i := range n {
			count(t, d, netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 1), good, at(i))
		}
		// The even ones decode again, so the odd ones are now the least
		// recently decoded, in order.
		for i := 0; i < n; i += 2 {
			count(t, d, netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 1), good, at(n+i))
		}
		for i := range n / 2 {
			count(t, d, netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 1), good, at(2*n+i))
		}
		for a := range d.Stats().Exporters {
			if b := a.As4(); b[1] == 0 && b[3]%2 == 1 {
				t.Fatalf("%v (odd) kept, an even one evicted", a)
			}
		}
		if st := d.Stats(); st.Tracked != n || st.Evicted.Records != n/2 {
			t.Errorf("tracked %d, evicted %d records", st.Tracked, st.Evicted.Records)
		}
	})
}

func mustCompile(t testing.TB, rec []byte) *template {
	t.Helper()
	r, _, err := nextTemplate(setIPFIXTemplate, rec)
	if err != nil {
		t.Fatal(err)
	}
	tp, cerr := compile(10, setIPFIXTemplate, r, 0)
	if cerr != nil {
		t.Fatal(cerr)
	}
	return tp
}

// TestTemplateMemory: MaxTemplateBytes is one budget over all exporters;
// what does not fit is counted (template_memory) and given back when a
// template is withdrawn or its exporter evicted.
func TestTemplateMemory(t *testing.T) {
	t4 := templateCost(mustCompile(t, tmpl300))
	d := New(Config{MaxTemplateBytes: 2*domainCost + 3*t4})
	a, b := netip.MustParseAddrPort("192.0.2.1:1"), netip.MustParseAddrPort("192.0.2.2:1")
	count(t, d, a, ipfixMsg(0, 1, set(2, tmpl300, tmpl(301, 8, 4, 12, 4, 1, 4, 2, 4))), 1)
	count(t, d, b, ipfixMsg(0, 1, set(2, tmpl300, tmpl(301, 8, 4, 12, 4, 1, 4, 2, 4))), 1)
	st := d.Stats()
	if cb := st.Exporters[b.Addr()]; st.TemplateBytes != 2*domainCost+3*t4 || cb.Dropped[ReasonTemplateMemory] != 1 || st.Total.Templates != 3 {
		t.Fatalf("%d bytes (budget %d), b: %v, %d templates", st.TemplateBytes, 2*domainCost+3*t4, cb.Bad(), st.Total.Templates)
	}
	// b's 301 was refused: its data is a template miss, not misread.
	if n := count(t, d, b, ipfixMsg(1, 1, set(301, rec300(1))), 1); n != 0 {
		t.Fatalf("%d records from a refused template", n)
	}
	// a withdraws 301: b's fits now.
	count(t, d, a, ipfixMsg(1, 1, set(2, tmpl(301))), 1)
	count(t, d, b, ipfixMsg(2, 1, set(2, tmpl(301, 8, 4, 12, 4, 1, 4, 2, 4))), 1)
	if st := d.Stats(); st.TemplateBytes != 2*domainCost+3*t4 || st.Total.Dropped[ReasonTemplateMemory] != 1 {
		t.Fatalf("%d bytes, %v", st.TemplateBytes, st.Total.Bad())
	}
	// A refresh that grows past the budget removes the old template.
	count(t, d, b, ipfixMsg(3, 1, set(2, tmpl(301, 8, 4, 12, 4, 1, 4, 2, 4, 7, 2))), 1)
	if n := count(t, d, b, ipfixMsg(4, 1, set(301, rec300(1))), 1); n != 0 {
		t.Fatalf("%d records read with the old layout", n)
	}
	if st := d.Stats(); st.TemplateBytes != 2*domainCost+2*t4 || st.Total.Dropped[ReasonTemplateMemory] != 2 {
		t.Fatalf("%d bytes, %v", st.TemplateBytes, st.Total.Bad())
	}

	t.Run("domains and interface names", func(t *testing.T) {
		d := New(Config{MaxTemplateBytes: 3*domainCost + 2*(ifNameCost+4)})
		for dom := range uint32(5) {
			d.Decode(a, ipfixMsg(0, dom, nil), 1, nil)
		}
		if st := d.Stats(); st.TemplateBytes != 3*domainCost || st.Total.Dropped[ReasonTemplateMemory] != 2 || st.Total.Messages != 3 {
			t.Fatalf("%d bytes, %v, %d messages", st.TemplateBytes, st.Total.Bad(), st.Total.Messages)
		}
		d.mu.Lock()
		e := d.exporters[a.Addr()]
		d.mu.Unlock()
		dom := e.domains[domainKey(10, 0)]
		dom.setIfName(1, []byte("eth0"))
		dom.setIfName(2, []byte("eth1\x00\x00"))
		dom.setIfName(3, []byte("eth2")) // does not fit
		dom.setIfName(1, []byte("eth0")) // a refresh
		if st := d.Stats(); st.TemplateBytes != 3*domainCost+2*(ifNameCost+4) || st.Total.Dropped[ReasonTemplateMemory] != 3 || len(dom.ifNames) != 2 {
			t.Fatalf("%d bytes, %v, names %v", st.TemplateBytes, st.Total.Bad(), dom.ifNames)
		}
		dom.setIfName(1, []byte("e0")) // shorter: frees 2 bytes
		dom.setIfName(3, []byte("x"))  // still does not fit
		if st := d.Stats(); st.TemplateBytes != 3*domainCost+2*ifNameCost+6 || st.Total.Dropped[ReasonTemplateMemory] != 4 || dom.ifNames[1] != "e0" {
			t.Fatalf("%d bytes, %v, names %v", st.TemplateBytes, st.Total.Bad(), dom.ifNames)
		}
	})

	t.Run("sampler rates", func(t *testing.T) {
		d := New(Config{MaxTemplateBytes: domainCost + 2*samplerCost})
		d.Decode(a, ipfixMsg(0, 0, nil), 1, nil)
		d.mu.Lock()
		e := d.exporters[a.Addr()]
		d.mu.Unlock()
		dom := e.domains[domainKey(10, 0)]
		for id, rate := range []uint64{10, 20, 30} { // the third does not fit
			if ok := dom.sampling.set(uint64(id), true, rate, e.charge); ok != (id < 2) {
				t.Fatalf("sampler %d kept: %v", id, ok)
			}
		}
		if !dom.sampling.set(1, true, 25, e.charge) || !dom.sampling.set(0, false, 7, e.charge) {
			t.Fatal("a known sampler's new rate, or the domain's, refused")
		}
		if st := d.Stats(); st.TemplateBytes != domainCost+2*samplerCost || dom.sampling.of(1, true) != 25 || dom.sampling.of(2, true) != 7 {
			t.Fatalf("%d bytes, rates %d %d", st.TemplateBytes, dom.sampling.of(1, true), dom.sampling.of(2, true))
		}
	})

	t.Run("concurrent exporters share one budget", func(t *testing.T) {
		big := func(id uint16) []byte { // 512 fields of 4 bytes
			f := make([]uint16, 0, 2*maxTemplateFields)
			for i := range maxTemplateFields {
				f = append(f, uint16(1000+i), 4)
			}
			return tmpl(id, f...)
		}
		limit := int64(1 << 20)
		d := New(Config{MaxTemplateBytes: limit, MaxTemplatesPerExporter: 1000})
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				from := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(g)}), 9)
				for id := uint16(256); id < 256+100; id++ {
					d.Decode(from, ipfixMsg(0, 1, set(2, big(id))), 1, nil)
				}
			})
		}
		wg.Wait()
		st := d.Stats()
		per := templateCost(mustCompile(t, big(256)))
		kept := int64(st.Total.Templates)
		if st.TemplateBytes > limit || st.TemplateBytes != 8*domainCost+kept*per || limit-st.TemplateBytes >= per ||
			st.Total.Dropped[ReasonTemplateMemory] != uint64(800-kept) {
			t.Errorf("%d bytes of %d, %d templates of %d bytes kept, %v", st.TemplateBytes, limit, kept, per, st.Total.Bad())
		}
		// The cost charged is what the heap holds, give or take half: the
		// heap with the decoder, against without it.
		var with, without runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&with)
		runtime.KeepAlive(d)
		d = nil
		runtime.GC()
		runtime.ReadMemStats(&without)
		held := int64(with.HeapAlloc) - int64(without.HeapAlloc)
		t.Logf("decoder holds %d bytes, %d charged", held, st.TemplateBytes)
		if !raceEnabled && (held > 3*limit/2 || held < limit/2) {
			t.Errorf("the decoder holds %d bytes for %d charged", held, st.TemplateBytes)
		}
	})
}

// TestPendingSilentExporter: data held for a template from an exporter
// that then goes silent ages out on other exporters' traffic (or Expire),
// and is counted; evicting an exporter counts what it held.
func TestPendingSilentExporter(t *testing.T) {
	sec := uint64(time.Second)
	a, b := netip.MustParseAddrPort("192.0.2.1:1"), netip.MustParseAddrPort("192.0.2.2:1")
	d := New(Config{PendingAge: 10 * time.Second})
	count(t, d, a, ipfixMsg(0, 1, set(300, rec300(1)), set(301, rec300(2))), 1*sec)
	if st := d.Stats(); st.PendingBytes != 2*16 || st.Exporters[a.Addr()].TemplateMisses != 2 {
		t.Fatalf("%d bytes held, %+v", st.PendingBytes, st.Exporters[a.Addr()])
	}
	count(t, d, b, ipfixMsg(0, 1, set(2, tmpl300)), 5*sec) // not old enough yet
	if st := d.Stats(); st.Exporters[a.Addr()].PendingDropped != 0 || st.PendingBytes != 32 {
		t.Fatalf("aged out early: %+v", st.Exporters[a.Addr()])
	}
	count(t, d, b, ipfixMsg(0, 1, set(300, rec300(1))), 12*sec)
	if st := d.Stats(); st.Exporters[a.Addr()].PendingDropped != 2 || st.PendingBytes != 0 {
		t.Fatalf("a silent: %d bytes held, %+v", st.PendingBytes, st.Exporters[a.Addr()])
	}

	count(t, d, a, ipfixMsg(1, 1, set(300, rec300(1))), 13*sec) // a's template is for domain... not known to a
	d.Expire(30 * sec)
	if st := d.Stats(); st.Exporters[a.Addr()].PendingDropped != 3 || st.PendingBytes != 0 {
		t.Fatalf("Expire: %d bytes held, %+v", st.PendingBytes, st.Exporters[a.Addr()])
	}

	t.Run("evicted", func(t *testing.T) {
		d := New(Config{MaxExporters: 1})
		count(t, d, a, ipfixMsg(0, 1, set(300, rec300(1))), 1*sec) // held; a decoded (data before template is fine)
		count(t, d, b, ipfixMsg(0, 1, set(2, tmpl300)), 3*sec)     // evicts a
		if st := d.Stats(); st.Evicted.PendingDropped != 1 || st.PendingBytes != 0 || st.Total.TemplateMisses != 1 {
			t.Fatalf("%d bytes held, evicted %+v", st.PendingBytes, st.Evicted)
		}
	})

	t.Run("global pending bytes", func(t *testing.T) {
		d := New(Config{PendingMessages: 1000})
		setLen := 60000
		n := maxPendingTotal/setLen + 50
		for i := range n {
			from := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 9, byte(i >> 8), byte(i)}), 1)
			count(t, d, from, ipfixMsg(0, 1, set(300, make([]byte, setLen))), 1)
		}
		st := d.Stats()
		held := int64(maxPendingTotal / setLen * setLen)
		if st.PendingBytes != held || st.Total.PendingDropped != 50 {
			t.Errorf("%d bytes held, want %d; %d dropped", st.PendingBytes, held, st.Total.PendingDropped)
		}
	})
}

// TestConcurrentChurn: many goroutines, more exporters than slots, tiny
// budgets: the budgets end where the state left says, and every call is
// counted once.
func TestConcurrentChurn(t *testing.T) {
	d := New(Config{MaxExporters: 64, MaxTemplateBytes: 16 << 10, PendingMessages: 4})
	var wg sync.WaitGroup
	const perG = 300
	for g := range 8 {
		wg.Go(func() {
			for i := range perG {
				from := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(g), 0, byte(i % 40)}), uint16(i%3))
				var msg []byte
				switch i % 4 {
				case 0:
					msg = ipfixMsg(uint32(i), 1, set(2, tmpl300, tmpl(uint16(400+i%50), 8, 4)))
				case 1:
					msg = ipfixMsg(uint32(i), 1, set(300, rec300(1)), set(uint16(600+i%7), rec300(1)))
				case 2:
					msg = []byte{0, 10, 0, 1}
				case 3:
					msg = v9Msg(uint32(i), uint32(i), 2, set(0, tmpl300), set(300, rec300(2)))
				}
				d.Decode(from, msg, uint64(i)*uint64(1100*time.Millisecond), func(*schemas.FlowMessage) {}) // evictions: older than evictMinIdle
			}
		})
	}
	wg.Wait()
	d.Expire(uint64(time.Hour))
	st := d.Stats()
	d.mu.Lock()
	var charged, pend int64
	for _, e := range d.exporters {
		e.mu.Lock()
		charged += e.stateBytes
		pend += int64(e.pendingBytes)
		e.mu.Unlock()
	}
	d.mu.Unlock()
	if st.TemplateBytes != charged || st.PendingBytes != pend || pend != 0 || charged > 16<<10 {
		t.Errorf("budget %d, exporters hold %d; pending %d, %d", st.TemplateBytes, charged, st.PendingBytes, pend)
	}
	whole := st.Total.Messages
	for _, r := range []Reason{ReasonTruncated, ReasonVersion, ReasonLength, ReasonTooManyExporters} {
		whole += st.Total.Dropped[r]
	}
	// A domain refused for memory drops its message whole; a template
	// refused only part of one.
	if whole > 8*perG || whole+st.Total.Dropped[ReasonTemplateMemory] < 8*perG || st.Total.Dropped[ReasonTemplateMemory] == 0 {
		t.Errorf("%d of %d calls counted: %+v", whole, 8*perG, st.Total)
	}
	if st.Evictions == 0 {
		t.Error("no evictions: the test churns nothing")
	}
	if st.Total.TemplateMisses != st.Total.PendingDecoded+st.Total.PendingDropped {
		t.Errorf("held %d, decoded %d + dropped %d", st.Total.TemplateMisses, st.Total.PendingDecoded, st.Total.PendingDropped)
	}
}

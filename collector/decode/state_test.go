package decode

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/xdpflow/xdpflow/schemas"
)

func count(t *testing.T, d *Decoder, from netip.AddrPort, msg []byte, ns uint64) int {
	t.Helper()
	n := 0
	if err := d.Decode(from, msg, ns, func(*schemas.FlowMessage) { n++ }); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestSequence(t *testing.T) {
	tset := set(2, tmpl300)
	data := func(seq uint32, n int) []byte {
		var recs [][]byte
		for i := range n {
			recs = append(recs, rec300(byte(i)))
		}
		return ipfixMsg(seq, 1, tset, set(300, recs...))
	}
	type step struct {
		msg                          []byte
		lost, resets, ooo, wantCount uint64
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"ipfix in order", []step{{data(0, 2), 0, 0, 0, 2}, {data(2, 3), 0, 0, 0, 5}, {data(5, 1), 0, 0, 0, 6}}},
		{"ipfix gap then late arrival", []step{
			{data(100, 2), 0, 0, 0, 2}, {data(106, 2), 4, 0, 0, 4}, // 102..105 missing
			{data(102, 2), 2, 0, 1, 6}, // late: fills half the gap
			{data(108, 1), 2, 0, 1, 7}}},
		{"ipfix duplicate", []step{{data(100, 2), 0, 0, 0, 2}, {data(100, 2), 0, 0, 1, 4}, {data(102, 2), 0, 0, 1, 6}}},
		{"ipfix restart", []step{{data(5_000_000, 2), 0, 0, 0, 2}, {data(0, 2), 0, 1, 0, 4}, {data(2, 1), 0, 1, 0, 5}}},
		{"ipfix huge jump forward", []step{{data(0, 2), 0, 0, 0, 2}, {data(1<<30, 2), 0, 1, 0, 4}}},
		{"ipfix wrap", []step{{data(1<<32-2, 2), 0, 0, 0, 2}, {data(0, 2), 0, 0, 0, 4}}},
		{"v9 packets", []step{
			{v9Msg(100_000, 7, 1, set(0, tmpl300), set(300, rec300(1))), 0, 0, 0, 1},
			{v9Msg(101_000, 8, 1, set(300, rec300(1))), 0, 0, 0, 2},
			{v9Msg(102_000, 11, 1, set(300, rec300(1))), 2, 0, 0, 3},             // packets 9, 10 lost
			{v9Msg(101_500, 9, 1, set(300, rec300(1))), 1, 0, 1, 4},              // one of them late
			{v9Msg(500, 0, 1, set(0, tmpl300), set(300, rec300(1))), 1, 1, 1, 5}, // sysUptime back: restart
			{v9Msg(600, 1, 1, set(300, rec300(1))), 1, 1, 1, 6}}},
		{"v5 flows", []step{
			{v5Msg(1000, 100_000, 3), 0, 0, 0, 3}, {v5Msg(1003, 100_100, 2), 0, 0, 0, 5},
			{v5Msg(1010, 100_200, 1), 5, 0, 0, 6}, {v5Msg(0, 50, 1), 5, 1, 0, 7}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := New(Config{})
			recs := uint64(0)
			for i, s := range tc.steps {
				recs += uint64(count(t, d, testExporter, s.msg, 1))
				st := d.Stats().Exporters[testExporter.Addr()]
				if st.Lost != s.lost || st.Resets != s.resets || st.OutOfOrder != s.ooo || recs != s.wantCount {
					t.Fatalf("step %d: lost %d resets %d out-of-order %d records %d, want %d %d %d %d",
						i, st.Lost, st.Resets, st.OutOfOrder, recs, s.lost, s.resets, s.ooo, s.wantCount)
				}
			}
		})
	}
}

func TestDataBeforeTemplate(t *testing.T) {
	sec := uint64(time.Second)
	t.Run("buffered then decoded", func(t *testing.T) {
		d := New(Config{})
		if n := count(t, d, testExporter, ipfixMsg(10, 1, set(300, rec300(1), rec300(2))), 1*sec); n != 0 {
			t.Fatalf("%d records before the template", n)
		}
		var seqs []uint32
		err := d.Decode(testExporter, ipfixMsg(12, 1, set(2, tmpl300), set(300, rec300(3))), 2*sec, func(m *schemas.FlowMessage) {
			seqs = append(seqs, m.SequenceNum)
		})
		if err != nil || len(seqs) != 3 || seqs[0] != 10 || seqs[2] != 12 {
			t.Fatalf("sequence numbers %v (%v): want the held records first, with their own header", seqs, err)
		}
		st := d.Stats().Total
		if st.TemplateMisses != 1 || st.PendingDecoded != 1 || st.PendingDropped != 0 || st.Records != 3 {
			t.Errorf("%+v", st)
		}
	})
	t.Run("aged out", func(t *testing.T) {
		d := New(Config{PendingAge: time.Second})
		count(t, d, testExporter, ipfixMsg(0, 1, set(300, rec300(1))), 1*sec)
		if n := count(t, d, testExporter, ipfixMsg(1, 1, set(2, tmpl300)), 3*sec); n != 0 {
			t.Fatalf("%d records from an aged-out set", n)
		}
		if st := d.Stats().Total; st.PendingDropped != 1 || st.PendingDecoded != 0 {
			t.Errorf("%+v", st)
		}
	})
	t.Run("overflow", func(t *testing.T) {
		d := New(Config{PendingMessages: 2})
		for i := range 5 {
			count(t, d, testExporter, ipfixMsg(uint32(i), 1, set(300, rec300(byte(i)))), sec)
		}
		if n := count(t, d, testExporter, ipfixMsg(5, 1, set(2, tmpl300)), sec); n != 2 {
			t.Fatalf("%d records, want the 2 newest held", n)
		}
		if st := d.Stats().Total; st.TemplateMisses != 5 || st.PendingDropped != 3 || st.PendingDecoded != 2 {
			t.Errorf("%+v", st)
		}
	})
	t.Run("other domain's template does not match", func(t *testing.T) {
		d := New(Config{})
		count(t, d, testExporter, ipfixMsg(0, 1, set(300, rec300(1))), sec)
		if n := count(t, d, testExporter, ipfixMsg(0, 2, set(2, tmpl300)), sec); n != 0 {
			t.Fatalf("domain 2's template decoded domain 1's data")
		}
	})
}

func TestTemplateWithdrawal(t *testing.T) {
	d := New(Config{})
	if n := count(t, d, testExporter, ipfixMsg(0, 1, set(2, tmpl300), set(300, rec300(1))), 1); n != 1 {
		t.Fatal(n)
	}
	// Withdraw 300 (field count 0): its data is a template miss again.
	if n := count(t, d, testExporter, ipfixMsg(1, 1, set(2, tmpl(300)), set(300, rec300(1))), 1); n != 0 {
		t.Fatalf("%d records after withdrawal", n)
	}
	// Learn 300 and 301, withdraw all (template id 2 in set 2).
	count(t, d, testExporter, ipfixMsg(1, 1, set(2, tmpl300, tmpl(301, 8, 4))), 1)
	if n := count(t, d, testExporter, ipfixMsg(1, 1, set(2, tmpl(2)), set(300, rec300(1)), set(301, []byte{1, 2, 3, 4})), 1); n != 0 {
		t.Fatalf("%d records after withdrawing all", n)
	}
	st := d.Stats().Total
	if st.Withdrawals != 2 || st.TemplateMisses != 3 {
		t.Errorf("%+v", st)
	}
	d.mu.Lock()
	e := d.exporters[testExporter.Addr()]
	d.mu.Unlock()
	if e.templates != 0 {
		t.Errorf("%d templates counted after withdrawing all", e.templates)
	}
}

func TestLimits(t *testing.T) {
	t.Run("exporters", func(t *testing.T) {
		d := New(Config{MaxExporters: 2})
		msg := ipfixMsg(0, 1, set(2, tmpl300), set(300, rec300(1)))
		a, b, c := netip.MustParseAddrPort("192.0.2.1:1"), netip.MustParseAddrPort("192.0.2.2:1"), netip.MustParseAddrPort("192.0.2.3:1")
		count(t, d, a, msg, 1)
		count(t, d, b, msg, 1)
		if err := d.Decode(c, msg, 2, func(*schemas.FlowMessage) {}); !errors.Is(err, ErrDropped) {
			t.Fatalf("third exporter: %v", err)
		}
		// Once a has been silent long enough, c takes its slot.
		count(t, d, b, msg, uint64(time.Minute))
		if n := count(t, d, c, msg, uint64(time.Minute)+2); n != 1 {
			t.Fatal(n)
		}
		st := d.Stats()
		if st.Tracked != 2 || st.Total.Dropped[ReasonTooManyExporters] != 1 || st.Total.Records != 4 {
			t.Errorf("tracked %d, %+v", st.Tracked, st.Total)
		}
		if _, ok := st.Exporters[a.Addr()]; ok {
			t.Error("evicted exporter still listed")
		}
	})
	t.Run("templates", func(t *testing.T) {
		d := New(Config{MaxTemplatesPerExporter: 2})
		count(t, d, testExporter, ipfixMsg(0, 1, set(2, tmpl(300, 8, 4), tmpl(301, 8, 4), tmpl(302, 8, 4))), 1)
		count(t, d, testExporter, ipfixMsg(0, 2, set(2, tmpl(300, 8, 4))), 1)
		count(t, d, testExporter, ipfixMsg(0, 1, set(2, tmpl(300, 12, 4))), 1) // a refresh still fits
		st := d.Stats().Total
		if st.Dropped[ReasonTooManyTemplates] != 2 || st.Templates != 3 {
			t.Errorf("%+v", st)
		}
	})
	t.Run("domains", func(t *testing.T) {
		d := New(Config{})
		for i := range maxDomains + 3 {
			d.Decode(testExporter, ipfixMsg(0, uint32(i), set(2, tmpl300)), 1, nil)
		}
		if st := d.Stats().Total; st.Dropped[ReasonTooManyDomains] != 3 {
			t.Errorf("%v", st.Bad())
		}
	})
	t.Run("pending bytes", func(t *testing.T) {
		d := New(Config{PendingMessages: 1000})
		big := set(300, make([]byte, 60000))
		for i := range 10 {
			count(t, d, testExporter, ipfixMsg(uint32(i), 1, big), 1)
		}
		d.mu.Lock()
		e := d.exporters[testExporter.Addr()]
		d.mu.Unlock()
		if e.pendingBytes > maxPendingBytes || d.Stats().Total.PendingDropped == 0 {
			t.Errorf("%d bytes pending", e.pendingBytes)
		}
	})
}

func TestReadIPFIXMessage(t *testing.T) {
	a := ipfixMsg(0, 1, set(2, tmpl300))
	b := ipfixMsg(1, 1, set(300, rec300(1)))
	r := bufio.NewReader(bytes.NewReader(cat(a, b)))
	var buf []byte
	for i, want := range [][]byte{a, b} {
		got, err := ReadIPFIXMessage(r, buf)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("message %d: %x, %v", i, got, err)
		}
		buf = got
	}
	if _, err := ReadIPFIXMessage(r, buf); err != io.EOF {
		t.Fatalf("at the end: %v", err)
	}
	for _, tc := range []struct {
		name   string
		stream []byte
	}{
		{"bad version", cat(be16(9), be16(20), make([]byte, 16))},
		{"length below header", cat(be16(10), be16(15), make([]byte, 16))},
		{"cut short", a[:20]},
		{"cut in the header", a[:3]},
	} {
		if _, err := ReadIPFIXMessage(bufio.NewReader(bytes.NewReader(tc.stream)), nil); err == nil || err == io.EOF {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

package decode

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xdpflow/xdpflow/probe/export/ipfix"
	"github.com/xdpflow/xdpflow/probe/export/ipfix/ipfixtest"
	"github.com/xdpflow/xdpflow/schemas"
)

// FuzzDecode feeds one input two ways: whole, as one message, and cut into
// messages each preceded by a 2-byte length (so template then data
// sequences can be found), to one decoder with small limits. It must not
// panic, hang or emit a malformed record.
func FuzzDecode(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d := New(Config{MaxExporters: 2, MaxTemplatesPerExporter: 4, PendingMessages: 2, PendingAge: time.Second, MaxTemplateBytes: 8 << 10})
		check := func(m *schemas.FlowMessage) {
			for _, a := range [][]byte{m.SrcAddr, m.DstAddr, m.NextHop, m.BgpNextHop} {
				if len(a) != 0 && len(a) != 16 {
					t.Fatalf("%d-byte address", len(a))
				}
			}
			if len(m.SamplerAddress) != 16 || m.SchemaVersion != schemas.SchemaVersion {
				t.Fatalf("header fields: %x %d", m.SamplerAddress, m.SchemaVersion)
			}
		}
		d.Decode(testExporter, data, 1, check)
		// Three addresses (one more than MaxExporters: evictions), the
		// first from two source ports (transport sessions).
		exps := []netip.AddrPort{testExporter, netip.MustParseAddrPort("[2001:db8::1]:9"), netip.MustParseAddrPort("198.51.100.1:9"),
			netip.AddrPortFrom(testExporter.Addr(), 40001)}
		calls := uint64(1)
		for i, b := 0, data; len(b) >= 2; i++ {
			n := min(int(binary.BigEndian.Uint16(b)), len(b)-2)
			d.Decode(exps[i%len(exps)], b[2:2+n], uint64(i)*uint64(300*time.Millisecond), check)
			b = b[2+n:]
			calls++
		}
		d.Expire(uint64(time.Hour))
		st := d.Stats()
		if st.Total.Dropped[ReasonPanic] != 0 {
			t.Fatal("recovered a panic")
		}
		// Every call counted: accepted, or dropped whole for one reason.
		// (bad_template and template_memory can also be a part of an
		// accepted message: bounded by the messages, not equal.)
		whole := st.Total.Messages
		for _, r := range []Reason{ReasonTruncated, ReasonVersion, ReasonLength, ReasonSetLength, ReasonSetID, ReasonTemplateID, ReasonTooManyExporters, ReasonTooManyDomains} {
			whole += st.Total.Dropped[r]
		}
		if whole > calls || whole+st.Total.Dropped[ReasonTemplate]+st.Total.Dropped[ReasonTemplateMemory] < calls {
			t.Fatalf("%d calls, counted %d accepted or dropped whole: %+v", calls, whole, st.Total)
		}
		// Held data is all decoded or dropped in the end, and the budgets
		// are back to what the exporters hold.
		if st.PendingBytes != 0 || st.Total.TemplateMisses != st.Total.PendingDecoded+st.Total.PendingDropped {
			t.Fatalf("%d bytes still held, %+v", st.PendingBytes, st.Total)
		}
		if st.TemplateBytes > 8<<10 || st.TemplateBytes < 0 {
			t.Fatalf("%d template bytes", st.TemplateBytes)
		}
	})
}

// frame joins messages in FuzzDecode's length-prefixed form.
func frame(msgs ...[]byte) []byte {
	var b []byte
	for _, m := range msgs {
		b = binary.BigEndian.AppendUint16(b, uint16(len(m)))
		b = append(b, m...)
	}
	return b
}

// fuzzSeeds: the router captures, the probe's encoder output (templates
// and data as one framed input), and the hand-built messages of the tests.
func fuzzSeeds(tb testing.TB) [][]byte {
	var seeds [][]byte
	if _, err := os.Stat(filepath.Join("..", "..", "..", "shared", "vectors")); err == nil {
		for _, v := range vectorFiles {
			b := readVector(tb, v.name)
			seeds = append(seeds, b, frame(b, b))
		}
	}
	now := time.Now()
	for _, p := range []ipfix.Protocol{ipfix.IPFIX, ipfix.NetFlowV9} {
		msgs := ipfixtest.Encode(tb, ipfix.Config{Protocol: p, Interfaces: map[uint32]string{1: "eth0"}, SamplingInterval: 10}, testFlows(20, now.Add(time.Second), 3), now)
		seeds = append(seeds, frame(msgs...), frame(append(msgs[1:], msgs[0])...))
	}
	seeds = append(seeds,
		frame(ipfixMsg(0, 1, set(2, tmpl300), set(300, rec300(1), rec300(2)))),
		frame(ipfixMsg(0, 1, set(300, rec300(1))), ipfixMsg(1, 1, set(2, tmpl300)), ipfixMsg(2, 1, set(2, tmpl(300))), ipfixMsg(2, 1, set(300, rec300(3)))),
		frame(ipfixMsg(0, 1, set(2, tmpl(301, 8, 4, 82, 0xffff)), set(301, []byte{10, 0, 0, 1, 3, 'e', 't', 'h'}))),
		frame(v9Msg(100_000, 0, 1, set(0, tmpl300), set(300, rec300(1))), v9Msg(500, 0, 1, set(300, rec300(1)))),
		frame(v5Msg(0, 100_000, 3), v5Msg(3, 100_100, 1)),
	)
	return seeds
}

// TestWriteFuzzSeeds writes fuzzSeeds into testdata/fuzz/FuzzDecode (run
// with XDPFLOW_WRITE_FUZZ_SEEDS=1 after changing them).
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("XDPFLOW_WRITE_FUZZ_SEEDS") == "" {
		t.Skip("set XDPFLOW_WRITE_FUZZ_SEEDS=1 to rewrite the committed seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, s := range fuzzSeeds(t) {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

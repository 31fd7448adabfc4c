package decode

import (
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/xdpflow/xdpflow/schemas"
)

var testExporter = netip.MustParseAddrPort("192.0.2.10:40000")

// decodeAll decodes msgs in order and returns a copy of every record.
func decodeAll(t testing.TB, d *Decoder, from netip.AddrPort, msgs [][]byte, receivedNs uint64) []*schemas.FlowMessage {
	t.Helper()
	var out []*schemas.FlowMessage
	for i, m := range msgs {
		if err := d.Decode(from, m, receivedNs, func(fm *schemas.FlowMessage) {
			out = append(out, proto.Clone(fm).(*schemas.FlowMessage))
		}); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	return out
}

// testFlows returns n reproducible flows after t0 covering both families,
// ICMP, counters past 2^32 and sub-millisecond times.
func testFlows(n int, t0 time.Time, seed uint64) []schemas.Flow {
	r := rand.New(rand.NewPCG(seed, 7))
	base := t0.UnixNano()
	out := make([]schemas.Flow, n)
	for i := range out {
		f := &out[i]
		if i%3 == 2 {
			var a, b [16]byte
			for j := range a {
				a[j], b[j] = byte(r.Uint32()), byte(r.Uint32())
			}
			a[0], b[0] = 0x20, 0x20
			f.SrcAddr, f.DstAddr = netip.AddrFrom16(a), netip.AddrFrom16(b)
		} else {
			f.SrcAddr = netip.AddrFrom4([4]byte{10, byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())})
			f.DstAddr = netip.AddrFrom4([4]byte{192, 0, 2, byte(r.Uint32())})
		}
		f.Proto = []uint8{6, 17, 1, 58, 132}[r.IntN(5)]
		f.SrcPort, f.DstPort = uint16(r.Uint32()), uint16(r.Uint32())
		if f.IsICMP() {
			f.SrcPort = 0
		}
		f.VlanId = uint16(r.IntN(4096))
		f.InIf = uint32(1 + r.IntN(4))
		f.Packets = uint64(r.IntN(1e6)) + 1
		if i%7 == 0 {
			f.Packets += 5_000_000_000
		}
		f.Bytes = f.Packets * uint64(40+r.IntN(1460))
		f.L2Bytes = f.Bytes + 14*f.Packets
		f.TimeFlowStartNs = base + r.Int64N(60e9)
		f.TimeFlowEndNs = f.TimeFlowStartNs + r.Int64N(60e9)
		f.TcpFlags = uint16(r.IntN(0x200))
		f.IpTos = uint8(r.Uint32())
		f.EndReason = schemas.EndReason(1 + r.IntN(5))
	}
	return out
}

// msOnly is what the exporters carry: times in whole milliseconds.
func msOnly(f schemas.Flow) schemas.Flow {
	f.TimeFlowStartNs = f.TimeFlowStartNs / 1e6 * 1e6
	f.TimeFlowEndNs = f.TimeFlowEndNs / 1e6 * 1e6
	return f
}

// vectorsDir is the shared router captures (see its README.md), in
// ../shared/vectors of the checkout or where XDPFLOW_VECTORS says (a git
// worktree has no ../shared beside it); tests skip without them.
func vectorsDir(t testing.TB) string {
	dir := findVectors()
	if dir == "" {
		t.Skipf("router captures not available: a plain clone has no ../shared/vectors (XDPFLOW_VECTORS names another place)")
	}
	return dir
}

func findVectors() string {
	dir := os.Getenv("XDPFLOW_VECTORS")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "vectors")
	}
	if _, err := os.Stat(dir); err != nil {
		return ""
	}
	return dir
}

func readVector(t testing.TB, name string) []byte {
	b, err := os.ReadFile(filepath.Join(vectorsDir(t), name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var vectorFiles = []struct {
	name    string
	port    uint16
	records int
}{
	{"ipfix_test_juniper_mx240_junos151r6s3_opttpl512.dat", 4739, 0},
	{"ipfix_test_yaf_tpls_option_tpl.dat", 4739, 0},
	{"netflow5_test_juniper_mx80.dat", 2055, 29},
	{"netflow9_test_iptnetflow_reduced_size_encoding_tpldata260.dat", 2055, 12},
}

func cloneMsg(m *schemas.FlowMessage) *schemas.FlowMessage {
	return proto.Clone(m).(*schemas.FlowMessage)
}

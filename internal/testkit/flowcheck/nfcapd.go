package flowcheck

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xdpflow/xdpflow/internal/syncbuf"
	"github.com/xdpflow/xdpflow/internal/testkit/testnet"
	"github.com/xdpflow/xdpflow/schemas"
)

// Nfcapd is nfdump's collector, run on side b of a test pair.
type Nfcapd struct {
	cmd  *exec.Cmd
	dir  string
	URL  string
	done chan error
}

// StartNfcapd starts nfcapd on a free port of side b's loopback, writing
// into a test directory.
func StartNfcapd(t *testing.T, pair *testnet.Pair) *Nfcapd {
	t.Helper()
	if _, err := exec.LookPath("nfcapd"); err != nil {
		t.Fatal("nfcapd not found: install Debian's nfdump package (.ci/run does)")
	}
	// A free port on the namespace's loopback.
	c, err := pair.ListenUDP(pair.B)
	if err != nil {
		t.Fatal(err)
	}
	port := c.LocalAddr().(*net.UDPAddr).Port
	c.Close()
	n := &Nfcapd{dir: t.TempDir(), URL: fmt.Sprintf("udp://127.0.0.1:%d", port), done: make(chan error, 1)}
	n.cmd = exec.Command("ip", "netns", "exec", pair.NsName("b"), "nfcapd", "-b", "127.0.0.1", "-p", fmt.Sprint(port), "-w", n.dir, "-t", "3600")
	var out syncbuf.Buffer
	n.cmd.Stdout, n.cmd.Stderr = &out, &out
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { n.done <- n.cmd.Wait() }()
	t.Cleanup(func() {
		n.cmd.Process.Kill()
		<-n.done
	})
	time.Sleep(300 * time.Millisecond) // let it bind
	return n
}

// Flows stops nfcapd (it writes its file on SIGTERM) and reads the flows
// back with nfdump.
func (n *Nfcapd) Flows(t *testing.T) Sums {
	t.Helper()
	got := Sums{}
	for _, f := range n.Records(t) {
		got.AddRecord(&f)
	}
	return got
}

// Records stops nfcapd and reads its records back with nfdump, as
// records: the fields nfdump shows (`nfdump -o json`), the rest zero.
// nfdump 1.7 shows MACs (in_src_mac, in_dst_mac), MPLS labels (mpls_1
// to mpls_10, "label-TC-S": no TTL) and observationPointID, not
// layer2OctetDeltaCount (IE 352) nor xdpflow's enterprise IEs.
func (n *Nfcapd) Records(t *testing.T) []schemas.Flow {
	t.Helper()
	n.stop(t)
	out, err := exec.Command("nfdump", "-R", n.dir, "-o", "json").Output()
	if err != nil {
		t.Fatalf("nfdump: %v", err)
	}
	var recs []map[string]any
	if err := json.Unmarshal(out, &recs); err != nil {
		t.Fatalf("nfdump json: %v\n%s", err, out)
	}
	if os.Getenv("XDPFLOW_NFDUMP_DEBUG") != "" {
		t.Logf("nfdump -o json:\n%s", out)
	}
	var flows []schemas.Flow
	for _, r := range recs {
		f := schemas.Flow{
			SrcAddr: addr(r, "src4_addr", "src6_addr"), DstAddr: addr(r, "dst4_addr", "dst6_addr"),
			SrcPort: uint16(num(r, "src_port")), DstPort: uint16(num(r, "dst_port")),
			Proto: uint8(num(r, "proto")), VlanId: uint16(num(r, "src_vlan")),
			Packets: uint64(num(r, "in_packets")), Bytes: uint64(num(r, "in_bytes")),
		}
		if f.IsICMP() { // nfdump shows ICMP type and code in their own fields
			f.DstPort = uint16(num(r, "icmp_type"))<<8 | uint16(num(r, "icmp_code"))
		}
		f.SrcMac, f.DstMac = mac(t, r, "in_src_mac"), mac(t, r, "in_dst_mac")
		for i := range f.MplsLabels {
			f.MplsLabels[i] = label(t, r, fmt.Sprintf("mpls_%d", i+1))
		}
		f.ObservationPointId = uint32(num(r, "observationPointID"))
		flows = append(flows, f)
	}
	if len(recs) == 0 {
		t.Errorf("nfdump read no flows:\n%s", out)
	}
	return flows
}

// stop stops nfcapd, which writes its file on SIGTERM; again, nothing.
func (n *Nfcapd) stop(t *testing.T) {
	t.Helper()
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-n.done:
		n.done <- err
	case <-time.After(10 * time.Second):
		t.Fatal("nfcapd did not stop")
	}
}

// Format stops nfcapd and has nfdump print each record as an operator
// would ask, `nfdump -o 'fmt:...'` (format's %-elements separated by |),
// IPv6 addresses in full and numbers unscaled: one row of trimmed fields
// per record.
func (n *Nfcapd) Format(t *testing.T, format string) [][]string {
	t.Helper()
	n.stop(t)
	out, err := exec.Command("nfdump", "-q", "-6", "-N", "-R", n.dir, "-o", "fmt:"+format).Output()
	if err != nil {
		t.Fatalf("nfdump -o fmt:%s: %v", format, err)
	}
	var rows [][]string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l == "" {
			continue
		}
		row := strings.Split(l, "|")
		for i := range row {
			row[i] = strings.TrimSpace(row[i])
		}
		rows = append(rows, row)
	}
	return rows
}

func addr(r map[string]any, keys ...string) netip.Addr {
	for _, k := range keys {
		if s, ok := r[k].(string); ok {
			if a, err := netip.ParseAddr(s); err == nil {
				return a
			}
		}
	}
	return netip.Addr{}
}

// mac reads an address nfdump writes as aa:bb:cc:dd:ee:ff (zero: none).
func mac(t *testing.T, r map[string]any, k string) schemas.MAC {
	var m schemas.MAC
	if s, ok := r[k].(string); ok {
		if err := m.UnmarshalText([]byte(s)); err != nil {
			t.Errorf("nfdump %s: %v", k, err)
		}
	}
	return m
}

// label reads a label stack entry nfdump writes as label-TC-S: the
// entry without its TTL (IPFIX has none), 0 for none.
func label(t *testing.T, r map[string]any, k string) uint32 {
	s, ok := r[k].(string)
	if !ok {
		return 0
	}
	var l, tc, bos uint32
	if _, err := fmt.Sscanf(s, "%d-%d-%d", &l, &tc, &bos); err != nil {
		t.Errorf("nfdump %s %q: %v", k, s, err)
	}
	return l<<12 | tc<<9 | bos<<8
}

func num(r map[string]any, k string) float64 {
	f, _ := r[k].(float64)
	return f
}

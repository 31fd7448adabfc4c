package ipfix

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/xdpflow/xdpflow/internal/testkit/flowcheck"
)

func writePcap(t *testing.T, path string, dstPort uint16, msgs [][]byte) {
	t.Helper()
	if err := flowcheck.WritePcap(path, dstPort, msgs); err != nil {
		t.Fatal(err)
	}
}

// TestTshark has Wireshark's cflow dissector, a third independent decoder,
// read the messages. CI must install tshark for this test to run.
func TestTshark(t *testing.T) {
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Skip("tshark not installed (apt-get install tshark): Wireshark decoding not checked")
	}
	flows := append(fixedFlows(), randomFlows(600, 0.5, 5)...)
	for _, c := range []struct {
		p    Protocol
		port uint16
		max  int
	}{{IPFIX, 4739, 1400}, {IPFIX, 4739, 9000}, {NetFlowV9, 2055, 1400}, {NetFlowV9, 2055, 512}} {
		t.Run(fmt.Sprintf("%v/%d", c.p, c.max), func(t *testing.T) {
			cfg := Config{Protocol: c.p, MaxMessageBytes: c.max, Interfaces: map[uint32]string{1: "lo", 2: "eth0"}}
			msgs := encodeAll(t, cfg, flows)
			text := tsharkText(t, tshark, c.port, msgs)
			// cflow heads each data set "Set n [id=256] (k flows)" (IPFIX)
			// or "FlowSet n [id=256] (k flows)" (v9).
			re := regexp.MustCompile(`(?m)^\s+(?:Flow)?Set \d+ \[id=(\d+)\] \((\d+) flows?\)$`)
			byID := map[string]int{}
			for _, m := range re.FindAllStringSubmatch(text, -1) {
				n, _ := strconv.Atoi(m[2])
				byID[m[1]] += n
			}
			if got := byID["256"] + byID["257"]; got != len(flows) {
				t.Errorf("tshark decoded %d flow records (%v), %d sent", got, byID, len(flows))
			}
			if byID["258"] != 1 || byID["259"] != 2 {
				t.Errorf("tshark options records %v, want 1 sampling (258) and 2 interface (259)", byID)
			}
			for _, want := range []string{"IfName: eth0", "SrcAddr: 2001:db8::1", "DstPort: 2048", "Layer2 Octet Delta Count: 294"} {
				if !strings.Contains(text, want) {
					t.Errorf("tshark output lacks %q", want)
				}
			}
		})
	}
}

// tsharkText is tshark's detailed reading of msgs sent to port; it fails
// the test on any malformed packet or expert warning.
func tsharkText(t *testing.T, tshark string, port uint16, msgs [][]byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "export.pcap")
	writePcap(t, path, port, msgs)
	out, err := exec.Command(tshark, "-n", "-r", path, "-d", "udp.port==4739,cflow", "-d", "udp.port==2055,cflow", "-V").CombinedOutput()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, tail(out))
	}
	text := string(out)
	for _, bad := range []string{"Malformed", "Expert Info (Error", "Expert Info (Warning"} {
		if i := strings.Index(text, bad); i >= 0 {
			t.Fatalf("tshark reports %q:\n%s", bad, text[max(0, i-3000):min(len(text), i+500)])
		}
	}
	return text
}

func tail(b []byte) string {
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xdpflow/xdpflow/internal/syncbuf"
	"github.com/xdpflow/xdpflow/internal/testkit/freeport"
	"github.com/xdpflow/xdpflow/internal/testkit/kafkacheck"
	"github.com/xdpflow/xdpflow/probe/export/ipfix"
	"github.com/xdpflow/xdpflow/probe/export/ipfix/ipfixtest"
	"github.com/xdpflow/xdpflow/schemas"
)

// testFlows are records as the probe would export them, with times in
// whole milliseconds (IPFIX carries milliseconds).
func testFlows(n int, base byte) []schemas.Flow {
	now := time.Now().Truncate(time.Millisecond).UnixNano()
	out := make([]schemas.Flow, n)
	for i := range out {
		f := schemas.Flow{SrcAddr: netip.AddrFrom4([4]byte{198, 18, base, byte(i)}), DstAddr: netip.MustParseAddr("198.19.0.1"),
			SrcPort: uint16(1000 + i), DstPort: 443, Proto: 6, InIf: 1, VlanId: uint16(i % 10),
			Packets: uint64(i + 1), Bytes: uint64(100 * (i + 1)), L2Bytes: uint64(114 * (i + 1)),
			TimeFlowStartNs: now - 1e9, TimeFlowEndNs: now, TcpFlags: 0x18, IpTos: 8, EndReason: schemas.EndIdle}
		if i%4 == 0 {
			f.SrcAddr = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: base, 15: byte(i)})
			f.DstAddr = netip.MustParseAddr("2001:db8::1")
		}
		out[i] = f
	}
	return out
}

// export encodes flows as IPFIX into w, one message per write.
func export(t *testing.T, w io.Writer, flows []schemas.Flow, domain uint32) {
	t.Helper()
	for _, m := range ipfixtest.Encode(t, ipfix.Config{ObservationDomain: domain, Interfaces: map[uint32]string{1: "xe-0/0/1"}}, flows, time.Now()) {
		if _, err := w.Write(m); err != nil {
			t.Fatal(err)
		}
	}
}

func sorted(fs []schemas.Flow) []string {
	var out []string
	for _, f := range fs {
		out = append(out, fmt.Sprintf("%+v", f))
	}
	slices.Sort(out)
	return out
}

// checkMetrics scrapes the running collector.
func checkMetrics(t *testing.T, log string) {
	t.Helper()
	m := regexp.MustCompile(`msg=metrics addr=(\S+)`).FindStringSubmatch(log)
	if m == nil {
		t.Fatalf("no metrics address in the log:\n%s", log)
	}
	for path, want := range map[string][]string{
		"/readyz": {"ready"},
		"/metrics": {
			`xdpflow_collector_records_total{exporter="127.0.0.1"} 350`,
			`xdpflow_collector_lost_records_total{exporter="127.0.0.1"} 0`,
			`xdpflow_collector_bad_messages_total{exporter="127.0.0.1",reason="bad_length"} 0`,
			`xdpflow_kafka_up 1`,
		},
	} {
		b := get(t, "http://"+m[1]+path)
		for _, w := range want {
			if !strings.Contains(b, w) {
				t.Errorf("%s lacks %q", path, w)
			}
		}
	}
	if !regexp.MustCompile(`xdpflow_collector_denied_total\{listener="udp://[^"]+"\} [1-9]`).MatchString(get(t, "http://"+m[1]+"/metrics")) {
		t.Error("/metrics: no denied datagrams counted")
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	r, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	if r.StatusCode != http.StatusOK {
		t.Errorf("%s: %d %s", url, r.StatusCode, b)
	}
	return string(b)
}

// TestOutputs runs the collector in process with a UDP and a TCP listener,
// --allow, a JSON lines file and Kafka: both outputs hold exactly the
// records the allowed exporters sent; the denied one's are counted, not
// written.
func TestOutputs(t *testing.T) {
	kb := kafkacheck.Start(t, 3, []string{"flows"}, nil)
	udpPort, tcpPort := freeport.Get(t, "udp"), freeport.Get(t, "tcp")
	out := filepath.Join(t.TempDir(), "flows.jsonl")
	c, _, err := parseConfig([]string{"--listen", fmt.Sprintf("udp://127.0.0.1:%d", udpPort), "--listen", fmt.Sprintf("tcp://127.0.0.1:%d", tcpPort),
		"--out", out, "--allow", "127.0.0.1/32", "--kafka-brokers", kb.Addr, "--kafka-topic", "flows", "--metrics", "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	var logs syncbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, c, log) }()
	time.Sleep(300 * time.Millisecond)

	udpFlows, tcpFlows, denied := testFlows(200, 1), testFlows(150, 2), testFlows(50, 3)
	u, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: udpPort})
	if err != nil {
		t.Fatal(err)
	}
	export(t, u, udpFlows, 7)
	tc, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", tcpPort))
	if err != nil {
		t.Fatal(err)
	}
	export(t, tc, tcpFlows, 8)
	tc.Close()
	x, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)}, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: udpPort})
	if err != nil {
		t.Fatal(err)
	}
	export(t, x, denied, 9)
	time.Sleep(500 * time.Millisecond)
	checkMetrics(t, logs.String())
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	want := sorted(append(slices.Clone(udpFlows), tcpFlows...))
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var fromFile []schemas.Flow
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var m schemas.FlowMessage
		if err := schemas.FormatJSON.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		if m.InIfName != "xe-0/0/1" || m.SamplingRate != 1 || m.Type != schemas.FlowMessage_IPFIX || schemas.Addr(m.SamplerAddress) != netip.MustParseAddr("127.0.0.1") {
			t.Errorf("record metadata: %v", &m)
		}
		fromFile = append(fromFile, m.Flow())
	}
	if got := sorted(fromFile); !slices.Equal(got, want) {
		t.Errorf("--out holds %d records, want %d, or they differ", len(got), len(want))
	}

	var fromKafka []schemas.Flow
	for _, r := range kb.Read("flows", len(want), 300*time.Millisecond, 20*time.Second) {
		var m schemas.FlowMessage
		if err := schemas.FormatProto.Unmarshal(r.Value, &m); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(r.Key, schemas.AppendKey(nil, &m)) {
			t.Errorf("key %x", r.Key)
		}
		fromKafka = append(fromKafka, m.Flow())
	}
	if got := sorted(fromKafka); !slices.Equal(got, want) {
		t.Errorf("kafka holds %d records, want %d, or they differ", len(got), len(want))
	}
	l := logs.String()
	for _, re := range []string{
		fmt.Sprintf(`url=udp://127.0.0.1:%d messages=\d+ denied=[1-9]`, udpPort),
		fmt.Sprintf(`url=tcp://127.0.0.1:%d messages=\d+ denied=0 kernel_drops=0 tcp_connections=1 tcp_stream_errors=0`, tcpPort),
		`"decode totals" messages=\d+ records=350 lost=0`,
		`"kafka totals" sent=350 `,
	} {
		if !regexp.MustCompile(re).MatchString(l) {
			t.Errorf("log lacks %s", re)
		}
	}
	if t.Failed() {
		t.Log(l)
	}
}

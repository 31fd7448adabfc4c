package main

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xdpflow/xdpflow/collector/decode"
	"github.com/xdpflow/xdpflow/collector/rotate"
	"github.com/xdpflow/xdpflow/internal/syncbuf"
	"github.com/xdpflow/xdpflow/internal/testkit/freeport"
	"github.com/xdpflow/xdpflow/probe/export/ipfix"
	"github.com/xdpflow/xdpflow/probe/export/ipfix/ipfixtest"
	"github.com/xdpflow/xdpflow/schemas"
)

// stream is one exporter's export, encoded once so that every collector
// gets the same bytes.
type stream struct {
	src     net.IP // source address; the port is the kernel's
	msgs    [][]byte
	records int
}

func encodeStream(t *testing.T, src string, proto ipfix.Protocol, domain uint32, flows []schemas.Flow) stream {
	t.Helper()
	s := stream{src: net.ParseIP(src), records: len(flows)}
	s.msgs = ipfixtest.Encode(t, ipfix.Config{Protocol: proto, ObservationDomain: domain}, flows, time.Now())
	return s
}

// collectUDP runs a collector with --udp-workers workers, sends it the
// streams at once, each from a socket of its own, and returns the records
// written (JSON lines, the receive time cleared) and the log.
func collectUDP(t *testing.T, workers int, streams []stream) ([]string, string) {
	t.Helper()
	port := freeport.Get(t, "udp")
	out := filepath.Join(t.TempDir(), "flows.jsonl")
	c, _, err := parseConfig([]string{"--listen", fmt.Sprintf("udp://127.0.0.1:%d", port), "--out", out,
		"--udp-workers", fmt.Sprint(workers), "--metrics", ""})
	if err != nil {
		t.Fatal(err)
	}
	var logs syncbuf.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, c, slog.New(slog.NewTextHandler(&logs, nil))) }()
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs.String(), "msg=listening"); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not listening:\n%s", logs.String())
		}
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
	for _, s := range streams {
		wg.Go(func() {
			u, err := net.DialUDP("udp4", &net.UDPAddr{IP: s.src}, to)
			if err == nil {
				defer u.Close()
				for i, m := range s.msgs {
					if _, err = u.Write(m); err != nil {
						break
					}
					if i%8 == 7 {
						time.Sleep(200 * time.Microsecond) // a router's pace, not a flood
					}
				}
			}
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var recs []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m schemas.FlowMessage
		if err := schemas.FormatJSON.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		m.TimeReceivedNs = 0
		b, _ := schemas.FormatJSON.Append(nil, &m)
		recs = append(recs, string(b))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(recs)
	return recs, logs.String()
}

// TestWorkersManyExporters: exporters sending at once to one collector
// with several UDP sockets and decoders give the very records (as a
// multiset) that one collector per exporter gives, with nothing lost,
// dropped or out of order. Two exporters share an address (as two
// processes on one host do): their datagrams may reach different
// sockets, and the decoder keeps them apart by observation domain.
func TestWorkersManyExporters(t *testing.T) {
	var streams []stream
	for i := range 8 {
		src := fmt.Sprintf("127.0.0.%d", 10+i)
		if i == 7 {
			src = "127.0.0.10"
		}
		proto := ipfix.IPFIX
		if i%2 == 1 {
			proto = ipfix.NetFlowV9
		}
		streams = append(streams, encodeStream(t, src, proto, uint32(100+i), testFlows(1500, byte(i))))
	}
	var want []string
	for _, s := range streams {
		recs, _ := collectUDP(t, 1, []stream{s})
		if len(recs) != s.records {
			t.Fatalf("one collector for %v: %d records, want %d", s.src, len(recs), s.records)
		}
		want = append(want, recs...)
	}
	slices.Sort(want)
	for _, workers := range []int{4, 0} {
		got, log := collectUDP(t, workers, streams)
		if !slices.Equal(got, want) {
			t.Errorf("--udp-workers %d: %d records, want the %d of one collector per exporter, or they differ", workers, len(got), len(want))
		}
		for _, re := range []string{`msg=listening .* sockets=[2-9]`, ` kernel_drops=0 `, `"decode totals" messages=\d+ records=\d+ lost=0 resets=0 out_of_order=0 template_misses=0`} {
			if workers == 0 && re == `msg=listening .* sockets=[2-9]` {
				re = fmt.Sprintf(`msg=listening .* sockets=%d`, max(1, runtime.GOMAXPROCS(0)))
			}
			if !regexp.MustCompile(re).MatchString(log) {
				t.Errorf("--udp-workers %d: log lacks %s:\n%s", workers, re, log)
			}
		}
	}
}

// TestBatchAge: a worker whose socket never goes quiet long enough to
// flush on idle still hands its batch over once it is maxBatchAge old.
func TestBatchAge(t *testing.T) {
	out := filepath.Join(t.TempDir(), "flows.jsonl")
	w, err := rotate.Open(rotate.Config{Path: out})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	s := &sink{dec: decode.New(decode.Config{}), file: w, log: slog.New(slog.DiscardHandler)}
	wk := s.newWorker()
	st := encodeStream(t, "127.0.0.1", ipfix.IPFIX, 1, testFlows(100, 1))
	from := netip.MustParseAddrPort("127.0.0.1:40000")
	lines := func() int {
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(out)
		return strings.Count(string(b), "\n")
	}
	last := len(st.msgs) - 1
	for _, m := range st.msgs[:last] {
		wk.Message(from, m)
	}
	if n := lines(); n != 0 {
		t.Fatalf("%d records written before the batch was old or full", n)
	}
	wk.since = time.Now().Add(-maxBatchAge)
	wk.Message(from, st.msgs[last])
	if n := lines(); n != st.records {
		t.Errorf("%d records written once the batch was %v old, want %d", n, maxBatchAge, st.records)
	}
}

package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xdpflow/xdpflow/bpf"
	"github.com/xdpflow/xdpflow/probe/export"
	"github.com/xdpflow/xdpflow/probe/flowstate"
	"github.com/xdpflow/xdpflow/probe/flowtable"
	"github.com/xdpflow/xdpflow/schemas"
)

// Under kernel table pressure the drain interval halves (not below 50 ms),
// and relaxes back to the configured value once the pressure is gone.
func TestDrainIntervalFollowsPressure(t *testing.T) {
	p := New(&fakeSource{}, nil, bpf.NewClock(), Config{KernelFlows: 1000}, discard())
	conf := time.Second
	steps := []struct {
		drained int
		want    time.Duration
	}{
		{100, time.Second},
		{800, 500 * time.Millisecond},
		{900, 250 * time.Millisecond},
		{900, 125 * time.Millisecond},
		{900, 62500 * time.Microsecond},
		{900, 50 * time.Millisecond},
		{600, 50 * time.Millisecond}, // between 1/4 and 3/4: hold
		{100, 100 * time.Millisecond},
		{100, 200 * time.Millisecond},
		{0, 400 * time.Millisecond},
		{0, 800 * time.Millisecond},
		{0, time.Second},
		{0, time.Second},
	}
	cur := conf
	for i, s := range steps {
		p.lastDrain = s.drained
		cur = p.nextInterval(cur, conf)
		if cur != s.want {
			t.Fatalf("step %d (%d flows drained): interval %v, want %v", i, s.drained, cur, s.want)
		}
	}
	if p.pressure != 5 {
		t.Errorf("pressure ticks %d, want 5", p.pressure)
	}
}

// fakeSource hands out one batch of drained flows per Rotate.
type fakeSource struct {
	batches [][]flow
	err     error // returned once the batches run out, if set
	stats   bpf.Stats
}

type flow struct {
	k bpf.FlowKey
	v bpf.FlowValue
}

func (s *fakeSource) Rotate() (Quiet, error) {
	if len(s.batches) == 0 {
		return fakeQuiet{err: s.err}, nil
	}
	q := fakeQuiet{flows: s.batches[0]}
	s.batches = s.batches[1:]
	return q, nil
}

type fakeQuiet struct {
	flows []flow
	err   error
}

func (q fakeQuiet) Read(fn func(bpf.FlowKey, bpf.FlowValue)) error {
	for _, f := range q.flows {
		fn(f.k, f.v)
	}
	return q.err
}

func (q fakeQuiet) Clear() error { return nil }
func (q fakeQuiet) ID() uint32   { return 1 }

func (s *fakeSource) Stats() (bpf.Stats, error) { return s.stats, nil }

// sweepSource is a fakeSource holding TCP conversations: last update
// times, by name.
type sweepSource struct {
	fakeSource
	convs  map[string]uint64
	sweeps int
}

func (s *sweepSource) SweepTCP(before uint64) (int, error) {
	s.sweeps++
	n := 0
	for c, last := range s.convs {
		if last < before {
			delete(s.convs, c)
			n++
		}
	}
	return n, nil
}

// With TCPIdle, a tick sweeps out the conversations idle that long (not
// the others), at most every TCPIdle/2, and counts them; without, never.
func TestTickSweepsIdleTCPConversations(t *testing.T) {
	clock := bpf.NewClock()
	now := clock.Now()
	src := &sweepSource{convs: map[string]uint64{"old": now - uint64(20*time.Second), "live": now}}
	p := New(src, nil, clock, Config{KernelFlows: 1024, TCPIdle: 15 * time.Second}, discard())
	for range 3 {
		if err := p.Tick(false); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := src.convs["live"]; !ok || len(src.convs) != 1 {
		t.Errorf("conversations left %v, want live only", src.convs)
	}
	if src.sweeps != 1 {
		t.Errorf("%d sweeps in three ticks within 7.5s, want 1", src.sweeps)
	}
	if s := p.Snapshot(); s.TCPSwept != 1 {
		t.Errorf("snapshot counts %d swept, want 1", s.TCPSwept)
	}
	off := &sweepSource{convs: map[string]uint64{"old": 0}}
	if err := New(off, nil, clock, Config{KernelFlows: 1024}, discard()).Tick(false); err != nil {
		t.Fatal(err)
	}
	if off.sweeps != 0 {
		t.Errorf("swept without TCPIdle")
	}
}

// carrySource is a fakeSource whose drains could not carry some TCP
// flows' sequence state.
type carrySource struct {
	fakeSource
	cs bpf.CarryStats
}

func (s *carrySource) CarryStats() bpf.CarryStats { return s.cs }

// A tick warns when flows were not carried since the last tick (how many),
// and not again for the same ones.
func TestTickWarnsOfFlowsNotCarried(t *testing.T) {
	var log strings.Builder
	src := &carrySource{}
	p := New(src, nil, bpf.NewClock(), Config{KernelFlows: 1024}, slog.New(slog.NewTextHandler(&log, nil)))
	for _, full := range []uint64{0, 3, 3, 5} {
		src.cs.Full = full
		if err := p.Tick(false); err != nil {
			t.Fatal(err)
		}
	}
	var warned []string
	for _, l := range strings.Split(log.String(), "\n") {
		if strings.Contains(l, "sequence state was not carried") {
			warned = append(warned, l[strings.Index(l, "flows="):])
		}
	}
	if want := []string{"flows=3 reason=\"carry map full\"", "flows=2 reason=\"carry map full\""}; strings.Join(warned, "|") != strings.Join(want, "|") {
		t.Errorf("warnings %q, want %q", warned, want)
	}
}

// fakeExporter keeps what it was given; failing ones return errors.
type fakeExporter struct {
	name    string
	fail    bool
	got     []schemas.Flow
	flushed int
}

func (x *fakeExporter) Export(fs []schemas.Flow) error {
	if x.fail {
		return errors.New("collector gone")
	}
	x.got = append(x.got, fs...)
	return nil
}

func (x *fakeExporter) Flush() error {
	x.flushed++
	if x.fail {
		return errors.New("still gone")
	}
	return nil
}
func (x *fakeExporter) Close() error   { return nil }
func (x *fakeExporter) String() string { return x.name }

func udp(src byte, sport uint16, packets uint64, seen uint64) flow {
	k := bpf.FlowKey{InIf: 2, SrcPort: sport, DstPort: 53, Proto: 17}
	k.SrcAddr = netip.AddrFrom4([4]byte{198, 18, 0, src}).As16()
	k.DstAddr = netip.AddrFrom4([4]byte{198, 19, 0, 1}).As16()
	return flow{k, bpf.FlowValue{Packets: packets, Bytes: 100 * packets, FirstSeenNs: seen, LastSeenNs: seen}}
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// Every exporter gets every record of a tick, even when another one fails;
// the final tick ends the flows still held and flushes every exporter,
// returning the flush errors; the per-interface counters add up.
func TestTickExportsToEveryExporter(t *testing.T) {
	clock := bpf.NewClock()
	now := clock.Now()
	src := &fakeSource{batches: [][]flow{
		{udp(1, 1000, 3, now-uint64(2*time.Second)), udp(2, 2000, 5, now)}, // the first is idle
		{udp(2, 2000, 2, now)},
	}}
	bad, good := &fakeExporter{name: "bad", fail: true}, &fakeExporter{name: "good"}
	p := New(src, []export.Exporter{bad, good}, clock,
		Config{Table: flowtable.Config{IdleTimeout: time.Second, ActiveTimeout: time.Hour}, KernelFlows: 1024, Interfaces: map[uint32]string{2: "eth1"}}, discard())
	if err := p.Tick(false); err != nil {
		t.Fatal(err)
	}
	if len(good.got) != 1 || good.got[0].Packets != 3 || good.got[0].EndReason != schemas.EndIdle {
		t.Fatalf("first tick exported %+v, want the idle flow of 3 packets", good.got)
	}
	err := p.Finish()
	if err == nil || !strings.Contains(err.Error(), "flush bad") {
		t.Errorf("Finish: %v, want the failing exporter's flush error", err)
	}
	if len(good.got) != 2 || good.got[1].Packets != 7 || good.got[1].EndReason != schemas.EndForced {
		t.Errorf("final tick exported %+v, want the 7-packet flow ended (forced)", good.got[1:])
	}
	if good.flushed != 1 || bad.flushed != 1 {
		t.Errorf("flushes: good %d, bad %d, want 1 each", good.flushed, bad.flushed)
	}
	if c := p.Interfaces()[2]; c.Packets.Load() != 10 || c.Bytes.Load() != 1000 {
		t.Errorf("eth1 counted %d packets %d bytes, want 10 and 1000", c.Packets.Load(), c.Bytes.Load())
	}
	if s := p.Snapshot(); s.Table.Exported[schemas.EndIdle] != 1 || s.Table.Exported[schemas.EndForced] != 1 {
		t.Errorf("snapshot %+v", s)
	}
}

// A datapath that can no longer be read ends Run with its error at once;
// a cancelled context ends it cleanly.
func TestRunEndsOnDatapathFailure(t *testing.T) {
	src := &fakeSource{batches: [][]flow{{}}, err: errors.New("map gone")}
	p := New(src, nil, bpf.NewClock(), Config{KernelFlows: 1024}, discard())
	err := p.Run(context.Background(), time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "map gone") {
		t.Fatalf("Run: %v, want the datapath's error", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := New(&fakeSource{}, nil, bpf.NewClock(), Config{KernelFlows: 1024}, discard()).Run(ctx, time.Hour); err != nil {
		t.Errorf("Run after cancel: %v", err)
	}
}

// With --biflow, the two directions drained in one tick leave as one record.
func TestTickPairsBiflows(t *testing.T) {
	clock := bpf.NewClock()
	now := clock.Now()
	fwd := udp(1, 1000, 3, now)
	rev := fwd
	rev.k.SrcAddr, rev.k.DstAddr, rev.k.SrcPort, rev.k.DstPort = fwd.k.DstAddr, fwd.k.SrcAddr, fwd.k.DstPort, fwd.k.SrcPort
	rev.v = bpf.FlowValue{Packets: 2, Bytes: 200, FirstSeenNs: now + 1, LastSeenNs: now + 1}
	x := &fakeExporter{name: "x"}
	p := New(&fakeSource{batches: [][]flow{{fwd, rev}}}, []export.Exporter{x}, clock,
		Config{Table: flowtable.Config{IdleTimeout: time.Minute, ActiveTimeout: time.Hour, Biflow: true}, KernelFlows: 1024, Biflow: true}, discard())
	if err := p.Finish(); err != nil {
		t.Fatal(err)
	}
	if len(x.got) != 1 || !x.got[0].Biflow || x.got[0].Packets != 3 || x.got[0].ReversePackets != 2 {
		t.Errorf("exported %+v, want one biflow record of 3+2 packets", x.got)
	}
}

// fakeStore records what the pipeline asks of it; fail makes saves fail.
type fakeStore struct {
	fail  bool
	calls []string
}

func (s *fakeStore) Commit(img *flowstate.Image) error {
	if s.fail {
		s.calls = append(s.calls, "commit failed")
		return errors.New("no space left on device")
	}
	s.calls = append(s.calls, fmt.Sprintf("commit %d", img.Tick))
	return nil
}
func (s *fakeStore) MarkCleared() { s.calls = append(s.calls, "cleared") }
func (s *fakeStore) MarkSettled(i int, n uint64) {
	s.calls = append(s.calls, fmt.Sprintf("settled %d %d", i, n))
}

// A save that fails (a full tmpfs) is counted, the tick goes on (records
// are exported, the table emptied), and nothing is marked on the older
// image until a save works again.
func TestFailedSave(t *testing.T) {
	clock := bpf.NewClock()
	now := clock.Now()
	src := &fakeSource{batches: [][]flow{{udp(1, 1000, 3, now-uint64(2*time.Second))}, {udp(2, 2000, 4, now-uint64(2*time.Second))}}}
	st := &fakeStore{fail: true}
	x := &fakeExporter{name: "x"}
	p := New(src, []export.Exporter{x}, clock, Config{Table: flowtable.Config{IdleTimeout: time.Second, ActiveTimeout: time.Hour}, KernelFlows: 1024, Store: st}, discard())
	if err := p.Tick(false); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(st.calls, ", "); got != "commit failed" || p.CommitErrors() != 1 || len(x.got) != 1 {
		t.Errorf("failed save: calls %q, %d failures, %d records exported", got, p.CommitErrors(), len(x.got))
	}
	st.fail, st.calls = false, nil
	if err := p.Tick(false); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(st.calls, ", "); got != "commit 1, cleared, settled 0 1" || len(x.got) != 2 {
		t.Errorf("save after a failure: calls %q, %d records exported", got, len(x.got))
	}
}

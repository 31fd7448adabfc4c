package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket/layers"
)

// pinDir is a fresh directory under /sys/fs/bpf for one test.
func pinDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(DefaultPinRoot+"-test", fmt.Sprintf("%d-%s", os.Getpid(), t.Name()))
	t.Cleanup(func() {
		Unpin(dir)
		os.Remove(filepath.Dir(dir))
	})
	return dir
}

// TestPinnedRestart: a datapath closed without draining leaves its counts
// in the pinned tables; the next Load takes them over and drains them all,
// whichever table was active; the stats carry on too.
func TestPinnedRestart(t *testing.T) {
	dir := pinDir(t)
	f := build(eth(layers.EthernetTypeIPv4), ipv4(layers.IPProtocolUDP), udp(5, 6), payload(20))
	total := uint64(0)
	for round, n := range []int{3, 5, 7} {
		d, err := Load(Config{MaxFlows: 1024, PinPath: dir})
		if err != nil {
			t.Fatal(err)
		}
		if d.Reused != (round > 0) || d.LayoutChange != nil {
			t.Fatalf("round %d: reused %v, layout change %v", round, d.Reused, d.LayoutChange)
		}
		got := drainAll(t, d) // what the previous round counted and left
		var drained uint64
		for _, v := range got {
			drained += v.Packets
		}
		if round > 0 && drained != uint64([]int{3, 5, 7}[round-1]) {
			t.Errorf("round %d: drained %d packets left by the previous datapath", round, drained)
		}
		total += drained
		for range n {
			run(t, d.Program, f)
		}
		if round == 1 {
			drainAll(t, d) // leave the other table active this time
			for range n {
				run(t, d.Program, f)
			}
			total += uint64(n)
		}
		st, _ := d.Stats()
		t.Logf("round %d: stats flow packets %d", round, st.FlowPackets)
		d.Close() // no drain: the counts stay in the pinned tables
	}
	d := load(t, Config{MaxFlows: 1024, PinPath: dir})
	for _, v := range drainAll(t, d) {
		total += v.Packets
	}
	st, _ := d.Stats()
	if total != 3+5+5+7 || st.FlowPackets != total {
		t.Errorf("drained %d packets over the restarts, stats say %d, sent %d", total, st.FlowPackets, 3+5+5+7)
	}
}

// TestPinnedLayoutChange: pins of another layout (here another table size)
// are not reused, but their entries are handed over to be drained, and
// new pins replace them.
func TestPinnedLayoutChange(t *testing.T) {
	dir := pinDir(t)
	f := build(eth(layers.EthernetTypeIPv4), ipv4(layers.IPProtocolUDP), udp(5, 6), payload(20))
	d, err := Load(Config{MaxFlows: 1024, PinPath: dir})
	if err != nil {
		t.Fatal(err)
	}
	for range 4 {
		run(t, d.Program, f)
	}
	d.Close()

	d = load(t, Config{MaxFlows: 2048, PinPath: dir})
	if d.Reused || d.LayoutChange == nil || len(d.Leftovers) != 2 {
		t.Fatalf("reused %v, change %v, %d leftovers", d.Reused, d.LayoutChange, len(d.Leftovers))
	}
	t.Logf("layout change: %v", d.LayoutChange)
	var left uint64
	for _, m := range d.Leftovers {
		if err := d.Drain(m, func(k FlowKey, v FlowValue) { left += v.Packets }); err != nil {
			t.Fatal(err)
		}
		m.Close()
	}
	if left != 4 {
		t.Errorf("leftovers held %d packets, want 4", left)
	}
	d.Close()
	d = load(t, Config{MaxFlows: 2048, PinPath: dir})
	if !d.Reused {
		t.Error("the new layout's pins were not reused")
	}
}

// TestPinnedSeed: the tables' hash seed is random per set of tables and
// pinned with them, so that a restarted datapath finds the flows the last
// one left (with another seed the flow would take a second slot).
func TestPinnedSeed(t *testing.T) {
	seed := func(d *Datapath) [seedWords]uint64 {
		var s [seedWords]uint64
		if err := d.objs.Seed.Lookup(uint32(0), &s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	a, b := load(t, Config{MaxFlows: 1024}), load(t, Config{MaxFlows: 1024})
	if seed(a) == seed(b) || seed(a) == ([seedWords]uint64{}) {
		t.Errorf("two datapaths' seeds: %x and %x", seed(a), seed(b))
	}

	dir := pinDir(t)
	f := build(eth(layers.EthernetTypeIPv4), ipv4(layers.IPProtocolUDP), udp(5, 6), payload(20))
	d, err := Load(Config{MaxFlows: 1024, PinPath: dir})
	if err != nil {
		t.Fatal(err)
	}
	first := seed(d)
	run(t, d.Program, f)
	d.Close()
	d = load(t, Config{MaxFlows: 1024, PinPath: dir})
	if !d.Reused || seed(d) != first {
		t.Fatalf("reused %v, seed %x, want %x", d.Reused, seed(d), first)
	}
	run(t, d.Program, f)
	got := drainAll(t, d) // fails on a flow in two slots
	if len(got) != 1 {
		t.Fatalf("%d flows, want 1", len(got))
	}
	for _, v := range got {
		if v.Packets != 2 {
			t.Errorf("%d packets, want 2", v.Packets)
		}
	}
}

// TestPinnedUpgradeFromHash: a hash table pinned by a version before the
// open-addressing tables is a leftover of another layout, drained whole.
func TestPinnedUpgradeFromHash(t *testing.T) {
	dir := pinDir(t)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	old, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: uint32(keyBase), ValueSize: uint32(valueSize), MaxEntries: 64})
	if err != nil {
		t.Fatal(err)
	}
	var k [keyBase]byte
	k[0], k[47] = 1, 17
	if err := old.Put(k, FlowValue{Packets: 7, Bytes: 700}); err != nil {
		t.Fatal(err)
	}
	if err := old.Pin(filepath.Join(dir, "flows0")); err != nil {
		t.Fatal(err)
	}
	old.Close()

	d := load(t, Config{MaxFlows: 1024, PinPath: dir})
	if d.Reused || d.LayoutChange == nil || len(d.Leftovers) != 1 {
		t.Fatalf("reused %v, change %v, %d leftovers", d.Reused, d.LayoutChange, len(d.Leftovers))
	}
	var n, packets uint64
	if err := d.Drain(d.Leftovers[0], func(fk FlowKey, v FlowValue) {
		n++
		packets += v.Packets
		if fk != keyFrom(k[:]) {
			t.Errorf("key %v, want %v", fk, keyFrom(k[:]))
		}
	}); err != nil {
		t.Fatal(err)
	}
	if n != 1 || packets != 7 {
		t.Errorf("%d flows, %d packets; want 1, 7", n, packets)
	}
	if err := d.Leftovers[0].NextKey(nil, new([keyBase]byte)); !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Errorf("the leftover is not empty after the drain (%v)", err)
	}
	d.Leftovers[0].Close()
}

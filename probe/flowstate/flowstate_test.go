package flowstate

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/xdpflow/xdpflow/bpf"
	"github.com/xdpflow/xdpflow/probe/flowtable"
	"github.com/xdpflow/xdpflow/schemas"
)

func sampleImage(tick uint64) *Image {
	k := bpf.FlowKey{InIf: 3, VlanId: 7, SrcPort: 1234, DstPort: 443, Proto: 6}
	k.SrcAddr = netip.MustParseAddr("::ffff:198.18.0.1").As16()
	k.DstAddr = netip.MustParseAddr("::ffff:198.19.0.1").As16()
	v := bpf.FlowValue{Packets: 10, Bytes: 1000, L2Bytes: 1140, FirstSeenNs: 5, LastSeenNs: 9, TcpFlags: 0x12, IpTos: 4, FlowDirection: 1}
	return &Image{
		Tick:       tick,
		QuietTable: 77,
		Flows:      []flowtable.Held{{Key: k, Value: v, LastSeen: 11}, {Key: bpf.FlowKey{Proto: 17}, LastSeen: 3}},
		Pending: []schemas.Flow{
			{SrcAddr: netip.MustParseAddr("198.18.0.1"), DstAddr: netip.MustParseAddr("198.19.0.1"), SrcPort: 1, DstPort: 2, Proto: 17, Packets: 3, Bytes: 300, EndReason: schemas.EndIdle},
			fullRecord(),
		},
		Exporters: []string{"ipfix udp://a:4739", "stdout"},
		Settled:   []uint64{1, 0},
	}
}

// fullRecord sets every field of a schemas.Flow to something not zero.
func fullRecord() schemas.Flow {
	return schemas.Flow{
		SrcAddr: netip.MustParseAddr("2001:db8::1"), DstAddr: netip.MustParseAddr("2001:db8::2"),
		SrcPort: 1, DstPort: 2, Proto: 6, VlanId: 3, InIf: 4, Packets: 5, Bytes: 6, L2Bytes: 7,
		TimeFlowStartNs: 8, TimeFlowEndNs: 9, TcpFlags: 10, IpTos: 11, EndReason: schemas.EndActive, FlowDirection: schemas.DirectionEgress,
		Biflow: true, ReversePackets: 12, ReverseBytes: 13, ReverseL2Bytes: 14, ReverseTimeFlowStartNs: 15, ReverseTimeFlowEndNs: 16, ReverseTcpFlags: 17,
		TunnelType: schemas.TunnelGTPU, MirrorType: schemas.MirrorTZSP, SrcMac: schemas.MAC{18, 1}, DstMac: schemas.MAC{19, 2, 0, 0, 0, 3},
		TunnelId: 20, ObservationPointId: 21, MplsLabels: [schemas.MaxMplsLabels]uint32{22, 23, 24, 25, 26, 27, 28, 29},
		TunnelSrcAddr: netip.MustParseAddr("192.0.2.30"), TunnelDstAddr: netip.MustParseAddr("2001:db8::31"),
		ClientNwDelayNs: 32, ServerNwDelayNs: 33, ApplLatencyNs: 34, TcpRetransmitted: 35, TcpOutOfOrder: 36, TcpZeroWindow: 37,
	}
}

// Every field of a record survives the image, and a field added to
// schemas.Flow without its place in the image fails here.
func TestRecordRoundTrip(t *testing.T) {
	f := fullRecord()
	v := reflect.ValueOf(f)
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Fatalf("fullRecord leaves schemas.Flow.%s zero: set it (and store it in appendRecord/readRecord)", v.Type().Field(i).Name)
		}
	}
	b := appendRecord(nil, &f)
	if len(b) != recordLen {
		t.Fatalf("record of %d bytes, recordLen %d", len(b), recordLen)
	}
	var g schemas.Flow
	readRecord(b, &g)
	if !reflect.DeepEqual(f, g) {
		t.Errorf("read back\n%+v\nwant\n%+v", g, f)
	}
}

// A committed image comes back whole after the state is closed and
// opened again (a restarted probe), with the marks made after the commit.
func TestCommitLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if img, err := s.Load(); img != nil || err != nil {
		t.Fatalf("fresh state: %v, %v", img, err)
	}
	want := sampleImage(1)
	if err := s.Commit(want); err != nil {
		t.Fatal(err)
	}
	s.MarkCleared()
	s.MarkSettled(1, 2)
	s.Close()

	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	want.Cleared, want.Settled = true, []uint64{1, 2}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("loaded\n%+v\nwant\n%+v", got, want)
	}
	if err := s.Commit(sampleImage(1)); err == nil {
		t.Error("a commit of an old tick was taken")
	}
}

// What a crash leaves between two commits: the next image written in
// part, or whole but not committed, and its marks: the old image is the
// state, with its own marks.
func TestCrashBeforeCommit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	first := sampleImage(1)
	if err := s.Commit(first); err != nil {
		t.Fatal(err)
	}
	s.MarkSettled(0, 2)
	// The next tick's image, written in full and in part, never committed.
	next, idle := sampleImage(2).encode(), 1-s.cur
	for _, b := range [][]byte{next, next[:len(next)/2]} {
		if err := os.WriteFile(filepath.Join(dir, imageFile(idle)), b, 0o600); err != nil {
			t.Fatal(err)
		}
		s.h.Settled[idle][0], s.h.Cleared[idle] = 99, 1
		s2, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s2.Load()
		s2.Close()
		if err != nil {
			t.Fatal(err)
		}
		if got.Tick != 1 || got.Cleared || got.Settled[0] != 2 || len(got.Pending) != 2 {
			t.Errorf("after a crash before the commit: tick %d cleared %v settled %v", got.Tick, got.Cleared, got.Settled)
		}
	}
	s.Close()
}

// A state of another version (or a corrupt one) is refused with
// ErrIncompatible, and Reset makes room for a new one.
func TestIncompatible(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(sampleImage(1)); err != nil {
		t.Fatal(err)
	}
	s.h.Version = 99
	s.Close()
	if _, err := Open(dir); !errors.Is(err, ErrIncompatible) {
		t.Fatalf("Open of version 99: %v", err)
	}
	if err := Reset(dir); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(sampleImage(1)); err != nil {
		t.Fatal(err)
	}
	// A flipped bit in the image.
	p := filepath.Join(dir, imageFile(s.cur))
	b, _ := os.ReadFile(p)
	b[40] ^= 1
	os.WriteFile(p, b, 0o600)
	if _, err := s.Load(); !errors.Is(err, ErrIncompatible) {
		t.Errorf("Load of a corrupt image: %v", err)
	}
	s.Close()
}

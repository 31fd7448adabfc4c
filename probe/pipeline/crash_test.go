package pipeline

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/xdpflow/xdpflow/bpf"
	"github.com/xdpflow/xdpflow/probe/export"
	"github.com/xdpflow/xdpflow/probe/flowstate"
	"github.com/xdpflow/xdpflow/probe/flowtable"
	"github.com/xdpflow/xdpflow/schemas"
)

// crash is what a simulated crash panics with: the test recovers it, drops
// the pipeline (the process's memory) and starts a new one on what
// outlives a process: the fakeKernel's tables, the state files, what the
// exporters received.
type crash struct{}

// crasher panics at the n-th point it is asked about.
type crasher struct{ left int }

func (c *crasher) at() {
	if c.left--; c.left == 0 {
		panic(crash{})
	}
}

// fakeKernel is two flow tables that outlive the probe, as pinned ones do.
type fakeKernel struct {
	tables [2]map[bpf.FlowKey]bpf.FlowValue
	active int
	c      *crasher
	now    uint64 // stamps, so that every record of a flow is told apart
}

func (k *fakeKernel) count(key bpf.FlowKey, packets uint64) {
	k.now += uint64(time.Millisecond) // far apart: the wall-clock offset of records jitters by nanoseconds
	v := k.tables[k.active][key]
	v.Packets += packets
	v.Bytes += 100 * packets
	if v.FirstSeenNs == 0 {
		v.FirstSeenNs = k.now
	}
	v.LastSeenNs = k.now
	k.tables[k.active][key] = v
}

func (k *fakeKernel) Rotate() (Quiet, error) {
	k.active = 1 - k.active
	return kquiet{k, 1 - k.active}, nil
}
func (k *fakeKernel) Stats() (bpf.Stats, error) { return bpf.Stats{}, nil }

type kquiet struct {
	k *fakeKernel
	i int
}

func (q kquiet) Read(fn func(bpf.FlowKey, bpf.FlowValue)) error {
	for key, v := range q.k.tables[q.i] {
		fn(key, v)
	}
	return nil
}

func (q kquiet) Clear() error {
	q.k.c.at()
	clear(q.k.tables[q.i])
	return nil
}

func (q kquiet) ID() uint32 { return uint32(q.i + 1) }

// sink is an exporter whose receipts outlive the probe (a collector).
// With lag, it settles records only that many Exports later (TCP, Kafka).
type sink struct {
	name     string
	got      map[bpf.FlowKey]uint64 // packets received per flow, each record once
	seen     map[schemas.Flow]int   // times each record was received
	twice    int                    // records received again
	c        *crasher
	lag      int
	given    uint64
	pending  []uint64 // given counts, newest last, not settled yet
	settling bool
}

func (s *sink) Export(fs []schemas.Flow) error {
	s.c.at() // before it has them
	for i := range fs {
		k := bpf.FlowKey{SrcAddr: fs[i].SrcAddr.As16(), DstAddr: fs[i].DstAddr.As16(), SrcPort: fs[i].SrcPort, DstPort: fs[i].DstPort, Proto: fs[i].Proto, InIf: fs[i].InIf}
		if s.seen[fs[i]]++; s.seen[fs[i]] > 1 {
			s.twice++
			continue
		}
		s.got[k] += fs[i].Packets
	}
	s.given += uint64(len(fs))
	s.pending = append(s.pending, s.given)
	s.c.at() // after it has them, before the pipeline knows
	return nil
}
func (s *sink) Flush() error   { return nil }
func (s *sink) Close() error   { return nil }
func (s *sink) String() string { return s.name }

// lagging is a sink that settles in the background.
type lagging struct{ *sink }

func (s lagging) Settled() uint64 {
	if len(s.pending) <= s.lag {
		return 0
	}
	return s.pending[len(s.pending)-1-s.lag]
}

// newLife is a probe started over a crashed one: same state directory,
// new exporters (a restarted process), receipts kept.
func newLife(t *testing.T, dir string, k *fakeKernel, sinks []*sink, c *crasher) (*Pipeline, *flowstate.State) {
	st, err := flowstate.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	var exps []export.Exporter
	for _, s := range sinks {
		s.c, s.pending, s.given = c, nil, 0
		if s.settling {
			exps = append(exps, lagging{s})
		} else {
			exps = append(exps, s)
		}
	}
	p := New(k, exps, bpf.NewClock(), Config{Table: flowtable.Config{IdleTimeout: time.Hour, ActiveTimeout: time.Hour}, KernelFlows: 1024, Store: crashStore{st, c}}, discard())
	img, err := st.Load()
	if err != nil {
		t.Fatal(err)
	}
	if img != nil {
		if !img.Cleared {
			if q := (kquiet{k, 1 - k.active}); q.ID() == img.QuietTable {
				clear(k.tables[q.i])
			}
		}
		p.Restore(img)
	}
	return p, st
}

// crashStore crashes before a commit, and between a commit and its marks.
type crashStore struct {
	*flowstate.State
	c *crasher
}

func (s crashStore) Commit(img *flowstate.Image) error {
	s.c.at()
	return s.State.Commit(img)
}

// A probe crashed at every point of its ticks, again and again, and
// started over on what outlives it, still exports every packet counted:
// each collector's per-flow totals, each record counted once, equal what
// was counted, and an exporter that settles as Export returns gets again
// at most the chunk in flight at each crash. (A lagging sink receives
// records when they are given, so all it had not settled comes again;
// a real TCP queue or Kafka producer dies with the process.)
func TestCrashAnywhere(t *testing.T) {
	for seed := range uint64(40) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			dir := filepath.Join(t.TempDir(), "state")
			k := &fakeKernel{tables: [2]map[bpf.FlowKey]bpf.FlowValue{{}, {}}}
			c := &crasher{}
			k.c = c
			sinks := []*sink{
				{name: "udp", got: map[bpf.FlowKey]uint64{}, seen: map[schemas.Flow]int{}},
				{name: "tcp", got: map[bpf.FlowKey]uint64{}, seen: map[schemas.Flow]int{}, settling: true, lag: 1},
				// Settles as Export returns, but says so through Settled
				// (as the UDP IPFIX exporter does).
				{name: "udp-settled", got: map[bpf.FlowKey]uint64{}, seen: map[schemas.Flow]int{}, settling: true},
			}
			truth := map[bpf.FlowKey]uint64{}
			crashes := 0
			var resent uint64 // records the restarts said may come twice
			p, st := newLife(t, dir, k, sinks, c)
			for round := 0; round < 30; round++ {
				for range 1 + rng.IntN(40) {
					key := bpf.FlowKey{InIf: 2, SrcPort: uint16(rng.IntN(60)), DstPort: 53, Proto: 17}
					key.SrcAddr = netip.AddrFrom4([4]byte{198, 18, 0, 1}).As16()
					key.DstAddr = netip.AddrFrom4([4]byte{198, 19, 0, 1}).As16()
					n := uint64(1 + rng.IntN(5))
					k.count(key, n)
					truth[key] += n
				}
				c.left = 1 + rng.IntN(60) // somewhere in the next ticks, maybe
				func() {
					defer func() {
						if r := recover(); r != nil {
							if _, ok := r.(crash); !ok {
								panic(r)
							}
							crashes++
							st.Close()
							c.left = 0
							p, st = newLife(t, dir, k, sinks, c)
							resent += p.Resent()["udp"]
						}
					}()
					// Flows end at random: a forced end now and then.
					if err := p.Tick(rng.IntN(3) == 0); err != nil {
						t.Fatal(err)
					}
				}()
			}
			c.left = 0
			if err := p.Finish(); err != nil {
				t.Fatal(err)
			}
			for _, s := range sinks {
				p.Settle()
				for key, want := range truth {
					if got := s.got[key]; got != want {
						t.Fatalf("%s: flow %d: %d packets exported, %d counted (%d crashes)", s.name, key.SrcPort, got, want, crashes)
					}
				}
				// An exporter that settles as Export returns gets again at
				// most the chunk in flight at each crash.
				if s.lag == 0 && s.twice > crashes*chunk {
					t.Errorf("%s: %d records sent again over %d crashes, more than a chunk each", s.name, s.twice, crashes)
				}
				if !s.settling && uint64(s.twice) > resent {
					t.Errorf("%s: %d records sent again, the restarts counted %d that might be", s.name, s.twice, resent)
				}
			}
			st.Close()
		})
	}
}

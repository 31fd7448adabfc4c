package bpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// ConvKey is a TCP conversation in the handshake state map (struct
// conv_key): the lower (address, port) end first.
type ConvKey = xdpflowConvKey

// ConvState is a conversation's handshake state (struct conv_state).
type ConvState = xdpflowConvState

// SeqCarry is a flow direction's sequence state carried from one table to
// the next (struct seq_carry).
type SeqCarry = xdpflowSeqCarry

// tcp_state bits (xdpflow.h) a carry keeps.
const (
	tcpStSeq  = 0x01
	tcpStHole = 0x02
)

// CarryStats count the flows whose sequence state a drain could not carry
// to the next table, by reason. Such a flow's next packet starts its
// sequence tracking afresh, as if first seen: a retransmission then is not
// counted as one.
type CarryStats struct {
	Full uint64 // tcp_carry was full (2 x Config.TCPConversations)
}

// CarryStats returns the counts so far (safe while a drain runs).
func (d *Datapath) CarryStats() CarryStats {
	return CarryStats{Full: d.carryFull.Load()}
}

// carryBatch is carry's buffer, reused from batch to batch.
type carryBatch[K any] struct {
	keys []K
	vals []SeqCarry
}

// carry writes the sequence state of one batch of a quiet table's flows
// into d's tcp_carry (only flows that have one: TCP with sequence state).
// The caller deletes the batch from the table only afterwards: from the
// swap until then the datapath reads the state from the table (slot 1),
// then from the carry (tcp_seed in xdpflow.c). Flows that do not fit are
// counted by reason and not carried.
func carry[K any](d *Datapath, b *carryBatch[K], keys []K, vals []FlowValue) error {
	b.keys, b.vals = b.keys[:0], b.vals[:0]
	for i := range vals {
		v := &vals[i]
		if v.TcpState&tcpStSeq == 0 {
			continue
		}
		b.keys = append(b.keys, keys[i])
		b.vals = append(b.vals, SeqCarry{Hwm: v.TcpHwm, HoleLo: v.TcpHoleLo, HoleHi: v.TcpHoleHi,
			State: v.TcpState & (tcpStSeq | tcpStHole), LastNs: v.LastSeenNs})
	}
	for j := 0; j < len(b.keys); {
		n, err := d.objs.TcpCarry.BatchUpdate(b.keys[j:], b.vals[j:], nil)
		j += n
		switch {
		case err == nil:
			if n == 0 {
				return fmt.Errorf("carry TCP sequence state: the kernel updated none of %d entries", len(b.keys)-j)
			}
		case errors.Is(err, unix.E2BIG):
			// Full: a new flow does not fit, but the next ones may be
			// updates of flows carried already, which do.
			d.carryFull.Add(1)
			j++
		default:
			return fmt.Errorf("carry TCP sequence state: %w", err)
		}
	}
	return nil
}

// TCPConversations calls fn for every conversation in the handshake state
// map (tests and diagnostics).
func (d *Datapath) TCPConversations(fn func(ConvKey, ConvState)) error {
	var (
		k  ConvKey
		v  ConvState
		it = d.objs.TcpConvs.Iterate()
	)
	for it.Next(&k, &v) {
		fn(k, v)
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read TCP conversations: %w", err)
	}
	return nil
}

// SweepTCP removes the conversations not updated since before (datapath
// clock, CLOCK_MONOTONIC ns) and returns how many it removed. The datapath
// removes a conversation at RST; one that ends with FIN or just stops
// stays until swept, so call this every so often with the idle timeout.
// It also removes the carried sequence state of the flows whose last
// packet came before then.
func (d *Datapath) SweepTCP(before uint64) (int, error) {
	if !d.cfg.TCPHealth {
		return 0, nil
	}
	if err := d.sweepCarry(before); err != nil {
		return 0, err
	}
	var (
		k    ConvKey
		v    ConvState
		idle []ConvKey
		it   = d.objs.TcpConvs.Iterate()
	)
	for it.Next(&k, &v) {
		if v.LastNs < before {
			idle = append(idle, k)
		}
	}
	if err := it.Err(); err != nil {
		return 0, fmt.Errorf("sweep TCP conversations: %w", err)
	}
	n := 0
	for _, k := range idle {
		err := d.objs.TcpConvs.Delete(k)
		if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return n, fmt.Errorf("sweep TCP conversations: %w", err)
		}
		if err == nil {
			n++
		}
	}
	return n, nil
}

// setTestClock sets the time the program gives handshake packets when
// loaded with Config.testClock (tests only).
func (d *Datapath) setTestClock(ns uint64) error {
	if err := d.objs.TestClockNs.Set(ns); err != nil {
		return fmt.Errorf("set test clock: %w", err)
	}
	return nil
}

// sweepCarry removes the carried sequence state of flows whose last packet
// came before before.
func (d *Datapath) sweepCarry(before uint64) error {
	switch int(d.objs.TcpCarry.KeySize()) {
	case keyBase:
		return sweepCarry[[keyBase]byte](d.objs.TcpCarry, before)
	case keyMirror:
		return sweepCarry[[keyMirror]byte](d.objs.TcpCarry, before)
	case keyFull:
		return sweepCarry[[keyFull]byte](d.objs.TcpCarry, before)
	}
	return fmt.Errorf("sweep TCP sequence carry: key size %d is none of this version's", d.objs.TcpCarry.KeySize())
}

func sweepCarry[K [keyBase]byte | [keyMirror]byte | [keyFull]byte](m *ebpf.Map, before uint64) error {
	keys := make([]K, batchSize)
	vals := make([]SeqCarry, batchSize)
	var idle []K
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookup(&cursor, keys, vals, nil)
		for i := range n {
			if vals[i].LastNs < before {
				idle = append(idle, keys[i])
			}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			break
		}
		if err != nil {
			return fmt.Errorf("sweep TCP sequence carry: %w", err)
		}
	}
	if len(idle) == 0 {
		return nil
	}
	// Only the drain writes the carry, in the goroutine that sweeps:
	// every key is still there.
	if _, err := m.BatchDelete(idle, nil); err != nil {
		return fmt.Errorf("sweep TCP sequence carry: %w", err)
	}
	return nil
}

// TCPCarried calls fn for every flow whose sequence state is carried
// (tests and diagnostics).
func (d *Datapath) TCPCarried(fn func(FlowKey, SeqCarry)) error {
	kb := make([]byte, d.objs.TcpCarry.KeySize())
	var (
		v  SeqCarry
		it = d.objs.TcpCarry.Iterate()
	)
	for it.Next(&kb, &v) {
		fn(keyFrom(kb), v)
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read TCP sequence carry: %w", err)
	}
	return nil
}

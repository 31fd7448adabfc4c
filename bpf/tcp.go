package bpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// ConvKey is a TCP conversation in the handshake state map (struct
// conv_key): the lower (address, port) end first.
type ConvKey = xdpflowConvKey

// ConvState is a conversation's handshake state (struct conv_state).
type ConvState = xdpflowConvState

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
func (d *Datapath) SweepTCP(before uint64) (int, error) {
	if !d.cfg.TCPHealth {
		return 0, nil
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

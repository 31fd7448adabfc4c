// Package biflow pairs the two directions of a conversation into one
// bidirectional record (RFC 5103): the initiator's direction forward, the
// other reverse. Records with no partner in the batch stay as they are.
package biflow

import (
	"net/netip"

	"github.com/xdpflow/xdpflow/schemas"
)

// key is a direction of a conversation: the interface is left out, since
// a TAP delivers each direction on its own port.
type key struct {
	src, dst         netip.Addr
	srcPort, dstPort uint16
	proto            uint8
	vlan             uint16
}

func keyOf(f *schemas.Flow) key {
	return key{f.SrcAddr, f.DstAddr, f.SrcPort, f.DstPort, f.Proto, f.VlanId}
}

// reverseKey is the key of f's other direction; ok is false for flows
// that have none (ICMP other than echo).
func reverseKey(f *schemas.Flow) (key, bool) {
	k := key{f.DstAddr, f.SrcAddr, f.DstPort, f.SrcPort, f.Proto, f.VlanId}
	if f.IsICMP() {
		var ok bool
		k.srcPort = 0
		if k.dstPort, ok = schemas.ReverseICMP(f.Proto, f.DstPort); !ok {
			return key{}, false
		}
	}
	return k, true
}

// Pair merges, in place, each record with the record of its reverse
// direction in flows, and returns the shortened slice. The direction whose
// first packet came first is forward (ties: the earlier record). The
// merged record keeps the forward record's interface and end reason.
func Pair(flows []schemas.Flow) []schemas.Flow {
	index := make(map[key]int, len(flows))
	for i := range flows {
		index[keyOf(&flows[i])] = i
	}
	gone := make([]bool, len(flows))
	for i := range flows {
		f := &flows[i]
		if gone[i] || f.Biflow {
			continue
		}
		rk, ok := reverseKey(f)
		if !ok {
			continue
		}
		j, ok := index[rk]
		if !ok || j == i || gone[j] || flows[j].Biflow {
			continue
		}
		fwd, rev := i, j
		if flows[j].TimeFlowStartNs < f.TimeFlowStartNs {
			fwd, rev = j, i
		}
		r := &flows[rev]
		f = &flows[fwd]
		f.Biflow = true
		f.ReversePackets, f.ReverseBytes, f.ReverseL2Bytes = r.Packets, r.Bytes, r.L2Bytes
		f.ReverseTimeFlowStartNs, f.ReverseTimeFlowEndNs, f.ReverseTcpFlags = r.TimeFlowStartNs, r.TimeFlowEndNs, r.TcpFlags
		gone[rev] = true
	}
	out := flows[:0]
	for i := range flows {
		if !gone[i] {
			out = append(out, flows[i])
		}
	}
	return out
}

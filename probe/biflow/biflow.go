// Package biflow pairs the two directions of a conversation into one
// bidirectional record (RFC 5103): the initiator's direction forward, the
// other reverse. Records with no partner in the batch stay as they are.
package biflow

import (
	"net/netip"

	"github.com/xdpflow/xdpflow/schemas"
)

// Key is one direction of a conversation as pairing sees it: the flow
// key's fields but the interface (a TAP delivers each direction on its own
// port): addresses, ports, protocol, VLAN, tunnel, mirror session, MACs.
type Key struct {
	Src, Dst           netip.Addr
	SrcPort, DstPort   uint16 // ICMP: 0 and type<<8|code
	Proto              uint8
	VlanId             uint16
	TunnelType         schemas.TunnelType
	TunnelId           uint32
	ObservationPointId uint32
	MirrorType         schemas.MirrorType
	SrcMac, DstMac     schemas.MAC
}

// KeyOf is f's direction.
func KeyOf(f *schemas.Flow) Key {
	return Key{f.SrcAddr, f.DstAddr, f.SrcPort, f.DstPort, f.Proto, f.VlanId,
		f.TunnelType, f.TunnelId, f.ObservationPointId, f.MirrorType, f.SrcMac, f.DstMac}
}

// ReverseKey is the key of f's other direction, the one rule that both
// pairing (Pair) and the flow table (which ends partners together) use:
// addresses, ports and MACs swapped, same protocol, VLAN, tunnel and
// mirror session, on any interface; an ICMP echo request's reverse is the
// reply and back (schemas.ReverseICMP). ok is false for flows that have
// none (ICMP other than echo). The tunnel id must match: a VNI, GRE key or
// PPPoE session is the same both ways, so those pair; a GTP-U TEID or an
// MPLS label is chosen by each receiving end, so those directions differ
// and go out one-way (pairing them on addresses alone could join two
// tenants' flows).
func ReverseKey(f *schemas.Flow) (k Key, ok bool) {
	k = Key{f.DstAddr, f.SrcAddr, f.DstPort, f.SrcPort, f.Proto, f.VlanId,
		f.TunnelType, f.TunnelId, f.ObservationPointId, f.MirrorType, f.DstMac, f.SrcMac}
	if f.IsICMP() {
		k.SrcPort = 0
		if k.DstPort, ok = schemas.ReverseICMP(f.Proto, f.DstPort); !ok {
			return Key{}, false
		}
	}
	return k, true
}

// Pair merges, in place, each record with the record of its reverse
// direction in flows, and returns the shortened slice. The direction whose
// first packet came first is forward (ties: the earlier record). The
// merged record keeps the forward record's interface and end reason.
func Pair(flows []schemas.Flow) []schemas.Flow {
	index := make(map[Key]int, len(flows))
	for i := range flows {
		index[KeyOf(&flows[i])] = i
	}
	gone := make([]bool, len(flows))
	for i := range flows {
		f := &flows[i]
		if gone[i] || f.Biflow {
			continue
		}
		rk, ok := ReverseKey(f)
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
		// TCP health: the latencies are the conversation's (the server's
		// direction alone has the application latency); the segment
		// counts are per direction and have no reverse field: the
		// initiator's stay, the responder's are not carried.
		f.ClientNwDelayNs = max(f.ClientNwDelayNs, r.ClientNwDelayNs)
		f.ServerNwDelayNs = max(f.ServerNwDelayNs, r.ServerNwDelayNs)
		f.ApplLatencyNs = max(f.ApplLatencyNs, r.ApplLatencyNs)
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

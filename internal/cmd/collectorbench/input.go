package main

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"github.com/xdpflow/xdpflow/probe/export/ipfix"
	"github.com/xdpflow/xdpflow/schemas"
)

// input is the pre-generated export stream, replayed in a loop: template
// messages, then data messages, with the templates resent every
// templateEvery messages as the probe does over UDP.
type input struct {
	proto    ipfix.Protocol
	msgs     [][]byte // each message, header included
	flows    []int    // flow records in msgs[i] (0 for template messages)
	seq      []uint32 // header sequence number of msgs[i] in the first pass
	period   uint32   // what the sequence number advances by per pass
	seqOff   int      // offset of the sequence number in the header
	total    int      // flow records in one pass
	bytes    int      // bytes in one pass
	distinct int      // distinct flows (5-tuples) in one pass
}

const templateEvery = 1000 // messages between template refreshes (the probe's default)

// genInput encodes nflows distinct flows (a fraction v6 of them IPv6)
// with the probe's encoder into messages of at most maxBytes.
func genInput(proto ipfix.Protocol, nflows int, v6 float64, maxBytes int, seed uint64) (*input, error) {
	in := &input{proto: proto, seqOff: 8, distinct: nflows}
	if proto == ipfix.NetFlowV9 {
		in.seqOff = 12
	}
	added, accounted := 0, 0
	send := func(msg []byte) error {
		in.msgs = append(in.msgs, slices.Clone(msg))
		in.flows = append(in.flows, added-accounted)
		accounted = added
		return nil
	}
	enc := ipfix.NewEncoder(ipfix.Config{Protocol: proto, MaxMessageBytes: maxBytes}, send)
	now := time.Now()
	if err := enc.SendTemplates(now); err != nil {
		return nil, err
	}
	lastTemplates := 0
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	base := now.Add(-30 * time.Second).UnixNano()
	for i := range nflows {
		f := genFlow(rng, i, rng.Float64() < v6, base)
		if err := enc.Add(&f); err != nil {
			return nil, fmt.Errorf("encode flow %d: %w", i, err)
		}
		added++
		if len(in.msgs)-lastTemplates >= templateEvery {
			if err := enc.SendTemplates(now); err != nil {
				return nil, err
			}
			lastTemplates = len(in.msgs)
		}
	}
	// The closing template message is only there for its sequence number:
	// the number of units (IPFIX data records, v9 packets) in one pass.
	if err := enc.SendTemplates(now); err != nil {
		return nil, err
	}
	last := in.msgs[len(in.msgs)-1]
	in.msgs, in.flows = in.msgs[:len(in.msgs)-1], in.flows[:len(in.flows)-1]
	for _, m := range in.msgs {
		in.seq = append(in.seq, binary.BigEndian.Uint32(m[in.seqOff:]))
		in.bytes += len(m)
	}
	in.period = binary.BigEndian.Uint32(last[in.seqOff:]) - in.seq[0]
	for _, n := range in.flows {
		in.total += n
	}
	if in.total != nflows {
		return nil, fmt.Errorf("generated %d flow records, want %d", in.total, nflows)
	}
	return in, nil
}

// genFlow is flow i: distinct by addresses and ports, with varied counts.
func genFlow(rng *rand.Rand, i int, v6 bool, base int64) schemas.Flow {
	var f schemas.Flow
	if v6 {
		var s, d [16]byte
		s[0], s[1], d[0], d[1] = 0x20, 0x01, 0x20, 0x01
		s[2], s[3], d[2], d[3] = 0x0d, 0xb8, 0x0d, 0xb8
		binary.BigEndian.PutUint64(s[8:], uint64(i))
		binary.BigEndian.PutUint64(d[8:], rng.Uint64())
		f.SrcAddr, f.DstAddr = netip.AddrFrom16(s), netip.AddrFrom16(d)
	} else {
		var s, d [4]byte
		binary.BigEndian.PutUint32(s[:], 0x0a000000|uint32(i)&0xffffff)
		binary.BigEndian.PutUint32(d[:], 0xc6120000|rng.Uint32()&0x1ffff)
		f.SrcAddr, f.DstAddr = netip.AddrFrom4(s), netip.AddrFrom4(d)
	}
	switch r := rng.IntN(10); {
	case r < 6:
		f.Proto = 6
		f.TcpFlags = uint16(0x02 | 0x10 | rng.IntN(2)) // SYN|ACK, sometimes FIN
	case r < 9:
		f.Proto = 17
	default:
		if v6 {
			f.Proto = 58
		} else {
			f.Proto = 1
		}
	}
	if f.Proto == 6 || f.Proto == 17 {
		f.SrcPort = uint16(1024 + rng.IntN(60000))
		f.DstPort = []uint16{53, 80, 443, 123, 8080, 5353}[rng.IntN(6)]
	} else {
		f.DstPort = 8 << 8 // echo request
	}
	f.Packets = 1 + uint64(rng.IntN(5000))
	f.Bytes = f.Packets * uint64(40+rng.IntN(1400))
	f.L2Bytes = f.Bytes + 14*f.Packets
	f.InIf = uint32(1 + rng.IntN(4))
	if rng.IntN(5) == 0 {
		f.VlanId = uint16(1 + rng.IntN(4094))
	}
	f.IpTos = uint8(rng.IntN(4) << 2)
	f.TimeFlowStartNs = base + rng.Int64N(20e9)
	f.TimeFlowEndNs = f.TimeFlowStartNs + rng.Int64N(10e9)
	f.EndReason = schemas.EndReason(1 + rng.IntN(3))
	return f
}

// seqAt is the header sequence number of message i in pass k.
func (in *input) seqAt(i int, k uint32) uint32 { return in.seq[i] + k*in.period }

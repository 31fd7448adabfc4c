// Package flowcheck compares exported flows with the traffic that was
// sent: it decodes IPFIX and NetFlow v9 with an independent decoder
// (goflow2's), sums records per flow, and lists every difference. Tests and
// the demo use it; the collector has its own converter.
package flowcheck

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"sort"

	"github.com/netsampler/goflow2/v2/decoders/netflow"

	"github.com/xdpflow/xdpflow/internal/testkit/trafficgen"
	"github.com/xdpflow/xdpflow/schemas"
)

// ID is what tells flows apart on one capture interface.
type ID struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Proto            uint8
	VLAN             uint16
}

func (id ID) String() string {
	return fmt.Sprintf("vlan%d proto%d %s > %s", id.VLAN, id.Proto,
		netip.AddrPortFrom(id.Src, id.SrcPort), netip.AddrPortFrom(id.Dst, id.DstPort))
}

// IDOf returns the ID of a record.
func IDOf(f *schemas.Flow) ID {
	return ID{f.SrcAddr, f.DstAddr, f.SrcPort, f.DstPort, f.Proto, f.VlanId}
}

// Totals of one flow.
type Totals struct{ Packets, Bytes uint64 }

// Sums are totals per flow.
type Sums map[ID]Totals

// AddSent adds times x f's packets to the truth.
func (s Sums) AddSent(f trafficgen.Built, times int) {
	sport, dport := f.Ports()
	id := ID{f.Src, f.Dst, sport, dport, uint8(f.Proto), f.VLAN}
	t := s[id]
	s[id] = Totals{t.Packets + uint64(times*f.Packets), t.Bytes + uint64(times*f.Packets*f.L3)}
}

// AddRecord adds an exported record (both directions of a biflow).
func (s Sums) AddRecord(f *schemas.Flow) {
	if f.Biflow {
		fwd, rev := f.Forward(), f.Reverse()
		s.AddRecord(&fwd)
		s.AddRecord(&rev)
		return
	}
	id := IDOf(f)
	t := s[id]
	s[id] = Totals{t.Packets + f.Packets, t.Bytes + f.Bytes}
}

// Diff lists how got differs from want, one line a flow, sorted.
func Diff(got, want Sums) []string {
	var out []string
	for id, w := range want {
		g, ok := got[id]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("missing %v (sent %d packets, %d bytes)", id, w.Packets, w.Bytes))
		case g != w:
			out = append(out, fmt.Sprintf("%v: %d packets %d bytes, sent %d packets %d bytes", id, g.Packets, g.Bytes, w.Packets, w.Bytes))
		}
	}
	for id, g := range got {
		if _, ok := want[id]; !ok {
			out = append(out, fmt.Sprintf("flow nobody sent: %v (%d packets)", id, g.Packets))
		}
	}
	sort.Strings(out)
	return out
}

// Decoder turns IPFIX / NetFlow v9 messages into records with goflow2's
// decoder, keeping templates across messages as a collector does.
type Decoder struct {
	templates netflow.NetFlowTemplateSystem
}

// NewDecoder returns a decoder with no templates.
func NewDecoder() *Decoder { return &Decoder{templates: netflow.CreateTemplateSystem()} }

// Decode decodes one message. Data that arrives before its template is an
// error: an exporter must send templates first.
func (d *Decoder) Decode(msg []byte) ([]schemas.Flow, error) {
	var v9 netflow.NFv9Packet
	var ipfix netflow.IPFIXPacket
	if err := netflow.DecodeMessageVersion(bytes.NewBuffer(msg), d.templates, &v9, &ipfix); err != nil {
		return nil, fmt.Errorf("goflow2: %w", err)
	}
	var out []schemas.Flow
	sets := append(v9.FlowSets, ipfix.FlowSets...)
	for _, s := range sets {
		switch fs := s.(type) {
		case netflow.DataFlowSet:
			for _, r := range fs.Records {
				out = append(out, record(r.Values, &v9))
			}
		case netflow.RawFlowSet:
			return out, fmt.Errorf("data set %d arrived before its template", fs.Id)
		}
	}
	return out, nil
}

func record(vals []netflow.DataField, v9 *netflow.NFv9Packet) schemas.Flow {
	var f schemas.Flow
	var first, last uint64
	for _, v := range vals {
		b, _ := v.Value.([]byte)
		n := beUint(b)
		if v.PenProvided {
			if v.Pen == schemas.PENReverse { // RFC 5103: the other direction
				f.Biflow = true
				switch v.Type {
				case schemas.IEPacketDeltaCount:
					f.ReversePackets = n
				case schemas.IEOctetDeltaCount:
					f.ReverseBytes = n
				case schemas.IELayer2OctetDeltaCount:
					f.ReverseL2Bytes = n
				case schemas.IETCPControlBits:
					f.ReverseTcpFlags = uint16(n)
				case schemas.IEFlowStartMilliseconds:
					f.ReverseTimeFlowStartNs = int64(n) * 1e6
				case schemas.IEFlowEndMilliseconds:
					f.ReverseTimeFlowEndNs = int64(n) * 1e6
				}
			}
			continue
		}
		switch v.Type {
		case schemas.IESourceIPv4Address, schemas.IESourceIPv6Address:
			f.SrcAddr, _ = netip.AddrFromSlice(b)
		case schemas.IEDestinationIPv4Address, schemas.IEDestinationIPv6Address:
			f.DstAddr, _ = netip.AddrFromSlice(b)
		case schemas.IESourceTransportPort:
			f.SrcPort = uint16(n)
		case schemas.IEDestinationTransportPort:
			f.DstPort = uint16(n)
		case schemas.IEProtocolIdentifier:
			f.Proto = uint8(n)
		case schemas.IEVlanID:
			f.VlanId = uint16(n)
		case schemas.IEIngressInterface:
			f.InIf = uint32(n)
		case schemas.IEPacketDeltaCount:
			f.Packets = n
		case schemas.IEOctetDeltaCount:
			f.Bytes = n
		case schemas.IELayer2OctetDeltaCount:
			f.L2Bytes = n
		case schemas.IETCPControlBits:
			f.TcpFlags = uint16(n)
		case schemas.IEIPClassOfService:
			f.IpTos = uint8(n)
		case schemas.IEFlowEndReason:
			f.EndReason = schemas.EndReason(n)
		case schemas.IEFlowStartMilliseconds:
			f.TimeFlowStartNs = int64(n) * 1e6
		case schemas.IEFlowEndMilliseconds:
			f.TimeFlowEndNs = int64(n) * 1e6
		case schemas.IEFirstSwitched:
			first = n
		case schemas.IELastSwitched:
			last = n
		}
	}
	if v9.Version == 9 { // sysUptime-relative: boot = unix secs - uptime
		boot := int64(v9.UnixSeconds)*1e3 - int64(v9.SystemUptime)
		f.TimeFlowStartNs, f.TimeFlowEndNs = (boot+int64(first))*1e6, (boot+int64(last))*1e6
	}
	return f
}

func beUint(b []byte) uint64 {
	if len(b) > 8 {
		return 0
	}
	var buf [8]byte
	copy(buf[8-len(b):], b)
	return binary.BigEndian.Uint64(buf[:])
}

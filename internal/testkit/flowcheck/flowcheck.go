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

// ID is what tells flows apart on one capture interface: the
// conversation, the VLAN, and the encapsulation fields a record carries
// (tunnel, mirror session, MACs, labels; zero for plain traffic).
type ID struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Proto            uint8
	VLAN             uint16
	trafficgen.Extras
}

func (id ID) String() string {
	s := fmt.Sprintf("vlan%d proto%d %s > %s", id.VLAN, id.Proto,
		netip.AddrPortFrom(id.Src, id.SrcPort), netip.AddrPortFrom(id.Dst, id.DstPort))
	x := id.Extras
	if x.TunnelType != 0 || x.TunnelID != 0 {
		s += fmt.Sprintf(" tunnel %v id %#x", x.TunnelType, x.TunnelID)
	}
	if x.TunnelSrc.IsValid() || x.TunnelDst.IsValid() {
		s += fmt.Sprintf(" endpoints %v > %v", x.TunnelSrc, x.TunnelDst)
	}
	if x.MirrorType != 0 || x.ObservationPoint != 0 {
		s += fmt.Sprintf(" mirror %v session %#x", x.MirrorType, x.ObservationPoint)
	}
	if x.SrcMAC != (schemas.MAC{}) || x.DstMAC != (schemas.MAC{}) {
		s += fmt.Sprintf(" mac %v > %v", x.SrcMAC, x.DstMAC)
	}
	if n := schemas.MplsDepth(&x.MPLSLabels); n > 0 {
		s += fmt.Sprintf(" labels %x", x.MPLSLabels[:n])
	}
	return s
}

// IDOf returns the ID of a record.
func IDOf(f *schemas.Flow) ID {
	return ID{Src: f.SrcAddr, Dst: f.DstAddr, SrcPort: f.SrcPort, DstPort: f.DstPort, Proto: f.Proto, VLAN: f.VlanId,
		Extras: trafficgen.Extras{TunnelType: f.TunnelType, TunnelID: f.TunnelId, TunnelSrc: f.TunnelSrcAddr.Unmap(), TunnelDst: f.TunnelDstAddr.Unmap(),
			MirrorType: f.MirrorType, ObservationPoint: f.ObservationPointId, SrcMAC: f.SrcMac, DstMAC: f.DstMac, MPLSLabels: f.MplsLabels}}
}

// Totals of one flow. L2Bytes 0 in the truth means it is not known (a
// decoder without layer2OctetDeltaCount on that side): not compared.
type Totals struct{ Packets, Bytes, L2Bytes uint64 }

// Sums are totals per flow.
type Sums map[ID]Totals

// Sent is the truth for frames each sent once.
func Sent(frames []trafficgen.Built) Sums {
	s := Sums{}
	s.AddFrames(frames)
	return s
}

// AddFrames adds frames, each sent once, to the truth.
func (s Sums) AddFrames(frames []trafficgen.Built) {
	for _, f := range frames {
		s.AddSent(f, 1)
	}
}

// AddSent adds times x f's packets to the truth.
func (s Sums) AddSent(f trafficgen.Built, times int) {
	sport, dport := f.Ports()
	id := ID{f.Src, f.Dst, sport, dport, uint8(f.Proto), f.VLAN, f.Extras}
	t := s[id]
	n := uint64(times * f.Packets)
	s[id] = Totals{t.Packets + n, t.Bytes + n*uint64(f.L3), t.L2Bytes + n*uint64(f.L2)}
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
	s[id] = Totals{t.Packets + f.Packets, t.Bytes + f.Bytes, t.L2Bytes + f.L2Bytes}
}

// Map is s as a decoder that lacks some field sees it: every ID passed
// through fn, the flows that then coincide summed.
func (s Sums) Map(fn func(ID) ID) Sums {
	out := Sums{}
	for id, t := range s {
		id = fn(id)
		o := out[id]
		out[id] = Totals{o.Packets + t.Packets, o.Bytes + t.Bytes, o.L2Bytes + t.L2Bytes}
	}
	return out
}

// WithoutL2 is s with no layer-2 octets: the truth for a decoder that has
// no layer2OctetDeltaCount.
func (s Sums) WithoutL2() Sums {
	out := Sums{}
	for id, t := range s {
		out[id] = Totals{Packets: t.Packets, Bytes: t.Bytes}
	}
	return out
}

// NoEnterprise is an ID without the fields IPFIX carries only in
// xdpflow's own IEs (tunnel type, id and endpoints; mirror type): what a
// collector reads of a probe that has no --ipfix-enterprise-number.
func NoEnterprise(id ID) ID {
	id.TunnelType, id.TunnelID, id.TunnelSrc, id.TunnelDst, id.MirrorType = 0, 0, netip.Addr{}, netip.Addr{}, 0
	return id
}

// LabelsNoTTL is an ID whose MPLS label stack entries have no TTL: as
// IPFIX and NetFlow v9 carry them (3-byte IEs 70-79).
func LabelsNoTTL(id ID) ID {
	for i := range id.MPLSLabels {
		id.MPLSLabels[i] &^= 0xff
	}
	return id
}

// Diff lists how got differs from want, one line a flow, sorted.
func Diff(got, want Sums) []string {
	var out []string
	for id, w := range want {
		g, ok := got[id]
		if ok && w.L2Bytes == 0 {
			g.L2Bytes = 0
		}
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("missing %v (sent %d packets, %d bytes, %d L2 bytes)", id, w.Packets, w.Bytes, w.L2Bytes))
		case g != w:
			out = append(out, fmt.Sprintf("%v: %d packets %d bytes %d L2 bytes, sent %d packets %d bytes %d L2 bytes",
				id, g.Packets, g.Bytes, g.L2Bytes, w.Packets, w.Bytes, w.L2Bytes))
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
	// Enterprise is the probe's --ipfix-enterprise-number: xdpflow's own
	// IEs (tunnel, mirror type) are read under it; 0, they are not.
	Enterprise uint32
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
				out = append(out, record(r.Values, &v9, d.Enterprise))
			}
		case netflow.RawFlowSet:
			return out, fmt.Errorf("data set %d arrived before its template", fs.Id)
		}
	}
	return out, nil
}

func record(vals []netflow.DataField, v9 *netflow.NFv9Packet, pen uint32) schemas.Flow {
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
			if pen != 0 && v.Pen == pen { // xdpflow's own IEs
				switch v.Type {
				case schemas.IETunnelType:
					f.TunnelType = schemas.TunnelType(n)
				case schemas.IETunnelID:
					f.TunnelId = uint32(n)
				case schemas.IETunnelSourceAddress:
					f.TunnelSrcAddr = tunnelAddr(b)
				case schemas.IETunnelDestinationAddress:
					f.TunnelDstAddr = tunnelAddr(b)
				case schemas.IEMirrorType:
					f.MirrorType = schemas.MirrorType(n)
				}
			}
			continue
		}
		if v.Type >= schemas.IEMplsTopLabelStackSection && v.Type < schemas.IEMplsTopLabelStackSection+schemas.MaxMplsLabels {
			// label<<4 | TC<<1 | S: the entry without its TTL.
			f.MplsLabels[v.Type-schemas.IEMplsTopLabelStackSection] = uint32(n) << 8
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
		case schemas.IESourceMacAddress:
			copy(f.SrcMac[:], b)
		case schemas.IEDestinationMacAddress:
			copy(f.DstMac[:], b)
		case schemas.IEObservationPointID:
			f.ObservationPointId = uint32(n)
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

// tunnelAddr is a tunnel endpoint IE (16 bytes, IPv4-mapped; zero: none).
func tunnelAddr(b []byte) netip.Addr {
	a, ok := netip.AddrFromSlice(b)
	if !ok || a == netip.IPv6Unspecified() {
		return netip.Addr{}
	}
	return a.Unmap()
}

func beUint(b []byte) uint64 {
	if len(b) > 8 {
		return 0
	}
	var buf [8]byte
	copy(buf[8-len(b):], b)
	return binary.BigEndian.Uint64(buf[:])
}

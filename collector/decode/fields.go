package decode

import (
	"github.com/xdpflow/xdpflow/schemas"
)

// Information elements read besides those in schemas/ie.go (IANA IPFIX
// numbers; NetFlow v9 uses the same for 1-127).
const (
	ieSrcMask          = 9
	ieNextHopV4        = 15
	ieSrcAS            = 16
	ieDstAS            = 17
	ieBGPNextHopV4     = 18
	ieOutOctets        = 23 // postOctetDeltaCount
	ieOutPackets       = 24 // postPacketDeltaCount
	ieSrcMaskV6        = 29
	ieDstMaskV6        = 30
	ieDstMask          = 13
	ieEgressInterface  = 14
	ieSrcMac           = 56
	iePostDstMac       = 57
	ieNextHopV6        = 62
	ieBGPNextHopV6     = 63
	ieDstMac           = 80
	iePostSrcMac       = 81
	ieOctetTotal       = 85
	iePacketTotal      = 86
	ieForwardingStatus = 89
	ieMplsLabel9       = 78 // mplsLabelStackSection9 and 10: the probe sends 8 (70-77)
	ieMplsLabel10      = 79
	ieGreKey           = 296
	// NSEL (Cisco ASA) and IPFIX initiator/responder counters: read as the
	// flow's when the template has no delta counters (compile).
	ieInitiatorOctets    = 231
	ieResponderOctets    = 232
	ieInitiatorPackets   = 298
	ieResponderPackets   = 299
	ieIngressPhysicalIf  = 252 // ingressPhysicalInterface: when the template has no ingressInterface 10
	ieEgressPhysicalIf   = 253
	ieLayer2SegmentID    = 351 // top octet: 0x01 VXLAN, 0x02 NVGRE; the low 24 bits: VNI / VSID
	ieGtpuTEID           = 507
	ieFlowStartSeconds   = 150
	ieFlowEndSeconds     = 151
	ieFlowStartMicro     = 154
	ieFlowEndMicro       = 155
	ieFlowStartNano      = 156
	ieFlowEndNano        = 157
	ieFlowStartDeltaUs   = 158
	ieFlowEndDeltaUs     = 159
	ieSystemInitTimeMs   = 160
	ieICMPTypeV4         = 176
	ieICMPCodeV4         = 177
	ieICMPTypeV6         = 178
	ieICMPCodeV6         = 179
	ieDot1qVlanID        = 243
	ieV9ScopeInterface   = 2 // v9 options scope type "Interface" (RFC 3954 6.1)
	ieIngressInterfaceID = schemas.IEIngressInterface
)

// setters are the FlowMessage setters of schemas.Exported (the probe's
// own fields that need nothing else of the record) by IE: [1] reverse
// IEs (PEN 29305), [2] xdpflow's own (Config.EnterpriseNumber), [3]
// ntop's (PEN 35632, NetFlow v9 57472 + IE: TCP health, from the probe
// and from nProbe). The IEs field reads itself are the rest: fields with
// a record-level meaning, and those the probe never sends.
var setters [4][maxSetterIE]func(*schemas.FlowMessage, uint64)

const maxSetterIE = 512

func init() {
	for i := range schemas.Exported {
		x := &schemas.Exported[i]
		if x.Set == nil {
			continue
		}
		if x.IE >= maxSetterIE {
			panic("decode: schemas.Exported: raise maxSetterIE")
		}
		r := 0
		switch {
		case x.Reverse:
			r = 1
		case x.Enterprise:
			r = 2
		case x.PEN == schemas.PENNtop:
			r = 3
		case x.PEN != 0:
			panic("decode: schemas.Exported: an IE under an enterprise number the decoder does not know")
		}
		setters[r][x.IE] = x.Set
	}
}

// setter is the schemas.Exported setter of a template field id (reverse
// IEs with ieReverse, our own with ieOurs), nil when field reads it.
func setter(id uint16) func(*schemas.FlowMessage, uint64) {
	r := 0
	switch {
	case id&ieNtop == ieNtop:
		r, id = 3, id&^ieNtop
	case id&ieReverse != 0:
		r, id = 1, id&^ieReverse
	case id&ieOurs != 0:
		r, id = 2, id&^ieOurs
	}
	if id >= maxSetterIE {
		return nil
	}
	return setters[r][id]
}

// field applies one field of a data record. Lengths are checked where a
// wrong one would misread (addresses, MACs); numbers take any length.
// Fields with a schemas.Exported setter go there.
func (c *converter) field(id uint16, v []byte) {
	m := c.m
	switch id {
	case schemas.IEOctetDeltaCount:
		c.octets, c.have = beUint(v), c.have|hOctets
	case schemas.IEPacketDeltaCount:
		c.pkts, c.have = beUint(v), c.have|hPackets
	case ieOctetTotal:
		c.octetsTot, c.have = beUint(v), c.have|hOctetsTotal
	case iePacketTotal:
		c.pktsTot, c.have = beUint(v), c.have|hPacketsTotal
	case ieOutOctets:
		c.octetsOut, c.have = beUint(v), c.have|hOctetsOut
	case ieOutPackets:
		c.pktsOut, c.have = beUint(v), c.have|hPacketsOut

	// Addresses: by their length (4 or 16; others are not addresses),
	// whatever the IE says, as before templates with both families.
	case schemas.IESourceIPv4Address, schemas.IESourceIPv6Address:
		byFamily(v, &c.src4, &c.src6)
	case schemas.IEDestinationIPv4Address, schemas.IEDestinationIPv6Address:
		byFamily(v, &c.dst4, &c.dst6)
	case ieNextHopV4, ieNextHopV6:
		byFamily(v, &c.nh4, &c.nh6)
	case ieBGPNextHopV4, ieBGPNextHopV6:
		byFamily(v, &c.bgp4, &c.bgp6)
	case schemas.IEIPVersion:
		c.ipVersion, c.have = uint8(beUint(v)), c.have|hIPVersion

	case schemas.IEICMPTypeCodeIPv4, schemas.IEICMPTypeCodeIPv6:
		c.icmpTC, c.have = uint16(beUint(v)), c.have|hICMPTypeCode
	case ieICMPTypeV4, ieICMPTypeV6:
		c.icmpType, c.have = uint8(beUint(v)), c.have|hICMPType
	case ieICMPCodeV4, ieICMPCodeV6:
		c.icmpCode, c.have = uint8(beUint(v)), c.have|hICMPCode

	case ieEgressInterface:
		m.OutIf = uint32(beUint(v))
	case schemas.IEVlanID:
		m.VlanId, c.have = uint32(beUint(v))&0xfff, c.have|hVlan
	case ieDot1qVlanID:
		if c.have&hVlan == 0 {
			m.VlanId = uint32(beUint(v)) & 0xfff
		}
	case ieSrcMac:
		if len(v) == 6 {
			m.SrcMac, c.have = beUint(v), c.have|hSrcMac
		}
	case iePostSrcMac:
		if len(v) == 6 && c.have&hSrcMac == 0 {
			m.SrcMac = beUint(v)
		}
	case ieDstMac:
		if len(v) == 6 {
			m.DstMac, c.have = beUint(v), c.have|hDstMac
		}
	case iePostDstMac:
		if len(v) == 6 && c.have&hDstMac == 0 {
			m.DstMac = beUint(v)
		}
	case ieForwardingStatus:
		m.ForwardingStatus = uint32(beUint(v))
	case ieMplsLabel9, ieMplsLabel10:
		schemas.SetMplsLabel(m, int(id-schemas.IEMplsTopLabelStackSection), beUint(v))

	// Tunnels: ours (IPFIX, under Config.EnterpriseNumber) carry type, id
	// and endpoints; other exporters send an IANA IE per kind.
	case ieOurs | schemas.IETunnelSourceAddress:
		if (len(v) == 4 || len(v) == 16) && !allZero(v) { // zero: the tunnel has none (MPLS, PPPoE)
			m.TunnelSrcAddr = putAddr(m.TunnelSrcAddr, v)
		}
	case ieOurs | schemas.IETunnelDestinationAddress:
		if (len(v) == 4 || len(v) == 16) && !allZero(v) { // zero: the tunnel has none (MPLS, PPPoE)
			m.TunnelDstAddr = putAddr(m.TunnelDstAddr, v)
		}
	case ieGreKey:
		m.TunnelType, m.TunnelId = schemas.FlowMessage_TUNNEL_TYPE_GRE, uint32(beUint(v))
	case ieGtpuTEID:
		m.TunnelType, m.TunnelId = schemas.FlowMessage_TUNNEL_TYPE_GTPU, uint32(beUint(v))
	case ieLayer2SegmentID:
		if n := beUint(v); n>>56 == 0x01 { // VXLAN; NVGRE's VSID is not a whole GRE key
			m.TunnelType, m.TunnelId = schemas.FlowMessage_TUNNEL_TYPE_VXLAN, uint32(n&0xffffff)
		}

	case ieSrcAS:
		m.SrcAs = uint32(beUint(v))
	case ieDstAS:
		m.DstAs = uint32(beUint(v))
	case ieSrcMask, ieSrcMaskV6:
		m.SrcNet = uint32(beUint(v))
	case ieDstMask, ieDstMaskV6:
		m.DstNet = uint32(beUint(v))

	case ieFlowStartSeconds:
		c.setStart(beUint(v)*1e9, precSec)
	case ieFlowEndSeconds:
		c.setEnd(beUint(v)*1e9, precSec)
	case schemas.IEFlowStartMilliseconds:
		c.setStart(beUint(v)*1e6, precMs)
	case schemas.IEFlowEndMilliseconds:
		c.setEnd(beUint(v)*1e6, precMs)
	case ieFlowStartMicro:
		c.setStart(ntpNs(beUint(v), true), precUs)
	case ieFlowEndMicro:
		c.setEnd(ntpNs(beUint(v), true), precUs)
	case ieFlowStartNano:
		c.setStart(ntpNs(beUint(v), false), precNs)
	case ieFlowEndNano:
		c.setEnd(ntpNs(beUint(v), false), precNs)
	case ieFlowStartDeltaUs:
		c.setStart(c.beforeExport(beUint(v)), precDelta)
	case ieFlowEndDeltaUs:
		c.setEnd(c.beforeExport(beUint(v)), precDelta)
	case schemas.IEFirstSwitched:
		c.first, c.have = uint32(beUint(v)), c.have|hFirst
	case schemas.IELastSwitched:
		c.last, c.have = uint32(beUint(v)), c.have|hLast
	case ieSystemInitTimeMs:
		c.sysInitMs, c.have = beUint(v), c.have|hSysInit

	case ieResponderOctets: // only when the template has no octetDeltaCount (compile)
		m.ReverseBytes, m.Biflow = beUint(v), true
	case ieResponderPackets:
		m.ReversePackets, m.Biflow = beUint(v), true
	default:
		if c.samp.field(id, v) {
			return
		}
		if set := setter(id); set != nil {
			set(m, beUint(v))
		}
	}
}

func byFamily(v []byte, v4, v6 *addr) {
	switch len(v) {
	case 4:
		v4.set(v)
	case 16:
		v6.set(v)
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// beforeExport is flowStart/EndDeltaMicroseconds: microseconds before the
// message's export time.
func (c *converter) beforeExport(us uint64) uint64 {
	export := uint64(c.h.exportSecs) * 1e9
	return export - min(us*1e3, export)
}

// uptimeNs converts a sysUptime-relative millisecond time (FIRST/
// LAST_SWITCHED) to Unix ns: v9 and v5 against the header's sysUptime and
// unix time (the difference taken as signed 32 bits, so sysUptime
// wrapping at 49.7 days between the two does not matter); IPFIX against
// systemInitTimeMilliseconds from the record or the domain's options data.
func (c *converter) uptimeNs(ms uint32) (uint64, bool) {
	h := c.h
	if h.version == 10 {
		init := c.sysInitMs
		if c.have&hSysInit == 0 {
			if c.dom == nil || c.dom.sysInitMs == 0 {
				return 0, false
			}
			init = c.dom.sysInitMs
		}
		return (init + uint64(ms)) * 1e6, true
	}
	export := int64(h.exportSecs)*1e9 + int64(h.exportNs)
	return uint64(max(export+int64(int32(ms-h.uptimeMs))*1e6, 0)), true
}

// addresses fills m's addresses and returns the record's IP version (0:
// unknown). A template may carry both families and fill one with zeros
// (IOS XR, Procera): ipVersion 60 names the family when present, else the
// family with a non-zero address, else IPv4 if present. Next hops take
// the non-zero family, else the flow's.
func (c *converter) addresses() int {
	m := c.m
	has4, has6 := c.src4.n != 0 || c.dst4.n != 0, c.src6.n != 0 || c.dst6.n != 0
	fam := 0
	switch {
	case c.have&hIPVersion != 0 && (c.ipVersion == 4 && has4 || c.ipVersion == 6 && has6):
		fam = int(c.ipVersion)
	case has4 && has6:
		fam = 4
		if c.src4.zero() && c.dst4.zero() && !(c.src6.zero() && c.dst6.zero()) {
			fam = 6
		}
	case has4:
		fam = 4
	case has6:
		fam = 6
	}
	src, dst := &c.src4, &c.dst4
	if fam == 6 {
		src, dst = &c.src6, &c.dst6
	}
	if src.n != 0 {
		m.SrcAddr = putAddr(m.SrcAddr, src.bytes())
	}
	if dst.n != 0 {
		m.DstAddr = putAddr(m.DstAddr, dst.bytes())
	}
	if nh := pickFamily(&c.nh4, &c.nh6, fam); nh != nil {
		m.NextHop = putAddr(m.NextHop, nh.bytes())
	}
	if nh := pickFamily(&c.bgp4, &c.bgp6, fam); nh != nil {
		m.BgpNextHop = putAddr(m.BgpNextHop, nh.bytes())
	}
	if c.have&hIPVersion != 0 { // the etype follows ipVersion even without addresses
		if c.ipVersion == 4 || c.ipVersion == 6 {
			return int(c.ipVersion)
		}
		return 0
	}
	return fam
}

// pickFamily chooses between an IPv4 and an IPv6 address of one meaning:
// the one present, else the non-zero one, else the flow's family's; nil
// when neither is present.
func pickFamily(v4, v6 *addr, fam int) *addr {
	switch {
	case v4.n == 0 && v6.n == 0:
		return nil
	case v6.n == 0:
		return v4
	case v4.n == 0:
		return v6
	case v4.zero() != v6.zero():
		if v4.zero() {
			return v6
		}
		return v4
	case fam == 6:
		return v6
	}
	return v4
}

// finish resolves what depends on several fields and completes m.
func (c *converter) finish() {
	m := c.m
	switch {
	case c.have&hOctets != 0:
		m.Bytes = c.octets
	case c.have&hOctetsTotal != 0:
		m.Bytes = c.octetsTot
	case c.have&hOctetsOut != 0:
		m.Bytes = c.octetsOut
	}
	switch {
	case c.have&hPackets != 0:
		m.Packets = c.pkts
	case c.have&hPacketsTotal != 0:
		m.Packets = c.pktsTot
	case c.have&hPacketsOut != 0:
		m.Packets = c.pktsOut
	}
	if c.have&hFirst != 0 {
		if ns, ok := c.uptimeNs(c.first); ok {
			c.setStart(ns, precUptime)
		}
	}
	if c.have&hLast != 0 {
		if ns, ok := c.uptimeNs(c.last); ok {
			c.setEnd(ns, precUptime)
		}
	}
	m.TimeFlowStartNs, m.TimeFlowEndNs = c.startNs, c.endNs

	switch c.addresses() {
	case 4:
		m.Etype = 0x0800
	case 6:
		m.Etype = 0x86dd
	}

	if m.Proto == 1 || m.Proto == 58 {
		// ICMP type and code: from icmpTypeCode, the separate type and code
		// IEs, or else the destination port, where Cisco and Juniper put
		// type<<8|code. Ports are 0, as in the probe's own messages.
		tc := uint16(m.DstPort)
		switch {
		case c.have&hICMPTypeCode != 0:
			tc = c.icmpTC
		case c.have&(hICMPType|hICMPCode) != 0:
			tc = uint16(c.icmpType)<<8 | uint16(c.icmpCode)
		}
		m.IcmpType, m.IcmpCode = uint32(tc>>8), uint32(tc&0xff)
		m.SrcPort, m.DstPort = 0, 0
	}

	// The record's own sampling IEs, else its sampler's rate, else the
	// domain's.
	if r, _ := c.samp.rate(); r != 0 {
		m.SamplingRate = r
	} else if c.dom != nil {
		m.SamplingRate = c.dom.sampling.of(c.samp.id, c.samp.have&sID != 0)
	}
	if c.dom != nil && c.dom.ifNames != nil {
		m.InIfName = c.dom.ifNames[m.InIf]
	}
}

// optionsField reads one field of an options data record.
func (c *converter) optionsField(id uint16, v []byte) {
	switch id {
	case ieIngressInterfaceID, ieEgressInterface: // v9's Interface scope is compiled to ingressInterface
		c.ifIndex, c.hasIf = uint32(beUint(v)), true
	case schemas.IEInterfaceName:
		c.ifName = v
	case ieSystemInitTimeMs:
		c.sysInitMs, c.have = beUint(v), c.have|hSysInit
	default:
		c.samp.field(id, v)
	}
}

func (c *converter) beginOptions() {
	c.record, c.ifName = record{}, nil
}

// finishOptions applies an options data record to its domain: sampling
// rate (per sampler when the record names one: samplerId 48 or selectorId
// 302, as a scope or not), system init time, interface name.
func (c *converter) finishOptions(dom *domain) {
	if r, said := c.samp.rate(); said {
		if !dom.sampling.set(c.samp.id, c.samp.have&sID != 0, r, dom.e.charge) {
			dom.e.c.Dropped[ReasonTemplateMemory]++
		}
	}
	if c.have&hSysInit != 0 {
		dom.sysInitMs = c.sysInitMs
	}
	if c.hasIf && c.ifName != nil {
		dom.setIfName(c.ifIndex, c.ifName)
	}
}

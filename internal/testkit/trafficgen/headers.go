package trafficgen

import (
	"encoding/binary"
	"net"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Headers of the encapsulations a flow probe looks through (issue #13):
// the kernel tests of package bpf and the encapsulated profile (encap.go)
// build their frames from these. Where gopacket has the layer it is
// gopacket's, with the fields a real sender sets; the rest are raw bytes.

// Default UDP ports of the encapsulations (IANA).
const (
	PortVXLAN  = 4789
	PortGeneve = 6081
	PortGTPU   = 2152
	PortTZSP   = 37008
)

// EthernetTypeERSPANIII is GRE's protocol type for ERSPAN type III
// (type I and II share layers.EthernetTypeERSPAN, 0x88be).
const EthernetTypeERSPANIII = layers.EthernetType(0x22eb)

// The MACs of frames carried inside tunnels and mirrors.
var (
	CarriedSrcMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0xc}
	CarriedDstMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0xd}
)

// GRE is a GRE header of the given protocol type, without options.
func GRE(proto layers.EthernetType) *layers.GRE { return &layers.GRE{Protocol: proto} }

// GREKeyed is a GRE header with a key.
func GREKeyed(proto layers.EthernetType, key uint32) *layers.GRE {
	return &layers.GRE{Protocol: proto, KeyPresent: true, Key: key}
}

// VXLAN is a VXLAN header with the VNI valid (I flag).
func VXLAN(vni uint32) *layers.VXLAN { return &layers.VXLAN{ValidIDFlag: true, VNI: vni} }

// Geneve is a Geneve header carrying proto (an Ethernet frame:
// layers.EthernetTypeTransparentEthernetBridging), with options.
func Geneve(vni uint32, proto layers.EthernetType, opts ...*layers.GeneveOption) *layers.Geneve {
	return &layers.Geneve{VNI: vni, Protocol: proto, Options: opts}
}

// GTPU is a GTP-U G-PDU header (version 1, message type 255).
func GTPU(teid uint32, ext ...layers.GTPExtensionHeader) *layers.GTPv1U {
	return &layers.GTPv1U{Version: 1, ProtocolType: 1, MessageType: 255, TEID: teid, GTPExtensionHeaders: ext}
}

// ERSPANII is an ERSPAN type II header; COS, encapsulation type and the T
// bit fill the bits above the session id so that only its low 10 bits
// are read. vlan is the session's, not the mirrored frame's. It goes
// after a GRE header of protocol layers.EthernetTypeERSPAN with a
// sequence number (ERSPANGRE).
func ERSPANII(session uint16, vlan uint16) *layers.ERSPANII {
	return &layers.ERSPANII{Version: 1, SessionID: session, VLANIdentifier: vlan, CoS: 5, TrunkEncap: 3, IsTruncated: true, Index: 0x12345}
}

// ERSPANGRE is the GRE header of ERSPAN type II: sequence number present.
func ERSPANGRE(seq uint32) *layers.GRE {
	return &layers.GRE{Protocol: layers.EthernetTypeERSPAN, SeqPresent: true, Seq: seq}
}

// ERSPANIII is an ERSPAN type III header (12 bytes), and with sub the
// optional 8-byte platform-specific subheader (O bit); version 2 is type
// III's. It goes after a GRE header of protocol EthernetTypeERSPANIII.
func ERSPANIII(version uint8, session uint16, sub bool) gopacket.Payload {
	b := make([]byte, 12, 20)
	binary.BigEndian.PutUint16(b[0:], uint16(version)<<12|100)             // VLAN 100 of the session, not of the frame
	binary.BigEndian.PutUint16(b[2:], 0x7<<13|0x3<<11|1<<10|session&0x3ff) // COS 7, BSO 3, T 1
	binary.BigEndian.PutUint32(b[4:], 0x01020304)                          // timestamp
	b[10] = 0x80                                                           // P: an Ethernet PDU, frame type 0
	if sub {
		b[11] |= 1
		b = append(b, 0x0c, 0x00, 0x00, 0x03, 0x15, 0xf7, 0x42, 0xe8) // platform 3, port 3, upper timestamp
	}
	return b
}

// TZSP is a TZSP header (version 1, type 0 received, encapsulation 1
// Ethernet) and tags, then END.
func TZSP(tags ...byte) gopacket.Payload {
	return append(append([]byte{1, 0, 0, 1}, tags...), 1)
}

// MPLS is a label stack (TTL 64, TC 0), bottom-of-stack set on the last
// label when bos.
func MPLS(bos bool, labels ...uint32) gopacket.Payload {
	var b []byte
	for i, l := range labels {
		b = binary.BigEndian.AppendUint32(b, LSE(l, bos && i == len(labels)-1))
	}
	return b
}

// LSE is the label stack entry MPLS writes: label<<12 | S<<8 | TTL 64.
func LSE(label uint32, bottom bool) uint32 {
	v := label<<12 | 64
	if bottom {
		v |= 1 << 8
	}
	return v
}

// PPP protocol numbers of a PPPoE session frame.
const (
	PPPIPv4 = 0x0021
	PPPIPv6 = 0x0057
	PPPLCP  = 0xc021
)

// PPPoE is a PPPoE session header and PPP protocol for a payload of n
// bytes.
func PPPoE(session, proto uint16, n int) gopacket.Payload {
	b := []byte{0x11, 0x00, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint16(b[2:], session)
	binary.BigEndian.PutUint16(b[4:], uint16(n+2))
	binary.BigEndian.PutUint16(b[6:], proto)
	return b
}

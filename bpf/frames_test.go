package bpf

import (
	"encoding/binary"
	"net"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Frame builders for the kernel tests: gopacket builds valid frames (and,
// like a NIC, pads them to the 60-byte Ethernet minimum); the malformed ones
// are valid frames cut or bent afterwards.

var (
	macA  = net.HardwareAddr{0x02, 0, 0, 0, 0, 0xa}
	macB  = net.HardwareAddr{0x02, 0, 0, 0, 0, 0xb}
	v4a   = net.IP{198, 18, 0, 1}
	v4b   = net.IP{198, 18, 0, 2}
	v6a   = net.ParseIP("2001:db8::a")
	v6b   = net.ParseIP("2001:db8::b")
	serOp = gopacket.SerializeOptions{FixLengths: true}
)

func serialize(ls ...gopacket.SerializableLayer) []byte {
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, serOp, ls...); err != nil {
		panic(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// eth returns the Ethernet header (plus VLAN tags, outer first) for a
// payload of the given ethertype.
func eth(et layers.EthernetType, vlans ...uint16) []gopacket.SerializableLayer {
	if len(vlans) == 0 {
		return []gopacket.SerializableLayer{&layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: et}}
	}
	outer := layers.EthernetTypeDot1Q
	if len(vlans) > 1 {
		outer = layers.EthernetTypeQinQ
	}
	ls := []gopacket.SerializableLayer{&layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: outer}}
	for i, id := range vlans {
		next := layers.EthernetTypeDot1Q
		if i == len(vlans)-1 {
			next = et
		}
		ls = append(ls, &layers.Dot1Q{VLANIdentifier: id, Type: next})
	}
	return ls
}

func ipv4(proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: proto, SrcIP: v4a, DstIP: v4b}
}

func ipv6(next layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: next, SrcIP: v6a, DstIP: v6b}
}

func tcp(sport, dport uint16, flags uint16) *layers.TCP {
	t := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Window: 1024, DataOffset: 5}
	t.FIN = flags&0x01 != 0
	t.SYN = flags&0x02 != 0
	t.RST = flags&0x04 != 0
	t.PSH = flags&0x08 != 0
	t.ACK = flags&0x10 != 0
	t.URG = flags&0x20 != 0
	t.ECE = flags&0x40 != 0
	t.CWR = flags&0x80 != 0
	t.NS = flags&0x100 != 0
	return t
}

func udp(sport, dport uint16) *layers.UDP {
	return &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
}

func payload(n int) gopacket.Payload { return make(gopacket.Payload, n) }

func build(l2 []gopacket.SerializableLayer, rest ...gopacket.SerializableLayer) []byte {
	return serialize(append(l2, rest...)...)
}

// ext6 is a raw IPv6 extension header of 8*(1+extLen) bytes.
func ext6(next layers.IPProtocol, extLen uint8) gopacket.Payload {
	h := make([]byte, 8*(1+int(extLen)))
	h[0] = byte(next)
	h[1] = extLen
	h[2] = 1 // PadN option, so the header is well formed
	h[3] = byte(len(h) - 4)
	return h
}

// frag6 is a raw IPv6 fragment header.
func frag6(next layers.IPProtocol, offset8 uint16, more bool) gopacket.Payload {
	h := make([]byte, 8)
	h[0] = byte(next)
	v := offset8 << 3
	if more {
		v |= 1
	}
	binary.BigEndian.PutUint16(h[2:], v)
	binary.BigEndian.PutUint32(h[4:], 0x1234)
	return h
}

// concat joins raw payload pieces into one layer.
func concat(parts ...[]byte) gopacket.Payload {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func rawL4(l gopacket.SerializableLayer, n int) []byte {
	return serialize(l, payload(n))
}

func pad(f []byte, to int) []byte {
	for len(f) < to {
		f = append(f, 0)
	}
	return f
}

func mutate(f []byte, fn func([]byte)) []byte {
	f = append([]byte(nil), f...)
	fn(f)
	return f
}

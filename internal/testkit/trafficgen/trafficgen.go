// Package trafficgen builds a known mix of flows and sends it as raw
// Ethernet frames from an AF_PACKET socket, so that tests and `make demo`
// can compare what the datapath counted with what was really sent.
package trafficgen

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"
)

// Flow is one flow of the mix: Packets frames, all alike.
type Flow struct {
	Src, Dst         netip.Addr
	Proto            layers.IPProtocol
	SrcPort, DstPort uint16 // for ICMP: DstPort is type<<8|code
	VLAN             uint16 // 0: untagged
	InnerVLAN        uint16 // with VLAN: QinQ, VLAN is the 802.1ad outer tag
	IPv4Options      bool   // 8 bytes of IPv4 options (IHL 7)
	IPv6Ext          bool   // hop-by-hop and destination options headers before L4
	TCPFlags         uint16 // per packet, RFC 7125 bit positions
	Seq, Ack         uint32 // TCP sequence and acknowledgment numbers
	ZeroWindow       bool   // TCP window 0 (else 512)
	Payload          int    // L4 payload bytes
	Packets          int
	Last             bool // sent after every other flow (a TCP FIN closes its conversation)
}

// Frame builds the flow's frame and returns it with its L3 length (IP
// header + payload, what the datapath must count as bytes).
func (f Flow) Frame(srcMAC, dstMAC net.HardwareAddr) (frame []byte, l3 int, err error) {
	ip, err := f.Packet()
	if err != nil {
		return nil, 0, err
	}
	et := layers.EthernetTypeIPv4
	if f.Src.Is6() {
		et = layers.EthernetTypeIPv6
	}
	return ethernet(srcMAC, dstMAC, et, ip, f.VLAN, f.InnerVLAN), len(ip), nil
}

// ethernet is an Ethernet frame of type et around payload, 802.1Q-tagged
// with vlan, or QinQ (802.1ad outer) with inner too; gopacket pads it to
// the 60-byte minimum.
func ethernet(srcMAC, dstMAC net.HardwareAddr, et layers.EthernetType, payload []byte, vlan, inner uint16) []byte {
	var ls []gopacket.SerializableLayer
	eth := &layers.Ethernet{SrcMAC: srcMAC, DstMAC: dstMAC, EthernetType: et}
	ls = append(ls, eth)
	switch {
	case vlan != 0 && inner != 0:
		eth.EthernetType = layers.EthernetTypeQinQ
		ls = append(ls, &layers.Dot1Q{VLANIdentifier: vlan, Type: layers.EthernetTypeDot1Q},
			&layers.Dot1Q{VLANIdentifier: inner, Type: et})
	case vlan != 0:
		eth.EthernetType = layers.EthernetTypeDot1Q
		ls = append(ls, &layers.Dot1Q{VLANIdentifier: vlan, Type: et})
	}
	return serialize(append(ls, gopacket.Payload(payload))...)
}

// serialize lays out ls with lengths fixed (checksums are the caller's).
func serialize(ls ...gopacket.SerializableLayer) []byte {
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true}, ls...); err != nil {
		panic(fmt.Sprintf("trafficgen: serialize %v: %v", ls, err)) // only fixed, valid layers come here
	}
	return append([]byte(nil), buf.Bytes()...)
}

// Packet builds the flow's IP packet (from the IP header on, checksums
// computed): its length is what the datapath counts as bytes.
func (f Flow) Packet() ([]byte, error) {
	var ls []gopacket.SerializableLayer
	var netLayer gopacket.NetworkLayer
	if f.Src.Is6() {
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: f.Proto, SrcIP: f.Src.AsSlice(), DstIP: f.Dst.AsSlice()}
		ls, netLayer = append(ls, ip), ip
		if f.IPv6Ext {
			// Hop-by-hop then destination options, 8 bytes each (PadN).
			ip.NextHeader = layers.IPProtocolIPv6HopByHop
			ext := gopacket.Payload{byte(layers.IPProtocolIPv6Destination), 0, 1, 4, 0, 0, 0, 0,
				byte(f.Proto), 0, 1, 4, 0, 0, 0, 0}
			ls = append(ls, ext)
		}
	} else {
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: f.Proto, SrcIP: f.Src.AsSlice(), DstIP: f.Dst.AsSlice()}
		if f.IPv4Options {
			// Record Route with room for one address, then End of Options.
			ip.Options = []layers.IPv4Option{{OptionType: 7, OptionLength: 7, OptionData: []byte{4, 0, 0, 0, 0}}, {OptionType: 0}}
		}
		ls, netLayer = append(ls, ip), ip
	}
	switch f.Proto {
	case layers.IPProtocolTCP:
		t := &layers.TCP{SrcPort: layers.TCPPort(f.SrcPort), DstPort: layers.TCPPort(f.DstPort), DataOffset: 5, Window: 512,
			Seq: f.Seq, Ack: f.Ack,
			FIN: f.TCPFlags&0x01 != 0, SYN: f.TCPFlags&0x02 != 0, RST: f.TCPFlags&0x04 != 0, PSH: f.TCPFlags&0x08 != 0,
			ACK: f.TCPFlags&0x10 != 0, URG: f.TCPFlags&0x20 != 0, ECE: f.TCPFlags&0x40 != 0, CWR: f.TCPFlags&0x80 != 0,
			NS: f.TCPFlags&0x100 != 0}
		if f.ZeroWindow {
			t.Window = 0
		}
		t.SetNetworkLayerForChecksum(netLayer)
		ls = append(ls, t)
	case layers.IPProtocolUDP:
		u := &layers.UDP{SrcPort: layers.UDPPort(f.SrcPort), DstPort: layers.UDPPort(f.DstPort)}
		u.SetNetworkLayerForChecksum(netLayer)
		ls = append(ls, u)
	case layers.IPProtocolICMPv4:
		ls = append(ls, &layers.ICMPv4{TypeCode: layers.ICMPv4TypeCode(f.DstPort), Id: 1})
	case layers.IPProtocolICMPv6:
		c := &layers.ICMPv6{TypeCode: layers.ICMPv6TypeCode(f.DstPort)}
		c.SetNetworkLayerForChecksum(netLayer)
		// gopacket's ICMPv6 layer is the 4-byte header; the echo id/seq
		// are part of the payload.
		ls = append(ls, c)
	default:
		return nil, fmt.Errorf("trafficgen: protocol %v not supported", f.Proto)
	}
	ls = append(ls, gopacket.Payload(make([]byte, f.Payload)))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		return nil, fmt.Errorf("trafficgen: build packet: %w", err)
	}
	return append([]byte(nil), buf.Bytes()...), nil
}

// Ports returns the ports a flow probe reports for f: for ICMP and ICMPv6
// the source port is 0 and the destination port type<<8|code.
func (f Flow) Ports() (src, dst uint16) {
	if f.Proto == layers.IPProtocolICMPv4 || f.Proto == layers.IPProtocolICMPv6 {
		return 0, f.DstPort
	}
	return f.SrcPort, f.DstPort
}

// Built is a frame, ready to send Packets times, and what a flow probe
// must count of it: the flow (Flow's addresses, ports, protocol and
// VLAN), its bytes per frame and the rest of its key. For a plain flow
// that is Flow itself; for an encapsulated one (BuildEncap) it depends
// on how the probe looks at encapsulations.
type Built struct {
	Flow
	Frame  []byte
	L3     int    // IP header + payload of one frame (octetDeltaCount)
	L2     int    // octets of one frame counted as layer 2: the frame's, or a stripped mirror's inner frame's
	Extras Extras // zero for a plain frame
}

// Build builds every flow of mix, with Packets multiplied by scale.
func Build(mix []Flow, srcMAC, dstMAC net.HardwareAddr, scale int) ([]Built, error) {
	out := make([]Built, len(mix))
	for i, f := range mix {
		frame, l3, err := f.Frame(srcMAC, dstMAC)
		if err != nil {
			return nil, err
		}
		f.Packets *= scale
		out[i] = Built{Flow: f, Frame: frame, L3: l3, L2: len(frame)}
	}
	return out, nil
}

// Sender writes raw frames out of one interface.
type Sender struct {
	fd int
}

// NewSender opens an AF_PACKET socket on ifindex in the calling thread's
// network namespace.
func NewSender(ifindex int) (*Sender, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("AF_PACKET socket (needs CAP_NET_RAW): %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifindex}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind AF_PACKET socket to ifindex %d: %w", ifindex, err)
	}
	return &Sender{fd: fd}, nil
}

// Send writes one frame; it blocks rather than drop when the device queue
// is full, so every frame the caller counts was handed to the link.
func (s *Sender) Send(frame []byte) error {
	for {
		_, err := unix.Write(s.fd, frame)
		if err == unix.ENOBUFS || err == unix.EAGAIN {
			continue
		}
		if err != nil {
			return fmt.Errorf("send frame: %w", err)
		}
		return nil
	}
}

// SendAll sends every flow's Packets frames, round-robin across the flows
// as they would mix on a real link (flows marked Last after all others),
// and returns how many it sent.
func (s *Sender) SendAll(flows []Built) (int, error) {
	sent := 0
	for _, last := range []bool{false, true} {
		n, err := s.sendRound(flows, last)
		sent += n
		if err != nil {
			return sent, err
		}
	}
	return sent, nil
}

func (s *Sender) sendRound(flows []Built, last bool) (int, error) {
	left := make([]int, len(flows))
	for i, f := range flows {
		if f.Last == last {
			left[i] = f.Packets
		}
	}
	sent := 0
	for more := true; more; {
		more = false
		for i, f := range flows {
			if left[i] == 0 {
				continue
			}
			if err := s.Send(f.Frame); err != nil {
				return sent, err
			}
			sent++
			left[i]--
			more = more || left[i] > 0
		}
	}
	return sent, nil
}

// Close closes the socket.
func (s *Sender) Close() error { return unix.Close(s.fd) }

// SendFrom sends frames once from ifindex, opening the socket inside in
// (a network namespace: testnet.Pair.In bound to one side).
func SendFrom(in func(func() error) error, ifindex int, frames []Built) error {
	return in(func() error {
		s, err := NewSender(ifindex)
		if err != nil {
			return err
		}
		defer s.Close()
		_, err = s.SendAll(frames)
		return err
	})
}

// Mix is the default mix of flows used by the tests and the demo: IPv4 and
// IPv6; a TCP conversation with handshake, data and FIN; UDP of several
// sizes; ICMP and ICMPv6; 802.1Q and QinQ tagged flows; IPv4 options and
// IPv6 extension headers. Addresses come from the benchmarking and
// documentation ranges only.
func Mix() []Flow {
	a4, b4 := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
	c4 := netip.MustParseAddr("198.19.1.10")
	a6, b6 := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	const syn, ack, psh, fin = 0x02, 0x10, 0x08, 0x01
	return []Flow{
		// TCP conversation, client side: SYN, ACK, data, FIN.
		{Src: a4, Dst: b4, Proto: layers.IPProtocolTCP, SrcPort: 40001, DstPort: 443, TCPFlags: syn, Packets: 1},
		{Src: a4, Dst: b4, Proto: layers.IPProtocolTCP, SrcPort: 40001, DstPort: 443, TCPFlags: ack | psh, Payload: 1200, Packets: 400},
		{Src: a4, Dst: b4, Proto: layers.IPProtocolTCP, SrcPort: 40001, DstPort: 443, TCPFlags: fin | ack, Packets: 1, Last: true},
		// ...and the server side.
		{Src: b4, Dst: a4, Proto: layers.IPProtocolTCP, SrcPort: 443, DstPort: 40001, TCPFlags: syn | ack, Packets: 1},
		{Src: b4, Dst: a4, Proto: layers.IPProtocolTCP, SrcPort: 443, DstPort: 40001, TCPFlags: ack, Packets: 200},
		{Src: b4, Dst: a4, Proto: layers.IPProtocolTCP, SrcPort: 443, DstPort: 40001, TCPFlags: fin | ack, Packets: 1, Last: true},
		// A long-lived TCP flow with no end.
		{Src: a4, Dst: c4, Proto: layers.IPProtocolTCP, SrcPort: 40002, DstPort: 22, TCPFlags: ack | psh, Payload: 64, Packets: 300},
		{Src: a4, Dst: b4, Proto: layers.IPProtocolUDP, SrcPort: 5353, DstPort: 53, Payload: 33, Packets: 1000},
		{Src: a4, Dst: b4, Proto: layers.IPProtocolUDP, SrcPort: 9000, DstPort: 9001, Payload: 1472, Packets: 300},
		{Src: a4, Dst: b4, Proto: layers.IPProtocolICMPv4, DstPort: 8 << 8, Payload: 56, Packets: 10},
		{Src: a4, Dst: b4, Proto: layers.IPProtocolICMPv4, DstPort: 3<<8 | 3, Payload: 28, Packets: 2},
		{Src: a4, Dst: b4, Proto: layers.IPProtocolUDP, SrcPort: 161, DstPort: 162, VLAN: 42, Payload: 90, Packets: 77},
		{Src: a4, Dst: c4, Proto: layers.IPProtocolUDP, SrcPort: 5000, DstPort: 5001, VLAN: 300, InnerVLAN: 7, Payload: 120, Packets: 50},
		{Src: a4, Dst: c4, Proto: layers.IPProtocolUDP, SrcPort: 514, DstPort: 514, IPv4Options: true, Payload: 200, Packets: 25},
		{Src: a6, Dst: b6, Proto: layers.IPProtocolTCP, SrcPort: 50000, DstPort: 80, TCPFlags: syn, Packets: 1},
		{Src: a6, Dst: b6, Proto: layers.IPProtocolTCP, SrcPort: 50000, DstPort: 80, TCPFlags: ack, Payload: 10, Packets: 3},
		{Src: a6, Dst: b6, Proto: layers.IPProtocolTCP, SrcPort: 50000, DstPort: 80, TCPFlags: fin | ack, Packets: 1, Last: true},
		{Src: a6, Dst: b6, Proto: layers.IPProtocolUDP, SrcPort: 4500, DstPort: 4500, Payload: 1400, Packets: 250},
		{Src: a6, Dst: b6, Proto: layers.IPProtocolUDP, SrcPort: 547, DstPort: 546, IPv6Ext: true, Payload: 100, Packets: 40},
		{Src: a6, Dst: b6, Proto: layers.IPProtocolICMPv6, DstPort: 128 << 8, Payload: 60, Packets: 20},
	}
}

// Junk is a frame that must not become a flow: not IP, or malformed.
type Junk struct {
	Name      string
	Frame     []byte
	Malformed bool // counted as malformed (else as non-IP)
	Packets   int
}

// JunkMix returns non-IP and malformed frames to send alongside Mix.
func JunkMix(srcMAC, dstMAC net.HardwareAddr) []Junk {
	eth := func(et uint16, body ...byte) []byte {
		f := append(append(append([]byte{}, dstMAC...), srcMAC...), byte(et>>8), byte(et))
		f = append(f, body...)
		for len(f) < 60 {
			f = append(f, 0)
		}
		return f
	}
	ipv4 := func(verIHL byte, totLen uint16) []byte {
		return eth(0x0800, verIHL, 0, byte(totLen>>8), byte(totLen), 0, 0, 0, 0, 64, 17, 0, 0,
			198, 18, 0, 1, 198, 18, 0, 2)
	}
	return []Junk{
		{Name: "arp", Frame: eth(0x0806, 0, 1, 8, 0, 6, 4, 0, 1), Packets: 5},
		{Name: "lldp", Frame: eth(0x88cc, 2, 7, 4), Packets: 3},
		{Name: "ipv4 ihl 4", Frame: ipv4(0x44, 20), Malformed: true, Packets: 4},
		{Name: "ipv4 length past frame", Frame: ipv4(0x45, 1400), Malformed: true, Packets: 6},
		{Name: "version 6 in ipv4 ethertype", Frame: ipv4(0x65, 20), Malformed: true, Packets: 2},
	}
}

// RoundMix is n flows (distinct by source port) of packets frames each,
// sent again round after round by tests that restart or kill the probe
// under traffic: UDP and TCP (every fifth), IPv4 and IPv6 (every third),
// payloads of 40 to 239 bytes.
func RoundMix(n, packets int) []Flow {
	mix := make([]Flow, 0, n)
	for i := range n {
		f := Flow{Src: netip.AddrFrom4([4]byte{198, 18, 1, byte(i)}), Dst: netip.MustParseAddr("198.19.0.1"),
			Proto: layers.IPProtocolUDP, SrcPort: uint16(10000 + i), DstPort: 53, Payload: 40 + i%200, Packets: packets}
		if i%3 == 0 {
			f.Src, f.Dst = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 1, 15: byte(i)}), netip.MustParseAddr("2001:db8::53")
		}
		if i%5 == 0 {
			f.Proto, f.DstPort, f.TCPFlags = layers.IPProtocolTCP, 443, 0x10
		}
		mix = append(mix, f)
	}
	return mix
}

package bpf

import (
	"bytes"
	"encoding/binary"
	"encoding/xml"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// tshark as the second opinion on frames: the real captures and the test
// frames built by hand are dissected by tshark, and the flow the spec
// (docs/datapath.md, issue #13) makes of each frame is derived from
// tshark's layers, not from our own parsing. The program must agree.

// maxTunnelDepth is MAX_TUNNEL_DEPTH: IP tunnels nested deeper than this
// are malformed (tunnel_too_deep). vxlan-triple-v2.pcap needs 3.
const maxTunnelDepth = 3

// pdmlField and pdmlProto are tshark's PDML (-T pdml) elements.
type pdmlField struct {
	Name   string      `xml:"name,attr"`
	Show   string      `xml:"show,attr"`
	Value  string      `xml:"value,attr"`
	Fields []pdmlField `xml:"field"`
}

type pdmlProto struct {
	Name   string      `xml:"name,attr"`
	Pos    int         `xml:"pos,attr"`
	Size   int         `xml:"size,attr"`
	Fields []pdmlField `xml:"field"`
	// Protocols dissected inside this one: IPv6 extension headers, read
	// as part of the IPv6 layer, and an ICMP error's quoted header, not
	// read (it is no layer of the frame).
	Protos []pdmlProto `xml:"proto"`
}

// layer is one protocol of a frame as tshark dissected it, its fields
// flattened (first occurrence of each name).
type layer struct {
	name string
	pos  int
	show map[string]string
	val  map[string]string
}

func (l layer) has(f string) bool { _, ok := l.show[f]; return ok }

// num is a field's displayed value as a number (decimal or 0x hex).
func (l layer) num(t testing.TB, f string) uint64 {
	t.Helper()
	s, ok := l.show[f]
	if !ok {
		t.Fatalf("tshark: %s layer at %d has no field %s", l.name, l.pos, f)
	}
	n, err := strconv.ParseUint(s, 0, 64)
	if err != nil {
		t.Fatalf("tshark: %s = %q: %v", f, s, err)
	}
	return n
}

// hex is a field's raw value (the masked bits, shifted down) in hex.
func (l layer) hex(t testing.TB, f string) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(l.val[f], 16, 64)
	if err != nil {
		t.Fatalf("tshark: %s value %q: %v", f, l.val[f], err)
	}
	return n
}

func flatten(fs []pdmlField, l *layer) {
	for _, f := range fs {
		if _, ok := l.show[f.Name]; !ok {
			l.show[f.Name], l.val[f.Name] = f.Show, f.Value
		}
		flatten(f.Fields, l)
	}
}

// tsharkFrame is a frame and tshark's layers of it.
type tsharkFrame struct {
	data   []byte
	layers []layer
}

// dissect runs tshark once over frames (written to a pcap) and returns
// their layers. IP reassembly is off: each frame is dissected alone, as
// the program sees it. decodeAs are tshark -d arguments.
func dissect(t testing.TB, frames [][]byte, decodeAs []string) []tsharkFrame {
	t.Helper()
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Skip("tshark not installed")
	}
	file := filepath.Join(t.TempDir(), "frames.pcap")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	for _, fr := range frames {
		if err := w.WritePacket(gopacket.CaptureInfo{CaptureLength: len(fr), Length: len(fr)}, fr); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	args := []string{"-n", "-r", file, "-T", "pdml", "-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE"}
	for _, d := range decodeAs {
		args = append(args, "-d", d)
	}
	cmd := exec.Command("tshark", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark %v: %v: %s", args, err, stderr.String())
	}
	dec := xml.NewDecoder(bytes.NewReader(out))
	var res []tsharkFrame
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		se, ok := tok.(xml.StartElement)
		if !ok || se.Name.Local != "packet" {
			continue
		}
		var p struct {
			Protos []pdmlProto `xml:"proto"`
		}
		if err := dec.DecodeElement(&p, &se); err != nil {
			t.Fatalf("tshark's PDML: %v", err)
		}
		if len(res) >= len(frames) {
			t.Fatalf("tshark dissected more frames than the %d written", len(frames))
		}
		tf := tsharkFrame{data: frames[len(res)]}
		for _, pr := range p.Protos {
			if pr.Name == "geninfo" || pr.Name == "frame" || strings.HasPrefix(pr.Name, "_ws.") || pr.Name == "fake-field-wrapper" {
				continue
			}
			l := layer{name: pr.Name, pos: pr.Pos, show: map[string]string{}, val: map[string]string{}}
			flatten(pr.Fields, &l)
			if l.name == "ipv6" {
				// Extension headers, nested: "next" is what the last
				// one names.
				l.show["next"] = l.show["ipv6.nxt"]
				for _, x := range pr.Protos {
					if strings.HasPrefix(x.Name, "ipv6.") {
						flatten(x.Fields, &l)
						for _, f := range x.Fields {
							if strings.HasSuffix(f.Name, ".nxt") {
								l.show["next"] = f.Show
							}
						}
					}
				}
			}
			tf.layers = append(tf.layers, l)
		}
		res = append(res, tf)
	}
	if len(res) != len(frames) {
		t.Fatalf("tshark dissected %d frames of %d", len(res), len(frames))
	}
	return res
}

// decodeAsFor makes tshark dissect the UDP ports of cfgs as the program
// is told to.
func decodeAsFor(cfgs ...Config) []string {
	seen := map[string]bool{}
	var args []string
	add := func(port uint16, proto string) {
		a := fmt.Sprintf("udp.port==%d,%s", port, proto)
		if !seen[a] {
			seen[a] = true
			args = append(args, a)
		}
	}
	for _, c := range cfgs {
		c.Mirrors = slices.Clone(c.Mirrors)
		if err := c.setDefaults(); err != nil {
			panic(err)
		}
		for _, p := range c.VXLANPorts {
			add(p, "vxlan")
		}
		for _, p := range c.GenevePorts {
			add(p, "geneve")
		}
		for _, m := range c.Mirrors {
			switch m.Type {
			case MirrorVXLAN:
				add(m.Port, "vxlan")
			case MirrorGeneve:
				add(m.Port, "geneve")
			case MirrorTZSP:
				add(m.Port, "tzsp")
			}
		}
	}
	return args
}

// specFlow is what the spec makes of one frame: a flow (the key, and the
// value this one frame adds), or non-IP, or malformed under a reason.
type specFlow struct {
	key       FlowKey
	val       FlowValue
	nonIP     bool
	malformed string
	fragment  bool // a non-first IP fragment (Stats.Fragments)
}

// specOf applies the spec to tshark's layers of one frame. Where tshark's
// dissection and the spec part ways, the spec decides, from the bytes:
//   - IP fragments: tshark (reassembly off) still dissects what a first
//     fragment holds (GRE, the GTP-U header, the inner packet's start);
//     the spec counts any fragmented outer packet as the outer flow
//     without looking inside: a first fragment with its ports, as a plain
//     one, later fragments with ports 0.
//   - An ICMP error quotes an IP header, which tshark dissects as layers
//     (nested in the ICMP layer); the program counts the ICMP packet.
//   - UDP port 2152 whose payload tshark refuses as GTP (not version 1,
//     or GTP'): not GTP-U, the UDP flow, as tshark has it.
func specOf(t testing.TB, f tsharkFrame, cfg Config) specFlow {
	t.Helper()
	cfg.Mirrors = slices.Clone(cfg.Mirrors)
	if err := cfg.setDefaults(); err != nil {
		t.Fatal(err)
	}
	ls := f.layers
	var r specFlow
	r.key.InIf = testIfindex
	r.val.Packets = 1
	r.val.L2Bytes = uint64(len(f.data))
	if len(ls) == 0 || ls[0].name != "eth" {
		t.Fatalf("frame does not start with Ethernet: %v", names(ls))
	}

	// A mirror encapsulation, at the outermost layer only.
	acct := 0
	if i, mt, id, end, ok := mirrorOf(t, ls, cfg); ok {
		acct = i
		r.key.MirrorType, r.key.ObservationPointId = uint8(mt), id
		r.val.L2Bytes = uint64(end - ls[i].pos)
	}
	if cfg.MACs {
		copy(r.key.SrcMac[:], mac(t, ls[acct].show["eth.src"]))
		copy(r.key.DstMac[:], mac(t, ls[acct].show["eth.dst"]))
	}
	j := acct + 1
	if j < len(ls) && ls[j].name == "vlan" {
		r.key.VlanId = uint16(ls[j].num(t, "vlan.id"))
	}
	if j < len(ls) && ls[j].name == "ieee8021ad" { // an 802.1ad S-tag
		r.key.VlanId = uint16(ls[j].num(t, "ieee8021ad.id"))
	}
	if isTag := func(i int) bool { return i < len(ls) && (ls[i].name == "vlan" || ls[i].name == "ieee8021ad") }; isTag(j) && isTag(j+1) && isTag(j+2) {
		r.nonIP = true // a third tag is not followed
		return r
	}

	ipTunnel, depth, nlabels := false, 0, 0
	for ; j < len(ls); j++ {
		l := ls[j]
		switch l.name {
		case "vlan", "ieee8021ad", "eth", "ethertype", "ppp":
			continue // tags of the accounted frame are read above; a tunnel's inner frame is skipped
		case "mpls":
			if nlabels < MaxMPLSLabels {
				r.val.MplsLabels[nlabels] = binary.BigEndian.Uint32(f.data[l.pos:])
			}
			if nlabels == 0 && !ipTunnel && r.key.TunnelType == 0 {
				r.key.TunnelType, r.key.TunnelId = uint8(TunnelMPLS), uint32(l.num(t, "mpls.label"))
			}
			nlabels++
			continue
		case "pppoes", "pppoe":
			if !ipTunnel {
				r.key.TunnelType, r.key.TunnelId = uint8(TunnelPPPoE), uint32(l.num(t, "pppoe.session_id"))
			}
			continue
		case "ip", "ipv6":
		default:
			r.nonIP = true // ARP, a pseudowire control word, PPP LCP ...
			return r
		}

		// An IP packet: the flow's, or an IP tunnel's outer one.
		var next layer
		if j+1 < len(ls) {
			next = ls[j+1]
		}
		src, dst, proto, frag, first := ipOf(t, l)
		tunnel := func(typ TunnelType, id uint32) bool {
			depth++
			if depth > maxTunnelDepth {
				r.malformed = "tunnel_too_deep"
				return false
			}
			ipTunnel = true
			r.key.TunnelType, r.key.TunnelId = uint8(typ), id
			r.val.TunnelSrcAddr, r.val.TunnelDstAddr = src.As16(), dst.As16()
			return true
		}
		noPorts := frag && !first
		if !frag && !cfg.TunnelsOuter {
			switch next.name {
			case "ip", "ipv6": // IP-in-IP
				if !tunnel(TunnelIPIP, 0) {
					return r
				}
				continue
			case "gre":
				p := next.num(t, "gre.proto")
				if next.num(t, "gre.flags.version") == 0 && next.num(t, "gre.flags.routing") == 0 &&
					(p == 0x0800 || p == 0x86dd || p == 0x6558 || p == 0x8847) {
					var key uint64
					if next.has("gre.key") {
						key = next.num(t, "gre.key")
					}
					if !tunnel(TunnelGRE, uint32(key)) {
						return r
					}
					j++
					continue
				}
			case "udp":
				dport := uint16(next.num(t, "udp.dstport"))
				var after layer
				if j+2 < len(ls) {
					after = ls[j+2]
				}
				switch {
				case isMirrorPort(cfg, dport):
					// a mirror's port is not a tunnel's
				case slices.Contains(cfg.VXLANPorts, dport) && after.name == "vxlan":
					if !tunnel(TunnelVXLAN, uint32(after.num(t, "vxlan.vni"))) {
						return r
					}
					j += 2
					continue
				case slices.Contains(cfg.GenevePorts, dport) && after.name == "geneve":
					if !tunnel(TunnelGeneve, uint32(after.num(t, "geneve.vni"))) {
						return r
					}
					j += 2
					continue
				case dport == PortGTPU && after.name == "gtp":
					if after.num(t, "gtp.message") == 255 && j+3 < len(ls) && (ls[j+3].name == "ip" || ls[j+3].name == "ipv6") {
						if !tunnel(TunnelGTPU, uint32(after.num(t, "gtp.teid"))) {
							return r
						}
						j += 2
						continue
					}
				}
			}
		}

		// The flow's IP packet.
		r.key.Proto = uint8(proto)
		if l.name == "ip" {
			r.val.Bytes = l.num(t, "ip.len")
			r.val.IpTos = uint8(l.hex(t, "ip.dsfield"))
		} else {
			r.val.Bytes = 40 + l.num(t, "ipv6.plen")
			r.val.IpTos = uint8(l.hex(t, "ipv6.tclass"))
		}
		r.key.SrcAddr, r.key.DstAddr = src.As16(), dst.As16()
		r.fragment = frag && !first
		if noPorts {
			return r
		}
		switch next.name {
		case "tcp":
			r.key.SrcPort, r.key.DstPort = uint16(next.num(t, "tcp.srcport")), uint16(next.num(t, "tcp.dstport"))
			r.val.TcpFlags = uint32(next.num(t, "tcp.flags") & 0xfff)
		case "udp", "sctp":
			r.key.SrcPort, r.key.DstPort = uint16(next.num(t, next.name+".srcport")), uint16(next.num(t, next.name+".dstport"))
		case "icmp", "icmpv6":
			r.key.DstPort = uint16(next.num(t, next.name+".type")<<8 | next.num(t, next.name+".code"))
		}
		return r
	}
	r.nonIP = true
	return r
}

// ipOf reads an ip or ipv6 layer: addresses (IPv4 as IPv4), the protocol
// of the key, and whether the packet is a fragment (first: offset 0).
func ipOf(t testing.TB, l layer) (src, dst netip.Addr, proto uint64, frag, first bool) {
	t.Helper()
	if l.name == "ip" {
		src, dst = netip.MustParseAddr(l.show["ip.src"]), netip.MustParseAddr(l.show["ip.dst"])
		off := l.num(t, "ip.frag_offset")
		return src, dst, l.num(t, "ip.proto"), off != 0 || l.num(t, "ip.flags.mf") != 0, off == 0
	}
	src, dst = netip.MustParseAddr(l.show["ipv6.src"]), netip.MustParseAddr(l.show["ipv6.dst"])
	proto = l.num(t, "next")
	if l.has("ipv6.fraghdr.offset") {
		off := l.num(t, "ipv6.fraghdr.offset")
		frag, first = off != 0 || l.num(t, "ipv6.fraghdr.more") != 0, off == 0
		if !first {
			proto = l.num(t, "ipv6.fraghdr.nxt")
		}
	}
	return src, dst, proto, frag, first
}

// ipEnd is where an ip or ipv6 layer's packet ends in the frame.
func ipEnd(t testing.TB, l layer) int {
	if l.name == "ip" {
		return l.pos + int(l.num(t, "ip.len"))
	}
	return l.pos + 40 + int(l.num(t, "ipv6.plen"))
}

// mirrorOf finds a configured mirror encapsulation at the outermost
// layer: Ethernet, VLAN tags, IP (not a fragment), then GRE+ERSPAN or UDP
// to a mirror port. It returns the inner Ethernet layer's index, the
// mirror type and session, and where the outer IP packet (so the inner
// frame) ends.
func mirrorOf(t testing.TB, ls []layer, cfg Config) (inner int, typ MirrorType, id uint32, end int, ok bool) {
	i := 1
	for i < len(ls) && (ls[i].name == "vlan" || ls[i].name == "ieee8021ad" || ls[i].name == "ethertype") {
		i++
	}
	if i+2 >= len(ls) || (ls[i].name != "ip" && ls[i].name != "ipv6") {
		return
	}
	if _, _, _, frag, _ := ipOf(t, ls[i]); frag {
		return
	}
	end = ipEnd(t, ls[i])
	carrier, hdr := ls[i+1], ls[i+2]
	inner = i + 3
	if inner >= len(ls) || ls[inner].name != "eth" {
		return
	}
	for _, m := range cfg.Mirrors {
		switch {
		case m.Type == MirrorERSPAN && carrier.name == "gre" && hdr.name == "erspan":
			if hdr.has("erspan.spanid") {
				id = uint32(hdr.num(t, "erspan.spanid"))
			}
			return inner, m.Type, id, end, true
		case carrier.name == "udp" && uint16(carrier.num(t, "udp.dstport")) == m.Port:
			switch {
			case m.Type == MirrorVXLAN && hdr.name == "vxlan":
				return inner, m.Type, uint32(hdr.num(t, "vxlan.vni")), end, true
			case m.Type == MirrorGeneve && hdr.name == "geneve":
				return inner, m.Type, uint32(hdr.num(t, "geneve.vni")), end, true
			case m.Type == MirrorTZSP && hdr.name == "tzsp":
				return inner, m.Type, 0, end, true
			}
		}
	}
	return
}

// isTunnelPort says whether UDP to port is taken as a tunnel.
func isTunnelPort(cfg Config, port uint16) bool {
	return !isMirrorPort(cfg, port) && (slices.Contains(cfg.VXLANPorts, port) || slices.Contains(cfg.GenevePorts, port) || port == PortGTPU)
}

func isMirrorPort(cfg Config, port uint16) bool {
	for _, m := range cfg.Mirrors {
		if m.Type != MirrorERSPAN && m.Port == port {
			return true
		}
	}
	return false
}

func mac(t testing.TB, s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		t.Fatalf("tshark MAC %q: %v", s, err)
	}
	return m
}

func names(ls []layer) string {
	var n []string
	for _, l := range ls {
		n = append(n, l.name)
	}
	return strings.Join(n, ":")
}

// specTable is the flow table, counters and malformed reasons the spec
// gives for frames, from tshark's dissection.
type specTable struct {
	flows     map[FlowKey]FlowValue
	nonIP     uint64
	malformed map[string]uint64
	fragments uint64
}

func specFlows(t testing.TB, frames []tsharkFrame, cfg Config) specTable {
	t.Helper()
	st := specTable{flows: map[FlowKey]FlowValue{}, malformed: map[string]uint64{}}
	for _, f := range frames {
		s := specOf(t, f, cfg)
		switch {
		case s.malformed != "":
			st.malformed[s.malformed]++
			continue
		case s.nonIP:
			st.nonIP++
			continue
		}
		if s.fragment {
			st.fragments++
		}
		v, ok := st.flows[s.key]
		if !ok {
			v = s.val // the first packet's TOS, tunnel endpoints, labels
			v.Packets, v.Bytes, v.L2Bytes, v.TcpFlags = 0, 0, 0, 0
		}
		v.Packets++
		v.Bytes += s.val.Bytes
		v.L2Bytes += s.val.L2Bytes
		v.TcpFlags |= s.val.TcpFlags
		st.flows[s.key] = v
	}
	return st
}

// compareTables reports every difference between the program's drained
// table and the one the spec gives from tshark's view.
func compareTables(t *testing.T, got, want map[FlowKey]FlowValue) {
	t.Helper()
	got = maps(got)
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("tshark's flow %s (%d packets, %d L3 bytes, %d L2 bytes) missing", keyString(k), w.Packets, w.Bytes, w.L2Bytes)
			continue
		}
		delete(got, k)
		if g.Packets != w.Packets || g.Bytes != w.Bytes || g.L2Bytes != w.L2Bytes || g.TcpFlags != w.TcpFlags || g.IpTos != w.IpTos {
			t.Errorf("flow %s: %d packets, %d L3 bytes, %d L2 bytes, flags %#x, tos %#x; tshark %d, %d, %d, %#x, %#x",
				keyString(k), g.Packets, g.Bytes, g.L2Bytes, g.TcpFlags, g.IpTos, w.Packets, w.Bytes, w.L2Bytes, w.TcpFlags, w.IpTos)
		}
		if g.TunnelSrcAddr != w.TunnelSrcAddr || g.TunnelDstAddr != w.TunnelDstAddr || g.MplsLabels != w.MplsLabels {
			t.Errorf("flow %s: %s; tshark %s", keyString(k), encapString(g.TunnelSrcAddr, g.TunnelDstAddr, g.MplsLabels),
				encapString(w.TunnelSrcAddr, w.TunnelDstAddr, w.MplsLabels))
		}
	}
	for k, g := range got {
		t.Errorf("flow %s (%d packets, %d L3 bytes) not in tshark's", keyString(k), g.Packets, g.Bytes)
	}
}

func maps(m map[FlowKey]FlowValue) map[FlowKey]FlowValue {
	c := make(map[FlowKey]FlowValue, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

package bpf

import (
	"errors"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gopacket/gopacket/pcapgo"
)

// Real captures (zeek's test traces, in the shared captures directory next
// to the repository, not in it) run frame by frame through the program and
// the drained table compared with what tshark makes of the same frames.

// capturesDir is ../shared/captures from the repository root, or
// $XDPFLOW_CAPTURES (a git worktree elsewhere); tests skip without it.
func capturesDir(t testing.TB) string {
	dir := os.Getenv("XDPFLOW_CAPTURES")
	if dir == "" {
		dir = filepath.Join("..", "..", "shared", "captures")
	}
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("real captures not available (%v): a plain clone has no ../shared/captures; set XDPFLOW_CAPTURES to their directory", err)
	}
	return dir
}

// tsharkFlows is the flow table tshark implies: per key, from the innermost
// IP layer of each frame, packets, L3 bytes (ip.len, or 40 + ipv6.plen) and
// frame bytes. The VLAN id is the outer tag's.
func tsharkFlows(t *testing.T, file string) map[FlowKey]FlowValue {
	t.Helper()
	fields := []string{"frame.len", "frame.protocols", "vlan.id",
		"ip.src", "ip.dst", "ip.proto", "ip.len", "ip.frag_offset",
		"ipv6.src", "ipv6.dst", "ipv6.nxt", "ipv6.plen",
		"tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport", "sctp.srcport", "sctp.dstport",
		"icmp.type", "icmp.code", "icmpv6.type", "icmpv6.code"}
	args := []string{"-r", file, "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,", "-E", "separator=|"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	out, err := exec.Command("tshark", args...).Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	flows := map[FlowKey]FlowValue{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		v := map[string][]string{}
		for i, s := range strings.Split(line, "|") {
			if s != "" {
				v[fields[i]] = strings.Split(s, ",")
			}
		}
		first := func(f string) string { return v[f][0] }
		last := func(f string) string { return v[f][len(v[f])-1] }
		num := func(s string) uint64 {
			n, err := strconv.ParseUint(s, 0, 32)
			if err != nil {
				t.Fatalf("%s: %q: %v", file, line, err)
			}
			return n
		}
		// The innermost IP layer: the last ip or ipv6 in the protocol
		// stack (no ICMP errors in these captures: their quoted header
		// would be the innermost).
		ver := 0
		for _, p := range strings.Split(first("frame.protocols"), ":") {
			switch p {
			case "ip":
				ver = 4
			case "ipv6":
				ver = 6
			}
		}
		if ver == 0 {
			t.Fatalf("%s: frame without IP: %q", file, line)
		}
		k := FlowKey{InIf: testIfindex, IpVersion: uint8(ver)}
		if len(v["vlan.id"]) > 0 {
			k.VlanId = uint16(num(first("vlan.id")))
		}
		var l3 uint64
		if ver == 4 {
			k.SrcAddr = netip.AddrFrom4(netip.MustParseAddr(last("ip.src")).As4()).As16()
			k.DstAddr = netip.AddrFrom4(netip.MustParseAddr(last("ip.dst")).As4()).As16()
			k.Proto = uint8(num(last("ip.proto")))
			l3 = num(last("ip.len"))
			if num(last("ip.frag_offset")) != 0 {
				t.Fatalf("%s: fragments not handled here", file)
			}
		} else {
			k.SrcAddr = netip.MustParseAddr(last("ipv6.src")).As16()
			k.DstAddr = netip.MustParseAddr(last("ipv6.dst")).As16()
			k.Proto = uint8(num(last("ipv6.nxt"))) // no extension headers in these captures
			l3 = 40 + num(last("ipv6.plen"))
		}
		for _, p := range []string{"tcp", "udp", "sctp"} {
			if len(v[p+".srcport"]) > 0 {
				k.SrcPort = uint16(num(last(p + ".srcport")))
				k.DstPort = uint16(num(last(p + ".dstport")))
			}
		}
		for _, p := range []string{"icmp", "icmpv6"} {
			if len(v[p+".type"]) > 0 {
				k.DstPort = uint16(num(last(p+".type"))<<8 | num(last(p+".code")))
			}
		}
		f := flows[k]
		f.Packets++
		f.Bytes += l3
		f.L2Bytes += num(first("frame.len"))
		flows[k] = f
	}
	return flows
}

func TestCapturesAgainstTshark(t *testing.T) {
	dir := capturesDir(t)
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Skip("tshark not installed")
	}
	for _, name := range []string{"mpls-in-vlan.pcap", "mixed-vlan-mpls.pcap", "pppoe-over-qinq.pcap"} {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(dir, name)
			f, err := os.Open(file)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			r, err := pcapgo.NewReader(f)
			if err != nil {
				t.Fatal(err)
			}
			d := load(t, Config{MaxFlows: 1024})
			var frames uint64
			for {
				data, ci, err := r.ReadPacketData()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if ci.CaptureLength != ci.Length {
					t.Fatalf("frame %d cut by the capture's snap length: %d of %d bytes", frames+1, ci.CaptureLength, ci.Length)
				}
				run(t, d.Program, data)
				frames++
			}
			// tsharkFlows has no tunnel ids (yet): compare the rest.
			got := map[FlowKey]FlowValue{}
			for k, v := range drainAll(t, d) {
				k.TunnelType, k.TunnelId = 0, 0
				got[k] = v
			}
			want := tsharkFlows(t, file)
			for k, w := range want {
				g, ok := got[k]
				if !ok {
					t.Errorf("tshark's flow %v (%d packets, %d L3 bytes) missing", k, w.Packets, w.Bytes)
					continue
				}
				delete(got, k)
				if g.Packets != w.Packets || g.Bytes != w.Bytes || g.L2Bytes != w.L2Bytes {
					t.Errorf("flow %v: %d packets, %d L3 bytes, %d L2 bytes; tshark %d, %d, %d",
						k, g.Packets, g.Bytes, g.L2Bytes, w.Packets, w.Bytes, w.L2Bytes)
				}
			}
			for k, g := range got {
				t.Errorf("flow %v (%d packets, %d L3 bytes) not in tshark's", k, g.Packets, g.Bytes)
			}
			st, err := d.Stats()
			if err != nil {
				t.Fatal(err)
			}
			if st.Packets != frames || st.FlowPackets != frames || st.NonIp != 0 || st.MalformedTotal() != 0 {
				t.Errorf("stats %+v: want all %d frames in flows", st, frames)
			}
			checkIdentity(t, st)
			t.Logf("%d frames, %d flows, all as tshark has them", frames, len(want))
		})
	}
}

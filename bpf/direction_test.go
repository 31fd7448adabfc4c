package bpf

import (
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket/layers"
)

// TestFlowDirection: with local networks, a new flow is marked ingress
// (into them) or egress (out of them); both ends local, or neither, is
// unknown; without local networks every flow is unknown.
func TestFlowDirection(t *testing.T) {
	local := []netip.Prefix{netip.MustParsePrefix("198.18.0.0/24"), netip.MustParsePrefix("2001:db8:1::/48")}
	cases := []struct {
		src, dst string
		want     uint8
	}{
		{"198.19.0.1", "198.18.0.5", 1},       // into the local /24
		{"198.18.0.5", "198.19.0.1", 2},       // out of it
		{"198.18.0.5", "198.18.0.6", 0},       // inside
		{"198.19.0.1", "198.19.0.2", 0},       // transit
		{"198.18.1.1", "198.18.0.255", 1},     // the /24's edge
		{"2001:db8:2::1", "2001:db8:1::5", 1}, // IPv6
		{"2001:db8:1:ffff::1", "2001:db8:2::1", 2},
	}
	for _, nets := range [][]netip.Prefix{local, nil} {
		d := load(t, Config{MaxFlows: 1024, LocalNets: nets})
		for _, c := range cases {
			src, dst := net.ParseIP(c.src), net.ParseIP(c.dst)
			var f []byte
			if src.To4() != nil {
				ip := ipv4(layers.IPProtocolUDP)
				ip.SrcIP, ip.DstIP = src, dst
				f = build(eth(layers.EthernetTypeIPv4), ip, udp(1, 2), payload(8))
			} else {
				ip := ipv6(layers.IPProtocolUDP)
				ip.SrcIP, ip.DstIP = src, dst
				f = build(eth(layers.EthernetTypeIPv6), ip, udp(1, 2), payload(8))
			}
			run(t, d.Program, f)
			run(t, d.Program, f) // an existing flow keeps its direction
		}
		got := drainAll(t, d)
		if len(got) != len(cases) {
			t.Fatalf("%d flows, want %d", len(got), len(cases))
		}
		for _, c := range cases {
			want := c.want
			if nets == nil {
				want = 0
			}
			found := false
			for k, v := range got {
				if k.Src() == netip.MustParseAddr(c.src) && k.Dst() == netip.MustParseAddr(c.dst) {
					found = true
					if v.FlowDirection != want || v.Packets != 2 {
						t.Errorf("local nets %v: %s > %s: direction %d (%d packets), want %d", nets, c.src, c.dst, v.FlowDirection, v.Packets, want)
					}
				}
			}
			if !found {
				t.Errorf("%s > %s not found", c.src, c.dst)
			}
		}
	}
}

package main

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/xdpflow/xdpflow/internal/testkit/flowcheck"
	"github.com/xdpflow/xdpflow/internal/testkit/testnet"
	"github.com/xdpflow/xdpflow/internal/testkit/trafficgen"
)

// TestJumbo: issue #13, a capture interface at MTU 9000 with the probe in
// its default --xdp-mode auto. veth refuses the plain program there, and
// takes its multi-buffer twin in native mode: the export counts every
// jumbo frame exactly (packets, L3 bytes, L2 bytes of the whole frame),
// and an 8,900-byte packet in VXLAN as its inner flow, keyed with the
// VNI. Where the driver
// refuses native mode anyway (here: veth with fewer receive queues than
// its peer's transmit queues), the probe says so in one warning line and
// counts the same in generic mode.
func TestJumbo(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opt     testnet.Options
		mode    string
		warning string // "" for none
	}{
		{"native", testnet.Options{MTU: 9000}, "native", ""},
		{"native refused", testnet.Options{MTU: 9000, QueueMismatch: true}, "generic", "too few queues for XDP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if os.Geteuid() != 0 {
				t.Fatal("the end-to-end test needs root (network namespaces, XDP): run `sudo make test`")
			}
			pair, err := testnet.NewPair(fmt.Sprintf("xfj%d", os.Getpid()%100000), tc.opt)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { pair.Close() })
			col := collector(t, pair)
			pr := startProbe(t, pair, "--xdp-mode", "auto", "--ipfix", col.URL(), "--pin-path", "", "--ipfix-enterprise-number", "32473")

			var mix []trafficgen.Flow
			a4, b4 := netip.MustParseAddr("198.18.9.1"), netip.MustParseAddr("198.18.9.2")
			a6, b6 := netip.MustParseAddr("2001:db8:9::1"), netip.MustParseAddr("2001:db8:9::2")
			for _, size := range []int{1514, 3500, 4096, 8928, 9014} {
				mix = append(mix,
					trafficgen.Flow{Src: a4, Dst: b4, Proto: layers.IPProtocolUDP, SrcPort: uint16(size), DstPort: 9000, Payload: size - 42, Packets: 40},
					trafficgen.Flow{Src: a4, Dst: b4, Proto: layers.IPProtocolTCP, SrcPort: uint16(size), DstPort: 9001, TCPFlags: 0x10, Payload: size - 54, Packets: 30},
					trafficgen.Flow{Src: a6, Dst: b6, Proto: layers.IPProtocolUDP, SrcPort: uint16(size), DstPort: 9002, Payload: size - 62, Packets: 20})
			}
			frames, err := trafficgen.Build(mix, pair.MACA, pair.MACB, 1)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range frames {
				if len(f.Frame) != int(f.SrcPort) {
					t.Fatalf("frame of %d bytes, want %d", len(f.Frame), f.SrcPort)
				}
			}
			// An 8,900-byte packet in VXLAN: the inner flow, its bytes the
			// inner packet's, its layer-2 octets the whole 8,964-byte frame.
			vx, err := trafficgen.BuildEncap([]trafficgen.EncapFlow{{Name: "jumbo in vxlan",
				Flow:   trafficgen.Flow{Src: a4, Dst: b4, Proto: layers.IPProtocolUDP, SrcPort: 8900, DstPort: 9003, Payload: 8900 - 28, Packets: 25},
				Encaps: []trafficgen.Encap{{Kind: trafficgen.EncapVXLAN, ID: 9000, Src: netip.MustParseAddr("198.19.9.1"), Dst: netip.MustParseAddr("198.19.9.2")}}}},
				pair.MACA, pair.MACB, trafficgen.View{})
			if err != nil {
				t.Fatal(err)
			}
			if vx[0].L3 != 8900 || len(vx[0].Frame) != 14+20+8+8+14+8900 {
				t.Fatalf("vxlan frame of %d bytes, inner packet %d", len(vx[0].Frame), vx[0].L3)
			}
			frames = append(frames, vx...)
			want := flowcheck.Sent(frames)
			send(t, pair, frames)
			time.Sleep(100 * time.Millisecond) // the veth delivers asynchronously
			pr.stop(t)
			time.Sleep(100 * time.Millisecond)

			log := pr.stderr.String()
			if !strings.Contains(log, "mode="+tc.mode) {
				t.Errorf("not attached in %s mode", tc.mode)
			}
			// veth hands XDP the VLAN tags it offloads: natively, the
			// device-bound variant (frags-aware too) is the one attached.
			if vm := strings.Contains(log, "vlan_metadata=true"); vm != (tc.mode == "native") {
				t.Errorf("VLAN-metadata program attached: %v, in %s mode", vm, tc.mode)
			}
			// Natively at MTU 9000, the multi-buffer twin; generic mode
			// takes the plain program.
			if mb := strings.Contains(log, "multi_buffer=true"); mb != (tc.mode == "native") {
				t.Errorf("multi-buffer program attached: %v, in %s mode", mb, tc.mode)
			}
			refused := strings.Count(log, "native XDP refused")
			for _, l := range strings.Split(log, "\n") {
				if strings.Contains(l, "level=WARN") || strings.Contains(l, "msg=attached") {
					t.Log(l)
				}
			}
			switch {
			case tc.warning == "" && refused != 0:
				t.Errorf("native mode refused at MTU 9000")
			case tc.warning != "" && (refused != 1 || !strings.Contains(log, tc.warning)):
				t.Errorf("%d warnings of native mode refused, want one saying %q", refused, tc.warning)
			}

			d := flowcheck.NewDecoder()
			d.Enterprise = pen
			got := flowcheck.Sums{}
			for i, m := range col.Stop() {
				recs, err := d.Decode(m)
				if err != nil {
					t.Errorf("message %d: %v", i, err)
				}
				for j := range recs {
					got.AddRecord(&recs[j])
				}
			}
			compare(t, "IPFIX (goflow2)", got, want)
			if t.Failed() {
				t.Logf("probe log:\n%s", log)
			}
		})
	}
}

package span

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func loadSet(t *testing.T, file string) (string, Features) {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	iface, fs, err := ParseEthtoolK(f)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return iface, fs
}

// The recorded sets: veth.txt is `ethtool -k` of a veth on this project's
// CI kernel (6.18); the others are written in the same format after the
// drivers' usual output, set to the cases that matter (see each name).
func TestCheckRecordedSets(t *testing.T) {
	type want struct {
		feature string
		fixed   bool
	}
	for _, tc := range []struct {
		file  string
		iface string
		want  []want
	}{
		{"veth.txt", "veth0", []want{{"rx-vlan-hw-parse", false}, {"rx-vlan-stag-hw-parse", false}}},
		// mlx5: LRO turned on by someone, rxvlan on (the default).
		{"mlx5.txt", "enp65s0f0np0", []want{{"rx-lro", false}, {"rx-vlan-hw-parse", false}}},
		// ixgbe-like with LRO forced on by the driver: cannot be changed.
		{"ixgbe-lro-fixed.txt", "enp3s0f1", []want{{"rx-lro", true}, {"rx-vlan-hw-parse", false}}},
		// virtio_net: host GRO (guest offloads) on, no VLAN offload at all.
		{"virtio_net.txt", "ens3", []want{{"rx-gro-hw", false}}},
		// i40e-like with rx-gro-hw on; rxvlan off but requested on: not a finding.
		{"i40e-gro-hw.txt", "ens1f0", []want{{"rx-gro-hw", false}}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			iface, fs := loadSet(t, tc.file)
			if iface != tc.iface {
				t.Fatalf("iface %q, want %q", iface, tc.iface)
			}
			for _, fix := range []bool{false, true} {
				got := Check(iface, fs, fix)
				if len(got) != len(tc.want) {
					t.Fatalf("fix=%v: %d findings, want %d: %+v", fix, len(got), len(tc.want), got)
				}
				for i, w := range tc.want {
					g := got[i]
					if g.Feature != w.feature || g.Fixed != w.fixed || !g.On {
						t.Errorf("fix=%v finding %d: %+v, want %+v", fix, i, g, w)
					}
					if g.TurnOff != (fix && !w.fixed) {
						t.Errorf("fix=%v %s: TurnOff=%v", fix, g.Feature, g.TurnOff)
					}
					if strings.Contains(g.Message, "\n") || !strings.HasPrefix(g.Message, iface+": ") {
						t.Errorf("%s: message not one line about %s: %q", g.Feature, iface, g.Message)
					}
					switch {
					case w.fixed:
						for _, s := range []string{"[fixed]", "cannot be turned off"} {
							if !strings.Contains(g.Message, s) {
								t.Errorf("%s fixed: message lacks %q: %q", g.Feature, s, g.Message)
							}
						}
						if strings.Contains(g.Message, "ethtool -K") {
							t.Errorf("%s fixed: message offers a command that cannot work: %q", g.Feature, g.Message)
						}
					case fix:
						if !strings.Contains(g.Message, "turning it off") {
							t.Errorf("%s: message with fix: %q", g.Feature, g.Message)
						}
					default:
						cmd := "`ethtool -K " + iface + " " + ethArg(g.Feature) + " off`"
						for _, s := range []string{cmd, "--fix-offloads"} {
							if !strings.Contains(g.Message, s) {
								t.Errorf("%s: message lacks %q: %q", g.Feature, s, g.Message)
							}
						}
					}
				}
			}
		})
	}
}

func ethArg(feature string) string {
	for _, o := range offloads {
		if o.name == feature {
			return o.ethArg
		}
	}
	return "?"
}

func TestCheckMessages(t *testing.T) {
	fs := Features{"rx-vlan-hw-parse": {On: true, Requested: true}}
	got := Check("eth1", fs, false)
	want := "eth1: RX VLAN offload (rxvlan) is on: the NIC strips the 802.1Q tag before XDP sees the frame, so flows lose their VLAN id; run `ethtool -K eth1 rxvlan off` or pass --fix-offloads"
	if len(got) != 1 || got[0].Message != want {
		t.Fatalf("got %+v\nwant %q", got, want)
	}
	if got := Check("eth1", Features{"rx-lro": {On: true, Fixed: true}}, true); len(got) != 1 || got[0].TurnOff ||
		!strings.Contains(got[0].Message, "not even with --fix-offloads") {
		t.Fatalf("fixed LRO: %+v", got)
	}
	if got := Check("eth1", Features{"rx-gro": {On: true}, "rx-lro": {On: false}}, true); len(got) != 0 {
		t.Fatalf("software GRO or LRO off reported: %+v", got)
	}
	if got := Check("eth1", nil, true); len(got) != 0 {
		t.Fatalf("empty set: %+v", got)
	}
}

func TestParseEthtoolK(t *testing.T) {
	_, fs := loadSet(t, "veth.txt")
	for name, w := range map[string]Feature{
		"rx-lro":                 {On: false, Requested: false, Fixed: true},
		"rx-vlan-hw-parse":       {On: true, Requested: true},
		"tx-vlan-hw-insert":      {On: true, Requested: true},
		"rx-gro":                 {On: false},
		"rx-gro-hw":              {Fixed: true},
		"rx-vlan-stag-hw-parse":  {On: true, Requested: true},
		"tx-checksum-ip-generic": {On: true, Requested: true},
		"tx-checksum-ipv4":       {Fixed: true},
	} {
		if g, ok := fs[name]; !ok || g != w {
			t.Errorf("%s: %+v (present %v), want %+v", name, g, ok, w)
		}
	}
	if _, ok := fs["large-receive-offload"]; ok {
		t.Error("ethtool's legacy name kept instead of the kernel's")
	}
	_, fs = loadSet(t, "i40e-gro-hw.txt")
	if g := fs["rx-vlan-hw-parse"]; g != (Feature{On: false, Requested: true}) {
		t.Errorf("off [requested on]: %+v", g)
	}

	// String prints what the parser reads back.
	_, again, err := ParseEthtoolK(strings.NewReader(fs.String()))
	if err != nil || !reflect.DeepEqual(again, fs) {
		t.Errorf("round trip through String: err %v, equal %v", err, reflect.DeepEqual(again, fs))
	}

	for _, bad := range []string{"", "Features for x:\n", "rx-lro on\n", "rx-lro: maybe\n", "rx-lro: on [odd]\n"} {
		if _, _, err := ParseEthtoolK(strings.NewReader(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestVLANMetaDecision(t *testing.T) {
	for _, tc := range []struct {
		kernel [2]int
		driver string
		feats  uint64
		known  bool
		want   bool
		says   string
	}{
		{[2]int{6, 18}, "veth", 7, true, true, "vlan-tag in its xdp-rx-metadata-features"},
		{[2]int{6, 18}, "ixgbe", 0, true, false, "xdp-rx-metadata-features: none"},
		{[2]int{6, 18}, "igc", 3, true, false, "timestamp,hash"},
		{[2]int{6, 8}, "mlx5_core", 0, false, true, "known driver"},
		{[2]int{6, 8}, "i40e", 0, false, false, "not known"},
		{[2]int{6, 6}, "mlx5_core", 3, true, false, "6.8+"},
		{[2]int{5, 18}, "ice", 0, false, false, "Linux 5.18"},
	} {
		got, why := vlanMetaDecision(tc.kernel, tc.driver, tc.feats, tc.known)
		if got != tc.want || !strings.Contains(why, tc.says) {
			t.Errorf("%v %s %#x %v: %v %q, want %v and %q", tc.kernel, tc.driver, tc.feats, tc.known, got, why, tc.want, tc.says)
		}
	}
	for r, w := range map[string][2]int{"6.18.44-fc-v657": {6, 18}, "5.15.0-91-generic": {5, 15}, "6.8": {6, 8}, "x": {0, 0}} {
		if g := parseRelease(r); g != w {
			t.Errorf("parseRelease(%q) = %v, want %v", r, g, w)
		}
	}
}

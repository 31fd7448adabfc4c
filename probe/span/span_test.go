package span

import (
	"bytes"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xdpflow/xdpflow/internal/testkit/testnet"
)

// newPair makes a throwaway pair of namespaces; every test works on the
// veth end inside namespace A, never on an interface of the host.
func newPair(t *testing.T, name string) *testnet.Pair {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
	p, err := testnet.NewPair(name, testnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func flags(t *testing.T, iface string) (up, promisc bool) {
	t.Helper()
	l, err := netlink.LinkByName(iface)
	if err != nil {
		t.Fatal(err)
	}
	f := l.Attrs().RawFlags
	return f&unix.IFF_UP != 0, f&unix.IFF_PROMISC != 0
}

func testLog(buf *bytes.Buffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func TestPrepareDownVethUpPromiscAndBack(t *testing.T) {
	p := newPair(t, "xfspan1")
	err := p.In(p.A, func() error {
		l, err := netlink.LinkByName(p.LinkA)
		if err != nil {
			return err
		}
		if err := netlink.LinkSetDown(l); err != nil {
			return err
		}
		if up, pr := flags(t, p.LinkA); up || pr {
			t.Fatalf("before: up=%v promisc=%v, want both off", up, pr)
		}
		var logs bytes.Buffer
		prep, err := Prepare(p.LinkA, Options{Promisc: true}, testLog(&logs))
		if err != nil {
			return err
		}
		if up, pr := flags(t, p.LinkA); !up || !pr {
			t.Errorf("prepared: up=%v promisc=%v, want both on", up, pr)
		}
		if !prep.Changed() {
			t.Error("Changed false after bringing the link up")
		}
		if !strings.Contains(logs.String(), "is down: bringing it up") {
			t.Errorf("no log line for bringing the link up:\n%s", logs.String())
		}
		if err := prep.Restore(); err != nil {
			return err
		}
		if up, pr := flags(t, p.LinkA); up || pr {
			t.Errorf("restored: up=%v promisc=%v, want both off as before", up, pr)
		}
		if prep.Changed() {
			t.Error("Changed true after Restore")
		}
		// A second Restore changes nothing.
		if err := prep.Restore(); err != nil {
			return err
		}
		if up, _ := flags(t, p.LinkA); up {
			t.Error("second Restore brought the link up")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestRestoreLeavesWhatWasAlreadySet(t *testing.T) {
	p := newPair(t, "xfspan2")
	err := p.In(p.A, func() error {
		l, err := netlink.LinkByName(p.LinkA)
		if err != nil {
			return err
		}
		if err := netlink.SetPromiscOn(l); err != nil { // the link is up already
			return err
		}
		prep, err := Prepare(p.LinkA, Options{Promisc: true}, nil)
		if err != nil {
			return err
		}
		if prep.Changed() {
			t.Error("Changed true when nothing was changed")
		}
		if err := prep.Restore(); err != nil {
			return err
		}
		if up, pr := flags(t, p.LinkA); !up || !pr {
			t.Errorf("restored: up=%v promisc=%v, want both still on", up, pr)
		}
		// Without Promisc, promiscuous mode is not touched.
		if err := netlink.SetPromiscOff(l); err != nil {
			return err
		}
		prep, err = Prepare(p.LinkA, Options{}, nil)
		if err != nil {
			return err
		}
		if _, pr := flags(t, p.LinkA); pr {
			t.Error("promiscuous mode set without Options.Promisc")
		}
		return prep.Restore()
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestFixOffloadsOnVethAndRestore(t *testing.T) {
	vethExempt = false // veth stands in for a NIC that strips tags
	defer func() { vethExempt = true }()
	p := newPair(t, "xfspan3")
	vlanOffloads := []string{"rx-vlan-hw-parse", "rx-vlan-stag-hw-parse"}
	err := p.In(p.A, func() error {
		before, err := GetFeatures(p.LinkA)
		if err != nil {
			return err
		}
		for _, n := range vlanOffloads {
			if f := before[n]; !f.On || f.Fixed {
				t.Skipf("%s on a veth of this kernel is %+v: want on and changeable", n, f)
			}
		}

		// Without FixOffloads: reported with the command, nothing changed.
		var logs bytes.Buffer
		prep, err := Prepare(p.LinkA, Options{Promisc: true}, testLog(&logs))
		if err != nil {
			return err
		}
		if len(prep.Findings) != 2 {
			t.Errorf("findings %+v, want the two VLAN offloads", prep.Findings)
		}
		for _, s := range []string{"`ethtool -K " + p.LinkA + " rxvlan off`", "--fix-offloads"} {
			if !strings.Contains(logs.String(), s) {
				t.Errorf("log lacks %q:\n%s", s, logs.String())
			}
		}
		if now, _ := GetFeatures(p.LinkA); !now["rx-vlan-hw-parse"].On {
			t.Error("rxvlan turned off without FixOffloads")
		}
		if err := prep.Restore(); err != nil {
			return err
		}

		// With FixOffloads: off while prepared, on again after Restore.
		prep, err = Prepare(p.LinkA, Options{Promisc: true, FixOffloads: true}, nil)
		if err != nil {
			return err
		}
		during, err := GetFeatures(p.LinkA)
		if err != nil {
			return err
		}
		for _, n := range vlanOffloads {
			if during[n].On {
				t.Errorf("%s still on with FixOffloads", n)
			}
		}
		if err := prep.Restore(); err != nil {
			return err
		}
		after, err := GetFeatures(p.LinkA)
		if err != nil {
			return err
		}
		for _, n := range vlanOffloads {
			if after[n] != before[n] {
				t.Errorf("%s after Restore %+v, before %+v", n, after[n], before[n])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// The ioctl reader agrees with the ethtool binary, where there is one
// (the test does not need it otherwise).
func TestGetFeaturesMatchesEthtool(t *testing.T) {
	bin, err := exec.LookPath("ethtool")
	if err != nil {
		t.Skip("no ethtool binary to compare with")
	}
	p := newPair(t, "xfspan4")
	var fs Features
	if err := p.In(p.A, func() (err error) { fs, err = GetFeatures(p.LinkA); return err }); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ip", "netns", "exec", p.NsName("a"), bin, "-k", p.LinkA).Output()
	if err != nil {
		t.Fatal(err)
	}
	_, want, err := ParseEthtoolK(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	for name, w := range want {
		g, ok := fs[name]
		if !ok {
			continue // an ethtool group name (tx-checksumming, ...)
		}
		if g != w {
			t.Errorf("%s: ioctl %+v, ethtool %+v", name, g, w)
		}
	}
	for _, n := range Checked() {
		if _, ok := fs[n]; !ok {
			t.Errorf("%s not read", n)
		}
	}
}

func TestVLANMetadataVeth(t *testing.T) {
	p := newPair(t, "xfspan5")
	var ok bool
	var why, drv string
	if err := p.In(p.A, func() (err error) {
		ok, why = VLANMetadata(p.LinkA)
		drv, err = Driver(p.LinkA)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %v, %s", drv, ok, why)
	if drv != "veth" {
		t.Errorf("driver %q, want veth", drv)
	}
	if k := kernelVersion(); k[0] > 6 || (k[0] == 6 && k[1] >= 8) {
		if !ok {
			t.Errorf("veth on Linux %d.%d implements the VLAN tag kfunc, got false: %s", k[0], k[1], why)
		}
		// Answered by the kernel (netdev netlink), not the fallback table.
		if !strings.Contains(why, "the kernel lists vlan-tag") {
			t.Errorf("not the kernel's answer: %s", why)
		}
	}
}

func TestPrepareMissingInterface(t *testing.T) {
	p := newPair(t, "xfspan6")
	err := p.In(p.A, func() error {
		_, err := Prepare("xfspan-none", Options{Promisc: true}, nil)
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("err %v, want not found", err)
	}
}

// TestVethVLANNotFlagged: veth keeps tags in the frame for XDP, so its
// rxvlan is not reported.
func TestVethVLANNotFlagged(t *testing.T) {
	if got := relevant("lo", false, []Finding{{Feature: "rx-vlan-hw-parse"}}); len(got) != 1 {
		t.Errorf("lo's rxvlan finding was dropped")
	}
	pair := newPair(t, "xfspan9")
	var got []Finding
	pair.In(pair.A, func() error { got = Warnings(pair.LinkA, false); return nil })
	for _, f := range got {
		if f.Feature == "rx-vlan-hw-parse" || f.Feature == "rx-vlan-stag-hw-parse" {
			t.Errorf("veth: %s reported", f.Feature)
		}
	}
}

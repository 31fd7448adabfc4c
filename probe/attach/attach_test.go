package attach

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"

	"github.com/xdpflow/xdpflow/bpf"
	"github.com/xdpflow/xdpflow/bpf/bpftest"
	"github.com/xdpflow/xdpflow/internal/testkit/testnet"
)

func TestAttachDetach(t *testing.T) {
	d := loadDatapath(t)
	empty, err := bpftest.LoadEmpty()
	if err != nil {
		t.Fatal(err)
	}
	defer empty.Close()
	pair, err := testnet.NewPair(fmt.Sprintf("xfa%d", os.Getpid()%100000), testnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer pair.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	attached := func() bool {
		l, err := netlink.LinkByName(pair.LinkB)
		if err != nil {
			t.Fatal(err)
		}
		return l.Attrs().Xdp != nil && l.Attrs().Xdp.Attached
	}
	wantErr := func(err error, substr string) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), substr) {
			t.Errorf("error %v, want one saying %q", err, substr)
		}
	}

	err = pair.In(pair.B, func() error {
		_, err := Attach("no-such-if", d.Program, Auto, false, "", log)
		wantErr(err, "ip link")

		// Loopback has no native XDP: native is refused with the fix,
		// auto falls back to generic.
		_, err = Attach("lo", d.Program, Native, false, "", log)
		wantErr(err, "--xdp-mode generic")
		lo, err := Attach("lo", d.Program, Auto, false, "", log)
		if err != nil {
			return fmt.Errorf("auto on lo: %w", err)
		}
		if lo.Mode != Generic {
			t.Errorf("auto on lo: mode %s, want generic", lo.Mode)
		}
		lo.Close()

		a, err := Attach(pair.LinkB, d.Program, Native, false, "", log)
		if err != nil {
			return err
		}
		if a.Mode != Native || !attached() {
			t.Errorf("mode %s, attached %v", a.Mode, attached())
		}
		_, err = Attach(pair.LinkB, d.Program, Native, false, "", log)
		wantErr(err, "--force")

		// A probe killed with kill -9: its link is gone with its fds; an
		// old-style netlink attachment stays, and --detach removes it.
		a.Close()
		if attached() {
			t.Error("still attached after Close")
		}
		l, _ := netlink.LinkByName(pair.LinkB)
		if err := netlink.LinkSetXdpFd(l, d.Program.FD()); err != nil {
			return err
		}
		_, err = Attach(pair.LinkB, d.Program, Auto, false, "", log)
		wantErr(err, "already has an XDP program")
		b, err := Attach(pair.LinkB, d.Program, Auto, true, "", log)
		if err != nil {
			return fmt.Errorf("--force: %w", err)
		}
		if err := Detach(pair.LinkB); err != nil {
			return err
		}
		if attached() {
			t.Error("still attached after Detach (link)")
		}
		b.Close()
		if err := netlink.LinkSetXdpFd(l, d.Program.FD()); err != nil {
			return err
		}
		if err := Detach(pair.LinkB); err != nil {
			return err
		}
		if attached() {
			t.Error("still attached after Detach (netlink)")
		}

		// Pinned: the program outlives Close, the next Attach takes the
		// link over, Detach removes it and its pin.
		pins := filepath.Join("/sys/fs/bpf", fmt.Sprintf("xdpflow-attach-test-%d", os.Getpid()))
		if err := bpf.EnsureBPFFS(pins); err != nil {
			return err
		}
		if err := os.MkdirAll(pins, 0o700); err != nil {
			return err
		}
		defer os.RemoveAll(pins)
		p, err := Attach(pair.LinkB, d.Program, Native, false, pins, log)
		if err != nil {
			return err
		}
		p.Close()
		if !attached() {
			t.Error("a pinned link was detached by Close")
		}
		q, err := Attach(pair.LinkB, empty, Native, false, pins, log)
		if err != nil {
			return fmt.Errorf("take over the pinned link: %w", err)
		}
		l, _ = netlink.LinkByName(pair.LinkB)
		if info, _ := empty.Info(); !q.Reused || l.Attrs().Xdp == nil || ebpf.ProgramID(l.Attrs().Xdp.ProgId) != mustID(info) {
			t.Errorf("reused %v: the pinned link does not run the new program", q.Reused)
		}
		if err := q.Detach(); err != nil {
			return err
		}
		if attached() {
			t.Error("still attached after Detach of a pinned link")
		}
		if _, err := os.Stat(LinkPin(pins, pair.LinkB)); !os.IsNotExist(err) {
			t.Errorf("link pin left behind: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestParseMode(t *testing.T) {
	for _, s := range []string{"auto", "native", "generic"} {
		if m, err := ParseMode(s); err != nil || string(m) != s {
			t.Errorf("%s: %v %v", s, m, err)
		}
	}
	if _, err := ParseMode("offload"); err == nil {
		t.Error("offload accepted")
	}
}

func mustID(info *ebpf.ProgramInfo) ebpf.ProgramID {
	id, _ := info.ID()
	return id
}

// TestAutoFallback: the plain program where the driver takes it, its
// multi-buffer twin where the driver refuses the plain one (jumbo frames);
// and whatever the driver's reason for refusing native mode altogether,
// auto attaches in generic mode with one warning line saying why and what
// it costs, while native mode fails naming the cause. veth refuses a
// program without frags at MTU 9000, and any program when it has fewer
// receive queues than its peer has transmit queues.
func TestAutoFallback(t *testing.T) {
	d := loadDatapath(t)
	both := Programs{Plain: d.Program, Frags: d.FragsProgram}

	for _, tc := range []struct {
		name  string
		opt   testnet.Options
		progs Programs
		mode  Mode   // what auto ends in
		frags bool   // the twin attached
		cause string // in the warning and native mode's error
	}{
		{"MTU 1500", testnet.Options{}, both, Native, false, ""},
		{"MTU 9000", testnet.Options{MTU: 9000}, both, Native, true, ""},
		{"MTU 9000, no twin", testnet.Options{MTU: 9000}, Programs{Plain: d.Program}, Generic, false, "the driver refused the program at MTU 9000"},
		{"too few queues", testnet.Options{QueueMismatch: true}, both, Generic, false, "too few queues"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pair, err := testnet.NewPair(fmt.Sprintf("xff%d", os.Getpid()%100000), tc.opt)
			if err != nil {
				t.Fatal(err)
			}
			defer pair.Close()
			var logged strings.Builder
			log := slog.New(slog.NewTextHandler(&logged, nil))
			if err := pair.In(pair.B, func() error {
				a, err := AttachWith(pair.LinkB, tc.progs, Auto, false, "", log)
				if err != nil {
					return fmt.Errorf("auto: %w", err)
				}
				defer a.Close()
				if a.Mode != tc.mode || a.Frags != tc.frags {
					t.Errorf("auto: mode %s, multi-buffer twin %v; want %s, %v", a.Mode, a.Frags, tc.mode, tc.frags)
				}
				lines := strings.Split(strings.TrimSpace(logged.String()), "\n")
				if tc.cause == "" {
					if logged.Len() != 0 {
						t.Errorf("auto attached natively, yet logged: %s", logged.String())
					}
					return nil
				}
				if len(lines) != 1 || !strings.Contains(lines[0], "level=WARN") || !strings.Contains(lines[0], tc.cause) ||
					!strings.Contains(lines[0], "generic mode") || !strings.Contains(lines[0], "copies every frame") {
					t.Errorf("auto logged %q; want one warning saying %q, generic mode and its cost", logged.String(), tc.cause)
				}
				a.Close()
				_, err = AttachWith(pair.LinkB, tc.progs, Native, false, "", log)
				if err == nil || !strings.Contains(err.Error(), tc.cause) || !strings.Contains(err.Error(), "--xdp-mode generic") {
					t.Errorf("native: %v; want an error saying %q and what to do", err, tc.cause)
				}
				t.Logf("warning: %s", lines[0])
				t.Logf("native: %v", err)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestTakeOverJumbo: a restart takes over the pinned link at MTU 9000,
// where the driver refuses the plain program: the twin goes in instead.
func TestTakeOverJumbo(t *testing.T) {
	d := loadDatapath(t)
	pair, err := testnet.NewPair(fmt.Sprintf("xfo%d", os.Getpid()%100000), testnet.Options{MTU: 9000})
	if err != nil {
		t.Fatal(err)
	}
	defer pair.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pins := filepath.Join("/sys/fs/bpf", fmt.Sprintf("xdpflow-takeover-test-%d", os.Getpid()))
	if err := bpf.EnsureBPFFS(pins); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(pins, 0o700); err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(pins)
	if err := pair.In(pair.B, func() error {
		progs := Programs{Plain: d.Program, Frags: d.FragsProgram}
		for i := 0; i < 2; i++ {
			a, err := AttachWith(pair.LinkB, progs, Auto, false, pins, log)
			if err != nil {
				return err
			}
			if a.Reused != (i == 1) || a.Mode != Native || !a.Frags {
				t.Errorf("attach %d: reused %v, mode %s, twin %v; want %v, native, twin", i, a.Reused, a.Mode, a.Frags, i == 1)
			}
			if i == 1 {
				return a.Detach()
			}
			a.Close()
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// loadDatapath loads the XDP program and its maps, closed at the end.
func loadDatapath(t *testing.T) *bpf.Datapath {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("needs root: run `sudo make test`")
	}
	d, err := bpf.Load(bpf.Config{MaxFlows: 1024})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

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
	if os.Geteuid() != 0 {
		t.Fatal("needs root: run `sudo make test`")
	}
	d, err := bpf.Load(bpf.Config{MaxFlows: 1024})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
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

// TestAutoFallback: whatever the driver's reason for refusing native mode,
// auto attaches in generic mode with one warning line saying why and what
// it costs; native mode fails naming the cause. Two refusals veth makes:
// a program that is not multi-buffer aware at MTU 9000 (the probe's own
// program is, and attaches natively there), and fewer receive queues than
// the peer has transmit queues.
func TestAutoFallback(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root: run `sudo make test`")
	}
	d, err := bpf.Load(bpf.Config{MaxFlows: 1024})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	empty, err := bpftest.LoadEmpty() // SEC("xdp"): no frags
	if err != nil {
		t.Fatal(err)
	}
	defer empty.Close()

	for _, tc := range []struct {
		name  string
		opt   testnet.Options
		prog  *ebpf.Program
		mode  Mode   // what auto ends in
		cause string // in the warning and native mode's error
	}{
		{"jumbo, frags-aware", testnet.Options{MTU: 9000}, d.Program, Native, ""},
		{"jumbo, not frags-aware", testnet.Options{MTU: 9000}, empty, Generic, "the driver refused the program at MTU 9000"},
		{"too few queues", testnet.Options{QueueMismatch: true}, d.Program, Generic, "too few queues"},
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
				a, err := Attach(pair.LinkB, tc.prog, Auto, false, "", log)
				if err != nil {
					return fmt.Errorf("auto: %w", err)
				}
				defer a.Close()
				if a.Mode != tc.mode {
					t.Errorf("auto: mode %s, want %s", a.Mode, tc.mode)
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
				_, err = Attach(pair.LinkB, tc.prog, Native, false, "", log)
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

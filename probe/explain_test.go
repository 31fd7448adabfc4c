package main

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/xdpflow/xdpflow/bpf"
	"github.com/xdpflow/xdpflow/probe/caps"
	"golang.org/x/sys/unix"
)

func TestExplainConfigError(t *testing.T) {
	cases := []struct {
		err  error
		want string
	}{
		{fmt.Errorf("datapath config: %w", &bpf.ConfigError{Field: "MaxFlows", Value: uint32(5000000), Err: errors.New("create flow table: cannot allocate memory")}),
			"datapath config: --max-flows 5000000: create flow table: cannot allocate memory"},
		{&bpf.ConfigError{Field: "LocalNets", Value: netip.MustParsePrefix("10.0.0.0/8"), Err: errors.New("no space left on device")},
			"--local-net 10.0.0.0/8: no space left on device"},
		{&bpf.ConfigError{Field: "PinPath", Value: "/tmp/x", Err: errors.New("not on a bpffs mount: use a directory under /sys/fs/bpf")},
			"--pin-path /tmp/x: not on a bpffs mount: use a directory under /sys/fs/bpf (or give --pin-path '' to run without pinning)"},
		{&bpf.ConfigError{Field: "Mirrors", Value: bpf.Mirror{Type: bpf.MirrorVXLAN, Port: 4790}, Err: errors.New("each encapsulation once")},
			"--mirror-encap vxlan:4790: each encapsulation once"},
		{&bpf.ConfigError{Field: "Unknown", Err: errors.New("x")}, "Unknown: x"},
		{errors.New("plain"), "plain"},
	}
	for _, tc := range cases {
		got := explain(tc.err)
		if got.Error() != tc.want {
			t.Errorf("explain(%q) = %q, want %q", tc.err, got, tc.want)
		}
		var ce *bpf.ConfigError
		if errors.As(tc.err, &ce) && !errors.As(got, &ce) {
			t.Errorf("explain(%q) lost the ConfigError", tc.err)
		}
	}
	if explain(nil) != nil {
		t.Error("explain(nil) is not nil")
	}
}

// The remedy for a refusal is worded once, whoever refused.
func TestExplainPermission(t *testing.T) {
	cases := []struct {
		err  error
		want string
	}{
		{fmt.Errorf("create BPF maps: %w (%w)", bpf.ErrPermission, unix.EPERM),
			"create BPF maps: permission denied (operation not permitted): " + caps.Remedy},
		{fmt.Errorf("the kernel verifier refused the XDP program: %w (%w)", bpf.ErrNoPerfmon, unix.EACCES),
			"grant CAP_PERFMON"},
		{&bpf.ConfigError{Field: "PinPath", Value: "/sys/fs/bpf/x", Err: fmt.Errorf("create the pin directory: %w", bpf.ErrPermission)},
			"--pin-path /sys/fs/bpf/x: create the pin directory: permission denied: " + caps.Remedy},
	}
	for _, tc := range cases {
		got := explain(tc.err)
		if !strings.Contains(got.Error(), tc.want) || strings.Count(got.Error(), caps.Remedy) != 1 {
			t.Errorf("explain(%q) = %q, want it to hold %q and the remedy once", tc.err, got, tc.want)
		}
		if !errors.Is(got, bpf.ErrPermission) {
			t.Errorf("explain(%q) lost ErrPermission", tc.err)
		}
	}
	if got := explain(fmt.Errorf("x: %w (%w)", bpf.ErrPermission, unix.EPERM)); !errors.Is(got, unix.EPERM) {
		t.Errorf("explain lost the kernel's error: %v", got)
	}
}

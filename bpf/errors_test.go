package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Errors name Config fields, never the command line's flags.
func TestConfigErrorNamesField(t *testing.T) {
	cases := []struct {
		name  string
		err   error
		field string
	}{
		{"sample bytes", func() error { _, err := Load(Config{SampleBytes: MaxSampleBytes + 1}); return err }(), "SampleBytes"},
		{"action", func() error { _, err := Load(Config{Action: 7}); return err }(), "Action"},
		{"local nets", func() error { _, err := Load(Config{LocalNets: make([]netip.Prefix, MaxLocalNets+1)}); return err }(), "LocalNets"},
		{"pin path off bpffs", EnsureBPFFS(t.TempDir()), "PinPath"},
	}
	for _, tc := range cases {
		var ce *ConfigError
		if !errors.As(tc.err, &ce) || ce.Field != tc.field {
			t.Errorf("%s: %v: want a ConfigError for %s", tc.name, tc.err, tc.field)
			continue
		}
		if strings.Contains(tc.err.Error(), "--") {
			t.Errorf("%s: %q names a flag", tc.name, tc.err)
		}
	}
}

func TestPermissionErrorKeepsKernelError(t *testing.T) {
	err := fmt.Errorf("create BPF maps: %w", kernelError(fmt.Errorf("map create: %w", unix.EPERM)))
	if !errors.Is(err, ErrPermission) || !errors.Is(err, unix.EPERM) {
		t.Errorf("%v: want ErrPermission and EPERM in the chain", err)
	}
	if err.Error() != "create BPF maps: permission denied" {
		t.Errorf("%q", err)
	}
	err = &denied{ErrNoPerfmon, unix.EACCES}
	if !errors.Is(err, ErrPermission) || !errors.Is(err, ErrNoPerfmon) || !errors.Is(err, unix.EACCES) {
		t.Errorf("%v: want ErrNoPerfmon, ErrPermission and EACCES in the chain", err)
	}
	if err := kernelError(unix.ENOMEM); errors.Is(err, ErrPermission) {
		t.Errorf("%v is not a permission error", err)
	}
}

package bpf

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Errors of this package say what went wrong in terms of Config and the
// kernel; what an operator should do about it (which flag, which
// privilege) is the caller's to say.

// ErrPermission is in the chain of every error caused by the kernel (or
// the filesystem) refusing for lack of privilege. The refusal itself (an
// EPERM or EACCES) is in the chain too.
var ErrPermission = errors.New("permission denied")

// ErrNoPerfmon is the verifier refusing the program's packet accesses: the
// caller may create maps (CAP_BPF) but lacks CAP_PERFMON. It wraps
// ErrPermission.
var ErrNoPerfmon = fmt.Errorf("%w: CAP_PERFMON is missing", ErrPermission)

// ConfigError is a Config setting the kernel (or the system) would not
// take. Field is the Config field's name ("MaxFlows", "LocalNets",
// "PinPath", ...), Value the offending value when there is a single one.
type ConfigError struct {
	Field string
	Value any
	Err   error
}

// Error reads "Field Value: Err", or "Field: Err" without a Value; it
// always starts with Field.
func (e *ConfigError) Error() string {
	if e.Value == nil {
		return fmt.Sprintf("%s: %v", e.Field, e.Err)
	}
	return fmt.Sprintf("%s %v: %v", e.Field, e.Value, e.Err)
}

func (e *ConfigError) Unwrap() error { return e.Err }

func isPerm(err error) bool {
	return errors.Is(err, os.ErrPermission) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES)
}

// denied is a refusal for lack of privilege: it reads as reason
// (ErrPermission or one that wraps it), and keeps the kernel's error in
// the chain without printing it (cilium/ebpf's own text for an EPERM map
// creation blames RLIMIT_MEMLOCK, misleading on current kernels).
type denied struct {
	reason error
	kernel error
}

func (e *denied) Error() string   { return e.reason.Error() }
func (e *denied) Unwrap() []error { return []error{e.reason, e.kernel} }

// kernelError classifies err: a permission refusal becomes an
// ErrPermission, a missing kernel feature says which kernel is needed.
func kernelError(err error) error {
	switch {
	case isPerm(err):
		return &denied{ErrPermission, err}
	case errors.Is(err, ebpf.ErrNotSupported):
		return fmt.Errorf("%w (this kernel lacks a needed BPF feature: xdpflow needs Linux 5.18 or later)", err)
	}
	return err
}

// Package caps drops the probe's capabilities once it has attached. Loading
// and attaching the program need CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON
// (or root); the running probe only calls bpf() on the maps it holds,
// which needs CAP_BPF alone. Everything else goes, from every thread.
package caps

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Capabilities the probe uses (linux/capability.h).
const (
	NetAdmin = unix.CAP_NET_ADMIN // attach XDP (netlink, BPF links)
	Perfmon  = unix.CAP_PERFMON   // load: the verifier's trusted-program checks, BPF_PROG_TEST_RUN
	BPF      = unix.CAP_BPF       // create maps, load programs, and every later map operation
)

// Remedy is what to do when the kernel refuses to load or attach the
// program for lack of privilege: the one wording of it, which the probe
// appends to every such error (bpf.ErrPermission in the chain).
const Remedy = "run as root, or grant CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN"

// Keep reduces the effective, permitted and inheritable sets of every
// thread to keep, clears the ambient set, drops the rest of the bounding
// set when allowed (root), and sets no_new_privs, so that nothing the
// process runs later can gain privileges back.
func Keep(keep ...int) error {
	var mask [2]uint32
	for _, c := range keep {
		mask[c/32] |= 1 << (c % 32)
	}
	last, err := lastCap()
	if err != nil {
		return err
	}
	// The bounding set needs CAP_SETPCAP to shrink: a root probe has it,
	// a probe given only its three capabilities does not, and needs none.
	if eff, err := Effective(); err == nil && eff&(1<<unix.CAP_SETPCAP) != 0 {
		for c := 0; c <= last; c++ {
			if mask[c/32]&(1<<(c%32)) != 0 {
				continue
			}
			if _, _, e := syscall.AllThreadsSyscall(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(c), 0); e != 0 {
				return fmt.Errorf("drop capability %d from the bounding set: %w", c, e)
			}
		}
	}
	if _, _, e := syscall.AllThreadsSyscall6(unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0, 0); e != 0 && e != unix.EINVAL {
		return fmt.Errorf("clear ambient capabilities: %w", e)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{
		{Effective: mask[0], Permitted: mask[0]},
		{Effective: mask[1], Permitted: mask[1]},
	}
	if _, _, e := syscall.AllThreadsSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); e != 0 {
		if e == unix.ENOTSUP {
			return fmt.Errorf("drop capabilities: the binary was built with cgo, which cannot change every thread's capabilities: build with CGO_ENABLED=0 (make build does)")
		}
		return fmt.Errorf("drop capabilities: %w", e)
	}
	if _, _, e := syscall.AllThreadsSyscall(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); e != 0 {
		return fmt.Errorf("set no_new_privs: %w", e)
	}
	return nil
}

// Effective returns the calling thread's effective set as a bit mask.
func Effective() (uint64, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, fmt.Errorf("capget: %w", err)
	}
	return uint64(data[1].Effective)<<32 | uint64(data[0].Effective), nil
}

func lastCap() (int, error) {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, fmt.Errorf("read cap_last_cap: %w", err)
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

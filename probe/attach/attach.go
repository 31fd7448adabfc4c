// Package attach puts the XDP program on an interface and takes it off:
// mode selection with fallback, refusing to displace another program unless
// told to, and a way out after a crash.
package attach

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xdpflow/xdpflow/bpf"
)

// Mode is how the program is attached.
type Mode string

const (
	Auto    Mode = "auto"    // native, falling back to generic with a warning
	Native  Mode = "native"  // in the driver: fast, needs driver support
	Generic Mode = "generic" // in the stack (skb): works everywhere, slower
)

// ParseMode checks a --xdp-mode value.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case Auto, Native, Generic:
		return m, nil
	}
	return "", fmt.Errorf("xdp mode %q: want auto, native or generic", s)
}

// Attachment is the program on one interface.
type Attachment struct {
	Iface   string
	Ifindex int
	Mode    Mode // the mode actually used
	// Frags is set when the multi-buffer twin (Programs.Frags) runs: the
	// driver refused the plain program natively (jumbo frames).
	Frags bool
	// Reused is set when a link a previous probe pinned was taken over:
	// the program was swapped in place, no frame went uncounted.
	Reused bool
	link   link.Link
	pin    string // the link's pin, "" when not pinned
}

// Close lets go of the program. A pinned link stays, and the program with
// it: it keeps counting for the next probe. Otherwise it is detached.
func (a *Attachment) Close() error { return a.link.Close() }

// Detach takes the program off the interface, pinned or not.
func (a *Attachment) Detach() error {
	if a.pin != "" {
		if err := a.link.Unpin(); err != nil {
			return fmt.Errorf("unpin XDP link %s: %w", a.pin, err)
		}
	}
	return a.link.Close()
}

// LinkPin is where the XDP link of iface is pinned under dir.
func LinkPin(dir, iface string) string { return filepath.Join(dir, "link-"+iface) }

// Programs are the variants of one program Attach chooses from.
type Programs struct {
	// Plain is the program to attach; the only one in generic mode.
	Plain *ebpf.Program
	// Frags, when set, is Plain's multi-buffer twin (xdp.frags): tried
	// in native mode when the driver refuses Plain, as it does where a
	// frame at the interface's MTU spans several buffers.
	Frags *ebpf.Program
}

// Attach is AttachWith with no multi-buffer twin.
func Attach(iface string, prog *ebpf.Program, mode Mode, force bool, pinDir string, log *slog.Logger) (*Attachment, error) {
	return AttachWith(iface, Programs{Plain: prog}, mode, force, pinDir, log)
}

// AttachWith puts progs.Plain on the interface (or, natively, progs.Frags
// where the driver refuses Plain). In auto mode a refusal of native mode,
// whatever the reason, falls back to generic with one warning. An interface that already has an XDP
// program is refused unless force is set, in which case that program is
// removed first. With pinDir, the link is pinned there, and a link a
// previous probe pinned on this interface is taken over: prog replaces its
// program atomically. A refusal for lack of privilege wraps
// bpf.ErrPermission.
func AttachWith(iface string, progs Programs, mode Mode, force bool, pinDir string, log *slog.Logger) (*Attachment, error) {
	l, err := netlink.LinkByName(iface)
	if err != nil {
		return nil, fmt.Errorf("interface %q not found: check the name with `ip link` (and the network namespace)", iface)
	}
	idx := l.Attrs().Index
	if pinDir != "" {
		if a, err := takeOver(iface, idx, progs, LinkPin(pinDir, iface), log); a != nil || err != nil {
			return a, err
		}
	}
	if x := l.Attrs().Xdp; x != nil && x.Attached {
		if !force {
			return nil, fmt.Errorf("%s already has an XDP program (id %d): stop its owner, run `xdpflow-probe --detach -i %s`, or pass --force to replace it", iface, x.ProgId, iface)
		}
		log.Warn("replacing the XDP program already on the interface (--force)", "iface", iface, "prog_id", x.ProgId)
		if err := Detach(iface); err != nil {
			return nil, err
		}
	}

	frags := false
	try := func(m Mode) (link.Link, error) {
		if m == Generic {
			// The stack hands generic XDP a linear frame when the
			// program is not multi-buffer aware: Plain counts it whole.
			frags = false
			return link.AttachXDP(link.XDPOptions{Program: progs.Plain, Interface: idx, Flags: link.XDPGenericMode})
		}
		lk, err := link.AttachXDP(link.XDPOptions{Program: progs.Plain, Interface: idx, Flags: link.XDPDriverMode})
		if err == nil || progs.Frags == nil || denied(err) || busy(err) {
			return lk, err
		}
		// A driver that takes a program without frags gives it every
		// frame in one buffer; one that refuses it may take the twin.
		lk, err = link.AttachXDP(link.XDPOptions{Program: progs.Frags, Interface: idx, Flags: link.XDPDriverMode})
		frags = err == nil
		return lk, err
	}
	used := mode
	if mode == Auto {
		used = Native
	}
	lk, err := try(used)
	if err != nil && mode == Auto && !denied(err) && !busy(err) {
		// Any refusal of native mode: the driver's reasons are many (no
		// XDP, an MTU too large for its buffers, too few queues, an
		// offload XDP cannot run with) and generic mode avoids them all.
		// Lack of privilege and a program already there are not: generic
		// would be refused too.
		log.Warn(fmt.Sprintf("native XDP refused: %s; using generic mode, which counts the same but copies every frame into a socket buffer before the program runs (slower, more CPU per packet)",
			nativeCause(err, l.Attrs().MTU)), "iface", iface, "err", err)
		nerr := err
		used = Generic
		if lk, err = try(used); err != nil && !denied(err) && !busy(err) {
			return nil, fmt.Errorf("attach XDP to %s: native mode: %s (%w); generic mode: %w", iface, nativeCause(nerr, l.Attrs().MTU), nerr, err)
		}
	}
	if err != nil {
		switch {
		case used == Native && unsupported(err):
			return nil, fmt.Errorf("%s: the driver does not support native XDP (%v): use --xdp-mode generic or auto", iface, err)
		case denied(err):
			return nil, fmt.Errorf("attach XDP to %s: %w (%w)", iface, bpf.ErrPermission, err)
		case busy(err):
			return nil, fmt.Errorf("%s already has an XDP program: run `xdpflow-probe --detach -i %s` or pass --force", iface, iface)
		case used == Native:
			return nil, fmt.Errorf("attach XDP (native mode) to %s: %s: %w: use --xdp-mode generic or auto", iface, nativeCause(err, l.Attrs().MTU), err)
		}
		return nil, fmt.Errorf("attach XDP (%s mode) to %s: %w", used, iface, err)
	}
	a := &Attachment{Iface: iface, Ifindex: idx, Mode: used, Frags: frags, link: lk}
	if pinDir != "" {
		a.pin = LinkPin(pinDir, iface)
		if err := lk.Pin(a.pin); err != nil {
			lk.Close()
			return nil, fmt.Errorf("pin XDP link of %s at %s: %w", iface, a.pin, err)
		}
	}
	return a, nil
}

// takeOver swaps prog into the link pinned at pin, when that link is an
// XDP link on this interface. A stale pin (the interface was re-created,
// say) is removed and nil returned: attach afresh.
func takeOver(iface string, idx int, progs Programs, pin string, log *slog.Logger) (*Attachment, error) {
	lk, err := link.LoadPinnedLink(pin, nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pinned XDP link %s: %w (remove it with `xdpflow-probe --detach -i %s`)", pin, err, iface)
	}
	info, err := lk.Info()
	if err != nil || info.Type != link.XDPType || info.XDP() == nil || int(info.XDP().Ifindex) != idx {
		log.Warn("removing a stale pinned XDP link (not on this interface any more)", "pin", pin)
		lk.Unpin()
		lk.Close()
		return nil, nil
	}
	frags := false
	err = lk.Update(progs.Plain)
	if err != nil && progs.Frags != nil && linkMode(idx) == Native {
		// The driver refuses Plain (jumbo frames): the twin, as Attach.
		if lk.Update(progs.Frags) == nil {
			err, frags = nil, true
		}
	}
	if err != nil {
		lk.Close()
		return nil, fmt.Errorf("replace the program of the pinned XDP link %s: %w", pin, err)
	}
	return &Attachment{Iface: iface, Ifindex: idx, Mode: linkMode(idx), Frags: frags, Reused: true, link: lk, pin: pin}, nil
}

// linkMode reads the XDP mode an interface's program runs in.
func linkMode(idx int) Mode {
	l, err := netlink.LinkByIndex(idx)
	if err == nil && l.Attrs().Xdp != nil && l.Attrs().Xdp.AttachMode == 2 { // XDP_ATTACHED_SKB
		return Generic
	}
	return Native
}

// denied is a refusal for lack of privilege.
func denied(err error) bool {
	return errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES)
}

// busy is a refusal because the interface has an XDP program already.
func busy(err error) bool {
	return errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EEXIST)
}

// nativeCause says in words why a driver refused a program in native
// mode, from the errno it returned (the driver's own message goes to the
// netlink extack, which BPF links do not return).
func nativeCause(err error, mtu int) string {
	switch {
	case errors.Is(err, unix.ERANGE):
		return fmt.Sprintf("the driver refused the program at MTU %d, too large for its XDP buffers", mtu)
	case unsupported(err):
		return "the driver does not support native XDP, or not in its present configuration"
	case errors.Is(err, unix.ENOSPC):
		return "the driver has too few queues for XDP (veth: fewer receive queues than its peer's transmit queues)"
	case errors.Is(err, unix.ENOMEM):
		return "the driver could not allocate its XDP resources"
	}
	return "the driver refused the program"
}

func unsupported(err error) bool {
	return errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) || errors.Is(err, ebpf.ErrNotSupported)
}

// Detach removes the XDP program from the interface, whether attached
// through a BPF link (as the probe does) or through netlink. It is the way
// out when a probe's program outlived it (pinned, or attached by an older
// tool). A link is matched by program id and ifindex: ifindexes repeat
// across network namespaces, program ids do not.
func Detach(iface string) error {
	l, err := netlink.LinkByName(iface)
	if err != nil {
		return fmt.Errorf("interface %q not found: check the name with `ip link`", iface)
	}
	x := l.Attrs().Xdp
	if x == nil || !x.Attached {
		return nil
	}
	idx := uint32(l.Attrs().Index)
	it := new(link.Iterator)
	defer it.Close()
	for it.Next() {
		info, err := it.Link.Info()
		if err != nil || info.Type != link.XDPType || uint32(info.Program) != x.ProgId {
			continue
		}
		if xi := info.XDP(); xi != nil && xi.Ifindex == idx {
			if err := it.Link.Detach(); err != nil {
				return fmt.Errorf("detach XDP link %d from %s: %w", it.ID, iface, err)
			}
			return nil
		}
	}
	if err := it.Err(); err != nil && !errors.Is(err, ebpf.ErrNotSupported) {
		return fmt.Errorf("list BPF links: %w", err)
	}
	// Attached through netlink: clear every mode.
	for _, flags := range []int{0, unix.XDP_FLAGS_SKB_MODE, unix.XDP_FLAGS_DRV_MODE} {
		if err := netlink.LinkSetXdpFdWithFlags(l, -1, flags); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("remove XDP program from %s: %w", iface, err)
		}
	}
	return nil
}

// Package mountcheck tells whether a directory's filesystem outlives the
// probe. Pins (--pin-path) and the flow state file only carry a restarted
// probe on if the bpffs or tmpfs they live on is still there afterwards.
// One that only this process's private mount namespace has mounted is not:
// `ip netns exec` gives the command a fresh mount namespace with a fresh
// /sys, so a bpffs mounted on /sys/fs/bpf under it (by the probe itself,
// bpf.EnsureBPFFS, or by `ip`) goes away with the command.
package mountcheck

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Where the two mount tables are read; variables for the tests.
var (
	selfMountinfo = "/proc/self/mountinfo"
	initMountinfo = "/proc/1/mountinfo"
)

// Outlives tells whether path's filesystem is one that processes outside
// this one's mount namespace can reach: false when path lives on a mount
// only this process's private mount namespace has (ip netns exec's /sys),
// which is torn down with it. why says what was found, for the warning.
//
// "Outside" is PID 1's mount namespace (the host's, or a container's
// init's): the filesystem outlives the probe if PID 1's mount table holds
// the very mount under path, or another mount of the same filesystem
// (same device, as a bind mount or mount propagation gives). path need
// not exist yet: its nearest existing ancestor is looked at.
//
// When the answer cannot be had (no access to PID 1's mount table, no
// /proc), ok is true and err says why: it does not cry wolf.
func Outlives(path string) (ok bool, why string, err error) {
	dir, err := existing(path)
	if err != nil {
		return true, "", err
	}
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, dir, 0, unix.STATX_MNT_ID, &stx); err != nil {
		return true, "", fmt.Errorf("statx %s: %w", dir, err)
	}
	if stx.Mask&unix.STATX_MNT_ID == 0 {
		return true, "", fmt.Errorf("statx %s: the kernel gives no mount ID (needs 5.8)", dir)
	}
	self, err := readMountinfo(selfMountinfo)
	if err != nil {
		return true, "", err
	}
	m, found := self.byID(stx.Mnt_id)
	if !found {
		return true, "", fmt.Errorf("mount %d under %s is not in %s", stx.Mnt_id, dir, selfMountinfo)
	}
	host, err := readMountinfo(initMountinfo)
	if err != nil {
		return true, "", err
	}
	if _, same := host.byID(m.id); same {
		return true, fmt.Sprintf("%s at %s is a mount of PID 1's mount namespace", m.fstype, m.point), nil
	}
	for _, o := range host {
		if o.dev == m.dev && o.fstype == m.fstype {
			return true, fmt.Sprintf("%s at %s (device %s) is also mounted at %s in PID 1's mount namespace", m.fstype, m.point, m.dev, o.point), nil
		}
	}
	why = fmt.Sprintf("%s at %s (device %s) is mounted only in this process's private mount namespace, not in PID 1's: it goes when this process exits", m.fstype, m.point, m.dev)
	if m.point == "/sys" || strings.HasPrefix(m.point, "/sys/") {
		why += " (ip netns exec mounts a private /sys)"
	}
	return false, why, nil
}

// existing returns path, or its nearest ancestor that exists.
func existing(path string) (string, error) {
	p, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	for {
		_, err := os.Stat(p)
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, os.ErrNotExist) || p == "/" {
			return "", err
		}
		p = filepath.Dir(p)
	}
}

type mount struct {
	id     uint64
	dev    string // major:minor: the filesystem (superblock)
	point  string
	fstype string
}

type mounts []mount

func (ms mounts) byID(id uint64) (mount, bool) {
	for _, m := range ms {
		if m.id == id {
			return m, true
		}
	}
	return mount{}, false
}

// readMountinfo parses a mountinfo file (proc_pid_mountinfo(5)):
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
func readMountinfo(name string) (mounts, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ms mounts
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := -1
		for i := 6; i < len(fields); i++ {
			if fields[i] == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+1 >= len(fields) {
			return nil, fmt.Errorf("%s: malformed line %q", name, sc.Text())
		}
		id, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: malformed line %q", name, sc.Text())
		}
		ms = append(ms, mount{id: id, dev: fields[2], point: unescape(fields[4]), fstype: fields[sep+1]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return ms, nil
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

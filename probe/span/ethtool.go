package span

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Features are read and set through the SIOCETHTOOL ioctl
// (ETHTOOL_GSSET_INFO, ETHTOOL_GSTRINGS, ETHTOOL_GFEATURES,
// ETHTOOL_SFEATURES), with golang.org/x/sys/unix, rather than a library:
//
//   - github.com/safchain/ethtool has Features() and Change(), but
//     Features() returns only the active bits: it cannot tell a "[fixed]"
//     feature (the `available` mask of ETHTOOL_GFEATURES) from a changeable
//     one, nor what was requested, and Restore needs both.
//   - github.com/mdlayher/ethtool (genetlink) does not cover features
//     (ETHTOOL_MSG_FEATURES_GET/SET).
//   - Either would add a module to go.mod; this is about 150 lines on a
//     dependency the project already has, and the ioctl works on every
//     kernel the probe supports (since 2.6.39), as `ethtool -k` itself
//     falls back to it.
//
// The calls act on the network namespace of the calling thread.

const (
	ethGstringLen = 32 // ETH_GSTRING_LEN
	ethSSFeatures = 4  // ETH_SS_FEATURES, the string set of feature names
)

// ifreqData is struct ifreq with ifr_data: the name, then a pointer.
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte // the rest of the 24-byte union
}

// ethtool runs one SIOCETHTOOL command on iface with buf as its argument
// (the command word first) and returns the ioctl's non-negative result.
func ethtool(fd int, iface string, buf []byte) (int, error) {
	if len(iface) >= unix.IFNAMSIZ {
		return 0, fmt.Errorf("interface name %q too long", iface)
	}
	ifr := &ifreqData{data: unsafe.Pointer(&buf[0])}
	copy(ifr.name[:], iface)
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(ifr)))
	runtime.KeepAlive(ifr)
	runtime.KeepAlive(buf)
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

// ethtoolSocket opens the socket the ioctls go through.
func ethtoolSocket() (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket for ethtool ioctls: %w", err)
	}
	return fd, nil
}

// featureTable is what ETHTOOL_GFEATURES returns, with the bit names.
type featureTable struct {
	names                                   []string
	available, requested, active, neverChgd []uint32 // one word per 32 features
}

func (t *featureTable) bit(words []uint32, i int) bool { return words[i/32]&(1<<(i%32)) != 0 }

func (t *featureTable) features() Features {
	fs := make(Features, len(t.names))
	for i, n := range t.names {
		if n == "" {
			continue
		}
		fs[n] = Feature{
			On:        t.bit(t.active, i),
			Requested: t.bit(t.requested, i),
			// As ethtool decides "[fixed]".
			Fixed: !t.bit(t.available, i) || t.bit(t.neverChgd, i),
		}
	}
	return fs
}

func (t *featureTable) index(name string) int {
	for i, n := range t.names {
		if n == name {
			return i
		}
	}
	return -1
}

var ne = binary.NativeEndian

// readFeatures reads the names and state of every feature of iface.
func readFeatures(fd int, iface string) (*featureTable, error) {
	// ETHTOOL_GSSET_INFO: struct ethtool_sset_info {u32 cmd, reserved;
	// u64 sset_mask; u32 data[]} -> data[0] is the number of features.
	info := make([]byte, 16+4)
	ne.PutUint32(info[0:], unix.ETHTOOL_GSSET_INFO)
	ne.PutUint64(info[8:], 1<<ethSSFeatures)
	if _, err := ethtool(fd, iface, info); err != nil {
		return nil, fmt.Errorf("ETHTOOL_GSSET_INFO: %w", err)
	}
	if ne.Uint64(info[8:])&(1<<ethSSFeatures) == 0 {
		return nil, errors.New("the kernel reports no feature names (ETH_SS_FEATURES)")
	}
	n := int(ne.Uint32(info[16:]))
	if n <= 0 || n > 4096 {
		return nil, fmt.Errorf("ETHTOOL_GSSET_INFO: implausible feature count %d", n)
	}

	// ETHTOOL_GSTRINGS: struct ethtool_gstrings {u32 cmd, string_set, len; u8 data[]}.
	strs := make([]byte, 12+n*ethGstringLen)
	ne.PutUint32(strs[0:], unix.ETHTOOL_GSTRINGS)
	ne.PutUint32(strs[4:], ethSSFeatures)
	ne.PutUint32(strs[8:], uint32(n))
	if _, err := ethtool(fd, iface, strs); err != nil {
		return nil, fmt.Errorf("ETHTOOL_GSTRINGS: %w", err)
	}
	t := &featureTable{names: make([]string, n)}
	for i := range n {
		s := strs[12+i*ethGstringLen : 12+(i+1)*ethGstringLen]
		if j := bytes.IndexByte(s, 0); j >= 0 {
			s = s[:j]
		}
		t.names[i] = string(s)
	}

	// ETHTOOL_GFEATURES: struct ethtool_gfeatures {u32 cmd, size; blocks[size]}
	// with blocks of {available, requested, active, never_changed}.
	words := (n + 31) / 32
	gf := make([]byte, 8+words*16)
	ne.PutUint32(gf[0:], unix.ETHTOOL_GFEATURES)
	ne.PutUint32(gf[4:], uint32(words))
	if _, err := ethtool(fd, iface, gf); err != nil {
		return nil, fmt.Errorf("ETHTOOL_GFEATURES: %w", err)
	}
	for _, p := range []*[]uint32{&t.available, &t.requested, &t.active, &t.neverChgd} {
		*p = make([]uint32, words)
	}
	for w := range words {
		b := gf[8+w*16:]
		t.available[w] = ne.Uint32(b[0:])
		t.requested[w] = ne.Uint32(b[4:])
		t.active[w] = ne.Uint32(b[8:])
		t.neverChgd[w] = ne.Uint32(b[12:])
	}
	return t, nil
}

// GetFeatures reads the feature set of iface (in the calling thread's
// network namespace), as `ethtool -k` shows it.
func GetFeatures(iface string) (Features, error) {
	fd, err := ethtoolSocket()
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	t, err := readFeatures(fd, iface)
	if err != nil {
		return nil, fmt.Errorf("%s: read offload features: %w", iface, err)
	}
	return t.features(), nil
}

// SetFeatures asks for each named feature to be on or off, in one
// ETHTOOL_SFEATURES call, like `ethtool -K`. The driver may refuse or
// adjust some (the kernel then answers ETHTOOL_F_WISH): read the features
// again to see what took effect.
func SetFeatures(iface string, want map[string]bool) error {
	if len(want) == 0 {
		return nil
	}
	fd, err := ethtoolSocket()
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	t, err := readFeatures(fd, iface)
	if err != nil {
		return fmt.Errorf("%s: read offload features: %w", iface, err)
	}
	words := len(t.active)
	valid := make([]uint32, words)
	req := make([]uint32, words)
	for name, on := range want {
		i := t.index(name)
		if i < 0 {
			return fmt.Errorf("%s: the kernel knows no feature %q", iface, name)
		}
		valid[i/32] |= 1 << (i % 32)
		if on {
			req[i/32] |= 1 << (i % 32)
		}
	}
	// ETHTOOL_SFEATURES: struct ethtool_sfeatures {u32 cmd, size; blocks[size]}
	// with blocks of {valid, requested}.
	sf := make([]byte, 8+words*8)
	ne.PutUint32(sf[0:], unix.ETHTOOL_SFEATURES)
	ne.PutUint32(sf[4:], uint32(words))
	for w := range words {
		ne.PutUint32(sf[8+w*8:], valid[w])
		ne.PutUint32(sf[12+w*8:], req[w])
	}
	r, err := ethtool(fd, iface, sf)
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("%s: change offload features: permission denied: run as root or grant CAP_NET_ADMIN", iface)
		}
		return fmt.Errorf("%s: change offload features (ETHTOOL_SFEATURES): %w", iface, err)
	}
	if r&unix.ETHTOOL_F_UNSUPPORTED != 0 {
		return fmt.Errorf("%s: the driver cannot change some of %v", iface, keys(want))
	}
	return nil
}

// Driver returns the driver name of iface (ETHTOOL_GDRVINFO), as
// `ethtool -i` shows it: "veth", "mlx5_core", "ice", ...
func Driver(iface string) (string, error) {
	fd, err := ethtoolSocket()
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	info, err := unix.IoctlGetEthtoolDrvinfo(fd, iface)
	if err != nil {
		return "", fmt.Errorf("%s: driver info (ETHTOOL_GDRVINFO): %w", iface, err)
	}
	return unix.ByteSliceToString(info.Driver[:]), nil
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

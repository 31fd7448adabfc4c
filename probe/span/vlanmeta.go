package span

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// VLANTagDrivers are the drivers (as ETHTOOL_GDRVINFO names them) that
// implement xmo_rx_vlan_tag, the driver side of the
// bpf_xdp_metadata_rx_vlan_tag kfunc, in mainline Linux. All three came
// with the kfunc itself in Linux 6.8 (Larysa Zaremba's "XDP metadata via
// kfuncs for ice + VLAN hint" series): commits e6795330f88b "xdp: Add VLAN
// tag hint", 714ed949c6f3 "ice: Implement VLAN tag hint", fca783799f64
// "veth: Implement VLAN tag XDP hint", 7978bad4b6b9 "mlx5: implement VLAN
// tag XDP hint". An i40e implementation was posted in March 2026
// ("i40e: add support for bpf_xdp_metadata_rx_vlan_tag()", iwl-next) and
// is not in this table. The table is only a fallback: VLANMetadata asks
// the kernel first.
var VLANTagDrivers = map[string]bool{"veth": true, "mlx5_core": true, "ice": true}

// From include/uapi/linux/netdev.h.
const (
	netdevCmdDevGet              = 1 // NETDEV_CMD_DEV_GET
	netdevADevIfindex            = 1 // NETDEV_A_DEV_IFINDEX
	netdevADevXDPRxMetadataFeats = 5 // NETDEV_A_DEV_XDP_RX_METADATA_FEATURES (u64)
	netdevXDPRxMetadataVLANTag   = 4 // NETDEV_XDP_RX_METADATA_VLAN_TAG
	netdevXDPRxMetadataTimestamp = 1 // NETDEV_XDP_RX_METADATA_TIMESTAMP
	netdevXDPRxMetadataHash      = 2 // NETDEV_XDP_RX_METADATA_HASH
)

// The kfunc appeared in Linux 6.8.
const vlanTagKernelMajor, vlanTagKernelMinor = 6, 8

// VLANMetadata says whether the driver of iface offers a stripped VLAN
// tag to XDP as metadata (the bpf_xdp_metadata_rx_vlan_tag kfunc), and
// why, in one line. It asks the kernel: the "netdev" generic netlink
// family reports, per device, which XDP RX metadata kfuncs its driver
// implements (xdp-rx-metadata-features, as `ynl --family netdev --do
// dev-get` shows it). Kernels too old to say are judged from their
// version and VLANTagDrivers. Runs in the calling thread's network
// namespace. Even when true, a tag is there only if the NIC stripped it
// (rxvlan on) and the XDP program asks for it.
func VLANMetadata(iface string) (bool, string) {
	l, err := netlink.LinkByName(iface)
	if err != nil {
		return false, fmt.Sprintf("interface %q not found", iface)
	}
	driver, err := Driver(iface)
	if err != nil {
		driver = ""
	}
	feats, known := xdpRxMetadataFeatures(l.Attrs().Index)
	return vlanMetaDecision(kernelVersion(), driver, feats, known)
}

// vlanMetaDecision is VLANMetadata's judgement: feats are the
// xdp-rx-metadata-features bits, known whether the kernel reported them.
func vlanMetaDecision(kernel [2]int, driver string, feats uint64, known bool) (bool, string) {
	name := driver
	if name == "" {
		name = "the driver"
	}
	kfunc := "bpf_xdp_metadata_rx_vlan_tag"
	if kernel[0] < vlanTagKernelMajor || (kernel[0] == vlanTagKernelMajor && kernel[1] < vlanTagKernelMinor) {
		return false, fmt.Sprintf("Linux %d.%d has no %s kfunc (6.8+): keep rxvlan off to record VLAN ids", kernel[0], kernel[1], kfunc)
	}
	if known {
		if feats&netdevXDPRxMetadataVLANTag != 0 {
			return true, fmt.Sprintf("%s offers the VLAN tag to XDP (%s; the kernel lists vlan-tag in its xdp-rx-metadata-features)", name, kfunc)
		}
		return false, fmt.Sprintf("%s does not offer the VLAN tag to XDP (its xdp-rx-metadata-features: %s): keep rxvlan off to record VLAN ids", name, metaNames(feats))
	}
	if VLANTagDrivers[driver] {
		return true, fmt.Sprintf("%s implements %s (known driver; this kernel does not report xdp-rx-metadata-features)", name, kfunc)
	}
	return false, fmt.Sprintf("%s is not known to implement %s (only veth, mlx5_core and ice are): keep rxvlan off to record VLAN ids", name, kfunc)
}

func metaNames(f uint64) string {
	var s []string
	for _, b := range []struct {
		bit  uint64
		name string
	}{{netdevXDPRxMetadataTimestamp, "timestamp"}, {netdevXDPRxMetadataHash, "hash"}, {netdevXDPRxMetadataVLANTag, "vlan-tag"}} {
		if f&b.bit != 0 {
			s = append(s, b.name)
			f &^= b.bit
		}
	}
	if f != 0 {
		s = append(s, fmt.Sprintf("%#x", f))
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ",")
}

// xdpRxMetadataFeatures asks the netdev generic netlink family (Linux
// 6.3+; the attribute 6.6+) for the XDP RX metadata features of ifindex.
func xdpRxMetadataFeatures(ifindex int) (uint64, bool) {
	fam, err := netlink.GenlFamilyGet("netdev")
	if err != nil {
		return 0, false
	}
	req := nl.NewNetlinkRequest(int(fam.ID), 0)
	req.AddData(genlHeader{netdevCmdDevGet, 1, 0, 0})
	req.AddData(nl.NewRtAttr(netdevADevIfindex, nl.Uint32Attr(uint32(ifindex))))
	msgs, err := req.Execute(unix.NETLINK_GENERIC, 0)
	if err != nil || len(msgs) != 1 || len(msgs[0]) < nl.SizeofGenlmsg {
		return 0, false
	}
	attrs, err := nl.ParseRouteAttr(msgs[0][nl.SizeofGenlmsg:])
	if err != nil {
		return 0, false
	}
	for _, a := range attrs {
		if a.Attr.Type == netdevADevXDPRxMetadataFeats && len(a.Value) >= 8 {
			return ne.Uint64(a.Value), true
		}
	}
	return 0, false
}

// genlHeader is struct genlmsghdr: cmd, version, reserved. nl.Genlmsg is
// not used: its Serialize reads 4 bytes from a 2-byte struct, so the
// reserved field carries whatever follows in memory, and the kernel's
// strict validation answers EINVAL when that is not zero.
type genlHeader [4]byte

func (h genlHeader) Len() int          { return len(h) }
func (h genlHeader) Serialize() []byte { return h[:] }

// kernelVersion is the running kernel's major and minor version.
func kernelVersion() [2]int {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return [2]int{}
	}
	return parseRelease(unix.ByteSliceToString(u.Release[:]))
}

func parseRelease(r string) [2]int {
	var v [2]int
	parts := strings.SplitN(r, ".", 3)
	for i := 0; i < 2 && i < len(parts); i++ {
		end := 0
		for end < len(parts[i]) && parts[i][end] >= '0' && parts[i][end] <= '9' {
			end++
		}
		v[i], _ = strconv.Atoi(parts[i][:end])
	}
	return v
}

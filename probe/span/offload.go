package span

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Feature is the state of one netdev feature, as ETHTOOL_GFEATURES reports
// it and `ethtool -k` prints it.
type Feature struct {
	On        bool // active now
	Requested bool // what was asked for (ethtool prints "[requested on]" when it differs from On)
	Fixed     bool // the driver does not let it be changed (ethtool's "[fixed]")
}

// Features maps the kernel's feature names (the ETH_SS_FEATURES strings:
// "rx-lro", "rx-vlan-hw-parse", ...) to their state.
type Features map[string]Feature

// Finding is one offload that hides traffic or tags from XDP.
type Finding struct {
	Feature string // kernel name, e.g. "rx-vlan-hw-parse"
	On      bool   // its state when checked
	Fixed   bool   // cannot be changed: Prepare leaves it alone
	// TurnOff is set when the caller asked for fixes and the feature can
	// be changed: Prepare turns it off (and Restore back on).
	TurnOff bool
	Message string // one line: what it does to the counts and what to do
}

// offload is one feature that matters to an XDP flow probe.
type offload struct {
	name   string // kernel name
	label  string // how the message names it
	ethArg string // the name `ethtool -K` takes
	harm   string // what it does, completing "<label> is on: "
}

// offloads lists what is checked, in the order findings are reported.
//
// Software GRO (rx-gro) is not among them: it runs after native XDP, and
// the kernel bypasses it for devices with a generic XDP program
// (netif_elide_gro), so XDP sees every frame either way.
var offloads = []offload{
	{"rx-lro", "large-receive-offload (LRO)", "lro",
		"the NIC merges TCP segments before XDP sees them, so packets are under-counted, and most drivers refuse native XDP while it is on"},
	{"rx-gro-hw", "hardware GRO (rx-gro-hw)", "rx-gro-hw",
		"the NIC merges segments before XDP sees them, so packets are under-counted, and drivers such as virtio_net refuse XDP while it is on"},
	{"rx-vlan-hw-parse", "RX VLAN offload (rxvlan)", "rxvlan",
		"the NIC strips the 802.1Q tag before XDP sees the frame, so flows lose their VLAN id"},
	{"rx-vlan-stag-hw-parse", "RX 802.1ad S-tag offload (rx-vlan-stag-hw-parse)", "rx-vlan-stag-hw-parse",
		"the NIC strips the outer 802.1ad (QinQ) tag before XDP sees the frame, so flows lose their outer VLAN id"},
}

// Checked lists the kernel names of the features Check looks at.
func Checked() []string {
	names := make([]string, len(offloads))
	for i, o := range offloads {
		names[i] = o.name
	}
	return names
}

// Check decides, from a feature set alone, which offloads on iface hide
// traffic or tags from XDP and what to do about each: one Finding per
// feature that is on. With fix, changeable ones are marked TurnOff and the
// message says so; without, it gives the ethtool command and --fix-offloads.
// Features the driver does not know are skipped.
func Check(iface string, fs Features, fix bool) []Finding {
	var out []Finding
	for _, o := range offloads {
		f, ok := fs[o.name]
		if !ok || !f.On {
			continue
		}
		fd := Finding{Feature: o.name, On: true, Fixed: f.Fixed}
		switch {
		case f.Fixed:
			fd.Message = fmt.Sprintf("%s: %s is on and fixed by the driver (ethtool shows [fixed]: it cannot be turned off, not even with --fix-offloads): %s; %s",
				iface, o.label, o.harm, fixedAdvice(o.name))
		case fix:
			fd.TurnOff = true
			fd.Message = fmt.Sprintf("%s: %s is on: %s; turning it off (--fix-offloads), it is turned back on at exit",
				iface, o.label, o.harm)
		default:
			fd.Message = fmt.Sprintf("%s: %s is on: %s; run `ethtool -K %s %s off` or pass --fix-offloads",
				iface, o.label, o.harm, iface, o.ethArg)
		}
		out = append(out, fd)
	}
	return out
}

// Warnings reads iface's offloads and returns what Check finds, without
// changing anything: for a probe not in --span mode. vlanMeta: as
// Options.VLANMetadata.
func Warnings(iface string, vlanMeta bool) []Finding {
	fs, err := GetFeatures(iface)
	if err != nil {
		return nil
	}
	return relevant(iface, vlanMeta, Check(iface, fs, false))
}

// vethExempt is false in the tests, which toggle veth's offloads as the
// stand-in for a NIC's.
var vethExempt = true

// relevant drops the VLAN findings when they do not apply: the program
// reads stripped tags from the driver (vlanMeta), or iface is a veth,
// whose rxvlan does not decide what XDP sees (tags in the frame stay
// there; only a tag the sender offloaded is out of band, and the VLAN
// metadata reads that one).
func relevant(iface string, vlanMeta bool, fs []Finding) []Finding {
	if !vlanMeta {
		if !vethExempt {
			return fs
		}
		if d, err := Driver(iface); err != nil || d != "veth" {
			return fs
		}
	}
	out := fs[:0]
	for _, f := range fs {
		if f.Feature != "rx-vlan-hw-parse" && f.Feature != "rx-vlan-stag-hw-parse" {
			out = append(out, f)
		}
	}
	return out
}

func fixedAdvice(name string) string {
	switch name {
	case "rx-vlan-hw-parse", "rx-vlan-stag-hw-parse":
		return "VLAN ids are recorded only if the driver offers the tag as XDP metadata (bpf_xdp_metadata_rx_vlan_tag, Linux 6.8+), otherwise look for a driver or firmware setting"
	}
	return "look for a driver module parameter or firmware setting that disables it, or capture on another NIC"
}

// ethtoolAliases maps the names `ethtool -k` prints for the old
// single-bit offloads to the kernel's feature names. Groups (tx-checksumming,
// scatter-gather, tcp-segmentation-offload) are followed by their members
// under kernel names, so they need no mapping.
var ethtoolAliases = map[string]string{
	"rx-checksumming":              "rx-checksum",
	"generic-segmentation-offload": "tx-generic-segmentation",
	"generic-receive-offload":      "rx-gro",
	"large-receive-offload":        "rx-lro",
	"rx-vlan-offload":              "rx-vlan-hw-parse",
	"tx-vlan-offload":              "tx-vlan-hw-insert",
	"ntuple-filters":               "rx-ntuple-filter",
	"receive-hashing":              "rx-hashing",
}

// ParseEthtoolK reads the text `ethtool -k IFACE` prints into a feature
// set under the kernel's names, and returns the interface name from its
// "Features for IFACE:" line.
func ParseEthtoolK(r io.Reader) (string, Features, error) {
	fs := Features{}
	iface := ""
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if s, ok := strings.CutPrefix(line, "Features for "); ok {
			iface = strings.TrimSuffix(s, ":")
			continue
		}
		name, rest, ok := strings.Cut(line, ":")
		if !ok {
			return "", nil, fmt.Errorf("line %d: %q: want NAME: on|off [fixed] [requested on|off]", n, line)
		}
		words := strings.Fields(rest)
		if len(words) == 0 || (words[0] != "on" && words[0] != "off") {
			return "", nil, fmt.Errorf("line %d: %q: want on or off after the colon", n, line)
		}
		f := Feature{On: words[0] == "on"}
		f.Requested = f.On
		for i := 1; i < len(words); i++ {
			switch {
			case words[i] == "[fixed]":
				f.Fixed = true
			case words[i] == "[requested" && i+1 < len(words):
				f.Requested = strings.TrimSuffix(words[i+1], "]") == "on"
				i++
			default:
				return "", nil, fmt.Errorf("line %d: %q: unknown annotation %q", n, line, words[i])
			}
		}
		if k, ok := ethtoolAliases[name]; ok {
			name = k
		}
		fs[name] = f
	}
	if err := sc.Err(); err != nil {
		return "", nil, err
	}
	if len(fs) == 0 {
		return "", nil, fmt.Errorf("no features found: want the output of `ethtool -k IFACE`")
	}
	return iface, fs, nil
}

// String prints the set sorted by name, one "name: on|off [fixed]" a line.
func (fs Features) String() string {
	names := make([]string, 0, len(fs))
	for n := range fs {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		f := fs[n]
		fmt.Fprintf(&b, "%s: %s", n, onOff(f.On))
		if f.Fixed {
			b.WriteString(" [fixed]")
		}
		if f.Requested != f.On {
			fmt.Fprintf(&b, " [requested %s]", onOff(f.Requested))
		}
		b.WriteByte('\n')
	}
	return b.String()
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

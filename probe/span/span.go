// Package span makes a capture interface ready for a SPAN/mirror port or a
// network TAP: up, promiscuous (a mirror port delivers frames addressed to
// other hosts, which a NIC drops unless promiscuous), and without the
// offloads that hide traffic or VLAN tags from XDP. Everything it changes
// it puts back on Restore, exactly as it was.
//
// The offload decisions are a pure function over a feature set (Check),
// tested against recorded `ethtool -k` output; reading and changing the
// features goes through the SIOCETHTOOL ioctl (ethtool.go).
package span

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Options of Prepare.
type Options struct {
	// Promisc puts the interface in promiscuous mode, so frames addressed
	// to other hosts reach XDP on a real NIC.
	Promisc bool
	// FixOffloads turns off the offloads Check reports, where the driver
	// lets it; without it they are only reported, with the command to run.
	FixOffloads bool
	// VLANMetadata says the program reads stripped tags from the driver
	// (bpf_xdp_metadata_rx_vlan_tag): VLAN stripping is then harmless.
	VLANMetadata bool
}

// Prepared is an interface made ready by Prepare, with what Restore puts
// back.
type Prepared struct {
	Iface string
	// Features as read before any change (nil if the driver has no
	// ethtool feature support).
	Features Features
	// Findings are the offloads that hide traffic or tags, one line each,
	// already logged.
	Findings []Finding

	log        *slog.Logger
	ifindex    int
	broughtUp  bool            // it was down: Restore takes it down
	promiscOn  bool            // promiscuous was off: Restore turns it off
	featBefore map[string]bool // features changed -> their requested state before
}

// Prepare makes iface ready for capture from a mirror port or TAP: it
// brings the interface up if it is down, turns promiscuous mode on (with
// opt.Promisc) if it is off, checks the offloads that hide traffic or VLAN
// tags from XDP and logs one line for each with what to do, and with
// opt.FixOffloads turns them off. It works in the calling thread's network
// namespace. On error nothing is left changed. Call Restore at exit.
func Prepare(iface string, opt Options, log *slog.Logger) (_ *Prepared, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l, err := netlink.LinkByName(iface)
	if err != nil {
		return nil, fmt.Errorf("interface %q not found: check the name with `ip link` (and the network namespace)", iface)
	}
	p := &Prepared{Iface: iface, log: log, ifindex: l.Attrs().Index}
	defer func() {
		if err != nil {
			if rerr := p.Restore(); rerr != nil {
				log.Error("could not undo the changes to the interface", "iface", iface, "err", rerr)
			}
		}
	}()

	if err := p.offloads(opt.FixOffloads, opt.VLANMetadata); err != nil {
		return nil, err
	}

	flags := l.Attrs().RawFlags
	if flags&unix.IFF_UP == 0 {
		log.Info("capture interface is down: bringing it up (it is taken down again at exit)", "iface", iface)
		if err := netlink.LinkSetUp(l); err != nil {
			return nil, linkErr(iface, "bring up", err)
		}
		p.broughtUp = true
	}
	// IFF_PROMISC in the link flags is the administrative flag (dev->gflags,
	// what `ip link set promisc` and netlink.SetPromiscOn set), not the count
	// packet sockets hold: a tcpdump that is running does not make us skip
	// it, and turning it off at exit leaves tcpdump's count alone.
	if opt.Promisc && flags&unix.IFF_PROMISC == 0 {
		if err := netlink.SetPromiscOn(l); err != nil {
			return nil, linkErr(iface, "set promiscuous mode on", err)
		}
		p.promiscOn = true
		log.Info("promiscuous mode on: frames addressed to other hosts are counted (turned off again at exit)", "iface", iface)
	}
	return p, nil
}

// offloads reads the features, logs the findings and, with fix, turns off
// what can be turned off.
func (p *Prepared) offloads(fix, vlanMeta bool) error {
	fs, err := GetFeatures(p.Iface)
	if err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENODEV) {
			p.log.Warn("cannot read the offload settings of the interface: LRO and VLAN stripping not checked", "iface", p.Iface, "err", err)
			return nil
		}
		return err
	}
	p.Features = fs
	p.Findings = relevant(p.Iface, vlanMeta, Check(p.Iface, fs, fix))
	want := map[string]bool{}
	before := map[string]bool{}
	for _, f := range p.Findings {
		if f.TurnOff {
			p.log.Info(f.Message, "iface", p.Iface, "feature", f.Feature)
			want[f.Feature] = false
			before[f.Feature] = fs[f.Feature].Requested
		} else {
			p.log.Warn(f.Message, "iface", p.Iface, "feature", f.Feature)
		}
	}
	if len(want) == 0 {
		return nil
	}
	// What was asked for is recorded before asking: even a refused change
	// leaves the request (wanted_features) changed, and Restore puts that back.
	p.featBefore = before
	if err := SetFeatures(p.Iface, want); err != nil {
		return err
	}
	after, err := GetFeatures(p.Iface)
	if err != nil {
		return err
	}
	for name := range want {
		if after[name].On {
			p.log.Warn("the driver did not turn the offload off: "+name+" is still on", "iface", p.Iface, "feature", name)
		}
	}
	return nil
}

// Changed reports whether Prepare changed anything that Restore has to put
// back. Restore needs CAP_NET_ADMIN: a probe that drops its capabilities
// after attaching must keep that one while Changed is true.
func (p *Prepared) Changed() bool {
	return p != nil && (p.broughtUp || p.promiscOn || len(p.featBefore) > 0)
}

// Restore puts back what Prepare changed, and only that: promiscuous mode
// off if it was off, the offloads as they were requested, the interface
// down if it was down. It can be called more than once.
func (p *Prepared) Restore() error {
	if p == nil {
		return nil
	}
	var errs []error
	l, err := netlink.LinkByIndex(p.ifindex)
	if err != nil {
		if p.Changed() {
			return fmt.Errorf("restore %s: interface gone: %w", p.Iface, err)
		}
		return nil
	}
	if p.promiscOn {
		if err := netlink.SetPromiscOff(l); err != nil {
			errs = append(errs, linkErr(p.Iface, "set promiscuous mode off", err))
		} else {
			p.promiscOn = false
			p.log.Info("promiscuous mode off again", "iface", p.Iface)
		}
	}
	if len(p.featBefore) > 0 {
		if err := SetFeatures(p.Iface, p.featBefore); err != nil {
			errs = append(errs, err)
		} else {
			p.log.Info("offloads restored", "iface", p.Iface, "features", keys(p.featBefore))
			p.featBefore = nil
		}
	}
	if p.broughtUp {
		if err := netlink.LinkSetDown(l); err != nil {
			errs = append(errs, linkErr(p.Iface, "take down", err))
		} else {
			p.broughtUp = false
			p.log.Info("capture interface down again, as it was", "iface", p.Iface)
		}
	}
	return errors.Join(errs...)
}

func linkErr(iface, what string, err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%s %s: permission denied: run as root or grant CAP_NET_ADMIN", what, iface)
	}
	return fmt.Errorf("%s %s: %w", what, iface, err)
}

// Package testnet builds the throwaway networks that tests and `make demo`
// send traffic across: two network namespaces joined by a veth pair, so
// nothing ever touches the host's own interfaces. Everything it creates is
// removed by Close.
package testnet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Pair is two namespaces, "a" and "b", joined by a veth pair: frames sent
// out of A arrive on B.
type Pair struct {
	Name         string // prefix of the namespaces and links
	A, B         netns.NsHandle
	LinkA, LinkB string // veth names, inside their namespaces
	IfindexA     int
	IfindexB     int
	MACA, MACB   net.HardwareAddr
	spokes       []*Spoke // removed by Close
}

// Options of NewPair.
type Options struct {
	// AddrA and AddrB, when valid, are assigned to the veth ends
	// (198.18.0.0/15 or 2001:db8::/32 only), with a static neighbour entry
	// on A for B so no ARP/NDP is needed before the first packet.
	AddrA, AddrB netip.Prefix
	// MTU of both veth ends; 0 means 1500. Jumbo frames (9000) reach a
	// native XDP program on B as multi-buffer frames.
	MTU int
	// QueueMismatch gives A's end 2 transmit queues and B's 1 receive
	// queue: veth then refuses native XDP on B (ENOSPC, "XDP expects
	// number of rx queues not less than peer tx queues"), a driver
	// refusal tests can provoke. Generic mode still works.
	QueueMismatch bool
}

// NewPair creates the namespaces <name>-a and <name>-b. The names must be
// unique on the host; tests use their own. IPv6 is disabled on both ends
// unless an IPv6 address is asked for, so the kernel sends nothing
// (router solicitations, MLD) of its own.
func NewPair(name string, opt Options) (p *Pair, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("creating network namespaces needs root")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("current netns: %w", err)
	}
	defer orig.Close()
	defer netns.Set(orig)

	p = &Pair{Name: name, LinkA: name + "-a", LinkB: name + "-b", A: -1, B: -1}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	// Leftovers of a run that was killed.
	netns.DeleteNamed(name + "-a")
	netns.DeleteNamed(name + "-b")
	if p.A, err = netns.NewNamed(name + "-a"); err != nil {
		return nil, fmt.Errorf("create netns: %w", err)
	}
	if p.B, err = netns.NewNamed(name + "-b"); err != nil {
		return nil, fmt.Errorf("create netns: %w", err)
	}
	if err := netns.Set(orig); err != nil {
		return nil, err
	}

	ha, err := netlink.NewHandleAt(p.A)
	if err != nil {
		return nil, err
	}
	defer ha.Close()
	hb, err := netlink.NewHandleAt(p.B)
	if err != nil {
		return nil, err
	}
	defer hb.Close()

	mtu := opt.MTU
	if mtu == 0 {
		mtu = 1500
	}
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: p.LinkA, MTU: mtu},
		PeerMTU:       uint32(mtu),
		PeerName:      p.LinkB,
		PeerNamespace: netlink.NsFd(int(p.B)),
	}
	if opt.QueueMismatch {
		veth.NumTxQueues, veth.NumRxQueues = 2, 2
		veth.PeerNumTxQueues, veth.PeerNumRxQueues = 1, 1
	}
	if err := ha.LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("create veth pair: %w", err)
	}
	la, err := ha.LinkByName(p.LinkA)
	if err != nil {
		return nil, err
	}
	lb, err := hb.LinkByName(p.LinkB)
	if err != nil {
		return nil, err
	}
	p.IfindexA, p.IfindexB = la.Attrs().Index, lb.Attrs().Index
	p.MACA, p.MACB = la.Attrs().HardwareAddr, lb.Attrs().HardwareAddr

	// Loopback up, so tests can run a collector inside a namespace.
	for _, h := range []*netlink.Handle{ha, hb} {
		lo, err := h.LinkByName("lo")
		if err != nil {
			return nil, err
		}
		if err := h.LinkSetUp(lo); err != nil {
			return nil, fmt.Errorf("loopback up: %w", err)
		}
	}

	v6 := opt.AddrA.Addr().Is6() || opt.AddrB.Addr().Is6()
	for _, s := range []struct {
		ns   netns.NsHandle
		h    *netlink.Handle
		link netlink.Link
		addr netip.Prefix
	}{{p.A, ha, la, opt.AddrA}, {p.B, hb, lb, opt.AddrB}} {
		if !v6 {
			if err := p.sysctl(s.ns, filepath.Join("net/ipv6/conf", s.link.Attrs().Name, "disable_ipv6"), "1"); err != nil {
				return nil, err
			}
		}
		if s.addr.IsValid() {
			a := &netlink.Addr{IPNet: &net.IPNet{IP: s.addr.Addr().AsSlice(), Mask: net.CIDRMask(s.addr.Bits(), s.addr.Addr().BitLen())}}
			if v6 {
				a.Flags = unix.IFA_F_NODAD // usable at once
			}
			if err := s.h.AddrAdd(s.link, a); err != nil {
				return nil, fmt.Errorf("address %s: %w", s.addr, err)
			}
		}
		if err := s.h.LinkSetUp(s.link); err != nil {
			return nil, fmt.Errorf("link up: %w", err)
		}
	}
	if err := WaitUp(ha, p.LinkA); err != nil {
		return nil, err
	}
	if err := WaitUp(hb, p.LinkB); err != nil {
		return nil, err
	}
	if opt.AddrB.IsValid() {
		neigh := &netlink.Neigh{LinkIndex: p.IfindexA, State: netlink.NUD_PERMANENT,
			IP: opt.AddrB.Addr().AsSlice(), HardwareAddr: p.MACB}
		if err := ha.NeighAdd(neigh); err != nil {
			return nil, fmt.Errorf("static neighbour: %w", err)
		}
	}
	return p, nil
}

// waitUp waits until the kernel reports the link operationally up. Until
// its link watcher has run (deferred work, late on a loaded machine) the
// device transmits through noop_qdisc, which drops every frame while a
// packet socket's write still returns success: a test's first frames
// would vanish unseen.
func WaitUp(h *netlink.Handle, name string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		var l netlink.Link
		var err error
		if h == nil {
			l, err = netlink.LinkByName(name)
		} else {
			l, err = h.LinkByName(name)
		}
		if err != nil {
			return err
		}
		if l.Attrs().OperState == netlink.OperUp {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("link %s: operational state %v 10 s after link up", name, l.Attrs().OperState)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sysctl writes /proc/sys/<key> inside ns.
func (p *Pair) sysctl(ns netns.NsHandle, key, val string) error {
	return p.In(ns, func() error {
		return os.WriteFile(filepath.Join("/proc/sys", key), []byte(val), 0o644)
	})
}

// In runs fn on an OS thread that is inside ns. Sockets and links created
// in fn stay in ns.
func (p *Pair) In(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	// A fresh goroutine whose thread is thrown away afterwards: a thread
	// left in another namespace must never run other goroutines.
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("enter netns: %w", err)
			return // the thread exits with the goroutine, still locked
		}
		errc <- fn()
	}()
	return <-errc
}

// ListenUDP opens a UDP socket on the loopback of ns (127.0.0.1, a free
// port): where a test's collector listens for a probe running in ns.
func (p *Pair) ListenUDP(ns netns.NsHandle) (conn *net.UDPConn, err error) {
	err = p.In(ns, func() error {
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		return err
	})
	return conn, err
}

// NsName is the name of side "a" or "b", for `ip netns exec`.
func (p *Pair) NsName(side string) string { return p.Name + "-" + side }

// Spoke is a third (fourth...) namespace joined by a veth to one of a
// pair's: with side a as a router, hosts behind it (tests of real TCP
// through a router whose traffic is mirrored to side b).
type Spoke struct {
	Ns      netns.NsHandle
	Name    string // the namespace's, for `ip netns exec`
	Link    string // the veth end inside the spoke
	HubLink string // the other end, inside the hub namespace
	Ifindex int    // Link's
	HubIdx  int    // HubLink's
}

// AddSpoke creates namespace <pair name>-<side> joined to hub (p.A or
// p.B) by a veth (<pair name>-<side> in the spoke, <pair name>-<side>h in
// the hub). Each of addrs is a spoke address (198.18.0.0/15 or
// 2001:db8::/32 only) paired with the hub's address of the same index in
// hubAddrs; the spoke's default route for each family goes through the
// hub's address, and both know each other's MAC (static neighbours).
// Close removes it.
func (p *Pair) AddSpoke(hub netns.NsHandle, side string, addrs, hubAddrs []netip.Prefix) (s *Spoke, err error) {
	if len(addrs) != len(hubAddrs) {
		return nil, fmt.Errorf("spoke %s: %d addresses, %d hub addresses", side, len(addrs), len(hubAddrs))
	}
	s = &Spoke{Ns: -1, Name: p.Name + "-" + side, Link: p.Name + "-" + side, HubLink: p.Name + "-" + side + "h"}
	netns.DeleteNamed(s.Name)      // a leftover of a run that was killed
	err = p.In(hub, func() error { // NewNamed enters the new namespace: on a thread thrown away
		ns, err := netns.NewNamed(s.Name)
		s.Ns = ns
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("create netns %s: %w", s.Name, err)
	}
	p.spokes = append(p.spokes, s)
	hs, err := netlink.NewHandleAt(s.Ns)
	if err != nil {
		return nil, err
	}
	defer hs.Close()
	hh, err := netlink.NewHandleAt(hub)
	if err != nil {
		return nil, err
	}
	defer hh.Close()
	if err := hh.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: s.HubLink}, PeerName: s.Link,
		PeerNamespace: netlink.NsFd(int(s.Ns))}); err != nil {
		return nil, fmt.Errorf("create veth %s: %w", s.Link, err)
	}
	ls, err := hs.LinkByName(s.Link)
	if err != nil {
		return nil, err
	}
	lh, err := hh.LinkByName(s.HubLink)
	if err != nil {
		return nil, err
	}
	s.Ifindex, s.HubIdx = ls.Attrs().Index, lh.Attrs().Index
	lo, err := hs.LinkByName("lo")
	if err != nil {
		return nil, err
	}
	for i, a := range addrs {
		for _, x := range []struct {
			h    *netlink.Handle
			link netlink.Link
			addr netip.Prefix
		}{{hs, ls, a}, {hh, lh, hubAddrs[i]}} {
			na := &netlink.Addr{IPNet: &net.IPNet{IP: x.addr.Addr().AsSlice(), Mask: net.CIDRMask(x.addr.Bits(), x.addr.Addr().BitLen())}}
			if x.addr.Addr().Is6() {
				na.Flags = unix.IFA_F_NODAD // usable at once
			}
			if err := x.h.AddrAdd(x.link, na); err != nil {
				return nil, fmt.Errorf("address %s: %w", x.addr, err)
			}
		}
	}
	for _, l := range []struct {
		h    *netlink.Handle
		link netlink.Link
	}{{hs, lo}, {hs, ls}, {hh, lh}} {
		if err := l.h.LinkSetUp(l.link); err != nil {
			return nil, fmt.Errorf("link up: %w", err)
		}
	}
	if err := WaitUp(hs, ls.Attrs().Name); err != nil {
		return nil, err
	}
	if err := WaitUp(hh, lh.Attrs().Name); err != nil {
		return nil, err
	}
	for i, gw := range hubAddrs {
		if err := hs.RouteAdd(&netlink.Route{LinkIndex: s.Ifindex, Gw: gw.Addr().AsSlice()}); err != nil {
			return nil, fmt.Errorf("spoke %s: default route via %s: %w", side, gw.Addr(), err)
		}
		// Static neighbours both ways, as NewPair's: no ARP or NDP
		// before a first packet (nor a solicitation lost to an IPv6
		// address that is not ready yet).
		for _, n := range []struct {
			h     *netlink.Handle
			link  int
			addr  netip.Addr
			other net.HardwareAddr
		}{{hs, s.Ifindex, gw.Addr(), lh.Attrs().HardwareAddr}, {hh, s.HubIdx, addrs[i].Addr(), ls.Attrs().HardwareAddr}} {
			if err := n.h.NeighAdd(&netlink.Neigh{LinkIndex: n.link, State: netlink.NUD_PERMANENT, IP: n.addr.AsSlice(), HardwareAddr: n.other}); err != nil {
				return nil, fmt.Errorf("spoke %s: static neighbour %s: %w", side, n.addr, err)
			}
		}
	}
	return s, nil
}

// Close removes both namespaces and the spokes; the veth pairs go with
// them.
func (p *Pair) Close() error {
	var errs []error
	names := []string{p.Name + "-a", p.Name + "-b"}
	for _, s := range p.spokes {
		if s.Ns.IsOpen() {
			s.Ns.Close()
		}
		names = append(names, s.Name)
	}
	for _, ns := range []netns.NsHandle{p.A, p.B} {
		if ns.IsOpen() {
			ns.Close()
		}
	}
	for _, n := range names {
		if err := netns.DeleteNamed(n); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

package main

import (
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/xdpflow/xdpflow/bpf"
	"github.com/xdpflow/xdpflow/internal/cli"
	"github.com/xdpflow/xdpflow/probe/attach"
	"github.com/xdpflow/xdpflow/probe/lifecycle"
)

// config is every setting of the probe (lifecycle.Config). Each is a
// flag, and the same key in the optional --config YAML file; the command
// line wins.
type config = lifecycle.Config

func newFlagSet(c *config) *pflag.FlagSet {
	fs := pflag.NewFlagSet("xdpflow-probe", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.StringSliceVarP(&c.Ifaces, "iface", "i", nil, "capture interface (repeatable or comma-separated; required)")
	fs.StringVar(&c.XDPMode, "xdp-mode", "auto", "auto (native, falling back to generic), native or generic")
	fs.StringVar(&c.Action, "action", "pass", "after counting: pass (inline tap) or drop (span/mirror port)")
	fs.BoolVar(&c.Span, "span", false, "capture from a SPAN/mirror port or TAP: bring the interfaces up, promiscuous mode, offload checks (implied by --action drop)")
	fs.BoolVar(&c.FixOffloads, "fix-offloads", false, "turn off LRO, hardware GRO and RX VLAN stripping on the capture interfaces, which hide frames or VLAN tags from XDP (restored at exit)")
	fs.BoolVar(&c.Force, "force", false, "replace an XDP program already on the interface")
	fs.BoolVar(&c.Detach, "detach", false, "remove the XDP program and its pins from the interfaces (-i) and exit; given exporters, export what the pinned tables hold first")
	fs.StringArrayVar(&c.IPFIX, "ipfix", nil, "IPFIX collector, udp://host:port, tcp://host:port or tcps://host:port (TLS, RFC 7011 section 11; see --ipfix-tls-*) (repeatable)")
	fs.Uint32Var(&c.IPFIXEnterprise, "ipfix-enterprise-number", 0, "IANA Private Enterprise Number (one you hold) to send xdpflow's own IPFIX IEs under: tunnel type, id and endpoints, mirror type (schemas/FIELDS.md); 0: not sent")
	fs.StringVar(&c.IPFIXTLS.CA, "ipfix-tls-ca", "", "PEM file of the CA that signed the tcps:// collectors' certificates (default: system roots)")
	fs.StringVar(&c.IPFIXTLS.Cert, "ipfix-tls-cert", "", "PEM client certificate, for tcps:// collectors that authenticate exporters (with --ipfix-tls-key)")
	fs.StringVar(&c.IPFIXTLS.Key, "ipfix-tls-key", "", "PEM private key of --ipfix-tls-cert")
	fs.StringVar(&c.IPFIXTLS.ServerName, "ipfix-tls-server-name", "", "name to verify in the tcps:// collectors' certificates (default: the host of each --ipfix URL)")
	fs.StringArrayVar(&c.NetFlow9, "netflow9", nil, "NetFlow v9 collector, udp://host:port (repeatable)")
	fs.BoolVar(&c.Stdout, "stdout", false, "print each exported flow as one JSON line")
	c.Kafka.AddFlags(fs, true)
	fs.DurationVar(&c.ActiveTimeout, "active-timeout", 60*time.Second, "a longer flow is exported in records of this length")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", 15*time.Second, "a flow with no packet for this long ends")
	fs.DurationVar(&c.DrainInterval, "drain-interval", time.Second, "how often the kernel tables are swapped and read (shortened automatically under table pressure)")
	fs.StringArrayVar(&c.LocalNets, "local-net", nil, "a local network (CIDR, repeatable): flows are marked ingress into or egress out of them (flowDirection, IE 61)")
	fs.StringVar(&c.Tunnels, "tunnels", "inner", "IP tunnels in the traffic (GRE, IP-in-IP, VXLAN, Geneve, GTP-U): inner (the flow is the innermost conversation, keyed with the tunnel id) or outer (the tunnel packets as they are)")
	fs.UintSliceVar(&c.VXLANPorts, "vxlan-port", []uint{bpf.PortVXLAN}, fmt.Sprintf("UDP destination port of VXLAN tunnels (repeatable, at most %d)", bpf.MaxTunnelPorts))
	fs.UintSliceVar(&c.GenevePorts, "geneve-port", []uint{bpf.PortGeneve}, fmt.Sprintf("UDP destination port of Geneve tunnels (repeatable, at most %d)", bpf.MaxTunnelPorts))
	fs.StringArrayVar(&c.MirrorEncaps, "mirror-encap", nil, "strip a remote-mirroring encapsulation and count the mirrored frame inside, keyed with its session (observationPointId): erspan, vxlan[:PORT], geneve[:PORT] or tzsp[:PORT] (repeatable)")
	fs.BoolVar(&c.MACs, "macs", false, "key flows by source and destination MAC address too, and export them (IE 56, 80): more flows")
	fs.BoolVar(&c.Biflow, "biflow", false, "pair the two directions of a conversation into one record (IPFIX: RFC 5103 reverse IEs; Kafka/JSON: reverse_* fields); many collectors ignore reverse IEs")
	fs.Uint32Var(&c.MaxFlows, "max-flows", bpf.DefaultMaxFlows, "kernel flow table size (flows active within one drain interval); kernel memory: 896 bytes a flow (two tables of two 224-byte slots; 928 with --mirror-encap, 992 with --macs)")
	fs.BoolVar(&c.TCPHealth, "tcp-health", true, "measure per TCP flow the client and server network delay (handshake), application latency, retransmitted, out-of-order and zero-window segments (a mirror port or TAP seeing both directions; about +14 ns per TCP packet, docs/benchmarks.md); --tcp-health=false: off")
	fs.Uint32Var(&c.TCPConversations, "tcp-conversations", bpf.DefaultTCPConversations, "TCP conversations whose handshake is tracked at once, and half the TCP flows whose sequence state is carried from one kernel table to the next (about 450 bytes each; when full, new handshakes are not timed, counted in xdpflow_probe_tcp_conversations_full_total, and flows not carried are counted in xdpflow_probe_tcp_seq_not_carried_total)")
	fs.Uint32Var(&c.SampleRate, "sample-rate", 0, "copy the head of 1 in N frames (0: off)")
	fs.Uint32Var(&c.SampleBytes, "sample-bytes", bpf.DefaultSampleBytes, "bytes of each sampled frame (at most 256)")
	fs.StringVar(&c.Pcap, "pcap", "", "write the sampled frame heads to this pcap file")
	fs.Uint32Var(&c.ObservationDomain, "observation-domain", 1, "IPFIX observation domain id / NetFlow v9 source id (non-zero)")
	fs.DurationVar(&c.TemplateRefresh, "template-refresh", 60*time.Second, "UDP: resend templates this often")
	fs.IntVar(&c.TemplateRefreshN, "template-refresh-messages", 1000, "UDP: ...or after this many messages, whichever first")
	fs.StringVar(&c.PinPath, "pin-path", bpf.DefaultPinRoot+"/<iface>", "bpffs directory for the maps and XDP links: a restarted probe carries on with the live tables, nothing uncounted (empty: no pinning; <iface> is the first -i)")
	fs.StringVar(&c.StateDir, "state-dir", "/run/xdpflow/<iface>", "tmpfs directory for the flow state that must outlive a crash: flows drained and records not yet exported (with --pin-path; empty: off; <iface> is the first -i)")
	fs.StringVar(&c.Metrics, "metrics", "127.0.0.1:9477", "serve Prometheus /metrics, /healthz and /readyz on this address (empty: off)")
	cli.AddCommon(fs, &c.LogLevel, &c.LogFormat)
	return fs
}

// parseConfig reads the command line and, when given, the YAML file.
func parseConfig(args []string) (*config, *pflag.FlagSet, error) {
	c := &config{}
	fs := newFlagSet(c)
	if err := cli.Parse(fs, args); err != nil {
		return nil, fs, err
	}
	return c, fs, validate(c)
}

// maxFlowsLimit keeps the two kernel tables (896 to 992 bytes a flow:
// two tables of two slots, bpf.Config.MaxFlows) under 16 GiB, well inside
// what the kernel's array maps allow (bpf.MaxMaxFlows).
const maxFlowsLimit = 1 << 24

func validate(c *config) error {
	if len(c.Ifaces) == 0 {
		return fmt.Errorf("no interface: give one with -i NAME")
	}
	c.PinPath = strings.ReplaceAll(c.PinPath, "<iface>", c.Ifaces[0])
	c.StateDir = strings.ReplaceAll(c.StateDir, "<iface>", c.Ifaces[0])
	if c.Detach && !c.Exports() {
		return nil
	}
	if _, err := attach.ParseMode(c.XDPMode); err != nil {
		return fmt.Errorf("--xdp-mode: %w", err)
	}
	if c.Action != "pass" && c.Action != "drop" {
		return fmt.Errorf("--action %q: want pass or drop", c.Action)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"active-timeout", c.ActiveTimeout}, {"idle-timeout", c.IdleTimeout}, {"drain-interval", c.DrainInterval}, {"template-refresh", c.TemplateRefresh}} {
		if d.v <= 0 {
			return fmt.Errorf("--%s %v: must be positive", d.name, d.v)
		}
	}
	if c.MaxFlows < 1024 || c.MaxFlows > maxFlowsLimit {
		return fmt.Errorf("--max-flows %d: from 1024 to %d (two tables of this size are kept in kernel memory)", c.MaxFlows, maxFlowsLimit)
	}
	if c.TCPHealth && (c.TCPConversations < 1024 || c.TCPConversations > maxFlowsLimit) {
		return fmt.Errorf("--tcp-conversations %d: from 1024 to %d", c.TCPConversations, maxFlowsLimit)
	}
	if len(c.LocalNets) > bpf.MaxLocalNets {
		return fmt.Errorf("--local-net: %d networks, at most %d", len(c.LocalNets), bpf.MaxLocalNets)
	}
	c.LocalPrefixes = nil
	for _, n := range c.LocalNets {
		p, err := netip.ParsePrefix(n)
		if err != nil {
			return fmt.Errorf("--local-net %q: want a CIDR like 198.18.0.0/15: %w", n, err)
		}
		c.LocalPrefixes = append(c.LocalPrefixes, p.Masked())
	}
	if c.Tunnels != "inner" && c.Tunnels != "outer" {
		return fmt.Errorf("--tunnels %q: want inner or outer", c.Tunnels)
	}
	for _, p := range []struct {
		flag  string
		ports []uint
	}{{"--vxlan-port", c.VXLANPorts}, {"--geneve-port", c.GenevePorts}} {
		if len(p.ports) > bpf.MaxTunnelPorts {
			return fmt.Errorf("%s: %d ports, at most %d", p.flag, len(p.ports), bpf.MaxTunnelPorts)
		}
		for _, v := range p.ports {
			if v == 0 || v > 65535 {
				return fmt.Errorf("%s %d: want a UDP port, 1-65535", p.flag, v)
			}
		}
	}
	c.Mirrors = nil
	for _, e := range c.MirrorEncaps {
		m, err := bpf.ParseMirror(e)
		if err != nil {
			return fmt.Errorf("--mirror-encap: %w", err)
		}
		for _, o := range c.Mirrors {
			if o.Type == m.Type {
				return fmt.Errorf("--mirror-encap %s: given twice (one port per encapsulation)", e)
			}
		}
		c.Mirrors = append(c.Mirrors, m)
	}
	if c.SampleBytes == 0 || c.SampleBytes > bpf.MaxSampleBytes {
		return fmt.Errorf("--sample-bytes %d: 1 to %d", c.SampleBytes, bpf.MaxSampleBytes)
	}
	if c.ObservationDomain == 0 {
		return fmt.Errorf("--observation-domain: must be non-zero")
	}
	tcps := false
	for _, u := range c.IPFIX {
		if err := checkURL("--ipfix", u, "udp", "tcp", "tcps"); err != nil {
			return err
		}
		tcps = tcps || strings.HasPrefix(u, "tcps://")
	}
	for _, u := range c.NetFlow9 {
		if err := checkURL("--netflow9", u, "udp"); err != nil {
			return err
		}
	}
	if c.IPFIXTLS != (lifecycle.TLSFiles{}) && !tcps {
		return fmt.Errorf("--ipfix-tls-* given but no --ipfix tcps:// collector: they apply to tcps:// only")
	}
	if tcps {
		if _, err := c.IPFIXTLS.Config(); err != nil {
			return err
		}
	}
	if err := c.Kafka.Validate(); err != nil {
		return err
	}
	if !c.Exports() {
		return fmt.Errorf("nowhere to export: give --ipfix URL, --netflow9 URL, --kafka-brokers or --stdout")
	}
	if c.Pcap != "" && c.SampleRate == 0 {
		return fmt.Errorf("--pcap needs --sample-rate N")
	}
	if c.Kafka.SamplesTopic != "" && (c.SampleRate == 0 || !c.Kafka.Enabled()) {
		return fmt.Errorf("--kafka-samples-topic needs --sample-rate N and --kafka-brokers")
	}
	return nil
}

func checkURL(flag, raw string, schemes ...string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Port() == "" {
		return fmt.Errorf("%s %q: want %s://host:port", flag, raw, strings.Join(schemes, "|"))
	}
	for _, s := range schemes {
		if u.Scheme == s {
			return nil
		}
	}
	return fmt.Errorf("%s %q: scheme %q not supported (want %s)", flag, raw, u.Scheme, strings.Join(schemes, " or "))
}

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xdpflow/xdpflow/bpf"
)

func TestConfig(t *testing.T) {
	yamlFile := filepath.Join(t.TempDir(), "probe.yaml")
	os.WriteFile(yamlFile, []byte("iface: [eth1, eth2]\nipfix: [udp://198.18.0.9:4739]\nidle-timeout: 5s\nactive-timeout: 30s\n"), 0o644)
	badKey := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(badKey, []byte("idle_timeout: 5s\n"), 0o644)
	tcpOff := filepath.Join(t.TempDir(), "tcp.yaml")
	os.WriteFile(tcpOff, []byte("iface: [eth1]\nstdout: true\ntcp-health: false\n"), 0o644)

	cases := []struct {
		name string
		args []string
		err  string // substring of the error; "" = valid
		fn   func(*testing.T, *config)
	}{
		{"defaults", []string{"-i", "eth1", "--stdout"}, "", func(t *testing.T, c *config) {
			if c.ActiveTimeout != 60*time.Second || c.IdleTimeout != 15*time.Second || c.MaxFlows != 262144 ||
				c.ObservationDomain == 0 || c.Action != "pass" || c.XDPMode != "auto" || c.TemplateRefresh != 60*time.Second {
				t.Errorf("%+v", c)
			}
		}},
		{"repeatable and comma-separated interfaces", []string{"-i", "a,b", "--iface", "c", "--stdout"}, "", func(t *testing.T, c *config) {
			if strings.Join(c.Ifaces, " ") != "a b c" {
				t.Errorf("ifaces %v", c.Ifaces)
			}
		}},
		{"yaml file, command line wins", []string{"--config", yamlFile, "--idle-timeout", "7s"}, "", func(t *testing.T, c *config) {
			if strings.Join(c.Ifaces, " ") != "eth1 eth2" || len(c.IPFIX) != 1 || c.IdleTimeout != 7*time.Second || c.ActiveTimeout != 30*time.Second {
				t.Errorf("%+v", c)
			}
		}},
		{"yaml unknown key named", []string{"--config", badKey}, `unknown key "idle_timeout"`, nil},
		{"no interface", []string{"--stdout"}, "-i NAME", nil},
		{"nowhere to export", []string{"-i", "eth1"}, "nowhere to export", nil},
		{"bad url scheme", []string{"-i", "eth1", "--ipfix", "sctp://x:1"}, `scheme "sctp"`, nil},
		{"netflow9 over tcp", []string{"-i", "eth1", "--netflow9", "tcp://x:1"}, "--netflow9", nil},
		{"url without port", []string{"-i", "eth1", "--ipfix", "udp://x"}, "host:port", nil},
		{"negative timeout", []string{"-i", "eth1", "--stdout", "--idle-timeout", "-1s"}, "--idle-timeout", nil},
		{"bad action", []string{"-i", "eth1", "--stdout", "--action", "redirect"}, "--action", nil},
		{"bad mode", []string{"-i", "eth1", "--stdout", "--xdp-mode", "offload"}, "--xdp-mode", nil},
		{"zero domain", []string{"-i", "eth1", "--stdout", "--observation-domain", "0"}, "non-zero", nil},
		{"sample bytes too big", []string{"-i", "eth1", "--stdout", "--sample-bytes", "1000"}, "--sample-bytes", nil},
		{"pcap without sampling", []string{"-i", "eth1", "--stdout", "--pcap", "x.pcap"}, "--sample-rate", nil},
		{"table over the limit", []string{"-i", "eth1", "--stdout", "--max-flows", "100000000"}, "--max-flows", nil},
		{"tls settings without tcps", []string{"-i", "eth1", "--ipfix", "tcp://x:4739", "--ipfix-tls-ca", "ca.pem"}, "tcps:// only", nil},
		{"tcps with a missing CA file", []string{"-i", "eth1", "--ipfix", "tcps://x:4740", "--ipfix-tls-ca", "/nonexistent/ca.pem"}, "--ipfix-tls-ca", nil},
		{"tcps with system roots", []string{"-i", "eth1", "--ipfix", "tcps://x:4740"}, "", nil},
		{"detach needs only the interface", []string{"--detach", "-i", "eth1"}, "", nil},
		{"encapsulation flags", []string{"-i", "eth1", "--stdout", "--tunnels", "outer", "--vxlan-port", "4789,8472", "--mirror-encap", "erspan", "--mirror-encap", "tzsp:5555", "--macs"}, "", func(t *testing.T, c *config) {
			if c.Tunnels != "outer" || len(c.VXLANPorts) != 2 || len(c.Mirrors) != 2 || c.Mirrors[1].Port != 5555 || !c.MACs {
				t.Errorf("%+v", c)
			}
		}},
		{"tcp health on by default", []string{"-i", "eth1", "--stdout"}, "", func(t *testing.T, c *config) {
			if !c.TCPHealth || c.TCPConversations != bpf.DefaultTCPConversations {
				t.Errorf("tcp health %v, conversations %d", c.TCPHealth, c.TCPConversations)
			}
		}},
		{"tcp health off", []string{"-i", "eth1", "--stdout", "--tcp-health=false", "--tcp-conversations", "1"}, "", func(t *testing.T, c *config) {
			if c.TCPHealth {
				t.Errorf("tcp health on")
			}
		}},
		{"tcp health off in yaml", []string{"--config", tcpOff}, "", func(t *testing.T, c *config) {
			if c.TCPHealth {
				t.Errorf("tcp health on")
			}
		}},
		{"tcp conversations too few", []string{"-i", "eth1", "--stdout", "--tcp-conversations", "10"}, "--tcp-conversations 10", nil},
		{"bad tunnels mode", []string{"-i", "eth1", "--stdout", "--tunnels", "both"}, "--tunnels", nil},
		{"vxlan port 0", []string{"-i", "eth1", "--stdout", "--vxlan-port", "0"}, "--vxlan-port 0", nil},
		{"three geneve ports", []string{"-i", "eth1", "--stdout", "--geneve-port", "1,2,3"}, "--geneve-port: 3 ports", nil},
		{"unknown mirror", []string{"-i", "eth1", "--stdout", "--mirror-encap", "gre"}, "want erspan, vxlan[:PORT]", nil},
		{"erspan with a port", []string{"-i", "eth1", "--stdout", "--mirror-encap", "erspan:4789"}, "has no port", nil},
		{"a mirror twice", []string{"-i", "eth1", "--stdout", "--mirror-encap", "vxlan", "--mirror-encap", "vxlan:4790"}, "given twice", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, _, err := parseConfig(tc.args)
			if tc.err == "" {
				if err != nil {
					t.Fatalf("error %v", err)
				}
				if tc.fn != nil {
					tc.fn(t, c)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("error %v, want one with %q", err, tc.err)
			}
		})
	}
}

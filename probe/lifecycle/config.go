package lifecycle

import (
	"crypto/tls"
	"net/netip"
	"time"

	"github.com/xdpflow/xdpflow/bpf"
	"github.com/xdpflow/xdpflow/internal/kafkaout"
	"github.com/xdpflow/xdpflow/probe/export/ipfix"
)

// Config is every setting of the probe; xdpflow-probe sets it from its
// flags and checks it before Run.
type Config struct {
	Ifaces            []string
	XDPMode           string
	Action            string
	Force             bool
	Span              bool
	FixOffloads       bool
	Detach            bool
	IPFIX             []string
	IPFIXTLS          TLSFiles
	IPFIXEnterprise   uint32 // --ipfix-enterprise-number: PEN for xdpflow's own IEs, 0 none
	LocalNets         []string
	Biflow            bool
	LocalPrefixes     []netip.Prefix // LocalNets parsed
	Tunnels           string         // inner or outer
	VXLANPorts        []uint
	GenevePorts       []uint
	MirrorEncaps      []string
	Mirrors           []bpf.Mirror // MirrorEncaps parsed
	MACs              bool
	NetFlow9          []string
	Stdout            bool
	ActiveTimeout     time.Duration
	IdleTimeout       time.Duration
	DrainInterval     time.Duration
	MaxFlows          uint32
	TCPHealth         bool   // --tcp-health: handshake latencies, retransmissions
	TCPConversations  uint32 // --tcp-conversations: handshakes timed at once
	SampleRate        uint32
	SampleBytes       uint32
	Pcap              string
	ObservationDomain uint32
	TemplateRefresh   time.Duration
	TemplateRefreshN  int
	LogLevel          string
	LogFormat         string
	Metrics           string
	PinPath           string
	StateDir          string // crash-safe flow state, with PinPath
	Kafka             kafkaout.Config
}

// TLSFiles are the --ipfix-tls-* settings.
type TLSFiles struct{ CA, Cert, Key, ServerName string }

// Config is the client side of tcps:// collectors.
func (t TLSFiles) Config() (*tls.Config, error) {
	return ipfix.TLSConfig(t.CA, t.Cert, t.Key, t.ServerName)
}

// Exports tells whether any exporter is configured.
func (c *Config) Exports() bool {
	return len(c.IPFIX)+len(c.NetFlow9) > 0 || c.Stdout || c.Kafka.Enabled()
}

package main

import (
	"crypto/tls"
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/xdpflow/xdpflow/collector/listen"
	"github.com/xdpflow/xdpflow/internal/cli"
	"github.com/xdpflow/xdpflow/internal/kafkaout"
)

// config is every setting of the collector: each a flag, and the same key
// in the optional --config YAML file; the command line wins.
type config struct {
	Listen           []string
	TLSCert          string
	TLSKey           string
	TLSClientCA      string
	Out              string
	RotateSize       int64
	RotateInterval   time.Duration
	Allow            []string
	UDPReadBuffer    int
	UDPWorkers       int
	MaxExporters     int
	MaxTemplates     int
	MaxTemplateBytes int64
	Enterprise       uint32
	Metrics          string
	LogLevel         string
	LogFormat        string
	Kafka            kafkaout.Config
}

func newFlagSet(c *config) *pflag.FlagSet {
	fs := pflag.NewFlagSet("xdpflow-collector", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.StringArrayVar(&c.Listen, "listen", nil, "receive on udp://[host]:port (IPFIX, NetFlow v9 and v5: the version is read from each message) or tcp://[host]:port (IPFIX), or tcps://[host]:port (IPFIX over TLS; needs --tls-cert and --tls-key); repeatable, required")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "PEM certificate the collector shows on tcps:// listeners (with --tls-key)")
	fs.StringVar(&c.TLSKey, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&c.TLSClientCA, "tls-client-ca", "", "PEM CA: tcps:// exporters must present a client certificate it signed (mutual authentication; default: none asked)")
	fs.StringVar(&c.Out, "out", "", "write flows as JSON lines (schemas/ JSON form) to this file; - for stdout")
	fs.Int64Var(&c.RotateSize, "out-rotate-size", 0, "start a new --out file when it would pass this many bytes (0: never)")
	fs.DurationVar(&c.RotateInterval, "out-rotate-interval", 0, "start a new --out file this often, e.g. 5m (0: never)")
	c.Kafka.AddFlags(fs, false)
	fs.StringArrayVar(&c.Allow, "allow", nil, "accept exporters only from this CIDR (repeatable; default: any); others are counted and dropped")
	fs.IntVar(&c.UDPReadBuffer, "udp-read-buffer", 32<<20, "UDP socket receive buffer, bytes, of each of a listener's --udp-workers sockets (absorbs bursts)")
	fs.IntVar(&c.UDPWorkers, "udp-workers", 0, "sockets (SO_REUSEPORT) each udp:// listener opens on its port, each read and decoded on its own core; an exporter's datagrams always reach the same one (0: one per CPU the process may use, GOMAXPROCS)")
	fs.IntVar(&c.MaxExporters, "max-exporters", 10000, "exporters (source addresses) tracked at once; when full, the one whose last decoded message is the oldest (one that never decoded first) gives up its place, unless all decoded within a second: then the newcomer is counted and dropped. Use --allow against spoofed sources")
	fs.Uint32Var(&c.Enterprise, "ipfix-enterprise-number", 0, "the Private Enterprise Number xdpflow-probe sends its own IPFIX IEs under (its --ipfix-enterprise-number): tunnel type, id and endpoints, mirror type; 0: skipped like any enterprise IE")
	fs.IntVar(&c.MaxTemplates, "max-templates", 1000, "templates kept per exporter; more are counted and dropped")
	fs.Int64Var(&c.MaxTemplateBytes, "max-template-bytes", 128<<20, "memory for what exporters teach, over all exporters: templates, observation domains, interface names, samplers; what does not fit is counted (template_memory) and dropped")
	fs.StringVar(&c.Metrics, "metrics", "127.0.0.1:9478", "serve Prometheus /metrics, /healthz and /readyz on this address (empty: off)")
	cli.AddCommon(fs, &c.LogLevel, &c.LogFormat)
	return fs
}

func parseConfig(args []string) (*config, *pflag.FlagSet, error) {
	c := &config{}
	fs := newFlagSet(c)
	if err := cli.Parse(fs, args); err != nil {
		return nil, fs, err
	}
	return c, fs, c.validate()
}

func (c *config) validate() error {
	if len(c.Listen) == 0 {
		return fmt.Errorf("nothing to listen on: give --listen udp://:2055 (and/or udp://:4739, tcp://:4739)")
	}
	tcps := false
	for _, u := range c.Listen {
		network, _, err := listen.ParseURL(u)
		if err != nil {
			return err
		}
		tcps = tcps || network == "tcps"
	}
	if _, err := c.tlsConfig(tcps); err != nil {
		return err
	}
	if _, err := listen.ParseAllow(c.Allow); err != nil {
		return err
	}
	if err := c.Kafka.Validate(); err != nil {
		return err
	}
	if c.Out == "" && !c.Kafka.Enabled() {
		return fmt.Errorf("nowhere to write: give --out FILE (- for stdout) or --kafka-brokers")
	}
	if c.RotateSize < 0 || c.RotateInterval < 0 {
		return fmt.Errorf("--out-rotate-size and --out-rotate-interval must not be negative")
	}
	if c.Out == "-" && (c.RotateSize > 0 || c.RotateInterval > 0) {
		return fmt.Errorf("--out -: stdout cannot rotate; drop --out-rotate-*")
	}
	if c.UDPWorkers < 0 {
		return fmt.Errorf("--udp-workers must not be negative (0: one per CPU)")
	}
	if c.MaxExporters < 1 || c.MaxTemplates < 1 {
		return fmt.Errorf("--max-exporters and --max-templates must be at least 1")
	}
	if c.MaxTemplateBytes < 64<<10 {
		return fmt.Errorf("--max-template-bytes %d: give at least 65536 (a few templates)", c.MaxTemplateBytes)
	}
	return nil
}

// tlsConfig is the tcps:// listeners' TLS, nil without one.
func (c *config) tlsConfig(tcps bool) (*tls.Config, error) {
	if !tcps {
		if c.TLSCert != "" || c.TLSKey != "" || c.TLSClientCA != "" {
			return nil, fmt.Errorf("--tls-* given but no --listen tcps://: they apply to tcps:// only")
		}
		return nil, nil
	}
	return listen.ServerTLSConfig(c.TLSCert, c.TLSKey, c.TLSClientCA)
}

package kafkaout

import (
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/xdpflow/xdpflow/internal/tlsfiles"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
	"github.com/spf13/pflag"

	"github.com/xdpflow/xdpflow/schemas"
)

// Config is the Kafka side of a program's settings: the --kafka-* flags.
type Config struct {
	Brokers       []string
	Topic         string
	SamplesTopic  string
	Format        string
	Compression   string
	Acks          string
	TLS           bool
	TLSCA         string
	TLSCert       string
	TLSKey        string
	TLSServerName string
	SASLMechanism string
	SASLUser      string
	SASLPassword  string
	QueueMessages int
	SpoolDir      string
	SpoolMaxBytes int64
	FlushTimeout  time.Duration
}

// AddFlags registers the --kafka-* flags; samples says whether the program
// writes header samples (the probe) and so has --kafka-samples-topic.
func (c *Config) AddFlags(fs *pflag.FlagSet, samples bool) {
	fs.StringSliceVar(&c.Brokers, "kafka-brokers", nil, "Kafka bootstrap brokers host:port,... (empty: no Kafka)")
	fs.StringVar(&c.Topic, "kafka-topic", "xdpflow-flows", "topic of the flow messages")
	if samples {
		fs.StringVar(&c.SamplesTopic, "kafka-samples-topic", "", "topic of the header samples (empty: samples not sent to Kafka)")
	}
	fs.StringVar(&c.Format, "kafka-format", "proto", "message encoding: proto (schemas/flow.proto) or json (its protojson form)")
	fs.StringVar(&c.Compression, "kafka-compression", "none", "none, gzip, snappy, lz4 or zstd")
	fs.StringVar(&c.Acks, "kafka-acks", "all", "acknowledgements a write waits for: all, one or none")
	fs.BoolVar(&c.TLS, "kafka-tls", false, "connect to the brokers with TLS (implied by the other --kafka-tls-* flags)")
	fs.StringVar(&c.TLSCA, "kafka-tls-ca", "", "PEM file of the CA that signed the brokers' certificates (default: system roots)")
	fs.StringVar(&c.TLSCert, "kafka-tls-cert", "", "PEM client certificate, for brokers that authenticate clients by TLS")
	fs.StringVar(&c.TLSKey, "kafka-tls-key", "", "PEM private key of --kafka-tls-cert")
	fs.StringVar(&c.TLSServerName, "kafka-tls-server-name", "", "name to verify in the brokers' certificates (default: the host of each broker address)")
	fs.StringVar(&c.SASLMechanism, "kafka-sasl-mechanism", "", "SASL authentication: plain, scram-sha-256 or scram-sha-512 (empty: none)")
	fs.StringVar(&c.SASLUser, "kafka-sasl-user", "", "SASL user name")
	fs.StringVar(&c.SASLPassword, "kafka-sasl-password", "", "SASL password (prefer the YAML file, mode 0600, over the command line)")
	fs.IntVar(&c.QueueMessages, "kafka-queue-messages", 100000, "messages held in memory while the brokers are slow or away; beyond it they go to the spool")
	fs.StringVar(&c.SpoolDir, "kafka-spool-dir", "", "directory for messages the memory queue cannot hold, and for the queue itself once a write fails, replayed in order when the brokers return (empty: no spool, overflow is dropped and counted)")
	fs.Int64Var(&c.SpoolMaxBytes, "kafka-spool-max-bytes", 1<<30, "largest size of the spool; beyond it messages are dropped and counted")
	fs.DurationVar(&c.FlushTimeout, "kafka-flush-timeout", 10*time.Second, "at shutdown, how long to try delivering queued messages before spooling them")
}

// Enabled tells whether any broker is configured.
func (c *Config) Enabled() bool { return len(c.Brokers) > 0 }

// Validate names the first bad setting.
func (c *Config) Validate() error {
	if !c.Enabled() {
		return nil
	}
	for _, b := range c.Brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			return fmt.Errorf("--kafka-brokers %q: want host:port", b)
		}
	}
	if c.Topic == "" {
		return fmt.Errorf("--kafka-topic: must not be empty")
	}
	if _, err := schemas.ParseFormat(c.Format); err != nil {
		return fmt.Errorf("--kafka-format: %w", err)
	}
	if _, err := compression(c.Compression); err != nil {
		return err
	}
	if _, err := acks(c.Acks); err != nil {
		return err
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return fmt.Errorf("--kafka-tls-cert and --kafka-tls-key go together")
	}
	if _, err := c.saslMechanism(); err != nil {
		return err
	}
	if c.QueueMessages < 1 {
		return fmt.Errorf("--kafka-queue-messages %d: at least 1", c.QueueMessages)
	}
	if c.SpoolMaxBytes < segmentBytes {
		return fmt.Errorf("--kafka-spool-max-bytes %d: at least %d", c.SpoolMaxBytes, segmentBytes)
	}
	if c.FlushTimeout < 0 {
		return fmt.Errorf("--kafka-flush-timeout %v: must not be negative", c.FlushTimeout)
	}
	return nil
}

func compression(s string) (kafka.Compression, error) {
	switch s {
	case "none", "":
		return 0, nil
	case "gzip":
		return kafka.Gzip, nil
	case "snappy":
		return kafka.Snappy, nil
	case "lz4":
		return kafka.Lz4, nil
	case "zstd":
		return kafka.Zstd, nil
	}
	return 0, fmt.Errorf("--kafka-compression %q: want none, gzip, snappy, lz4 or zstd", s)
}

func acks(s string) (kafka.RequiredAcks, error) {
	switch s {
	case "all", "-1":
		return kafka.RequireAll, nil
	case "one", "1":
		return kafka.RequireOne, nil
	case "none", "0":
		return kafka.RequireNone, nil
	}
	return 0, fmt.Errorf("--kafka-acks %q: want all, one or none", s)
}

func (c *Config) saslMechanism() (sasl.Mechanism, error) {
	if c.SASLMechanism == "" {
		return nil, nil
	}
	if c.SASLUser == "" {
		return nil, fmt.Errorf("--kafka-sasl-mechanism %s needs --kafka-sasl-user and --kafka-sasl-password", c.SASLMechanism)
	}
	switch strings.ToLower(c.SASLMechanism) {
	case "plain":
		return plain.Mechanism{Username: c.SASLUser, Password: c.SASLPassword}, nil
	case "scram-sha-256":
		return scram.Mechanism(scram.SHA256, c.SASLUser, c.SASLPassword)
	case "scram-sha-512":
		return scram.Mechanism(scram.SHA512, c.SASLUser, c.SASLPassword)
	}
	return nil, fmt.Errorf("--kafka-sasl-mechanism %q: want plain, scram-sha-256 or scram-sha-512", c.SASLMechanism)
}

func (c *Config) tlsConfig() (*tls.Config, error) {
	if !c.TLS && c.TLSCA == "" && c.TLSCert == "" && c.TLSServerName == "" {
		return nil, nil
	}
	t := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.TLSServerName}
	if c.TLSCA != "" {
		var err error
		if t.RootCAs, err = tlsfiles.CertPool(c.TLSCA, "--kafka-tls-ca"); err != nil {
			return nil, err
		}
	}
	if c.TLSCert != "" || c.TLSKey != "" {
		cert, err := tlsfiles.KeyPair(c.TLSCert, c.TLSKey, "--kafka-tls-cert", "--kafka-tls-key")
		if err != nil {
			return nil, err
		}
		t.Certificates = []tls.Certificate{cert}
	}
	return t, nil
}

// transport builds the connection settings shared by the writer and the
// start-up check.
func (c *Config) transport() (*kafka.Transport, error) {
	t, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	mech, err := c.saslMechanism()
	if err != nil {
		return nil, err
	}
	return &kafka.Transport{TLS: t, SASL: mech, DialTimeout: 5 * time.Second, ClientID: "xdpflow"}, nil
}

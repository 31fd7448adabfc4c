package kafkaout

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"
)

// errUnreachable marks brokers that did not answer: worth waiting for,
// unlike settings the brokers reject.
var errUnreachable = errors.New("brokers unreachable")

// check asks the brokers for the topics' metadata and turns what goes wrong
// into an error that says what to fix.
func check(ctx context.Context, c *Config, tr *kafka.Transport, topics []string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if tr.TLS != nil {
		if err := checkTLS(ctx, c, tr.TLS); err != nil {
			return err
		}
	}
	client := &kafka.Client{Addr: kafka.TCP(c.Brokers...), Transport: tr}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
	if err != nil {
		return explain(c, err)
	}
	for _, t := range md.Topics {
		if t.Error == nil {
			continue
		}
		if errors.Is(t.Error, kafka.UnknownTopicOrPartition) {
			return fmt.Errorf("kafka topic %q does not exist on %s and the brokers do not create topics on demand: create it (kafka-topics.sh --create --topic %s) or name another with --kafka-topic", t.Name, strings.Join(c.Brokers, ","), t.Name)
		}
		if errors.Is(t.Error, kafka.TopicAuthorizationFailed) {
			return fmt.Errorf("kafka topic %q: not authorized: grant the SASL user --kafka-sasl-user write and describe on it: %w", t.Name, t.Error)
		}
		return fmt.Errorf("kafka topic %q: %w", t.Name, t.Error)
	}
	return nil
}

// checkTLS shakes hands with the first broker that answers, so that a TLS
// problem is named as such rather than seen as a broker that hangs.
func checkTLS(ctx context.Context, c *Config, cfg *tls.Config) error {
	var err error
	for _, b := range c.Brokers {
		var conn net.Conn
		if conn, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", b); err != nil {
			continue
		}
		cfg := cfg.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(b)
		}
		hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = tls.Client(conn, cfg).HandshakeContext(hctx)
		cancel()
		conn.Close()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("kafka broker %s does not answer a TLS handshake: a plaintext listener? drop --kafka-tls*, or use its TLS port: %w", b, err)
		}
		if err != nil {
			return explain(c, err)
		}
		return nil
	}
	return explain(c, err)
}

func explain(c *Config, err error) error {
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		certErr   *tls.CertificateVerificationError
		recordErr tls.RecordHeaderError
		alert     tls.AlertError
	)
	brokers := strings.Join(c.Brokers, ",")
	switch {
	case errors.As(err, &unknownCA), errors.As(err, &hostname), errors.As(err, &certErr):
		return fmt.Errorf("kafka brokers %s: their TLS certificate is not trusted: give the CA that signed it with --kafka-tls-ca (or the right name with --kafka-tls-server-name): %w", brokers, err)
	case errors.As(err, &recordErr):
		return fmt.Errorf("kafka brokers %s do not speak TLS on this port: drop --kafka-tls*, or use their TLS listener: %w", brokers, err)
	case errors.As(err, &alert):
		return fmt.Errorf("kafka brokers %s refused the TLS handshake (a client certificate they require? see --kafka-tls-cert/--kafka-tls-key): %w", brokers, err)
	case errors.Is(err, kafka.SASLAuthenticationFailed), errors.Is(err, kafka.UnsupportedSASLMechanism), errors.Is(err, kafka.IllegalSASLState):
		return fmt.Errorf("kafka brokers %s refused SASL authentication: check --kafka-sasl-mechanism, --kafka-sasl-user and --kafka-sasl-password: %w", brokers, err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		// Connected, then cut off: not a broker being down.
		if c.SASLMechanism != "" {
			return fmt.Errorf("kafka brokers %s closed the connection during SASL authentication: check --kafka-sasl-user, --kafka-sasl-password and --kafka-sasl-mechanism: %w", brokers, err)
		}
		return fmt.Errorf("kafka brokers %s closed the connection at the first request: a TLS listener (add --kafka-tls) or one that needs SASL (add --kafka-sasl-mechanism)? %w", brokers, err)
	}
	return fmt.Errorf("%w: %s: %w", errUnreachable, brokers, err)
}

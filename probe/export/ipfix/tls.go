package ipfix

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/xdpflow/xdpflow/internal/tlsfiles"
)

// TLSConfig builds the client side of IPFIX over TLS (RFC 7011 section
// 11, tcps://) from PEM files, for Config.TLS. caFile is the CA that signed
// the collector's certificate (empty: the system roots); certFile and
// keyFile, given together, are the probe's client certificate for
// collectors that authenticate exporters (mutual authentication);
// serverName is the name to verify in the collector's certificate (empty:
// the host of the tcps:// URL, an IP address matched against IP SANs).
// Errors name the flag to fix.
func TLSConfig(caFile, certFile, keyFile, serverName string) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if caFile != "" {
		pool, err := tlsfiles.CertPool(caFile, "--ipfix-tls-ca")
		if err != nil {
			return nil, err
		}
		c.RootCAs = pool
	}
	if certFile != "" || keyFile != "" {
		cert, err := tlsfiles.KeyPair(certFile, keyFile, "--ipfix-tls-cert", "--ipfix-tls-key")
		if err != nil {
			return nil, err
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// clientTLS is the exporter's copy of cfg for host: TLS 1.2 at least, the
// URL's host as the name to verify unless one is set; nil cfg means the
// system roots and no client certificate.
func clientTLS(cfg *tls.Config, host string) *tls.Config {
	if cfg == nil {
		cfg = &tls.Config{}
	}
	c := cfg.Clone()
	c.MinVersion = max(c.MinVersion, tls.VersionTLS12)
	if c.ServerName == "" && !c.InsecureSkipVerify {
		c.ServerName = host
	}
	return c
}

// tlsError is a failed TLS handshake (or a session the collector refused
// right after one), with what to do about it.
type tlsError struct {
	hint string
	err  error
}

func (e *tlsError) Error() string { return e.hint + ": " + e.err.Error() }
func (e *tlsError) Unwrap() error { return e.err }

// handshake runs the client handshake on raw within timeout. With TLS 1.3
// a collector checks the client certificate only after the client has
// finished its side of the handshake, and says no with an alert: when the
// collector asked for a certificate, wait up to settle for that alert
// before any record is written into a session it has refused.
func handshake(ctx context.Context, raw net.Conn, cfg *tls.Config, timeout, settle time.Duration) (*tls.Conn, error) {
	cfg = cfg.Clone()
	requested := false
	own := cfg.GetClientCertificate
	certs := cfg.Certificates
	cfg.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
		requested = true
		if own != nil {
			return own(cri)
		}
		for i := range certs {
			if cri.SupportsCertificate(&certs[i]) == nil {
				return &certs[i], nil
			}
		}
		// Sent even when the collector names other CAs: its refusal
		// then says which certificate it did not trust.
		if len(certs) > 0 {
			return &certs[0], nil
		}
		return &tls.Certificate{}, nil
	}
	conn := tls.Client(raw, cfg)
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := conn.HandshakeContext(hctx); err != nil {
		return nil, &tlsError{hint: handshakeHint(err, cfg), err: err}
	}
	if requested && conn.ConnectionState().Version >= tls.VersionTLS13 && settle > 0 {
		if err := awaitVerdict(conn, settle); err != nil {
			return nil, &tlsError{hint: refusedHint(cfg), err: err}
		}
	}
	return conn, nil
}

// awaitVerdict reads for d: collectors send nothing, so anything but a
// timeout (an alert, a close) means the session was refused.
func awaitVerdict(conn *tls.Conn, d time.Duration) error {
	if err := conn.SetReadDeadline(time.Now().Add(d)); err != nil {
		return err
	}
	var b [256]byte
	for {
		_, err := conn.Read(b[:])
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return conn.SetReadDeadline(time.Time{}) // a timed-out read leaves a tls.Conn usable
		}
		return fmt.Errorf("collector ended the session after the handshake: %w", err)
	}
}

func refusedHint(cfg *tls.Config) string {
	if len(cfg.Certificates) == 0 {
		return "collector refused the TLS session: it requires a client certificate: give --ipfix-tls-cert and --ipfix-tls-key"
	}
	return "collector refused the TLS session: is the client certificate (--ipfix-tls-cert) signed by a CA the collector trusts?"
}

// handshakeHint says what a failed client handshake most likely means,
// in terms of the flags that fix it.
func handshakeHint(err error, cfg *tls.Config) string {
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		certErr   *tls.CertificateVerificationError
		record    tls.RecordHeaderError
		ne        net.Error
	)
	switch {
	case errors.As(err, &hostname):
		return "collector certificate not valid for this name: give the name it carries with --ipfix-tls-server-name"
	case errors.As(err, &invalid):
		return "collector certificate rejected (expired, not yet valid, or not for a server): renew it, or check --ipfix-tls-ca"
	case errors.As(err, &unknownCA), errors.As(err, &certErr):
		return "collector certificate not trusted: give its CA with --ipfix-tls-ca"
	case errors.As(err, &record):
		return "collector does not speak TLS on this port: use tcp://, or the collector's tcps:// port"
	case isAlert(err):
		return refusedHint(cfg)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		return "collector closed the connection during the TLS handshake: a plain tcp:// listener? (use tcp:// or its tcps:// port)"
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded):
		return "collector did not answer the TLS handshake: a plain tcp:// listener? (use tcp:// or its tcps:// port)"
	}
	return "TLS handshake failed"
}

// isAlert tells whether err is a TLS alert the collector sent.
func isAlert(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "remote error"
}

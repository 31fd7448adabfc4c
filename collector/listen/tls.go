package listen

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"github.com/xdpflow/xdpflow/internal/tlsfiles"
)

// tlsHandshakeTimeout bounds a tcps:// handshake: an exporter that
// connects and says nothing is closed after it.
const tlsHandshakeTimeout = 10 * time.Second

// tlsLogInterval: failed handshakes are logged at most this often.
const tlsLogInterval = 10 * time.Second

// ServerTLSConfig builds the server side of IPFIX over TLS (RFC 7011
// section 11, tcps:// listeners) for Options.TLS from PEM files: the
// collector's certificate and key (both required) and, optionally, the CA
// that signs the exporters' client certificates; with it every exporter
// must present a certificate that CA signed (mutual authentication).
// Errors name the flag to fix.
func ServerTLSConfig(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	if certFile == "" || keyFile == "" {
		return nil, fmt.Errorf("tcps:// listeners need a certificate and its key: give both --tls-cert and --tls-key")
	}
	cert, err := tlsfiles.KeyPair(certFile, keyFile, "--tls-cert", "--tls-key")
	if err != nil {
		return nil, err
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if clientCAFile != "" {
		if c.ClientCAs, err = tlsfiles.CertPool(clientCAFile, "--tls-client-ca"); err != nil {
			return nil, err
		}
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return c, nil
}

// serverTLS checks and copies a tcps:// listener's configuration.
func serverTLS(cfg *tls.Config) (*tls.Config, error) {
	if cfg == nil || (len(cfg.Certificates) == 0 && cfg.GetCertificate == nil && cfg.GetConfigForClient == nil) {
		return nil, fmt.Errorf("tcps:// needs the collector's certificate: give --tls-cert and --tls-key")
	}
	c := cfg.Clone()
	c.MinVersion = max(c.MinVersion, tls.VersionTLS12)
	return c, nil
}

// handshake runs the server handshake on an accepted connection. A
// failure is counted, logged now and then, and the caller closes the
// connection.
func (l *Listener) handshake(ctx context.Context, c net.Conn, from netip.AddrPort) (*tls.Conn, error) {
	tc := tls.Server(c, l.tlsCfg)
	hctx, cancel := context.WithTimeout(ctx, tlsHandshakeTimeout)
	defer cancel()
	err := tc.HandshakeContext(hctx)
	if err == nil {
		return tc, nil
	}
	if ctx.Err() != nil {
		return nil, err // shutting down: not the exporter's doing
	}
	l.tlsErrs.Add(1)
	if ok, suppressed := l.tlsLog.Allow(time.Now()); ok {
		msg := "IPFIX over TLS: handshake failed, connection closed"
		if hint := serverHint(err); hint != "" {
			msg += ": " + hint
		}
		l.log.Warn(msg, "listener", l.URL, "exporter", from, "err", err, "suppressed", suppressed)
	}
	return nil, err
}

// serverHint says what a failed server handshake most likely means, if it
// can tell.
func serverHint(err error) string {
	var (
		unknownCA x509.UnknownAuthorityError
		certErr   *tls.CertificateVerificationError
		invalid   x509.CertificateInvalidError
		record    tls.RecordHeaderError
		op        *net.OpError
		ne        net.Error
	)
	switch {
	case errors.As(err, &record):
		return "the exporter does not speak TLS (a tcp:// exporter? point it at tcps:// or a tcp:// listener)"
	case errors.As(err, &invalid):
		return "the exporter's client certificate is expired, not yet valid or not for a client"
	case errors.As(err, &unknownCA), errors.As(err, &certErr):
		return "the exporter's client certificate is not signed by --tls-client-ca"
	case strings.Contains(err.Error(), "unsupported versions"):
		return "the exporter offers only TLS versions older than 1.2"
	case strings.Contains(err.Error(), "didn't provide a certificate"):
		return "the exporter sent no client certificate, and --tls-client-ca requires one (xdpflow-probe: --ipfix-tls-cert, --ipfix-tls-key)"
	case errors.As(err, &op) && op.Op == "remote error":
		return "the exporter refused our certificate: give it the CA that signed --tls-cert (xdpflow-probe: --ipfix-tls-ca)"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		return "the exporter closed the connection during the handshake (it does not trust our certificate?)"
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("no TLS handshake within %v", tlsHandshakeTimeout)
	}
	return ""
}

package listen

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/xdpflow/xdpflow/internal/syncbuf"
	"github.com/xdpflow/xdpflow/internal/testkit/testpki"
)

func TestServerTLSConfig(t *testing.T) {
	p := testpki.New(t)
	for _, tc := range []struct {
		name               string
		cert, key, rootCA  string
		err                string
		wantClientAuth     tls.ClientAuthType
		wantClientCAsGiven bool
	}{
		{name: "server only", cert: p.ServerCert, key: p.ServerKey, wantClientAuth: tls.NoClientCert},
		{name: "mutual", cert: p.ServerCert, key: p.ServerKey, rootCA: p.CA, wantClientAuth: tls.RequireAndVerifyClientCert, wantClientCAsGiven: true},
		{name: "no cert", key: p.ServerKey, err: "give both --tls-cert and --tls-key"},
		{name: "no key", cert: p.ServerCert, err: "give both --tls-cert and --tls-key"},
		{name: "cert missing", cert: p.ServerCert + ".nope", key: p.ServerKey, err: "--tls-cert: open"},
		{name: "key as cert", cert: p.ServerKey, key: p.ServerKey, err: "--tls-cert " + p.ServerKey + ": no PEM certificate"},
		{name: "key missing", cert: p.ServerCert, key: p.ServerKey + ".nope", err: "--tls-key: open"},
		{name: "cert as key", cert: p.ServerCert, key: p.ServerCert, err: "--tls-key " + p.ServerCert + ": no PEM private key"},
		{name: "key of another cert", cert: p.ServerCert, key: p.ClientKey, err: "not a matching certificate and key"},
		{name: "client CA missing", cert: p.ServerCert, key: p.ServerKey, rootCA: p.CA + ".nope", err: "--tls-client-ca: open"},
		{name: "client CA not PEM", cert: p.ServerCert, key: p.ServerKey, rootCA: p.ServerKey, err: "--tls-client-ca " + p.ServerKey + ": no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ServerTLSConfig(tc.cert, tc.key, tc.rootCA)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want it to say %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.MinVersion != tls.VersionTLS12 || len(c.Certificates) != 1 || c.ClientAuth != tc.wantClientAuth ||
				(c.ClientCAs != nil) != tc.wantClientCAsGiven {
				t.Errorf("min version %x, %d certificates, client auth %v, client CAs %v", c.MinVersion, len(c.Certificates), c.ClientAuth, c.ClientCAs != nil)
			}
		})
	}
}

func TestListenTLSNeedsCertificate(t *testing.T) {
	for _, opts := range []Options{{}, {TLS: &tls.Config{}}} {
		l, err := Listen("tcps://127.0.0.1:0", nil, opts, quiet)
		if err == nil {
			l.Close()
			t.Fatal("tcps:// listener without a certificate")
		}
		if !strings.Contains(err.Error(), "--tls-cert and --tls-key") {
			t.Errorf("error %v: should name --tls-cert and --tls-key", err)
		}
	}
	if n, a, err := ParseURL("tcps://[::1]:4739"); n != "tcps" || a != "[::1]:4739" || err != nil {
		t.Errorf("ParseURL(tcps) = %q %q %v", n, a, err)
	}
}

func certPool(t *testing.T, file string) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		t.Fatal("no certificate in", file)
	}
	return p
}

func keyPair(t *testing.T, cert, key string) []tls.Certificate {
	t.Helper()
	c, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return []tls.Certificate{c}
}

// TestTLSListener: exporters (plain crypto/tls clients here; the probe's
// exporter in probe/export/ipfix) against a tcps:// listener with and
// without client authentication. Every failed handshake is counted as a
// TLS error, logged with what it means, and no message of it reaches the
// handler; --allow comes before the handshake.
func TestTLSListener(t *testing.T) {
	p := testpki.New(t)
	serverOnly, err := ServerTLSConfig(p.ServerCert, p.ServerKey, "")
	if err != nil {
		t.Fatal(err)
	}
	mutual, err := ServerTLSConfig(p.ServerCert, p.ServerKey, p.CA)
	if err != nil {
		t.Fatal(err)
	}
	mutual12 := mutual.Clone()
	mutual12.MaxVersion = tls.VersionTLS12
	client := func(root string, cert ...string) *tls.Config {
		c := &tls.Config{RootCAs: certPool(t, root)}
		if len(cert) == 2 {
			c.Certificates = keyPair(t, cert[0], cert[1])
		}
		return c
	}
	// forced sends the client certificate whatever CAs the server names.
	forced := func(c *tls.Config) *tls.Config {
		cert := c.Certificates[0]
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
		return c
	}
	stream := append(append(ipfixMsg(0, 10), ipfixMsg(1, 0)...), ipfixMsg(2, 300)...)

	for _, tc := range []struct {
		name   string
		server *tls.Config
		allow  []string
		client *tls.Config // nil: plain TCP
		send   []byte
		// what the listener should see
		msgs                                   int
		tlsErrors, streamErrors, denied, conns uint64
		log                                    string
	}{
		{name: "mutual", server: mutual, client: client(p.CA, p.ClientCert, p.ClientKey), send: stream, msgs: 3, conns: 1},
		{name: "mutual TLS 1.2", server: mutual12, client: client(p.CA, p.ClientCert, p.ClientKey), send: stream, msgs: 3, conns: 1},
		{name: "server only", server: serverOnly, client: client(p.CA), send: stream, msgs: 3, conns: 1},
		{name: "server only, client sends a certificate", server: serverOnly, client: client(p.CA, p.ClientCert, p.ClientKey), send: stream, msgs: 3, conns: 1},
		{name: "cut message inside TLS", server: mutual, client: client(p.CA, p.ClientCert, p.ClientKey), send: append(ipfixMsg(0, 0), ipfixMsg(1, 100)[:40]...),
			msgs: 1, conns: 1, streamErrors: 1, log: "connection dropped"},
		{name: "no client certificate", server: mutual, client: client(p.CA), send: stream, tlsErrors: 1,
			log: "the exporter sent no client certificate, and --tls-client-ca requires one"},
		{name: "no client certificate TLS 1.2", server: mutual12, client: client(p.CA), send: stream, tlsErrors: 1,
			log: "the exporter sent no client certificate"},
		{name: "client certificate from another CA", server: mutual, client: forced(client(p.CA, p.OtherClientCert, p.OtherClientKey)), send: stream, tlsErrors: 1,
			log: "not signed by --tls-client-ca"},
		// Go's client keeps a certificate the server's CA list does not name.
		{name: "client certificate from another CA, withheld", server: mutual, client: client(p.CA, p.OtherClientCert, p.OtherClientKey), send: stream, tlsErrors: 1,
			log: "the exporter sent no client certificate"},
		{name: "exporter does not trust the collector", server: mutual, client: client(p.OtherCA, p.ClientCert, p.ClientKey), send: stream, tlsErrors: 1,
			log: "the exporter refused our certificate"},
		{name: "plain TCP exporter", server: mutual, client: nil, send: stream, tlsErrors: 1,
			log: "the exporter does not speak TLS"},
		{name: "TLS 1.1 exporter", server: serverOnly, client: &tls.Config{RootCAs: certPool(t, p.CA), MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11},
			send: stream, tlsErrors: 1, log: "the exporter offers only TLS versions older than 1.2"},
		{name: "denied before the handshake", server: mutual, allow: []string{"198.18.0.0/15"}, client: client(p.CA, p.ClientCert, p.ClientKey), send: stream, denied: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			buf := &syncbuf.Buffer{}
			log := slog.New(slog.NewTextHandler(buf, nil))
			prefixes, err := ParseAllow(tc.allow)
			if err != nil {
				t.Fatal(err)
			}
			l, err := Listen("tcps://127.0.0.1:0", prefixes, Options{TLS: tc.server}, log)
			if err != nil {
				t.Fatal(err)
			}
			h := &recorder{}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- l.Serve(ctx, func() Handler { return h }) }()
			defer func() { cancel(); <-done }()

			raw, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			var c net.Conn = raw
			if tc.client != nil {
				tc.client.ServerName = "127.0.0.1"
				c = tls.Client(raw, tc.client)
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			c.Write(tc.send) // handshakes first; fails when the handshake does
			if tc, ok := c.(*tls.Conn); ok {
				tc.CloseWrite() // close_notify: the end of the stream
			}
			// The collector never writes: a read ends when it closes.
			c.Read(make([]byte, 1))
			c.Close()

			deadline := time.Now().Add(5 * time.Second)
			for {
				st := l.Stats()
				if h.count() >= tc.msgs && st.TLSErrors >= tc.tlsErrors && st.StreamErrors >= tc.streamErrors && st.Denied >= tc.denied {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%d messages, %+v", h.count(), st)
				}
				time.Sleep(5 * time.Millisecond)
			}
			time.Sleep(50 * time.Millisecond)
			st := l.Stats()
			if h.count() != tc.msgs || st.TLSErrors != tc.tlsErrors || st.StreamErrors != tc.streamErrors || st.Denied != tc.denied ||
				st.Connections != tc.conns || st.Messages != uint64(tc.msgs) {
				t.Errorf("%d messages, %+v; want %d messages, %d TLS errors, %d stream errors, %d denied, %d connections",
					h.count(), st, tc.msgs, tc.tlsErrors, tc.streamErrors, tc.denied, tc.conns)
			}
			for i, m := range h.msgs {
				if want := splitMessages(tc.send); i >= len(want) || m != want[i] {
					t.Errorf("message %d differs", i)
				}
			}
			if tc.log != "" && !strings.Contains(buf.String(), tc.log) {
				t.Errorf("log does not say %q:\n%s", tc.log, buf)
			}
			if tc.log == "" && buf.String() != "" {
				t.Errorf("unexpected log:\n%s", buf)
			}
		})
	}
}

// TestTLSErrorsRateLimited: a misconfigured exporter retrying fast is
// counted every time and logged once per interval.
func TestTLSErrorsRateLimited(t *testing.T) {
	p := testpki.New(t)
	srv, err := ServerTLSConfig(p.ServerCert, p.ServerKey, p.CA)
	if err != nil {
		t.Fatal(err)
	}
	buf := &syncbuf.Buffer{}
	h := &recorder{}
	l, err := Listen("tcps://127.0.0.1:0", nil, Options{TLS: srv}, slog.New(slog.NewTextHandler(buf, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Serve(ctx, func() Handler { return h }) }()
	defer func() { cancel(); <-done }()
	const n = 20
	for i := range n {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Write(ipfixMsg(uint32(i), 0))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		c.Read(make([]byte, 1))
		c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for l.Stats().TLSErrors < n {
		if time.Now().After(deadline) {
			t.Fatalf("%+v, want %d TLS errors", l.Stats(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := strings.Count(buf.String(), "handshake failed"); got != 1 || h.count() != 0 {
		t.Errorf("%d failed handshakes logged %d times (want once), %d messages:\n%s", n, got, h.count(), buf)
	}
}

// splitMessages cuts the whole IPFIX messages out of a stream.
func splitMessages(b []byte) []string {
	var out []string
	for len(b) >= 4 {
		n := int(binary.BigEndian.Uint16(b[2:]))
		if n > len(b) {
			break
		}
		out = append(out, string(b[:n]))
		b = b[n:]
	}
	return out
}

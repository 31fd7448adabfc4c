package ipfix

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xdpflow/xdpflow/collector/decode"
	"github.com/xdpflow/xdpflow/collector/listen"
	"github.com/xdpflow/xdpflow/internal/testkit/testpki"
	"github.com/xdpflow/xdpflow/schemas"
)

func TestTLSConfig(t *testing.T) {
	p := testpki.New(t)
	for _, tc := range []struct {
		name                      string
		ca, cert, key, serverName string
		err                       string
	}{
		{name: "system roots"},
		{name: "CA", ca: p.CA},
		{name: "CA, client certificate and name", ca: p.CA, cert: p.ClientCert, key: p.ClientKey, serverName: "collector.test"},
		{name: "CA missing", ca: p.CA + ".nope", err: "--ipfix-tls-ca: open"},
		{name: "CA not PEM", ca: p.ClientKey, err: "--ipfix-tls-ca " + p.ClientKey + ": no PEM certificate"},
		{name: "cert without key", cert: p.ClientCert, err: "--ipfix-tls-cert given without --ipfix-tls-key"},
		{name: "key without cert", key: p.ClientKey, err: "--ipfix-tls-key given without --ipfix-tls-cert"},
		{name: "cert missing", cert: p.ClientCert + ".nope", key: p.ClientKey, err: "--ipfix-tls-cert: open"},
		{name: "key as cert", cert: p.ClientKey, key: p.ClientKey, err: "--ipfix-tls-cert " + p.ClientKey + ": no PEM certificate"},
		{name: "key missing", cert: p.ClientCert, key: p.ClientKey + ".nope", err: "--ipfix-tls-key: open"},
		{name: "cert as key", cert: p.ClientCert, key: p.ClientCert, err: "--ipfix-tls-key " + p.ClientCert + ": no PEM private key"},
		{name: "key of another cert", cert: p.ClientCert, key: p.ServerKey, err: "not a matching certificate and key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := TLSConfig(tc.ca, tc.cert, tc.key, tc.serverName)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want it to say %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.MinVersion != tls.VersionTLS12 || (c.RootCAs != nil) != (tc.ca != "") || len(c.Certificates) != min(len(tc.cert), 1) ||
				c.ServerName != tc.serverName {
				t.Errorf("min version %x, roots %v, %d certificates, server name %q", c.MinVersion, c.RootCAs != nil, len(c.Certificates), c.ServerName)
			}
		})
	}
}

// collected is a collector's handler: every message decoded by the
// collector's own decoder, the records kept in order, and the first set
// of each connection.
type collected struct {
	mu    sync.Mutex
	dec   *decode.Decoder
	flows []schemas.Flow
	msgs  int
	first map[netip.AddrPort]uint16 // exporter (address and port, so per connection) -> first set id
}

func (c *collected) Message(from netip.AddrPort, msg []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs++
	if _, ok := c.first[from]; !ok && len(msg) >= 18 {
		c.first[from] = binary.BigEndian.Uint16(msg[16:])
	}
	c.dec.Decode(from, msg, uint64(time.Now().UnixNano()), func(m *schemas.FlowMessage) { c.flows = append(c.flows, m.Flow()) })
}

func (c *collected) Idle() {}

func (c *collected) state() (flows []schemas.Flow, msgs int, first map[netip.AddrPort]uint16) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]schemas.Flow(nil), c.flows...), c.msgs, c.first
}

// startCollector serves the collector's listener (tcp:// or tcps://) on
// addr until the test ends or stop is called.
func startCollector(t *testing.T, scheme, addr string, srv *tls.Config, log *slog.Logger) (l *listen.Listener, c *collected, stop func()) {
	t.Helper()
	l, err := listen.Listen(scheme+"://"+addr, nil, listen.Options{TLS: srv}, log)
	if err != nil {
		t.Fatal(err)
	}
	c = &collected{dec: decode.New(decode.Config{}), first: map[netip.AddrPort]uint16{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Serve(ctx, func() listen.Handler { return c }) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return l, c, stop
}

func mustTLS(t *testing.T) func(*tls.Config, error) *tls.Config {
	return func(c *tls.Config, err error) *tls.Config {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
}

// TestExporterTLS: the exporter against the collector's listener over
// real sockets, with a throwaway CA: with mutual authentication every
// record arrives, exactly, templates first; every misconfiguration is
// refused without a record getting through, counted on both sides,
// logged once with the flag that fixes it, and retried.
func TestExporterTLS(t *testing.T) {
	p := testpki.New(t)
	must := mustTLS(t)
	mutual := must(listen.ServerTLSConfig(p.ServerCert, p.ServerKey, p.CA))
	mutual12 := mutual.Clone()
	mutual12.MaxVersion = tls.VersionTLS12
	serverOnly := must(listen.ServerTLSConfig(p.ServerCert, p.ServerKey, ""))
	client := must(TLSConfig(p.CA, p.ClientCert, p.ClientKey, ""))

	for _, tc := range []struct {
		name     string
		listen   string      // collector scheme
		server   *tls.Config // tcps:// listener
		export   string      // exporter scheme
		client   *tls.Config // Config.TLS
		delivers bool
		// refused: what the exporter logs (once), and whether each side
		// counts TLS errors, the collector stream errors
		log                              string
		exporterTLSErrs, listenerTLSErrs bool
		streamErrs                       bool
		collectorLog                     string // what the collector logs
	}{
		{name: "mutual", listen: "tcps", server: mutual, export: "tcps", client: client, delivers: true},
		{name: "mutual TLS 1.2", listen: "tcps", server: mutual12, export: "tcps", client: client, delivers: true},
		{name: "server authentication only", listen: "tcps", server: serverOnly, export: "tcps",
			client: must(TLSConfig(p.CA, "", "", "")), delivers: true},
		{name: "server name", listen: "tcps", server: mutual, export: "tcps",
			client: must(TLSConfig(p.CA, p.ClientCert, p.ClientKey, "collector.test")), delivers: true},

		{name: "no client certificate", listen: "tcps", server: mutual, export: "tcps", client: must(TLSConfig(p.CA, "", "", "")),
			log:             "collector refused the TLS session: it requires a client certificate: give --ipfix-tls-cert and --ipfix-tls-key",
			exporterTLSErrs: true, listenerTLSErrs: true, collectorLog: "the exporter sent no client certificate"},
		{name: "no client certificate TLS 1.2", listen: "tcps", server: mutual12, export: "tcps", client: must(TLSConfig(p.CA, "", "", "")),
			log: "collector refused the TLS session: it requires a client certificate", exporterTLSErrs: true, listenerTLSErrs: true},
		{name: "client certificate from another CA", listen: "tcps", server: mutual, export: "tcps",
			client: must(TLSConfig(p.CA, p.OtherClientCert, p.OtherClientKey, "")),
			log:    "is the client certificate (--ipfix-tls-cert) signed by a CA the collector trusts?", exporterTLSErrs: true, listenerTLSErrs: true, collectorLog: "not signed by --tls-client-ca"},
		{name: "collector not trusted", listen: "tcps", server: mutual, export: "tcps",
			client: must(TLSConfig(p.OtherCA, p.ClientCert, p.ClientKey, "")),
			log:    "collector certificate not trusted: give its CA with --ipfix-tls-ca", exporterTLSErrs: true, listenerTLSErrs: true, collectorLog: "the exporter refused our certificate"},
		{name: "system roots", listen: "tcps", server: mutual, export: "tcps", client: nil,
			log: "collector certificate not trusted: give its CA with --ipfix-tls-ca", exporterTLSErrs: true, listenerTLSErrs: true},
		{name: "wrong server name", listen: "tcps", server: mutual, export: "tcps",
			client: must(TLSConfig(p.CA, p.ClientCert, p.ClientKey, "other.test")),
			log:    "collector certificate not valid for this name: give the name it carries with --ipfix-tls-server-name", exporterTLSErrs: true, listenerTLSErrs: true},
		{name: "tcps exporter, tcp listener", listen: "tcp", export: "tcps", client: client,
			log: "collector closed the connection during the TLS handshake: a plain tcp:// listener?", exporterTLSErrs: true, streamErrs: true,
			collectorLog: "a TLS handshake on a tcp:// listener (a tcps:// exporter? listen with tcps://)"},
		{name: "tcp exporter, tcps listener", listen: "tcps", server: mutual, export: "tcp", client: client,
			log: "connection lost, reconnecting", listenerTLSErrs: true, collectorLog: "the exporter does not speak TLS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log, logs := testLogger(t)
			l, c, stop := startCollector(t, tc.listen, "127.0.0.1:0", tc.server, log.With("side", "collector"))
			x, err := newExporter(tc.export+"://"+l.Addr().String(), Config{TLS: tc.client, Interfaces: map[uint32]string{1: "eth0"}},
				log.With("side", "exporter"), fastTCP)
			if err != nil {
				t.Fatal(err)
			}
			defer x.Close()
			flows := randomFlows(1000, 0.5, 71)
			for i := 0; i < len(flows); i += 100 {
				if err := x.Export(flows[i : i+100]); err != nil {
					t.Fatal(err)
				}
			}

			if tc.delivers {
				waitFor(t, "every record at the collector", 10*time.Second, func() bool {
					got, _, _ := c.state()
					return len(got) >= len(flows)
				})
				got, msgs, first := c.state()
				checkFlows(t, got, flows)
				if len(first) != 1 {
					t.Errorf("%d connections, want 1", len(first))
				}
				for from, set := range first {
					if set != ipfixTemplateSet {
						t.Errorf("connection from %v starts with set %d, want templates", from, set)
					}
				}
				x.Close()
				stop()
				ds := c.dec.Stats().Total
				if ds.Records != uint64(len(flows)) || ds.TemplateMisses != 0 || ds.Lost != 0 || len(ds.Bad()) != 0 || ds.Templates != 4 {
					t.Errorf("decoder %+v, bad %v", ds, ds.Bad())
				}
				xs, ls := x.Stats(), l.Stats()
				if xs.Records != uint64(len(flows)) || xs.Messages != uint64(msgs) || xs.RecordsDropped != 0 || xs.TLSErrors != 0 || xs.Reconnects != 0 {
					t.Errorf("exporter %+v, %d messages received", xs, msgs)
				}
				if ls.Connections != 1 || ls.TLSErrors != 0 || ls.StreamErrors != 0 || ls.Messages != uint64(msgs) {
					t.Errorf("listener %+v", ls)
				}
				if !strings.Contains(logs.String(), "connected") || strings.Contains(logs.String(), "level=WARN") {
					t.Errorf("log:\n%s", logs)
				}
				return
			}

			// Refused: retried (three attempts at least), nothing delivered.
			waitFor(t, "three refused attempts", 10*time.Second, func() bool {
				xs, ls := x.Stats(), l.Stats()
				return (!tc.exporterTLSErrs || xs.TLSErrors >= 3) && (!tc.listenerTLSErrs || ls.TLSErrors >= 3) &&
					(!tc.streamErrs || ls.StreamErrors >= 3)
			})
			if n := strings.Count(logs.String(), tc.log); n != 1 && tc.exporterTLSErrs {
				t.Errorf("exporter logged %q %d times, want once", tc.log, n)
			} else if n == 0 {
				t.Errorf("exporter did not log %q", tc.log)
			}
			if !strings.Contains(logs.String(), tc.collectorLog) {
				t.Errorf("collector did not log %q", tc.collectorLog)
			}
			start := time.Now()
			x.Close()
			if el := time.Since(start); el > time.Second {
				t.Errorf("Close took %v", el)
			}
			stop()
			got, msgs, _ := c.state()
			xs, ls := x.Stats(), l.Stats()
			if len(got) != 0 || msgs != 0 || ls.Messages != 0 {
				t.Errorf("%d records, %d messages reached the collector (%+v)", len(got), msgs, ls)
			}
			if tc.exporterTLSErrs && (xs.Records != 0 || xs.RecordsDropped != uint64(len(flows)) || xs.Reconnects != 0) {
				t.Errorf("exporter %+v: nothing sent, every record counted as dropped", xs)
			}
			if !tc.exporterTLSErrs && xs.TLSErrors != 0 {
				t.Errorf("exporter %+v: no TLS, no TLS errors", xs)
			}
			if (tc.listen == "tcps" && ls.Connections != 0) || (!tc.listenerTLSErrs && ls.TLSErrors != 0) {
				t.Errorf("listener %+v", ls)
			}
		})
	}
}

// TestExporterTLSCollectorFixed: the collector first shows a certificate
// the exporter does not trust; the exporter logs it once, keeps its queue
// and retries; once the collector is restarted with the right certificate
// on the same port every record arrives, templates first.
func TestExporterTLSCollectorFixed(t *testing.T) {
	p := testpki.New(t)
	must := mustTLS(t)
	log, logs := testLogger(t)
	wrong := must(listen.ServerTLSConfig(p.OtherServerCert, p.OtherServerKey, p.CA))
	right := must(listen.ServerTLSConfig(p.ServerCert, p.ServerKey, p.CA))
	l1, c1, stop1 := startCollector(t, "tcps", "127.0.0.1:0", wrong, log.With("side", "collector"))
	addr := l1.Addr().String()
	x, err := newExporter("tcps://"+addr, Config{TLS: must(TLSConfig(p.CA, p.ClientCert, p.ClientKey, ""))}, log.With("side", "exporter"), fastTCP)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	flows := randomFlows(600, 0.5, 81)
	if err := x.Export(flows[:300]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "refused attempts", 10*time.Second, func() bool { return x.Stats().TLSErrors >= 3 })
	stop1()
	if got, _, _ := c1.state(); len(got) != 0 {
		t.Fatalf("%d records reached a collector the exporter does not trust", len(got))
	}

	_, c2, _ := startCollector(t, "tcps", addr, right, log.With("side", "collector"))
	if err := x.Export(flows[300:]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every record", 10*time.Second, func() bool { got, _, _ := c2.state(); return len(got) >= len(flows) })
	got, _, first := c2.state()
	checkFlows(t, got, flows)
	for from, set := range first {
		if set != ipfixTemplateSet {
			t.Errorf("connection from %v starts with set %d, want templates", from, set)
		}
	}
	if n := strings.Count(logs.String(), "collector certificate not trusted: give its CA with --ipfix-tls-ca"); n != 1 {
		t.Errorf("trust error logged %d times, want once", n)
	}
	if !strings.Contains(logs.String(), "connected") || !strings.Contains(logs.String(), "tls=\"TLS 1.3\"") {
		t.Errorf("connection not logged with its TLS version:\n%s", logs)
	}
	if st := x.Stats(); st.Records != uint64(len(flows)) || st.RecordsDropped != 0 || st.Reconnects != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestExporterTLSClosesCleanly: after delivering everything, Close ends
// the TLS session with close_notify, so the collector sees a clean end of
// stream, not an error.
func TestExporterTLSClosesCleanly(t *testing.T) {
	p := testpki.New(t)
	must := mustTLS(t)
	log, _ := testLogger(t)
	l, c, stop := startCollector(t, "tcps", "127.0.0.1:0", must(listen.ServerTLSConfig(p.ServerCert, p.ServerKey, p.CA)), log)
	x, err := newExporter("tcps://"+l.Addr().String(), Config{TLS: must(TLSConfig(p.CA, p.ClientCert, p.ClientKey, ""))}, log, fastTCP)
	if err != nil {
		t.Fatal(err)
	}
	flows := randomFlows(100, 0.5, 91)
	if err := x.Export(flows); err != nil {
		t.Fatal(err)
	}
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the records", 5*time.Second, func() bool { got, _, _ := c.state(); return len(got) == len(flows) })
	time.Sleep(50 * time.Millisecond)
	stop()
	if st := l.Stats(); st.StreamErrors != 0 || st.TLSErrors != 0 || st.Connections != 1 {
		t.Errorf("listener %+v: the session should end cleanly", st)
	}
}

// TestExporterTLSLateRefusal: with TLS 1.3 the collector refuses a client
// certificate after the client's handshake is done. When its alert comes
// later than tlsSettle, the session fails on the first read instead: the
// refusal is still counted as a TLS error, logged with its hint, retried,
// and no record reaches the collector.
func TestExporterTLSLateRefusal(t *testing.T) {
	p := testpki.New(t)
	must := mustTLS(t)
	log, logs := testLogger(t)
	l, c, stop := startCollector(t, "tcps", "127.0.0.1:0", must(listen.ServerTLSConfig(p.ServerCert, p.ServerKey, p.CA)), log)
	opt := fastTCP
	opt.tlsSettle = time.Nanosecond
	x, err := newExporter("tcps://"+l.Addr().String(), Config{TLS: must(TLSConfig(p.CA, "", "", ""))}, log, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	if err := x.Export(randomFlows(100, 0.5, 95)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "refusals", 10*time.Second, func() bool { return x.Stats().TLSErrors >= 3 && l.Stats().TLSErrors >= 3 })
	stop()
	if got, msgs, _ := c.state(); len(got) != 0 || msgs != 0 {
		t.Errorf("%d records, %d messages reached the collector", len(got), msgs)
	}
	if !strings.Contains(logs.String(), "it requires a client certificate: give --ipfix-tls-cert and --ipfix-tls-key, reconnecting") {
		t.Errorf("refusal not logged:\n%s", logs)
	}
}

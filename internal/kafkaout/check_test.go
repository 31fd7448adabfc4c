package kafkaout

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"

	"github.com/xdpflow/xdpflow/internal/testkit/kafkacheck"
	"github.com/xdpflow/xdpflow/internal/testkit/testpki"
)

func TestStartupChecks(t *testing.T) {
	ca := testpki.New(t)
	server, err := tls.LoadX509KeyPair(ca.ServerCert, ca.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	plainBroker := kafkacheck.Start(t, 1, []string{topic}, nil)
	noTopics := kafkacheck.Start(t, 1, nil, nil)
	tlsBroker := kafkacheck.Start(t, 1, []string{topic}, nil, kfake.TLS(&tls.Config{Certificates: []tls.Certificate{server}}))
	saslBroker := kafkacheck.Start(t, 1, []string{topic}, nil, kfake.EnableSASL(),
		kfake.Superuser("PLAIN", "probe", "secret"), kfake.Superuser("SCRAM-SHA-256", "probe256", "secret"), kfake.Superuser("SCRAM-SHA-512", "probe512", "secret"))
	down := kafkacheck.Start(t, 1, []string{topic}, nil)
	down.Stop()

	for _, tc := range []struct {
		name    string
		addr    string
		set     func(*Config)
		wantErr string // "" : New succeeds and messages are delivered
		readTLS bool
		readAs  string
	}{
		{name: "plaintext", addr: plainBroker.Addr},
		{name: "unreachable at start: logged, not fatal", addr: down.Addr, wantErr: ""},
		{name: "topic missing, auto-create off", addr: noTopics.Addr, wantErr: `kafka topic "flows" does not exist`},
		{name: "tls", addr: tlsBroker.Addr, set: func(c *Config) { c.TLSCA = ca.CA }, readTLS: true},
		{name: "tls, wrong CA", addr: tlsBroker.Addr, set: func(c *Config) { c.TLSCA = ca.OtherCA }, wantErr: "--kafka-tls-ca"},
		{name: "tls, system roots", addr: tlsBroker.Addr, set: func(c *Config) { c.TLS = true }, wantErr: "--kafka-tls-ca"},
		{name: "tls client, plaintext broker", addr: plainBroker.Addr, set: func(c *Config) { c.TLSCA = ca.CA }, wantErr: "does not answer a TLS handshake"},
		{name: "plaintext client, tls broker", addr: tlsBroker.Addr, wantErr: "add --kafka-tls"},
		{name: "sasl plain", addr: saslBroker.Addr, set: withSASL("plain", "probe", "secret"), readAs: "probe"},
		{name: "sasl scram-sha-256", addr: saslBroker.Addr, set: withSASL("scram-sha-256", "probe256", "secret"), readAs: "probe"},
		{name: "sasl scram-sha-512", addr: saslBroker.Addr, set: withSASL("scram-sha-512", "probe512", "secret"), readAs: "probe"},
		{name: "sasl wrong password", addr: saslBroker.Addr, set: withSASL("plain", "probe", "wrong"), wantErr: "--kafka-sasl-password"},
		{name: "sasl missing", addr: saslBroker.Addr, wantErr: "--kafka-sasl"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(tc.addr)
			cfg.Topic = topic
			if tc.set != nil {
				tc.set(&cfg)
			}
			p, err := New(context.Background(), cfg, testLog(t))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one mentioning %q", err, tc.wantErr)
				}
				t.Logf("error: %v", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close(context.Background())
			if tc.addr == down.Addr {
				return
			}
			p.Send([]Message{{Topic: topic, Key: []byte("k"), Value: []byte(tc.name)}})
			waitSent(t, p, 1)
			b := map[string]*kafkacheck.Broker{plainBroker.Addr: plainBroker, tlsBroker.Addr: tlsBroker, saslBroker.Addr: saslBroker}[tc.addr]
			var opts []kgo.Opt
			if tc.readTLS {
				pool := x509.NewCertPool()
				pem, _ := os.ReadFile(ca.CA)
				pool.AppendCertsFromPEM(pem)
				opts = append(opts, kgo.DialTLSConfig(&tls.Config{RootCAs: pool}))
			}
			if tc.readAs != "" {
				opts = append(opts, kgo.SASL(plain.Auth{User: "probe", Pass: "secret"}.AsMechanism()))
			}
			found := false
			for _, r := range b.Read(topic, 1, 200*time.Millisecond, 10*time.Second, opts...) {
				found = found || string(r.Value) == tc.name
			}
			if !found {
				t.Error("message not found on the topic")
			}
		})
	}
}

func withSASL(mech, user, pass string) func(*Config) {
	return func(c *Config) { c.SASLMechanism, c.SASLUser, c.SASLPassword = mech, user, pass }
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		set  func(*Config)
		want string
	}{
		{func(c *Config) { c.Brokers = []string{"nohost"} }, "--kafka-brokers"},
		{func(c *Config) { c.Topic = "" }, "--kafka-topic"},
		{func(c *Config) { c.Format = "avro" }, "--kafka-format"},
		{func(c *Config) { c.Compression = "brotli" }, "--kafka-compression"},
		{func(c *Config) { c.Acks = "2" }, "--kafka-acks"},
		{func(c *Config) { c.TLSCert = "x.pem" }, "--kafka-tls-key"},
		{func(c *Config) { c.SASLMechanism = "gssapi"; c.SASLUser = "u" }, "--kafka-sasl-mechanism"},
		{func(c *Config) { c.SASLMechanism = "plain" }, "--kafka-sasl-user"},
		{func(c *Config) { c.QueueMessages = 0 }, "--kafka-queue-messages"},
		{func(c *Config) { c.SpoolMaxBytes = 10 }, "--kafka-spool-max-bytes"},
		{func(c *Config) { c.TLSCA = "/nonexistent/ca.pem" }, "--kafka-tls-ca"},
	} {
		c := testConfig("127.0.0.1:9092")
		tc.set(&c)
		err := c.Validate()
		if err == nil {
			_, err = c.transport()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want one naming %s", err, tc.want)
		}
	}
	for _, comp := range []string{"none", "gzip", "snappy", "lz4", "zstd"} {
		c := testConfig("127.0.0.1:9092")
		c.Compression = comp
		if err := c.Validate(); err != nil {
			t.Error(err)
		}
	}
}

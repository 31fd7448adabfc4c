package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfig(t *testing.T) {
	yamlFile := filepath.Join(t.TempDir(), "collector.yaml")
	os.WriteFile(yamlFile, []byte("listen: [udp://:2055, tcp://:4739]\nout: /tmp/x.jsonl\nout-rotate-interval: 5m\nallow: [198.18.0.0/15]\nudp-workers: 3\n"), 0o644)
	cases := []struct {
		name string
		args []string
		err  string // substring of the error; "" = valid
		fn   func(*testing.T, *config)
	}{
		{"minimal", []string{"--listen", "udp://:2055", "--out", "-"}, "", func(t *testing.T, c *config) {
			// The defaults bound the decoder's state for a 1 GiB container
			// (docs/collector.md: limits).
			if c.UDPReadBuffer != 32<<20 || c.UDPWorkers != 0 || c.Kafka.Enabled() || c.Kafka.Topic != "xdpflow-flows" || c.MaxTemplateBytes != 128<<20 || c.MaxExporters != 10000 {
				t.Errorf("%+v", c)
			}
		}},
		{"yaml", []string{"--config", yamlFile}, "", func(t *testing.T, c *config) {
			if len(c.Listen) != 2 || c.RotateInterval != 5*time.Minute || len(c.Allow) != 1 || c.Out != "/tmp/x.jsonl" || c.UDPWorkers != 3 {
				t.Errorf("%+v", c)
			}
		}},
		{"kafka only", []string{"--listen", "udp://:2055", "--kafka-brokers", "k:9092", "--kafka-format", "json"}, "", nil},
		{"no listen", []string{"--out", "-"}, "--listen", nil},
		{"nowhere", []string{"--listen", "udp://:2055"}, "nowhere to write", nil},
		{"bad scheme", []string{"--listen", "sctp://:2055", "--out", "-"}, `scheme "sctp"`, nil},
		{"bad allow", []string{"--listen", "udp://:2055", "--out", "-", "--allow", "10.0.0.0/40"}, "--allow", nil},
		{"negative workers", []string{"--listen", "udp://:2055", "--out", "-", "--udp-workers", "-1"}, "--udp-workers", nil},
		{"stdout rotation", []string{"--listen", "udp://:2055", "--out", "-", "--out-rotate-size", "1000"}, "stdout cannot rotate", nil},
		{"bad kafka format", []string{"--listen", "udp://:2055", "--kafka-brokers", "k:9092", "--kafka-format", "avro"}, "--kafka-format", nil},
		{"tcps without a certificate", []string{"--listen", "tcps://:4740", "--out", "-"}, "--tls-cert", nil},
		{"tls settings without tcps", []string{"--listen", "tcp://:4739", "--out", "-", "--tls-cert", "c.pem", "--tls-key", "k.pem"}, "tcps:// only", nil},
		{"template budget too small", []string{"--listen", "udp://:2055", "--out", "-", "--max-template-bytes", "1000"}, "--max-template-bytes 1000", nil},
		{"template budget", []string{"--listen", "udp://:2055", "--out", "-", "--max-template-bytes", "1073741824"}, "", func(t *testing.T, c *config) {
			if c.MaxTemplateBytes != 1<<30 {
				t.Errorf("%d", c.MaxTemplateBytes)
			}
		}},
		{"no samples topic", []string{"--listen", "udp://:2055", "--out", "-", "--kafka-samples-topic", "x"}, "unknown flag", nil},
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

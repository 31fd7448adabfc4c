// Command xdpflow-collector receives IPFIX, NetFlow v9 and NetFlow v5 from
// xdpflow-probe or any exporter and writes the flows as schemas/ messages:
// JSON lines to a file or stdout, and/or Kafka.
//
// main.go reads the configuration; run.go wires listeners, the decoder and
// the outputs together.
package main

import "github.com/xdpflow/xdpflow/internal/cli"

func main() {
	cli.Main("xdpflow-collector", parseConfig, func(c *config) (string, string) { return c.LogLevel, c.LogFormat }, run)
}

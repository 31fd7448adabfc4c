// Command xdpflow-probe counts every flow on its interfaces with an XDP
// program and exports the flows as IPFIX, NetFlow v9, Kafka or JSON lines.
//
// This package is the command line: config.go turns flags and the YAML
// file into a lifecycle.Config, which lifecycle.Run runs.
package main

import (
	"context"
	"log/slog"

	"github.com/xdpflow/xdpflow/internal/cli"
	"github.com/xdpflow/xdpflow/probe/lifecycle"
)

func main() {
	cli.Main("xdpflow-probe", parseConfig, func(c *config) (string, string) { return c.LogLevel, c.LogFormat },
		func(ctx context.Context, c *config, log *slog.Logger) error {
			return explain(lifecycle.Run(ctx, c, log))
		})
}

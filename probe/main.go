// Command xdpflow-probe counts every flow on its interfaces with an XDP
// program and exports the flows as IPFIX, NetFlow v9 or JSON lines.
//
// main.go reads the configuration; run.go wires the datapath, the flow
// table and the exporters together.
package main

import (
	"context"
	"log/slog"

	"github.com/xdpflow/xdpflow/internal/cli"
)

func main() {
	cli.Main("xdpflow-probe", parseConfig, func(c *config) (string, string) { return c.LogLevel, c.LogFormat },
		func(ctx context.Context, c *config, log *slog.Logger) error { return explain(run(ctx, c, log)) })
}

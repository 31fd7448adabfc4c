// Command xdpflow-collector receives IPFIX, NetFlow v9 and NetFlow v5 from
// xdpflow-probe or any exporter and writes the flows as schemas/ messages:
// JSON lines to a file or stdout, and/or Kafka.
//
// main.go reads the configuration; run.go wires listeners, the decoder and
// the outputs together.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/xdpflow/xdpflow/internal/cli"
)

func main() {
	c, fs, err := parseConfig(os.Args[1:])
	if errors.Is(err, pflag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "xdpflow-collector: %v\n", err)
		if c == nil {
			fmt.Fprintf(os.Stderr, "usage:\n%s", fs.FlagUsages())
		}
		os.Exit(2)
	}
	log, err := cli.NewLogger(c.LogLevel, c.LogFormat)
	if err != nil {
		fmt.Fprintf(os.Stderr, "xdpflow-collector: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c, log); err != nil {
		fmt.Fprintf(os.Stderr, "xdpflow-collector: %v\n", err)
		os.Exit(1)
	}
}

// Package cli is the command-line setup both programs share: flags plus an
// optional YAML file keyed by the long flag names, and the slog logger.
package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// AddCommon registers the flags every program has: --log-level,
// --log-format and --config.
func AddCommon(fs *pflag.FlagSet, level, format *string) {
	fs.StringVar(level, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(format, "log-format", "text", "text or json")
	fs.String("config", "", "YAML file with any of these settings, keyed by flag name")
}

// Parse reads the command line and then, when --config names one, the YAML
// file: its keys set every flag the command line did not.
func Parse(fs *pflag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if path, _ := fs.GetString("config"); path != "" {
		return applyYAML(fs, path)
	}
	return nil
}

func applyYAML(fs *pflag.FlagSet, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	for key, v := range doc {
		f := fs.Lookup(key)
		if f == nil || key == "config" {
			return fmt.Errorf("config file %s: unknown key %q (keys are the long flag names)", path, key)
		}
		if f.Changed {
			continue
		}
		vals := []any{v}
		if list, ok := v.([]any); ok {
			vals = list
		}
		for _, x := range vals {
			if err := fs.Set(key, fmt.Sprint(x)); err != nil {
				return fmt.Errorf("config file %s: key %q: %w", path, key, err)
			}
		}
	}
	return nil
}

// NewLogger makes the slog logger --log-level and --log-format ask for,
// writing to stderr.
func NewLogger(level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// Main is a program's main function: read the configuration with parse,
// make the logger, run until SIGINT or SIGTERM. It exits 2 on a bad
// configuration (with the usage when the command line itself is wrong)
// and 1 when run fails, with one line naming the program.
func Main[C any](name string, parse func(args []string) (*C, *pflag.FlagSet, error),
	logging func(*C) (level, format string), run func(context.Context, *C, *slog.Logger) error) {
	c, fs, err := parse(os.Args[1:])
	if errors.Is(err, pflag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		if c == nil {
			fmt.Fprintf(os.Stderr, "usage:\n%s", fs.FlagUsages())
		}
		os.Exit(2)
	}
	log, err := NewLogger(logging(c))
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err = run(ctx, c, log)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

package main

import (
	"errors"
	"strings"

	"github.com/xdpflow/xdpflow/bpf"
	"github.com/xdpflow/xdpflow/probe/caps"
)

// flagOf is the command-line flag that sets each bpf.Config field.
var flagOf = map[string]string{
	"MaxFlows":    "--max-flows",
	"SampleRate":  "--sample-rate",
	"SampleBytes": "--sample-bytes",
	"Action":      "--action",
	"LocalNets":   "--local-net",
	"PinPath":     "--pin-path",
	"VXLANPorts":  "--vxlan-port",
	"GenevePorts": "--geneve-port",
	"Mirrors":     "--mirror-encap",
}

// explain turns an error of the packages below into what an operator reads:
// a bpf.ConfigError names the flag instead of the Config field, and a
// refusal for lack of privilege (bpf.ErrPermission) ends with what to do,
// caps.Remedy. The error chain is kept: errors.Is and errors.As see
// through.
func explain(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	var ce *bpf.ConfigError
	if errors.As(err, &ce) {
		if flag, ok := flagOf[ce.Field]; ok {
			text := ce.Error() // starts with ce.Field
			msg = strings.Replace(msg, text, flag+strings.TrimPrefix(text, ce.Field), 1)
		}
	}
	switch {
	case errors.Is(err, bpf.ErrNoPerfmon):
		msg += ": grant CAP_PERFMON as well (" + caps.Remedy + ")"
	case errors.Is(err, bpf.ErrPermission):
		msg += ": " + caps.Remedy
	}
	if ce != nil && ce.Field == "PinPath" {
		msg += " (or give --pin-path '' to run without pinning)"
	}
	if msg == err.Error() {
		return err
	}
	return &explained{msg, err}
}

type explained struct {
	msg string
	err error
}

func (e *explained) Error() string { return e.msg }
func (e *explained) Unwrap() error { return e.err }

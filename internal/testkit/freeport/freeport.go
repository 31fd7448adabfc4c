// Package freeport finds a loopback port nothing listens on, for a test or
// a benchmark to hand to a program or a server it starts. The port is free
// when returned; nothing keeps another process from taking it afterwards.
package freeport

import (
	"fmt"
	"net"
	"testing"
)

// Find returns a free port of 127.0.0.1 for network "tcp" or "udp".
func Find(network string) (int, error) { return FindIn(nil, network) }

// FindIn is Find with the probing socket opened by in, which runs its
// function inside a network namespace (testnet.Pair.In's shape); nil runs
// it here.
func FindIn(in func(fn func() error) error, network string) (port int, err error) {
	if in == nil {
		in = func(fn func() error) error { return fn() }
	}
	err = in(func() error {
		switch network {
		case "udp":
			c, err := net.ListenPacket("udp4", "127.0.0.1:0")
			if err != nil {
				return err
			}
			defer c.Close()
			port = c.LocalAddr().(*net.UDPAddr).Port
		case "tcp":
			l, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				return err
			}
			defer l.Close()
			port = l.Addr().(*net.TCPAddr).Port
		default:
			return fmt.Errorf("freeport: network %q: want tcp or udp", network)
		}
		return nil
	})
	return port, err
}

// Get is Find for a test: an error fails t.
func Get(t testing.TB, network string) int {
	t.Helper()
	port, err := Find(network)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

package freeport

import (
	"fmt"
	"net"
	"testing"
)

func TestFind(t *testing.T) {
	for _, network := range []string{"tcp", "udp"} {
		port := Get(t, network)
		if port <= 0 || port > 65535 {
			t.Fatalf("%s: port %d", network, port)
		}
		// Free: a listener can take it.
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		if network == "udp" {
			c, err := net.ListenPacket("udp4", addr)
			if err != nil {
				t.Fatalf("%s: %v", network, err)
			}
			c.Close()
		} else {
			l, err := net.Listen("tcp4", addr)
			if err != nil {
				t.Fatalf("%s: %v", network, err)
			}
			l.Close()
		}
	}
	ran := false
	if _, err := FindIn(func(fn func() error) error { ran = true; return fn() }, "tcp"); err != nil || !ran {
		t.Fatalf("FindIn: ran %v, err %v", ran, err)
	}
	if _, err := Find("sctp"); err == nil {
		t.Fatal("sctp: want an error")
	}
}

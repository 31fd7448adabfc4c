package bpf

import (
	"testing"

	"github.com/gopacket/gopacket/layers"
)

// The cost of --tcp-health on the existing-flow path (issue #15: at most
// +15 ns per TCP packet): the same frames with it off and on, in one run
// with BenchmarkEmptyProgram for the floor. A repeated data segment is a
// retransmission every time after the first: the sequence tracking's
// longest branch.
func BenchmarkTCPHealth(b *testing.B) {
	data := func(v6 bool) []byte {
		t := tcp(40000, 443, tACK|tPSH)
		t.Seq = 1000
		if v6 {
			return build(eth(layers.EthernetTypeIPv6), ipv6(layers.IPProtocolTCP), t, payload(100))
		}
		return build(eth(layers.EthernetTypeIPv4), ipv4(layers.IPProtocolTCP), t, payload(100))
	}
	frames := []struct {
		name  string
		frame []byte
	}{
		{"ipv4-tcp-ack", benchFrames()["ipv4-tcp"]},
		{"ipv4-tcp-data", data(false)},
		{"ipv6-tcp-data", data(true)},
		{"ipv6-udp", benchFrames()["ipv6-udp"]},
	}
	for _, on := range []bool{false, true} {
		mode := "off"
		if on {
			mode = "on"
		}
		for _, f := range frames {
			b.Run(mode+"/"+f.name, func(b *testing.B) {
				d := load(b, Config{TCPHealth: on})
				measure(b, d.Program, f.frame, 1<<30, nil)
			})
		}
	}
}

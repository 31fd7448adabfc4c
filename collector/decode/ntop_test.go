package decode

import (
	"testing"

	"github.com/xdpflow/xdpflow/schemas"
)

// TestNtopTCPHealth: the TCP health fields as other exporters (nProbe)
// send them, not as our encoder lays them out: NetFlow v9 with the
// microseconds before the seconds and a *_LATENCY_MS field after the
// pairs (the pairs' µs win); IPFIX with ntop's elements under PEN 35632,
// and another vendor's element of the same number (ignored).
func TestNtopTCPHealth(t *testing.T) {
	const ntop = schemas.PENNtop
	v9 := v9Msg(100_000, 1, 1,
		set(0, tmpl(300, 8, 4, 12, 4, 1, 4, 2, 4,
			57555, 4, 57554, 4, 57557, 4, 57556, 4, 57559, 4, 57558, 4, 57581, 4, 57583, 4, 57595, 4)),
		set(300, cat([]byte{198, 18, 0, 1}, []byte{198, 18, 0, 2}, be32(1000), be32(10),
			be32(250), be32(1), // client: 1 s 250 µs
			be32(1500), be32(0), // server: 1.5 ms
			be32(3), be32(2), // application: 2 s 3 µs
			be32(4), be32(5), // retransmitted, out of order
			be32(1000))), // CLIENT_NW_LATENCY_MS: less precise than the pair
	)
	enterprise := func(ie uint16, pen uint32) []uint16 {
		return []uint16{0x8000 | ie, 4, uint16(pen >> 16), uint16(pen)}
	}
	var fields []uint16
	fields = append(fields, 8, 4, 12, 4, 1, 4, 2, 4)
	fields = append(fields, enterprise(123, 9)...) // Cisco's 123: not ntop's
	for _, ie := range []uint16{123, 124, 125, 109, 111} {
		fields = append(fields, enterprise(ie, ntop)...)
	}
	ipfix := ipfixMsg(1, 1,
		set(2, cat(be16(301), be16(10), tmpl(0, fields...)[4:])), // 10 fields, 6 of them enterprise
		set(301, cat([]byte{198, 18, 0, 3}, []byte{198, 18, 0, 4}, be32(1000), be32(10),
			be32(77), be32(12), be32(34), be32(1234), be32(6), be32(7))),
	)
	for _, tc := range []struct {
		name string
		msg  []byte
		want [5]uint64 // client, server, application (ns), retransmitted, out of order
	}{
		{"netflow v9 (nProbe's pairs)", v9, [5]uint64{1_000_250_000, 1_500_000, 2_000_003_000, 4, 5}},
		{"ipfix (ntop's ms, PEN 35632)", ipfix, [5]uint64{12_000_000, 34_000_000, 1_234_000_000, 6, 7}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := decodeAll(t, New(Config{}), testExporter, [][]byte{tc.msg}, 1)
			if len(m) != 1 {
				t.Fatalf("%d records, want 1", len(m))
			}
			got := [5]uint64{m[0].ClientNwDelayNs, m[0].ServerNwDelayNs, m[0].ApplLatencyNs,
				uint64(m[0].TcpRetransmittedPackets), uint64(m[0].TcpOutOfOrderPackets)}
			if got != tc.want {
				t.Errorf("client, server, application latency, retransmitted, out of order: %v, want %v", got, tc.want)
			}
			if m[0].Packets != 10 || m[0].Bytes != 1000 {
				t.Errorf("counters %d packets %d bytes: the fields around them misread", m[0].Packets, m[0].Bytes)
			}
		})
	}
}

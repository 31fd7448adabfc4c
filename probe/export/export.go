// Package export is where flow records leave the probe: the one interface
// every exporter (IPFIX / NetFlow v9, Kafka, JSON lines) implements.
package export

import "github.com/xdpflow/xdpflow/schemas"

// Exporter takes the records of each tick. Export may keep sending in the
// background (TCP, Kafka): its error is about this batch only, and the
// pipeline logs it and goes on with the other exporters.
type Exporter interface {
	Export([]schemas.Flow) error
	// Flush sends what is buffered (called after the final tick).
	Flush() error
	Close() error
	String() string // for logs and metric labels
}

// Stats are the counters of an exporter that keeps them.
type Stats struct {
	Messages       uint64 // messages written (templates included)
	Records        uint64 // flow records in those messages
	Bytes          uint64 // bytes written
	SendErrors     uint64 // failed writes
	RecordsDropped uint64 // flow records never sent
	Reconnects     uint64 // connections re-established after one was lost
	TLSErrors      uint64 // failed TLS handshakes and refused sessions
}

// Counting is implemented by exporters that keep Stats (IPFIX / NetFlow);
// the probe's metrics read them through it.
type Counting interface {
	Stats() Stats
}

// Settling is implemented by exporters that send in the background (a TCP
// queue, the Kafka producer). Settled counts the records given to Export
// so far, from the first, that a crash of this process can no longer lose:
// written to the socket, delivered, spooled to disk, or dropped and
// counted. It only grows, and every record before the count is settled
// too. An exporter without it settles each batch before Export returns.
type Settling interface {
	Settled() uint64
}

// Package ipfixtest encodes flows with the probe's own IPFIX / NetFlow v9
// encoder, for tests that feed a decoder or a collector.
package ipfixtest

import (
	"testing"
	"time"

	"github.com/xdpflow/xdpflow/probe/export/ipfix"
	"github.com/xdpflow/xdpflow/schemas"
)

// Encode returns the messages of one export: templates (with their
// options data), the flows, a flush, all stamped now. Flows must start
// after now's encoder was made for NetFlow v9 (its sysUptime starts then).
func Encode(tb testing.TB, cfg ipfix.Config, flows []schemas.Flow, now time.Time) [][]byte {
	tb.Helper()
	var msgs [][]byte
	e := ipfix.NewEncoder(cfg, func(m []byte) error {
		msgs = append(msgs, append([]byte(nil), m...))
		return nil
	})
	if err := e.SendTemplates(now); err != nil {
		tb.Fatal(err)
	}
	for i := range flows {
		if err := e.Add(&flows[i]); err != nil {
			tb.Fatal(err)
		}
	}
	if err := e.Flush(now); err != nil {
		tb.Fatal(err)
	}
	return msgs
}

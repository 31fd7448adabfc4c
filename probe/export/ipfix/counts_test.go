package ipfix

import (
	"testing"
	"time"
)

// TestSendCounts: the counts send gets are the message's own records.
func TestSendCounts(t *testing.T) {
	flows := randomFlows(300, 0.5, 5)
	for _, p := range []Protocol{IPFIX, NetFlowV9} {
		var msgs [][]byte
		var counts []Counts
		e := NewCountingEncoder(Config{Protocol: p, Interfaces: map[uint32]string{1: "eth0"}}, func(m []byte, c Counts) error {
			msgs, counts = append(msgs, append([]byte(nil), m...)), append(counts, c)
			return nil
		})
		now := time.Now()
		if err := e.SendTemplates(now); err != nil {
			t.Fatal(err)
		}
		for i := range flows {
			if err := e.Add(&flows[i]); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.Flush(now); err != nil {
			t.Fatal(err)
		}
		d := decodeAll(t, p, msgs)
		var total int
		for i, m := range d.msgs {
			want := Counts{Records: m.records, Data: m.dataRecs, Flows: m.flowRecs}
			if counts[i] != want {
				t.Errorf("%v message %d: send got %+v, the message has %+v", p, i, counts[i], want)
			}
			total += counts[i].Flows
		}
		if total != len(flows) {
			t.Errorf("%v: counts add up to %d flows, %d sent", p, total, len(flows))
		}
	}
}

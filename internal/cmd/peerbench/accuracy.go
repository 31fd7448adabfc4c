package main

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/xdpflow/xdpflow/internal/testkit/flowcheck"
	"github.com/xdpflow/xdpflow/internal/testkit/testnet"
)

type accResult struct {
	kind                              kind
	flows, exact, exactPkts, exactL2  int
	sentPkts, gotPkts                 uint64
	sentBytes, sentL2Bytes, gotBytes  uint64
	extraFlows                        int
	extraPkts, fillerPkts             uint64
	dec                               decoded
	examples                          []string
	stats                             string
	missingFlows, shortFlows, overPkt int
}

func runAccuracy(k kind, pair *testnet.Pair, cfg *config, seq [][]byte, want, wantL2 flowcheck.Sums) (accResult, error) {
	a := accResult{kind: k, flows: len(want)}
	r, err := startProbe(k, pair, cfg)
	if err != nil {
		return a, err
	}
	if err := sendPaced(pair, seq, cfg.accPPS); err != nil {
		r.abort()
		return a, err
	}
	time.Sleep(time.Second)
	msgs, err := r.finish(pair)
	if err != nil {
		return a, err
	}
	a.stats = r.stats
	a.dec = decodeAll(msgs)
	got := a.dec.sums
	a.fillerPkts = got[fillerID].Packets
	delete(got, fillerID)
	for id, w := range want {
		a.sentPkts += w.Packets
		a.sentBytes += w.Bytes
		a.sentL2Bytes += wantL2[id].Bytes
		g, ok := got[id]
		switch {
		case !ok:
			a.missingFlows++
		case g.Packets < w.Packets:
			a.shortFlows++
		case g.Packets > w.Packets:
			a.overPkt++
		}
		if g.Packets == w.Packets {
			a.exactPkts++
			if g.Bytes == w.Bytes {
				a.exact++
			}
			if g.Bytes == wantL2[id].Bytes {
				a.exactL2++
			}
		}
	}
	for id, g := range got {
		a.gotPkts += g.Packets
		a.gotBytes += g.Bytes
		if _, ok := want[id]; !ok {
			a.extraFlows++
			a.extraPkts += g.Packets
		}
	}
	// The exports carry L3 octets only: with the truth's L2 bytes left in,
	// Diff would list every flow.
	wantL3 := flowcheck.Sums{}
	for id, w := range want {
		w.L2Bytes = 0
		wantL3[id] = w
	}
	diff := flowcheck.Diff(got, wantL3)
	// Examples: the mix's flows first (they are the unusual ones).
	sort.SliceStable(diff, func(i, j int) bool {
		return !strings.Contains(diff[i], "> 198.18.0.2:53") && strings.Contains(diff[j], "> 198.18.0.2:53")
	})
	if len(diff) > 12 {
		diff = append(diff[:12], fmt.Sprintf("... and %d more", len(diff)-12))
	}
	a.examples = diff
	logf("accuracy: %s: %d/%d flows exact, %d of %d packets; %d records in %d messages",
		k, a.exact, a.flows, a.gotPkts, a.sentPkts, a.dec.records, a.dec.messages)
	return a, nil
}

package main

import (
	"bufio"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/xdpflow/xdpflow/internal/testkit/flowcheck"
	"github.com/xdpflow/xdpflow/internal/testkit/trafficgen"
	"github.com/xdpflow/xdpflow/schemas"
)

// pen is the enterprise number the tests send xdpflow's own IEs under
// (RFC 5612's, for documentation).
const pen = schemas.PENDocumentation

// TestEncapsulations: issue #13 end to end. The probe, natively attached,
// counts trafficgen.EncapMix (every tunnel and mirror encapsulation, two
// tenants with the same inner conversation in two VNIs) as set by each
// view, and every decoder reads each flow exactly: goflow2 from IPFIX
// (with the tunnel and mirror IEs under the enterprise number) and
// NetFlow v9, nfdump from nfcapd, and the probe's own JSON lines.
// Tunnels inner: each inner conversation keyed with its innermost
// tunnel, and the mirrored frames (--mirror-encap) with their session;
// tunnels outer: the outer packets, MPLS and PPPoE still looked through.
func TestEncapsulations(t *testing.T) {
	mix := trafficgen.EncapMix()
	for _, tc := range []struct {
		name string
		view trafficgen.View
	}{
		{"inner, mirrors stripped, macs", trafficgen.View{Mirrors: true, MACs: true}},
		{"outer", trafficgen.View{TunnelsOuter: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			prefix := "xfi"
			if tc.view.TunnelsOuter {
				prefix = "xfo"
			}
			pair := newTestPair(t, prefix)
			ipfixC, v9C := collector(t, pair), collector(t, pair)
			nf := flowcheck.StartNfcapd(t, pair)
			args := []string{"--ipfix", ipfixC.URL(), "--netflow9", v9C.URL(), "--ipfix", nf.URL, "--stdout",
				"--ipfix-enterprise-number", "32473", "--pin-path", "", "--drain-interval", "200ms",
				// One record per flow, at the stop: nothing expires before.
				"--idle-timeout", "1m", "--active-timeout", "1m"}
			if tc.view.TunnelsOuter {
				args = append(args, "--tunnels", "outer")
			}
			if tc.view.Mirrors {
				for _, m := range trafficgen.MirrorEncaps(mix) {
					args = append(args, "--mirror-encap", m)
				}
			}
			if tc.view.MACs {
				args = append(args, "--macs")
			}
			pr := startProbe(t, pair, args...)

			frames, err := trafficgen.BuildEncap(mix, pair.MACA, pair.MACB, tc.view)
			if err != nil {
				t.Fatal(err)
			}
			want := flowcheck.Sent(frames)
			send(t, pair, frames)
			time.Sleep(100 * time.Millisecond) // the veth delivers asynchronously
			pr.stop(t)
			time.Sleep(100 * time.Millisecond)

			ipfixMsgs := ipfixC.Stop()
			if _, err := flowcheck.Tshark(t.TempDir(), 4739, ipfixMsgs); err != nil {
				t.Errorf("Wireshark on the IPFIX export: %v", err)
			}
			d := flowcheck.NewDecoder()
			d.Enterprise = pen
			checkRecords(t, "IPFIX (goflow2)", decodeAll(t, d, ipfixMsgs), want, noTTL, true)
			// No enterprise IEs in v9: no tunnel, no mirror type.
			checkRecords(t, "NetFlow v9 (goflow2)", decodeAll(t, flowcheck.NewDecoder(), v9C.Stop()), want,
				func(id flowcheck.ID) flowcheck.ID { return flowcheck.NoEnterprise(noTTL(id)) }, true)
			checkRecords(t, "IPFIX (nfdump)", nf.Records(t), want, nfdumpView, false)
			var jsonRecs []schemas.Flow
			sc := bufio.NewScanner(strings.NewReader(pr.stdout.String()))
			for sc.Scan() {
				var f schemas.Flow
				if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
					t.Fatalf("--stdout line %q: %v", sc.Text(), err)
				}
				jsonRecs = append(jsonRecs, f)
			}
			checkRecords(t, "--stdout JSON", jsonRecs, want, sameID, true)
			if t.Failed() {
				t.Logf("probe log:\n%s", pr.stderr.String())
			}
		})
	}
}

// nfdumpView is what nfdump shows of a flow: MACs, labels without TTL
// and the observation point; no tunnel, no mirror type.
func nfdumpView(id flowcheck.ID) flowcheck.ID { return flowcheck.NoEnterprise(noTTL(id)) }

// decodeAll decodes every message and returns the records.
func decodeAll(t *testing.T, d *flowcheck.Decoder, msgs [][]byte) []schemas.Flow {
	t.Helper()
	var out []schemas.Flow
	for i, m := range msgs {
		recs, err := d.Decode(m)
		if err != nil {
			t.Errorf("message %d: %v", i, err)
		}
		out = append(out, recs...)
	}
	return out
}

// checkRecords compares the records' sums with want as the decoder sees
// it (view: the fields it has; l2: whether it has layer-2 octets), and
// checks one record per flow: flows a decoder cannot tell apart (the two
// tenants and the plain conversation, without the tunnel id) are still
// as many records.
func checkRecords(t *testing.T, who string, recs []schemas.Flow, want flowcheck.Sums, view func(flowcheck.ID) flowcheck.ID, l2 bool) {
	t.Helper()
	got, n := flowcheck.Sums{}, map[flowcheck.ID]int{}
	for i := range recs {
		got.AddRecord(&recs[i])
		n[flowcheck.IDOf(&recs[i])]++
	}
	seen := want.Map(view)
	if !l2 {
		seen = seen.WithoutL2()
	}
	compare(t, who, got, seen)
	flows := map[flowcheck.ID]int{}
	for id := range want {
		flows[view(id)]++
	}
	for id, w := range flows {
		if n[id] != w {
			t.Errorf("%s: %d records of %v, want %d", who, n[id], id, w)
		}
	}
}

func sameID(id flowcheck.ID) flowcheck.ID { return id }

// noTTL is what IPFIX carries: labels without their TTL.
func noTTL(id flowcheck.ID) flowcheck.ID { return flowcheck.LabelsNoTTL(id) }

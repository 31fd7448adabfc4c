package decode

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/xdpflow/xdpflow/internal/testkit/flowcheck"
	"github.com/xdpflow/xdpflow/schemas"
)

// Router captures (../shared/vectors, from logstash-codec-netflow,
// Apache-2.0) decode to what Wireshark's cflow dissector reads in them.
func TestVectorsAgainstTshark(t *testing.T) {
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Skip("tshark not installed")
	}
	for _, v := range vectorFiles {
		t.Run(v.name, func(t *testing.T) {
			msg := readVector(t, v.name)
			d := New(Config{})
			var got []*schemas.FlowMessage
			err := d.Decode(testExporter, msg, 1, func(m *schemas.FlowMessage) { got = append(got, cloneMsg(m)) })
			if err != nil {
				t.Fatal(err)
			}
			want, hdr := tsharkRecords(t, v.port, msg)
			if len(got) != v.records || len(want) != v.records {
				t.Fatalf("decoded %d records, tshark %d, want %d", len(got), len(want), v.records)
			}
			for i, w := range want {
				if diff := compareTshark(got[i], w, hdr); diff != "" {
					t.Errorf("record %d: %s", i, diff)
				}
			}
			if len(got) > 0 { // the comparison must see a difference
				bad := cloneMsg(got[0])
				bad.Bytes++
				bad.TimeFlowEndNs++
				bad.SrcPort ^= 1
				if diff := compareTshark(bad, want[0], hdr); strings.Count(diff, ";") < 2 {
					t.Errorf("a wrong record compares as %q", diff)
				}
			}
			st := d.Stats().Total
			if len(st.Bad()) != 0 {
				t.Errorf("dropped: %v", st.Bad())
			}
			t.Logf("%d records, %d templates, %d template misses", st.Records, st.Templates, st.TemplateMisses)
		})
	}
}

// tsharkRecords runs tshark on msg and returns each flow record's fields
// (the objects named "Flow N" / "pdu N/M", in order) and the header's.
func tsharkRecords(t *testing.T, port uint16, msg []byte) ([]map[string]string, map[string]string) {
	path := filepath.Join(t.TempDir(), "v.pcap")
	if err := flowcheck.WritePcap(path, port, [][]byte{msg}); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("tshark", "-n", "-r", path, "-T", "json", "-d", fmt.Sprintf("udp.port==%d,cflow", port)).Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	var recs []map[string]string
	hdr := map[string]string{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	var walk func(path []string) error
	// walk reads one value; objects keep their key order (a map would not).
	walk = func(path []string) error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('['):
			for dec.More() {
				if err := walk(path); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		case json.Delim('{'):
			var rec map[string]string
			if n := len(path); n > 0 && (strings.HasPrefix(path[n-1], "Flow ") || strings.HasPrefix(path[n-1], "pdu ")) {
				rec = map[string]string{}
				recs = append(recs, rec)
			}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return err
				}
				key := k.(string)
				if rec != nil {
					var v any
					if err := dec.Decode(&v); err != nil {
						return err
					}
					if s, ok := v.(string); ok {
						rec[key] = s
					} else if m, ok := v.(map[string]any); ok { // e.g. cflow.timedelta_tree
						for k2, v2 := range m {
							if s, ok := v2.(string); ok {
								rec[k2] = s
							}
						}
					}
					continue
				}
				if err := walk(append(path, key)); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		default:
			if s, ok := tok.(string); ok && len(path) > 0 && strings.HasPrefix(path[len(path)-1], "cflow.") {
				hdr[path[len(path)-1]] = s
			}
			return nil
		}
	}
	if err := walk(nil); err != nil {
		t.Fatalf("tshark json: %v", err)
	}
	return recs, hdr
}

// decNs reads tshark's "seconds.nanoseconds" as ns.
func decNs(s string) int64 {
	sec, frac, _ := strings.Cut(s, ".")
	n, _ := strconv.ParseInt(sec, 10, 64)
	frac = (frac + "000000000")[:9]
	f, _ := strconv.ParseInt(frac, 10, 64)
	return n*1e9 + f
}

func compareTshark(m *schemas.FlowMessage, w, hdr map[string]string) string {
	var diffs []string
	num := func(name string, got uint64, key string) {
		s, ok := w[key]
		if !ok {
			return
		}
		want, err := strconv.ParseUint(strings.TrimPrefix(s, "0x"), map[bool]int{true: 16, false: 10}[strings.HasPrefix(s, "0x")], 64)
		if err != nil {
			diffs = append(diffs, fmt.Sprintf("%s: tshark %q: %v", name, s, err))
		} else if got != want {
			diffs = append(diffs, fmt.Sprintf("%s %d, tshark %d", name, got, want))
		}
	}
	addr := func(name string, got []byte, key string) {
		if s, ok := w[key]; ok {
			if a := schemas.Addr(got); a != netip.MustParseAddr(s) {
				diffs = append(diffs, fmt.Sprintf("%s %v, tshark %s", name, a, s))
			}
		}
	}
	addr("src", m.SrcAddr, "cflow.srcaddr")
	addr("dst", m.DstAddr, "cflow.dstaddr")
	addr("next hop", m.NextHop, "cflow.nexthop")
	num("proto", uint64(m.Proto), "cflow.protocol")
	if m.Proto == 1 || m.Proto == 58 { // ports carry type<<8|code for ICMP
		num("icmp", uint64(m.IcmpType<<8|m.IcmpCode), "cflow.dstport")
	} else {
		num("src port", uint64(m.SrcPort), "cflow.srcport")
		num("dst port", uint64(m.DstPort), "cflow.dstport")
	}
	num("bytes", m.Bytes, "cflow.octets")
	num("packets", m.Packets, "cflow.packets")
	num("in_if", uint64(m.InIf), "cflow.inputint")
	num("out_if", uint64(m.OutIf), "cflow.outputint")
	num("tcp flags", uint64(m.TcpFlags), "cflow.tcpflags")
	num("tos", uint64(m.IpTos), "cflow.tos")
	num("src as", uint64(m.SrcAs), "cflow.srcas")
	num("dst as", uint64(m.DstAs), "cflow.dstas")
	num("src net", uint64(m.SrcNet), "cflow.srcmask")
	num("dst net", uint64(m.DstNet), "cflow.dstmask")
	if s, ok := w["cflow.srcmac"]; ok {
		if got := fmt.Sprintf("%012x", m.SrcMac); got != strings.ReplaceAll(s, ":", "") {
			diffs = append(diffs, fmt.Sprintf("src mac %s, tshark %s", got, s))
		}
	}
	if s, ok := w["cflow.dstmac"]; ok {
		if got := fmt.Sprintf("%012x", m.DstMac); got != strings.ReplaceAll(s, ":", "") {
			diffs = append(diffs, fmt.Sprintf("dst mac %s, tshark %s", got, s))
		}
	}
	if s := hdr["cflow.sequence"]; s != strconv.FormatUint(uint64(m.SequenceNum), 10) {
		diffs = append(diffs, fmt.Sprintf("sequence %d, tshark %s", m.SequenceNum, s))
	}
	if s, ok := hdr["cflow.samplerate"]; ok && s != strconv.FormatUint(m.SamplingRate, 10) {
		diffs = append(diffs, fmt.Sprintf("sampling rate %d, tshark %s", m.SamplingRate, s))
	}
	// v5 / v9 times: unix time of the header plus (time - sysUptime).
	if ts, ok := w["cflow.timestart"]; ok {
		export, _ := strconv.ParseInt(hdr["cflow.unix_secs"], 10, 64)
		nsecs, _ := strconv.ParseInt(hdr["cflow.unix_nsecs"], 10, 64)
		base := export*1e9 + nsecs - decNs(hdr["cflow.sysuptime"])
		if want := base + decNs(ts); int64(m.TimeFlowStartNs) != want {
			diffs = append(diffs, fmt.Sprintf("start %d, tshark %d", m.TimeFlowStartNs, want))
		}
		if want := base + decNs(w["cflow.timeend"]); int64(m.TimeFlowEndNs) != want {
			diffs = append(diffs, fmt.Sprintf("end %d, tshark %d", m.TimeFlowEndNs, want))
		}
	} else {
		diffs = append(diffs, "tshark shows no flow times")
	}
	return strings.Join(diffs, "; ")
}

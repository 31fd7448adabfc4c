package ipfix

import (
	"encoding/binary"
	"encoding/json"
	"github.com/xdpflow/xdpflow/internal/testkit/freeport"
	"net"
	"slices"
	"syscall"
	"time"

	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/xdpflow/xdpflow/schemas"
)

// extraFlows are records with every extra part, IPv4 and IPv6, and a
// plain one: what the encoder must tell apart.
func extraFlows() []schemas.Flow {
	plain := fixedFlows()[0]
	f := plain
	f.TunnelType, f.TunnelId = schemas.TunnelVXLAN, 0x123456
	f.TunnelSrcAddr, f.TunnelDstAddr = netip.MustParseAddr("192.0.2.77"), netip.MustParseAddr("2001:db8::78")
	f.ObservationPointId, f.MirrorType = 4242, schemas.MirrorERSPAN
	f.SrcMac, f.DstMac = schemas.MAC{0x02, 0x11, 0x22, 0x33, 0x44, 0x55}, schemas.MAC{0x02, 0x66, 0x77, 0x88, 0x99, 0xaa}
	f.MplsLabels = [schemas.MaxMplsLabels]uint32{1001<<12 | 3<<9 | 64, 1002<<12 | 1<<8 | 63}
	// TCP health: µs and ms that tell truncation from rounding, and
	// an application latency past a second (the v9 pairs' seconds).
	f.ClientNwDelayNs, f.ServerNwDelayNs, f.ApplLatencyNs = 2_345_678, 12_500_900, 1_234_567_890
	f.TcpRetransmitted, f.TcpOutOfOrder, f.TcpZeroWindow = 3, 2, 1
	g := f
	g.SrcAddr, g.DstAddr = netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	return []schemas.Flow{plain, f, g}
}

// TestTsharkExtras: Wireshark's cflow dissector shows every field of the
// extra parts from our IPFIX: the IANA ones by name, ours (under the
// documentation enterprise number) as the enterprise's fields.
func TestTsharkExtras(t *testing.T) {
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Skip("tshark not installed (apt-get install tshark): Wireshark decoding not checked")
	}
	cfg := Config{EnterpriseNumber: schemas.PENDocumentation}
	text := tsharkText(t, tshark, 4739, encodeAll(t, cfg, extraFlows()))
	const ours = "Enterprise Private entry: (Example Enterprise Number for Documentation Use) "
	ext := schemas.AllExtras
	for _, want := range []string{
		fmt.Sprintf("[id=%d] (1 flows)", schemas.TemplateKey{Extras: ext}.ID()), // 752
		fmt.Sprintf("[id=%d] (1 flows)", schemas.TemplateKey{Extras: ext, V6: true}.ID()),
		"[id=256] (1 flows)",
		"Source Mac Address: 02:11:22:33:44:55", "Destination Mac Address: 02:66:77:88:99:aa",
		"MPLS-Label1: 1001 exp-bits: 3 \n", "MPLS-Label2: 1002 exp-bits: 0 bottom-of-stack",
		"Observation Point Id: 4242",
		// Ours: IEs 1-5 of the (documentation) enterprise number, in hex.
		ours + "Type 1: Value (hex bytes): 05\n", ours + "Type 2: Value (hex bytes): 00 12 34 56\n",
		ours + "Type 3: Value (hex bytes): 00 00 00 00 00 00 00 00 00 00 ff ff c0 00 02 4d\n",
		ours + "Type 4: Value (hex bytes): 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 78\n",
		ours + "Type 5: Value (hex bytes): 01\n",
		// TCP health: ntop's IEs (35632/123-125, 109, 111) by name,
		// latencies in whole ms. (Wireshark labels them as nProbe
		// defines them, RTT/2; ours are round trips: FIELDS.md.)
		"Network RTT/2 client <-> nprobe: 2ms\n", "Network RTT/2 nprobe <-> server: 12ms\n", "Application latency: 1234ms\n",
		"Number of retransmitted TCP flow packets (src->dst): 3\n", "Number of out of order TCP flow packets (dst->src): 2\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("tshark output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("tshark:\n%s", tail([]byte(text)))
	}
}

// TestNfdumpExtras: nfdump shows the extras it has fields for, from our
// IPFIX and NetFlow v9: MACs, MPLS labels, the observation point. (It has
// none for a tunnel's type, id or endpoints, nor the mirror type:
// FIELDS.md says where those are.) nfcapd listens on the host's loopback.
func TestNfdumpExtras(t *testing.T) {
	if _, err := exec.LookPath("nfcapd"); err != nil {
		t.Skip("nfcapd not installed (apt-get install nfdump): nfdump decoding not checked")
	}
	for _, p := range []Protocol{IPFIX, NetFlowV9} {
		t.Run(p.String(), func(t *testing.T) {
			msgs := encodeAll(t, Config{Protocol: p, EnterpriseNumber: schemas.PENDocumentation}, extraFlows())
			if p == NetFlowV9 { // what an operator types: nfdump -o 'fmt:%cl %sl %al'
				out, err := exec.Command("nfdump", "-q", "-R", nfcapd(t, msgs), "-O", "tstart", "-o", "fmt:%cl|%sl|%al").Output()
				if err != nil {
					t.Fatalf("nfdump: %v", err)
				}
				var lines []string
				for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
					lines = append(lines, strings.Join(strings.Fields(l), ""))
				}
				if want := "2.345|12.500|1234.567"; len(lines) != 3 || lines[1] != want || lines[2] != want {
					t.Errorf("nfdump fmt:%%cl|%%sl|%%al: %q, want the plain record's zeros, then %s twice", lines, want)
				}
			}
			recs := nfdump(t, msgs)
			flows := extraFlows()
			if len(recs) != len(flows) {
				t.Fatalf("nfdump read %d records, want %d", len(recs), len(flows))
			}
			for i, r := range recs {
				f := &flows[i]
				want := map[string]any{"src4_addr": f.SrcAddr.String(), "dst4_addr": f.DstAddr.String()} // the inner conversation
				if f.SrcAddr.Is6() {
					want = map[string]any{"src6_addr": f.SrcAddr.String(), "dst6_addr": f.DstAddr.String()}
				}
				if f.Extras() != 0 {
					want["in_src_mac"], want["in_dst_mac"] = f.SrcMac.String(), f.DstMac.String()
					want["mpls_1"], want["mpls_2"] = "1001-3-0", "1002-0-1" // label-TC-S
					if p == IPFIX {                                         // nfdump's v9 reader has no IE 138
						want["observationPointID"] = float64(f.ObservationPointId)
					} else { // TCP health: nProbe's pairs, shown in ms (µs precision); its IPFIX reader has none
						want["cli_latency"], want["srv_latency"], want["app_latency"] = 2.345, 12.5, 1234.567
					}
				} else if _, ok := r["in_src_mac"]; ok {
					t.Errorf("record %d: a plain record shows MACs: %v", i, r)
				} else if _, ok := r["cli_latency"]; ok {
					t.Errorf("record %d: a plain record shows latencies: %v", i, r)
				}
				for k, v := range want {
					if r[k] != v {
						t.Errorf("record %d: nfdump %s = %v, want %v", i, k, r[k], v)
					}
				}
			}
		})
	}
}

// nfdump has nfcapd collect msgs and returns nfdump's JSON records.
func nfdump(t *testing.T, msgs [][]byte) []map[string]any {
	b, err := exec.Command("nfdump", "-R", nfcapd(t, msgs), "-o", "json").Output()
	if err != nil {
		t.Fatalf("nfdump: %v", err)
	}
	var recs []map[string]any
	if err := json.Unmarshal(b, &recs); err != nil {
		t.Fatalf("nfdump json: %v\n%s", err, b)
	}
	return recs
}

// nfcapd collects msgs and returns the directory of its file.
func nfcapd(t *testing.T, msgs [][]byte) string {
	port := freeport.Get(t, "udp")
	dir := t.TempDir()
	cmd := exec.Command("nfcapd", "-b", "127.0.0.1", "-p", fmt.Sprint(port), "-w", dir, "-t", "3600")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-done
		}
	}()
	c, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(300 * time.Millisecond) // let it bind
	for _, m := range msgs {
		if _, err := c.Write(m); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGTERM) // nfcapd writes its file on SIGTERM
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("nfcapd did not stop:\n%s", out.String())
	}
	return dir
}

// TestTemplatesAnnounced: a template with extras goes out once, before
// its first record, then with every template refresh, and from the TCP
// sender's template encoder (which shares the set) on a new connection;
// never before a record needs it.
func TestTemplatesAnnounced(t *testing.T) {
	ids := func(msgs [][]byte) (tmpl []uint16) { // template record ids, in order
		for _, m := range msgs {
			for off := 16; off+4 <= len(m); {
				set, n := binary.BigEndian.Uint16(m[off:]), int(binary.BigEndian.Uint16(m[off+2:]))
				if set == ipfixTemplateSet {
					for p := off + 4; p+4 <= off+n; {
						tmpl = append(tmpl, binary.BigEndian.Uint16(m[p:]))
						p += 4
						for range binary.BigEndian.Uint16(m[p-2:]) {
							p += 4
							if m[p-4]&0x80 != 0 {
								p += 4 // enterprise number
							}
						}
					}
				}
				off += n
			}
		}
		return tmpl
	}
	flows := extraFlows() // plain, every extra (IPv4), every extra (IPv6)
	withExtras := schemas.TemplateKey{Extras: schemas.AllExtras}.ID()
	cfg := Config{EnterpriseNumber: schemas.PENDocumentation}
	e, msgs := newTestEncoder(cfg)
	conn, connMsgs := newTestEncoder(cfg)
	conn.ann = e.ann // as NewExporter does for TCP
	now := testBase.Add(2 * time.Minute)

	if err := e.SendTemplates(now); err != nil {
		t.Fatal(err)
	}
	if got := ids(*msgs); !slices.Equal(got, []uint16{256, 257}) {
		t.Fatalf("first templates %v, want the plain ones only", got)
	}
	for _, f := range append(flows, flows...) {
		if err := e.Add(&f); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Flush(now); err != nil {
		t.Fatal(err)
	}
	if got := ids((*msgs)[1:]); !slices.Equal(got, []uint16{withExtras, withExtras + 1}) {
		t.Errorf("with the records: templates %v, want %d and %d once each", got, withExtras, withExtras+1)
	}
	*msgs = nil
	if err := e.SendTemplates(now); err != nil {
		t.Fatal(err)
	}
	if err := conn.SendTemplates(now); err != nil {
		t.Fatal(err)
	}
	want := []uint16{256, 257, withExtras, withExtras + 1}
	if got := ids(*msgs); !slices.Equal(got, want) {
		t.Errorf("refresh: templates %v, want %v", got, want)
	}
	if got := ids(*connMsgs); !slices.Equal(got, want) {
		t.Errorf("new connection: templates %v, want %v", got, want)
	}
}

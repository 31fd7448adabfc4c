package bpf

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gopacket/gopacket/pcapgo"
)

// Real captures (zeek's test traces, in the shared captures directory next
// to the repository, not in it) run frame by frame through the program and
// the drained table compared with what the spec makes of tshark's
// dissection of the same frames (tshark_test.go: specOf).

// capturesDir is ../shared/captures from the repository root, or
// $XDPFLOW_CAPTURES (a git worktree elsewhere); tests skip without it.
func capturesDir(t testing.TB) string {
	dir := os.Getenv("XDPFLOW_CAPTURES")
	if dir == "" {
		dir = filepath.Join("..", "..", "shared", "captures")
	}
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("real captures not available (%v): a plain clone has no ../shared/captures; set XDPFLOW_CAPTURES to their directory", err)
	}
	return dir
}

// readCapture returns a pcap or pcapng file's frames (Ethernet).
func readCapture(t *testing.T, file string) [][]byte {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var next func() ([]byte, int, int, error)
	if strings.HasSuffix(file, ".pcapng") {
		r, err := pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
		if err != nil {
			t.Fatal(err)
		}
		next = func() ([]byte, int, int, error) {
			d, ci, err := r.ReadPacketData()
			return d, ci.CaptureLength, ci.Length, err
		}
	} else {
		r, err := pcapgo.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		next = func() ([]byte, int, int, error) {
			d, ci, err := r.ReadPacketData()
			return d, ci.CaptureLength, ci.Length, err
		}
	}
	var frames [][]byte
	for {
		data, capLen, wireLen, err := next()
		if errors.Is(err, io.EOF) {
			return frames
		}
		if err != nil {
			t.Fatal(err)
		}
		if capLen != wireLen {
			t.Fatalf("%s: frame %d cut by the capture's snap length: %d of %d bytes", file, len(frames)+1, capLen, wireLen)
		}
		frames = append(frames, data)
	}
}

// What the captures hold, and where the spec and tshark's dissection part
// ways (the bytes read, the spec followed; specOf applies it):
//   - erspan.pcap is not ERSPAN: GRE transparent Ethernet bridging with
//     keys 0 and 0x02000000, a tunnel (GRE, id the key). 39 of its frames
//     are outer IP fragments of GRE packets (1,514-byte frames): the outer
//     GRE flow, not decapsulated (tshark would show the reassembled inner
//     packet on each last fragment: reassembly is off here). Its 10 inner
//     ARP frames are non-IP.
//   - erspanI.pcap: ERSPAN type I (GRE 0x88be, S bit clear), session 0.
//     erspanIII.pcap: type III, GRE sequence number, no subheader, session
//     0. gre-erspan3-dot1q.pcap: type III with the platform subheader (O
//     bit), the inner frame tagged 802.1Q 10: vlan_id 10 as a mirror.
//   - gre-sample.pcap: two ICMP port unreachables quote a UDP/DNS header,
//     which tshark dissects as the innermost IP layer; the flow is the
//     ICMP packet's (dst port 3<<8|3).
//   - gtp4_udp_2152_inside.pcap: inside the GTP-U tunnel a UDP packet to
//     port 2152 whose payload starts 0x80 (RTP version 2; as GTP,
//     version 4). tshark does not take it for GTP; the spec does (UDP
//     destination port 2152) and requires version 1: gtpu_bad_header, no
//     flow. With TunnelsOuter it is the outer UDP flow.
//   - gtp_ext_header.pcap: frame 1 is the first fragment (MF) of a GTP-U
//     packet to port 2152, frame 2 the rest. tshark dissects GTP-U and the
//     inner TCP in frame 1; the spec counts an outer fragment as the outer
//     flow, ports 0, first fragment included, so both frames are one flow.
//     With TunnelsOuter the first fragment keeps its ports, as plain IP.
//   - vxlan-encapsulated-http.pcap has a 9,100-byte frame (GRO): replayed
//     through the multi-buffer twin.
//   - vxlan-triple-v2.pcap: VXLAN in VXLAN in VXLAN (VNIs 1, 2, 3): the
//     innermost keyed (VNI 3, endpoints 3.3.3.3 > 3.3.3.9) if
//     maxTunnelDepth is 3, tunnel_too_deep if it is 2.
//   - mpls-in-vlan.pcap: one frame tagged VLAN 0, one with the two-label
//     stack 254, 99 (top label 254 keyed, both entries in the value).

// capturePass is one way of counting a capture: a Config and its name.
type capturePass struct {
	name string
	cfg  Config
}

var erspanMirror = []Mirror{{Type: MirrorERSPAN}}

// capturePasses are the configurations each capture is replayed under:
// the spec's (the innermost conversation; ERSPAN captures with ERSPAN a
// configured mirror), IP tunnels counted as the outer packet, the MACs in
// the key, and for the ERSPAN captures ERSPAN not configured (the outer
// GRE flow). erspan.pcap is not ERSPAN despite its name: GRE transparent
// Ethernet bridging (0x6558), a tunnel, with outer IP fragments.
func capturePasses(name string) []capturePass {
	cfg := Config{MaxFlows: 1024}
	if slices.Contains([]string{"erspanI.pcap", "erspanIII.pcap", "gre-erspan3-dot1q.pcap"}, name) {
		cfg.Mirrors = erspanMirror
		return []capturePass{
			{"erspan mirror", cfg},
			{"erspan mirror, macs", with(cfg, func(c *Config) { c.MACs = true })},
			{"erspan mirror, tunnels outer", with(cfg, func(c *Config) { c.TunnelsOuter = true })},
			{"erspan not a mirror", Config{MaxFlows: 1024}},
		}
	}
	return []capturePass{
		{"tunnels inner", cfg},
		{"tunnels outer", with(cfg, func(c *Config) { c.TunnelsOuter = true })},
		{"macs", with(cfg, func(c *Config) { c.MACs = true })},
	}
}

func with(c Config, f func(*Config)) Config {
	c.Mirrors = slices.Clone(c.Mirrors)
	f(&c)
	return c
}

// datapaths loads one datapath per configuration and hands it out again
// for the same one: loading costs ~0.2 s, a table case microseconds.
type datapaths struct {
	t *testing.T
	m map[string]*Datapath
}

func newDatapaths(t *testing.T) *datapaths { return &datapaths{t: t, m: map[string]*Datapath{}} }

func (p *datapaths) get(cfg Config) *Datapath {
	cfg.Mirrors = slices.Clone(cfg.Mirrors) // setDefaults fills in ports
	if err := cfg.setDefaults(); err != nil {
		p.t.Fatal(err)
	}
	id := fmt.Sprintf("%+v", cfg)
	d, ok := p.m[id]
	if !ok {
		d = load(p.t, cfg) // closed when the parent test ends
		p.m[id] = d
	}
	return d
}

func TestCapturesAgainstTshark(t *testing.T) {
	dir := capturesDir(t)
	files, err := filepath.Glob(filepath.Join(dir, "*.pcap*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no captures in %s (%v)", dir, err)
	}
	// One tshark run over every frame of every capture.
	var all [][]byte
	start := map[string]int{}
	count := map[string]int{}
	for _, file := range files {
		frames := readCapture(t, file)
		start[file], count[file] = len(all), len(frames)
		all = append(all, frames...)
	}
	dissected := dissect(t, all, nil)
	dps := newDatapaths(t)
	for _, file := range files {
		name := filepath.Base(file)
		frames := dissected[start[file] : start[file]+count[file]]
		t.Run(name, func(t *testing.T) {
			for _, pass := range capturePasses(name) {
				t.Run(pass.name, func(t *testing.T) {
					d := dps.get(pass.cfg)
					want := specFlows(t, frames, pass.cfg)
					before, err := d.Stats()
					if err != nil {
						t.Fatal(err)
					}
					for _, f := range frames {
						// A frame past the first buffer goes to the
						// multi-buffer twin, as on a jumbo link: the
						// plain program sees 3,520 bytes of it in a
						// test run (vxlan-encapsulated-http.pcap has
						// a 9,100-byte frame, captured after GRO).
						p := d.Program
						if len(f.data) > 3520 {
							p = d.FragsProgram
						}
						run(t, p, f.data)
					}
					compareTables(t, drainAll(t, d), want.flows)
					after, err := d.Stats()
					if err != nil {
						t.Fatal(err)
					}
					checkSpecStats(t, statsSince(before, after), len(frames), want)
					t.Logf("%d frames: %d flows, %d non-IP, malformed %v", len(frames), len(want.flows), want.nonIP, want.malformed)
				})
			}
		})
	}
	if len(files) != 26 {
		t.Errorf("%d captures in %s, the corpus has 26", len(files), dir)
	}
}

// checkSpecStats compares the counters of frames with the spec's.
func checkSpecStats(t *testing.T, st Stats, frames int, want specTable) {
	t.Helper()
	var inFlows uint64
	for _, v := range want.flows {
		inFlows += v.Packets
	}
	if st.Packets != uint64(frames) || st.FlowPackets != inFlows || st.NonIp != want.nonIP || st.Fragments != want.fragments ||
		st.NewFlows != uint64(len(want.flows)) || st.UpdateFailedPackets != 0 {
		t.Errorf("stats %+v: want %d frames, %d in %d flows, %d non-IP, %d fragments", st, frames, inFlows, len(want.flows), want.nonIP, want.fragments)
	}
	for i, n := range st.Malformed {
		if w := want.malformed[MalformedReasons[i]]; n != w {
			t.Errorf("malformed[%s] = %d, want %d", MalformedReasons[i], n, w)
		}
	}
	checkIdentity(t, st)
}

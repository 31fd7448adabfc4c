package ipfix

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/xdpflow/xdpflow/schemas"
)

// The flow templates as RFC 7011 / RFC 3954 collectors must read them,
// spelled out here rather than derived from the encoder.
func wantTemplate(p Protocol, v6 bool) []schemas.Field {
	src, dst, icmp := schemas.Field{ID: 8, Length: 4}, schemas.Field{ID: 12, Length: 4}, schemas.Field{ID: 32, Length: 2}
	if v6 {
		src, dst, icmp = schemas.Field{ID: 27, Length: 16}, schemas.Field{ID: 28, Length: 16}, schemas.Field{ID: 139, Length: 2}
	}
	start, end := schemas.Field{ID: 152, Length: 8}, schemas.Field{ID: 153, Length: 8}
	if p == NetFlowV9 {
		start, end = schemas.Field{ID: 22, Length: 4}, schemas.Field{ID: 21, Length: 4}
	}
	return []schemas.Field{src, dst, {ID: 7, Length: 2}, {ID: 11, Length: 2}, {ID: 4, Length: 1}, {ID: 6, Length: 2},
		{ID: 5, Length: 1}, {ID: 58, Length: 2}, {ID: 10, Length: 4}, icmp, {ID: 1, Length: 8}, {ID: 2, Length: 8},
		{ID: 352, Length: 8}, start, end, {ID: 136, Length: 1}}
}

func TestTemplatesLayout(t *testing.T) {
	for _, p := range []Protocol{IPFIX, NetFlowV9} {
		t.Run(p.String(), func(t *testing.T) {
			cfg := Config{Protocol: p, ObservationDomain: 77, SamplingInterval: 1,
				Interfaces: map[uint32]string{3: "eth0", 1: "lo", 4: "a-very-long-interface-name-that-is-cut-at-32"}}
			msgs := encodeAll(t, cfg, nil)
			if len(msgs) != 1 {
				t.Fatalf("%d template messages, want 1", len(msgs))
			}
			b := msgs[0]
			be := binary.BigEndian

			// Header: RFC 7011 3.1 / RFC 3954 5.1.
			if v := be.Uint16(b); v != uint16(p) {
				t.Fatalf("version %d", v)
			}
			exportSecs := uint32(testBase.Add(2 * time.Minute).Unix())
			if p == IPFIX {
				if l := be.Uint16(b[2:]); int(l) != len(b) {
					t.Errorf("length %d, message %d bytes", l, len(b))
				}
				if s := be.Uint32(b[4:]); s != exportSecs {
					t.Errorf("export time %d, want %d", s, exportSecs)
				}
				if d := be.Uint32(b[12:]); d != 77 {
					t.Errorf("observation domain %d", d)
				}
			} else {
				// 2 templates + 2 options templates + 1 sampling + 3 interfaces.
				if c := be.Uint16(b[2:]); c != 8 {
					t.Errorf("count %d, want 8", c)
				}
				if up := be.Uint32(b[4:]); up != uint32((time.Hour + 2*time.Minute).Milliseconds()) {
					t.Errorf("sysUptime %d", up)
				}
				if s := be.Uint32(b[8:]); s != exportSecs {
					t.Errorf("unix secs %d, want %d", s, exportSecs)
				}
				if d := be.Uint32(b[16:]); d != 77 {
					t.Errorf("source id %d", d)
				}
			}

			d := decodeAll(t, p, msgs)
			m := d.msgs[0]
			tmplSet, optSet := uint16(2), uint16(3)
			if p == NetFlowV9 {
				tmplSet, optSet = 0, 1
			}
			wantSets := []uint16{tmplSet, optSet, schemas.TemplateSampling, schemas.TemplateInterface}
			if !slices.Equal(m.setIDs, wantSets) {
				t.Errorf("sets %v, want %v (templates before the data that uses them)", m.setIDs, wantSets)
			}
			// Template set header and field list.
			if got := m.sets[0].body; be.Uint16(got) != schemas.TemplateIPv4 || int(be.Uint16(got[2:])) != len(wantTemplate(p, false)) {
				t.Errorf("first template record header: id %d, %d fields", be.Uint16(got), be.Uint16(got[2:]))
			}
			for id, want := range map[uint16][]schemas.Field{schemas.TemplateIPv4: wantTemplate(p, false), schemas.TemplateIPv6: wantTemplate(p, true)} {
				if got := d.templates[id].fields; !slices.Equal(got, want) {
					t.Errorf("template %d:\n got %v\nwant %v", id, got, want)
				}
			}
			// Options templates.
			samp, ifc := d.templates[schemas.TemplateSampling], d.templates[schemas.TemplateInterface]
			wantSampScope, wantIfScope := []schemas.Field{{ID: 149, Length: 4}}, []schemas.Field{{ID: 10, Length: 4}}
			wantSamp := []schemas.Field{{ID: 305, Length: 4}, {ID: 306, Length: 4}, {ID: 304, Length: 2}, {ID: 34, Length: 4}, {ID: 35, Length: 1}}
			if p == NetFlowV9 {
				wantSampScope, wantIfScope = []schemas.Field{{ID: 1, Length: 4}}, []schemas.Field{{ID: 2, Length: 4}}
				wantSamp = []schemas.Field{{ID: 34, Length: 4}, {ID: 35, Length: 1}}
			}
			if !slices.Equal(samp.scope, wantSampScope) || !slices.Equal(samp.fields, wantSamp) {
				t.Errorf("sampling options template: scope %v fields %v", samp.scope, samp.fields)
			}
			if !slices.Equal(ifc.scope, wantIfScope) || !slices.Equal(ifc.fields, []schemas.Field{{ID: 82, Length: 32}}) {
				t.Errorf("interface options template: scope %v fields %v", ifc.scope, ifc.fields)
			}
			// Options data.
			if len(d.sampling) != 1 || d.sampling[0][34] != 1 || d.sampling[0][35] != 1 {
				t.Errorf("sampling data %v", d.sampling)
			}
			if p == IPFIX && (d.sampling[0][149] != 77 || d.sampling[0][305] != 1 || d.sampling[0][306] != 0 || d.sampling[0][304] != 1) {
				t.Errorf("sampling data %v", d.sampling)
			}
			wantIf := map[uint32]string{1: "lo", 3: "eth0", 4: "a-very-long-interface-name-that-"}
			if len(d.ifaces) != 3 || d.ifaces[1] != wantIf[1] || d.ifaces[3] != wantIf[3] || d.ifaces[4] != wantIf[4] {
				t.Errorf("interfaces %v, want %v", d.ifaces, wantIf)
			}
			// Sequence: IPFIX counts data records only (the options data
			// here are data records), v9 counts packets; both start at 0.
			if m.seq != 0 {
				t.Errorf("first sequence number %d", m.seq)
			}
		})
	}
}

func TestSamplingInterval(t *testing.T) {
	for _, p := range []Protocol{IPFIX, NetFlowV9} {
		d := decodeAll(t, p, encodeAll(t, Config{Protocol: p, SamplingInterval: 100}, nil))
		s := d.sampling[0]
		if s[34] != 100 || (p == IPFIX && (s[305] != 1 || s[306] != 99)) {
			t.Errorf("%v: sampling %v, want interval 100, packet interval 1, space 99", p, s)
		}
	}
}

// TestMessages encodes many flows in several shapes and checks each message
// against the RFCs: sizes, set lengths and padding, sequence numbers, whole
// records packed as tightly as the limit allows, every field read back.
func TestMessages(t *testing.T) {
	mixed := randomFlows(3000, 0.5, 1)
	v4 := randomFlows(2000, 0, 2)
	v6 := randomFlows(2000, 1, 3)
	alternating := make([]schemas.Flow, 0, 400)
	for i := range 200 {
		alternating = append(alternating, v4[i], v6[i])
	}
	cases := []struct {
		name   string
		max    int
		flows  []schemas.Flow
		packed bool // one family: every full message is packed to the limit
	}{
		{"fixed", 1400, fixedFlows(), false},
		{"mixed-1400", 1400, mixed, false},
		{"v4-1400", 1400, v4, true},
		{"v6-1400", 1400, v6, true},
		{"v4-min", 100, v4, true}, // clamped to the 256-byte minimum
		{"v6-9000", 9000, v6, true},
		{"alternating-512", 512, alternating, false},
		{"v4-65535", 70000, v4, true},
	}
	for _, p := range []Protocol{IPFIX, NetFlowV9} {
		for _, c := range cases {
			t.Run(p.String()+"/"+c.name, func(t *testing.T) {
				cfg := Config{Protocol: p, MaxMessageBytes: c.max, Interfaces: map[uint32]string{1: "eth0"}}
				limit := cfg.withDefaults().MaxMessageBytes
				msgs := encodeAll(t, cfg, c.flows)
				d := decodeAll(t, p, msgs)

				var dataBefore uint32
				for i, m := range d.msgs {
					if m.size > limit {
						t.Fatalf("message %d: %d bytes > MaxMessageBytes %d", i, m.size, limit)
					}
					want := dataBefore
					if p == NetFlowV9 {
						want = uint32(i)
					}
					if m.seq != want {
						t.Fatalf("message %d: sequence %d, want %d", i, m.seq, want)
					}
					dataBefore += uint32(m.dataRecs)
					if m.domain != 1 {
						t.Fatalf("message %d: domain %d, want default 1", i, m.domain)
					}
					if c.packed && m.flowRecs > 0 && i < len(d.msgs)-1 {
						rl := recordLen(wantTemplate(p, c.flows[0].SrcAddr.Is6()))
						pad := 0
						if p == NetFlowV9 {
							pad = 3
						}
						if m.size+rl+pad <= limit {
							t.Fatalf("message %d: %d bytes, another %d-byte record would have fit in %d", i, m.size, rl, limit)
						}
					}
				}
				if len(d.flows) != len(c.flows) {
					t.Fatalf("%d records decoded, %d sent", len(d.flows), len(c.flows))
				}
				for i := range c.flows {
					if want := wantFlow(c.flows[i]); d.flows[i] != want {
						t.Fatalf("record %d:\n got %+v\nwant %+v", i, d.flows[i], want)
					}
					wantICMP := uint16(0)
					if c.flows[i].IsICMP() {
						wantICMP = c.flows[i].DstPort
					}
					if d.icmp[i] != wantICMP {
						t.Fatalf("record %d: icmpTypeCode %#x, want %#x", i, d.icmp[i], wantICMP)
					}
				}
			})
		}
	}
}

// TestV9Uptime checks FIRST/LAST_SWITCHED clamp at the sysUptime origin.
func TestV9Uptime(t *testing.T) {
	e, msgs := newTestEncoder(Config{Protocol: NetFlowV9})
	f := fixedFlows()[0]
	f.TimeFlowStartNs = testBase.Add(-2 * time.Hour).UnixNano() // before the origin
	if err := e.Add(&f); err != nil {
		t.Fatal(err)
	}
	e.Flush(e.now())
	d := newDecoded(NetFlowV9)
	d.templates[schemas.TemplateIPv4] = parsedTemplate{fields: wantTemplate(NetFlowV9, false)}
	if err := d.feed((*msgs)[0]); err != nil {
		t.Fatal(err)
	}
	if got, want := d.flows[0].TimeFlowStartNs, testBase.Add(-time.Hour).Truncate(time.Second).UnixNano(); got != want {
		t.Errorf("start before the origin read back as %v, want the origin %v", time.Unix(0, got), time.Unix(0, want))
	}
}

func TestInvalidFlow(t *testing.T) {
	good := fixedFlows()[0]
	cases := []struct {
		name string
		mod  func(f *schemas.Flow)
	}{
		{"zero src", func(f *schemas.Flow) { f.SrcAddr = netip.Addr{} }},
		{"zero dst", func(f *schemas.Flow) { f.DstAddr = netip.Addr{} }},
		{"zero both", func(f *schemas.Flow) { *f = schemas.Flow{} }},
		{"mixed families", func(f *schemas.Flow) { f.DstAddr = netip.MustParseAddr("2001:db8::1") }},
	}
	for _, p := range []Protocol{IPFIX, NetFlowV9} {
		for _, c := range cases {
			t.Run(p.String()+"/"+c.name, func(t *testing.T) {
				e, msgs := newTestEncoder(Config{Protocol: p})
				f := good
				c.mod(&f)
				if err := e.Add(&f); !errors.Is(err, ErrInvalidFlow) {
					t.Fatalf("Add = %v, want ErrInvalidFlow", err)
				}
				if err := e.Flush(e.now()); err != nil || len(*msgs) != 0 {
					t.Fatalf("flush after a rejected record: %v, %d messages", err, len(*msgs))
				}
			})
		}
	}
}

func TestSendErrorKeepsRecord(t *testing.T) {
	fail := true
	var got [][]byte
	e := NewEncoder(Config{MaxMessageBytes: 256}, func(m []byte) error {
		if fail {
			return errors.New("boom")
		}
		got = append(got, append([]byte(nil), m...))
		return nil
	})
	flows := randomFlows(4, 0, 9) // 3 fit in 256 bytes
	var errs int
	for i := range flows {
		if err := e.Add(&flows[i]); err != nil {
			errs++
		}
	}
	fail = false
	if err := e.Flush(time.Now()); err != nil {
		t.Fatal(err)
	}
	if errs != 1 || len(got) != 1 {
		t.Fatalf("%d errors, %d messages; want 1 and 1", errs, len(got))
	}
	// The failed message still advanced the sequence: the collector sees the gap.
	if seq := binary.BigEndian.Uint32(got[0][8:]); seq != 3 {
		t.Errorf("sequence after a lost 3-record message = %d, want 3", seq)
	}
}

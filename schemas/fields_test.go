package schemas

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// FIELDS.md is the contract's description: these tests keep it true to
// flow.proto and to the templates in ie.go.

func readFields(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("FIELDS.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// section returns the text under a heading, up to the next heading of the
// same or a higher level.
func section(t *testing.T, doc, heading string) string {
	t.Helper()
	i := strings.Index(doc, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("FIELDS.md has no %q", heading)
	}
	level := strings.Repeat("#", strings.Index(heading, " "))
	rest := doc[i+len(heading)+2:]
	for _, h := range []string{"\n" + level + " ", "\n" + level[:max(1, len(level)-1)] + " "} {
		if j := strings.Index(rest, h); j >= 0 {
			rest = rest[:j]
		}
	}
	return rest
}

// rows returns the cells of each table row of a section, header excluded.
func rows(s string) [][]string {
	var out [][]string
	for _, line := range strings.Split(s, "\n") {
		if !strings.HasPrefix(line, "| ") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		out = append(out, cells)
	}
	if len(out) > 0 {
		out = out[1:]
	}
	return out
}

func kindName(fd protoreflect.FieldDescriptor) string {
	k := fd.Kind().String()
	if fd.Kind() == protoreflect.EnumKind {
		k = "enum"
	}
	if fd.IsList() {
		return "repeated " + k
	}
	return k
}

func TestFieldsDocumentMessages(t *testing.T) {
	doc := readFields(t)
	for _, tc := range []struct {
		heading string
		md      protoreflect.MessageDescriptor
	}{
		{"## FlowMessage", (&FlowMessage{}).ProtoReflect().Descriptor()},
		{"## SampleMessage", (&SampleMessage{}).ProtoReflect().Descriptor()},
	} {
		documented := map[string]string{}
		for _, r := range rows(section(t, doc, tc.heading)) {
			documented[strings.Trim(r[0], "`")] = r[1]
		}
		fields := tc.md.Fields()
		for i := 0; i < fields.Len(); i++ {
			fd := fields.Get(i)
			typ, ok := documented[string(fd.Name())]
			if !ok {
				t.Errorf("%s: field %s is not described in FIELDS.md", tc.md.Name(), fd.Name())
				continue
			}
			if typ != kindName(fd) {
				t.Errorf("%s.%s: FIELDS.md says %s, flow.proto has %s", tc.md.Name(), fd.Name(), typ, kindName(fd))
			}
			delete(documented, string(fd.Name()))
		}
		for name := range documented {
			t.Errorf("FIELDS.md describes %s.%s, which flow.proto does not have", tc.md.Name(), name)
		}
	}
}

func TestFieldsDocumentTemplates(t *testing.T) {
	doc := readFields(t)
	extra := func(x Extras) []Field { // what an extra adds to template 256
		f, _ := Fields(FlowTemplate(TemplateKey{Extras: x}, true, false), false, PENDocumentation)
		return f[len(IPFIXFlowIPv4):]
	}
	v4Dir, _ := Fields(FlowTemplate(TemplateKey{Dir: true}, false, false), false, 0)
	dirFields := v4Dir[len(IPFIXFlowIPv4):]
	for _, tc := range []struct {
		heading string
		fields  []Field
	}{
		{"### Template 256: IPv4 flows", IPFIXFlowIPv4},
		{"### Template 257: IPv6 flows", IPFIXFlowIPv6},
		{"### Templates 260 and 261: flows with a direction", dirFields},
		{"### Templates 262 to 265: bidirectional flows (RFC 5103)", append([]Field{{ID: IEBiflowDirection, Length: 1}}, BiflowReverse...)},
		{"#### Extra: MACs", extra(ExtraMAC)},
		{"#### Extra: MPLS", extra(ExtraMPLS)},
		{"#### Extra: tunnel", extra(ExtraTunnel)},
		{"#### Extra: mirror", extra(ExtraMirror)},
		{"#### Extra: TCP health", extra(ExtraTCP)},
		{"### Options template 258: sampling configuration", IPFIXSamplingOptions},
		{"### Options template 259: interface names", InterfaceOptions},
	} {
		var got []Field
		for _, r := range rows(section(t, doc, tc.heading)) {
			// Reverse IEs are written PEN/IE.
			id, err1 := strconv.Atoi(r[0][strings.LastIndex(r[0], "/")+1:])
			n, err2 := strconv.Atoi(r[2])
			if err1 != nil || err2 != nil {
				t.Fatalf("%s: bad row %q", tc.heading, r)
			}
			f := Field{ID: uint16(id), Length: uint16(n)}
			switch {
			case strings.HasPrefix(r[0], "E/"): // ours, under the enterprise number given
				f.PEN = PENDocumentation
			case strings.HasPrefix(r[0], "35632/"): // ntop's
				f.PEN = PENNtop
			}
			got = append(got, f)
		}
		if !slices.Equal(got, tc.fields) {
			t.Errorf("%s: FIELDS.md lists\n%v\nthe probe sends\n%v", tc.heading, got, tc.fields)
		}
	}
}

// TestFieldsDocumentExported: every Exported entry is described under
// FlowMessage with its IE, and the recipe names files that exist.
func TestFieldsDocumentExported(t *testing.T) {
	doc := readFields(t)
	ies := map[string]string{}
	for _, r := range rows(section(t, doc, "## FlowMessage")) {
		ies[strings.Trim(r[0], "`")] = r[3]
	}
	for _, x := range Exported {
		ie, ok := ies[x.Proto]
		if !ok {
			t.Errorf("Exported IE %d: FlowMessage field %q is not described in FIELDS.md", x.IE, x.Proto)
			continue
		}
		if !regexp.MustCompile(`\b` + strconv.Itoa(int(x.IE)) + `\b`).MatchString(ie) {
			t.Errorf("FIELDS.md: %s's IE column %q does not name IE %d", x.Proto, ie, x.IE)
		}
		if x.V9IE != 0 && !regexp.MustCompile(`\b`+strconv.Itoa(int(x.V9IE))+`\b`).MatchString(ie) {
			t.Errorf("FIELDS.md: %s's IE column %q does not name NetFlow v9's %d", x.Proto, ie, x.V9IE)
		}
	}
	recipe := section(t, doc, "## Adding an exported field")
	for _, m := range regexp.MustCompile("`([a-z/_]+\\.(?:go|h|c|proto))`").FindAllStringSubmatch(recipe, -1) {
		path := m[1] // schemas/ files by their name, others from the repository's root
		if strings.Contains(path, "/") {
			path = "../" + path
		}
		if _, err := os.Stat(path); err != nil {
			t.Errorf("FIELDS.md's recipe names %s: %v", m[1], err)
		}
	}
	for _, name := range []string{"Exported", "Merge", "ToMessage", "AppendFlowJSON", "TestExportedFields"} {
		if !strings.Contains(recipe, name) {
			t.Errorf("FIELDS.md's recipe does not mention %s", name)
		}
	}
}

// TestFieldsJSONExample: the JSON example parses as the message it shows.
func TestFieldsJSONExample(t *testing.T) {
	m := regexp.MustCompile("(?s)```json\n(.*?)```").FindStringSubmatch(readFields(t))
	if m == nil {
		t.Fatal("FIELDS.md has no JSON example")
	}
	var msg FlowMessage
	if err := protojson.Unmarshal([]byte(m[1]), &msg); err != nil {
		t.Fatalf("JSON example: %v", err)
	}
	f := msg.Flow()
	if f.SrcAddr.String() != "198.18.0.1" || f.DstAddr.String() != "198.18.0.2" || f.EndReason != EndOfFlow || msg.SchemaVersion != SchemaVersion {
		t.Errorf("JSON example reads as %+v", f)
	}
	// And it is what the probe writes for that record.
	want := testFlows()[0]
	want.TimeFlowStartNs, want.TimeFlowEndNs = 1764000000000000000, 1764000000500000000
	var mine FlowMessage
	want.ToMessage(&mine, &Meta{ProbeHost: "probe-1", ObservationDomain: 1, SamplingRate: 1, IfNames: map[uint32]string{3: "eth1"}}, 1764000000123456789)
	b, _ := FormatJSON.Append(nil, &mine)
	var fromProbe, fromDoc map[string]any
	if err := json.Unmarshal(b, &fromProbe); err != nil {
		t.Fatal(err)
	}
	json.Unmarshal([]byte(m[1]), &fromDoc)
	for k, v := range fromProbe {
		if fromDoc[k] != v {
			t.Errorf("JSON example: %s is %v, the probe writes %v", k, fromDoc[k], v)
		}
	}
	if len(fromDoc) != len(fromProbe) {
		t.Errorf("JSON example has %d fields, the probe writes %d", len(fromDoc), len(fromProbe))
	}
}

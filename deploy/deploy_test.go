package deploy

// What can be checked of deploy/ on a machine with no container engine and
// no systemd as PID 1 (README.md says what is not): the ClickHouse DDL
// against schemas.FlowMessage, the systemd units with systemd-analyze, the
// probe started with exactly the units' capability set, the Kubernetes
// manifests (kustomize build, then a strict structural decode), the compose
// file, the Dockerfile's build step, and the Grafana dashboard's PromQL
// against the programs' metric names. Every flag used anywhere must be one
// the built programs list in --help.

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
	"gopkg.in/yaml.v3"

	"github.com/xdpflow/xdpflow/internal/cmd/benchstat"
	"github.com/xdpflow/xdpflow/internal/syncbuf"
	"github.com/xdpflow/xdpflow/internal/testkit/testnet"
	"github.com/xdpflow/xdpflow/schemas"
)

// ---------------------------------------------------------------------------
// The programs: built once, statically (as the Dockerfile builds them), and
// their flags read from --help.

type programs struct {
	dir                   string
	probe, collector      string
	probeFlags, collFlags map[string]bool
	probeHelp, collHelp   string
	err                   error
}

var (
	progOnce sync.Once
	progs    programs
)

var helpFlag = regexp.MustCompile(`(?m)^\s+(?:-[a-z], )?--([a-z0-9-]+)`)

func built(t *testing.T) *programs {
	t.Helper()
	progOnce.Do(func() {
		dir, err := os.MkdirTemp("", "xdpflow-deploy-test")
		if err != nil {
			progs.err = err
			return
		}
		progs.dir = dir
		progs.probe, progs.collector = filepath.Join(dir, "xdpflow-probe"), filepath.Join(dir, "xdpflow-collector")
		for bin, pkg := range map[string]string{progs.probe: "../probe", progs.collector: "../collector"} {
			// As deploy/docker/Dockerfile builds them.
			cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, pkg)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				progs.err = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
				return
			}
		}
		help := func(bin string) (string, map[string]bool) {
			out, _ := exec.Command(bin, "--help").CombinedOutput() // pflag exits 0 or 2
			flags := map[string]bool{}
			for _, m := range helpFlag.FindAllStringSubmatch(string(out), -1) {
				flags[m[1]] = true
			}
			return string(out), flags
		}
		progs.probeHelp, progs.probeFlags = help(progs.probe)
		progs.collHelp, progs.collFlags = help(progs.collector)
		if !progs.probeFlags["iface"] || !progs.collFlags["listen"] {
			progs.err = fmt.Errorf("could not read the flags from --help:\n%s\n%s", progs.probeHelp, progs.collHelp)
		}
	})
	if progs.err != nil {
		t.Fatal(progs.err)
	}
	return &progs
}

func TestMain(m *testing.M) {
	code := m.Run()
	if progs.dir != "" {
		os.RemoveAll(progs.dir)
	}
	os.Exit(code)
}

// checkArgs fails for every --flag in args that flags does not know.
func checkArgs(t *testing.T, where string, args []string, flags map[string]bool) {
	t.Helper()
	for _, a := range args {
		if !strings.HasPrefix(a, "--") {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !flags[name] {
			t.Errorf("%s: flag --%s is not one the program knows", where, name)
		}
	}
}

// checkConfigKeys fails for every key of a YAML config file that is not a
// flag (the programs refuse such files at start).
func checkConfigKeys(t *testing.T, path string, flags map[string]bool) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	for k := range m {
		if !flags[k] || k == "config" {
			t.Errorf("%s: key %q is not a flag of the program", path, k)
		}
	}
	return m
}

func flagDefault(help, flag string) string {
	re := regexp.MustCompile(`--` + regexp.QuoteMeta(flag) + ` .*\(default "([^"]*)"\)`)
	m := re.FindStringSubmatch(help)
	if m == nil {
		return ""
	}
	return m[1]
}

func TestBinariesAreStatic(t *testing.T) {
	p := built(t)
	for _, bin := range []string{p.probe, p.collector} {
		f, err := elf.Open(bin)
		if err != nil {
			t.Fatal(err)
		}
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP || prog.Type == elf.PT_DYNAMIC {
				t.Errorf("%s built with CGO_ENABLED=0 is dynamically linked: it would not run on distroless/static", filepath.Base(bin))
			}
		}
		f.Close()
	}
}

// ---------------------------------------------------------------------------
// ClickHouse.

type chColumn struct {
	name, typ string
	kind      string // "", DEFAULT, MATERIALIZED, ALIAS, EPHEMERAL
}

type chTable struct {
	name     string
	columns  []chColumn
	engine   string
	settings map[string]string
}

type chView struct {
	name, to, from string
	selects        map[string]string // output column -> expression
}

var (
	sqlComment   = regexp.MustCompile(`--[^\n]*`)
	createTable  = regexp.MustCompile(`(?is)^CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?([\w.]+)\s*\(`)
	createView   = regexp.MustCompile(`(?is)^CREATE\s+MATERIALIZED\s+VIEW\s+(?:IF\s+NOT\s+EXISTS\s+)?([\w.]+)\s+TO\s+([\w.]+)\s+AS\s+SELECT\s+(.*)\s+FROM\s+([\w.]+)\s*$`)
	engineClause = regexp.MustCompile(`(?is)^\s*ENGINE\s*=\s*(\w+)`)
	settingPair  = regexp.MustCompile(`(?s)(\w+)\s*=\s*('(?:[^']*)'|[\w.]+)`)
)

// splitTop splits s at sep where no bracket is open and not inside quotes.
func splitTop(s string, sep byte) []string {
	var out []string
	depth, start, quoted := 0, 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\'':
			quoted = !quoted
		case quoted:
		case c == '(' || c == '[':
			depth++
		case c == ')' || c == ']':
			depth--
		case c == sep && depth == 0:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// closing returns the index of the bracket closing the one at open.
func closing(s string, open int) int {
	depth, quoted := 0, false
	for i := open; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\'':
			quoted = !quoted
		case quoted:
		case c == '(':
			depth++
		case c == ')':
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}

// parseType reads a ClickHouse type at the start of s (balanced brackets)
// and returns it and the rest.
func parseType(s string) (string, string) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && (s[i] == '_' || s[i] >= 'a' && s[i] <= 'z' || s[i] >= 'A' && s[i] <= 'Z' || s[i] >= '0' && s[i] <= '9') {
		i++
	}
	if i < len(s) && s[i] == '(' {
		end := closing(s, i)
		if end < 0 {
			return s, ""
		}
		i = end + 1
	}
	return s[:i], strings.TrimSpace(s[i:])
}

func parseDDL(t *testing.T, sql string) (tables map[string]*chTable, views []*chView) {
	t.Helper()
	tables = map[string]*chTable{}
	sql = sqlComment.ReplaceAllString(sql, "")
	for _, stmt := range splitTop(sql, ';') {
		stmt = strings.TrimSpace(stmt)
		if stmt == "" || regexp.MustCompile(`(?i)^CREATE\s+DATABASE`).MatchString(stmt) {
			continue
		}
		if m := createTable.FindStringSubmatchIndex(stmt); m != nil {
			tb := &chTable{name: stmt[m[2]:m[3]], settings: map[string]string{}}
			open := m[1] - 1
			end := closing(stmt, open)
			if end < 0 {
				t.Fatalf("%s: unbalanced brackets", tb.name)
			}
			for _, col := range splitTop(stmt[open+1:end], ',') {
				col = strings.TrimSpace(col)
				if col == "" {
					continue
				}
				name, rest, _ := strings.Cut(col, " ")
				typ, rest := parseType(rest)
				c := chColumn{name: name, typ: typ}
				if f := strings.Fields(rest); len(f) > 0 {
					c.kind = strings.ToUpper(f[0])
				}
				tb.columns = append(tb.columns, c)
			}
			tail := stmt[end+1:]
			em := engineClause.FindStringSubmatch(tail)
			if em == nil {
				t.Fatalf("%s: no ENGINE", tb.name)
			}
			tb.engine = em[1]
			if _, s, ok := strings.Cut(tail, "SETTINGS"); ok {
				for _, kv := range settingPair.FindAllStringSubmatch(s, -1) {
					tb.settings[kv[1]] = strings.Trim(kv[2], "'")
				}
			}
			tables[tb.name] = tb
			continue
		}
		if m := createView.FindStringSubmatch(stmt); m != nil {
			v := &chView{name: m[1], to: m[2], from: m[4], selects: map[string]string{}}
			for _, item := range splitTop(m[3], ',') {
				item = strings.TrimSpace(item)
				expr, alias := item, item
				if i := regexp.MustCompile(`(?i)\s+AS\s+`).FindAllStringIndex(item, -1); len(i) > 0 {
					last := i[len(i)-1]
					expr, alias = item[:last[0]], strings.TrimSpace(item[last[1]:])
				}
				v.selects[alias] = strings.TrimSpace(expr)
			}
			views = append(views, v)
			continue
		}
		t.Fatalf("unexpected statement in the DDL:\n%s", stmt)
	}
	return tables, views
}

// enumType is the Enum8/Enum16 a protobuf enum maps to: the same names for
// the same numbers.
func enumType(t *testing.T, typ string, e protoreflect.EnumDescriptor) error {
	m := regexp.MustCompile(`(?s)^Enum(8|16)\((.*)\)$`).FindStringSubmatch(typ)
	if m == nil {
		return fmt.Errorf("not an Enum8/Enum16")
	}
	got := map[string]int{}
	for _, pair := range splitTop(m[2], ',') {
		k, v, ok := strings.Cut(pair, "=")
		if !ok {
			return fmt.Errorf("enum value %q without a number", pair)
		}
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return err
		}
		got[strings.Trim(strings.TrimSpace(k), "'")] = n
	}
	want := map[string]int{}
	vals := e.Values()
	for i := 0; i < vals.Len(); i++ {
		want[string(vals.Get(i).Name())] = int(vals.Get(i).Number())
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		return fmt.Errorf("values %v, flow.proto has %v", got, want)
	}
	return nil
}

// compatible says whether a column of type typ holds field f as ClickHouse's
// Protobuf input writes it.
func compatible(t *testing.T, f protoreflect.FieldDescriptor, typ string) error {
	if f.Cardinality() == protoreflect.Repeated { // an Array of the element's type
		inner, ok := strings.CutPrefix(typ, "Array(")
		if !ok || f.Kind() == protoreflect.BytesKind || f.Kind() == protoreflect.EnumKind {
			return fmt.Errorf("repeated %s: want Array(a type of its element), a number or string", f.Kind())
		}
		typ = strings.TrimSuffix(inner, ")")
	}
	switch f.Kind() {
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		if typ == "UInt64" {
			return nil
		}
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		if typ == "UInt32" || typ == "UInt64" {
			return nil
		}
	case protoreflect.BytesKind:
		// Every bytes field of FlowMessage is a 16-byte address (FIELDS.md).
		if typ == "FixedString(16)" || typ == "IPv6" {
			return nil
		}
	case protoreflect.StringKind:
		if typ == "String" || typ == "LowCardinality(String)" {
			return nil
		}
	case protoreflect.BoolKind:
		if typ == "Bool" || typ == "UInt8" {
			return nil
		}
	case protoreflect.EnumKind:
		if typ == "String" || typ == "LowCardinality(String)" {
			return nil
		}
		return enumType(t, typ, f.Enum())
	}
	return fmt.Errorf("type %s does not hold protobuf %s", typ, f.Kind())
}

func TestClickHouseDDLMatchesSchema(t *testing.T) {
	b, err := os.ReadFile("clickhouse/01-xdpflow.sql")
	if err != nil {
		t.Fatal(err)
	}
	tables, views := parseDDL(t, string(b))
	var kafka, merge *chTable
	for _, tb := range tables {
		switch {
		case tb.engine == "Kafka":
			if kafka != nil {
				t.Fatalf("two Kafka tables: %s, %s", kafka.name, tb.name)
			}
			kafka = tb
		case strings.HasSuffix(tb.engine, "MergeTree"):
			if merge != nil {
				t.Fatalf("two MergeTree tables: %s, %s", merge.name, tb.name)
			}
			merge = tb
		}
	}
	if kafka == nil || merge == nil {
		t.Fatalf("want a Kafka table and a MergeTree table, have %v", tables)
	}

	// The Kafka engine reads what the programs write: FlowMessage, one per
	// Kafka record, without a length prefix (proto.Marshal, schemas.Format).
	p := built(t)
	wantTopic := flagDefault(p.probeHelp, "kafka-topic")
	if wantTopic == "" || wantTopic != flagDefault(p.collHelp, "kafka-topic") {
		t.Fatalf("the programs' default topics: probe %q, collector %q", wantTopic, flagDefault(p.collHelp, "kafka-topic"))
	}
	msg := (&schemas.FlowMessage{}).ProtoReflect().Descriptor()
	for k, want := range map[string]string{
		"kafka_topic_list": wantTopic,
		"kafka_format":     "ProtobufSingle",
		"kafka_schema":     "flow:" + string(msg.Name()),
	} {
		if got := kafka.settings[k]; got != want {
			t.Errorf("%s: %s = %q, want %q", kafka.name, k, got, want)
		}
	}
	for _, k := range []string{"kafka_broker_list", "kafka_group_name"} {
		if kafka.settings[k] == "" {
			t.Errorf("%s: %s not set", kafka.name, k)
		}
	}
	if _, err := os.Stat(filepath.Join("..", "schemas", strings.Split(kafka.settings["kafka_schema"], ":")[0]+".proto")); err != nil {
		t.Errorf("kafka_schema %q: %v", kafka.settings["kafka_schema"], err)
	}
	// A length-delimited message would start with its own length; ours
	// starts with a field tag. Holds ProtobufSingle (not Protobuf) to the
	// encoding actually used.
	one, err := schemas.FormatProto.Append(nil, &schemas.FlowMessage{Type: schemas.FlowMessage_XDPFLOW, Bytes: 1500, Packets: 10})
	if err != nil {
		t.Fatal(err)
	}
	if int(one[0]) == len(one)-1 {
		t.Errorf("schemas.FormatProto writes a length prefix: kafka_format should then be 'Protobuf'")
	}

	// Every FlowMessage field has a column of its name and a compatible
	// type in both tables.
	cols := func(tb *chTable) map[string]chColumn {
		m := map[string]chColumn{}
		for _, c := range tb.columns {
			if _, dup := m[c.name]; dup {
				t.Errorf("%s: column %s twice", tb.name, c.name)
			}
			m[c.name] = c
		}
		return m
	}
	kcols, mcols := cols(kafka), cols(merge)
	fields := msg.Fields()
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		for _, tc := range []struct {
			tb   *chTable
			cols map[string]chColumn
		}{{kafka, kcols}, {merge, mcols}} {
			c, ok := tc.cols[string(f.Name())]
			if !ok {
				t.Errorf("%s: no column for FlowMessage field %s (%s)", tc.tb.name, f.Name(), f.Kind())
				continue
			}
			if c.kind == "MATERIALIZED" || c.kind == "ALIAS" || c.kind == "EPHEMERAL" {
				t.Errorf("%s.%s is %s: it must hold the message's field", tc.tb.name, c.name, c.kind)
			}
			if err := compatible(t, f, c.typ); err != nil {
				t.Errorf("%s.%s (FlowMessage field %s %s): %v", tc.tb.name, c.name, f.Name(), f.Kind(), err)
			}
		}
	}
	// The Kafka table has nothing else: ClickHouse's Protobuf input fails
	// on a column that no field fills... unless told to skip; keep it exact.
	for _, c := range kafka.columns {
		if fields.ByName(protoreflect.Name(c.name)) == nil {
			t.Errorf("%s: column %s is not a FlowMessage field", kafka.name, c.name)
		}
	}

	// The materialized view: from the Kafka table to the MergeTree table,
	// filling every stored column.
	if len(views) != 1 {
		t.Fatalf("want one materialized view, have %d", len(views))
	}
	v := views[0]
	if v.from != kafka.name || v.to != merge.name {
		t.Errorf("%s: %s -> %s, want %s -> %s", v.name, v.from, v.to, kafka.name, merge.name)
	}
	for _, c := range merge.columns {
		expr, ok := v.selects[c.name]
		switch {
		case c.kind == "MATERIALIZED" || c.kind == "ALIAS":
			if ok {
				t.Errorf("%s: selects %s, a %s column", v.name, c.name, c.kind)
			}
		case !ok:
			t.Errorf("%s: does not fill %s.%s", v.name, merge.name, c.name)
		case kcols[c.name].typ != c.typ && "LowCardinality("+kcols[c.name].typ+")" != c.typ && !strings.Contains(expr, c.name+")"):
			t.Errorf("%s: %s is %s in %s and %s in %s but selected as %q", v.name, c.name,
				kcols[c.name].typ, kafka.name, c.typ, merge.name, expr)
		case kcols[c.name].typ == "FixedString(16)" && c.typ == "IPv6" && expr != "toIPv6(IPv6NumToString("+c.name+"))":
			t.Errorf("%s: %s: FixedString(16) -> IPv6 as %q", v.name, c.name, expr)
		}
	}
	for name := range v.selects {
		if _, ok := mcols[name]; !ok {
			t.Errorf("%s: selects %s, not a column of %s", v.name, name, merge.name)
		}
	}
}

// ---------------------------------------------------------------------------
// systemd.

type unitFile map[string]map[string][]string // section -> key -> values

func readUnit(t *testing.T, path string) unitFile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := unitFile{}
	sec := ""
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			sec = strings.Trim(line, "[]")
			u[sec] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: %q", path, line)
			}
			u[sec][k] = append(u[sec][k], v)
		}
	}
	return u
}

func (u unitFile) one(t *testing.T, key string) string {
	t.Helper()
	v := u["Service"][key]
	if len(v) != 1 {
		t.Fatalf("[Service] %s: %d values, want 1", key, len(v))
	}
	return v[0]
}

// probeCaps are the capabilities the probe needs (README.md, bpf/).
var probeCaps = []string{"CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"}

func TestSystemdUnits(t *testing.T) {
	p := built(t)
	units := []struct {
		file, bin, config string
		flags             map[string]bool
		caps              []string
		threshold         float64 // systemd-analyze security exposure, at most
	}{
		{"systemd/xdpflow-probe.service", p.probe, "systemd/probe.yaml", p.probeFlags, probeCaps, 3},
		{"systemd/xdpflow-collector.service", p.collector, "systemd/collector.yaml", p.collFlags, nil, 2},
	}
	analyze, lookErr := exec.LookPath("systemd-analyze")
	for _, tc := range units {
		t.Run(filepath.Base(tc.file), func(t *testing.T) {
			u := readUnit(t, tc.file)
			exe := strings.Fields(u.one(t, "ExecStart"))
			if exe[0] != "/usr/local/bin/"+filepath.Base(tc.bin) {
				t.Errorf("ExecStart runs %s", exe[0])
			}
			checkArgs(t, tc.file, exe[1:], tc.flags)
			// The collector (DynamicUser) reads its config through
			// LoadCredential=: a copy of /etc/xdpflow/NAME in %d.
			cfg := "/etc/xdpflow/" + filepath.Base(tc.config)
			if i := slices.Index(exe, "--config"); i < 0 || (exe[i+1] != cfg &&
				!(exe[i+1] == "%d/"+filepath.Base(tc.config) && slices.Contains(u["Service"]["LoadCredential"], filepath.Base(tc.config)+":"+cfg))) {
				t.Errorf("ExecStart does not read %s", cfg)
			}
			checkConfigKeys(t, tc.config, tc.flags)

			bounding := strings.Fields(u.one(t, "CapabilityBoundingSet"))
			sort.Strings(bounding)
			if !slices.Equal(bounding, tc.caps) {
				t.Errorf("CapabilityBoundingSet = %v, want %v", bounding, tc.caps)
			}
			for k, want := range map[string]string{"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
				"PrivateTmp": "yes", "PrivateDevices": "yes", "RestrictSUIDSGID": "yes", "SystemCallArchitectures": "native"} {
				if got := u.one(t, k); got != want {
					t.Errorf("%s=%s, want %s", k, got, want)
				}
			}
			if tc.caps != nil && !slices.Contains(u["Service"]["ReadWritePaths"], "/sys/fs/bpf") {
				t.Errorf("the probe needs /sys/fs/bpf writable (its pins) under ProtectSystem=strict")
			}

			if lookErr != nil {
				t.Skipf("systemd-analyze not found (Debian's systemd package): unit not verified: %v", lookErr)
			}
			// verify wants ExecStart's binary to exist: point it at the one
			// just built.
			b, _ := os.ReadFile(tc.file)
			tmp := filepath.Join(t.TempDir(), filepath.Base(tc.file))
			os.WriteFile(tmp, bytes.ReplaceAll(b, []byte("/usr/local/bin/"+filepath.Base(tc.bin)), []byte(tc.bin)), 0o644)
			out, err := exec.Command(analyze, "verify", "--man=no", "--generators=no", tmp).CombinedOutput()
			// Unknown keys and bad values are only warnings: any output fails.
			if err != nil || len(bytes.TrimSpace(out)) > 0 {
				t.Errorf("systemd-analyze verify: %v\n%s", err, out)
			}
			out, err = exec.Command(analyze, "security", "--offline=true", tmp).CombinedOutput()
			m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`).FindSubmatch(out)
			if err != nil || m == nil {
				t.Fatalf("systemd-analyze security: %v\n%s", err, out)
			}
			if got, _ := strconv.ParseFloat(string(m[1]), 64); got > tc.threshold {
				t.Errorf("systemd-analyze security: exposure %.1f, want at most %.1f\n%s", got, tc.threshold, out)
			}
			t.Logf("systemd-analyze security: exposure %s (10 is unsandboxed)", m[1])
		})
	}
	b, err := os.ReadFile("systemd/60-xdpflow-collector.conf")
	if err != nil {
		t.Fatal(err)
	}
	if def := flagDefault(p.collHelp, "udp-read-buffer"); def == "" {
		m := regexp.MustCompile(`--udp-read-buffer int .*\(default (\d+)\)`).FindStringSubmatch(p.collHelp)
		if m == nil || !strings.Contains(string(b), "net.core.rmem_max = "+m[1]) {
			t.Errorf("60-xdpflow-collector.conf does not raise rmem_max to the collector's --udp-read-buffer default")
		}
	}
}

// TestProbeRunsWithUnitCapabilities starts the probe the way the unit
// does, as far as it can be done without systemd: uid 0 with no
// capability outside the unit's CapabilityBoundingSet, no_new_privs, on a
// veth in a throwaway namespace with bpffs mounted, and stops it with
// SIGTERM.
func TestProbeRunsWithUnitCapabilities(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces and XDP")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv (util-linux) not found")
	}
	p := built(t)
	u := readUnit(t, "systemd/xdpflow-probe.service")
	var caps []string
	for _, c := range strings.Fields(u.one(t, "CapabilityBoundingSet")) {
		caps = append(caps, "+"+strings.ToLower(strings.TrimPrefix(c, "CAP_")))
	}
	pair, err := testnet.NewPair("xfdeploy", testnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer pair.Close()
	stateRoot := t.TempDir()
	run := func(capset string, extra ...string) (*exec.Cmd, *syncbuf.Buffer) {
		// `ip netns exec` gives the command its own mount namespace and
		// sysfs: mount a bpffs there for the pins, as systemd does at boot.
		script := `mount -t bpf bpf /sys/fs/bpf && exec "$@"`
		args := append([]string{"netns", "exec", pair.NsName("b"), "sh", "-c", script, "sh",
			setpriv, "--no-new-privs", "--bounding-set=-all," + capset, "--inh-caps=-all", "--",
			p.probe, "-i", pair.LinkB, "--metrics", "127.0.0.1:9477", "--ipfix", "udp://127.0.0.1:4739",
			"--state-dir", filepath.Join(stateRoot, "state")}, extra...) // the unit's RuntimeDirectory
		cmd := exec.Command("ip", args...)
		var logs syncbuf.Buffer
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, &logs
	}
	cmd, logs := run(strings.Join(caps, ","), "--kafka-spool-dir", t.TempDir())
	defer cmd.Process.Kill()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.After(20 * time.Second)
	for !strings.Contains(logs.String(), "attached") {
		select {
		case err := <-exited:
			t.Fatalf("the probe did not start with %v only: %v\n%s", caps, err, logs.String())
		case <-deadline:
			t.Fatalf("the probe did not attach in 20 s:\n%s", logs.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("the probe's exit on SIGTERM: %v\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Errorf("the probe did not stop within the unit's TimeoutStopSec (30 s)")
	}

	// And each capability is needed: without it the probe does not start.
	for i := range caps {
		fewer := slices.Delete(slices.Clone(caps), i, i+1)
		cmd, logs := run(strings.Join(append([]string{"-all"}, fewer...), ",")[5:])
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err == nil {
				t.Errorf("without %s the probe exited 0:\n%s", caps[i], logs.String())
			} else {
				t.Logf("without %s: %s", caps[i], lastLine(logs.String()))
			}
		case <-time.After(10 * time.Second):
			cmd.Process.Signal(syscall.SIGTERM)
			<-done
			t.Logf("without %s the probe still runs on this kernel (%s):\n%s", caps[i], benchstat.KernelRelease(), logs.String())
		}
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// ---------------------------------------------------------------------------
// Compose.

func TestCompose(t *testing.T) {
	p := built(t)
	b, err := os.ReadFile("compose/compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cf struct {
		Name     string `yaml:"name"`
		Services map[string]struct {
			Image       string            `yaml:"image"`
			Build       map[string]string `yaml:"build"`
			NetworkMode string            `yaml:"network_mode"`
			User        string            `yaml:"user"`
			CapDrop     []string          `yaml:"cap_drop"`
			CapAdd      []string          `yaml:"cap_add"`
			SecurityOpt []string          `yaml:"security_opt"`
			ReadOnly    bool              `yaml:"read_only"`
			Entrypoint  []string          `yaml:"entrypoint"`
			Command     []string          `yaml:"command"`
			Environment map[string]string `yaml:"environment"`
			Ports       []string          `yaml:"ports"`
			Volumes     []string          `yaml:"volumes"`
			Healthcheck map[string]any    `yaml:"healthcheck"`
			DependsOn   any               `yaml:"depends_on"`
			Ulimits     map[string]any    `yaml:"ulimits"`
			StopGrace   string            `yaml:"stop_grace_period"`
			Restart     string            `yaml:"restart"`
		} `yaml:"services"`
		Volumes map[string]any `yaml:"volumes"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&cf); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	for _, s := range []string{"kafka", "kafka-init", "clickhouse", "probe", "collector", "prometheus", "grafana"} {
		if _, ok := cf.Services[s]; !ok {
			t.Errorf("compose.yaml: no service %s", s)
		}
	}
	for name, s := range cf.Services {
		// Bind mounts point at files that exist; named volumes are declared.
		for _, v := range s.Volumes {
			src, dst, _ := strings.Cut(v, ":")
			dst, _, _ = strings.Cut(dst, ":")
			switch {
			case strings.HasPrefix(src, "."):
				if _, err := os.Stat(filepath.Join("compose", src)); err != nil {
					t.Errorf("%s: volume %s: %v", name, v, err)
				}
			case strings.HasPrefix(src, "/"):
			default:
				if _, ok := cf.Volumes[src]; !ok {
					t.Errorf("%s: named volume %s not declared", name, src)
				}
			}
			_ = dst
		}
		if s.Build != nil {
			if _, err := os.Stat(filepath.Join("compose", s.Build["context"], s.Build["dockerfile"])); err != nil {
				t.Errorf("%s: build: %v", name, err)
			}
		}
	}
	expand := func(args []string) []string {
		// ${VAR:-default} and ${VAR:?msg} as compose would, with VAR unset.
		re := regexp.MustCompile(`\$\{[A-Z_]+:[-?]([^}]*)\}`)
		var out []string
		for _, a := range args {
			out = append(out, re.ReplaceAllString(a, "$1"))
		}
		return out
	}
	probe, coll := cf.Services["probe"], cf.Services["collector"]
	checkArgs(t, "compose probe", expand(probe.Command), p.probeFlags)
	checkArgs(t, "compose collector", expand(coll.Command), p.collFlags)
	if probe.NetworkMode != "host" || probe.User != "0:0" || !slices.Equal(probe.CapDrop, []string{"ALL"}) {
		t.Errorf("compose probe: host network, uid 0, cap_drop ALL wanted")
	}
	var add []string
	for _, c := range probe.CapAdd {
		add = append(add, "CAP_"+c)
	}
	sort.Strings(add)
	if !slices.Equal(add, probeCaps) {
		t.Errorf("compose probe: cap_add %v, want %v", add, probeCaps)
	}
	if !slices.Contains(probe.Volumes, "/sys/fs/bpf:/sys/fs/bpf") {
		t.Errorf("compose probe: /sys/fs/bpf not mounted")
	}
	if len(coll.CapAdd) > 0 || !slices.Equal(coll.CapDrop, []string{"ALL"}) {
		t.Errorf("compose collector: no capabilities wanted")
	}
	// KRaft, one node.
	kenv := cf.Services["kafka"].Environment
	if !strings.Contains(kenv["KAFKA_PROCESS_ROLES"], "controller") || !strings.Contains(kenv["KAFKA_PROCESS_ROLES"], "broker") {
		t.Errorf("kafka: not a combined KRaft node: %q", kenv["KAFKA_PROCESS_ROLES"])
	}
	if id := kenv["CLUSTER_ID"]; len(id) != 22 {
		t.Errorf("kafka: CLUSTER_ID %q is not a base64url 16-byte id", id)
	}
	// One topic everywhere: the programs' default, kafka-init's, ClickHouse's.
	topic := flagDefault(p.probeHelp, "kafka-topic")
	init := cf.Services["kafka-init"].Command
	if i := slices.Index(init, "--topic"); i < 0 || init[i+1] != topic {
		t.Errorf("kafka-init does not create %s: %v", topic, init)
	}
	for _, args := range [][]string{probe.Command, coll.Command} {
		if !slices.Contains(args, "--kafka-topic="+topic) {
			t.Errorf("compose: %v does not name the topic %s", args, topic)
		}
	}
	ddl, _ := os.ReadFile("clickhouse/01-xdpflow.sql")
	tables, _ := parseDDL(t, string(ddl))
	for _, tb := range tables {
		if tb.engine == "Kafka" {
			if tb.settings["kafka_topic_list"] != topic {
				t.Errorf("ClickHouse reads %s", tb.settings["kafka_topic_list"])
			}
			if broker := tb.settings["kafka_broker_list"]; broker != "kafka:9092" || !strings.Contains(kenv["KAFKA_ADVERTISED_LISTENERS"], "//"+broker) {
				t.Errorf("ClickHouse's broker %s is not the compose broker's advertised listener (%s)", broker, kenv["KAFKA_ADVERTISED_LISTENERS"])
			}
		}
	}
	ch := cf.Services["clickhouse"]
	if !slices.Contains(ch.Volumes, "../../schemas/flow.proto:/var/lib/clickhouse/format_schemas/flow.proto:ro") ||
		!slices.Contains(ch.Volumes, "../clickhouse:/docker-entrypoint-initdb.d:ro") {
		t.Errorf("clickhouse: flow.proto in format_schemas and the DDL in docker-entrypoint-initdb.d wanted: %v", ch.Volumes)
	}
	// Prometheus scrapes what the programs serve.
	pb, err := os.ReadFile("compose/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	var prom struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(pb, &prom); err != nil {
		t.Fatal(err)
	}
	targets := map[string]bool{}
	for _, sc := range prom.ScrapeConfigs {
		for _, s := range sc.StaticConfigs {
			for _, tg := range s.Targets {
				targets[tg] = true
			}
		}
	}
	for _, want := range []string{"--metrics=127.0.0.1:9477"} {
		if !slices.Contains(probe.Command, want) || !targets["127.0.0.1:9477"] {
			t.Errorf("prometheus does not scrape the probe's %s", want)
		}
	}
	if !slices.Contains(coll.Command, "--metrics=0.0.0.0:9478") || !slices.Contains(coll.Ports, "127.0.0.1:9478:9478") || !targets["127.0.0.1:9478"] {
		t.Errorf("prometheus does not scrape the collector's published 127.0.0.1:9478")
	}
	if cf.Services["prometheus"].NetworkMode != "host" || cf.Services["grafana"].NetworkMode != "host" {
		t.Errorf("prometheus and grafana share the host network (the probe's metrics are on its loopback)")
	}
	// Grafana: the datasource the dashboard uses, the dashboard mounted
	// where the provider looks.
	var dsProv struct {
		Datasources []struct {
			Name, UID, Type, URL, Access string
			IsDefault                    bool `yaml:"isDefault"`
			Editable                     bool `yaml:"editable"`
		} `yaml:"datasources"`
		APIVersion int `yaml:"apiVersion"`
	}
	db, _ := os.ReadFile("compose/grafana/provisioning/datasources/prometheus.yaml")
	if err := yaml.Unmarshal(db, &dsProv); err != nil || len(dsProv.Datasources) != 1 || dsProv.Datasources[0].Type != "prometheus" ||
		dsProv.Datasources[0].URL != "http://127.0.0.1:9090" || !slices.Contains(cf.Services["prometheus"].Command, "--web.listen-address=127.0.0.1:9090") {
		t.Errorf("grafana's Prometheus datasource does not point at compose's Prometheus: %v %+v", err, dsProv)
	}
	var dashProv struct {
		Providers []struct {
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	pvb, _ := os.ReadFile("compose/grafana/provisioning/dashboards/xdpflow.yaml")
	if err := yaml.Unmarshal(pvb, &dashProv); err != nil || len(dashProv.Providers) != 1 ||
		!slices.Contains(cf.Services["grafana"].Volumes, "../grafana:"+dashProv.Providers[0].Options.Path+":ro") {
		t.Errorf("grafana: deploy/grafana is not mounted where the dashboard provider reads: %v %+v", err, dashProv)
	}

	if dc, err := exec.LookPath("docker-compose"); err == nil {
		cmd := exec.Command(dc, "-f", "compose/compose.yaml", "config", "-q")
		cmd.Env = append(os.Environ(), "PROBE_IFACE=eth1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("docker-compose config: %v\n%s", err, out)
		}
	} else {
		t.Logf("docker-compose not found: compose.yaml checked structurally only")
	}
}

// ---------------------------------------------------------------------------
// Dockerfile.

func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("docker/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(b), "\\\n", " ")
	type stage struct {
		from, name string
		lines      []string
	}
	var stages []*stage
	args := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		switch strings.ToUpper(f[0]) {
		case "ARG":
			if k, v, ok := strings.Cut(f[1], "="); ok && len(stages) == 0 {
				args[k] = v
			}
		case "FROM":
			s := &stage{from: f[1]}
			if len(f) == 4 && strings.EqualFold(f[2], "AS") {
				s.name = f[3]
			}
			for k, v := range args {
				s.from = strings.ReplaceAll(s.from, "${"+k+"}", v)
			}
			stages = append(stages, s)
			continue
		}
		if len(stages) > 0 {
			stages[len(stages)-1].lines = append(stages[len(stages)-1].lines, line)
		}
	}
	byName := map[string]*stage{}
	for _, s := range stages {
		byName[s.name] = s
	}
	build := byName["build"]
	if build == nil || build.from != "golang:1.26" {
		t.Fatalf("want a build stage FROM golang:1.26, have %+v", stages)
	}
	bl := strings.Join(build.lines, "\n")
	for _, pkg := range []string{"./probe", "./collector"} {
		if !regexp.MustCompile(`CGO_ENABLED=0 go build [^\n]*` + regexp.QuoteMeta(pkg) + `\b`).MatchString(bl) {
			t.Errorf("build stage: no CGO_ENABLED=0 go build of %s", pkg)
		}
	}
	for _, tc := range []struct{ target, bin string }{{"probe", "xdpflow-probe"}, {"collector", "xdpflow-collector"}} {
		s := byName[tc.target]
		if s == nil {
			t.Errorf("no %s target", tc.target)
			continue
		}
		if !strings.HasPrefix(s.from, "gcr.io/distroless/static") && s.from != "scratch" {
			t.Errorf("%s: runtime %s is neither distroless/static nor scratch", tc.target, s.from)
		}
		sl := strings.Join(s.lines, "\n")
		if !strings.Contains(sl, "COPY --from=build /out/"+tc.bin+" /usr/local/bin/"+tc.bin) ||
			!strings.Contains(sl, `ENTRYPOINT ["/usr/local/bin/`+tc.bin+`"]`) {
			t.Errorf("%s: does not install and run %s", tc.target, tc.bin)
		}
		user := regexp.MustCompile(`(?m)^USER (\d+)`).FindStringSubmatch(sl)
		if user == nil || user[1] == "0" {
			t.Errorf("%s: the image's user must be a numeric non-root uid", tc.target)
		}
	}
	if _, err := os.Stat("docker/Dockerfile.dockerignore"); err != nil {
		t.Error(err)
	}
}

// ---------------------------------------------------------------------------
// Grafana.

// metricLabels are the metric names the dashboard (and the docs) may use,
// with their labels.
var metricLabels = map[string][]string{
	"xdpflow_probe_frames_total":                  nil,
	"xdpflow_probe_flow_packets_total":            {"iface"},
	"xdpflow_probe_flow_bytes_total":              {"iface"},
	"xdpflow_probe_nonip_frames_total":            nil,
	"xdpflow_probe_malformed_frames_total":        {"reason"},
	"xdpflow_probe_unattributed_packets_total":    nil,
	"xdpflow_probe_fragments_total":               nil,
	"xdpflow_probe_samples_total":                 nil,
	"xdpflow_probe_samples_lost_total":            nil,
	"xdpflow_probe_tcp_conversations_full_total":  nil,
	"xdpflow_probe_tcp_conversations_swept_total": nil,
	"xdpflow_probe_tcp_seq_not_carried_total":     {"reason"},
	"xdpflow_probe_active_flows":                  nil,
	"xdpflow_probe_kernel_table_flows":            nil,
	"xdpflow_probe_kernel_table_size":             nil,
	"xdpflow_probe_table_pressure_ticks_total":    nil,
	"xdpflow_probe_flows_exported_total":          {"reason"},
	"xdpflow_probe_export_errors_total":           {"exporter"},
	"xdpflow_probe_attached":                      {"iface"},

	"xdpflow_collector_messages_total":        {"listener"},
	"xdpflow_collector_denied_total":          {"listener"},
	"xdpflow_collector_kernel_drops_total":    {"listener"},
	"xdpflow_collector_records_total":         {"exporter"},
	"xdpflow_collector_lost_records_total":    {"exporter"},
	"xdpflow_collector_sequence_resets_total": {"exporter"},
	"xdpflow_collector_template_misses_total": {"exporter"},
	"xdpflow_collector_bad_messages_total":    {"exporter", "reason"},

	"xdpflow_kafka_messages_sent_total":    nil,
	"xdpflow_kafka_write_failures_total":   nil,
	"xdpflow_kafka_messages_spooled_total": nil,
	"xdpflow_kafka_messages_dropped_total": nil,
	"xdpflow_kafka_queue_messages":         nil,
	"xdpflow_kafka_spool_bytes":            nil,
}

// Prometheus adds these to every series it scrapes.
var targetLabels = []string{"instance", "job"}

var promFuncs = map[string]bool{"rate": true, "irate": true, "increase": true, "sum": true, "max": true, "min": true,
	"avg": true, "count": true, "topk": true, "bottomk": true, "clamp_min": true, "delta": true, "deriv": true,
	"label_values": true, "max_over_time": true, "min_over_time": true, "avg_over_time": true, "abs": true, "histogram_quantile": true}

var promKeywords = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true,
	"group_right": true, "bool": true, "and": true, "or": true, "unless": true, "offset": true}

var (
	promString  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	promMatcher = regexp.MustCompile(`\{([^}]*)\}`)
	promGroup   = regexp.MustCompile(`\b(by|without|on|ignoring)\s*\(([^)]*)\)`)
	promRange   = regexp.MustCompile(`\[[^\]]*\]`)
	promIdent   = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*(\s*\()?`)
	legendLabel = regexp.MustCompile(`\{\{\s*([a-z_]+)\s*\}\}`)
)

// checkPromQL returns the metrics expr uses, and fails for any metric,
// function or label not known.
func checkPromQL(t *testing.T, where, expr string) []string {
	t.Helper()
	var labels []string
	e := promString.ReplaceAllString(expr, `""`)
	for _, m := range promMatcher.FindAllStringSubmatch(e, -1) {
		for _, part := range strings.Split(m[1], ",") {
			if name := strings.TrimSpace(regexp.MustCompile(`[=!~]`).Split(part, 2)[0]); name != "" {
				labels = append(labels, name)
			}
		}
	}
	e = promMatcher.ReplaceAllString(e, " ")
	for _, m := range promGroup.FindAllStringSubmatch(e, -1) {
		for _, l := range strings.Split(m[2], ",") {
			labels = append(labels, strings.TrimSpace(l))
		}
	}
	e = promGroup.ReplaceAllString(e, " ")
	e = promRange.ReplaceAllString(e, " ")
	var metrics []string
	for _, m := range promIdent.FindAllStringSubmatch(e, -1) {
		id := strings.TrimSpace(strings.TrimSuffix(m[0], "("))
		switch {
		case m[1] != "":
			if !promFuncs[id] {
				t.Errorf("%s: function %s( not expected in %q", where, id, expr)
			}
		case promKeywords[id]:
		default:
			if _, ok := metricLabels[id]; !ok {
				t.Errorf("%s: %s is not one of the programs' metrics (%q)", where, id, expr)
			}
			metrics = append(metrics, id)
		}
	}
	allowed := slices.Clone(targetLabels)
	for _, m := range metrics {
		allowed = append(allowed, metricLabels[m]...)
	}
	for _, l := range labels {
		if l != "" && !slices.Contains(allowed, l) {
			t.Errorf("%s: label %s is not a label of %v", where, l, metrics)
		}
	}
	return metrics
}

func TestGrafanaDashboard(t *testing.T) {
	files, _ := filepath.Glob("grafana/*.json")
	if len(files) == 0 {
		t.Fatal("no dashboard in grafana/")
	}
	used := map[string]bool{}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var dash struct {
			UID        string `json:"uid"`
			Title      string `json:"title"`
			Templating struct {
				List []struct {
					Name  string `json:"name"`
					Type  string `json:"type"`
					Query any    `json:"query"`
				} `json:"list"`
			} `json:"templating"`
			Panels []struct {
				ID         int    `json:"id"`
				Type       string `json:"type"`
				Title      string `json:"title"`
				Datasource *struct {
					Type string `json:"type"`
					UID  string `json:"uid"`
				} `json:"datasource"`
				GridPos struct{ H, W, X, Y int } `json:"gridPos"`
				Targets []struct {
					RefID        string `json:"refId"`
					Expr         string `json:"expr"`
					LegendFormat string `json:"legendFormat"`
				} `json:"targets"`
			} `json:"panels"`
		}
		if err := json.Unmarshal(b, &dash); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if dash.UID == "" || dash.Title == "" || len(dash.Panels) == 0 {
			t.Errorf("%s: uid, title and panels wanted", file)
		}
		vars := map[string]bool{"__rate_interval": true, "__interval": true}
		for _, v := range dash.Templating.List {
			vars[v.Name] = true
			if q, ok := v.Query.(map[string]any); ok {
				// label_values(metric, label)
				metric, label, _ := strings.Cut(strings.TrimSuffix(strings.TrimPrefix(q["query"].(string), "label_values("), ")"), ",")
				checkPromQL(t, file+" variable "+v.Name, metric+"{"+strings.TrimSpace(label)+`=""}`)
			}
		}
		ids := map[int]bool{}
		for _, p := range dash.Panels {
			if ids[p.ID] {
				t.Errorf("%s: panel id %d twice", file, p.ID)
			}
			ids[p.ID] = true
			if p.GridPos.X+p.GridPos.W > 24 {
				t.Errorf("%s: panel %q is wider than the grid", file, p.Title)
			}
			if p.Type == "row" {
				continue
			}
			if p.Datasource == nil || p.Datasource.Type != "prometheus" {
				t.Errorf("%s: panel %q: not on a Prometheus datasource", file, p.Title)
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", file, p.Title)
			}
			for _, tg := range p.Targets {
				where := fmt.Sprintf("%s panel %q %s", file, p.Title, tg.RefID)
				for _, v := range regexp.MustCompile(`\$\{?(\w+)`).FindAllStringSubmatch(tg.Expr, -1) {
					if !vars[v[1]] {
						t.Errorf("%s: variable $%s not defined", where, v[1])
					}
				}
				ms := checkPromQL(t, where, tg.Expr)
				for _, m := range ms {
					used[m] = true
				}
				// Legends name labels the series have.
				allowed := slices.Clone(targetLabels)
				for _, m := range ms {
					allowed = append(allowed, metricLabels[m]...)
				}
				for _, l := range legendLabel.FindAllStringSubmatch(tg.LegendFormat, -1) {
					if !slices.Contains(allowed, l[1]) {
						t.Errorf("%s: legend {{%s}} is no label of %v", where, l[1], ms)
					}
				}
			}
		}
	}
	var unused []string
	for m := range metricLabels {
		if !used[m] {
			unused = append(unused, m)
		}
	}
	sort.Strings(unused)
	if len(unused) > 0 {
		t.Errorf("metrics no panel shows: %v", unused)
	}
}

// TestMetricNamesExist keeps metricLabels true to the programs: every name
// is registered by their code, with the labels listed.
func TestMetricNamesExist(t *testing.T) {
	var src strings.Builder
	for _, dir := range []string{"../probe", "../collector", "../internal"} {
		filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
				b, _ := os.ReadFile(path)
				src.Write(b)
			}
			return nil
		})
	}
	desc := regexp.MustCompile(`Desc\("(xdpflow_[a-z_]+)",\s*"(?:[^"\\]|\\.)*"((?:,\s*"[a-z_]+")*)\)`)
	registered := map[string][]string{}
	for _, m := range desc.FindAllStringSubmatch(src.String(), -1) {
		var labels []string
		for _, l := range regexp.MustCompile(`"([a-z_]+)"`).FindAllStringSubmatch(m[2], -1) {
			labels = append(labels, l[1])
		}
		registered[m[1]] = labels
	}
	if len(registered) == 0 {
		t.Fatal("found no metric registrations (Desc(\"xdpflow_...\", ...)) in the programs")
	}
	for name, labels := range metricLabels {
		got, ok := registered[name]
		if !ok {
			t.Errorf("metric %s is not registered by the programs", name)
			continue
		}
		if !slices.Equal(got, labels) {
			t.Errorf("metric %s: labels %v in the code, %v here", name, got, labels)
		}
	}
}

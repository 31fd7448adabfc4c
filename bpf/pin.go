package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Pinning keeps the maps in bpffs, so that a probe that stops (a restart,
// an upgrade, a crash) leaves the program counting into live tables, and
// the next one carries on with them: packets counted while no probe ran
// are drained and exported by the next. The clock is pinned too: its BPF
// timer runs only while some user reference to its map exists. The seed is
// the tables' hash seed: a program loaded with another one would not find
// their flows.
var pinnedMaps = []string{"flows0", "flows1", "flow_tables", "stats", "clock", "seed"}

// DefaultPinRoot is where pin directories (Config.PinPath) go by default:
// the probe uses one per probe, named after its first interface.
const DefaultPinRoot = "/sys/fs/bpf/xdpflow"

// EnsureBPFFS mounts bpffs on /sys/fs/bpf when nothing is mounted there
// (a fresh machine), so pins under it work. Its errors are *ConfigError
// for the field PinPath.
func EnsureBPFFS(dir string) error {
	const root = "/sys/fs/bpf"
	if rel, err := filepath.Rel(root, dir); err != nil || rel == ".." || len(rel) > 2 && rel[:3] == "../" {
		return checkBPFFS(dir)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err == nil && st.Type == unix.BPF_FS_MAGIC {
		return nil
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return &ConfigError{"PinPath", nil, kernelError(err)}
	}
	if err := unix.Mount("bpf", root, "bpf", 0, "mode=0700"); err != nil {
		if isPerm(err) {
			return &ConfigError{"PinPath", nil, fmt.Errorf("bpffs is not mounted on %s (`mount -t bpf bpf %s`) and mounting it is not permitted: %w", root, root, kernelError(err))}
		}
		return &ConfigError{"PinPath", nil, fmt.Errorf("mount bpffs on %s: %w (mount it: `mount -t bpf bpf %s`)", root, err, root)}
	}
	return nil
}

func checkBPFFS(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		var st unix.Statfs_t
		if err := unix.Statfs(d, &st); err == nil {
			if st.Type != unix.BPF_FS_MAGIC {
				return &ConfigError{"PinPath", dir, errors.New("not on a bpffs mount: use a directory under /sys/fs/bpf")}
			}
			return nil
		}
		if d == "/" {
			return &ConfigError{"PinPath", dir, errors.New("no such directory")}
		}
	}
}

// pinned are the maps a previous probe left under a pin directory.
type pinned map[string]*ebpf.Map

func openPinned(dir string) (pinned, error) {
	p := pinned{}
	for _, name := range pinnedMaps {
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, name), nil)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			p.close()
			return nil, fmt.Errorf("pinned map %s: %w", filepath.Join(dir, name), err)
		}
		p[name] = m
	}
	return p, nil
}

func (p pinned) close() {
	for _, m := range p {
		m.Close()
	}
}

// compatible tells whether every map is there and of the layout specs
// describe; if not, why.
func (p pinned) compatible(specs map[string]*ebpf.MapSpec) error {
	var errs []error
	for _, name := range pinnedMaps {
		m, ok := p[name]
		if !ok {
			errs = append(errs, fmt.Errorf("%s missing", name))
			continue
		}
		if err := specs[name].Compatible(m); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// readable returns the pinned flow tables whose entries this version can
// read, taking them out of p: open-addressing tables of any size and key
// size (walk), and the hash tables of the versions before them, keyed by
// one of the key sizes with today's value.
func (p pinned) readable() []*ebpf.Map {
	var out []*ebpf.Map
	for _, name := range []string{"flows0", "flows1"} {
		m, ok := p[name]
		if !ok {
			continue
		}
		var ok2 bool
		switch m.Type() {
		case ebpf.Array:
			ok2 = slotKeySize(m.ValueSize()) != 0
		case ebpf.Hash:
			ks := int(m.KeySize())
			ok2 = int(m.ValueSize()) == valueSize && (ks == keyBase || ks == keyMirror || ks == keyFull)
		}
		if ok2 {
			out = append(out, m)
			delete(p, name)
		}
	}
	return out
}

func unpinAll(dir string) error {
	var errs []error
	for _, name := range pinnedMaps {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Unpin removes the datapath's pinned maps from dir (and dir when it is
// then empty), as when the program has been taken off for good.
func Unpin(dir string) error {
	if err := unpinAll(dir); err != nil {
		return fmt.Errorf("unpin %s: %w", dir, err)
	}
	os.Remove(dir) // only if empty: links pinned beside the maps stay
	return nil
}

// takePins looks for a previous probe's maps. Compatible ones are taken
// over: the tables become d's and the rest are returned as replacements
// for the collection. Incompatible ones are unpinned, their readable
// tables kept in d.Leftovers.
func (d *Datapath) takePins(spec *ebpf.CollectionSpec, table *ebpf.MapSpec) (map[string]*ebpf.Map, error) {
	dir := d.cfg.PinPath
	if err := EnsureBPFFS(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		if isPerm(err) {
			return nil, &ConfigError{"PinPath", dir, fmt.Errorf("create the pin directory: %w", kernelError(err))}
		}
		return nil, &ConfigError{"PinPath", nil, err}
	}
	prev, err := openPinned(dir)
	if err != nil || len(prev) == 0 {
		return nil, err
	}
	specs := map[string]*ebpf.MapSpec{"flows0": table, "flows1": table,
		"flow_tables": spec.Maps["flow_tables"], "stats": spec.Maps["stats"], "clock": spec.Maps["clock"],
		"seed": spec.Maps[".data.seed"]}
	if why := prev.compatible(specs); why != nil {
		d.LayoutChange = why
		d.Leftovers = prev.readable()
		prev.close()
		return nil, unpinAll(dir)
	}
	d.tables = [2]*ebpf.Map{prev["flows0"], prev["flows1"]}
	d.Reused = true
	return map[string]*ebpf.Map{"flow_tables": prev["flow_tables"], "stats": prev["stats"], "clock": prev["clock"],
		".data.seed": prev["seed"]}, nil
}

// findActive reads which table the program writes into now.
func (d *Datapath) findActive() error {
	var id uint32
	if err := d.objs.FlowTables.Lookup(uint32(0), &id); err != nil {
		return fmt.Errorf("pinned flow table slot: %w", err)
	}
	for i, t := range d.tables {
		info, err := t.Info()
		if err != nil {
			return fmt.Errorf("pinned flow table: %w", err)
		}
		if mid, ok := info.ID(); ok && uint32(mid) == id {
			d.active = i
			return nil
		}
	}
	return fmt.Errorf("pinned flow table slot holds map %d, neither of the pinned tables", id)
}

func (d *Datapath) pin() error {
	dir := d.cfg.PinPath
	for name, m := range map[string]*ebpf.Map{"flows0": d.tables[0], "flows1": d.tables[1],
		"flow_tables": d.objs.FlowTables, "stats": d.objs.Stats, "clock": d.objs.Clock, "seed": d.objs.Seed} {
		if err := m.Pin(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("pin %s in %s: %w", name, dir, err)
		}
	}
	return nil
}

// Package flowstate keeps what the probe has taken out of the kernel and
// not yet exported where a crash of the process cannot take it: the flows
// held between exports and the records waiting for their exporters, in
// files on a tmpfs (by default /run/xdpflow/<iface>) that outlive the
// process (not a reboot, like the pinned tables they belong to).
//
// A tick writes a whole image of that state into the image file not in use
// and then commits it with one 8-byte store into the memory-mapped head
// file, so a crash at any instruction leaves either the old image or the
// new one, never a mix. What happens after a commit — emptying the kernel
// table the image was drained from, records settled by each exporter — is
// marked in the head with further 8-byte stores. docs/datapath.md says why
// files and not a BPF map.
package flowstate

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// MaxExporters is how many exporters the head keeps progress for.
const MaxExporters = 32

// The head file: one page, mapped shared, every field an aligned uint64 so
// a store is all or nothing for a process that dies.
type head struct {
	Magic   uint64
	Version uint64
	Commit  uint64                  // tick<<1 | current image
	Cleared [2]uint64               // per image: its quiet kernel table was emptied
	Settled [2][MaxExporters]uint64 // per image and exporter: pending records settled
	_       [512 - 5 - 2*MaxExporters]uint64
}

const (
	headMagic   = 0x31544154534658 // "XFSTAT1"
	headVersion = 1
	headFile    = "head"
)

// ErrIncompatible is returned by Load for state written by another
// version of the probe (or a corrupt one): it cannot be read.
var ErrIncompatible = errors.New("flow state of another version or corrupt")

// State is the open state directory.
type State struct {
	dir  string
	f    *os.File
	mem  []byte
	h    *head
	cur  int    // image in use
	tick uint64 // its tick
}

// Open opens the state in dir, creating the directory and an empty state
// when there is none.
func Open(dir string) (*State, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, headFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	size := int(unsafe.Sizeof(head{}))
	if fi.Size() == 0 {
		if err := f.Truncate(int64(size)); err != nil {
			f.Close()
			return nil, err
		}
	} else if fi.Size() != int64(size) {
		f.Close()
		return nil, fmt.Errorf("%w: %s is %d bytes, not %d", ErrIncompatible, f.Name(), fi.Size(), size)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("map %s: %w", f.Name(), err)
	}
	s := &State{dir: dir, f: f, mem: mem, h: (*head)(unsafe.Pointer(&mem[0]))}
	if atomic.LoadUint64(&s.h.Magic) == 0 { // new, or its creator died before the magic
		s.h.Version, s.h.Commit = headVersion, 0
		atomic.StoreUint64(&s.h.Magic, headMagic) // last: a head without it is fresh
	}
	if s.h.Magic != headMagic || s.h.Version != headVersion {
		err := fmt.Errorf("%w: %s (magic %#x, version %d; this probe writes version %d)", ErrIncompatible, f.Name(), s.h.Magic, s.h.Version, headVersion)
		s.Close()
		return nil, err
	}
	c := atomic.LoadUint64(&s.h.Commit)
	s.tick, s.cur = c>>1, int(c&1)
	return s, nil
}

// Reset removes the state in dir, whatever its version: an incompatible
// state is replaced by an empty one.
func Reset(dir string) error {
	var err error
	for _, name := range []string{headFile, imageFile(0), imageFile(1)} {
		if rerr := os.Remove(filepath.Join(dir, name)); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = errors.Join(err, rerr)
		}
	}
	return err
}

// Remove deletes the state and its directory (the pinned tables it
// belongs to are gone: --detach).
func (s *State) Remove() error {
	err := errors.Join(s.Close(), Reset(s.dir))
	if rerr := os.Remove(s.dir); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = errors.Join(err, rerr)
	}
	return err
}

// Close unmaps the head. What was committed stays.
func (s *State) Close() error {
	if s.mem == nil {
		return nil
	}
	err := unix.Munmap(s.mem)
	s.mem, s.h = nil, nil
	return errors.Join(err, s.f.Close())
}

// Dir is where the state lives.
func (s *State) Dir() string { return s.dir }

// Tick is the tick of the committed image; 0: nothing was ever committed.
func (s *State) Tick() uint64 { return s.tick }

// Load reads the committed image; nil when nothing was ever committed.
func (s *State) Load() (*Image, error) {
	if s.tick == 0 {
		return nil, nil
	}
	b, err := os.ReadFile(filepath.Join(s.dir, imageFile(s.cur)))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrIncompatible, err)
	}
	img, err := decode(b)
	if err != nil {
		return nil, err
	}
	if img.Tick != s.tick {
		return nil, fmt.Errorf("%w: image %d holds tick %d, the head committed %d", ErrIncompatible, s.cur, img.Tick, s.tick)
	}
	img.Cleared = atomic.LoadUint64(&s.h.Cleared[s.cur]) != 0
	img.Settled = make([]uint64, len(img.Exporters))
	for i := range img.Settled {
		img.Settled[i] = atomic.LoadUint64(&s.h.Settled[s.cur][i])
	}
	return img, nil
}

// Commit writes img (its Tick must be above the committed one) into the
// image not in use, with img.Settled as its exporters' progress, then
// makes it the state with one store. Nothing of img is kept.
func (s *State) Commit(img *Image) error {
	if img.Tick <= s.tick {
		return fmt.Errorf("flow state: commit of tick %d after %d", img.Tick, s.tick)
	}
	if len(img.Exporters) > MaxExporters {
		return fmt.Errorf("flow state: %d exporters, at most %d", len(img.Exporters), MaxExporters)
	}
	next := 1 - s.cur
	f, err := os.OpenFile(filepath.Join(s.dir, imageFile(next)), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(img.encode())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write flow state: %w", err)
	}
	atomic.StoreUint64(&s.h.Cleared[next], 0)
	for i := range MaxExporters {
		var n uint64
		if i < len(img.Settled) {
			n = img.Settled[i]
		}
		atomic.StoreUint64(&s.h.Settled[next][i], n)
	}
	atomic.StoreUint64(&s.h.Commit, img.Tick<<1|uint64(next)) // the commit
	s.cur, s.tick = next, img.Tick
	return nil
}

// MarkCleared records that the committed image's quiet kernel table was
// emptied.
func (s *State) MarkCleared() { atomic.StoreUint64(&s.h.Cleared[s.cur], 1) }

// MarkSettled records that exporter i has settled the committed image's
// first n pending records.
func (s *State) MarkSettled(i int, n uint64) {
	if i < MaxExporters {
		atomic.StoreUint64(&s.h.Settled[s.cur][i], n)
	}
}

func imageFile(i int) string { return fmt.Sprintf("image.%d", i) }

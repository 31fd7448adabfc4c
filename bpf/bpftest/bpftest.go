// Package bpftest holds BPF programs that tests and benchmarks use and the
// probe does not: only _test.go files import it. Their C is in
// bpf/testdata.
package bpftest

// The generated Go and .o files are committed so `go build` needs no clang.
//go:generate go tool bpf2go -cc $BPF_CLANG -cflags "-mcpu=v3 $BPF_CFLAGS" -target bpfel empty ../testdata/empty.c
//go:generate go tool bpf2go -cc $BPF_CLANG -cflags "-mcpu=v3 $BPF_CFLAGS" -target bpfel droponce ../testdata/droponce.c

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// LoadEmpty loads an XDP program that only returns XDP_PASS: the cost
// floor the datapath benchmarks compare against, and a stand-in program
// for attach tests. The caller closes it.
func LoadEmpty() (*ebpf.Program, error) {
	var o emptyPrograms
	if err := loadEmptyObjects(&o, nil); err != nil {
		return nil, fmt.Errorf("load the empty XDP program: %w", err)
	}
	return o.XdpEmpty, nil
}

// DropOnce is a tc program that drops the first TCP segment whose payload
// starts with one of its markers, and lets every later copy pass: one
// deterministic loss, where this kernel has neither netem nor gact.
type DropOnce struct {
	Program *ebpf.Program
	seen    *ebpf.Map
}

// LoadDropOnce loads it with markers (each a payload's first 4 bytes).
// The caller attaches Program (tcx) and closes it.
func LoadDropOnce(markers ...[4]byte) (*DropOnce, error) {
	var o droponceObjects
	if err := loadDroponceObjects(&o, nil); err != nil {
		return nil, fmt.Errorf("load the drop-once tc program: %w", err)
	}
	for _, m := range markers {
		if err := o.DropOnce.Put(m, uint32(0)); err != nil {
			o.Close()
			return nil, fmt.Errorf("drop-once marker %q: %w", m[:], err)
		}
	}
	return &DropOnce{Program: o.TcDropOnce, seen: o.DropOnce}, nil
}

// Seen is how many segments carried marker (the first was dropped).
func (d *DropOnce) Seen(marker [4]byte) (uint32, error) {
	var n uint32
	if err := d.seen.Lookup(marker, &n); err != nil {
		return 0, fmt.Errorf("drop-once marker %q: %w", marker[:], err)
	}
	return n, nil
}

// Close unloads it.
func (d *DropOnce) Close() error {
	return errors.Join(d.Program.Close(), d.seen.Close())
}

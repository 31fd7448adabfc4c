// Package bpftest holds BPF programs that tests and benchmarks use and the
// probe does not: only _test.go files import it. Their C is in
// bpf/testdata.
package bpftest

// The generated Go and .o files are committed so `go build` needs no clang.
//go:generate go tool bpf2go -cc $BPF_CLANG -cflags "-mcpu=v3 $BPF_CFLAGS" -target bpfel empty ../testdata/empty.c
//go:generate go tool bpf2go -cc $BPF_CLANG -cflags "-mcpu=v3 $BPF_CFLAGS" -target bpfel -type slot -type v4_key -type flow_value -type datapath_stats tables ../testdata/tables.c

import (
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

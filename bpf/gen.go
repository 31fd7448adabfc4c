package bpf

// The generated Go and .o files are committed so `go build` needs no clang.
// `make generate` sets BPF_CLANG and BPF_CFLAGS; CI regenerates and diffs.
//go:generate go tool bpf2go -cc $BPF_CLANG -cflags "-mcpu=v3 $BPF_CFLAGS" -target bpfel -type flow_key -type flow_value -type datapath_stats -type sample_hdr -type malformed_reason -type flow_direction -type lpm_key -type tunnel_type -type mirror_type -type conv_key -type conv_state -type seq_carry xdpflow xdpflow.c

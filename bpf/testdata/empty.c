// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Test-only programs (bpf/bpftest loads them): not part of the probe. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* The floor for benchmarks: what any XDP program costs on this machine;
 * and a second program for tests that swap programs. */
SEC("xdp")
int xdp_empty(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

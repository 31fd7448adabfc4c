// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Test-only (bpf/bpftest loads it): a loss that happens once. This
 * kernel has no netem and no gact, so a test that wants one segment lost
 * and then retransmitted (a deterministic retransmission) attaches this
 * at a router's egress (tcx): the first TCP segment whose payload starts
 * with a marker in drop_once is dropped, every later one passes. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* Marker (the payload's first 4 bytes, as read in host order) -> times
 * seen; the test puts the markers in with 0. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u32);
} drop_once SEC(".maps");

SEC("tc")
int tc_drop_once(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return TC_ACT_OK;
	struct tcphdr *th;
	__u32 off = sizeof(*eth); /* of the payload, counted from the headers' lengths */
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > end || ip->protocol != IPPROTO_TCP || ip->ihl < 5)
			return TC_ACT_OK;
		th = (void *)ip + ip->ihl * 4;
		off += ip->ihl * 4;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > end || ip6->nexthdr != IPPROTO_TCP)
			return TC_ACT_OK;
		th = (void *)(ip6 + 1);
		off += sizeof(*ip6);
	} else {
		return TC_ACT_OK;
	}
	if ((void *)(th + 1) > end || th->doff < 5)
		return TC_ACT_OK;
	/* The payload may be outside the linear part (a TCP stack's skb
	 * holds it in pages): read it with the helper. */
	__u32 marker;
	off += th->doff * 4;
	if (bpf_skb_load_bytes(skb, off, &marker, sizeof(marker)))
		return TC_ACT_OK;
	__u32 *seen = bpf_map_lookup_elem(&drop_once, &marker);
	if (!seen)
		return TC_ACT_OK;
	if (__sync_fetch_and_add(seen, 1) == 0)
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

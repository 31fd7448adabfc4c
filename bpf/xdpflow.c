//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* xdpflow: count every flow at the XDP hook.
 *
 * Parse Ethernet / up to two VLAN tags / an MPLS label stack or a PPPoE
 * session header / IPv4 (options) / IPv6 (bounded extension-header chain) /
 * TCP, UDP, SCTP, ICMP, ICMPv6; add the frame to
 * its flow in the active flow table; sample 1-in-N frame headers into a ring
 * buffer; then PASS or DROP as configured at load time.
 *
 * The active table is reached through flow_tables (an array of maps with one
 * slot). Userspace swaps the slot to drain: the swap syscall waits for every
 * running program (synchronize_rcu), so the table it took out is quiescent and
 * can be read to the last packet. No packet counted here is lost to a
 * lookup-then-delete race. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "xdpflow.h"

#define ETH_P_IP      0x0800
#define ETH_P_IPV6    0x86DD
#define ETH_P_8021Q   0x8100
#define ETH_P_8021AD  0x88A8
#define ETH_P_QINQ1   0x9100 /* pre-standard QinQ, still seen on old switches */
#define ETH_P_MPLS_UC 0x8847
#define ETH_P_MPLS_MC 0x8848
#define ETH_P_PPP_SES 0x8864 /* PPPoE session stage; discovery (0x8863) is not IP */

#define PPP_IP	 0x0021
#define PPP_IPV6 0x0057

#define IPPROTO_HOPOPTS	 0
#define IPPROTO_ICMP	 1
#define IPPROTO_TCP	 6
#define IPPROTO_UDP	 17
#define IPPROTO_ROUTING	 43
#define IPPROTO_FRAGMENT 44
#define IPPROTO_AH	 51
#define IPPROTO_ICMPV6	 58
#define IPPROTO_DSTOPTS	 60
#define IPPROTO_SCTP	 132

#define MAX_VLAN_TAGS	2
#define MAX_IPV6_EXT	8 /* extension headers followed before giving up */


#define EEXIST		17
#define EBUSY		16
#define CLOCK_MONOTONIC 1

/* Load-time configuration (the loader rewrites .rodata; the verifier treats
 * these as constants and drops dead branches). */
volatile const __u32 cfg_action = XDP_PASS;  /* XDP_PASS or XDP_DROP */
volatile const __u32 cfg_sample_rate = 0;    /* 1-in-N header samples, 0 = off */
volatile const __u32 cfg_sample_bytes = 128; /* <= SAMPLE_MAX_BYTES */
volatile const __u32 cfg_percpu_table = 0;   /* table is PERCPU_HASH: plain adds */
/* Benchmarks only: BPF_PROG_TEST_RUN repeats one frame, so to measure new
 * and cycling flows the program varies the source address over
 * cfg_bench_flows values. Zero in production: the verifier removes it. It
 * is here, not in a test-only program, because the benchmarks must measure
 * this very program; the loader sets it only from Config's unexported
 * benchFlows, which package bpf's tests alone can set. */
volatile const __u32 cfg_bench_flows = 0;
/* Set when --local-net gave networks: new flows look both ends up. */
volatile const __u32 cfg_local_nets = 0;

/* The inner map is the template for the flow tables; the loader creates the
 * real ones with the configured size and puts one of them in the slot. */
/* clang-format off */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct {
		__uint(type, BPF_MAP_TYPE_HASH);
		__uint(max_entries, 262144);
		__type(key, struct flow_key);
		__type(value, struct flow_value);
	});
} flow_tables SEC(".maps");
/* clang-format on */

/* The clock. Reading the time is the most expensive thing a packet would
 * do (bpf_ktime_get_coarse_ns is ~17 ns of ~85 here, see
 * docs/benchmarks.md), so a BPF timer writes CLOCK_MONOTONIC into clock_ns
 * every cfg_clock_period_ns and packets just load it. Resolution is the
 * period (1 ms by default), finer than the coarse clock at HZ=250. */
struct clock_timer {
	struct bpf_timer timer;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct clock_timer);
} clock SEC(".maps");

volatile __u64 clock_ns;
volatile const __u64 cfg_clock_period_ns = 1000000;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct datapath_stats);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} samples SEC(".maps");

/* The local networks (--local-net), for flow direction. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_key);
	__type(value, __u8);
} local_nets SEC(".maps");

/* Complete these types in BTF: the inner map definition alone leaves them
 * forward-declared, and bpf2go generates Go from BTF. */
const struct flow_key *const btf_flow_key;
const struct flow_value *const btf_flow_value;
const struct sample_hdr *const btf_sample_hdr;
const enum malformed_reason *const btf_malformed_reason;
const enum flow_direction *const btf_flow_direction;
const enum tunnel_type *const btf_tunnel_type;
const enum mirror_type *const btf_mirror_type;
const struct lpm_key *const btf_lpm_key;

struct packet {
	void *data_end; /* of the first buffer: headers are read from it */
	__u64 l2_len;	/* the whole frame, every fragment */
	__u64 l3_room;	/* frame bytes from the IP header on (bounds tot_len) */
	__u64 l3_len;
	__u32 tcp_flags;
	__u8 ip_tos;
	__u8 fragment; /* non-first fragment */
};

/* parse() returns 0 with key and packet filled, 1 for a frame that is not
 * IP, or 2 + the malformed_reason. */
#define PARSE_OK     0
#define PARSE_NOT_IP 1
#define PARSE_BAD(r) (2 + (r))

static __always_inline void set_v4mapped(__u8 *dst, __u32 addr)
{
	__u32 *d = (__u32 *)dst;
	d[0] = 0;
	d[1] = 0;
	d[2] = bpf_htonl(0x0000ffff);
	d[3] = addr;
}

/* Hide a value's origin from the compiler. Bounds are checked against both
 * the first buffer's end (for the verifier) and the IP packet end (for the
 * truth); knowing the packet end lies within the buffer, clang would drop
 * the first check, and the verifier, which cannot follow that reasoning,
 * would reject the access. */
#define opaque(x) asm volatile("" : "+r"(x))

static __always_inline int parse_l4(struct packet *p, struct flow_key *k, void *l4, void *l3_end)
{
	void *end = p->data_end;

	opaque(l3_end);

	if (p->fragment)
		return PARSE_OK;

	switch (k->proto) {
	case IPPROTO_TCP: {
		__u8 *t = l4;
		if (l4 + 20 > end || l4 + 20 > l3_end)
			return PARSE_BAD(MALFORMED_L4_TRUNCATED);
		k->src_port = bpf_ntohs(*(__u16 *)&t[0]);
		k->dst_port = bpf_ntohs(*(__u16 *)&t[2]);
		p->tcp_flags = bpf_ntohs(*(__u16 *)&t[12]) & 0x0fff;
		break;
	}
	case IPPROTO_UDP:
	case IPPROTO_SCTP: {
		__u8 *u = l4;
		/* UDP header is 8 bytes, SCTP's common header 12: both start
		 * with the ports. */
		__u32 hlen = k->proto == IPPROTO_UDP ? 8 : 12;
		if (l4 + 8 > end || l4 + hlen > l3_end)
			return PARSE_BAD(MALFORMED_L4_TRUNCATED);
		k->src_port = bpf_ntohs(*(__u16 *)&u[0]);
		k->dst_port = bpf_ntohs(*(__u16 *)&u[2]);
		break;
	}
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6: {
		__u8 *ic = l4;
		if (l4 + 8 > end || l4 + 8 > l3_end)
			return PARSE_BAD(MALFORMED_L4_TRUNCATED);
		k->dst_port = ((__u16)ic[0] << 8) | ic[1];
		break;
	}
	}
	return PARSE_OK;
}

static __always_inline int parse_ipv4(struct packet *p, struct flow_key *k, void *l3)
{
	void *end = p->data_end;
	__u8 *ip = l3;

	if (l3 + 20 > end)
		return PARSE_BAD(MALFORMED_IPV4_TRUNCATED);
	if ((ip[0] >> 4) != 4)
		return PARSE_BAD(MALFORMED_IP_VERSION);
	__u32 ihl = (ip[0] & 0x0f) * 4;
	if (ihl < 20 || l3 + ihl > end)
		return PARSE_BAD(MALFORMED_IPV4_BAD_IHL);
	__u32 tot_len = bpf_ntohs(*(__u16 *)&ip[2]);
	if (tot_len < ihl || tot_len > p->l3_room)
		return PARSE_BAD(MALFORMED_IPV4_BAD_LENGTH);

	p->l3_len = tot_len;
	p->ip_tos = ip[1];
	k->ip_version = 4;
	k->proto = ip[9];
	set_v4mapped(k->src_addr, *(__u32 *)&ip[12]);
	set_v4mapped(k->dst_addr, *(__u32 *)&ip[16]);
	if (bpf_ntohs(*(__u16 *)&ip[6]) & 0x1fff)
		p->fragment = 1;
	return parse_l4(p, k, l3 + ihl, l3 + tot_len);
}

static __always_inline int parse_ipv6(struct packet *p, struct flow_key *k, void *l3)
{
	void *end = p->data_end;
	__u8 *ip = l3;

	if (l3 + 40 > end)
		return PARSE_BAD(MALFORMED_IPV6_TRUNCATED);
	if ((ip[0] >> 4) != 6)
		return PARSE_BAD(MALFORMED_IP_VERSION);
	__u32 tot_len = 40 + bpf_ntohs(*(__u16 *)&ip[4]);
	if (tot_len > p->l3_room)
		return PARSE_BAD(MALFORMED_IPV6_BAD_LENGTH);
	void *l3_end = l3 + tot_len;
	opaque(l3_end);

	p->l3_len = tot_len;
	p->ip_tos = (ip[0] << 4) | (ip[1] >> 4);
	k->ip_version = 6;
	/* Word copies: memcpy from a byte pointer compiles to 32 byte loads. */
	__u32 *src = (__u32 *)&ip[8], *ks = (__u32 *)k->src_addr, *kd = (__u32 *)k->dst_addr;
	ks[0] = src[0];
	ks[1] = src[1];
	ks[2] = src[2];
	ks[3] = src[3];
	kd[0] = src[4];
	kd[1] = src[5];
	kd[2] = src[6];
	kd[3] = src[7];

	__u8 nh = ip[6];
	void *h = l3 + 40;
	int i;
#pragma unroll
	for (i = 0; i < MAX_IPV6_EXT; i++) {
		__u8 *e = h;
		switch (nh) {
		case IPPROTO_HOPOPTS:
		case IPPROTO_ROUTING:
		case IPPROTO_DSTOPTS:
			if (h + 8 > end || h + 8 > l3_end)
				return PARSE_BAD(MALFORMED_IPV6_EXT_TRUNCATED);
			nh = e[0];
			h += ((__u32)e[1] + 1) * 8;
			break;
		case IPPROTO_AH:
			if (h + 8 > end || h + 8 > l3_end)
				return PARSE_BAD(MALFORMED_IPV6_EXT_TRUNCATED);
			nh = e[0];
			h += ((__u32)e[1] + 2) * 4;
			break;
		case IPPROTO_FRAGMENT:
			if (h + 8 > end || h + 8 > l3_end)
				return PARSE_BAD(MALFORMED_IPV6_EXT_TRUNCATED);
			nh = e[0];
			/* A non-first fragment: what follows the Fragment header
			 * is data, even when the header names another extension
			 * header. Stop here: the L3 key, its protocol the
			 * Fragment header's Next Header, ports 0. */
			if (bpf_ntohs(*(__u16 *)&e[2]) & 0xfff8) {
				p->fragment = 1;
				k->proto = nh;
				return PARSE_OK;
			}
			h += 8;
			break;
		default:
			k->proto = nh;
			return parse_l4(p, k, h, l3_end);
		}
		if (h > l3_end)
			return PARSE_BAD(MALFORMED_IPV6_EXT_TRUNCATED);
	}
	/* Still an extension header after MAX_IPV6_EXT of them. */
	switch (nh) {
	case IPPROTO_HOPOPTS:
	case IPPROTO_ROUTING:
	case IPPROTO_DSTOPTS:
	case IPPROTO_AH:
	case IPPROTO_FRAGMENT:
		return PARSE_BAD(MALFORMED_IPV6_EXT_CHAIN);
	}
	k->proto = nh;
	return parse_l4(p, k, h, l3_end);
}

static __always_inline int parse(struct xdp_md *ctx, struct packet *p, struct flow_key *k)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u8 *eth = data;

	p->data_end = end;
	if (data + 14 > end)
		return PARSE_BAD(MALFORMED_ETH_TRUNCATED);
	__u16 proto = *(__u16 *)&eth[12];
	void *l3 = data + 14;

	int i;
#pragma unroll
	for (i = 0; i < MAX_VLAN_TAGS; i++) {
		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD) &&
		    proto != bpf_htons(ETH_P_QINQ1))
			break;
		__u8 *tag = l3;
		if (l3 + 4 > end)
			return PARSE_BAD(MALFORMED_VLAN_TRUNCATED);
		if (i == 0)
			k->vlan_id = bpf_ntohs(*(__u16 *)&tag[0]) & 0x0fff;
		proto = *(__u16 *)&tag[2];
		l3 += 4;
	}
	p->l3_room = p->l2_len - (l3 - data);

	/* Plain IP goes straight on; MPLS and PPPoE find the IP packet inside
	 * and go on to the same IPv4/IPv6 parsers (inlined once each). */
	if (proto != bpf_htons(ETH_P_IP) && proto != bpf_htons(ETH_P_IPV6)) {
		if (proto == bpf_htons(ETH_P_MPLS_UC) || proto == bpf_htons(ETH_P_MPLS_MC)) {
			/* Labels of 4 bytes until bottom-of-stack (bit 8 of
			 * the third byte); then the first nibble tells IPv4
			 * from IPv6. Anything else (0: a pseudowire control
			 * word and Ethernet, 1: G-ACh, ...) is not parsed:
			 * non-IP. */
#pragma unroll
			for (i = 0; i < MAX_MPLS_LABELS; i++) {
				__u8 *lse = l3;
				if (l3 + 4 > end)
					return PARSE_BAD(MALFORMED_MPLS_TRUNCATED);
				l3 += 4;
				if (lse[2] & 1)
					break;
			}
			if (i == MAX_MPLS_LABELS)
				return PARSE_BAD(MALFORMED_MPLS_STACK_TOO_DEEP);
			__u8 *in = l3;
			if (l3 + 1 > end)
				return PARSE_BAD(MALFORMED_MPLS_TRUNCATED);
			if ((in[0] >> 4) == 4)
				proto = bpf_htons(ETH_P_IP);
			else if ((in[0] >> 4) == 6)
				proto = bpf_htons(ETH_P_IPV6);
			else
				return PARSE_NOT_IP;
			__u64 off = l3 - data;
			opaque(off); /* else clang adds l2_len to a packet pointer */
			p->l3_room = p->l2_len - off;
		} else if (proto == bpf_htons(ETH_P_PPP_SES)) {
			/* ver/type 0x11, code 0, session id, length (of the
			 * PPP frame: protocol + payload), PPP protocol. */
			__u8 *ph = l3;
			if (l3 + 8 > end)
				return PARSE_BAD(MALFORMED_PPPOE_TRUNCATED);
			__u32 plen = bpf_ntohs(*(__u16 *)&ph[4]);
			if (ph[0] != 0x11 || ph[1] != 0 || plen < 2 || plen + 6 > p->l3_room)
				return PARSE_BAD(MALFORMED_PPPOE_BAD_HEADER);
			__u16 ppp = *(__u16 *)&ph[6];
			if (ppp == bpf_htons(PPP_IP))
				proto = bpf_htons(ETH_P_IP);
			else if (ppp == bpf_htons(PPP_IPV6))
				proto = bpf_htons(ETH_P_IPV6);
			else
				return PARSE_NOT_IP; /* LCP, IPCP, ... */
			l3 += 8;
			/* The IP packet is bounded by the frame, as plain IP
			 * is, not by the PPPoE length: real access links
			 * carry IP total lengths that count the padding a
			 * PPPoE length leaves out (pppoe-over-qinq.pcap:
			 * IP 46, PPPoE 42 = 2 + 40). The IP header's length
			 * is the L3 octets, as tshark's ip.len. */
			p->l3_room -= 8;
		} else {
			return PARSE_NOT_IP;
		}
	}

	if (proto == bpf_htons(ETH_P_IP))
		return parse_ipv4(p, k, l3);
	if (proto == bpf_htons(ETH_P_IPV6))
		return parse_ipv6(p, k, l3);
	return PARSE_NOT_IP;
}

static __always_inline void sample(struct xdp_md *ctx, struct datapath_stats *st, __u64 len,
				   __u64 now)
{
	if (st->sample_countdown > 1) {
		st->sample_countdown--;
		return;
	}
	st->sample_countdown = cfg_sample_rate;

	/* Reserve only what is configured: cfg_sample_bytes is a constant to
	 * the verifier, so the record size is too. */
	__u32 max = cfg_sample_bytes > SAMPLE_MAX_BYTES ? SAMPLE_MAX_BYTES : cfg_sample_bytes;
	__u32 cap = len < max ? len : max;
	if (cap == 0)
		return;
	struct sample_hdr *s =
	    bpf_ringbuf_reserve(&samples, sizeof(*s) - SAMPLE_MAX_BYTES + max, 0);
	if (!s) {
		st->samples_lost++;
		return;
	}
	s->time_ns = now;
	s->in_if = ctx->ingress_ifindex;
	s->orig_len = len;
	s->cap_len = cap;
	s->_pad = 0;
	if (bpf_xdp_load_bytes(ctx, 0, s->data, cap) < 0) {
		bpf_ringbuf_discard(s, BPF_RB_NO_WAKEUP);
		st->samples_lost++;
		return;
	}
	/* No wakeup per sample (a wakeup costs microseconds): the consumer
	 * polls, and gets a wakeup once a batch has built up. */
	bpf_ringbuf_submit(s, (st->samples++ & 63) == 63 ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
}

static __always_inline void add(__u64 *dst, __u64 v)
{
	if (cfg_percpu_table)
		*dst += v;
	else
		__sync_fetch_and_add(dst, v);
}

static __always_inline int is_local(const __u8 addr[16])
{
	struct lpm_key lk = {.prefixlen = 128};
	__builtin_memcpy(lk.addr, addr, 16);
	return bpf_map_lookup_elem(&local_nets, &lk) != 0;
}

/* direction is worked out once, when a flow is created: two trie lookups
 * on new flows only, none when no local network is configured. */
static __always_inline __u8 direction(const struct flow_key *k)
{
	if (!cfg_local_nets)
		return DIRECTION_UNKNOWN;
	int src = is_local(k->src_addr), dst = is_local(k->dst_addr);
	if (dst && !src)
		return DIRECTION_INGRESS;
	if (src && !dst)
		return DIRECTION_EGRESS;
	return DIRECTION_UNKNOWN;
}

static __always_inline int account(struct packet *p, struct flow_key *k, __u64 now)
{
	__u32 zero = 0;
	void *table = bpf_map_lookup_elem(&flow_tables, &zero);
	if (!table)
		return -1;

	struct flow_value *v = bpf_map_lookup_elem(table, k);
	if (!v) {
		struct flow_value nv = {
		    .packets = 1,
		    .bytes = p->l3_len,
		    .l2_bytes = p->l2_len,
		    .first_seen_ns = now,
		    .last_seen_ns = now,
		    .tcp_flags = p->tcp_flags,
		    .ip_tos = p->ip_tos,
		    .flow_direction = direction(k),
		};
		long err = bpf_map_update_elem(table, k, &nv, BPF_NOEXIST);
		if (err == 0)
			return 1;
		if (err != -EEXIST)
			return -1;
		/* Another CPU created it first: add to theirs. */
		v = bpf_map_lookup_elem(table, k);
		if (!v)
			return -1;
	}
	add(&v->packets, 1);
	add(&v->bytes, p->l3_len);
	add(&v->l2_bytes, p->l2_len);
	/* Plain stores, and only when something changes: the clock ticks once
	 * per timer period, so most packets of a busy flow write nothing here. */
	if (v->last_seen_ns < now)
		v->last_seen_ns = now;
	if ((v->tcp_flags | p->tcp_flags) != v->tcp_flags) {
		if (cfg_percpu_table)
			v->tcp_flags |= p->tcp_flags;
		else
			__sync_fetch_and_or(&v->tcp_flags, p->tcp_flags);
	}
	return 0;
}

/* The driver's copy of a VLAN tag the NIC stripped (rx VLAN offload): a
 * device-bound kfunc, Linux 6.8+ (ice, mlx5, veth). Only xdpflow_vlanmeta
 * calls it, and it is loaded bound to its device only where supported. */
extern int bpf_xdp_metadata_rx_vlan_tag(const struct xdp_md *ctx, __be16 *vlan_proto,
					__u16 *vlan_tci) __ksym;

static __always_inline int count(struct xdp_md *ctx, const int vlan_meta, const int frags)
{
	__u32 zero = 0;
	struct datapath_stats *st = bpf_map_lookup_elem(&stats, &zero);
	if (!st)
		return cfg_action; /* cannot happen: a 1-entry per-CPU array */

	struct packet p = {};
	struct flow_key k = {};
	/* The whole frame. A program without frags only ever sees frames in
	 * one buffer (the kernel refuses it where the driver would split
	 * them). With frags, data..data_end is only the first buffer of a
	 * multi-buffer (jumbo) frame: the helper adds the fragments. It is a
	 * call (~9 ns here), hence two variants. */
	if (frags)
		p.l2_len = bpf_xdp_get_buff_len(ctx);
	else
		p.l2_len = ctx->data_end - ctx->data;
	__u64 now = clock_ns;
	if (!now) /* clock not started: cannot happen after Load */
		now = bpf_ktime_get_coarse_ns();

	st->packets++;
	st->bytes += p.l2_len;
	if (cfg_sample_rate)
		sample(ctx, st, p.l2_len, now);

	int r = parse(ctx, &p, &k);
	if (r == PARSE_NOT_IP) {
		st->non_ip++;
		return cfg_action;
	}
	if (r != PARSE_OK) {
		__u32 reason = r - 2;
		if (reason < MALFORMED_MAX)
			st->malformed[reason]++;
		return cfg_action;
	}
	k.in_if = ctx->ingress_ifindex;
	if (vlan_meta && !k.vlan_id) {
		__be16 proto;
		__u16 tci;
		if (!bpf_xdp_metadata_rx_vlan_tag(ctx, &proto, &tci))
			k.vlan_id = tci & 0x0fff;
	}
	if (cfg_bench_flows)
		*(__u32 *)&k.src_addr[12] ^= st->bench_seq++ % cfg_bench_flows;
	if (p.fragment)
		st->fragments++;

	int acc = account(&p, &k, now);
	if (acc < 0) {
		st->update_failed_packets++;
		st->update_failed_bytes += p.l3_len;
		return cfg_action;
	}
	st->new_flows += acc;
	st->flow_packets++;
	st->flow_bytes += p.l3_len;
	return cfg_action;
}

SEC("xdp")
int xdpflow(struct xdp_md *ctx)
{
	return count(ctx, 0, 0);
}

/* The multi-buffer twins (xdp.frags, BPF_F_XDP_HAS_FRAGS): drivers take
 * them at MTUs where a frame spans several buffers, and refuse the plain
 * programs there. Headers are parsed from the first buffer, lengths are the
 * whole frame's (docs/datapath.md, "Jumbo frames"). */
SEC("xdp.frags")
int xdpflow_frags(struct xdp_md *ctx)
{
	return count(ctx, 0, 1);
}

SEC("xdp")
int xdpflow_vlanmeta(struct xdp_md *ctx)
{
	return count(ctx, 1, 0);
}

SEC("xdp.frags")
int xdpflow_vlanmeta_frags(struct xdp_md *ctx)
{
	return count(ctx, 1, 1);
}

static int clock_tick(void *map, __u32 *key, struct clock_timer *t)
{
	clock_ns = bpf_ktime_get_ns();
	bpf_timer_start(&t->timer, cfg_clock_period_ns, 0);
	return 0;
}

/* Run once by the loader (BPF_PROG_TEST_RUN) to start the clock. The timer
 * holds a reference to this program and lives as long as the clock map. */
SEC("xdp")
int start_clock(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct clock_timer *t = bpf_map_lookup_elem(&clock, &zero);
	if (!t)
		return XDP_ABORTED;
	clock_ns = bpf_ktime_get_ns();
	long err = bpf_timer_init(&t->timer, &clock, CLOCK_MONOTONIC);
	if (err && err != -EBUSY)
		return XDP_ABORTED;
	if (bpf_timer_set_callback(&t->timer, clock_tick) ||
	    bpf_timer_start(&t->timer, cfg_clock_period_ns, 0))
		return XDP_ABORTED;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

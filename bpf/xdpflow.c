//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* xdpflow: count every flow at the XDP hook.
 *
 * Parse Ethernet / up to two VLAN tags / an MPLS label stack or a PPPoE
 * session header / IPv4 (options) / IPv6 (bounded extension-header chain) /
 * TCP, UDP, SCTP, ICMP, ICMPv6, stripping a mirror encapsulation (ERSPAN,
 * VXLAN, Geneve, TZSP) and decapsulating IP tunnels (GRE, IP-in-IP, VXLAN,
 * Geneve, GTP-U) on the way; add the frame to its flow in the active flow
 * table; sample 1-in-N frame headers into a ring buffer; then PASS or DROP
 * as configured at load time. docs/datapath.md has every rule.
 *
 * The active table is reached through flow_tables (an array of maps: slot 0
 * the active table, slot 1 the one taken out last until it is drained).
 * A table is open addressing over a BPF_MAP_TYPE_ARRAY (see "The flow
 * tables" below). Userspace swaps slot 0
 * to drain: the swap syscall waits for every running program
 * (synchronize_rcu), so the table it took out is quiescent and can be read
 * to the last packet. No packet counted here is lost to a
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

#define ETH_P_TEB     0x6558 /* transparent Ethernet bridging: GRE, NVGRE, Geneve */
#define ETH_P_ERSPAN  0x88BE /* ERSPAN types I and II, in GRE */
#define ETH_P_ERSPAN3 0x22EB /* ERSPAN type III, in GRE */

#define PPP_IP	 0x0021
#define PPP_IPV6 0x0057

#define IPPROTO_HOPOPTS	 0
#define IPPROTO_ICMP	 1
#define IPPROTO_IPIP	 4
#define IPPROTO_TCP	 6
#define IPPROTO_UDP	 17
#define IPPROTO_IPV6	 41
#define IPPROTO_ROUTING	 43
#define IPPROTO_FRAGMENT 44
#define IPPROTO_AH	 51
#define IPPROTO_ICMPV6	 58
#define IPPROTO_GRE	 47
#define IPPROTO_DSTOPTS	 60
#define IPPROTO_SCTP	 132

#define MAX_VLAN_TAGS	 2
#define MAX_IPV6_EXT	 8 /* extension headers followed before giving up */
#define MAX_TUNNEL_DEPTH 3 /* IP tunnels decapsulated inside one another */
#define MAX_GTPU_EXT	 4 /* GTP-U extension headers followed */
#define MAX_TZSP_TAGS	 8 /* TZSP tagged fields followed */
/* Headers start within the first MAX_HDR_OFF bytes of the frame. Each layer
 * restarts from data + a bounded offset, so the verifier's view of a packet
 * pointer never grows past what it accepts however deep the nesting. */
#define MAX_HDR_OFF 2047
#define MAX_L4_OFF  0x7fff /* MAX_HDR_OFF + IP options or extension headers */

#define EEXIST		17
#define EBUSY		16
#define CLOCK_MONOTONIC 1

/* Load-time configuration (the loader rewrites .rodata; the verifier treats
 * these as constants and drops dead branches). */
volatile const __u32 cfg_action = XDP_PASS;  /* XDP_PASS or XDP_DROP */
volatile const __u32 cfg_sample_rate = 0;    /* 1-in-N header samples, 0 = off */
volatile const __u32 cfg_sample_bytes = 128; /* <= SAMPLE_MAX_BYTES */
/* Benchmarks only: BPF_PROG_TEST_RUN repeats one frame, so to measure new
 * and cycling flows the program varies the source address over
 * cfg_bench_flows values. Zero in production: the verifier removes it. It
 * is here, not in a test-only program, because the benchmarks must measure
 * this very program; the loader sets it only from Config's unexported
 * benchFlows, which package bpf's tests alone can set. */
volatile const __u32 cfg_bench_flows = 0;
/* Set when --local-net gave networks: new flows look both ends up. */
volatile const __u32 cfg_local_nets = 0;
/* Encapsulations (docs/datapath.md, "Encapsulations"). Ports are host
 * order, 0 = unused slot. */
volatile const __u32 cfg_tunnels = 1; /* decapsulate IP tunnels (--tunnels inner) */
volatile const __u32 cfg_vxlan_ports[2] = {4789, 0};
volatile const __u32 cfg_geneve_ports[2] = {6081, 0};
volatile const __u32 cfg_mirror_erspan = 0;
volatile const __u32 cfg_mirror_vxlan_port = 0;
volatile const __u32 cfg_mirror_geneve_port = 0;
volatile const __u32 cfg_mirror_tzsp_port = 0;
volatile const __u32 cfg_macs = 0; /* source/destination MAC in the key */
/* TCP health (--tcp-health): handshake latencies, retransmissions. */
volatile const __u32 cfg_tcp_health = 0;
/* Tests only: handshake times come from test_clock_ns instead of
 * bpf_ktime_get_ns, so that table tests know the exact latencies. Zero in
 * production: the verifier removes it (as cfg_bench_flows). */
volatile const __u32 cfg_test_clock = 0;
volatile __u64 test_clock_ns;

/* The flow tables: open addressing over a BPF_MAP_TYPE_ARRAY (the
 * verifier inlines an array lookup: no helper call, no jhash; issue #16,
 * docs/datapath.md "The flow tables"). A slot is an 8-byte state word, the
 * key (the front of struct flow_key this configuration keys by, in
 * cfg_key_words 8-byte words) and struct flow_value; the loader sets the
 * value size. A flow's home slot comes from a hash of its key; the flow
 * lives in the first slot from there, within OA_WINDOW slots, that was
 * empty or holds it. Nothing is deleted while a table is in service, so an
 * empty slot ends a search.
 *
 * The inner map is the template; the loader creates the real ones with
 * cfg_oa_home + OA_WINDOW - 1 slots (a window never wraps) and puts one of
 * them in slot 0. Slot 1 (--tcp-health) is the table slot 0 held before the
 * last swap, until the drain has carried and emptied it: a flow's first
 * packet in the new table reads its sequence state there (tcp_seed). */
/* The slot of the default configuration (KEY_BASE); with a longer key the
 * value starts cfg_key_words words after the state word. */
struct flow_slot {
	__u64 state;
	__u64 key[KEY_BASE / 8];
	struct flow_value v;
};

/* clang-format off */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct {
		__uint(type, BPF_MAP_TYPE_ARRAY);
		__uint(max_entries, 1024);
		__uint(map_flags, BPF_F_MMAPABLE);
		__type(key, __u32);
		__type(value, struct flow_slot);
	});
} flow_tables SEC(".maps");
/* clang-format on */

/* Slot states (the low two bits of the state word; the rest is the key's
 * hash, so a probe passes other keys' slots with one compare). 0: empty.
 * BUSY: claimed with a compare-and-exchange from 0 (one CPU owns it) until
 * key and value are written; READY: published with an exchange (a full
 * barrier: key and value are written before anyone sees the slot ready). */
#define SLOT_BUSY     1
#define SLOT_READY    2
#define OA_WINDOW     128   /* slots probed before the table counts as full */
#define OA_SPIN	      16384 /* reads of a BUSY slot of our hash before probing on */
#define KEY_WORDS_MAX 9	    /* the whole key, 68 bytes, in 8-byte words */

volatile const __u64 cfg_oa_home = 1024;	   /* home slots: 2 x MaxFlows */
volatile const __u32 cfg_key_words = KEY_BASE / 8; /* 6, 7 (KEY_MIRROR) or 9 (the whole key) */
/* The hash seed: random per set of tables (as the kernel seeds jhash per
 * map: keys chosen to pile into one window would need it), written by the
 * loader and pinned with the tables, so that a restarted probe finds its
 * flows. Its own data section: a map the loader can pin and hand over. */
volatile __u64 flow_seed[KEY_WORDS_MAX] SEC(".data.seed");

/* The clock. Reading the time is the most expensive thing a packet would
 * do (bpf_ktime_get_coarse_ns is ~17 ns of ~85 here, see
 * docs/benchmarks-history.md), so a BPF timer writes CLOCK_MONOTONIC into clock_ns
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

/* TCP conversations whose handshake is being timed (--tcp-health): both
 * directions share one entry. Not swapped on rotation: a handshake split
 * across a drain still pairs. A HASH, not an LRU: when full a new
 * conversation is not timed and counted in stats.tcp_convs_full, no live
 * one is evicted. Userspace sweeps idle entries (last_ns). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct conv_key);
	__type(value, struct conv_state);
} tcp_convs SEC(".maps");

/* Sequence state carried across table rotations (--tcp-health), keyed by
 * the flow key (the loader sets the tables' key size): the drain writes
 * each TCP flow's state from the table it took out, before it deletes it
 * there; the datapath only reads it, when a flow's first packet of an
 * epoch creates its entry and the table before holds no entry of it
 * (tcp_seed). Bounded (2 x --tcp-conversations): when full, the drain
 * counts the flows it could not carry. Userspace sweeps idle entries.
 * Preallocated, as the tables: the drain writes it for every TCP flow, and
 * allocating entries made that up to 40% slower (docs/benchmarks-history.md). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 131072);
	__type(key, struct flow_key);
	__type(value, struct seq_carry);
} tcp_carry SEC(".maps");

/* tcp_track's scratch: the program's stack and tcp_track's together must
 * fit the verifier's 512 bytes. */
/* A TCP segment as tcp_track reads it. */
struct tcp_seg {
	__u32 flags;
	__u32 seq;
	__u32 span;    /* sequence space used: payload, +1 for SYN, +1 for FIN */
	__u32 payload; /* 0: a pure ACK */
	__u16 win;     /* window field as on the wire (unscaled) */
};

struct tcp_scratch {
	struct conv_key ck;
	struct conv_state ns;
	struct tcp_seg sg;
	__u64 fence; /* tcp_seed's barrier: written, never read */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tcp_scratch);
} tcp_scratch SEC(".maps");

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
const struct flow_slot *const btf_flow_slot;
const struct sample_hdr *const btf_sample_hdr;
const enum malformed_reason *const btf_malformed_reason;
const enum flow_direction *const btf_flow_direction;
const enum tunnel_type *const btf_tunnel_type;
const enum mirror_type *const btf_mirror_type;
const struct lpm_key *const btf_lpm_key;
const struct conv_key *const btf_conv_key;
const struct conv_state *const btf_conv_state;
const struct seq_carry *const btf_seq_carry;

/* What the parse learns about the packet. */
struct packet {
	__u64 l2_len;  /* the whole frame, every fragment (a mirror's inner frame) */
	__u64 end_off; /* where what encloses the current layer ends (frame, outer IP) */
	__u64 l3_room; /* bytes from the IP header to end_off */
	__u64 l3_len;  /* of the innermost IP packet */
	__u32 tcp_flags;
	/* --tcp-health: where the TCP header is, and the bytes from it to
	 * the IP packet's end; tcp_track reads the rest. */
	__u32 tcp_off;
	__u32 tcp_room;
	__u8 ip_tos;
	__u8 fragment;	 /* non-first fragment */
	__u8 more_frags; /* a fragment, maybe the first: its payload is not all here */
	__u8 tcp_new;	 /* tcp_track: the packet creates its flow's entry */
	/* Copied into a new flow's value. */
	__u8 tunnel_src_addr[16];
	__u8 tunnel_dst_addr[16];
	__u32 mpls_labels[MAX_MPLS_LABELS];
};

/* Where the current layer's headers are, in the first buffer. */
struct cursor {
	void *data;
	void *data_end; /* of the first buffer: headers are read from it */
	void *l4;	/* after the IP header (and extension headers) */
	void *l3_end;	/* the IP packet's end (may lie past data_end) */
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

static __always_inline int parse_l4(struct packet *p, struct cursor *c, struct flow_key *k)
{
	void *end = c->data_end, *l4 = c->l4, *l3_end = c->l3_end;

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
		if (cfg_tcp_health) {
			/* Two stores, no branch: the parse is verified once per
			 * path through the layers, so it stays lean. */
			p->tcp_off = l4 - c->data;
			p->tcp_room = l3_end - l4;
		}
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

static __always_inline int parse_ipv4(struct packet *p, struct cursor *c, struct flow_key *k,
				      void *l3)
{
	void *end = c->data_end;
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
	k->proto = ip[9];
	set_v4mapped(k->src_addr, *(__u32 *)&ip[12]);
	set_v4mapped(k->dst_addr, *(__u32 *)&ip[16]);
	__u16 frag = bpf_ntohs(*(__u16 *)&ip[6]);
	if (frag & 0x1fff)
		p->fragment = 1;
	p->more_frags = (frag & 0x3fff) != 0; /* MF or an offset */
	c->l4 = l3 + ihl;
	c->l3_end = l3 + tot_len;
	return PARSE_OK;
}

static __always_inline int parse_ipv6(struct packet *p, struct cursor *c, struct flow_key *k,
				      void *l3)
{
	void *end = c->data_end;
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
	c->l3_end = l3_end;
	p->ip_tos = (ip[0] << 4) | (ip[1] >> 4);
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
	/* The key tells IPv4 by its mapped form: an IPv6 packet may not
	 * carry one (RFC 4291 2.5.5.2), else it would pass for IPv4. */
	if ((!(ks[0] | ks[1]) && ks[2] == bpf_htonl(0xffff)) ||
	    (!(kd[0] | kd[1]) && kd[2] == bpf_htonl(0xffff)))
		return PARSE_BAD(MALFORMED_IPV6_V4MAPPED);

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
			p->more_frags =
			    (bpf_ntohs(*(__u16 *)&e[2]) & 0xfff9) != 0; /* offset or M */
			if (bpf_ntohs(*(__u16 *)&e[2]) & 0xfff8) {
				p->fragment = 1;
				k->proto = nh;
				c->l4 = h; /* unread, but a pointer for the verifier */
				return PARSE_OK;
			}
			h += 8;
			break;
		default:
			k->proto = nh;
			c->l4 = h;
			return PARSE_OK;
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
	c->l4 = h;
	return PARSE_OK;
}

/* Where the parse goes next: an Ethernet frame, something named by an
 * ethertype (MPLS behind GRE), or an IP packet. */
enum layer {
	LAYER_ETH,
	LAYER_ETHERTYPE,
	LAYER_IP,
	LAYER_DONE, /* no (further) encapsulation: the L4 header */
};

/* The link layer from *l3: Ethernet (when at == LAYER_ETH), VLAN tags, an
 * MPLS label stack or a PPPoE session header, up to the IP header. Sets *l3
 * to the IP header and *proto to ETH_P_IP or ETH_P_IPV6. `frame` is set for
 * the frame as received (or a mirror's inner frame): its first tag is the
 * key's vlan_id, its MACs are keyed with --macs, and its top label or PPPoE
 * session is the key's tunnel id (inside an IP tunnel, the tunnel's is). */
static __always_inline int parse_link(struct packet *p, struct cursor *c, struct flow_key *k,
				      void **l3, __u16 *proto, int at, int frame, int inner)
{
	void *end = c->data_end;
	void *l2 = *l3;
	/* Inside a tunnel the frame ends with the outer IP packet, before
	 * any Ethernet padding. */
	__u64 lim_off = p->end_off & 0x1ffff;
	opaque(lim_off);
	void *lim = c->data + lim_off;
	int i;
#define PAST(ptr, n) ((ptr) + (n) > end || (inner && (ptr) + (n) > lim))

	if (at == LAYER_ETH) {
		__u8 *eth = l2;
		if (PAST(l2, 14))
			return PARSE_BAD(MALFORMED_ETH_TRUNCATED);
		if (cfg_macs && frame) {
			__builtin_memcpy(k->dst_mac, &eth[0], 6);
			__builtin_memcpy(k->src_mac, &eth[6], 6);
		}
		*proto = *(__u16 *)&eth[12];
		l2 += 14;
	}
	__u16 pr = *proto;

#pragma unroll
	for (i = 0; i < MAX_VLAN_TAGS; i++) {
		if (pr != bpf_htons(ETH_P_8021Q) && pr != bpf_htons(ETH_P_8021AD) &&
		    pr != bpf_htons(ETH_P_QINQ1))
			break;
		__u8 *tag = l2;
		if (PAST(l2, 4))
			return PARSE_BAD(MALFORMED_VLAN_TRUNCATED);
		if (i == 0 && frame)
			k->vlan_id = bpf_ntohs(*(__u16 *)&tag[0]) & 0x0fff;
		pr = *(__u16 *)&tag[2];
		l2 += 4;
	}

	/* Plain IP goes straight on; MPLS and PPPoE find the IP packet
	 * inside. */
	if (pr == bpf_htons(ETH_P_MPLS_UC) || pr == bpf_htons(ETH_P_MPLS_MC)) {
		/* Labels of 4 bytes until bottom-of-stack (bit 8 of the third
		 * byte); then the first nibble tells IPv4 from IPv6. Anything
		 * else (0: a pseudowire control word and Ethernet, 1: G-ACh,
		 * ...) is not parsed: non-IP. The first stack seen is kept for
		 * export. */
		int keep = p->mpls_labels[0] == 0;
#pragma unroll
		for (i = 0; i < MAX_MPLS_LABELS; i++) {
			__u8 *lse = l2;
			if (PAST(l2, 4))
				return PARSE_BAD(MALFORMED_MPLS_TRUNCATED);
			__u32 v = bpf_ntohl(*(__u32 *)lse);
			if (i == 0 && frame) {
				k->tunnel_type = TUNNEL_MPLS;
				k->tunnel_id = v >> 12;
			}
			if (keep)
				p->mpls_labels[i] = v;
			l2 += 4;
			if (lse[2] & 1)
				break;
		}
		if (i == MAX_MPLS_LABELS)
			return PARSE_BAD(MALFORMED_MPLS_STACK_TOO_DEEP);
		__u8 *in = l2;
		if (PAST(l2, 1))
			return PARSE_BAD(MALFORMED_MPLS_TRUNCATED);
		if ((in[0] >> 4) == 4)
			pr = bpf_htons(ETH_P_IP);
		else if ((in[0] >> 4) == 6)
			pr = bpf_htons(ETH_P_IPV6);
		else
			return PARSE_NOT_IP;
	} else if (pr == bpf_htons(ETH_P_PPP_SES)) {
		/* ver/type 0x11, code 0, session id, length (of the PPP frame:
		 * protocol + payload), PPP protocol. The IP packet is bounded
		 * by the frame, as plain IP is, not by the PPPoE length: real
		 * access links carry IP total lengths that count the padding a
		 * PPPoE length leaves out (pppoe-over-qinq.pcap: IP 46, PPPoE
		 * 42 = 2 + 40). The IP header's length is the L3 octets, as
		 * tshark's ip.len. */
		__u8 *ph = l2;
		if (PAST(l2, 8))
			return PARSE_BAD(MALFORMED_PPPOE_TRUNCATED);
		__u32 plen = bpf_ntohs(*(__u16 *)&ph[4]);
		__u64 here = l2 - c->data;
		if (ph[0] != 0x11 || ph[1] != 0 || plen < 2 || here + 6 + plen > p->end_off)
			return PARSE_BAD(MALFORMED_PPPOE_BAD_HEADER);
		__u16 ppp = *(__u16 *)&ph[6];
		if (ppp == bpf_htons(PPP_IP))
			pr = bpf_htons(ETH_P_IP);
		else if (ppp == bpf_htons(PPP_IPV6))
			pr = bpf_htons(ETH_P_IPV6);
		else
			return PARSE_NOT_IP; /* LCP, IPCP, ... */
		if (frame) {
			k->tunnel_type = TUNNEL_PPPOE;
			k->tunnel_id = bpf_ntohs(*(__u16 *)&ph[2]);
		}
		l2 += 8;
	} else if (pr != bpf_htons(ETH_P_IP) && pr != bpf_htons(ETH_P_IPV6)) {
		return PARSE_NOT_IP;
	}
	*proto = pr;
	*l3 = l2;
	return PARSE_OK;
#undef PAST
}

/* VXLAN (RFC 7348) at h: the I flag must be set for the VNI to mean
 * anything. An Ethernet frame follows the 8 bytes. */
static __always_inline int vxlan(struct cursor *c, void *h, __u32 *vni)
{
	__u8 *v = h;
	void *l3_end = c->l3_end;
	opaque(l3_end);
	/* The header and an Ethernet header after it. */
	if (h + 8 + 14 > c->data_end || h + 8 + 14 > l3_end)
		return PARSE_BAD(MALFORMED_VXLAN_TRUNCATED);
	if (!(v[0] & 0x08))
		return PARSE_BAD(MALFORMED_VXLAN_NO_VNI);
	*vni = (__u32)v[4] << 16 | (__u32)v[5] << 8 | v[6];
	return PARSE_OK;
}

/* Geneve (RFC 8926) at h: version 0, options skipped; the protocol type
 * names what follows. Sets *next, *at and *proto. */
static __always_inline int geneve(struct cursor *c, void *h, __u32 *vni, void **next, int *at,
				  __u16 *proto)
{
	__u8 *g = h;
	void *l3_end = c->l3_end;
	opaque(l3_end);
	if (h + 8 > c->data_end || h + 8 > l3_end)
		return PARSE_BAD(MALFORMED_GENEVE_TRUNCATED);
	if (g[0] >> 6)
		return PARSE_BAD(MALFORMED_GENEVE_BAD_HEADER);
	__u16 gp = *(__u16 *)&g[2];
	if (gp == bpf_htons(ETH_P_TEB))
		*at = LAYER_ETH;
	else if (gp == bpf_htons(ETH_P_IP) || gp == bpf_htons(ETH_P_IPV6))
		*at = LAYER_IP;
	else
		return PARSE_BAD(MALFORMED_GENEVE_BAD_HEADER);
	*proto = gp;
	*vni = (__u32)g[4] << 16 | (__u32)g[5] << 8 | g[6];
	*next = h + 8 + (g[0] & 0x3f) * 4;
	if (*next > l3_end)
		return PARSE_BAD(MALFORMED_GENEVE_TRUNCATED);
	return PARSE_OK;
}

/* GTP-U (3GPP TS 29.281) at h: a G-PDU carries a user's IP packet; echo,
 * end marker and error messages are the outer UDP flow (*at unchanged). */
static __always_inline int gtpu(struct cursor *c, struct flow_key *k, void *h, void **next, int *at,
				__u16 *proto)
{
	void *end = c->data_end, *l3_end = c->l3_end;
	__u8 *g = h;
	opaque(l3_end);
	if (h + 8 > end || h + 8 > l3_end)
		return PARSE_BAD(MALFORMED_GTPU_TRUNCATED);
	/* Not GTP-U version 1 (GTP' has PT 0): some other protocol on the
	 * port (RTP in zeek's gtp4_udp_2152_inside.pcap), the UDP flow. */
	if ((g[0] >> 5) != 1 || !(g[0] & 0x10))
		return PARSE_OK;
	if (g[1] != 255)
		return PARSE_OK;
	__u32 teid = bpf_ntohl(*(__u32 *)&g[4]);
	void *in = h + 8;
	if (g[0] & 0x07) {
		/* Sequence number, N-PDU number, next extension type. */
		if (h + 12 > end || h + 12 > l3_end)
			return PARSE_BAD(MALFORMED_GTPU_TRUNCATED);
		__u8 nx = g[11];
		in = h + 12;
		int i;
#pragma unroll
		for (i = 0; i < MAX_GTPU_EXT && nx; i++) {
			__u8 *e = in;
			if (in + 4 > end || in + 4 > l3_end)
				return PARSE_BAD(MALFORMED_GTPU_TRUNCATED);
			__u32 elen = (__u32)e[0] * 4;
			if (!elen)
				return PARSE_BAD(MALFORMED_GTPU_BAD_HEADER);
			__u8 *last = in + elen - 1;
			if (in + elen > end || in + elen > l3_end)
				return PARSE_BAD(MALFORMED_GTPU_TRUNCATED);
			if ((void *)last + 1 > end)
				return PARSE_BAD(MALFORMED_GTPU_TRUNCATED);
			nx = *last;
			in += elen;
		}
		if (nx)
			return PARSE_BAD(MALFORMED_GTPU_BAD_HEADER);
	}
	__u8 *ip = in;
	if (in + 1 > end || in + 1 > l3_end)
		return PARSE_OK; /* no T-PDU: the outer flow */
	if ((ip[0] >> 4) == 4)
		*proto = bpf_htons(ETH_P_IP);
	else if ((ip[0] >> 4) == 6)
		*proto = bpf_htons(ETH_P_IPV6);
	else
		return PARSE_OK; /* not IP (an Ethernet or unstructured PDU session) */
	k->tunnel_type = TUNNEL_GTPU;
	k->tunnel_id = teid;
	*next = in;
	*at = LAYER_IP;
	return PARSE_OK;
}

/* TZSP (MikroTik's streaming sniffer) at h: version 1, a received frame,
 * Ethernet, then tagged fields up to END. */
static __always_inline int tzsp(struct cursor *c, void *h, void **next, int *at)
{
	void *end = c->data_end, *l3_end = c->l3_end;
	__u8 *t = h;
	opaque(l3_end);
	if (h + 4 > end || h + 4 > l3_end)
		return PARSE_BAD(MALFORMED_TZSP_TRUNCATED);
	if (t[0] != 1 || t[1] != 0 || *(__u16 *)&t[2] != bpf_htons(1))
		return PARSE_BAD(MALFORMED_TZSP_BAD_HEADER);
	void *f = h + 4;
	int i;
#pragma unroll
	for (i = 0; i < MAX_TZSP_TAGS; i++) {
		__u8 *tag = f;
		if (f + 2 > end || f + 1 > l3_end)
			return PARSE_BAD(MALFORMED_TZSP_TRUNCATED);
		if (tag[0] == 1) { /* END */
			*next = f + 1;
			*at = LAYER_ETH;
			return PARSE_OK;
		}
		if (tag[0] == 0) /* PADDING */
			f += 1;
		else
			f += 2 + tag[1];
	}
	return PARSE_BAD(MALFORMED_TZSP_BAD_HEADER);
}

/* A tunnel or mirror encapsulation in the payload of the IP packet just
 * parsed (c->l4), outermost when it is the frame's first IP header. Sets
 * *at to where the parse goes on (LAYER_DONE: nothing to decapsulate, the
 * L4 header is next), *next to that header, *proto for LAYER_IP and
 * LAYER_ETHERTYPE; *mirror when the frame was a mirror's. */
static __always_inline int decap(struct cursor *c, struct flow_key *k, void **next, int *at,
				 __u16 *proto, int *mirror, int outermost)
{
	void *end = c->data_end, *l4 = c->l4, *l3_end = c->l3_end;
	opaque(l3_end);
	*at = LAYER_DONE;

	switch (k->proto) {
	case IPPROTO_IPIP:
	case IPPROTO_IPV6:
		if (!cfg_tunnels)
			return PARSE_OK;
		k->tunnel_type = TUNNEL_IPIP;
		k->tunnel_id = 0;
		*proto = k->proto == IPPROTO_IPIP ? bpf_htons(ETH_P_IP) : bpf_htons(ETH_P_IPV6);
		*next = l4;
		*at = LAYER_IP;
		return PARSE_OK;
	case IPPROTO_GRE: {
		int erspan = cfg_mirror_erspan && outermost;
		if (!cfg_tunnels && !erspan)
			return PARSE_OK;
		__u8 *g = l4;
		if (l4 + 4 > end || l4 + 4 > l3_end)
			return PARSE_BAD(MALFORMED_GRE_TRUNCATED);
		__u16 fl = bpf_ntohs(*(__u16 *)&g[0]);
		__u16 gp = *(__u16 *)&g[2];
		if ((fl & 7) == 1)
			return PARSE_OK; /* PPTP's enhanced GRE: PPP inside, the outer flow */
		if ((fl & 7) || (fl & 0x4000))
			return PARSE_BAD(MALFORMED_GRE_BAD_HEADER);
		/* Checksum+reserved, key, sequence number: 4 bytes each. */
		void *in = l4 + 4;
		__u32 id = 0;
		if (fl & 0x8000)
			in += 4;
		if (fl & 0x2000) {
			__u8 *kp = in;
			if (in + 4 > end || in + 4 > l3_end)
				return PARSE_BAD(MALFORMED_GRE_TRUNCATED);
			id = bpf_ntohl(*(__u32 *)kp);
			in += 4;
		}
		if (fl & 0x1000)
			in += 4;
		if (in > l3_end)
			return PARSE_BAD(MALFORMED_GRE_TRUNCATED);
		if (erspan && (gp == bpf_htons(ETH_P_ERSPAN) || gp == bpf_htons(ETH_P_ERSPAN3))) {
			__u32 session = 0;
			/* Type I: 0x88BE without a sequence number, the frame
			 * right after GRE. II: an 8-byte header, version 1.
			 * III (0x22EB): 12 bytes, version 2, and an 8-byte
			 * platform subheader when the O bit is set. */
			if (gp == bpf_htons(ETH_P_ERSPAN3) || (fl & 0x1000)) {
				__u8 *e = in;
				int v3 = gp == bpf_htons(ETH_P_ERSPAN3);
				if (in + 8 > end || in + 8 > l3_end)
					return PARSE_BAD(MALFORMED_ERSPAN_TRUNCATED);
				if ((e[0] >> 4) != (v3 ? 2 : 1))
					return PARSE_BAD(MALFORMED_ERSPAN_BAD_VERSION);
				session = ((__u32)e[2] << 8 | e[3]) & 0x3ff;
				in += 8;
				if (v3) {
					if (in + 4 > end || in + 4 > l3_end)
						return PARSE_BAD(MALFORMED_ERSPAN_TRUNCATED);
					in += e[11] & 1 ? 12 : 4;
					if (in > end || in > l3_end)
						return PARSE_BAD(MALFORMED_ERSPAN_TRUNCATED);
				}
			}
			k->mirror_type = MIRROR_ERSPAN;
			k->observation_point_id = session;
			*mirror = 1;
			*next = in;
			*at = LAYER_ETH;
			return PARSE_OK;
		}
		if (!cfg_tunnels)
			return PARSE_OK;
		if (gp == bpf_htons(ETH_P_IP) || gp == bpf_htons(ETH_P_IPV6))
			*at = LAYER_IP;
		else if (gp == bpf_htons(ETH_P_TEB))
			*at = LAYER_ETH;
		else if (gp == bpf_htons(ETH_P_MPLS_UC) || gp == bpf_htons(ETH_P_MPLS_MC))
			*at = LAYER_ETHERTYPE;
		else
			return PARSE_OK; /* WCCP, ERSPAN not configured, ...: the outer flow */
		k->tunnel_type = TUNNEL_GRE;
		k->tunnel_id = id;
		*proto = gp;
		*next = in;
		return PARSE_OK;
	}
	case IPPROTO_UDP: {
		__u8 *u = l4;
		if (l4 + 8 > end || l4 + 8 > l3_end)
			return PARSE_OK; /* parse_l4 counts it */
		__u32 dport = bpf_ntohs(*(__u16 *)&u[2]);
		void *h = l4 + 8;
		__u32 id;
		int r;
		if (outermost && cfg_mirror_vxlan_port && dport == cfg_mirror_vxlan_port) {
			if ((r = vxlan(c, h, &id)))
				return r;
			k->mirror_type = MIRROR_VXLAN;
			k->observation_point_id = id;
			*mirror = 1;
			*next = h + 8;
			*at = LAYER_ETH;
			return PARSE_OK;
		}
		if (outermost && cfg_mirror_geneve_port && dport == cfg_mirror_geneve_port) {
			if ((r = geneve(c, h, &id, next, at, proto)))
				return r;
			k->mirror_type = MIRROR_GENEVE;
			k->observation_point_id = id;
			*mirror = 1;
			return PARSE_OK;
		}
		if (outermost && cfg_mirror_tzsp_port && dport == cfg_mirror_tzsp_port) {
			if ((r = tzsp(c, h, next, at)))
				return r;
			if (*at == LAYER_ETH) {
				k->mirror_type = MIRROR_TZSP;
				k->observation_point_id = 0;
				*mirror = 1;
			}
			return PARSE_OK;
		}
		if (!cfg_tunnels)
			return PARSE_OK;
		if ((cfg_vxlan_ports[0] && dport == cfg_vxlan_ports[0]) ||
		    (cfg_vxlan_ports[1] && dport == cfg_vxlan_ports[1])) {
			if ((r = vxlan(c, h, &id)))
				return r;
			k->tunnel_type = TUNNEL_VXLAN;
			k->tunnel_id = id;
			*next = h + 8;
			*at = LAYER_ETH;
			return PARSE_OK;
		}
		if ((cfg_geneve_ports[0] && dport == cfg_geneve_ports[0]) ||
		    (cfg_geneve_ports[1] && dport == cfg_geneve_ports[1])) {
			if ((r = geneve(c, h, &id, next, at, proto)))
				return r;
			k->tunnel_type = TUNNEL_GENEVE;
			k->tunnel_id = id;
			return PARSE_OK;
		}
		if (dport == 2152)
			return gtpu(c, k, h, next, at, proto);
		return PARSE_OK;
	}
	}
	return PARSE_OK;
}

static __always_inline void copy16(__u8 *dst, const __u8 *src)
{
	__u32 *d = (__u32 *)dst;
	const __u32 *s = (const __u32 *)src;
	d[0] = s[0];
	d[1] = s[1];
	d[2] = s[2];
	d[3] = s[3];
}

/* ptr re-derived from data and its offset, or NULL past max. The verifier
 * then holds one pointer state however many paths (VLAN tags, labels,
 * extension headers) led here, and prunes: without this it walks every
 * combination of them through everything after, past its limit. */
static __always_inline void *rebase(void *data, void *ptr, __u64 max)
{
	__u64 off = ptr - data;
	opaque(off);
	if (off > max)
		return 0;
	return data + off;
}

/* Where the parse goes next, between layers. */
struct walk {
	__u32 off;   /* of the next header (<= MAX_HDR_OFF) */
	__u16 proto; /* its ethertype, for LAYER_IP and LAYER_ETHERTYPE */
	__u8 at;     /* enum layer */
	__u8 frame;  /* a frame as received or a mirror's inner frame: key its VLAN, MACs */
	__u8 depth;  /* IP tunnels decapsulated */
	__u8 _pad[3];
};

/* One layer: the link (unless the walk is at an IP header), IP, and either
 * the L4 header (w->at = LAYER_DONE) or the encapsulation inside, which
 * leaves the walk at the next layer. first: the frame's outermost layer,
 * the only one whose payload may be a mirror encapsulation. */
static __always_inline int one_layer(struct xdp_md *ctx, struct packet *p, struct flow_key *k,
				     struct walk *w, const int first)
{
	struct cursor cur = {
	    .data = (void *)(long)ctx->data,
	    .data_end = (void *)(long)ctx->data_end,
	};
	struct cursor *c = &cur;
	void *l3 = c->data + (w->off & MAX_HDR_OFF);
	int at = w->at, r;
	__u16 proto = w->proto;

	if (at != LAYER_IP) {
		r = parse_link(p, c, k, &l3, &proto, at, w->frame, !first);
		if (r)
			return r;
		l3 = rebase(c->data, l3, MAX_HDR_OFF);
		if (!l3)
			return PARSE_BAD(MALFORMED_TUNNEL_TOO_DEEP);
	}
	__u64 l3_off = l3 - c->data;
	opaque(l3_off); /* else clang adds l2_len to a packet pointer */
	p->l3_room = l3_off < p->end_off ? p->end_off - l3_off : 0;
	if (proto == bpf_htons(ETH_P_IP))
		r = parse_ipv4(p, c, k, l3);
	else
		r = parse_ipv6(p, c, k, l3);
	if (r)
		return r;
	c->l4 = rebase(c->data, c->l4, MAX_L4_OFF);
	if (!c->l4)
		return PARSE_BAD(MALFORMED_L4_TRUNCATED);
	w->at = LAYER_DONE;
	/* A fragmented packet is not decapsulated, not even its first
	 * fragment (the inner packet is cut short): the outer flow. */
	if (p->more_frags)
		return parse_l4(p, c, k);

	void *next = 0;
	int mirror = 0;
	r = decap(c, k, &next, &at, &proto, &mirror, first);
	if (r)
		return r;
	if (at == LAYER_DONE)
		return parse_l4(p, c, k);

	__u64 off = next - c->data;
	__u64 end_off = c->l3_end - c->data;
	opaque(off);
	if (off > MAX_HDR_OFF || off > end_off)
		return PARSE_BAD(MALFORMED_TUNNEL_TOO_DEEP);
	p->end_off = end_off;
	if (mirror) {
		/* As if the inner frame had arrived on a local port. */
		p->l2_len = end_off - off;
		k->vlan_id = 0;
		k->tunnel_type = TUNNEL_NONE;
		k->tunnel_id = 0;
		__builtin_memset(p->mpls_labels, 0, sizeof(p->mpls_labels));
		w->frame = 1;
	} else {
		if (++w->depth > MAX_TUNNEL_DEPTH)
			return PARSE_BAD(MALFORMED_TUNNEL_TOO_DEEP);
		copy16(p->tunnel_src_addr, k->src_addr);
		copy16(p->tunnel_dst_addr, k->dst_addr);
		w->frame = 0;
	}
	w->off = off;
	w->at = at;
	w->proto = proto;
	return PARSE_OK;
}

/* Zero, and nothing writes it: the verifier, which cannot know that, takes
 * what is XORed with it for any value (inner_layer). */
volatile __u32 walk_unknown;

/* A layer past the first: never a mirror (only the outermost IP payload is
 * one), inside what encloses it. With forget, the verifier no longer tells
 * apart the paths that led here (which link, tunnel, IP version; the next
 * header's offset; where the enclosing packet ends): it checks the layer
 * once, not once per path through the layers before it, which exceeds its
 * limit. The path stays the same at run time (XOR with zero). */
static __always_inline int inner_layer(struct xdp_md *ctx, struct packet *p, struct flow_key *k,
				       struct walk *w, const int forget)
{
	if (forget) {
		__u32 z = walk_unknown;
		w->at ^= z;
		w->depth ^= z;
		w->proto ^= z;
		w->off ^= z;
		p->end_off ^= z;
	}
	return one_layer(ctx, p, k, w, 0);
}

/* Parse the frame layer by layer: the link, IP, and, while the IP payload
 * is a tunnel or mirror encapsulation, again inside it. */
static __always_inline int parse(struct xdp_md *ctx, struct packet *p, struct flow_key *k)
{
	struct walk w = {.at = LAYER_ETH, .frame = 1};
	int r;

	p->end_off = p->l2_len;
	r = one_layer(ctx, p, k, &w, 1);
	if (r || w.at == LAYER_DONE)
		return r;
	/* The second layer (one encapsulation, the common case) as the
	 * verifier finds it; the others forgotten (inner_layer). All inlined:
	 * a call's return costs about as much as a layer on CPUs with
	 * return-stack mitigations (docs/benchmarks-history.md). At most
	 * MAX_TUNNEL_DEPTH tunnels and a mirror above them: five layers, and
	 * one_layer refuses a deeper tunnel. */
	r = inner_layer(ctx, p, k, &w, 0);
	if (r || w.at == LAYER_DONE)
		return r;
	r = inner_layer(ctx, p, k, &w, 1);
	if (r || w.at == LAYER_DONE)
		return r;
	r = inner_layer(ctx, p, k, &w, 1);
	if (r || w.at == LAYER_DONE)
		return r;
	r = inner_layer(ctx, p, k, &w, 1);
	if (r || w.at == LAYER_DONE)
		return r;
	return PARSE_BAD(MALFORMED_TUNNEL_TOO_DEEP);
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

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

/* The precise clock, for handshake packets only (a helper call, ~20 ns). */
static __always_inline __u64 hs_clock(void)
{
	if (cfg_test_clock)
		return test_clock_ns;
	return bpf_ktime_get_ns();
}

/* Big-endian word compare of two addresses: byte order, as Go's
 * bytes.Compare, so userspace can build the same conversation keys. */
static __always_inline int addr_cmp(const __u8 *a, const __u8 *b)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;
	int i;
#pragma unroll
	for (i = 0; i < 4; i++) {
		__u32 u = bpf_ntohl(x[i]), w = bpf_ntohl(y[i]);
		if (u != w)
			return u < w ? -1 : 1;
	}
	return 0;
}

/* Copy what the conversation has measured into a direction's value: the
 * application latency into the server's only, in every epoch (the client's
 * first epochs end before it is known). */
static __always_inline void copy_latencies(struct flow_value *v, const struct conv_state *cs,
					   int from_client)
{
	v->server_nw_delay_ns = cs->server_nw_delay_ns;
	v->client_nw_delay_ns = cs->client_nw_delay_ns;
	if (!from_client)
		v->appl_latency_ns = cs->appl_latency_ns;
}

/* After this many packets of an epoch without learning all it can, a
 * direction stops looking the conversation up (a server that only ever
 * acknowledges would otherwise do so on every packet). */
#define TCP_HS_MAX_PACKETS 8

/* The handshake path of --tcp-health: the first packet of a direction in
 * each table epoch, SYN and RST packets, and a direction's packets until
 * it has learnt what the conversation can tell it (TCP_ST_DONE). Times
 * SYN, SYN-ACK, the handshake's ACK and the first data each way in
 * tcp_convs, and copies the latencies measured into v. Returns 1 when a
 * new conversation found tcp_convs full. A global function: the verifier
 * checks it once, and ordinary packets never call it. */
static __always_inline int tcp_handshake(const struct flow_key *k, struct tcp_scratch *sc,
					 struct flow_value *v, __u64 now)
{
	const struct tcp_seg *p = &sc->sg;
	struct conv_key *ck = &sc->ck;
	ck->tunnel_id = k->tunnel_id;
	ck->observation_point_id = k->observation_point_id;
	ck->vlan_id = k->vlan_id;
	ck->tunnel_type = k->tunnel_type;
	ck->mirror_type = k->mirror_type;
	int c = addr_cmp(k->src_addr, k->dst_addr);
	__u8 from_lo = c < 0 || (c == 0 && k->src_port <= k->dst_port);
	if (from_lo) {
		copy16(ck->lo_addr, k->src_addr);
		copy16(ck->hi_addr, k->dst_addr);
		ck->lo_port = k->src_port;
		ck->hi_port = k->dst_port;
	} else {
		copy16(ck->lo_addr, k->dst_addr);
		copy16(ck->hi_addr, k->src_addr);
		ck->lo_port = k->dst_port;
		ck->hi_port = k->src_port;
	}
	__u32 f = p->flags;
	struct conv_state *cs = bpf_map_lookup_elem(&tcp_convs, ck);

	if (f & TCP_RST) {
		/* The conversation is over (or was refused): what it measured
		 * goes with this packet's flow, then the entry goes. */
		if (cs) {
			copy_latencies(v, cs, cs->client_lo == from_lo);
			bpf_map_delete_elem(&tcp_convs, ck);
		}
		v->tcp_state |= TCP_ST_DONE;
		return 0;
	}
	if ((f & (TCP_SYN | TCP_ACK)) == TCP_SYN) {
		__u64 t = hs_clock();
		if (cs && cs->phase <= CONV_SYNACK) {
			if (cs->client_lo == from_lo) {
				/* A retransmitted SYN: the server answers the one
				 * that reached it, so time from the last. */
				cs->syn_ns = t;
				cs->phase = CONV_SYN;
			} else {
				/* Both ends sent a SYN: simultaneous open. */
				cs->phase = CONV_NO_ROLES;
				v->tcp_state |= TCP_ST_DONE;
			}
			cs->last_ns = now;
			return 0;
		}
		if (cs && cs->phase == CONV_NO_ROLES) {
			v->tcp_state |= TCP_ST_DONE;
			return 0;
		}
		/* A new conversation (or ports reused after an old one). */
		struct conv_state *ns = &sc->ns;
		__builtin_memset(ns, 0, sizeof(*ns));
		ns->syn_ns = t;
		ns->last_ns = now;
		ns->client_lo = from_lo;
		ns->phase = CONV_SYN;
		if (bpf_map_update_elem(&tcp_convs, ck, ns, BPF_ANY)) {
			v->tcp_state |= TCP_ST_DONE;
			return 1;
		}
		return 0;
	}
	if (!cs) {
		/* Started before the probe saw its SYN (or tcp_convs was
		 * full then): nothing to learn. */
		v->tcp_state |= TCP_ST_DONE;
		return 0;
	}
	int from_client = cs->client_lo == from_lo;
	cs->last_ns = now;
	switch (cs->phase) {
	case CONV_SYN:
	case CONV_SYNACK:
		if ((f & TCP_SYN) && !from_client) {
			/* SYN-ACK: the server delay from the first; a
			 * retransmitted one restarts the client's clock. */
			__u64 t = hs_clock();
			if (!cs->server_nw_delay_ns)
				cs->server_nw_delay_ns = t - cs->syn_ns;
			cs->synack_ns = t;
			cs->phase = CONV_SYNACK;
		} else if (cs->phase == CONV_SYNACK && from_client && !(f & TCP_SYN) &&
			   (f & TCP_ACK)) {
			__u64 t = hs_clock();
			cs->client_nw_delay_ns = t - cs->synack_ns;
			cs->phase = CONV_ESTABLISHED;
			if (p->payload)
				cs->client_data_ns = t;
		}
		break;
	case CONV_ESTABLISHED:
		if (!p->payload)
			break;
		if (from_client && !cs->client_data_ns) {
			cs->client_data_ns = hs_clock();
		} else if (!from_client) {
			/* The server's first data: the application's answer
			 * to the client's first data, or, server first (SMTP,
			 * SSH banners), no application latency. */
			if (cs->client_data_ns)
				cs->appl_latency_ns = hs_clock() - cs->client_data_ns;
			cs->phase = CONV_DONE;
		}
		break;
	}
	copy_latencies(v, cs, from_client);
	if (cs->phase >= CONV_DONE || (from_client && cs->client_data_ns) ||
	    v->packets >= TCP_HS_MAX_PACKETS)
		v->tcp_state |= TCP_ST_DONE;
	return 0;
}

/* Sequence tracking of one direction, on every TCP packet (no lookup:
 * the state is in the flow's value, seeded by tcp_seed). A segment at or
 * past the high-water mark is new (past it, the gap is remembered as the
 * hole); one inside the hole fills it (out of order); anything else below
 * the mark was seen already (a retransmission). A SYN that does not end at
 * the mark (not a repeat of the one that set it) starts a new sequence
 * space: the ports were reused by a new connection. Zero windows are
 * counted as Wireshark's tcp.analysis.zero_window: window 0 on a segment
 * without SYN, FIN, RST. */
static __always_inline void tcp_seq_track(struct flow_value *v, const struct tcp_seg *p)
{
	__u32 fl = p->flags;
	if (p->win == 0 && !(fl & (TCP_SYN | TCP_FIN | TCP_RST)))
		v->tcp_zero_win++;
	__u32 span = p->span;
	if (!span || (fl & TCP_RST))
		return;
	__u32 seq = p->seq, end = seq + span, hwm = v->tcp_hwm;
	__u8 st = v->tcp_state;
	if (!(st & TCP_ST_SEQ) || ((fl & TCP_SYN) && end != hwm)) {
		v->tcp_hwm = end;
		v->tcp_state = (st & ~TCP_ST_HOLE) | TCP_ST_SEQ;
		return;
	}
	__s32 d = seq - hwm;
	if (d >= 0) {
		if (d > 0) {
			v->tcp_hole_lo = hwm;
			v->tcp_hole_hi = seq;
			v->tcp_state = st | TCP_ST_HOLE;
		}
		v->tcp_hwm = end;
		return;
	}
	__u32 lo = v->tcp_hole_lo, hi = v->tcp_hole_hi;
	if ((st & TCP_ST_HOLE) && (__s32)(seq - lo) >= 0 && (__s32)(seq - hi) < 0) {
		v->tcp_ooo++;
		if ((__s32)(end - hi) >= 0) {
			if (seq == lo)
				v->tcp_state = st & ~TCP_ST_HOLE;
			else
				v->tcp_hole_hi = seq;
		} else if (seq == lo) {
			v->tcp_hole_lo = end;
		}
		return;
	}
	v->tcp_retrans++;
	if ((__s32)(end - hwm) > 0)
		v->tcp_hwm = end;
}

/* Open addressing (see flow_tables). kw is cfg_key_words as a compile-time
 * constant: the code is built for each key size and the verifier drops the
 * copies this configuration does not use. */

/* Word i of the key. The whole key is 68 bytes: its ninth word is the last
 * four (zero-extended; the slot stores it so, and the drain reads 68). */
static __always_inline __u64 key_word(const struct flow_key *k, const int i)
{
	if (i == 8)
		return *(const __u32 *)((const __u8 *)k + 64);
	return ((const __u64 *)k)[i];
}

#define OA_MUL(i)                                                                                  \
	((i) == 0   ? 0x9e3779b97f4a7c15ULL                                                        \
	 : (i) == 1 ? 0xc2b2ae3d27d4eb4fULL                                                        \
	 : (i) == 2 ? 0x165667b19e3779f9ULL                                                        \
	 : (i) == 3 ? 0xd6e8feb86659fd93ULL                                                        \
	 : (i) == 4 ? 0xff51afd7ed558ccdULL                                                        \
	 : (i) == 5 ? 0xc4ceb9fe1a85ec53ULL                                                        \
	 : (i) == 6 ? 0x94d049bb133111ebULL                                                        \
	 : (i) == 7 ? 0xbf58476d1ce4e5b9ULL                                                        \
		    : 0x2545f4914f6cdd1dULL)

/* Independent multiplies of the seeded key words (they issue in parallel),
 * summed, then murmur3's finalizer, so that the top bits, which pick the
 * home slot, depend on every key bit. With one multiply less in the
 * finalizer, keys differing in one address byte clustered under some
 * seeds (docs/benchmarks-history.md, issue #16's table designs). */
static __always_inline __u64 oa_hash(const struct flow_key *k, const int kw)
{
	__u64 h = 0;
	int i;
#pragma unroll
	for (i = 0; i < KEY_WORDS_MAX; i++)
		if (i < kw)
			h += (key_word(k, i) ^ flow_seed[i]) * OA_MUL(i);
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

/* The home slot: Lemire's multiply-shift, any table size, no division. */
static __always_inline __u32 oa_home(__u64 h)
{
	return ((h >> 32) * cfg_oa_home) >> 32;
}

static __always_inline int key_eq(const __u64 *sk, const struct flow_key *k, const int kw)
{
	__u64 d = 0;
	int i;
#pragma unroll
	for (i = 0; i < KEY_WORDS_MAX; i++)
		if (i < kw)
			d |= sk[i] ^ key_word(k, i);
	return !d;
}

static __always_inline struct flow_value *slot_value(__u64 *s, const int kw)
{
	return (struct flow_value *)(s + 1 + kw);
}

#define barrier()    asm volatile("" ::: "memory")
#define READ_ONCE(x) (*(volatile __u64 *)&(x))

/* The previous table's slot of k (slot 1 of flow_tables), probed as
 * account probes the active one: its sequence state into v. 0 when it is
 * not there, or when the drain emptied the slot while it was read. */
static __always_inline int seed_from_prev(const struct flow_key *k, struct flow_value *v,
					  const int kw)
{
	__u32 one = 1;
	void *prev = bpf_map_lookup_elem(&flow_tables, &one);
	if (!prev)
		return 0;
	__u64 h = oa_hash(k, kw), ready = h << 2 | SLOT_READY;
	__u32 base = oa_home(h);
	int i;
#pragma clang loop unroll(disable)
	for (i = 0; i < OA_WINDOW; i++) {
		__u32 idx = base + i;
		__u64 *s = bpf_map_lookup_elem(prev, &idx);
		if (!s)
			return 0;
		__u64 sw = READ_ONCE(s[0]);
		if (!sw)
			return 0; /* not there (or the drain emptied a slot on the way) */
		barrier();
		if (sw != ready || !key_eq(s + 1, k, kw))
			continue;
		const struct flow_value *pv = slot_value(s, kw);
		__u32 hwm = pv->tcp_hwm, lo = pv->tcp_hole_lo, hi = pv->tcp_hole_hi;
		__u8 st = pv->tcp_state;
		/* The drain zeroes a slot's state word before the rest (and
		 * only after it has carried every flow of the table): still
		 * ready, what was read is the flow's; emptied, the carry has
		 * it. Loads stay in order on x86; the compiler must keep
		 * them so too. */
		barrier();
		if (READ_ONCE(s[0]) != ready)
			return 0;
		v->tcp_hwm = hwm;
		v->tcp_hole_lo = lo;
		v->tcp_hole_hi = hi;
		v->tcp_state = st & (TCP_ST_SEQ | TCP_ST_HOLE);
		return 1;
	}
	return 0;
}

/* A flow's sequence state when its first packet of a table epoch creates
 * its entry in v: where the flow left off. That is its slot in the table
 * taken out at the last swap (slot 1, until the drain empties it), final
 * since the swap (a direction's packets run on one CPU at a time, as for
 * its counts); or, when there is no such table or slot (no packet in the
 * last epoch, or the drain has emptied it already), tcp_carry, which the
 * drain wrote from every flow of the table before emptying any slot. */
static __always_inline void tcp_seed(const struct flow_key *k, struct flow_value *v,
				     struct tcp_scratch *sc)
{
	int found;
	if (cfg_key_words == 6)
		found = seed_from_prev(k, v, 6);
	else if (cfg_key_words == 7)
		found = seed_from_prev(k, v, 7);
	else
		found = seed_from_prev(k, v, 9);
	if (found)
		return;
	/* A full barrier (an exchange: atomics that return a value are fully
	 * ordered in BPF): the lookup below must not be satisfied before the
	 * miss above, or a carry written just before the drain emptied the
	 * slot (or slot 1) could be missed on a weakly ordered CPU. */
	__u64 f = __atomic_exchange_n(&sc->fence, 0, __ATOMIC_SEQ_CST);
	opaque(f);
	const struct seq_carry *c = bpf_map_lookup_elem(&tcp_carry, k);
	if (c) {
		v->tcp_hwm = c->hwm;
		v->tcp_hole_lo = c->hole_lo;
		v->tcp_hole_hi = c->hole_hi;
		v->tcp_state = c->state & (TCP_ST_SEQ | TCP_ST_HOLE);
	}
}

/* --tcp-health's work for one TCP packet and its flow's value v: the
 * handshake path when the direction still has something to learn (or the
 * packet is the entry's first, a SYN or a RST), sequence tracking always.
 * Returns 1 when a new conversation found tcp_convs full. A global
 * function: inlined, its branches multiplied the verifier's walk of every
 * path through the parse past its limit; the call costs a few ns. */
__attribute__((noinline)) int tcp_track(struct xdp_md *ctx, const struct flow_key *k,
					const struct packet *p, struct flow_value *v, __u64 now)
{
	if (!ctx || !k || !p || !v)
		return 0;
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	__u64 off = p->tcp_off;
	if (off > MAX_L4_OFF)
		return 0;
	__u8 *t = data + off;
	if ((void *)(t + 20) > end)
		return 0; /* cannot happen: the parse checked it */
	__u32 zero = 0;
	struct tcp_scratch *sc = bpf_map_lookup_elem(&tcp_scratch, &zero);
	if (!sc)
		return 0; /* cannot happen: a 1-entry per-CPU array */
	struct tcp_seg *sg = &sc->sg;
	__u32 hl = (t[12] >> 4) * 4, room = p->tcp_room;
	sg->flags = p->tcp_flags;
	sg->payload = room > hl ? room - hl : 0; /* a data offset past the packet: none */
	sg->seq = bpf_ntohl(*(__u32 *)&t[4]);
	sg->win = bpf_ntohs(*(__u16 *)&t[14]);
	sg->span = sg->payload + ((sg->flags & TCP_SYN) ? 1 : 0) + (sg->flags & TCP_FIN);

	if (p->tcp_new)
		tcp_seed(k, v, sc);
	int full = 0;
	if (p->tcp_new || !(v->tcp_state & TCP_ST_DONE) || (sg->flags & (TCP_SYN | TCP_RST)))
		full = tcp_handshake(k, sc, v, now);
	tcp_seq_track(v, sg);
	return full;
}

static __always_inline int is_tcp_tracked(const struct packet *p, const struct flow_key *k)
{
	return cfg_tcp_health && k->proto == IPPROTO_TCP && !p->fragment;
}

/* A packet of a flow already in slot s. */
static __always_inline int oa_add(struct xdp_md *ctx, struct packet *p, const struct flow_key *k,
				  __u64 now, struct datapath_stats *st, struct flow_value *v)
{
	__sync_fetch_and_add(&v->packets, 1);
	__sync_fetch_and_add(&v->bytes, p->l3_len);
	__sync_fetch_and_add(&v->l2_bytes, p->l2_len);
	/* Plain stores, and only when something changes: the clock ticks once
	 * per timer period, so most packets of a busy flow write nothing here. */
	if (v->last_seen_ns < now)
		v->last_seen_ns = now;
	if ((v->tcp_flags | p->tcp_flags) != v->tcp_flags)
		__sync_fetch_and_or(&v->tcp_flags, p->tcp_flags);
	if (is_tcp_tracked(p, k))
		st->tcp_convs_full += tcp_track(ctx, k, p, v, now);
	return 0;
}

/* A new flow in slot s, claimed (BUSY): write key and value, then publish.
 * The slot is zero from the drain: only what a new flow sets is written. */
static __always_inline int oa_fill(struct xdp_md *ctx, struct packet *p, const struct flow_key *k,
				   __u64 now, struct datapath_stats *st, __u64 *s, __u64 ready,
				   const int kw)
{
	struct flow_value *v = slot_value(s, kw);
	int i;
#pragma unroll
	for (i = 0; i < KEY_WORDS_MAX; i++)
		if (i < kw)
			s[1 + i] = key_word(k, i);
	v->packets = 1;
	v->bytes = p->l3_len;
	v->l2_bytes = p->l2_len;
	v->first_seen_ns = now;
	v->last_seen_ns = now;
	v->tcp_flags = p->tcp_flags;
	v->ip_tos = p->ip_tos;
	v->flow_direction = direction(k);
	if (k->tunnel_type) {
		copy16(v->tunnel_src_addr, p->tunnel_src_addr);
		copy16(v->tunnel_dst_addr, p->tunnel_dst_addr);
		__builtin_memcpy(v->mpls_labels, p->mpls_labels, sizeof(v->mpls_labels));
	}
	if (is_tcp_tracked(p, k)) {
		p->tcp_new = 1;
		st->tcp_convs_full += tcp_track(ctx, k, p, v, now);
		p->tcp_new = 0;
	}
	/* seq_cst: the stores above stay before it. */
	__atomic_exchange_n(&s[0], ready, __ATOMIC_SEQ_CST);
	return 1;
}

struct spin {
	__u64 *s;
	__u64 busy;
	__u64 sw;
};

static long spin_once(__u64 i, void *data)
{
	struct spin *c = data;
	c->sw = READ_ONCE(c->s[0]);
	return c->sw != c->busy; /* 1 ends the loop */
}

/* The probe past the home slot: 1 a new flow, 0 an existing one, -1 the
 * window is full (so is the table: a counted failure, nothing evicted). */
static __always_inline int oa_window(struct xdp_md *ctx, struct packet *p, const struct flow_key *k,
				     __u64 now, __u64 h, const int kw)
{
	__u32 zero = 0;
	struct datapath_stats *st = bpf_map_lookup_elem(&stats, &zero);
	if (!st)
		return -1; /* cannot happen: a 1-entry per-CPU array */
	/* Looked up again: a swap since the caller's lookup puts the packet
	 * in the new table, probed from its home slot (each packet still
	 * lands in exactly one table). */
	void *table = bpf_map_lookup_elem(&flow_tables, &zero);
	if (!table)
		return -1;
	__u64 busy = h << 2 | SLOT_BUSY, ready = h << 2 | SLOT_READY;
	__u32 base = oa_home(h);
	int i;
#pragma clang loop unroll(disable)
	for (i = 0; i < OA_WINDOW; i++) {
		__u32 idx = base + i;
		__u64 *s = bpf_map_lookup_elem(table, &idx); /* inlined: no call */
		if (!s)
			return -1;
		__u64 sw = READ_ONCE(s[0]);
		if (sw == 0) {
			if (__sync_val_compare_and_swap(&s[0], 0, busy) == 0)
				return oa_fill(ctx, p, k, now, st, s, ready, kw);
			/* Another CPU took it first: see what it holds. */
			sw = READ_ONCE(s[0]);
		}
		if (sw == busy) {
			/* Being filled with a key of our hash: most likely this
			 * flow's first packet on another CPU. Wait for it (a
			 * helper loop, so the verifier walks the wait once). */
			struct spin c = {.s = s, .busy = busy, .sw = sw};
			bpf_loop(OA_SPIN, spin_once, &c, 0);
			sw = c.sw;
		}
		/* The key is read after the state: x86 keeps loads in order;
		 * the compiler must too. */
		barrier();
		if (sw == ready && key_eq(s + 1, k, kw))
			return oa_add(ctx, p, k, now, st, slot_value(s, kw));
		/* Another key, or a writer still not done after the wait (its
		 * CPU interrupted, or descheduled by the hypervisor): probe on.
		 * The flow may then take a second slot; each packet is still in
		 * exactly one, and the drain hands both to the probe, which
		 * merges them as it merges a flow's epochs. */
	}
	return -1;
}

/* Global functions, one per key size: the verifier checks each once, not
 * once per path through the parse (the window's 128 iterations on every
 * path would exceed its budget), and a packet pays the call only when its
 * home slot holds another flow. Five arguments at most: the stats are
 * looked up again. */
__attribute__((noinline)) int oa_window6(struct xdp_md *ctx, struct packet *p,
					 const struct flow_key *k, __u64 now, __u64 h)
{
	if (!ctx || !p || !k)
		return -1;
	return oa_window(ctx, p, k, now, h, 6);
}

__attribute__((noinline)) int oa_window7(struct xdp_md *ctx, struct packet *p,
					 const struct flow_key *k, __u64 now, __u64 h)
{
	if (!ctx || !p || !k)
		return -1;
	return oa_window(ctx, p, k, now, h, 7);
}

__attribute__((noinline)) int oa_window9(struct xdp_md *ctx, struct packet *p,
					 const struct flow_key *k, __u64 now, __u64 h)
{
	if (!ctx || !p || !k)
		return -1;
	return oa_window(ctx, p, k, now, h, 9);
}

/* Add the packet to its flow in the active table: 1 a new flow, 0 an
 * existing one, -1 not counted in a flow (the table is full). The home
 * slot is checked inline: at the tables' load (at most half full) most
 * packets end there. */
static __always_inline int account_kw(struct xdp_md *ctx, struct packet *p, struct flow_key *k,
				      __u64 now, struct datapath_stats *st, const int kw)
{
	__u32 zero = 0;
	void *table = bpf_map_lookup_elem(&flow_tables, &zero);
	if (!table)
		return -1;
	__u64 h = oa_hash(k, kw), ready = h << 2 | SLOT_READY;
	__u32 idx = oa_home(h);
	__u64 *s = bpf_map_lookup_elem(table, &idx); /* inlined: no call */
	if (!s)
		return -1;
	__u64 sw = READ_ONCE(s[0]);
	if (sw == ready) {
		barrier(); /* the key after the state, as in oa_window */
		if (key_eq(s + 1, k, kw))
			return oa_add(ctx, p, k, now, st, slot_value(s, kw));
	} else if (sw == 0 && __sync_val_compare_and_swap(&s[0], 0, h << 2 | SLOT_BUSY) == 0) {
		return oa_fill(ctx, p, k, now, st, s, ready, kw);
	}
	if (kw == 6)
		return oa_window6(ctx, p, k, now, h);
	if (kw == 7)
		return oa_window7(ctx, p, k, now, h);
	return oa_window9(ctx, p, k, now, h);
}

static __always_inline int account(struct xdp_md *ctx, struct packet *p, struct flow_key *k,
				   __u64 now, struct datapath_stats *st)
{
	if (cfg_key_words == 6)
		return account_kw(ctx, p, k, now, st, 6);
	if (cfg_key_words == 7)
		return account_kw(ctx, p, k, now, st, 7);
	return account_kw(ctx, p, k, now, st, 9);
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
	/* Aligned: the table code reads the key in 8-byte words. */
	struct flow_key k __attribute__((aligned(8))) = {};
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

	int acc = account(ctx, &p, &k, now, st);
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

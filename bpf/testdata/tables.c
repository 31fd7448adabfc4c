// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Issue #16 experiments (bpf/bpftest loads them; not part of the probe):
 * xdpflow's per-packet work on plain IPv4/IPv6 TCP/UDP/SCTP/ICMP frames,
 * over other flow table designs, so that each design is measured in the
 * same run as the real program and the empty one.
 *
 *   tables_hash     BPF_MAP_TYPE_HASH (or PERCPU_HASH) keyed by the 48-byte
 *                   front of struct flow_key: today's table
 *   tables_compact  IPv4 in a HASH keyed by a 24-byte key, IPv6 in one
 *                   keyed by the 48 bytes: what jhash's key length costs
 *   tables_oa       open addressing over a BPF_MAP_TYPE_ARRAY: a hash
 *                   computed here, linear probing, no helper call
 *
 * The parse is the real program's for these frames (Ethernet, two VLAN
 * tags, IPv4 with options, IPv6 without extension headers, L4) without its
 * encapsulation walk; the accounting is the real program's. Each table sits
 * behind a one-slot ARRAY_OF_MAPS, as the real one does, so rotation stays
 * exact. Load-time constants select the variants; the verifier removes the
 * branches they rule out. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "../xdpflow.h"

#define ETH_P_IP     0x0800
#define ETH_P_IPV6   0x86DD
#define ETH_P_8021Q  0x8100
#define ETH_P_8021AD 0x88A8
#define ETH_P_QINQ1  0x9100

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
#define EEXIST		17
#define EBUSY		16
#define CLOCK_MONOTONIC 1

volatile const __u32 cfg_percpu = 0;	  /* per-CPU table: plain adds, no claim race */
volatile const __u32 cfg_value168 = 0;	  /* hash: a 168-byte value (after TCP health) */
volatile const __u32 cfg_lean = 0;	  /* per-CPU stats: only what the table cannot tell */
volatile const __u32 cfg_no_clock = 0;	  /* no clock read, last_seen never updated */
volatile const __u32 cfg_bench_flows = 0; /* as in xdpflow.c */

/* Today's table, and the per-CPU one (the loader sets the type and the
 * value size). The key is KEY_BASE bytes, as the real tables are keyed in
 * the default configuration. */
struct key48 {
	__u64 w[KEY_BASE / 8];
};

/* clang-format off */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct {
		__uint(type, BPF_MAP_TYPE_HASH);
		__uint(max_entries, 1024);
		__type(key, struct key48);
		__type(value, struct flow_value);
	});
} hash_tables SEC(".maps");
/* clang-format on */

/* The compact IPv4 key: what a plain IPv4 flow_key holds, without the
 * IPv4-mapped prefix and the mirror fields. 24 bytes: jhash takes one
 * 12-byte round and the final mix, where 48 bytes take three and the mix. */
struct v4_key {
	__u32 src_addr;
	__u32 dst_addr;
	__u32 in_if;
	__u32 tunnel_id;
	__u16 vlan_id;
	__u16 src_port;
	__u16 dst_port;
	__u8 proto;
	__u8 tunnel_type;
};

/* clang-format off */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct {
		__uint(type, BPF_MAP_TYPE_HASH);
		__uint(max_entries, 1024);
		__type(key, struct v4_key);
		__type(value, struct flow_value);
	});
} v4_tables SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct {
		__uint(type, BPF_MAP_TYPE_HASH);
		__uint(max_entries, 1024);
		__type(key, struct key48);
		__type(value, struct flow_value);
	});
} v6_tables SEC(".maps");
/* clang-format on */

/* Open addressing. A slot is a state word, the key and the value; the
 * loader sets the array's value size (a 168-byte value adds 56 bytes the
 * plain path never writes). A flow's home slot comes from a hash of its
 * key; it lives in the first slot from there that was empty or holds it.
 * Nothing is deleted while the table is in service, so an empty slot ends
 * a search: the key is not in the table.
 *
 * state: 0 empty; tag|SLOT_BUSY from the claim (compare-and-exchange from
 * 0, so one CPU owns it) until key and value are written; then
 * tag|SLOT_READY, published with an exchange (a full barrier: the key is
 * written before anyone can see the slot ready). tag is the key's hash, so
 * a probe passes other keys' slots with one compare and waits only on a
 * slot being filled with a key of its own hash: the same flow's first
 * packet on another CPU. A wait is bounded: if the writer is still not
 * done (its vCPU descheduled), the probe goes on and may give the flow a
 * second slot. Each packet is in exactly one slot either way; the drain
 * adds up the slots of one key, as the probe merges a flow's epochs.
 *
 * Per-CPU variant (cfg_percpu): the array is cut into one table per CPU,
 * each written by its CPU alone: plain stores and adds.
 *
 * The drain reads a table the rotation has taken out of service: the slot
 * swap waits for every running program, so no slot is BUSY any more; it
 * takes the READY slots, and zeroes them before the table is put back. A
 * new flow therefore writes only the fields it sets: the rest are zero. */
#define SLOT_BUSY  1
#define SLOT_READY 2
#define OA_WINDOW  128	 /* slots probed before the table counts as full */
#define OA_SPIN	   16384 /* reads of a BUSY slot of our hash before probing on */

struct slot {
	__u64 state;
	__u64 key[KEY_BASE / 8];
	struct flow_value v;
};

/* clang-format off */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct {
		__uint(type, BPF_MAP_TYPE_ARRAY);
		__uint(max_entries, 1024);
		__uint(map_flags, BPF_F_MMAPABLE);
		__type(key, __u32);
		__type(value, struct slot);
	});
} oa_tables SEC(".maps");
/* clang-format on */

/* Home slots per table (a table has cfg_oa_home + OA_WINDOW - 1 slots, so
 * a window never wraps); cfg_oa_part is a table's slots, the stride of the
 * per-CPU tables. */
volatile const __u64 cfg_oa_home = 1024;
volatile const __u32 cfg_oa_part = 1024 + OA_WINDOW - 1;
/* Randomised by the loader, as the kernel seeds jhash per map: keys chosen
 * to pile into one window then need the seed. */
volatile const __u64 cfg_seed[KEY_BASE / 8] = {0x243f6a8885a308d3, 0x13198a2e03707344,
					       0xa4093822299f31d0, 0x082efa98ec4e6c89,
					       0x452821e638d01377, 0xbe5466cf34e90c6c};

/* The value padded to 168 bytes: the designs were measured when struct
 * flow_value was 112 bytes; since TCP health it is 168 itself, and the
 * padding is empty. */
struct value168 {
	struct flow_value v;
	__u8 tcp_health[168 - sizeof(struct flow_value)];
};

/* The real program's clock: a BPF timer writes the time every ms and
 * packets load it (its docs/datapath.md, "The clock"). */
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

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct datapath_stats);
} stats SEC(".maps");

/* Complete these types in BTF (inner map definitions leave them
 * forward-declared), for the loader and bpf2go. */
const struct key48 *const btf_key48;
const struct slot *const btf_slot;
const struct v4_key *const btf_v4_key;
const struct flow_value *const btf_flow_value;

struct packet {
	__u64 l2_len;
	__u64 l3_room; /* bytes from the IP header to the frame's end */
	__u64 l3_len;
	__u32 tcp_flags;
	__u8 ip_tos;
	__u8 fragment;
	__u8 ipv4;
};

#define PARSE_OK     0
#define PARSE_NOT_IP 1
#define PARSE_BAD(r) (2 + (r))

#define opaque(x) asm volatile("" : "+r"(x))
#define barrier() asm volatile("" ::: "memory")

static __always_inline void set_v4mapped(__u8 *dst, __u32 addr)
{
	__u32 *d = (__u32 *)dst;
	d[0] = 0;
	d[1] = 0;
	d[2] = bpf_htonl(0x0000ffff);
	d[3] = addr;
}

/* The real program's parse_l4. */
static __always_inline int parse_l4(struct packet *p, void *l4, void *l3_end, void *end,
				    struct flow_key *k)
{
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

static __always_inline int parse_ipv4(struct packet *p, void *l3, void *end, struct flow_key *k)
{
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
	p->ipv4 = 1;
	k->proto = ip[9];
	set_v4mapped(k->src_addr, *(__u32 *)&ip[12]);
	set_v4mapped(k->dst_addr, *(__u32 *)&ip[16]);
	if (bpf_ntohs(*(__u16 *)&ip[6]) & 0x1fff)
		p->fragment = 1;
	return parse_l4(p, l3 + ihl, l3 + tot_len, end, k);
}

/* Without extension headers: a frame with one is not IP here (the real
 * program walks up to 8; plain traffic has none). */
static __always_inline int parse_ipv6(struct packet *p, void *l3, void *end, struct flow_key *k)
{
	__u8 *ip = l3;

	if (l3 + 40 > end)
		return PARSE_BAD(MALFORMED_IPV6_TRUNCATED);
	if ((ip[0] >> 4) != 6)
		return PARSE_BAD(MALFORMED_IP_VERSION);
	__u32 tot_len = 40 + bpf_ntohs(*(__u16 *)&ip[4]);
	if (tot_len > p->l3_room)
		return PARSE_BAD(MALFORMED_IPV6_BAD_LENGTH);

	p->l3_len = tot_len;
	p->ip_tos = (ip[0] << 4) | (ip[1] >> 4);
	__u32 *src = (__u32 *)&ip[8], *ks = (__u32 *)k->src_addr, *kd = (__u32 *)k->dst_addr;
	ks[0] = src[0];
	ks[1] = src[1];
	ks[2] = src[2];
	ks[3] = src[3];
	kd[0] = src[4];
	kd[1] = src[5];
	kd[2] = src[6];
	kd[3] = src[7];
	if ((!(ks[0] | ks[1]) && ks[2] == bpf_htonl(0xffff)) ||
	    (!(kd[0] | kd[1]) && kd[2] == bpf_htonl(0xffff)))
		return PARSE_BAD(MALFORMED_IPV6_V4MAPPED);
	__u8 nh = ip[6];
	switch (nh) {
	case IPPROTO_HOPOPTS:
	case IPPROTO_ROUTING:
	case IPPROTO_DSTOPTS:
	case IPPROTO_AH:
	case IPPROTO_FRAGMENT:
		return PARSE_NOT_IP;
	}
	k->proto = nh;
	return parse_l4(p, l3 + 40, l3 + tot_len, end, k);
}

static __always_inline int parse(struct xdp_md *ctx, struct packet *p, struct flow_key *k)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	void *l3 = data + 14;
	__u8 *eth = data;
	int i;

	if (l3 > end)
		return PARSE_BAD(MALFORMED_ETH_TRUNCATED);
	__u16 pr = *(__u16 *)&eth[12];
#pragma unroll
	for (i = 0; i < MAX_VLAN_TAGS; i++) {
		if (pr != bpf_htons(ETH_P_8021Q) && pr != bpf_htons(ETH_P_8021AD) &&
		    pr != bpf_htons(ETH_P_QINQ1))
			break;
		__u8 *tag = l3;
		if (l3 + 4 > end)
			return PARSE_BAD(MALFORMED_VLAN_TRUNCATED);
		if (i == 0)
			k->vlan_id = bpf_ntohs(*(__u16 *)&tag[0]) & 0x0fff;
		pr = *(__u16 *)&tag[2];
		l3 += 4;
	}
	__u64 l3_off = l3 - data;
	opaque(l3_off);
	p->l3_room = l3_off < p->l2_len ? p->l2_len - l3_off : 0;
	if (pr == bpf_htons(ETH_P_IP))
		return parse_ipv4(p, l3, end, k);
	if (pr == bpf_htons(ETH_P_IPV6))
		return parse_ipv6(p, l3, end, k);
	return PARSE_NOT_IP;
}

static __always_inline void add(__u64 *dst, __u64 v)
{
	if (cfg_percpu)
		*dst += v;
	else
		__sync_fetch_and_add(dst, v);
}

/* The real program's accounting of a packet into its flow's value. */
static __always_inline void add_packet(struct flow_value *v, struct packet *p, __u64 now)
{
	add(&v->packets, 1);
	add(&v->bytes, p->l3_len);
	add(&v->l2_bytes, p->l2_len);
	if (!cfg_no_clock && v->last_seen_ns < now)
		v->last_seen_ns = now;
	if ((v->tcp_flags | p->tcp_flags) != v->tcp_flags) {
		if (cfg_percpu)
			v->tcp_flags |= p->tcp_flags;
		else
			__sync_fetch_and_or(&v->tcp_flags, p->tcp_flags);
	}
}

#define NEW_VALUE(p, now)                                                                          \
	{                                                                                          \
	    .packets = 1,                                                                          \
	    .bytes = (p)->l3_len,                                                                  \
	    .l2_bytes = (p)->l2_len,                                                               \
	    .first_seen_ns = (now),                                                                \
	    .last_seen_ns = (now),                                                                 \
	    .tcp_flags = (p)->tcp_flags,                                                           \
	    .ip_tos = (p)->ip_tos,                                                                 \
	}

/* The real program's account(), over the table in outer's slot: 1 a new
 * flow, 0 an existing one, -1 not counted in a flow (table full). */
static __always_inline int account_hash(void *outer, struct packet *p, const void *key, __u64 now)
{
	__u32 zero = 0;
	void *table = bpf_map_lookup_elem(outer, &zero);
	if (!table)
		return -1;

	struct flow_value *v = bpf_map_lookup_elem(table, key);
	if (!v) {
		long err;
		/* The value is copied from the stack: the 168-byte one needs
		 * a 168-byte buffer, zeroed. */
		if (cfg_value168) {
			struct value168 nv = {.v = NEW_VALUE(p, now)};
			err = bpf_map_update_elem(table, key, &nv, BPF_NOEXIST);
		} else {
			struct flow_value nv = NEW_VALUE(p, now);
			err = bpf_map_update_elem(table, key, &nv, BPF_NOEXIST);
		}
		if (err == 0)
			return 1;
		if (err != -EEXIST)
			return -1;
		v = bpf_map_lookup_elem(table, key);
		if (!v)
			return -1;
	}
	add_packet(v, p, now);
	return 0;
}

/* Six independent multiplies (they issue in parallel), summed, then a
 * finalizer so that the top bits, which pick the home slot, depend on every
 * key bit. Checked by simulation (docs/benchmarks.md) to spread the
 * benchmarks' keys and other structured ones as a random function does. */
static __always_inline __u64 hash_key(const __u64 *w)
{
	__u64 h = (w[0] ^ cfg_seed[0]) * 0x9e3779b97f4a7c15ULL +
		  (w[1] ^ cfg_seed[1]) * 0xc2b2ae3d27d4eb4fULL +
		  (w[2] ^ cfg_seed[2]) * 0x165667b19e3779f9ULL +
		  (w[3] ^ cfg_seed[3]) * 0xd6e8feb86659fd93ULL +
		  (w[4] ^ cfg_seed[4]) * 0xff51afd7ed558ccdULL +
		  (w[5] ^ cfg_seed[5]) * 0xc4ceb9fe1a85ec53ULL;
	/* murmur3's fmix64: with one multiply less, keys that differ only
	 * in one address byte clustered under some seeds (a probe of 145
	 * slots in 1M, where a random function's longest is ~55). */
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

static __always_inline int key_eq(const __u64 *a, const __u64 *b)
{
	return !((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) | (a[4] ^ b[4]) |
		 (a[5] ^ b[5]));
}

struct spin {
	struct slot *s;
	__u64 busy;
	__u64 st;
};

static long spin_once(__u64 i, void *data)
{
	struct spin *c = data;
	c->st = *(volatile __u64 *)&c->s->state;
	return c->st != c->busy; /* 1 ends the loop */
}

static __always_inline int account_oa(struct packet *p, const struct flow_key *k, __u64 now)
{
	__u32 zero = 0;
	void *table = bpf_map_lookup_elem(&oa_tables, &zero);
	if (!table)
		return -1;

	const __u64 *w = (const __u64 *)k;
	__u64 h = hash_key(w);
	__u64 busy = h << 2 | SLOT_BUSY, ready = h << 2 | SLOT_READY;
	/* Lemire's multiply-shift: any table size, no division. */
	__u32 base = ((h >> 32) * cfg_oa_home) >> 32;
	if (cfg_percpu)
		base += bpf_get_smp_processor_id() * cfg_oa_part; /* inlined by the verifier */

	int i;
#pragma clang loop unroll(disable)
	for (i = 0; i < OA_WINDOW; i++) {
		__u32 idx = base + i;
		struct slot *s = bpf_map_lookup_elem(table, &idx); /* inlined: no call */
		if (!s)
			return -1;
		__u64 st = *(volatile __u64 *)&s->state;
		if (st == 0) {
			if (cfg_percpu) {
				/* Ours alone: no claim needed. */
			} else if (__sync_val_compare_and_swap(&s->state, 0, busy) != 0) {
				/* Another CPU took it first: see what it holds. */
				st = *(volatile __u64 *)&s->state;
				goto taken;
			}
			s->key[0] = w[0];
			s->key[1] = w[1];
			s->key[2] = w[2];
			s->key[3] = w[3];
			s->key[4] = w[4];
			s->key[5] = w[5];
			/* The slot is zero from the drain: set what a new flow
			 * sets (the real program's tunnel endpoints and labels
			 * would be written only for a tunnel's flow). */
			s->v.packets = 1;
			s->v.bytes = p->l3_len;
			s->v.l2_bytes = p->l2_len;
			s->v.first_seen_ns = now;
			s->v.last_seen_ns = now;
			s->v.tcp_flags = p->tcp_flags;
			s->v.ip_tos = p->ip_tos;
			if (cfg_percpu) {
				barrier();
				*(volatile __u64 *)&s->state = ready;
			} else {
				/* seq_cst: the stores above stay before it. */
				__atomic_exchange_n(&s->state, ready, __ATOMIC_SEQ_CST);
			}
			return 1;
		}
	taken:
		if (st == busy) {
			/* Being filled with a key of our hash: most likely this
			 * flow's first packet on another CPU. Wait for it (a
			 * helper loop, so the verifier walks the wait once). */
			struct spin c = {.s = s, .busy = busy, .st = st};
			bpf_loop(OA_SPIN, spin_once, &c, 0);
			st = c.st;
		}
		/* The key is read after the state: x86 keeps loads in order;
		 * the compiler must too. (A weaker CPU needs a load-acquire.) */
		barrier();
		if (st == ready && key_eq(s->key, w)) {
			add_packet(&s->v, p, now);
			return 0;
		}
		/* Another key, or a writer still not done after the wait (its
		 * CPU interrupted, or descheduled by the hypervisor): probe on.
		 * The flow may then take a second slot; each packet is still
		 * in exactly one, and the drain adds up slots of one key. */
	}
	return -1; /* the window is full: so is the table */
}

static __always_inline int count(struct xdp_md *ctx, const int design)
{
	__u32 zero = 0;
	struct datapath_stats *st = bpf_map_lookup_elem(&stats, &zero);
	if (!st)
		return XDP_PASS;

	struct packet p = {};
	struct flow_key k = {};
	p.l2_len = ctx->data_end - ctx->data;
	__u64 now = 0;
	if (!cfg_no_clock) {
		now = clock_ns;
		if (!now)
			now = bpf_ktime_get_coarse_ns();
	}
	if (!cfg_lean) {
		st->packets++;
		st->bytes += p.l2_len;
	}

	int r = parse(ctx, &p, &k);
	if (r == PARSE_NOT_IP) {
		st->non_ip++;
		return XDP_PASS;
	}
	if (r != PARSE_OK) {
		__u32 reason = r - 2;
		if (reason < MALFORMED_MAX)
			st->malformed[reason]++;
		return XDP_PASS;
	}
	k.in_if = ctx->ingress_ifindex;
	if (cfg_bench_flows)
		*(__u32 *)&k.src_addr[12] ^= st->bench_seq++ % cfg_bench_flows;
	if (p.fragment)
		st->fragments++;

	int acc;
	if (design == 0) {
		acc = account_hash(&hash_tables, &p, &k, now);
	} else if (design == 1) {
		if (p.ipv4) {
			struct v4_key k4 = {
			    .src_addr = *(__u32 *)&k.src_addr[12],
			    .dst_addr = *(__u32 *)&k.dst_addr[12],
			    .in_if = k.in_if,
			    .tunnel_id = k.tunnel_id,
			    .vlan_id = k.vlan_id,
			    .src_port = k.src_port,
			    .dst_port = k.dst_port,
			    .proto = k.proto,
			    .tunnel_type = k.tunnel_type,
			};
			acc = account_hash(&v4_tables, &p, &k4, now);
		} else {
			acc = account_hash(&v6_tables, &p, &k, now);
		}
	} else {
		acc = account_oa(&p, &k, now);
	}
	if (acc < 0) {
		st->update_failed_packets++;
		st->update_failed_bytes += p.l3_len;
		return XDP_PASS;
	}
	if (cfg_lean) {
		/* packets, bytes, flow_packets and flow_bytes are the
		 * drained tables' sums plus the exceptions. */
		if (acc)
			st->new_flows++;
		return XDP_PASS;
	}
	st->new_flows += acc;
	st->flow_packets++;
	st->flow_bytes += p.l3_len;
	return XDP_PASS;
}

SEC("xdp")
int tables_hash(struct xdp_md *ctx)
{
	return count(ctx, 0);
}

SEC("xdp")
int tables_compact(struct xdp_md *ctx)
{
	return count(ctx, 1);
}

SEC("xdp")
int tables_oa(struct xdp_md *ctx)
{
	return count(ctx, 2);
}

static int clock_tick(void *map, __u32 *key, struct clock_timer *t)
{
	clock_ns = bpf_ktime_get_ns();
	bpf_timer_start(&t->timer, 1000000, 0);
	return 0;
}

/* Run once by the loader, as the real program's is. */
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
	if (bpf_timer_set_callback(&t->timer, clock_tick) || bpf_timer_start(&t->timer, 1000000, 0))
		return XDP_ABORTED;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Types shared between the XDP program and its Go loader (bpf2go turns
 * them into Go structs). Keep field order and sizes stable: the probe
 * reads these maps and a layout change is a new program version. */
#ifndef XDPFLOW_H
#define XDPFLOW_H

#include <linux/types.h>

/* Flow key. Addresses are 16 bytes; IPv4 is stored IPv4-mapped
 * (::ffff:a.b.c.d) so one form serves both versions and tells them apart
 * (an IPv6 packet carrying an IPv4-mapped address is malformed, RFC 4291
 * 2.5.5.2). Ports are host order. For ICMP/ICMPv6 dst_port holds
 * type*256+code and src_port is 0, as NetFlow tools expect. Non-first
 * fragments have both ports 0.
 *
 * Inside a tunnel (--tunnels inner) the addresses, ports and protocol are
 * the innermost IP conversation's, and tunnel_type/tunnel_id name the
 * tunnel nearest to it, so tenants with overlapping addresses never merge.
 * A mirrored frame (--mirror-encap) is keyed as if it had arrived on a local
 * span port, plus the mirror session. docs/datapath.md has every rule.
 *
 * The tables hash only the front of the key a configuration needs
 * (KEY_BASE, KEY_MIRROR or the whole): every byte hashed costs every
 * packet, and 48 bytes hash in as many rounds as the 44 of plain IP did. */
struct flow_key {
	__u8 src_addr[16];
	__u8 dst_addr[16];
	__u32 in_if;
	__u32 tunnel_id; /* VNI, GRE key, TEID, top MPLS label, PPPoE session; 0 none */
	__u16 vlan_id;	 /* outer 802.1Q/802.1ad id, 0 when untagged */
	__u16 src_port;
	__u16 dst_port;
	__u8 proto;
	__u8 tunnel_type; /* enum tunnel_type */
	/* KEY_BASE: every configuration */
	__u32 observation_point_id; /* mirror session: ERSPAN session id, VNI; 0 local */
	__u8 mirror_type;	    /* enum mirror_type */
	__u8 _pad[3];
	/* KEY_MIRROR: with --mirror-encap */
	__u8 src_mac[6]; /* --macs only, else zero */
	__u8 dst_mac[6];
};

#define KEY_BASE   48
#define KEY_MIRROR 56

/* What carried the flow: the encapsulation whose id is tunnel_id. */
enum tunnel_type {
	TUNNEL_NONE = 0,
	TUNNEL_MPLS = 1,   /* id: top label (20 bits) */
	TUNNEL_PPPOE = 2,  /* id: session id */
	TUNNEL_GRE = 3,	   /* id: GRE key, 0 without one */
	TUNNEL_IPIP = 4,   /* IPv4/IPv6 in IPv4/IPv6 (protocols 4, 41): id 0 */
	TUNNEL_VXLAN = 5,  /* id: VNI */
	TUNNEL_GENEVE = 6, /* id: VNI */
	TUNNEL_GTPU = 7,   /* id: TEID */
};

/* How a mirrored frame reached the probe (--mirror-encap). */
enum mirror_type {
	MIRROR_NONE = 0,
	MIRROR_ERSPAN = 1, /* observation_point_id: session id (types II, III; I has none: 0) */
	MIRROR_VXLAN = 2,  /* observation_point_id: VNI */
	MIRROR_GENEVE = 3, /* observation_point_id: VNI */
	MIRROR_TZSP = 4,   /* observation_point_id: 0 (TZSP names no session) */
};

#define MAX_MPLS_LABELS 8 /* labels followed before giving up; all are kept */

/* Flow value: what happened to one key since the table was last drained. */
struct flow_value {
	__u64 packets;
	__u64 bytes;	     /* L3 octets: (innermost) IP header + payload (octetDeltaCount) */
	__u64 l2_bytes;	     /* frame octets as received (layer2OctetDeltaCount) */
	__u64 first_seen_ns; /* CLOCK_MONOTONIC, the timer clock (1 ms) */
	__u64 last_seen_ns;
	__u32 tcp_flags;     /* OR of the 12 low bits of TCP header word 6 (RFC 7125) */
	__u8 ip_tos;	     /* IPv4 TOS / IPv6 traffic class of the first packet */
	__u8 flow_direction; /* enum flow_direction, set when the flow is created */
	__u8 _pad[2];
	/* Of the first packet, set when the flow is created: */
	__u8 tunnel_src_addr[16]; /* the tunnel's outer endpoints (IPv4-mapped) */
	__u8 tunnel_dst_addr[16]; /* zero unless tunnel_type is an IP tunnel */
	/* MPLS label stack entries, top first, as on the wire (label << 12 |
	 * TC << 9 | S << 8 | TTL); zero past the bottom of the stack. */
	__u32 mpls_labels[MAX_MPLS_LABELS];
	/* TCP health (--tcp-health, docs/datapath.md "TCP health"). Latencies
	 * in ns, 0 = not measured; set once per conversation from the
	 * handshake state in tcp_convs and copied into each epoch's entry. */
	__u64 server_nw_delay_ns; /* SYN-ACK - SYN: tap <-> server round trip */
	__u64 client_nw_delay_ns; /* handshake ACK - SYN-ACK: tap <-> client */
	__u64 appl_latency_ns;	  /* first server data - first client data (server's flow) */
	__u32 tcp_retrans;	  /* segments whose sequence space was seen already */
	__u32 tcp_ooo;		  /* segments filling a gap in the sequence space */
	__u32 tcp_zero_win;	  /* segments advertising a zero window */
	/* Sequence tracking of this direction: hwm is the next sequence
	 * number past everything seen (SYN and FIN count one); [hole_lo,
	 * hole_hi) the last gap not yet filled. Valid per tcp_state bits. */
	__u32 tcp_hwm;
	__u32 tcp_hole_lo;
	__u32 tcp_hole_hi;
	__u8 tcp_state; /* TCP_ST_* */
	__u8 _pad2[7];
};

/* flow_value.tcp_state bits. */
#define TCP_ST_SEQ  0x01 /* tcp_hwm valid */
#define TCP_ST_HOLE 0x02 /* tcp_hole_lo/hi valid */
#define TCP_ST_DONE 0x04 /* this direction learns nothing more from the handshake state */

/* A flow direction's sequence state as the last drained table left it, in
 * tcp_carry (keyed by the flow key): the drain writes it, the datapath
 * reads it when the flow's first packet of a later epoch creates its
 * entry (docs/datapath.md, "TCP health"). */
struct seq_carry {
	__u32 hwm;
	__u32 hole_lo;
	__u32 hole_hi;
	__u8 state; /* TCP_ST_SEQ and TCP_ST_HOLE only */
	__u8 _pad[3];
	__u64 last_ns; /* the flow's last packet (flow clock): idle sweep */
};

/* A TCP conversation in tcp_convs, both directions as one: the lower
 * (address, port) end first, so either direction's packet finds it. The
 * ingress interface is not part of it: a TAP delivering each direction on
 * its own port still pairs. */
struct conv_key {
	__u8 lo_addr[16];
	__u8 hi_addr[16];
	__u32 tunnel_id;
	__u32 observation_point_id;
	__u16 vlan_id;
	__u16 lo_port;
	__u16 hi_port;
	__u8 tunnel_type;
	__u8 mirror_type;
};

/* Handshake state of one conversation, in ns of bpf_ktime_get_ns (only
 * handshake packets read that clock). */
struct conv_state {
	__u64 syn_ns;	      /* the last SYN from the client */
	__u64 synack_ns;      /* the last SYN-ACK from the server */
	__u64 client_data_ns; /* first client data after the handshake */
	__u64 last_ns;	      /* flow clock of the last update: idle sweep */
	__u64 server_nw_delay_ns;
	__u64 client_nw_delay_ns;
	__u64 appl_latency_ns;
	__u8 client_lo; /* the client is the key's lo end */
	__u8 phase;	/* enum conv_phase */
	__u8 _pad[6];
};

enum conv_phase {
	CONV_SYN = 1,	 /* SYN seen */
	CONV_SYNACK = 2, /* SYN-ACK seen */
	CONV_ESTABLISHED = 3,
	CONV_DONE = 4,	  /* every latency measured */
	CONV_NO_ROLES = 5 /* simultaneous open: no client, no server, no latencies */
};

/* Where a flow goes relative to the local networks (--local-net). */
enum flow_direction {
	DIRECTION_UNKNOWN = 0, /* no local networks, or both ends (or neither) local */
	DIRECTION_INGRESS = 1, /* into the local networks */
	DIRECTION_EGRESS = 2,  /* out of them */
};

/* Key of the local networks' LPM trie: IPv4 as IPv4-mapped IPv6. */
struct lpm_key {
	__u32 prefixlen;
	__u8 addr[16];
};

/* Why a frame was counted as malformed. Append only. */
enum malformed_reason {
	MALFORMED_ETH_TRUNCATED = 0,   /* shorter than an Ethernet header */
	MALFORMED_VLAN_TRUNCATED,      /* VLAN tag cut short */
	MALFORMED_IPV4_TRUNCATED,      /* less than 20 bytes of IPv4 header */
	MALFORMED_IPV4_BAD_IHL,	       /* IHL < 5, or options past the frame */
	MALFORMED_IPV4_BAD_LENGTH,     /* total length < header or > frame */
	MALFORMED_IP_VERSION,	       /* version nibble disagrees with ethertype */
	MALFORMED_IPV6_TRUNCATED,      /* less than 40 bytes of IPv6 header */
	MALFORMED_IPV6_BAD_LENGTH,     /* payload length past the frame */
	MALFORMED_IPV6_EXT_TRUNCATED,  /* extension header past the packet */
	MALFORMED_IPV6_EXT_CHAIN,      /* more extension headers than we follow */
	MALFORMED_L4_TRUNCATED,	       /* TCP/UDP/SCTP/ICMP header past the packet */
	MALFORMED_MPLS_TRUNCATED,      /* MPLS label stack past the frame, or nothing after it */
	MALFORMED_MPLS_STACK_TOO_DEEP, /* no bottom-of-stack within MAX_MPLS_LABELS labels */
	MALFORMED_PPPOE_TRUNCATED,     /* PPPoE session header + PPP protocol cut short */
	MALFORMED_PPPOE_BAD_HEADER,    /* ver/type not 0x11, code not 0, or bad length */
	MALFORMED_GRE_TRUNCATED,       /* GRE header (with its options) past the packet */
	MALFORMED_GRE_BAD_HEADER,      /* version not 0, or the routing bit set */
	MALFORMED_ERSPAN_TRUNCATED,    /* ERSPAN header past the packet */
	MALFORMED_ERSPAN_BAD_VERSION,  /* ERSPAN version not 1 (type II) or 2 (type III) */
	MALFORMED_VXLAN_TRUNCATED,   /* VXLAN header or the Ethernet header after it past the packet
				      */
	MALFORMED_VXLAN_NO_VNI,	     /* I flag clear: the VNI is not valid (RFC 7348) */
	MALFORMED_GENEVE_TRUNCATED,  /* Geneve header or options past the packet */
	MALFORMED_GENEVE_BAD_HEADER, /* version not 0, or an unknown protocol type */
	MALFORMED_GTPU_TRUNCATED,    /* GTP-U header or extension headers past the packet */
	MALFORMED_GTPU_BAD_HEADER, /* an extension header of length 0, or more than MAX_GTPU_EXT */
	MALFORMED_TZSP_TRUNCATED,  /* TZSP header or tags past the packet */
	MALFORMED_TZSP_BAD_HEADER, /* version not 1, not a received frame (type 0), not Ethernet, or
				      tags without END */
	MALFORMED_TUNNEL_TOO_DEEP, /* tunnels nested beyond MAX_TUNNEL_DEPTH, or headers past 2 KiB
				    */
	MALFORMED_IPV6_V4MAPPED,   /* an IPv4-mapped address in an IPv6 header */
	MALFORMED_MAX,
};

/* Per-CPU datapath counters. Every frame lands in exactly one of
 * non_ip, malformed[*], flow_packets, update_failed_packets, so
 *   packets == non_ip + sum(malformed) + flow_packets + update_failed_packets
 * and flow_packets minus what userspace drained is what it lost. */
struct datapath_stats {
	__u64 packets; /* every frame seen */
	__u64 bytes;   /* frame octets of every frame */
	__u64 non_ip;  /* not IPv4/IPv6 (ARP, LLDP, 3+ VLAN tags, PPP LCP, ...) */
	__u64 malformed[MALFORMED_MAX];
	__u64 flow_packets;	     /* packets added to a flow table entry */
	__u64 flow_bytes;	     /* their L3 octets */
	__u64 new_flows;	     /* entries created */
	__u64 update_failed_packets; /* table full or update error: not in any flow */
	__u64 update_failed_bytes;   /* their L3 octets */
	__u64 fragments;	     /* non-first IP fragments (accounted, ports 0) */
	__u64 samples;		     /* header samples written to the ring */
	__u64 samples_lost;	     /* samples not written: ring full */
	__u64 sample_countdown;	     /* internal: packets until the next sample */
	__u64 bench_seq;	     /* internal: see cfg_bench_flows */
	__u64 tcp_convs_full;	     /* handshakes not measured: tcp_convs full */
};

#define SAMPLE_MAX_BYTES 256

/* One header sample in the ring buffer. */
struct sample_hdr {
	__u64 time_ns; /* CLOCK_MONOTONIC */
	__u32 in_if;
	__u32 orig_len; /* frame length on the wire */
	__u32 cap_len;	/* bytes that follow in data */
	__u32 _pad;
	__u8 data[SAMPLE_MAX_BYTES];
};

#endif

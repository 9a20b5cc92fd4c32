/* SPDX-License-Identifier: (MIT OR GPL-2.0) */
/*
 * xtrail.h: every record and map value that crosses the kernel/user
 * boundary, documented once. The Go side gets these layouts from bpf2go
 * (pkg/dataplane/xtrail_bpfel.go); never change one side alone.
 *
 * Byte order: addresses and ports in map keys are in network order (as on
 * the wire), so the XDP program never swaps bytes on the per-packet path.
 * Ports in ring-buffer records are in host order (the agent renders them).
 */
#ifndef XTRAIL_H
#define XTRAIL_H

#include <linux/types.h>

/* Largest payload snapshot a candidate record carries. */
#define XT_SNAP_MAX 1536

/* Room for a trail's info and reference text in xt_meta (NUL-terminated). */
#define XT_INFO_MAX 192
#define XT_REF_MAX 128

/* xt_rec.kind */
enum xt_kind {
	XT_REC_IP = 1,   /* an IP or IP:port trail hit */
	XT_REC_DNS = 2,  /* candidate: TCP/UDP port 53 payload */
	XT_REC_HTTP = 3, /* candidate: TCP payload that starts an HTTP request or response */
	XT_REC_TLS = 4,  /* candidate: TCP payload that starts a TLS ClientHello */
	XT_REC_QUIC = 5, /* candidate: UDP QUIC v1/v2 long-header Initial */
	XT_REC_SCAN = 6, /* a scan crossed its threshold (see enum xt_scan) */
};

/* xt_rec.side: which address of the packet matched (IP records). */
enum xt_side {
	XT_SIDE_NONE = 0,
	XT_SIDE_DST = 1,
	XT_SIDE_SRC = 2,
};

/* xt_rec.trail_type: the matched key's kind (IP records). */
enum xt_trail_type {
	XT_TRAIL_IP = 1,    /* bare address */
	XT_TRAIL_IPORT = 2, /* address and port */
	XT_TRAIL_CIDR = 3,  /* address inside a CIDR trail (prefix length in xt_trail.flags) */
};

/*
 * One ring-buffer record: this fixed header, followed (candidates only) by
 * cap_len bytes of the L4 payload. IP records have cap_len 0.
 * side, trail_type and meta: for IP records the hit; for DNS and HTTP
 * candidates the trail lookups the agent needs (side XT_SIDE_NONE: none).
 * Addresses: IPv4 in the first 4 bytes (network order), rest zero.
 */
struct xt_rec {
	__u64 ts_ns;     /* wall clock (ns since the epoch) from xt_now() */
	__u8 kind;       /* enum xt_kind */
	__u8 family;     /* 4 or 6 */
	__u8 l4proto;    /* IPPROTO_* */
	__u8 side;       /* enum xt_side */
	__u8 trail_type; /* enum xt_trail_type */
	__u8 tcp_flags;  /* TCP flags byte, 0 otherwise */
	__u16 sport;     /* host order; 0 when the protocol has no ports */
	__u16 dport;     /* host order */
	__u16 cap_len;   /* payload bytes following this header */
	__u16 orig_len;  /* payload bytes in the packet (from a 16-bit IP length) */
	__u8 gen;        /* the trail generation (xt_gen) the packet was matched against */
	__u8 scan;       /* scan records: enum xt_scan; 0 otherwise */
	__u32 meta;      /* IP records: the trail's xt_trail.meta; scan records: distinct items counted */
	__u32 ifindex;   /* ingress interface */
	__u8 src[16];
	__u8 dst[16];
};

/*
 * Scans (spec §4) are counted here, per packet, so no record crosses the
 * ring until a scan crosses its threshold: then one XT_REC_SCAN record per
 * key per window, with
 *   ts_ns, tcp_flags  of the packet that crossed the threshold;
 *   src               the scanning source;
 *   dst               port and UDP scans: the scanned host; infection: the
 *                     first destination of the window;
 *   sport, dport      of the key's first packet in the window (infection:
 *                     dport is the infection port);
 *   l4proto           TCP or UDP; meta: the distinct items counted.
 */
enum xt_scan {
	XT_SCAN_PORT = 1,      /* TCP: > XT_SCAN_PORTS distinct dports from src to dst */
	XT_SCAN_UDP = 2,       /* UDP, not DNS: > XT_SCAN_PORTS distinct dports from src to dst */
	XT_SCAN_INFECTION = 3, /* TCP: > XT_SCAN_HOSTS distinct dsts from src on one infection port */
};

/* Maltrail's thresholds and caps (core/settings.py). */
#define XT_SCAN_PORTS 10       /* PORT_SCANNING_THRESHOLD */
#define XT_SCAN_HOSTS 32       /* INFECTION_SCANNING_THRESHOLD */
#define XT_SCAN_MAX_KEYS 50000 /* keys per window: TCP (port + infection) and UDP each */

/*
 * Entries of each scan map: room for XT_SCAN_MAX_KEYS keys of the current
 * window and the leftovers of the last one, which the LRU reclaims first.
 * User space sizes a map to 1 entry when no scan it serves is counted
 * (pkg/dataplane), so scans off cost no kernel memory.
 */
#define XT_SCAN_ENTRIES 65536

/*
 * Key of xt_scan_tcp and xt_scan_udp. A window is named by its first
 * second, and keys carry it: a key of an older window is never looked up
 * again, so the window's state is gone the moment the next one starts,
 * with no sweep, and the LRU maps reclaim the stale keys first.
 *
 * Only distinctness matters here (the alert takes its addresses from the
 * packet), so the addresses are folded into one 64-bit id:
 *   pair keys (port and UDP scans, port 0): the (src, dst) pair; IPv4
 *       exact: src << 32 | dst, the words as read from the wire; IPv6 a
 *       64-bit hash of both, keyed by xt_config.seed (two of a window's
 *       50,000 pairs share one with odds of about 1 in 10^10);
 *   infection keys (xt_scan_tcp, port = the infection port): the source;
 *       IPv4 exact, IPv6 hashed likewise.
 */
struct xt_scan_key {
	__u64 id;
	__u32 win;   /* the window: its first second */
	__u16 port;  /* infection keys: the destination port (network order); pair keys: zero */
	__u8 family; /* 4 or 6 */
	__u8 pad;
};

/*
 * Distinct ports of a pair are kept in slots filled in order with
 * compare-and-swap, so CPUs counting the same key never take a lock and
 * every port is counted once. A pair needs only threshold + 1 ports: it
 * alerts when the last one is counted, and once per window, so what comes
 * after cannot change anything (Maltrail keeps up to 1024 items per key for
 * the same decision). Ports are 16 bits, two to a 32-bit slot (low half
 * first, 0 = free); port 0 is a flag of n instead.
 */
#define XT_SCAN_PORT_SLOTS (XT_SCAN_PORTS + 1)
#define XT_SCAN_HOST_SLOTS (XT_SCAN_HOSTS + 1)

/* xt_scan_ports.n: the count and flags */
#define XT_SCAN_N_MASK 0xffU      /* distinct ports counted */
#define XT_SCAN_N_INF_SHIFT 8     /* bits 8..16: infection ports (by their index) SYNed */
#define XT_SCAN_N_PORT0 (1U << 17) /* port 0 counted */

/* Value of the pair keys of xt_scan_tcp and xt_scan_udp. */
struct xt_scan_ports {
	__u32 n;       /* count and flags (XT_SCAN_N_*) */
	__u16 sport;   /* the first packet's ports, host order */
	__u16 dport;
	__u32 slot[(XT_SCAN_PORT_SLOTS + 1) / 2]; /* ports, network order, two per slot */
};

/*
 * Value of the infection keys of xt_scan_tcp: one (src, infection port).
 * Its distinct destinations are the pairs (src, dst) whose infection-port
 * flag this probe set first (XT_SCAN_N_INF_SHIFT), so the key keeps a count,
 * not the destinations.
 */
struct xt_scan_hosts {
	__u32 n;       /* distinct destinations counted */
	__u32 alerted; /* 1 once the alert went out (it waits for the local prefix) */
	__u16 sport;   /* the first packet's source port, host order */
	__u16 pad;
	__u8 dst[16];  /* the first destination */
	__u32 pad2;    /* to the size of xt_scan_ports: both are values of xt_scan_tcp */
};

/*
 * Maltrail's "local prefix" (infection scans only alert for a source under
 * it): the most common "a.b." among the sources of the window's keys; an
 * IPv6 source is its own prefix, so its count is 1. xt_scan_srcs (LRU hash,
 * key: the source's 16 bytes, IPv4 as ::ffff:a.b.c.d; value __u32: the last
 * window it was counted in) holds the sources, and xt_scan_pfx (array of
 * 65,536 __u64, index a << 8 | b, value (window << 32) | sources) counts the
 * IPv4 ones per prefix. A source is local when its prefix's count is the
 * window's highest (xt_scan_state.leader). User space reads both for the
 * prefix's text (pkg/dataplane LocalPrefix).
 */

/*
 * The one xt_scan_win entry. Each counter word holds (window << 32) |
 * count, so a new window resets it with the same compare-and-swap that
 * counts in it.
 */
struct xt_scan_state {
	__u64 start;    /* the current window's first second (0: none yet) */
	__u64 keys_tcp; /* TCP keys (port and infection) made in the window */
	__u64 keys_udp; /* UDP keys made in the window */
	__u64 leader;   /* the highest source count of any prefix in the window */
};

/* Value of the trail hash maps. */
struct xt_trail {
	__u32 meta;  /* key of xt_meta holding info and reference */
	__u32 flags; /* XT_F_*: Maltrail's info-based suppression rules */
};

/* xt_trail.flags, derived from the trail's info text at load time. */
#define XT_F_ATTACKER (1U << 0) /* info contains "attacker": silent on the dst side */
#define XT_F_PARKING (1U << 1)  /* "parking site": dst side only on ports 80 and 443 */
#define XT_F_MALWARE (1U << 2)  /* "malware": silent on the src side */
/* CIDR trails: bits 8..15 hold the prefix length, for the trail text */
#define XT_F_PREFIX_SHIFT 8

/*
 * The address filter of a trail generation (the one entry of an xt_ipfilter
 * inner map): the exact trail maps are large hash maps, and a lookup that
 * misses costs a cache miss or two per map. Every address that has an IP or
 * IP:port trail sets two bits of one word here, so the program looks an
 * address up in the hash maps only when both its bits are set (a few in a
 * hundred addresses without a trail, for the 190,000 addresses of the full
 * static trails). For address a:
 *   x = IPv4: the 4 bytes as one little-endian __u32 (as read from the wire);
 *       IPv6: hround(hround(0, w0), w1), w0 and w1 its two little-endian
 *       __u64 halves;
 *   h = hfinal(x)   (hround and hfinal: bpf/xtrail.c, pkg/dataplane filter.go);
 *   word h % XT_FILTER_WORDS, bits (h >> 16) % 64 and (h >> 22) % 64.
 * flags say whether the generation has CIDR trails of each family: the LPM
 * tries are looked up only then.
 */
#define XT_FILTER_WORDS 65536 /* 4 Mbit, 512 KiB */
#define XT_FILTER_CIDR4 (1U << 0)
#define XT_FILTER_CIDR6 (1U << 1)

struct xt_ip_filter {
	__u32 flags; /* XT_FILTER_CIDR* */
	__u32 pad;
	__u64 bits[XT_FILTER_WORDS];
};

/* Keys of the CIDR LPM tries (an xtrail extension: Maltrail has no CIDR trails). */
struct xt_lpm4_key {
	__u32 prefixlen;
	__u32 addr;
};

struct xt_lpm6_key {
	__u32 prefixlen;
	__u8 addr[16];
};

/* Keys of the IP:port maps; port in network order, pad zero. */
struct xt_port4_key {
	__u32 addr;
	__u16 port;
	__u16 pad;
};

struct xt_port6_key {
	__u8 addr[16];
	__u16 port;
	__u16 pad;
};

/*
 * Info and reference of a trail, looked up by the agent when it renders an
 * event (never by the XDP program). Kept in a pinned map so a sensor that
 * restarts finds the trails that `xtrail trails load` pushed.
 */
struct xt_meta {
	char info[XT_INFO_MAX];
	char ref[XT_REF_MAX];
};

/*
 * Identity of the trails in the live generation: the SHA-256 of the compiled
 * store they came from (zero when unknown), so a sensor restarting on the
 * same store keeps the loaded generation instead of rebuilding it.
 */
struct xt_genid {
	__u8 sum[32];
	__u32 gen;
	__u32 pad;
};

/* xt_config.flags */
#define XT_CFG_REPLAY (1U << 0)         /* clock_ns is the time of the packet being replayed;
                                         * records wake no reader (it reads after each batch) */
#define XT_CFG_SCAN_PORT (1U << 1)      /* count port scans and alert */
#define XT_CFG_SCAN_UDP (1U << 2)       /* count UDP scans and alert */
#define XT_CFG_SCAN_INFECTION (1U << 3) /* count infection scans and alert */

/* The single entry of the xt_config array, written by the agent. */
struct xt_config {
	__u64 clock_ns;       /* replay: capture time of the current packet */
	__s64 tai_to_wall_ns; /* live: CLOCK_REALTIME - CLOCK_TAI */
	__u32 action;         /* XDP_PASS (host/inline) or XDP_DROP (monitor port) */
	__u32 flags;          /* XT_CFG_* */
	__u16 snap[8];        /* snapshot length per enum xt_kind (0 = XT_SNAP_MAX) */
	__u32 scan_window;    /* SCAN_WINDOW in seconds (0 = 30) */
	__u32 pad;
	__u64 seed;           /* random, per program: key of its hashes (see xtrail.c) */
};

/*
 * Per-CPU counters, one per branch of the program. Keep the Go name table
 * in pkg/dataplane/counters.go in the same order.
 */
enum xt_counter {
	XT_C_PACKETS = 0,   /* every packet seen */
	XT_C_TRUNCATED,     /* a header ran past the end of the packet */
	XT_C_VLAN,          /* one 802.1Q/802.1ad tag followed */
	XT_C_QINQ,          /* a second tag followed */
	XT_C_PPPOE,         /* PPPoE session frame */
	XT_C_NON_IP,        /* neither IPv4 nor IPv6 (incl. PPPoE control, ARP) */
	XT_C_IPV4,
	XT_C_IPV6,
	XT_C_IP_BAD,        /* bad version or IHL */
	XT_C_FRAGMENT,      /* non-first IPv4 fragment, skipped */
	XT_C_TCP,
	XT_C_TCP_SYN,       /* flags exactly 0x02 */
	XT_C_SYN_DUP,       /* same (sec, 5-tuple) as the previous SYN: dropped */
	XT_C_UDP,
	XT_C_UDP_DUP,       /* same (sec, 5-tuple) and payload digest as the previous UDP datagram: dropped */
	XT_C_UDP_NEW_PAYLOAD,/* same (sec, 5-tuple) as the previous UDP datagram, another payload: kept */
	XT_C_ICMP_ECHO,     /* ICMP type 8 / ICMPv6 type 128 */
	XT_C_ICMP_OTHER,    /* other ICMP types: not matched */
	XT_C_OTHER_PROTO,   /* other IP protocols: matched on addresses */
	XT_C_HIT_DST,       /* trail hit on the destination side, recorded */
	XT_C_HIT_SRC,       /* trail hit on the source side, recorded */
	XT_C_HIT_SUPPRESSED,/* hit silenced by an info rule (attacker, parking, malware) */
	XT_C_HIT_REPEAT,    /* hit on the tuple logged just before: dropped */
	XT_C_CAND_DNS,
	XT_C_CAND_HTTP,
	XT_C_CAND_TLS,
	XT_C_CAND_QUIC,
	XT_C_CAND_CUT,      /* candidate payload longer than its snapshot */
	XT_C_RINGBUF_FULL,  /* ring-buffer reservation failed: record lost */
	XT_C_ACTION_DROP,   /* packets ended with XDP_DROP */
	XT_C_SCAN_STEALTH,  /* TCP flags 0x00, 0x01 or 0x29 (NULL, FIN, Xmas): counted as port probes */
	XT_C_SCAN_LOCAL_DST,/* probe to localhost: not counted (Maltrail skips it) */
	XT_C_SCAN_WINDOW,   /* scan windows started */
	XT_C_SCAN_KEY,      /* scan keys made (a new pair in the window) */
	XT_C_SCAN_KEY_CAP,  /* new key refused: the window holds XT_SCAN_MAX_KEYS of its kind */
	XT_C_SCAN_KEY_FULL, /* probe on a key past its threshold: nothing left to count */
	XT_C_SCAN_SOURCE,   /* sources seen in a window (the local-prefix counts) */
	XT_C_SCAN_NONLOCAL, /* infection over threshold, source outside the local prefix: no alert yet */
	XT_C_SCAN_PORT,     /* port scan alerts sent */
	XT_C_SCAN_UDP,      /* UDP scan alerts sent */
	XT_C_SCAN_INFECTION,/* infection alerts sent */
	XT_C_MAX,
};

/*
 * Replay (pkg/dataplane Replayer). User space queues captured frames in
 * xt_replay_q, then one BPF_PROG_TEST_RUN of xtrail_xdp, repeated once per
 * frame queued, runs them all: in a program loaded for replay, each run
 * takes the next queued frame as its packet and its capture time as the
 * clock (replay_frame in xtrail.c). One system call per batch instead of
 * one per frame; the capture time never travels in a packet, so nothing on
 * the wire can set a clock.
 */
#define XT_REPLAY_FRAME_MAX 3072 /* longer frames are cut (the program reads less) */

/* One queued frame: an entry of xt_replay_q. */
struct xt_replay_frame {
	__u64 ts_ns; /* capture time, ns since the epoch */
	__u32 len;   /* bytes of data: 14..XT_REPLAY_FRAME_MAX */
	__u32 pad;
	__u8 data[XT_REPLAY_FRAME_MAX];
};

/* The single entry of xt_replay_cur. */
struct xt_replay_ctl {
	__u32 next;  /* the next frame to run; user space sets 0 per batch */
	__u32 count; /* frames queued in this batch */
	__u32 bad;   /* frames the program could not take (a bug: user space checks lengths) */
	__u32 pad;
};

#endif /* XTRAIL_H */

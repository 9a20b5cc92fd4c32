// SPDX-License-Identifier: (MIT OR GPL-2.0)
/*
 * xtrail.c: the XDP program. Per packet, bounded work:
 *   Ethernet -> up to two VLAN tags -> PPPoE session -> IPv4/IPv6 -> TCP/UDP/ICMP.
 *   - TCP SYN (flags exactly 0x02), UDP other than DNS, ICMP echo requests and
 *     other IP protocols: exact IP and IP:port trail lookups, dst side first
 *     (Maltrail's order and info rules); a hit becomes an XT_REC_IP record.
 *   - DNS, HTTP, TLS ClientHello and QUIC Initial payloads: a bounded
 *     snapshot goes to the agent as a candidate record.
 *   - Every packet then ends with the configured action (pass or drop).
 * Record layouts: xtrail.h.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>

#include "bpf_defs.h"
#include "place.h"
#include "xtrail.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#define ETH_P_8021AD_ 0x88A8
#define ETH_P_PPPOE_SES_ 0x8864
#define PPP_IPV4 0x0021
#define PPP_IPV6 0x0057

/*
 * Trail maps come in generations. Each outer map (array of maps, pinned, so
 * trails survive a sensor restart) has two slots; xt_gen names the live one.
 * A reload fills the other slot's inner maps, then flips xt_gen with one
 * write: the program reads xt_gen once per packet, so no packet ever sees a
 * mix of generations. CIDR tries are looked up only after the exact maps
 * miss: an LPM lookup costs more as the trie grows, a hash lookup does not.
 */
#define __array(name, val) typeof(val) *name[]

struct xt_ip6_key {
	__u8 addr[16];
};

/* Inner maps are declared by key and value size: their key and value types
 * would be only forward declarations in BTF, two pointers away from a
 * global. pkg/dataplane checks the sizes against its Go types. */
#define XT_INNER(name, maptype, entries, keytype)            \
	struct name {                                        \
		__uint(type, maptype);                       \
		__uint(map_flags, BPF_F_NO_PREALLOC);        \
		__uint(max_entries, entries);                \
		__uint(key_size, sizeof(keytype));           \
		__uint(value_size, sizeof(struct xt_trail)); \
	}

XT_INNER(xt_ip4_gen, BPF_MAP_TYPE_HASH, 262144, __u32);
XT_INNER(xt_ip6_gen, BPF_MAP_TYPE_HASH, 65536, struct xt_ip6_key);
XT_INNER(xt_port4_gen, BPF_MAP_TYPE_HASH, 524288, struct xt_port4_key);
XT_INNER(xt_port6_gen, BPF_MAP_TYPE_HASH, 65536, struct xt_port6_key);
XT_INNER(xt_cidr4_gen, BPF_MAP_TYPE_LPM_TRIE, 262144, struct xt_lpm4_key);
XT_INNER(xt_cidr6_gen, BPF_MAP_TYPE_LPM_TRIE, 65536, struct xt_lpm6_key);

#define XT_OUTER(name, inner)                           \
	struct {                                        \
		__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS); \
		__uint(max_entries, 2);                 \
		__type(key, __u32);                     \
		__uint(pinning, XT_PIN_BY_NAME);        \
		__array(values, struct inner);          \
	} name SEC(".maps")

XT_OUTER(xt_ip4, xt_ip4_gen);
XT_OUTER(xt_ip6, xt_ip6_gen);
XT_OUTER(xt_port4, xt_port4_gen);
XT_OUTER(xt_port6, xt_port6_gen);
XT_OUTER(xt_cidr4, xt_cidr4_gen);
XT_OUTER(xt_cidr6, xt_cidr6_gen);

/* Each generation's address filter (struct xt_ip_filter, xtrail.h). A
 * generation loaded by an xtrail without filters has none: every address
 * is then looked up. */
struct xt_ipfilter_gen {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(struct xt_ip_filter));
};
XT_OUTER(xt_ipfilter, xt_ipfilter_gen);

/* What the live generation holds (see struct xt_genid); not read here. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xt_genid);
	__uint(pinning, XT_PIN_BY_NAME);
} xt_live SEC(".maps");

/* The live generation (0 or 1) of every trail map. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, XT_PIN_BY_NAME);
} xt_gen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct xt_meta);
	__uint(pinning, XT_PIN_BY_NAME);
} xt_info SEC(".maps");

/* mmapable: the replayer sets the clock per packet with a plain store */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xt_config);
} xt_cfg SEC(".maps");

struct xt_counters {
	__u64 c[XT_C_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xt_counters);
} xt_counts SEC(".maps");

/* A (second, 5-tuple, payload digest) slot for Maltrail's burst
 * suppression; the digest is zero but in the UDP repeat slot. */
struct xt_tuple {
	__u64 w[7];
};

enum {
	DUP_SYN = 0,     /* previous SYN */
	DUP_SYN_LOG = 1, /* previous SYN that was logged */
	DUP_UDP = 2,
	DUP_UDP_LOG = 3,
	DUP_MAX = 4,
};

/*
 * Per CPU: with RSS a flow stays on one CPU, so "the previous packet" is the
 * previous packet of this queue; the slots are written on every SYN and
 * datagram, and per-CPU slots keep that write off a shared cache line.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DUP_MAX);
	__type(key, __u32);
	__type(value, struct xt_tuple);
} xt_dup SEC(".maps");

/*
 * Scan counting (spec §4, layouts in xtrail.h). LRU maps: keys of past
 * windows are never touched again and go first. Sized above
 * XT_SCAN_MAX_KEYS so the live window's keys are not the ones evicted;
 * user space sizes a map to 1 entry when nothing it serves is counted.
 * Program-private, like the repeat slots.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, XT_SCAN_ENTRIES);
	__type(key, struct xt_scan_key);
	__type(value, struct xt_scan_ports);
} xt_scan_tcp SEC(".maps"); /* port scan pairs and infection keys (value struct xt_scan_hosts) */

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, XT_SCAN_ENTRIES);
	__type(key, struct xt_scan_key);
	__type(value, struct xt_scan_ports);
} xt_scan_udp SEC(".maps"); /* UDP scan pairs */

_Static_assert(sizeof(struct xt_scan_hosts) == sizeof(struct xt_scan_ports), "xt_scan_tcp holds both");

struct xt_scan_src {
	__u8 addr[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, XT_SCAN_ENTRIES);
	__type(key, struct xt_scan_src);
	__type(value, __u32);
} xt_scan_srcs SEC(".maps"); /* the sources: the last window each was counted in */

/* mmapable: LocalPrefix reads the counts without a system call per entry */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u64);
} xt_scan_pfx SEC(".maps"); /* IPv4 sources per a.b. prefix */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xt_scan_state);
} xt_scan_win SEC(".maps");

/* Scratch space to build a variable-length candidate record. */
struct xt_scratch {
	struct xt_rec rec;
	__u8 payload[XT_SNAP_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xt_scratch);
} xt_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} xt_events SEC(".maps");

/*
 * Replay's frame queue and its cursor (xtrail.h). User space sizes the
 * queue at load: a live sensor's has one entry and never runs.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, struct xt_replay_frame);
} xt_replay_q SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xt_replay_ctl);
} xt_replay_cur SEC(".maps");

/* Parsed packet, filled as the parse goes. */
struct pkt {
	struct xdp_md *ctx;
	struct xt_counters *cnt;
	const struct xt_config *cfg;
	__u64 now;       /* xt_now(), read once and only when a rule needs it */
	__u32 gen;       /* the trail generation this packet is matched against (pkt_gen) */
	__u8 gen_read;   /* gen was read */
	__u8 family;
	__u8 l4proto;
	__u8 tcp_flags;
	__u16 sport;     /* network order */
	__u16 dport;     /* network order */
	__u32 l4_off;    /* offset of the L4 header, then of its payload (< XT_L4_OFF_MAX) */
	__u32 l4_len;    /* L4 payload length */
	const struct xt_ip_filter *flt; /* the generation's address filter, once read */
	__u8 flt_read;   /* flt was read (it may be NULL: no filter) */
	__u8 src[16] __attribute__((aligned(8))); /* read as two u64 words */
	__u8 dst[16] __attribute__((aligned(8)));
};

/*
 * Largest L4 offset: Ethernet, two tags, PPPoE, IPv4 with options, TCP with
 * options (14 + 8 + 8 + 60 + 60). Reading the offset back from the stack
 * loses the verifier's bounds, so every use re-checks against this.
 */
#define XT_L4_OFF_MAX 512

static __always_inline void *l4_ptr(struct pkt *p, void *data)
{
	__u32 off = p->l4_off;

	if (off >= XT_L4_OFF_MAX)
		return 0;
	return data + off;
}

static __always_inline void scount(struct xt_counters *c, __u32 idx)
{
	if (idx < XT_C_MAX)
		c->c[idx]++;
}

static __always_inline void count(struct pkt *p, __u32 idx)
{
	scount(p->cnt, idx);
}

/* The one clock of every time-dependent rule (DESIGN §4). */
static __always_inline __u64 xt_now(struct pkt *p)
{
	if (p->now)
		return p->now;
	if (p->cfg->flags & XT_CFG_REPLAY)
		p->now = p->cfg->clock_ns;
	else
		p->now = bpf_ktime_get_tai_ns() + p->cfg->tai_to_wall_ns;
	return p->now;
}

static __always_inline void tuple_of(struct pkt *p, struct xt_tuple *t)
{
	__u64 *s = (__u64 *)p->src, *d = (__u64 *)p->dst;

	t->w[0] = xt_now(p) / 1000000000ULL;
	t->w[1] = s[0];
	t->w[2] = s[1];
	t->w[3] = d[0];
	t->w[4] = d[1];
	t->w[5] = ((__u64)p->sport << 32) | ((__u64)p->dport << 16) | p->l4proto;
	t->w[6] = 0;
}

static __always_inline int tuple_eq(const struct xt_tuple *a, const struct xt_tuple *b)
{
	return a->w[0] == b->w[0] && a->w[1] == b->w[1] && a->w[2] == b->w[2] &&
	       a->w[3] == b->w[3] && a->w[4] == b->w[4] && a->w[5] == b->w[5];
}

enum {
	REPEAT_NO = 0,     /* another (second, 5-tuple) than the slot's */
	REPEAT_SAME = 1,   /* the slot's tuple and digest: a repeat */
	REPEAT_OTHER = 2,  /* the slot's tuple with another payload digest */
};

/* Replaces slot with t and says how t compares with what it held. */
static __always_inline int repeat(__u32 slot, const struct xt_tuple *t)
{
	struct xt_tuple *s = bpf_map_lookup_elem(&xt_dup, &slot);
	int same;

	if (!s)
		return REPEAT_NO;
	same = !tuple_eq(s, t) ? REPEAT_NO : s->w[6] == t->w[6] ? REPEAT_SAME : REPEAT_OTHER;
	*s = *t;
	return same;
}

/*
 * Keyed 64-bit hashing (the UDP payload digest, IPv6 scan keys):
 * multiply-rotate rounds and a final avalanche, seeded per load
 * (xt_config.seed) so no sender can aim at a collision it cannot see.
 * Not a cryptographic hash; what each use needs of it is said there.
 */
#define XT_K1 0x9E3779B185EBCA87ULL
#define XT_K2 0xC2B2AE3D27D4EB4FULL
#define XT_K3 0x165667B19E3779F9ULL

static __always_inline __u64 hround(__u64 acc, __u64 w)
{
	acc += w * XT_K2;
	acc = (acc << 31) | (acc >> 33);
	return acc * XT_K1;
}

static __always_inline __u64 hfinal(__u64 h)
{
	h ^= h >> 33;
	h *= XT_K2;
	h ^= h >> 29;
	h *= XT_K3;
	h ^= h >> 32;
	return h;
}

/* Bytes of the payload's head and of its tail the UDP digest reads. */
#define XT_DIGEST_WIN 64

/*
 * The UDP payload digest of the repeat slot (the Rust sensor's rule: a
 * datagram repeating the previous one's (second, 5-tuple) is dropped only
 * if its payload is the same too). It hashes the payload's length, its
 * first XT_DIGEST_WIN bytes and its last XT_DIGEST_WIN bytes: every byte of
 * a payload up to 128 bytes, so nearly every DNS query is compared whole,
 * and for longer ones the parts where two datagrams of one socket differ
 * (a DNS message's ID and question, the end of its name, a QUIC packet's
 * number and first ciphertext). Two different payloads of one length that
 * differ only between the windows are taken for a repeat. 16 word loads,
 * whatever the payload's size; off and len come from the parse, which
 * keeps them inside the frame.
 *
 * A global subprogram: the verifier checks it once, not for every path
 * into do_udp (see scan() below).
 */
__attribute__((noinline)) __u64 udp_digest(struct xdp_md *ctx, __u32 off, __u32 len, __u64 seed)
{
	void *data, *end;
	__u64 a = seed + len, b = seed ^ XT_K3, w;
	__u8 *h, *t;

	if (!ctx)
		return 0;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	/* the verifier takes a packet offset only below 64 KiB; no frame an
	 * XDP program sees is near that long */
	if (off >= XT_L4_OFF_MAX || len > 0x7fff)
		return hfinal(a);
	h = data + off;
	if (len >= XT_DIGEST_WIN) {
		t = h + (len - XT_DIGEST_WIN);
		if ((void *)(h + XT_DIGEST_WIN) > end || (void *)(t + XT_DIGEST_WIN) > end)
			return hfinal(a);
#pragma unroll
		for (int i = 0; i < XT_DIGEST_WIN / 8; i++) {
			a = hround(a, *(__u64 *)(h + 8 * i));
			b = hround(b, *(__u64 *)(t + 8 * i));
		}
		return hfinal(a ^ (b << 1 | b >> 63));
	}
	/* under XT_DIGEST_WIN bytes: the whole payload, its whole words, then
	 * (len not a multiple of 8) the last 8 bytes again, or, under 8
	 * bytes, the bytes one by one */
#pragma unroll
	for (int i = 0; i < XT_DIGEST_WIN / 8 - 1; i++) {
		if (8 * i + 8 > len)
			break;
		if ((void *)(h + 8 * i + 8) > end)
			return hfinal(a);
		a = hround(a, *(__u64 *)(h + 8 * i));
	}
	if (len & 7) {
		if (len >= 8) {
			t = h + (len - 8);
			if ((void *)(t + 8) > end)
				return hfinal(a);
			w = *(__u64 *)t;
		} else {
			w = 0;
#pragma unroll
			for (int i = 0; i < 7; i++) {
				if (i < len && (void *)(h + i + 1) <= end)
					w |= (__u64)h[i] << (8 * i);
			}
		}
		b = hround(b, w);
	}
	return hfinal(a ^ (b << 1 | b >> 63));
}

/* The trail generation of the packet: xt_gen, read at the first lookup or
 * record, so every lookup of one packet uses one generation and a packet
 * that looks nothing up does not read it. */
static __always_inline __u32 pkt_gen(struct pkt *p)
{
	if (!p->gen_read) {
		__u32 zero = 0, *gen = bpf_map_lookup_elem(&xt_gen, &zero);

		p->gen = gen ? *gen & 1 : 0;
		p->gen_read = 1;
	}
	return p->gen;
}

/* One lookup in the packet's generation of a trail map. */
static __always_inline struct xt_trail *trail_lookup(struct pkt *p, void *outer, const void *key)
{
	__u32 gen = pkt_gen(p);
	void *inner = bpf_map_lookup_elem(outer, &gen);

	if (!inner)
		return 0;
	return bpf_map_lookup_elem(inner, key);
}

/* The packet's generation's address filter, read at its first lookup;
 * NULL when the generation has none. */
static __always_inline const struct xt_ip_filter *ip_filter(struct pkt *p)
{
	if (!p->flt_read) {
		__u32 zero = 0;
		__u32 gen = pkt_gen(p);
		void *inner = bpf_map_lookup_elem(&xt_ipfilter, &gen);
		const struct xt_ip_filter *f = inner ? bpf_map_lookup_elem(inner, &zero) : 0;

		p->flt_read = 1;
		p->flt = 0;
		if (f)
			p->flt = f;
	}
	return p->flt;
}

/* Might addr have an IP or IP:port trail (see struct xt_ip_filter)? */
static __always_inline int may_have_trail(struct pkt *p, const __u8 *addr)
{
	const struct xt_ip_filter *f = ip_filter(p);
	__u64 x, h, m;

	if (!f)
		return 1;
	if (p->family == 4)
		x = *(const __u32 *)addr;
	else
		x = hround(hround(0, ((const __u64 *)addr)[0]), ((const __u64 *)addr)[1]);
	h = hfinal(x);
	m = (1ULL << ((h >> 16) & 63)) | (1ULL << ((h >> 22) & 63));
	return (f->bits[h & (XT_FILTER_WORDS - 1)] & m) == m;
}

/* Has the packet's generation CIDR trails of its family? */
static __always_inline int has_cidrs(struct pkt *p)
{
	const struct xt_ip_filter *f = ip_filter(p);

	return !f || (f->flags & (p->family == 4 ? XT_FILTER_CIDR4 : XT_FILTER_CIDR6));
}

/* Looks up one side: addr:port first (if with_port), then addr, then the
 * CIDR tries; the hash maps only when the filter lets addr through. */
static __always_inline struct xt_trail *lookup_side(struct pkt *p, const __u8 *addr, __u16 port,
						   int with_port, __u8 *type)
{
	struct xt_trail *t;
	int exact = may_have_trail(p, addr);

	if (p->family == 4) {
		__u32 a = *(const __u32 *)addr;

		if (exact && with_port) {
			struct xt_port4_key k = {.addr = a, .port = port};

			t = trail_lookup(p, &xt_port4, &k);
			if (t) {
				*type = XT_TRAIL_IPORT;
				return t;
			}
		}
		*type = XT_TRAIL_IP;
		t = exact ? trail_lookup(p, &xt_ip4, &a) : 0;
		if (t || !has_cidrs(p))
			return t;
		struct xt_lpm4_key lk = {.prefixlen = 32, .addr = a};

		*type = XT_TRAIL_CIDR;
		return trail_lookup(p, &xt_cidr4, &lk);
	}
	if (exact && with_port) {
		struct xt_port6_key k = {.port = port};

		__builtin_memcpy(k.addr, addr, 16);
		t = trail_lookup(p, &xt_port6, &k);
		if (t) {
			*type = XT_TRAIL_IPORT;
			return t;
		}
	}
	*type = XT_TRAIL_IP;
	t = exact ? trail_lookup(p, &xt_ip6, addr) : 0;
	if (t || !has_cidrs(p))
		return t;
	struct xt_lpm6_key lk = {.prefixlen = 128};

	__builtin_memcpy(lk.addr, addr, 16);
	*type = XT_TRAIL_CIDR;
	return trail_lookup(p, &xt_cidr6, &lk);
}

/* Ring-buffer flags of a record: a replay reads the ring after each batch
 * and waits for nothing, so its records wake no reader (a wakeup is an
 * interrupt to the CPU itself); a live agent sleeps until records come. */
static __always_inline __u64 ring_flags(__u32 cfg_flags)
{
	return cfg_flags & XT_CFG_REPLAY ? BPF_RB_NO_WAKEUP : 0;
}

static __always_inline void fill_rec(struct pkt *p, struct xt_rec *r, __u8 kind)
{
	r->ts_ns = xt_now(p);
	r->kind = kind;
	r->family = p->family;
	r->l4proto = p->l4proto;
	r->side = XT_SIDE_NONE;
	r->trail_type = 0;
	r->tcp_flags = p->tcp_flags;
	r->sport = xt_ntohs(p->sport);
	r->dport = xt_ntohs(p->dport);
	r->cap_len = 0;
	r->orig_len = p->l4_len;
	r->gen = pkt_gen(p);
	r->scan = 0;
	r->meta = 0;
	r->ifindex = p->ctx->ingress_ifindex;
	__builtin_memcpy(r->src, p->src, 16);
	__builtin_memcpy(r->dst, p->dst, 16);
}

static __always_inline void emit_hit(struct pkt *p, struct xt_trail *t, __u8 side, __u8 type)
{
	struct xt_rec *r = bpf_ringbuf_reserve(&xt_events, sizeof(*r), 0);

	if (!r) {
		count(p, XT_C_RINGBUF_FULL);
		return;
	}
	fill_rec(p, r, XT_REC_IP);
	r->side = side;
	r->trail_type = type;
	r->meta = t->meta;
	bpf_ringbuf_submit(r, ring_flags(p->cfg->flags));
	count(p, side == XT_SIDE_DST ? XT_C_HIT_DST : XT_C_HIT_SRC);
}

static __always_inline int is_localhost(struct pkt *p, const __u8 *a)
{
	const __u32 *w = (const __u32 *)a;

	if (p->family == 4)
		return w[0] == xt_htonl(0x7f000001);
	return w[0] == 0 && w[1] == 0 && w[2] == 0 && w[3] == xt_htonl(1);
}

/*
 * Maltrail's IP matching (spec §1.3): dst side (addr:port, then addr) and,
 * only if the dst side has no trail at all, the src side when dst is not
 * localhost. A hit may be silenced by its info flags. with_port: SYN only.
 * log_slot: the "previously logged" slot (-1: none, for ICMP/other).
 */
static __always_inline void match_ips(struct pkt *p, int with_port, int log_slot,
				      __u32 dst_quiet, __u32 src_quiet)
{
	struct xt_trail *t;
	__u8 side = XT_SIDE_DST, type = 0;
	__u32 quiet;

	t = lookup_side(p, p->dst, p->dport, with_port, &type);
	if (t) {
		quiet = t->flags & dst_quiet;
		/* "parking site" speaks on the dst side only for ports 80 and 443 */
		if (dst_quiet && (t->flags & XT_F_PARKING) && p->dport != xt_htons(80) &&
		    p->dport != xt_htons(443))
			quiet = 1;
	} else {
		if (is_localhost(p, p->dst))
			return;
		t = lookup_side(p, p->src, p->sport, with_port, &type);
		if (!t)
			return;
		side = XT_SIDE_SRC;
		quiet = t->flags & src_quiet;
	}

	if (log_slot >= 0) {
		struct xt_tuple tup;

		tuple_of(p, &tup);
		if (repeat(log_slot, &tup)) {
			count(p, XT_C_HIT_REPEAT);
			return;
		}
	}
	if (quiet) {
		count(p, XT_C_HIT_SUPPRESSED);
		return;
	}
	emit_hit(p, t, side, type);
}

/*
 * Trail lookups the agent needs with a candidate, done here where the maps
 * are: a DNS query reports dst:dport, dst, then src (spec §1.3); an HTTP
 * request reports a trail on dst with its Host (spec §1.4).
 */
static __always_inline void annotate(struct pkt *p, struct xt_rec *r, __u8 kind)
{
	struct xt_trail *t;
	__u8 type = 0;

	if (kind != XT_REC_DNS && kind != XT_REC_HTTP)
		return;
	t = lookup_side(p, p->dst, p->dport, kind == XT_REC_DNS, &type);
	if (t) {
		r->side = XT_SIDE_DST;
	} else if (kind == XT_REC_DNS) {
		t = lookup_side(p, p->src, p->sport, 0, &type);
		r->side = XT_SIDE_SRC;
	}
	if (!t) {
		r->side = XT_SIDE_NONE;
		return;
	}
	r->trail_type = type;
	r->meta = t->meta;
}

/* Copies the L4 payload snapshot into a candidate record. */
static __always_inline void emit_candidate(struct pkt *p, __u8 kind, __u32 counter)
{
	__u32 zero = 0, snap, len;
	struct xt_scratch *s;

	count(p, counter);
	s = bpf_map_lookup_elem(&xt_scratch, &zero);
	if (!s)
		return;
	fill_rec(p, &s->rec, kind);
	annotate(p, &s->rec, kind);

	snap = XT_SNAP_MAX;
	if (kind < 8 && p->cfg->snap[kind & 7] && p->cfg->snap[kind & 7] < XT_SNAP_MAX)
		snap = p->cfg->snap[kind & 7];
	len = p->l4_len;
	if (len > snap) {
		len = snap;
		count(p, XT_C_CAND_CUT);
	}
	/* clang proves len <= XT_SNAP_MAX and drops the check; the verifier
	 * cannot, so hide a 64-bit copy from the optimiser and check that */
	__u64 n = len;
	asm volatile("" : "+r"(n));
	if (n >= 1 && n <= XT_SNAP_MAX) {
		if (bpf_xdp_load_bytes(p->ctx, p->l4_off, s->payload, n) < 0)
			n = 0;
	} else {
		n = 0;
	}
	len = n;
	s->rec.cap_len = len;
	if (bpf_ringbuf_output(&xt_events, s, sizeof(s->rec) + len, ring_flags(p->cfg->flags)) < 0)
		count(p, XT_C_RINGBUF_FULL);
}

/*
 * The first 6 bytes of the L4 payload, to classify it. Two word loads: a
 * memcpy from a packet pointer of unknown alignment would compile to byte
 * loads, and the x86 JIT handles the unaligned words fine.
 */
static __always_inline __u64 payload_head(struct pkt *p, void *data, void *end)
{
	__u8 *b = l4_ptr(p, data);

	if (!b || (void *)(b + 6) > end)
		return 0;
	return *(__u32 *)b | (__u64)*(__u16 *)(b + 4) << 32;
}

#define HEAD4(a, b, c, d) ((__u32)(a) | (__u32)(b) << 8 | (__u32)(c) << 16 | (__u32)(d) << 24)

static __always_inline int is_http_start(__u64 head)
{
	__u32 w = (__u32)head;

	switch (w) {
	case HEAD4('G', 'E', 'T', ' '):
	case HEAD4('P', 'O', 'S', 'T'):
	case HEAD4('H', 'E', 'A', 'D'):
	case HEAD4('P', 'U', 'T', ' '):
	case HEAD4('D', 'E', 'L', 'E'):
	case HEAD4('O', 'P', 'T', 'I'):
	case HEAD4('C', 'O', 'N', 'N'):
	case HEAD4('P', 'A', 'T', 'C'):
	case HEAD4('T', 'R', 'A', 'C'):
	case HEAD4('H', 'T', 'T', 'P'):
		return 1;
	}
	return 0;
}

/* TLS record type 22 (handshake), version 3.x, handshake type 1 (ClientHello). */
static __always_inline int is_client_hello(__u64 head)
{
	__u8 *b = (__u8 *)&head;

	return b[0] == 0x16 && b[1] == 0x03 && b[5] == 0x01;
}

/* QUIC long header, fixed bit, Initial packet type of v1 (0b00) or v2 (0b01). */
static __always_inline int is_quic_initial(__u64 head)
{
	__u8 *b = (__u8 *)&head;
	__u32 ver = (__u32)b[1] << 24 | (__u32)b[2] << 16 | (__u32)b[3] << 8 | b[4];

	if ((b[0] & 0xC0) != 0xC0)
		return 0;
	if (ver == 0x00000001)
		return (b[0] & 0x30) == 0x00;
	if (ver == 0x6b3343cf)
		return (b[0] & 0x30) == 0x10;
	return 0;
}

/*
 * Scans (spec §4): counted here, per probe, over SCAN_WINDOW; one
 * XT_REC_SCAN record per key per window when the count crosses the
 * threshold. Maltrail's sensor sweeps its tables once a second; here the
 * probe that crosses the threshold sends the alert, so nothing sweeps.
 *
 * The counting runs in one global subprogram, scan(), given the packet as
 * plain values (struct scan_pkt): the verifier checks a global subprogram
 * once, where a static one is checked again for every distinct state of
 * every path that reaches it (IPv4 or IPv6, tags, TCP or UDP...), which
 * tripled the program's verification time.
 */
#define XT_READ(x) (*(volatile typeof(x) *)&(x))

enum scan_probe {
	PROBE_SYN = 1,     /* TCP SYN: port and infection scans */
	PROBE_STEALTH = 2, /* NULL, FIN, Xmas: port scans only */
	PROBE_UDP = 3,     /* UDP, not DNS */
};

/* What scan() needs of the packet. */
struct scan_pkt {
	__u64 now;     /* xt_now() */
	__u64 seed;    /* xt_config.seed */
	__u8 src[16];
	__u8 dst[16];
	__u32 ifindex;
	__u32 flags;   /* xt_config.flags */
	__u32 window;  /* xt_config.scan_window */
	__u16 sport;   /* network order */
	__u16 dport;
	__u16 l4_len;
	__u8 family;
	__u8 l4proto;
	__u8 tcp_flags;
	__u8 gen;
	__u8 probe;    /* enum scan_probe */
	__u8 pad;
};

/* The window of the packet's second, starting a new one when SCAN_WINDOW
 * has passed since the current one began (Maltrail: all scan state is
 * cleared once sec - window_start >= SCAN_WINDOW). */
static __always_inline __u32 scan_window(struct scan_pkt *sp, struct xt_scan_state *s, struct xt_counters *c)
{
	__u64 sec = sp->now / 1000000000ULL, start = XT_READ(s->start);
	__u32 len = sp->window ? sp->window : 30;

	if (sec >= start + len) {
		if (__sync_val_compare_and_swap(&s->start, start, sec) == start)
			scount(c, XT_C_SCAN_WINDOW);
		start = XT_READ(s->start); /* ours, or a CPU's that was faster */
	}
	return (__u32)start;
}

/* Takes one of the window's XT_SCAN_MAX_KEYS keys from counter word w
 * ((win << 32) | keys); 0 when none is left. */
static __always_inline int take_key(struct xt_counters *c, __u64 *w, __u32 win)
{
	__u64 old = XT_READ(*w);

	if ((old >> 32) == win) {
		if ((__u32)old >= XT_SCAN_MAX_KEYS) {
			scount(c, XT_C_SCAN_KEY_CAP);
			return 0;
		}
		__sync_fetch_and_add(w, 1);
	} else {
		/* the first key of the window resets the count; losing this race
		 * to another CPU costs one uncounted key */
		__sync_val_compare_and_swap(w, old, ((__u64)win << 32) | 1);
	}
	scount(c, XT_C_SCAN_KEY);
	return 1;
}

/* Adds port (network order) to a pair: returns the pair's new count when
 * the port is new, 0 when it was there, -1 when every slot is taken. A slot
 * fills its low half first, and slots fill in order, so a port is either
 * before the first free half or nowhere. A slot changes at most twice, so
 * three tries settle it. A global subprogram: its loops are verified once,
 * not once per path into scan_ports. */
__attribute__((noinline)) int add_port(struct xt_scan_ports *v, __u16 port)
{
	if (!v)
		return -1;
	if (port == 0) {
		if (__sync_fetch_and_or(&v->n, XT_SCAN_N_PORT0) & XT_SCAN_N_PORT0)
			return 0;
		return (__sync_fetch_and_add(&v->n, 1) + 1) & XT_SCAN_N_MASK;
	}
	for (__u32 i = 0; i < (XT_SCAN_PORT_SLOTS + 1) / 2; i++) {
		for (int try = 0; try < 3; try++) {
			__u32 w = XT_READ(v->slot[i]), lo = w & 0xffff, hi = w >> 16;

			if (lo == port || hi == port)
				return 0;
			if (hi)
				break; /* full: the next slot */
			if (__sync_val_compare_and_swap(&v->slot[i], w, lo ? w | (__u32)port << 16 : port) == w)
				return (__sync_fetch_and_add(&v->n, 1) + 1) & XT_SCAN_N_MASK;
		}
	}
	return -1;
}

/* 64-bit keyed hashes of IPv6 addresses (the keys of xt_scan_tcp and
 * xt_scan_udp: see xtrail.h). */
static __always_inline __u64 hash_addr(__u64 h, const __u8 *a)
{
	__u64 w[2];

	__builtin_memcpy(w, a, 16);
	h = hround(h, w[0]);
	return hround(h, w[1]);
}

static __always_inline void pair_key(struct scan_pkt *sp, struct xt_scan_key *k, __u32 win)
{
	__builtin_memset(k, 0, sizeof(*k));
	if (sp->family == 4)
		k->id = (__u64)*(__u32 *)sp->src << 32 | *(__u32 *)sp->dst;
	else
		k->id = hfinal(hash_addr(hash_addr(sp->seed, sp->src), sp->dst));
	k->win = win;
	k->family = sp->family;
}

static __always_inline void infection_key(struct scan_pkt *sp, struct xt_scan_key *k, __u32 win)
{
	__builtin_memset(k, 0, sizeof(*k));
	if (sp->family == 4)
		k->id = *(__u32 *)sp->src;
	else
		k->id = hfinal(hash_addr(sp->seed ^ XT_K1, sp->src));
	k->win = win;
	k->port = sp->dport;
	k->family = sp->family;
}

/* The source as a key of xt_scan_srcs: IPv6 as is, IPv4 as ::ffff:a.b.c.d
 * (never a source on the wire). */
static __always_inline void source_key(struct scan_pkt *sp, struct xt_scan_src *k)
{
	if (sp->family == 6) {
		__builtin_memcpy(k->addr, sp->src, 16);
		return;
	}
	__builtin_memset(k->addr, 0, 10);
	k->addr[10] = k->addr[11] = 0xff;
	__builtin_memcpy(k->addr + 12, sp->src, 4);
}

/* The xt_scan_pfx entry of an IPv4 source's a.b. prefix. */
static __always_inline __u64 *prefix_count(struct scan_pkt *sp)
{
	__u32 i = (__u32)sp->src[0] << 8 | sp->src[1];

	return bpf_map_lookup_elem(&xt_scan_pfx, &i);
}

/* Counts one more source in a word holding (window << 32) | count, reset
 * by the window; returns the new count, 0 if other CPUs kept winning. */
static __always_inline __u32 count_in_window(__u64 *w, __u32 win)
{
#pragma unroll
	for (int i = 0; i < 4; i++) {
		__u64 old = XT_READ(*w);
		__u32 n = ((old >> 32) == win ? (__u32)old : 0) + 1;

		if (__sync_val_compare_and_swap(w, old, (__u64)win << 32 | n) == old)
			return n;
	}
	return 0;
}

/* Notes src among the window's sources, and raises the window's leading
 * prefix count when its prefix now has the most. */
static __always_inline void note_source(struct scan_pkt *sp, struct xt_scan_state *s, __u32 win,
					struct xt_counters *c)
{
	struct xt_scan_src k;
	__u32 *seen, n = 1;
	__u64 *cnt;

	source_key(sp, &k);
	seen = bpf_map_lookup_elem(&xt_scan_srcs, &k);
	if (seen) {
		__u32 old = XT_READ(*seen);

		if (old == win || __sync_val_compare_and_swap(seen, old, win) != old)
			return; /* known in this window (or another CPU just noted it) */
	} else if (bpf_map_update_elem(&xt_scan_srcs, &k, &win, BPF_NOEXIST)) {
		return; /* another CPU just noted it */
	}
	scount(c, XT_C_SCAN_SOURCE);
	if (sp->family == 4) { /* an IPv6 source is its own prefix: 1 */
		cnt = prefix_count(sp);
		if (!cnt)
			return;
		n = count_in_window(cnt, win);
	}
#pragma unroll
	for (int i = 0; i < 4; i++) {
		__u64 old = XT_READ(s->leader);
		__u64 cur = (old >> 32) == win ? (__u32)old : 0;

		if (n <= cur)
			return;
		if (__sync_val_compare_and_swap(&s->leader, old, ((__u64)win << 32) | n) == old)
			return;
	}
}

/* Is src under the window's local prefix (its prefix has the highest
 * source count; a tie counts, see docs/architecture.md)? */
static __always_inline int src_is_local(struct scan_pkt *sp, struct xt_scan_state *s, __u32 win)
{
	__u64 lead = XT_READ(s->leader), *cnt, v;
	struct xt_scan_src k;
	__u32 n, *seen;

	if (sp->family == 4) {
		cnt = prefix_count(sp);
		if (!cnt)
			return 0;
		v = XT_READ(*cnt);
		n = (v >> 32) == win ? (__u32)v : 0;
	} else {
		source_key(sp, &k);
		seen = bpf_map_lookup_elem(&xt_scan_srcs, &k);
		n = seen && *seen == win;
	}
	if (!n)
		return 0;
	return (lead >> 32) != win || n >= (__u32)lead;
}

static __always_inline void emit_scan(struct scan_pkt *sp, struct xt_counters *c, __u8 kind, __u16 sport,
				      __u16 dport, const __u8 *dst)
{
	struct xt_rec *r = bpf_ringbuf_reserve(&xt_events, sizeof(*r), 0);

	if (!r) {
		scount(c, XT_C_RINGBUF_FULL);
		return;
	}
	__builtin_memset(r, 0, sizeof(*r));
	r->ts_ns = sp->now;
	r->kind = XT_REC_SCAN;
	r->family = sp->family;
	r->l4proto = sp->l4proto;
	r->tcp_flags = sp->tcp_flags;
	r->sport = sport;
	r->dport = dport;
	r->orig_len = sp->l4_len;
	r->gen = sp->gen;
	r->scan = kind;
	r->meta = kind == XT_SCAN_INFECTION ? XT_SCAN_HOST_SLOTS : XT_SCAN_PORT_SLOTS;
	r->ifindex = sp->ifindex;
	__builtin_memcpy(r->src, sp->src, 16);
	__builtin_memcpy(r->dst, dst, 16);
	bpf_ringbuf_submit(r, ring_flags(sp->flags));
	scount(c, kind == XT_SCAN_PORT ? XT_C_SCAN_PORT : kind == XT_SCAN_UDP ? XT_C_SCAN_UDP : XT_C_SCAN_INFECTION);
}

/* Maltrail's POTENTIAL_INFECTION_PORTS: the port's index (its flag in
 * xt_scan_ports.n), -1 for another port. */
static __always_inline int infection_port(__u16 port)
{
	switch (xt_ntohs(port)) {
	case 135: return 0;
	case 139: return 1;
	case 445: return 2;
	case 1433: return 3;
	case 3389: return 4;
	case 6379: return 5;
	case 6892: return 6;
	case 6893: return 7;
	case 6901: return 8;
	}
	return -1;
}

/* Counts dport for the pair (src, dst) of a port or UDP scan; the probe
 * that brings the pair to XT_SCAN_PORTS + 1 ports sends the alert. A port
 * scan's new pair notes its source for the local prefix (Maltrail's
 * sources are those of its connection table), which infection scans and
 * the agent's direct-IP download rule read. inf is the flag of the SYN's
 * infection port, or 0: the pair records it, and the return value says
 * whether this probe set it first, i.e. dst is a new destination of
 * (src, that port). */
static __attribute__((noinline)) int scan_ports(struct scan_pkt *sp, struct xt_scan_state *s, __u32 win,
				      struct xt_counters *c, __u32 inf)
{
	int udp = sp->probe == PROBE_UDP, fresh = 0;
	void *m = udp ? (void *)&xt_scan_udp : (void *)&xt_scan_tcp;
	struct xt_scan_key k;
	struct xt_scan_ports *v;

	pair_key(sp, &k, win);
	v = bpf_map_lookup_elem(m, &k);
	if (!v) {
		struct xt_scan_ports first = {.n = 1 | inf, .sport = xt_ntohs(sp->sport), .dport = xt_ntohs(sp->dport)};

		if (!take_key(c, udp ? &s->keys_udp : &s->keys_tcp, win))
			return 0;
		if (sp->dport)
			first.slot[0] = sp->dport;
		else
			first.n |= XT_SCAN_N_PORT0;
		if (!bpf_map_update_elem(m, &k, &first, BPF_NOEXIST)) {
			/* one port: no threshold to check */
			if (!udp)
				note_source(sp, s, win, c);
			return inf != 0;
		}
		v = bpf_map_lookup_elem(m, &k); /* another CPU made it first */
		if (!v)
			return 0;
	}
	if (inf)
		fresh = !(__sync_fetch_and_or(&v->n, inf) & inf);
	if ((XT_READ(v->n) & XT_SCAN_N_MASK) >= XT_SCAN_PORT_SLOTS) {
		scount(c, XT_C_SCAN_KEY_FULL);
		return fresh;
	}
	if (add_port(v, sp->dport) != XT_SCAN_PORTS + 1)
		return fresh;
	if (udp)
		emit_scan(sp, c, XT_SCAN_UDP, v->sport, v->dport, sp->dst);
	else if (sp->flags & XT_CFG_SCAN_PORT)
		emit_scan(sp, c, XT_SCAN_PORT, v->sport, v->dport, sp->dst);
	return fresh;
}

/* Counts a SYN to an infection port for (src, dport): fresh says dst is a
 * new destination of the pair (see scan_ports). Past XT_SCAN_HOSTS
 * destinations the key alerts once, as soon as src is under the local
 * prefix. */
static __attribute__((noinline)) void scan_hosts(struct scan_pkt *sp, struct xt_scan_state *s, __u32 win,
				       struct xt_counters *c, int fresh)
{
	struct xt_scan_key k;
	struct xt_scan_hosts *v;

	infection_key(sp, &k, win);
	v = bpf_map_lookup_elem(&xt_scan_tcp, &k);
	if (!v) {
		struct xt_scan_hosts first = {.n = fresh ? 1 : 0, .sport = xt_ntohs(sp->sport)};

		if (!take_key(c, &s->keys_tcp, win))
			return;
		__builtin_memcpy(first.dst, sp->dst, 16);
		if (!bpf_map_update_elem(&xt_scan_tcp, &k, &first, BPF_NOEXIST))
			return;
		v = bpf_map_lookup_elem(&xt_scan_tcp, &k); /* another CPU made it first */
		if (!v)
			return;
	}
	if (XT_READ(v->n) >= XT_SCAN_HOST_SLOTS) {
		scount(c, XT_C_SCAN_KEY_FULL);
		if (XT_READ(v->alerted))
			return;
	} else if (!fresh || __sync_fetch_and_add(&v->n, 1) + 1 != XT_SCAN_HOST_SLOTS) {
		return; /* only the probe that counts the last host goes on */
	}
	/* over the threshold: Maltrail re-checks the local prefix every
	 * second until the window ends; here every further probe re-checks */
	if (!src_is_local(sp, s, win)) {
		scount(c, XT_C_SCAN_NONLOCAL);
		return;
	}
	if (__sync_val_compare_and_swap(&v->alerted, 0, 1) == 0)
		emit_scan(sp, c, XT_SCAN_INFECTION, v->sport, xt_ntohs(sp->dport), v->dst);
}

/* Counts one probe (a global subprogram: see above). */
__attribute__((noinline)) int scan(struct scan_pkt *sp)
{
	struct xt_counters *c;
	struct xt_scan_state *s;
	__u32 zero = 0, win, inf = 0;
	int idx = -1, fresh;

	if (!sp)
		return 0;
	c = bpf_map_lookup_elem(&xt_counts, &zero);
	s = bpf_map_lookup_elem(&xt_scan_win, &zero);
	if (!c || !s)
		return 0;
	win = scan_window(sp, s, c);
	if (sp->probe == PROBE_SYN && (sp->flags & XT_CFG_SCAN_INFECTION))
		idx = infection_port(sp->dport);
	if (idx >= 0 && idx < 9)
		inf = 1U << (XT_SCAN_N_INF_SHIFT + idx);
	fresh = scan_ports(sp, s, win, c, inf);
	if (inf)
		scan_hosts(sp, s, win, c, fresh);
	return 0;
}

/* Hands a probe to scan() if its kind of scan is counted and its
 * destination is not localhost (Maltrail skips localhost). */
static __always_inline void scan_probe(struct pkt *p, __u8 probe)
{
	__u32 f = p->cfg->flags;
	struct scan_pkt sp;

	if (probe == PROBE_UDP ? !(f & XT_CFG_SCAN_UDP)
	    : !(f & XT_CFG_SCAN_PORT) && !(probe == PROBE_SYN && (f & XT_CFG_SCAN_INFECTION)))
		return;
	if (is_localhost(p, p->dst)) {
		count(p, XT_C_SCAN_LOCAL_DST);
		return;
	}
	sp.now = xt_now(p);
	sp.seed = p->cfg->seed;
	__builtin_memcpy(sp.src, p->src, 16);
	__builtin_memcpy(sp.dst, p->dst, 16);
	sp.ifindex = p->ctx->ingress_ifindex;
	sp.flags = f;
	sp.window = p->cfg->scan_window;
	sp.sport = p->sport;
	sp.dport = p->dport;
	sp.l4_len = p->l4_len;
	sp.family = p->family;
	sp.l4proto = p->l4proto;
	sp.tcp_flags = p->tcp_flags;
	sp.gen = pkt_gen(p);
	sp.probe = probe;
	sp.pad = 0;
	scan(&sp);
}

/* A TCP packet without ACK: a SYN (flags exactly 0x02) is matched, and
 * ends here (returns 1); a NULL, FIN or Xmas probe (nmap -sN/-sF/-sX)
 * counts as a port probe. A bare ACK is ordinary traffic. */
static __always_inline int tcp_no_ack(struct pkt *p)
{
	if (p->tcp_flags == 0x02) {
		struct xt_tuple tup;

		count(p, XT_C_TCP_SYN);
		tuple_of(p, &tup);
		if (repeat(DUP_SYN, &tup)) {
			count(p, XT_C_SYN_DUP);
			return 1;
		}
		scan_probe(p, PROBE_SYN);
		match_ips(p, 1, DUP_SYN_LOG, XT_F_ATTACKER, XT_F_MALWARE);
		return 1;
	}
	if (p->tcp_flags == 0x00 || p->tcp_flags == 0x01 || p->tcp_flags == 0x29) {
		count(p, XT_C_SCAN_STEALTH);
		scan_probe(p, PROBE_STEALTH);
	}
	return 0;
}

static __always_inline void do_tcp(struct pkt *p, void *data, void *end)
{
	struct tcphdr *th = l4_ptr(p, data);
	__u32 doff;

	if (!th || (void *)(th + 1) > end) {
		count(p, XT_C_TRUNCATED);
		return;
	}
	count(p, XT_C_TCP);
	p->sport = th->source;
	p->dport = th->dest;
	p->tcp_flags = ((__u8 *)th)[13];
	doff = th->doff * 4;
	if (doff < sizeof(*th) || doff > p->l4_len) {
		count(p, XT_C_TRUNCATED);
		return;
	}
	p->l4_off += doff;
	p->l4_len -= doff;

	/* the common packet has ACK set: one test, and it is none of those
	 * below (SYN 0x02, NULL 0x00, FIN 0x01, Xmas 0x29 have no ACK) */
	if (!(p->tcp_flags & 0x10) && tcp_no_ack(p))
		return;
	if (p->l4_len < 6)
		return;

	if (p->sport == xt_htons(53) || p->dport == xt_htons(53)) {
		emit_candidate(p, XT_REC_DNS, XT_C_CAND_DNS);
		return;
	}
	/* The common data packet (TLS records 0x17, binary payloads) is told
	 * apart by its first byte before any word compares. */
	__u64 head = payload_head(p, data, end);
	__u8 first = head & 0xff;

	if (first == 0x16) {
		if (is_client_hello(head))
			emit_candidate(p, XT_REC_TLS, XT_C_CAND_TLS);
	} else if (first >= 'C' && first <= 'T' && is_http_start(head)) {
		emit_candidate(p, XT_REC_HTTP, XT_C_CAND_HTTP);
	}
}

static __always_inline void do_udp(struct pkt *p, void *data, void *end)
{
	struct udphdr *uh = l4_ptr(p, data);
	struct xt_tuple tup;

	if (!uh || (void *)(uh + 1) > end) {
		count(p, XT_C_TRUNCATED);
		return;
	}
	count(p, XT_C_UDP);
	p->sport = uh->source;
	p->dport = uh->dest;
	p->l4_off += sizeof(*uh);
	p->l4_len = p->l4_len >= sizeof(*uh) ? p->l4_len - sizeof(*uh) : 0;

	/* Maltrail drops a datagram repeating the previous one before any
	 * parsing; the Rust sensor only if its payload is the same too */
	tuple_of(p, &tup);
	tup.w[6] = udp_digest(p->ctx, p->l4_off, p->l4_len, p->cfg->seed);
	switch (repeat(DUP_UDP, &tup)) {
	case REPEAT_SAME:
		count(p, XT_C_UDP_DUP);
		return;
	case REPEAT_OTHER:
		count(p, XT_C_UDP_NEW_PAYLOAD);
		break;
	}
	if (p->sport == xt_htons(53) || p->dport == xt_htons(53)) {
		emit_candidate(p, XT_REC_DNS, XT_C_CAND_DNS);
		return;
	}
	scan_probe(p, PROBE_UDP);
	/* UDP: bare addresses only; attacker quiet on dst, malware on src. */
	match_ips(p, 0, DUP_UDP_LOG, XT_F_ATTACKER, XT_F_MALWARE);
	if (p->l4_len >= 6 && is_quic_initial(payload_head(p, data, end)))
		emit_candidate(p, XT_REC_QUIC, XT_C_CAND_QUIC);
}

static __always_inline void do_other(struct pkt *p, void *data, void *end)
{
	if (p->l4proto == IPPROTO_ICMP || p->l4proto == 58 /* ICMPv6 */) {
		__u8 *type = l4_ptr(p, data);

		if (!type || (void *)(type + 1) > end) {
			count(p, XT_C_TRUNCATED);
			return;
		}
		if (*type != (p->l4proto == IPPROTO_ICMP ? 8 : 128)) {
			count(p, XT_C_ICMP_OTHER);
			return;
		}
		count(p, XT_C_ICMP_ECHO);
	} else {
		count(p, XT_C_OTHER_PROTO);
	}
	/* other protocols: no ports, no info rules, no repeat slot */
	match_ips(p, 0, -1, 0, 0);
}

/*
 * Replay (xtrail.h, pkg/dataplane Replayer): while frames are queued in
 * xt_replay_q, each run of the program takes the next one as its packet
 * (place.h) and its capture time as the clock; with none queued the run
 * looks at the test run's own frame. Only a program loaded for replay
 * (XT_CFG_REPLAY) gets here. Returns -1
 * when a queued frame could not be handed on (a bug: user space checks
 * lengths), after counting it in xt_replay_ctl.bad.
 */
static __always_inline int replay_frame(struct xdp_md *ctx, struct xt_config *cfg)
{
	__u32 zero = 0, i, len;
	struct xt_replay_ctl *ctl = bpf_map_lookup_elem(&xt_replay_cur, &zero);
	struct xt_replay_frame *f;

	if (!ctl)
		return 0;
	i = ctl->next;
	if (i >= ctl->count)
		return 0;
	ctl->next = i + 1;
	f = bpf_map_lookup_elem(&xt_replay_q, &i);
	if (!f)
		goto bad;
	len = f->len;
	if (len < 14 || len > XT_REPLAY_FRAME_MAX)
		goto bad;
	if (place_frame(ctx, f->data, len))
		goto bad;
	cfg->clock_ns = f->ts_ns;
	return 0;
bad:
	ctl->bad++;
	return -1;
}

SEC("xdp")
int xtrail_xdp(struct xdp_md *ctx)
{
	void *data, *end;
	__u32 zero = 0, off;
	__u16 proto;
	/* not zeroed whole: every field is set before it is read (the parse
	 * sets the rest), which spares the common data packet a dozen stores */
	struct pkt p;
	struct ethhdr *eth;

	p.ctx = ctx;
	p.now = 0;
	p.gen_read = 0;
	p.flt_read = 0;
	p.tcp_flags = 0;
	p.sport = 0;
	p.dport = 0;

	struct xt_config *cfg = bpf_map_lookup_elem(&xt_cfg, &zero);

	p.cfg = cfg;
	p.cnt = bpf_map_lookup_elem(&xt_counts, &zero);
	if (!cfg || !p.cnt)
		return XDP_PASS;
	if ((cfg->flags & XT_CFG_REPLAY) && replay_frame(ctx, cfg) < 0)
		return XDP_ABORTED;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	eth = data;
	__u32 action = p.cfg->action == XDP_DROP ? XDP_DROP : XDP_PASS;

	count(&p, XT_C_PACKETS);
	if (action == XDP_DROP)
		count(&p, XT_C_ACTION_DROP);

	if ((void *)(eth + 1) > end)
		goto truncated;
	/* struct ethhdr is packed: read the EtherType as one word, not two bytes */
	proto = *(__u16 *)(data + 12);
	off = sizeof(*eth);

	/* plain IPv4, the common frame, goes straight on */
	if (proto != xt_htons(ETH_P_IP)) {
		/* up to two VLAN tags: 802.1Q, and QinQ (beyond Maltrail, which drops it) */
#pragma unroll
		for (int i = 0; i < 2; i++) {
			if (proto != xt_htons(ETH_P_8021Q) && proto != xt_htons(ETH_P_8021AD_))
				break;
			__u16 *tag = data + off;
			if ((void *)(tag + 2) > end)
				goto truncated;
			count(&p, i == 0 ? XT_C_VLAN : XT_C_QINQ);
			proto = tag[1];
			off += 4;
		}

		if (proto == xt_htons(ETH_P_PPPOE_SES_)) {
			/* ver/type, code, session id, length, then the PPP protocol */
			__u16 *ppp = data + off + 6;
			if ((void *)(ppp + 1) > end)
				goto truncated;
			count(&p, XT_C_PPPOE);
			if (*ppp == xt_htons(PPP_IPV4))
				proto = xt_htons(ETH_P_IP);
			else if (*ppp == xt_htons(PPP_IPV6))
				proto = xt_htons(ETH_P_IPV6);
			else
				proto = 0;
			off += 8;
		}
	}

	if (proto == xt_htons(ETH_P_IP)) {
		struct iphdr *ip = data + off;
		__u32 ihl, tot;

		if ((void *)(ip + 1) > end)
			goto truncated;
		count(&p, XT_C_IPV4);
		ihl = ip->ihl * 4;
		tot = xt_ntohs(ip->tot_len);
		if (ip->version != 4 || ihl < sizeof(*ip) || tot < ihl) {
			count(&p, XT_C_IP_BAD);
			return action;
		}
		if (data + off + ihl > end)
			goto truncated;
		if (ip->frag_off & xt_htons(0x1fff)) {
			count(&p, XT_C_FRAGMENT);
			return action;
		}
		p.family = 4;
		p.l4proto = ip->protocol;
		/* IPv4 in the first 4 bytes, the rest zero (xt_rec) */
		((__u64 *)p.src)[0] = ip->saddr;
		((__u64 *)p.src)[1] = 0;
		((__u64 *)p.dst)[0] = ip->daddr;
		((__u64 *)p.dst)[1] = 0;
		p.l4_off = off + ihl;
		p.l4_len = tot - ihl;
	} else if (proto == xt_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data + off;

		if ((void *)(ip6 + 1) > end)
			goto truncated;
		count(&p, XT_C_IPV6);
		if (ip6->version != 6) {
			count(&p, XT_C_IP_BAD);
			return action;
		}
		p.family = 6;
		/* Next Header is the protocol; extension headers are not walked (as Maltrail) */
		p.l4proto = ip6->nexthdr;
		__builtin_memcpy(p.src, &ip6->saddr, 16);
		__builtin_memcpy(p.dst, &ip6->daddr, 16);
		p.l4_off = off + sizeof(*ip6);
		p.l4_len = xt_ntohs(ip6->payload_len);
	} else {
		count(&p, XT_C_NON_IP);
		return action;
	}

	/* never trust the IP length fields beyond the frame */
	if (p.l4_off + p.l4_len > (__u32)(end - data)) {
		__u32 have = (__u32)(end - data);
		p.l4_len = have > p.l4_off ? have - p.l4_off : 0;
	}

	if (p.l4proto == IPPROTO_TCP)
		do_tcp(&p, data, end);
	else if (p.l4proto == IPPROTO_UDP)
		do_udp(&p, data, end);
	else
		do_other(&p, data, end);
	return action;

truncated:
	count(&p, XT_C_TRUNCATED);
	return action;
}

/* SPDX-License-Identifier: (MIT OR GPL-2.0) */
/*
 * bpf_defs.h: the few definitions the XDP program needs from a BPF
 * toolchain: section and map-definition macros (BTF-style, as libbpf and
 * cilium/ebpf read them), byte-order helpers, and the kernel helpers the
 * program calls, by their stable UAPI numbers (include/uapi/linux/bpf.h).
 * Kept here so `make generate` needs only clang and the kernel UAPI headers.
 */
#ifndef XTRAIL_BPF_DEFS_H
#define XTRAIL_BPF_DEFS_H

#include <linux/bpf.h>

#define SEC(name) __attribute__((section(name), used))
/* the UAPI headers define __always_inline as a bare __inline__, which
 * leaves the choice to clang: the program's helpers must be inlined */
#undef __always_inline
#define __always_inline inline __attribute__((always_inline))

#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name

/* libbpf's LIBBPF_PIN_BY_NAME: cilium/ebpf pins such maps under PinPath. */
#define XT_PIN_BY_NAME 1

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define xt_htons(x) ((__u16)__builtin_bswap16(x))
#define xt_ntohs(x) ((__u16)__builtin_bswap16(x))
#define xt_htonl(x) ((__u32)__builtin_bswap32(x))
#else
#define xt_htons(x) ((__u16)(x))
#define xt_ntohs(x) ((__u16)(x))
#define xt_htonl(x) ((__u32)(x))
#endif

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_map_update_elem)(void *map, const void *key, const void *value, __u64 flags) = (void *)2;
static long (*bpf_redirect)(__u32 ifindex, __u64 flags) = (void *)23;
static long (*bpf_xdp_adjust_head)(struct xdp_md *ctx, int delta) = (void *)44;
static long (*bpf_ringbuf_output)(void *ringbuf, void *data, __u64 size, __u64 flags) = (void *)130;
static void *(*bpf_ringbuf_reserve)(void *ringbuf, __u64 size, __u64 flags) = (void *)131;
static void (*bpf_ringbuf_submit)(void *data, __u64 flags) = (void *)132;
static long (*bpf_xdp_load_bytes)(struct xdp_md *ctx, __u32 offset, void *buf, __u32 len) = (void *)189;
static long (*bpf_xdp_store_bytes)(struct xdp_md *ctx, __u32 offset, void *buf, __u32 len) = (void *)190;
static __u64 (*bpf_ktime_get_tai_ns)(void) = (void *)208;

#endif

// SPDX-License-Identifier: (MIT OR GPL-2.0)
/*
 * gen.c: a traffic generator for the veth lab, run by BPF_PROG_TEST_RUN in
 * live-frame mode (BPF_F_TEST_XDP_LIVE_FRAMES): each run makes the next
 * frame of a pool the packet and sends it out of an interface (XDP
 * redirect), so frames reach the sensor's veth at the kernel's pace, with
 * no system call per frame. For benchmarks only (internal/trafficgen).
 */
#include <linux/bpf.h>

#include "bpf_defs.h"
#include "place.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#define GEN_FRAME_MAX 1536

/* One frame of the pool. */
struct gen_frame {
	__u32 len; /* bytes of data: 14..GEN_FRAME_MAX */
	__u32 pad;
	__u8 data[GEN_FRAME_MAX];
};

/* The single entry of gen_config. */
struct gen_cfg {
	__u32 frames;  /* frames in the pool */
	__u32 ifindex; /* where frames go */
	__u32 vary;    /* offset of a 16-bit word to add the frame's run number to (0: none) */
	__u32 pad;
	__u64 next;    /* runs so far: the next frame is next % frames */
	__u64 bad;     /* runs that sent nothing (a bug) */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gen_frame);
} gen_pool SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gen_cfg);
} gen_config SEC(".maps");

SEC("xdp")
int gen(struct xdp_md *ctx)
{
	__u32 zero = 0, i, len;
	struct gen_cfg *c = bpf_map_lookup_elem(&gen_config, &zero);
	struct gen_frame *f;
	__u64 n;

	if (!c || !c->frames)
		return XDP_ABORTED;
	n = c->next++;
	i = n % c->frames;
	f = bpf_map_lookup_elem(&gen_pool, &i);
	if (!f)
		goto bad;
	len = f->len;
	if (len < 14 || len > GEN_FRAME_MAX)
		goto bad;
	if (place_frame(ctx, f->data, len))
		goto bad;
	if (c->vary) {
		void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
		__u32 off = c->vary;
		__u16 *w;

		if (off > 128)
			goto bad;
		w = data + off;
		if ((void *)(w + 1) > end)
			goto bad;
		*w = (__u16)(*w + (__u16)(n / c->frames));
	}
	return bpf_redirect(c->ifindex, 0);
bad:
	c->bad++;
	return XDP_ABORTED;
}

/* SPDX-License-Identifier: (MIT OR GPL-2.0) */
/*
 * place.h: makes a frame held in a map the packet of a BPF_PROG_TEST_RUN,
 * for the programs that run queued frames (xtrail.c's replay, the lab's
 * traffic generator). The test run keeps its buffer between the runs of
 * one call, so each frame is placed at the end of the buffer by moving its
 * head, which clears nothing (growing the tail would clear the new bytes
 * first), and copied in.
 */
#ifndef XTRAIL_PLACE_H
#define XTRAIL_PLACE_H

#include "bpf_defs.h"

/* Returns 0 once ctx's packet is the len bytes at frame, -1 if the buffer
 * cannot hold them. The caller bounds len by frame's size (the verifier
 * needs the bound) and by the buffer's (the test run's input). */
static __always_inline int place_frame(struct xdp_md *ctx, void *frame, __u32 len)
{
	/* the packet's length now, as a 64-bit difference of the pointers:
	 * the verifier refuses 32-bit arithmetic on them */
	__u64 cur = (void *)(long)ctx->data_end - (void *)(long)ctx->data;

	asm volatile("" : "+r"(cur));
	if (bpf_xdp_adjust_head(ctx, (int)cur - (int)len))
		return -1;
	return bpf_xdp_store_bytes(ctx, 0, frame, len) ? -1 : 0;
}

#endif

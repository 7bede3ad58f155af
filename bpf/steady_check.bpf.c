/* A check of the kernel's steady rules (steady.h), not a capture program:
 * src/flow/analysis/steady/kernel.rs runs it with BPF_PROG_TEST_RUN on
 * frames it builds, with the mirror, the runs and the side it sets in
 * tcpx_check, and reads back what the rules made of the frame. The frame
 * goes through summarise() and tcpx_segment_of() as a captured one will.
 *
 * Built by build.rs beside tcpx.bpf.c; never attached to an interface. */

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "record.h"
#include "summarise.h"
#include "steady.h"

/* What the frame could not be read as: not a summarised segment, or one
 * whose lengths cannot hold its headers. */
#define CHECK_NOT_SUMMARISED 0xff
#define CHECK_NO_SEGMENT 0xfe

struct tcpx_check {
	struct tcpx_steady steady; /*   0 in and out */
	__u64 now;                 /* 192 in */
	__u32 side;                /* 200 in: 0 client, 1 server */
	__u32 admission;           /* 204 out: enum tcpx_admission, or CHECK_* */
};                                 /* 208 */

_Static_assert(sizeof(struct tcpx_check) == 208, "check size");
_Static_assert(__builtin_offsetof(struct tcpx_check, now) == 192, "now");
_Static_assert(__builtin_offsetof(struct tcpx_check, side) == 200, "side");
_Static_assert(__builtin_offsetof(struct tcpx_check, admission) == 204, "admission");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tcpx_check);
} tcpx_check SEC(".maps");

SEC("xdp")
int tcpx_steady_check(struct xdp_md *ctx)
{
	__u32 key = 0;
	struct tcpx_check *c = bpf_map_lookup_elem(&tcpx_check, &key);
	if (!c)
		return XDP_ABORTED;
	struct tcpx_record r = {};
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	if (summarise(data, end, bpf_xdp_get_buff_len(ctx), &r) != TCPX_OK) {
		c->admission = CHECK_NOT_SUMMARISED;
		return XDP_PASS;
	}
	int admission = tcpx_steady_admit(&c->steady, &r, c->side, c->now);
	c->admission = admission < 0 ? CHECK_NO_SEGMENT : admission;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Apache-2.0";

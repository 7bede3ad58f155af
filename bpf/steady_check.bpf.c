/* A check of the kernel's steady rules (steady.h), not a capture program:
 * src/flow/analysis/steady/kernel.rs runs it with BPF_PROG_TEST_RUN on
 * frames it builds, with the mirror, the runs and the side it sets in
 * tcpx_check, and reads back what the rules made of the frame. The frame
 * goes through summarise() and tcpx_segment_of() as a captured one will.
 * tcpx_count_check does the same for the counting of count.h.
 *
 * Built by build.rs beside tcpx.bpf.c; never attached to an interface. */

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "record.h"
#include "summarise.h"
#include "steady.h"
#include "count.h"

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

/* tcpx_admit() on the segment of record `r` (whose status is TCPX_OK),
 * sent by direction `side` at `now`, with the connection's mirror and runs
 * in `st`. Returns an enum tcpx_admission, or -1 when the record's lengths
 * cannot hold its headers (user space reports that).
 *
 * A global function (not static), checked once by the verifier on its
 * own: inlined after the header parser, its paths would be walked once for
 * every path out of the parser. */
__attribute__((noinline)) int tcpx_steady_admit(struct tcpx_steady *st,
						const struct tcpx_record *r, __u32 side,
						__u64 now)
{
	/* The verifier takes a global function's pointers as maybe NULL. */
	if (!st || !r)
		return -1;
	struct tcpx_seg s = {};
	if (tcpx_segment_of(r, &s) != 0)
		return -1;
	side &= 1;
	return tcpx_admit(&st->mirror, &s, side, now, &st->run[side], 1);
}

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

/* The time tcpx_count_check gives the frame it is run on. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} tcpx_count_now SEC(".maps");

/* tcpx_xdp_count (tcpx.bpf.c) with the time the test sets instead of the
 * clock's: the counting of count.h on a frame, its records and runs in
 * tcpx_events, for src/capture/kernel_count.rs's tests to hold to the
 * analysis. */
SEC("xdp")
int tcpx_count_check(struct xdp_md *ctx)
{
	__u32 key = 0;
	__u64 *now = bpf_map_lookup_elem(&tcpx_count_now, &key);
	if (!now || !*now)
		return XDP_ABORTED;
	return on_ingress(ctx, 1, *now);
}

/* count.h's flush, for the same test. */
SEC("xdp")
int tcpx_flush(struct xdp_md *ctx)
{
	return flush(ctx);
}

char LICENSE[] SEC("license") = "Apache-2.0";

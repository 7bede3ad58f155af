/* The mirror of a connection's steady path, in the kernel: the rules of
 * src/flow/analysis/steady.rs (Mirror::admit and what it calls), written
 * again in C for the xdp backend's programs, with the same names. Given
 * what user space knows of a connection (struct tcpx_mirror, taken from its
 * analysis), tcpx_admit() says of each segment whether the analysis would
 * take its steady path without timing or ending an RTT sample (COUNTED:
 * the kernel may count it in a run instead of handing it up), must see it
 * but knows how the mirror moves (FOLLOWED), or must see it and the mirror
 * no longer describes the connection (OTHER).
 *
 * Both sides are held to each other: src/flow/analysis/steady/kernel.rs
 * runs this code (bpf/steady_check.bpf.c, through BPF_PROG_TEST_RUN) and
 * the Rust rules on the same segments and compares verdicts, mirrors and
 * runs. The layouts below are read by that test too: TCPX_MIRROR_AT and
 * TCPX_RUN_AT lines state each offset, and clang checks them. */
#ifndef TCPX_STEADY_H
#define TCPX_STEADY_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "record.h"

/* RTT_SLOTS in src/flow/rtt.rs: timed segments per direction. */
#define TCPX_RTT_SLOTS 2

#define TCPX_FIN 0x01
#define TCPX_SYN 0x02
#define TCPX_RST 0x04
#define TCPX_ACK 0x10

/* enum Scale in src/flow/analysis.rs. */
enum tcpx_scale {
	TCPX_SCALE_UNKNOWN = 0,
	TCPX_SCALE_OFF = 1,
	TCPX_SCALE_SHIFT = 2,
};

enum tcpx_admission {
	TCPX_OTHER = 0,
	TCPX_FOLLOWED = 1,
	TCPX_COUNTED = 2,
};

/* MirrorDir: what the steady path reads of one direction. Sequence
 * numbers of 0 mean unknown, as in the analysis. */
struct tcpx_mirror_dir {
	__u32 next_seq;            /*  0 */
	__u32 max_seq_to_be_acked; /*  4 */
	__u32 last_ack;            /*  8 */
	__u32 window;              /* 12 raw, unscaled; 0xffffffff: none seen */
	__u32 rtt_ends[TCPX_RTT_SLOTS]; /* 16 oldest first, then zeros */
	__u8 scale;                /* 24 enum tcpx_scale */
	__u8 shift;                /* 25 when scale is TCPX_SCALE_SHIFT */
	__u8 first_ack_pending;    /* 26 */
	__u8 rtt_len;              /* 27 */
	__u8 reserved[4];          /* 28 zero */
};                                 /* 32 */

/* Mirror: the client's direction, then the server's. */
struct tcpx_mirror {
	struct tcpx_mirror_dir dir[2];
};

/* SteadyRun: the segments of one direction counted one after another, and
 * where the last left the direction. */
struct tcpx_run {
	__u64 last;                /*  0 time of the last segment */
	__u64 last_data;           /*  8 ...of the last with data (if has_data) */
	__u64 payload_bytes;       /* 16 */
	__u64 ip_bytes;            /* 24 */
	__u32 segments;            /* 32 */
	__u32 dont_fragment;       /* 36 segments with IPv4's DF bit */
	__u32 next_seq;            /* 40 */
	__u32 max_seq_to_be_acked; /* 44 */
	__u32 last_ack;            /* 48 */
	__u32 window;              /* 52 */
	__u8 has_data;             /* 56 */
	__u8 ack_moved;            /* 57 */
	__u8 reserved[6];          /* 58 zero */
};                                 /* 64 */

/* What the rules keep of a connection: its mirror, and the run of each
 * direction since user space last took them; held in each connection's
 * entry of count.h's map. */
struct tcpx_steady {
	struct tcpx_mirror mirror; /*   0 */
	struct tcpx_run run[2];    /*  64 by side: the client's first */
};                                 /* 192 */

_Static_assert(sizeof(struct tcpx_mirror) == 64, "mirror size");
_Static_assert(sizeof(struct tcpx_steady) == 192, "steady size");
_Static_assert(sizeof(struct tcpx_run) == 64, "run size");
#define TCPX_MIRROR_AT(field, offset) \
	_Static_assert(__builtin_offsetof(struct tcpx_mirror_dir, field) == offset, #field)
TCPX_MIRROR_AT(next_seq, 0);
TCPX_MIRROR_AT(max_seq_to_be_acked, 4);
TCPX_MIRROR_AT(last_ack, 8);
TCPX_MIRROR_AT(window, 12);
TCPX_MIRROR_AT(rtt_ends, 16);
TCPX_MIRROR_AT(scale, 24);
TCPX_MIRROR_AT(shift, 25);
TCPX_MIRROR_AT(first_ack_pending, 26);
TCPX_MIRROR_AT(rtt_len, 27);
#define TCPX_RUN_AT(field, offset) \
	_Static_assert(__builtin_offsetof(struct tcpx_run, field) == offset, #field)
TCPX_RUN_AT(last, 0);
TCPX_RUN_AT(last_data, 8);
TCPX_RUN_AT(payload_bytes, 16);
TCPX_RUN_AT(ip_bytes, 24);
TCPX_RUN_AT(segments, 32);
TCPX_RUN_AT(dont_fragment, 36);
TCPX_RUN_AT(next_seq, 40);
TCPX_RUN_AT(max_seq_to_be_acked, 44);
TCPX_RUN_AT(last_ack, 48);
TCPX_RUN_AT(window, 52);
TCPX_RUN_AT(has_data, 56);
TCPX_RUN_AT(ack_moved, 57);

/* What the rules read of a segment: the decoder's Segment, cut down. */
struct tcpx_seg {
	__u32 seq;
	__u32 ack;
	__u32 len;      /* payload bytes */
	__u32 ip_len;   /* the IP packet's length by the decoder's rules */
	__u16 window;
	__u8 flags;
	__u8 window_scale; /* a window-scale option is present */
	__u8 dont_fragment;
};

/* Sequence order (src/flow/seq.rs): a < b when b is less than 2^31 ahead
 * of a; numbers 2^31 apart read as less either way. */
static __always_inline int seq_lt(__u32 a, __u32 b)
{
	return (__s32)(a - b) < 0;
}

static __always_inline int seq_le(__u32 a, __u32 b)
{
	return (__s32)(a - b) <= 0;
}

static __always_inline int seq_gt(__u32 a, __u32 b)
{
	return (__s32)(a - b) > 0;
}

/* A walk over a segment's option bytes, one option per step of bpf_loop:
 * the bytes in a buffer every offset masked with 63 lies in. */
struct tcpx_option_walk {
	__u8 bytes[64];
	__u32 len;   /* option bytes */
	__u32 at;    /* where the next option starts */
	__u32 found; /* a window-scale option was met */
};

/* One step of the walk the decoder makes (parse_options in
 * src/decode/tcp.rs): an end-of-list, or an option whose length does not
 * fit, ends it; a window-scale option is kind 3 with length 3. Returns 1
 * to stop. Run by bpf_loop, the verifier checks it once: unrolled, its
 * paths multiply over forty steps. */
static long option_step(__u32 i, void *ctx)
{
	struct tcpx_option_walk *w = ctx;
	__u32 at = w->at;
	if (at >= w->len || at >= TCPX_MAX_OPTIONS)
		return 1;
	__u8 kind = w->bytes[at & 63];
	if (kind == 0)
		return 1;
	if (kind == 1) {
		w->at = at + 1;
		return 0;
	}
	if (at + 1 >= w->len)
		return 1;
	__u8 olen = w->bytes[(at + 1) & 63];
	if (olen < 2 || at + olen > w->len)
		return 1;
	if (kind == 3 && olen == 3) {
		w->found = 1;
		return 1;
	}
	w->at = at + olen;
	return 0;
}

/* Whether the record's options hold a window-scale option as the decoder
 * reads them. Each step moves at least one byte on: 40 steps walk them
 * all. */
static __always_inline int has_window_scale(const struct tcpx_record *r)
{
	struct tcpx_option_walk w = {};
	__builtin_memcpy(w.bytes, r->options, TCPX_MAX_OPTIONS);
	w.len = r->options_len;
	bpf_loop(TCPX_MAX_OPTIONS, option_step, &w, 0);
	return w.found;
}

/* The segment of a record whose status is TCPX_OK, with the IP and
 * payload lengths the decoder would give it (src/decode/ip.rs: the stated
 * length, no more than the wire's; the wire's when none is stated).
 * Returns 0, or -1 when the lengths cannot hold the headers (the decoder
 * reports that; the segment is handed up for it to). */
static __always_inline int tcpx_segment_of(const struct tcpx_record *r, struct tcpx_seg *s)
{
	__u32 total = r->l3_len;
	if (r->ip_stated_len != 0 && r->ip_stated_len < total)
		total = r->ip_stated_len;
	__u32 headers = (__u32)r->ip_header_len + r->tcp_header_len;
	if (total < headers)
		return -1;
	s->seq = r->seq;
	s->ack = r->ack;
	s->len = total - headers;
	s->ip_len = total;
	s->window = r->window;
	s->flags = r->flags;
	s->window_scale = has_window_scale(r);
	s->dont_fragment = r->dont_fragment;
	return 0;
}

/* window_edge: the right edge of the window a direction offered. */
static __always_inline __u32 window_edge(const struct tcpx_mirror_dir *d)
{
	__u32 shift = 0;
	if (!d->first_ack_pending && d->scale == TCPX_SCALE_SHIFT)
		shift = d->shift;
	return d->last_ack + (d->window << (shift & 31));
}

/* fills_window: data up to the edge of the peer's window. */
static __always_inline int fills_window(const struct tcpx_seg *s, const struct tcpx_mirror_dir *rev)
{
	return s->len > 0 && rev->scale != TCPX_SCALE_UNKNOWN &&
	       s->seq + s->len == window_edge(rev);
}

/* is_steady: the analysis's steady path (both bases are known in a
 * mirror). */
static __always_inline int is_steady(const struct tcpx_seg *s, const struct tcpx_mirror_dir *fwd,
				     const struct tcpx_mirror_dir *rev)
{
	__u8 f = s->flags;
	if (!(f & TCPX_ACK) || (f & (TCPX_SYN | TCPX_FIN | TCPX_RST)) || s->window == 0)
		return 0;
	__u32 end = s->seq + s->len;
	return fwd->next_seq != 0 && s->seq == fwd->next_seq && !s->window_scale &&
	       (s->len > 0 || s->ack != fwd->last_ack) &&
	       (s->len == 0 || seq_gt(end, fwd->next_seq)) &&
	       (s->len != 1 || rev->window != 0) &&
	       (s->len == 0 || rev->last_ack == 0 || seq_gt(end, rev->last_ack)) &&
	       (rev->max_seq_to_be_acked == 0 || seq_le(s->ack, rev->max_seq_to_be_acked)) &&
	       !fills_window(s, rev);
}

/* is_followed: any ACK without SYN, FIN, RST or a window-scale option,
 * that acknowledges nothing the peer was not seen to send, from a
 * direction whose next sequence number is known. */
static __always_inline int is_followed(const struct tcpx_seg *s, const struct tcpx_mirror_dir *fwd,
				       const struct tcpx_mirror_dir *rev)
{
	__u8 f = s->flags;
	return (f & TCPX_ACK) && !(f & (TCPX_SYN | TCPX_FIN | TCPX_RST)) && !s->window_scale &&
	       fwd->next_seq != 0 &&
	       (rev->max_seq_to_be_acked == 0 || seq_le(s->ack, rev->max_seq_to_be_acked));
}

/* The RTT sampler's timed ends (RTT_SLOTS is 2, written out for the
 * verifier). */
static __always_inline int rtt_covered_by(const struct tcpx_mirror_dir *d, __u32 ack)
{
	return (d->rtt_len >= 1 && seq_le(d->rtt_ends[0], ack)) ||
	       (d->rtt_len >= 2 && seq_le(d->rtt_ends[1], ack));
}

static __always_inline void rtt_time(struct tcpx_mirror_dir *d, __u32 end)
{
	if (d->rtt_len == 0) {
		d->rtt_ends[0] = end;
		d->rtt_len = 1;
	} else if (d->rtt_len == 1) {
		d->rtt_ends[1] = end;
		d->rtt_len = 2;
	}
}

static __always_inline void rtt_drop_all(struct tcpx_mirror_dir *d)
{
	d->rtt_ends[0] = 0;
	d->rtt_ends[1] = 0;
	d->rtt_len = 0;
}

/* Every timed segment the ACK covers is done with; the rest move to the
 * front, zeros after them. */
static __always_inline void rtt_on_ack(struct tcpx_mirror_dir *d, __u32 ack)
{
	__u32 kept[TCPX_RTT_SLOTS] = {0, 0};
	__u8 n = 0;
	if (d->rtt_len >= 1 && seq_gt(d->rtt_ends[0], ack))
		kept[n++] = d->rtt_ends[0];
	if (d->rtt_len >= 2 && seq_gt(d->rtt_ends[1], ack))
		kept[n++ & 1] = d->rtt_ends[1];
	d->rtt_ends[0] = kept[0];
	d->rtt_ends[1] = kept[1];
	d->rtt_len = n;
}

/* follow: the mirror moves on with a segment is_followed() accepts. */
static __always_inline void follow(struct tcpx_mirror_dir *fwd, struct tcpx_mirror_dir *rev,
				   const struct tcpx_seg *s)
{
	__u32 seq = s->seq;
	__u32 len = s->len;
	__u32 end = seq + len;
	__u32 before_next = fwd->next_seq - 1;
	int probe = len == 1 && seq == fwd->next_seq && rev->window == 0;
	int keepalive = !probe && len <= 1 && seq == before_next;
	int spurious = rev->last_ack != 0 && seq_le(end, rev->last_ack);
	int behind = seq_lt(seq, fwd->next_seq) && !(len > 1 && seq == before_next);
	int repeats = len > 0 && !keepalive && (spurious || behind);
	if (seq_gt(end, fwd->next_seq) && !probe) {
		if (len > 0)
			rtt_time(fwd, end);
		fwd->next_seq = end;
	}
	if (repeats)
		rtt_drop_all(fwd);
	if ((seq == fwd->max_seq_to_be_acked || fwd->max_seq_to_be_acked == 0) && !probe)
		fwd->max_seq_to_be_acked = fwd->next_seq;
	fwd->window = s->window;
	fwd->last_ack = s->ack;
	fwd->first_ack_pending = 0;
	if (rtt_covered_by(rev, s->ack))
		rtt_on_ack(rev, s->ack);
}

/* Mirror::admit: what `s`, sent by direction `side` (0: client) at `now`,
 * is; the mirror moves on unless it is OTHER, and a COUNTED one is counted
 * in `run`, the run of `side`. Unless `may_count`: then one that would be
 * COUNTED is FOLLOWED (the counting programs hand up offload
 * super-packets, which user space counts as their wire segments). */
static __always_inline int tcpx_admit(struct tcpx_mirror *m, const struct tcpx_seg *s, __u32 side,
				      __u64 now, struct tcpx_run *run, int may_count)
{
	struct tcpx_mirror_dir *fwd = &m->dir[side & 1];
	struct tcpx_mirror_dir *rev = &m->dir[(side & 1) ^ 1];
	if (!is_followed(s, fwd, rev))
		return TCPX_OTHER;
	int counted = may_count && is_steady(s, fwd, rev) && (s->len == 0 || fwd->rtt_len == TCPX_RTT_SLOTS) &&
		      !rtt_covered_by(rev, s->ack);
	int ack_moved = s->ack != fwd->last_ack;
	follow(fwd, rev, s);
	if (!counted)
		return TCPX_FOLLOWED;
	run->segments++;
	run->payload_bytes += s->len;
	run->ip_bytes += s->ip_len;
	run->dont_fragment += s->dont_fragment;
	run->last = now;
	if (s->len > 0) {
		run->last_data = now;
		run->has_data = 1;
	}
	run->ack_moved |= ack_moved;
	run->next_seq = fwd->next_seq;
	run->max_seq_to_be_acked = fwd->max_seq_to_be_acked;
	run->last_ack = fwd->last_ack;
	run->window = fwd->window;
	return TCPX_COUNTED;
}

#endif

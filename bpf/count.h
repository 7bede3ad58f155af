/* Counting steady segments in the kernel (the xdp backend's counting
 * programs in tcpx.bpf.c; issue 20): a connection's state in a BPF hash map,
 * shared by the XDP and TC programs of every CPU under a spin lock.
 *
 * - Every record of a connection the kernel hands up is numbered
 *   (flow_seq: 1, 2, ...), runs included, so that user space can put
 *   records written on two CPUs back in the order they were numbered in,
 *   and say how many it has read when it arms the connection.
 * - User space arms a connection by writing its mirror (steady.h) into
 *   tcpx_arms with the number of records it had read. The kernel adopts an
 *   arm only while that number is all it has handed up: a mirror taken
 *   before records still on their way would describe the connection as it
 *   was. Each arm carries a token, so one is adopted once.
 * - Armed, a segment tcpx_admit() counts goes into the run of its side, not
 *   the ring; any other segment first hands up the runs (each a record of
 *   its own, hook TCPX_STEADY_RUN), then itself. One the mirror no longer
 *   describes (OTHER) disarms the connection until user space arms it
 *   again.
 * - tcpx_flush, run by user space with BPF_PROG_TEST_RUN, hands up the runs
 *   of every connection, so that counts of a connection that only counts
 *   reach user space.
 *
 * src/capture/kernel_count.rs and src/decode/summary.rs read the layouts
 * below; the *_AT lines state each
 * offset it reads, and clang checks them. */
#ifndef TCPX_COUNT_H
#define TCPX_COUNT_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "record.h"
#include "ring.h"
#include "steady.h"
#include "summarise.h"

/* A connection as the kernel keys it: the interface and both endpoints,
 * the lower one (by address bytes, then port) first. */
struct tcpx_flow_key {
	__u32 ifindex; /*  0 */
	__u16 lo_port; /*  4 */
	__u16 hi_port; /*  6 */
	__u8 lo[16];   /*  8 */
	__u8 hi[16];   /* 24 */
};                     /* 40 */

/* What user space writes to arm a connection. */
struct tcpx_arm {
	__u64 token;               /*  0 new with every arm written, never 0 */
	__u32 armed_at;            /*  8 records of the connection read */
	__u32 generation;          /* 12 user space's, handed back with runs */
	__u8 client_lo;            /* 16 the client is the key's lo endpoint */
	__u8 reserved[7];          /* 17 zero */
	struct tcpx_mirror mirror; /* 24 */
};                                 /* 88 */

/* The kernel's state of a connection. */
struct tcpx_flow {
	struct bpf_spin_lock lock; /*  0 */
	__u32 handed;              /*  4 records numbered */
	__u64 adopted;             /*  8 token of the last arm adopted */
	__u32 generation;          /* 16 of that arm */
	__u8 armed;                /* 20 */
	__u8 client_lo;            /* 21 */
	__u8 dead;                 /* 22 being deleted (tcpx_flush) */
	__u8 reserved;             /* 23 */
	struct tcpx_steady st;     /* 24 */
	__u64 last;                /* 216 time of its last segment */
};                                 /* 224 */

/* A run handed up. Where it shares a field with struct tcpx_record, it
 * sits at the same offset. */
struct tcpx_run_record {
	__u64 ts_ns;          /*   0 when handed up */
	__u32 ifindex;        /*   8 */
	__u32 generation;     /*  12 of the arm counted under */
	__u8 side;            /*  16 0: the client's run */
	__u8 reserved0[15];   /*  17 zero */
	__u16 src_port;       /*  32 the run's sender */
	__u16 dst_port;       /*  34 */
	__u8 reserved1[9];    /*  36 zero */
	__u8 status;          /*  45 TCPX_OK */
	__u8 hook;            /*  46 TCPX_STEADY_RUN */
	__u8 reserved2;       /*  47 zero */
	__u8 src[16];         /*  48 */
	__u8 dst[16];         /*  64 */
	__u8 reserved3[40];   /*  80 zero */
	__u32 flow_seq;       /* 120 */
	__u8 reserved4[4];    /* 124 zero */
	struct tcpx_run run;  /* 128 */
};                            /* 192 */

_Static_assert(sizeof(struct tcpx_flow_key) == 40, "flow key size");
_Static_assert(sizeof(struct tcpx_arm) == 88, "arm size");
_Static_assert(sizeof(struct tcpx_flow) == 224, "flow size");
_Static_assert(sizeof(struct tcpx_run_record) == 192, "run record size");
#define TCPX_KEY_AT(field, offset) \
	_Static_assert(__builtin_offsetof(struct tcpx_flow_key, field) == offset, #field)
TCPX_KEY_AT(ifindex, 0);
TCPX_KEY_AT(lo_port, 4);
TCPX_KEY_AT(hi_port, 6);
TCPX_KEY_AT(lo, 8);
TCPX_KEY_AT(hi, 24);
#define TCPX_ARM_AT(field, offset) \
	_Static_assert(__builtin_offsetof(struct tcpx_arm, field) == offset, #field)
TCPX_ARM_AT(token, 0);
TCPX_ARM_AT(armed_at, 8);
TCPX_ARM_AT(generation, 12);
TCPX_ARM_AT(client_lo, 16);
TCPX_ARM_AT(mirror, 24);
#define TCPX_RUN_RECORD_AT(field, offset) \
	_Static_assert(__builtin_offsetof(struct tcpx_run_record, field) == offset, #field)
TCPX_RUN_RECORD_AT(ts_ns, 0);
TCPX_RUN_RECORD_AT(ifindex, 8);
TCPX_RUN_RECORD_AT(generation, 12);
TCPX_RUN_RECORD_AT(side, 16);
TCPX_RUN_RECORD_AT(src_port, 32);
TCPX_RUN_RECORD_AT(dst_port, 34);
TCPX_RUN_RECORD_AT(status, 45);
TCPX_RUN_RECORD_AT(hook, 46);
TCPX_RUN_RECORD_AT(src, 48);
TCPX_RUN_RECORD_AT(dst, 64);
TCPX_RUN_RECORD_AT(flow_seq, 120);
TCPX_RUN_RECORD_AT(run, 128);

/* Connections the kernel keeps, at most 65,536. Allocated as they come (no
 * preallocation): a connection costs its entry only while it lives. The
 * segments of a connection that finds the map full are handed up whole,
 * unnumbered, each counted in tcpx_count_stats.
 *
 * A freed element's memory may be reused at once by the next insert, even
 * while a program on another CPU still holds a pointer to it: tcpx_flush
 * marks an entry dead under its lock before deleting it, and tcpx_count()
 * hands a segment up whole when it finds it so. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct tcpx_flow_key);
	__type(value, struct tcpx_flow);
} tcpx_flows SEC(".maps");

/* Arms, written by user space. An update replaces the element, whose
 * memory may be reused at once while a program reads it: tcpx_count()
 * takes an arm only if its token is the same after reading it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct tcpx_flow_key);
	__type(value, struct tcpx_arm);
} tcpx_arms SEC(".maps");

/* The value a new connection's entry starts from: zeros, as bytes (a
 * value holding a lock cannot be handed to an update). */
struct tcpx_blank {
	__u8 bytes[sizeof(struct tcpx_flow)];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tcpx_blank);
} tcpx_blank SEC(".maps");

/* Runs taken out under the lock, to be handed up after it (the stack has
 * no room for them beside the record): one slot per program kind, which
 * never interrupt one another on a CPU (XDP runs in softirq, TC egress
 * with softirqs off, the flush from a system call). */
struct tcpx_taken {
	struct tcpx_run run[2];
	__u32 seq[2]; /* their numbers */
};

#define TAKEN_XDP 0
#define TAKEN_TC 1
#define TAKEN_FLUSH 2

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, struct tcpx_taken);
} tcpx_taken SEC(".maps");

/* Per CPU: [0] segments of connections the map had no room for. */
#define COUNT_STAT_FLOWS_FULL 0
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} tcpx_count_stats SEC(".maps");

static __always_inline void count_stat(__u32 which)
{
	__u64 *n = bpf_map_lookup_elem(&tcpx_count_stats, &which);
	if (n)
		__sync_fetch_and_add(n, 1);
}

/* The record's connection as a key; returns whether the sender is the
 * lower endpoint. Addresses compare as four big-endian words, then ports. */
static __always_inline int key_of(const struct tcpx_record *r, struct tcpx_flow_key *k)
{
	int src_lo = -1;
#pragma unroll
	for (int i = 0; i < 16; i += 4) {
		__u32 a = bpf_ntohl(*(__u32 *)&r->src[i]);
		__u32 b = bpf_ntohl(*(__u32 *)&r->dst[i]);
		if (src_lo < 0 && a != b)
			src_lo = a < b;
	}
	if (src_lo < 0)
		src_lo = r->src_port <= r->dst_port;
	k->ifindex = r->ifindex;
	if (src_lo) {
		__builtin_memcpy(k->lo, r->src, 16);
		__builtin_memcpy(k->hi, r->dst, 16);
		k->lo_port = r->src_port;
		k->hi_port = r->dst_port;
	} else {
		__builtin_memcpy(k->lo, r->dst, 16);
		__builtin_memcpy(k->hi, r->src, 16);
		k->lo_port = r->dst_port;
		k->hi_port = r->src_port;
	}
	return src_lo;
}

/* Under the connection's lock: the number of its next record. Numbers
 * run from 1 and wrap past 0, which means "not numbered". */
static __always_inline __u32 number(struct tcpx_flow *f)
{
	f->handed++;
	if (!f->handed)
		f->handed = 1;
	return f->handed;
}

/* Under the connection's lock: moves the runs that hold segments into
 * `taken` (the others are zeroed there) and numbers them, the client's
 * first. */
static __always_inline void take_runs(struct tcpx_flow *f, struct tcpx_taken *taken)
{
	taken->run[0] = f->st.run[0];
	taken->run[1] = f->st.run[1];
	__builtin_memset(&f->st.run[0], 0, sizeof(f->st.run[0]));
	__builtin_memset(&f->st.run[1], 0, sizeof(f->st.run[1]));
	if (taken->run[0].segments)
		taken->seq[0] = number(f);
	if (taken->run[1].segments)
		taken->seq[1] = number(f);
}

/* Hands up the runs take_runs() took, the client's first. The endpoints
 * come from the key: the client's is lo when `client_lo`. */
static __always_inline void hand_up_runs(struct tcpx_taken *taken, const struct tcpx_flow_key *k,
					 __u32 generation, __u8 client_lo, __u64 now)
{
#pragma unroll
	for (int side = 0; side < 2; side++) {
		if (!taken->run[side].segments)
			continue;
		struct tcpx_run_record *out =
			bpf_ringbuf_reserve(&tcpx_events, sizeof(struct tcpx_run_record), 0);
		if (!out) {
			/* Frames lost: the run's segments. */
			count_lost_n(taken->run[side].segments);
			continue;
		}
		__builtin_memset(out, 0, sizeof(*out));
		out->ts_ns = now;
		out->ifindex = k->ifindex;
		out->generation = generation;
		out->side = side;
		out->status = TCPX_OK;
		out->hook = TCPX_STEADY_RUN;
		/* The sender is lo for the client's run when the client is lo. */
		int sender_lo = (side == 0) == (client_lo != 0);
		if (sender_lo) {
			__builtin_memcpy(out->src, k->lo, 16);
			__builtin_memcpy(out->dst, k->hi, 16);
			out->src_port = k->lo_port;
			out->dst_port = k->hi_port;
		} else {
			__builtin_memcpy(out->src, k->hi, 16);
			__builtin_memcpy(out->dst, k->lo, 16);
			out->src_port = k->hi_port;
			out->dst_port = k->lo_port;
		}
		out->flow_seq = taken->seq[side];
		out->run = taken->run[side];
		bpf_ringbuf_submit(out, BPF_RB_NO_WAKEUP);
	}
}

#define COUNT_HAND_UP 0
#define COUNT_COUNTED 1

/* The counting step for record `r` (status TCPX_OK, ts_ns set), taken at
 * the hook `taken_slot` names. Returns COUNT_COUNTED when the segment went
 * into a run, else COUNT_HAND_UP with r->flow_seq set (0: not numbered, as
 * for a segment whose lengths do not hold its headers, which user space
 * reports, a connection the map had no room for, or one being deleted),
 * after handing up the
 * runs that come before it.
 *
 * A global function, checked once by the verifier on its own, as
 * tcpx_steady_admit() is in the check. */
__attribute__((noinline)) int tcpx_count(struct tcpx_record *r, __u32 taken_slot)
{
	if (!r)
		return COUNT_HAND_UP;
	struct tcpx_seg s = {};
	if (tcpx_segment_of(r, &s) != 0)
		return COUNT_HAND_UP;
	struct tcpx_flow_key key = {};
	int src_lo = key_of(r, &key);
	struct tcpx_flow *f = bpf_map_lookup_elem(&tcpx_flows, &key);
	if (!f) {
		__u32 zero = 0;
		struct tcpx_blank *blank = bpf_map_lookup_elem(&tcpx_blank, &zero);
		if (!blank)
			return COUNT_HAND_UP;
		/* Another CPU may add it first: then the lookup finds theirs. */
		bpf_map_update_elem(&tcpx_flows, &key, blank, BPF_NOEXIST);
		f = bpf_map_lookup_elem(&tcpx_flows, &key);
		if (!f) {
			count_stat(COUNT_STAT_FLOWS_FULL);
			return COUNT_HAND_UP;
		}
	}
	struct tcpx_arm *arm = bpf_map_lookup_elem(&tcpx_arms, &key);
	__u32 slot = taken_slot;
	struct tcpx_taken *taken = bpf_map_lookup_elem(&tcpx_taken, &slot);
	if (!taken)
		return COUNT_HAND_UP;
	__u64 now = r->ts_ns;

	bpf_spin_lock(&f->lock);
	if (f->dead) {
		/* tcpx_flush is deleting the entry: the segment comes up whole,
		 * unnumbered; the next one starts a new entry. */
		bpf_spin_unlock(&f->lock);
		return COUNT_HAND_UP;
	}
	f->last = now;
	/* An arm is taken only when user space had read every record handed
	 * up and no segment has been counted since: its mirror then describes
	 * the connection as it is. */
	__u64 token = arm ? arm->token : 0;
	if (token && token != f->adopted && arm->armed_at == f->handed &&
	    !f->st.run[0].segments && !f->st.run[1].segments) {
		f->generation = arm->generation;
		f->client_lo = arm->client_lo;
		f->st.mirror = arm->mirror;
		/* The element may have been replaced and its memory reused
		 * while being read (hash map elements are reused as soon as
		 * they are freed): taken only if its token did not change. */
		asm volatile("" ::: "memory");
		if (arm->token == token) {
			f->adopted = token;
			f->armed = 1;
		}
	}
	if (f->armed) {
		__u32 side = (src_lo != 0) == (f->client_lo != 0) ? 0 : 1;
		/* A super-packet comes up whole, for user space to count as its
		 * wire segments (as pipeline::wire_segments does). */
		int may_count = r->gso_size == 0 || s.len <= r->gso_size;
		int admission =
			tcpx_admit(&f->st.mirror, &s, side, now, &f->st.run[side], may_count);
		if (admission == TCPX_COUNTED) {
			bpf_spin_unlock(&f->lock);
			return COUNT_COUNTED;
		}
		if (admission == TCPX_OTHER)
			f->armed = 0;
		take_runs(f, taken);
	} else {
		taken->run[0].segments = 0;
		taken->run[1].segments = 0;
	}
	r->flow_seq = number(f);
	r->armed = f->armed;
	__u32 generation = f->generation;
	__u8 client_lo = f->client_lo;
	bpf_spin_unlock(&f->lock);

	hand_up_runs(taken, &key, generation, client_lo, now);
	return COUNT_HAND_UP;
}

/* Hands up the record `r` of a segment taken at `hook` at `now`, whose
 * status is `status`; when `counting`, through tcpx_count(), which may
 * count it instead.
 *
 * Records are written without waking the reader, which looks at the ring
 * every 10 ms when it finds it empty (src/capture/xdp.rs). The ring
 * buffer's default, a wakeup whenever the reader has caught up, costs an
 * interrupt per packet with a reader that keeps up: measured at about 3 us
 * of program time per packet on this project's VMs (docs/performance.md).
 * Asking how much waits, to wake the reader only past a threshold, read a
 * cache line the reader writes and cost 50 ns per packet. */
static __always_inline void hand_up(struct tcpx_record *r, int status, __u8 hook, int counting,
				    __u64 now)
{
	r->status = status;
	r->hook = hook;
	r->ts_ns = now;
	if (counting && status == TCPX_OK &&
	    tcpx_count(r, hook == TCPX_XDP_INGRESS ? TAKEN_XDP : TAKEN_TC) == COUNT_COUNTED)
		return;
	if (bpf_ringbuf_output(&tcpx_events, r, sizeof(*r), BPF_RB_NO_WAKEUP) != 0)
		count_lost();
}

/* The XDP programs' step: the frame's record handed up (counted, when
 * `counting`), taken at `now`, or (0) at the clock's time when summarised. */
static __always_inline int on_ingress(struct xdp_md *ctx, int counting, __u64 now)
{
	struct tcpx_record r = {};
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	int status = summarise(data, end, bpf_xdp_get_buff_len(ctx), &r);
	if (status >= 0) {
		r.ifindex = ctx->ingress_ifindex;
		hand_up(&r, status, TCPX_XDP_INGRESS, counting, now ? now : bpf_ktime_get_ns());
	}
	return XDP_PASS;
}

/* What user space gives tcpx_flush, as the frame it runs on. */
struct tcpx_flush_args {
	__u64 now;  /* the time; 0: the clock's */
	__u64 idle; /* forget connections with no segment for longer (0: never) */
};

/* One connection of tcpx_flush's walk. */
static long flush_one(void *map, struct tcpx_flow_key *key, struct tcpx_flow *f,
		      struct tcpx_flush_args *ctx)
{
	__u32 slot = TAKEN_FLUSH;
	struct tcpx_taken *taken = bpf_map_lookup_elem(&tcpx_taken, &slot);
	if (!taken)
		return 1;
	bpf_spin_lock(&f->lock);
	if (!f->st.run[0].segments && !f->st.run[1].segments) {
		/* A new entry not yet locked has no time: not idle. */
		int idle = ctx->idle && f->last && (__s64)(ctx->now - f->last) > (__s64)ctx->idle;
		if (idle)
			f->dead = 1;
		bpf_spin_unlock(&f->lock);
		/* Nothing waits to be handed up for it. Should it come back, its
		 * entry starts again, its records numbered from 1, unarmed. */
		if (idle) {
			bpf_map_delete_elem(&tcpx_flows, key);
			bpf_map_delete_elem(&tcpx_arms, key);
		}
		return 0;
	}
	take_runs(f, taken);
	__u32 generation = f->generation;
	__u8 client_lo = f->client_lo;
	bpf_spin_unlock(&f->lock);
	hand_up_runs(taken, key, generation, client_lo, ctx->now);
	return 0;
}

/* Hands up the runs of every connection the counting programs keep, and
 * forgets those idle for longer than asked: the body of each object's
 * tcpx_flush, run by user space with BPF_PROG_TEST_RUN on a frame that
 * starts with a struct tcpx_flush_args (and is at least 14 bytes long),
 * never attached. */
static __always_inline int flush(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct tcpx_flush_args *args = data;
	if ((void *)(args + 1) > end)
		return XDP_ABORTED;
	struct tcpx_flush_args c = *args;
	if (!c.now)
		c.now = bpf_ktime_get_ns();
	bpf_for_each_map_elem(&tcpx_flows, flush_one, &c, 0);
	return XDP_PASS;
}

#endif

/* The ring buffer every record goes into, and its count of records lost,
 * for the programs of tcpx.bpf.c and the checks of count.h. */
#ifndef TCPX_RING_H
#define TCPX_RING_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* Size set by user space at load time (--xdp-ring-size). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 24);
} tcpx_events SEC(".maps");

/* Records lost because the ring buffer was full, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} tcpx_drops SEC(".maps");

/* `n` frames lost: records, or the segments of a run. */
static __always_inline void count_lost_n(__u64 n)
{
	__u32 key = 0;
	__u64 *lost = bpf_map_lookup_elem(&tcpx_drops, &key);
	if (lost)
		__sync_fetch_and_add(lost, n);
}

static __always_inline void count_lost(void)
{
	count_lost_n(1);
}

#endif

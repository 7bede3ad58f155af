/* tcp-exporter's kernel side (`--backend xdp`): summarise the headers of
 * every TCP segment an interface receives (XDP) and sends (TC egress) into a
 * fixed-size record (record.h) in a BPF ring buffer. Nothing is changed and
 * nothing is dropped: XDP returns XDP_PASS, TC returns TC_ACT_UNSPEC (pass,
 * and let any later program in the chain run).
 *
 * Only parsing lives here (summarise.h). Length rules, option parsing and
 * everything above them run in user space on the same code as the frame
 * decoder. (steady.h has a C copy of the length rule, the option walk and
 * the analysis's steady rules, for the kernel counting to come; a test
 * holds it to the Rust code.)
 * Packets that are not TCP pass without a record; TCP packets whose
 * headers do not hold together get a record whose status says why.
 *
 * Built by build.rs with clang when the cargo feature `xdp` is on. */

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "record.h"
#include "summarise.h"

/* Linear bytes the TC program asks for when the headers are not all in the
 * skb's linear part: Ethernet, two tags, IPv6 with a few extension
 * headers, TCP with full options. */
#define TC_PULL_LEN 192

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

/* Records are written without waking the reader, which looks at the ring
 * every 10 ms when it finds it empty (src/capture/xdp.rs). The ring
 * buffer's default, a wakeup whenever the reader has caught up, costs an
 * interrupt per packet with a reader that keeps up: measured at about 3 us
 * of program time per packet on this project's VMs (docs/performance.md).
 * Asking how much waits, to wake the reader only past a threshold, read a
 * cache line the reader writes and cost 50 ns per packet. */
static __always_inline void emit(struct tcpx_record *r, int status, __u8 hook)
{
	r->status = status;
	r->hook = hook;
	r->ts_ns = bpf_ktime_get_ns();
	if (bpf_ringbuf_output(&tcpx_events, r, sizeof(*r), BPF_RB_NO_WAKEUP) != 0) {
		__u32 key = 0;
		__u64 *lost = bpf_map_lookup_elem(&tcpx_drops, &key);
		if (lost)
			__sync_fetch_and_add(lost, 1);
	}
}

SEC("xdp")
int tcpx_xdp(struct xdp_md *ctx)
{
	struct tcpx_record r = {};
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	int status = summarise(data, end, bpf_xdp_get_buff_len(ctx), &r);
	if (status >= 0) {
		r.ifindex = ctx->ingress_ifindex;
		emit(&r, status, TCPX_XDP_INGRESS);
	}
	return XDP_PASS;
}

/* Whether the headers summarise() reads (up to the end of the TCP header)
 * lie in [data, end): on TC, the skb's linear part. A packet that is surely
 * not TCP counts as yes: there is nothing to pull for it. */
static __always_inline int headers_linear(__u8 *p, void *end)
{
	__u32 off;
	__u16 proto;
	if (link_header(p, end, &off, &proto) != 0)
		return 0;
	__u8 *l3 = p + off;
	__u32 ip_len;
	if (proto == bpf_htons(ETH_P_IP)) {
		if ((void *)(l3 + 20) > end)
			return 0;
		if (l3[9] != PROTO_TCP)
			return 1;
		ip_len = (l3[0] & 0x0f) * 4;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		if ((void *)(l3 + 40) > end)
			return 0;
		if (is_ipv6_extension(l3[6]))
			/* Extension headers: pulled, to be followed. */
			return 0;
		if (l3[6] != PROTO_TCP)
			return 1;
		ip_len = 40;
	} else {
		return 1;
	}
	__u8 *t = l3 + ip_len;
	if ((void *)(t + 20) > end)
		return 0;
	return (void *)(t + (t[12] >> 4) * 4) <= end;
}

SEC("classifier")
int tcpx_tc_egress(struct __sk_buff *skb)
{
	struct tcpx_record r = {};
	__u32 len = skb->len;
	__u32 want = len < TC_PULL_LEN ? len : TC_PULL_LEN;
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	/* TCP keeps a segment's payload outside the linear part and its headers
	 * inside. Pulling copies (the skb is a clone of the socket's), so it is
	 * only for the rare packet whose headers run past the linear part. */
	if (data + want > end && !headers_linear(data, end)) {
		bpf_skb_pull_data(skb, want);
		data = (void *)(long)skb->data;
		end = (void *)(long)skb->data_end;
	}
	int status = summarise(data, end, len, &r);
	if (status >= 0) {
		r.ifindex = skb->ifindex;
		r.gso_size = skb->gso_size;
		r.gso_segs = skb->gso_segs;
		emit(&r, status, TCPX_TC_EGRESS);
	}
	return TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "Apache-2.0";

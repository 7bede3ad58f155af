/* tcp-exporter's kernel side (`--backend xdp`): summarise the headers of
 * every TCP segment an interface receives (XDP) and sends (TC egress) into a
 * fixed-size record (record.h) in a BPF ring buffer. Nothing is changed and
 * nothing is dropped: XDP returns XDP_PASS, TC returns TC_ACT_UNSPEC (pass,
 * and let any later program in the chain run).
 *
 * Only parsing lives here (summarise.h). Length rules, option parsing and
 * everything above them run in user space on the same code as the frame
 * decoder. The counting programs (tcpx_xdp_count, tcpx_tc_egress_count,
 * tcpx_flush; count.h) also count the segments of armed connections that
 * change nothing the analysis looks at (steady.h, a C copy of its steady
 * rules that a test holds to the Rust code) and hand them up as runs.
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
#include "count.h"

/* Linear bytes the TC program asks for when the headers are not all in the
 * skb's linear part: Ethernet, two tags, IPv6 with a few extension
 * headers, TCP with full options. */
#define TC_PULL_LEN 192

SEC("xdp")
int tcpx_xdp(struct xdp_md *ctx)
{
	return on_ingress(ctx, 0, 0);
}

/* tcpx_xdp, counting steady segments in the kernel (count.h). */
SEC("xdp")
int tcpx_xdp_count(struct xdp_md *ctx)
{
	return on_ingress(ctx, 1, 0);
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

static __always_inline int on_egress(struct __sk_buff *skb, int counting)
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
		hand_up(&r, status, TCPX_TC_EGRESS, counting, bpf_ktime_get_ns());
	}
	return TC_ACT_UNSPEC;
}

SEC("classifier")
int tcpx_tc_egress(struct __sk_buff *skb)
{
	return on_egress(skb, 0);
}

/* tcpx_tc_egress, counting steady segments in the kernel (count.h). */
SEC("classifier")
int tcpx_tc_egress_count(struct __sk_buff *skb)
{
	return on_egress(skb, 1);
}

/* count.h's flush, last in the object: `ip link set ... obj tcpx.bpf.o sec
 * xdp` attaches the first program of the section, tcpx_xdp. */
SEC("xdp")
int tcpx_flush(struct xdp_md *ctx)
{
	return flush(ctx);
}

char LICENSE[] SEC("license") = "Apache-2.0";

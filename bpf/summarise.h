/* Finding the headers of a TCP segment in a frame, for every kernel program
 * of tcp-exporter (bpf/tcpx.bpf.c, and the check of the steady rules,
 * bpf/steady_check.bpf.c): summarise() fills a record (record.h) with the
 * fields user space reads, or says why it cannot. */
#ifndef TCPX_SUMMARISE_H
#define TCPX_SUMMARISE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "record.h"

/* Not a record: the packet is not TCP... */
#define SKIP (-1)
/* ...or shows too little to tell (on TC: of its linear part). */
#define SHORT (-2)

#define PROTO_TCP 6
/* Stacked VLAN tags followed, as the frame decoder does. */
#define MAX_VLAN_TAGS 4
/* IPv6 extension headers followed, as the frame decoder does. */
#define MAX_IPV6_EXTENSIONS 8
/* ...and at most this many bytes of IPv6 header with them. */
#define MAX_IPV6_HEADERS_LEN 1024

static __always_inline int is_vlan(__u16 proto)
{
	return proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD) ||
	       proto == bpf_htons(0x9100);
}

/* An IPv6 extension header the frame decoder follows: hop-by-hop,
 * routing, fragment, AH, destination options, mobility, HIP, shim6. */
static __always_inline int is_ipv6_extension(__u8 next)
{
	switch (next) {
	case 0: case 43: case 44: case 51: case 60: case 135: case 139: case 140:
		return 1;
	default:
		return 0;
	}
}

/* A packet of protocol `proto` whose payload starts at `l4`: an overlay
 * the frame decoder would open (IP in IP, GRE, UDP to the default VXLAN and
 * Geneve ports; --vxlan-ports and --geneve-ports are not seen here), which
 * gets a record that says so; anything else gets none. */
static __always_inline int overlay(__u8 proto, __u8 *l4, void *end)
{
	if (proto == 4 || proto == 41 || proto == 47)
		return TCPX_UNOPENED_TUNNEL;
	if (proto == 17 && (void *)(l4 + 4) <= end) {
		__u16 port = bpf_ntohs(*(__u16 *)(l4 + 2));
		if (port == 4789 || port == 8472 || port == 6081)
			return TCPX_UNOPENED_TUNNEL;
	}
	return SKIP;
}

/* Ethernet with up to MAX_VLAN_TAGS tags: sets the offset of the layer-3
 * header and its ethertype (network order). Returns 0, or SHORT when the
 * link header runs past `end`. */
static __always_inline int link_header(__u8 *p, void *end, __u32 *off, __u16 *proto)
{
	if ((void *)(p + 14) > end)
		return SHORT;
	__u16 kind = *(__u16 *)(p + 12);
	__u32 at = 14;
#pragma unroll
	for (int i = 0; i < MAX_VLAN_TAGS; i++) {
		if (!is_vlan(kind))
			break;
		if ((void *)(p + at + 4) > end)
			return SHORT;
		kind = *(__u16 *)(p + at + 2);
		at += 4;
	}
	*off = at;
	*proto = kind;
	return 0;
}

/* IPv4: where TCP starts, or why not. */
/* An IPv4 header not all captured: cut by the capture, unless its stated
 * total length is too short for it, which is the packet's own fault (as
 * the frame decoder says). */
static __always_inline int ipv4_short(__u8 *l3, void *end)
{
	if ((void *)(l3 + 4) <= end) {
		__u32 ihl = (l3[0] & 0x0f) * 4;
		__u16 stated = bpf_ntohs(*(__u16 *)(l3 + 2));
		if (ihl >= 20 && stated != 0 && stated < ihl)
			return TCPX_BAD_IP_LENGTH;
	}
	return TCPX_TRUNCATED_IP;
}

static __always_inline int ipv4(__u8 *l3, void *end, struct tcpx_record *r)
{
	if ((void *)(l3 + 10) > end)
		return SHORT;
	if (l3[9] != PROTO_TCP) {
		/* An overlay, if its header holds together and it is no
		 * fragment (which the frame decoder names as such). */
		if (l3[0] >> 4 != 4 || (void *)(l3 + 20) > end)
			return SHORT;
		__u32 hl = (l3[0] & 0x0f) * 4;
		if (hl < 20 || (bpf_ntohs(*(__u16 *)(l3 + 6)) & 0x3fff))
			return SKIP;
		/* Where its payload starts: at most 60 bytes in. */
		return overlay(l3[9], l3 + hl, end);
	}
	if (l3[0] >> 4 != 4)
		return TCPX_BAD_IP_VERSION;
	if ((void *)(l3 + 20) > end)
		return ipv4_short(l3, end);
	__u32 ihl = (l3[0] & 0x0f) * 4;
	if (ihl < 20)
		return TCPX_BAD_IP_HEADER_LENGTH;
	if ((void *)(l3 + ihl) > end)
		return ipv4_short(l3, end);
	__u16 frag = bpf_ntohs(*(__u16 *)(l3 + 6));
	__u16 stated = bpf_ntohs(*(__u16 *)(l3 + 2));
	/* A stated length too short for the header is judged first (in user
	 * space, as bad_ip_length), as the frame decoder does. */
	if ((frag & 0x3fff) && !(stated != 0 && stated < ihl))
		return TCPX_IP_FRAGMENT;
	r->ip_version = 4;
	r->dont_fragment = (frag & 0x4000) != 0;
	r->ip_stated_len = stated;
	r->ip_header_len = ihl;
	r->src[10] = r->src[11] = 0xff;
	r->dst[10] = r->dst[11] = 0xff;
	__builtin_memcpy(&r->src[12], l3 + 12, 4);
	__builtin_memcpy(&r->dst[12], l3 + 16, 4);
	return TCPX_OK;
}

/* IPv6 with its extension-header chain: where TCP starts, or why not. */
static __always_inline int ipv6(__u8 *l3, void *end, struct tcpx_record *r)
{
	if ((void *)(l3 + 40) > end)
		return SHORT;
	if (l3[0] >> 4 != 6)
		return TCPX_BAD_IP_VERSION;
	__u32 payload = bpf_ntohs(*(__u16 *)(l3 + 4));
	__u8 next = l3[6];
	__u32 at = 40;
	int found = 0;
	for (int i = 0; i <= MAX_IPV6_EXTENSIONS; i++) {
		if (next == PROTO_TCP) {
			found = 1;
			break;
		}
		__u8 *h = l3 + at;
		if (!is_ipv6_extension(next))
			/* Not TCP, and not an extension header that leads to it:
			 * an overlay, or nothing of ours. */
			return overlay(next, h, end);
		/* Every extension header is at least 8 bytes long. */
		if ((void *)(h + 8) > end)
			return TCPX_TRUNCATED_IP;
		__u32 len;
		switch (next) {
		case 0:   /* hop-by-hop */
		case 43:  /* routing */
		case 60:  /* destination options */
		case 135: /* mobility */
		case 139: /* HIP */
		case 140: /* shim6 */
			len = (h[1] + 1) * 8;
			break;
		case 44: /* fragment: only an atomic one holds a whole segment */
			if (bpf_ntohs(*(__u16 *)(h + 2)) & 0xfff9)
				return h[0] == PROTO_TCP ? TCPX_IP_FRAGMENT : SKIP;
			len = 8;
			break;
		case 51: /* authentication header */
			len = (h[1] + 2) * 4;
			break;
		default:
			return SKIP;
		}
		/* A header that is not all captured, and runs past the stated
		 * payload length too, is the packet's own fault, as the frame
		 * decoder says. (One that is captured but runs past the stated
		 * length is judged in user space from the record.) */
		if ((void *)(h + len) > end)
			return payload != 0 && at + len > payload + 40 ?
				       TCPX_BAD_IP_LENGTH :
				       TCPX_TRUNCATED_IP;
		next = h[0];
		at += len;
		/* Headers past this point are not followed (and the bound keeps
		 * the offset provably small for the verifier): what follows is
		 * known only if it is neither TCP nor another extension. */
		if (at > MAX_IPV6_HEADERS_LEN)
			return next == PROTO_TCP || is_ipv6_extension(next) ?
				       TCPX_IPV6_EXTENSION_CHAIN :
				       SKIP;
	}
	if (!found)
		return TCPX_IPV6_EXTENSION_CHAIN;
	r->ip_version = 6;
	r->ip_stated_len = payload ? payload + 40 : 0;
	r->ip_header_len = at;
	__builtin_memcpy(r->src, l3 + 8, 16);
	__builtin_memcpy(r->dst, l3 + 24, 16);
	return TCPX_OK;
}

/* Fills `r` from the frame in [data, end) whose wire length is `wire_len`.
 * Returns a tcpx_status, SKIP or SHORT. */
static __always_inline int summarise(void *data, void *end, __u32 wire_len,
				     struct tcpx_record *r)
{
	__u8 *p = data;
	__u32 off;
	__u16 proto;
	if (link_header(p, end, &off, &proto) != 0)
		return SHORT;
	__u8 *l3 = p + off;
	int status;
	if (proto == bpf_htons(ETH_P_IP))
		status = ipv4(l3, end, r);
	else if (proto == bpf_htons(ETH_P_IPV6))
		status = ipv6(l3, end, r);
	else
		return SKIP;
	if (status != TCPX_OK)
		return status;
	r->l3_len = wire_len > off ? wire_len - off : 0;
	/* A stated length too short for the IP headers is the first fault the
	 * frame decoder finds, before any in TCP: user space judges it from
	 * this record. */
	if (r->ip_stated_len != 0 && r->ip_stated_len < r->ip_header_len)
		return TCPX_OK;

	/* The mask changes nothing (at most 1024) but tells the verifier. */
	__u8 *t = l3 + (r->ip_header_len & 0x7ff);
	/* A TCP header (by its data offset when captured, else the 20-byte
	 * minimum) past what the stated length leaves is the packet's own
	 * fault, judged before whether the header was captured, as the frame
	 * decoder judges it. */
	if (r->ip_stated_len != 0) {
		__u32 needed = 20;
		if ((void *)(t + 13) <= end && (t[12] >> 4) >= 5)
			needed = (t[12] >> 4) * 4;
		if (needed > r->ip_stated_len - r->ip_header_len)
			return TCPX_BAD_TCP_HEADER_LENGTH;
	}
	if ((void *)(t + 20) > end)
		return TCPX_TRUNCATED_TCP;
	__u32 doff = (t[12] >> 4) * 4;
	if (doff < 20)
		return TCPX_BAD_TCP_HEADER_LENGTH;
	if ((void *)(t + doff) > end)
		return TCPX_TRUNCATED_TCP;
	r->src_port = bpf_ntohs(*(__u16 *)(t + 0));
	r->dst_port = bpf_ntohs(*(__u16 *)(t + 2));
	r->seq = bpf_ntohl(*(__u32 *)(t + 4));
	r->ack = bpf_ntohl(*(__u32 *)(t + 8));
	r->flags = t[13];
	r->window = bpf_ntohs(*(__u16 *)(t + 14));
	r->tcp_header_len = doff;
	__u32 optlen = doff - 20;
	r->options_len = optlen;
	/* Options come in 4-byte words (the data offset counts words). */
#pragma unroll
	for (int i = 0; i < TCPX_MAX_OPTIONS / 4; i++) {
		if (i * 4 >= optlen)
			break;
		__u8 *w = t + 20 + i * 4;
		if ((void *)(w + 4) > end)
			return TCPX_TRUNCATED_TCP;
		__builtin_memcpy(&r->options[i * 4], w, 4);
	}
	return TCPX_OK;
}

#endif

/* The record the kernel programs hand to user space: one per TCP segment,
 * fixed size, written into a BPF ring buffer. src/decode/summary.rs mirrors
 * this layout field for field; clang checks the offsets below when it builds
 * the programs, and a Rust test checks the same lines against its own
 * offsets. Change both or neither.
 *
 * Numbers are in host byte order, addresses in network order (IPv4 mapped
 * into ::ffff:0:0/96). Sizes are what the headers state, so that user space
 * applies the same length rules as the frame decoder. */
#ifndef TCPX_RECORD_H
#define TCPX_RECORD_H

#include <linux/types.h>

#define TCPX_MAX_OPTIONS 40

/* Why a TCP-looking packet could not be summarised. 0: it was. The values
 * map onto tcp_exporter_decode_errors_total{reason}. */
enum tcpx_status {
	TCPX_OK = 0,
	TCPX_TRUNCATED_IP = 1,
	TCPX_TRUNCATED_TCP = 2,
	TCPX_BAD_IP_VERSION = 3,
	TCPX_BAD_IP_HEADER_LENGTH = 4,
	TCPX_BAD_TCP_HEADER_LENGTH = 5,
	TCPX_IPV6_EXTENSION_CHAIN = 6,
	TCPX_IP_FRAGMENT = 7,
	TCPX_BAD_IP_LENGTH = 8,
	/* An overlay (IP in IP, GRE, UDP to VXLAN's or Geneve's port): these
	 * programs do not open it; counted, not analysed. */
	TCPX_UNOPENED_TUNNEL = 9,
};

/* Where the record was taken. */
enum tcpx_hook {
	TCPX_XDP_INGRESS = 0,
	TCPX_TC_EGRESS = 1,
	/* Not a segment: a run of segments counted in the kernel, a struct
	 * tcpx_run_record (count.h). */
	TCPX_STEADY_RUN = 2,
};

struct tcpx_record {
	__u64 ts_ns;          /*   0 bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u32 ifindex;        /*   8 */
	__u32 l3_len;         /*  12 bytes on the wire from the IP header on */
	__u32 ip_stated_len;  /*  16 IPv4 total length; IPv6 payload length + 40,
	                       *     or 0 when the payload length is 0 */
	__u32 seq;            /*  20 */
	__u32 ack;            /*  24 */
	__u16 ip_header_len;  /*  28 IPv4 header, or IPv6 with extensions */
	__u16 tcp_header_len; /*  30 data offset * 4 */
	__u16 src_port;       /*  32 */
	__u16 dst_port;       /*  34 */
	__u16 window;         /*  36 raw, unscaled */
	__u16 gso_size;       /*  38 TC: skb's GSO segment size, else 0 */
	__u16 gso_segs;       /*  40 TC: skb's GSO segment count, else 0 */
	__u8 flags;           /*  42 TCP flags byte (CWR..FIN) */
	__u8 ip_version;      /*  43 4 or 6 */
	__u8 dont_fragment;   /*  44 IPv4 DF bit */
	__u8 status;          /*  45 enum tcpx_status */
	__u8 hook;            /*  46 enum tcpx_hook */
	__u8 options_len;     /*  47 bytes of options[] that hold options */
	__u8 src[16];         /*  48 */
	__u8 dst[16];         /*  64 */
	__u8 options[TCPX_MAX_OPTIONS]; /* 80 the TCP option bytes as sent */
	__u32 flow_seq;       /* 120 the record's number among its
	                       *     connection's, from 1, when the kernel
	                       *     counts (count.h); else 0 */
	__u8 armed;           /* 124 with a flow_seq: the kernel goes on
	                       *     counting the connection's steady segments
	                       *     after this one (count.h) */
	__u8 reserved[3];     /* 125 zero */
};                            /* 128 */

_Static_assert(sizeof(struct tcpx_record) == 128, "record size");
#define TCPX_AT(field, offset) \
	_Static_assert(__builtin_offsetof(struct tcpx_record, field) == offset, #field)
TCPX_AT(ts_ns, 0);
TCPX_AT(ifindex, 8);
TCPX_AT(l3_len, 12);
TCPX_AT(ip_stated_len, 16);
TCPX_AT(seq, 20);
TCPX_AT(ack, 24);
TCPX_AT(ip_header_len, 28);
TCPX_AT(tcp_header_len, 30);
TCPX_AT(src_port, 32);
TCPX_AT(dst_port, 34);
TCPX_AT(window, 36);
TCPX_AT(gso_size, 38);
TCPX_AT(gso_segs, 40);
TCPX_AT(flags, 42);
TCPX_AT(ip_version, 43);
TCPX_AT(dont_fragment, 44);
TCPX_AT(status, 45);
TCPX_AT(hook, 46);
TCPX_AT(options_len, 47);
TCPX_AT(src, 48);
TCPX_AT(dst, 64);
TCPX_AT(options, 80);
TCPX_AT(flow_seq, 120);
TCPX_AT(armed, 124);
TCPX_AT(reserved, 125);

#endif

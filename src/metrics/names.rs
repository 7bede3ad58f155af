//! Every metric name, help text and label list, in one place. These names
//! are a contract (DESIGN.md): dashboards and alerts depend on them.

/// The kind of a metric family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric family: name, help, kind and the labels it carries beyond the
/// traffic labels (`interface`, `client`, `server`, `server_port`).
#[derive(Clone, Copy, Debug)]
pub struct Def {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
}

const fn def(name: &'static str, kind: Kind, help: &'static str) -> Def {
    Def { name, help, kind }
}

use Kind::*;

pub const ISTIO_OPENED: Def = def(
    "istio_tcp_connections_opened_total",
    Counter,
    "Istio's: TCP connections opened (response_flags=UF: refused or unanswered), by reporter.",
);
pub const ISTIO_CLOSED: Def = def(
    "istio_tcp_connections_closed_total",
    Counter,
    "Istio's: TCP connections closed (response_flags=UF: refused or unanswered), by reporter.",
);
pub const ISTIO_SENT_BYTES: Def = def(
    "istio_tcp_sent_bytes_total",
    Counter,
    "Istio's: bytes sent during response (server to client), TCP payload less retransmissions.",
);
pub const ISTIO_RECEIVED_BYTES: Def = def(
    "istio_tcp_received_bytes_total",
    Counter,
    "Istio's: bytes received during request (client to server), TCP payload less retransmissions.",
);

pub const PACKETS: Def = def("tcp_packets_total", Counter, "TCP segments seen.");
pub const PAYLOAD_BYTES: Def = def(
    "tcp_payload_bytes_total",
    Counter,
    "TCP payload bytes, retransmissions included.",
);
pub const IP_BYTES: Def = def(
    "tcp_ip_bytes_total",
    Counter,
    "IP packet bytes of TCP segments, headers included.",
);
pub const RESETS: Def = def("tcp_resets_total", Counter, "TCP segments with RST set.");
pub const DONT_FRAGMENT: Def = def(
    "tcp_dont_fragment_packets_total",
    Counter,
    "IPv4 packets carrying TCP with the don't-fragment bit set.",
);
pub const SYN_WINDOW_SCALE: Def = def(
    "tcp_syn_window_scale_total",
    Counter,
    "Window-scale shift offered in SYN and SYN/ACK segments (shift=none: no window scaling offered; shift=unknown: the snap length cut the options before a window-scale option).",
);
pub const OPENED: Def = def(
    "tcp_connections_opened_total",
    Counter,
    "Handshakes seen: SYN answered by SYN/ACK.",
);
pub const FAILED: Def = def(
    "tcp_connections_failed_total",
    Counter,
    "Connection attempts that never opened: SYN answered by RST (refused), or by nothing (unanswered).",
);
pub const CLOSED: Def = def(
    "tcp_connections_closed_total",
    Counter,
    "Connections that ended: FIN from both sides, RST, or idle timeout.",
);
pub const ACTIVE: Def = def(
    "tcp_connections_active",
    Gauge,
    "Connections tracked now and not yet closed.",
);
pub const DURATION: Def = def(
    "tcp_connection_duration_seconds",
    Histogram,
    "Lifetime of closed connections whose SYN was seen, from SYN to close.",
);
pub const HANDSHAKE_RTT: Def = def(
    "tcp_handshake_rtt_seconds",
    Histogram,
    "Handshake round-trip time from the capture point: leg=server is SYN to SYN/ACK, leg=client is SYN/ACK to the client's ACK.",
);

pub const RETRANSMITTED_SEGMENTS: Def = def(
    "tcp_retransmitted_segments_total",
    Counter,
    "Retransmitted segments, each counted once by its most specific kind (spurious_retransmission: the data was already acknowledged; fast_retransmission: after duplicate ACKs; retransmission: the rest), as Wireshark's TCP analysis classifies them.",
);
pub const RETRANSMITTED_BYTES: Def = def(
    "tcp_retransmitted_bytes_total",
    Counter,
    "Payload bytes of retransmitted segments (all kinds).",
);
pub const OUT_OF_ORDER: Def = def(
    "tcp_out_of_order_segments_total",
    Counter,
    "Segments carrying data before data the capture saw earlier (tcp.analysis.out_of_order).",
);
pub const DUPLICATE_ACKS: Def = def(
    "tcp_duplicate_acks_total",
    Counter,
    "Duplicate ACKs: no data, same ACK and window as the previous segment (tcp.analysis.duplicate_ack).",
);
pub const LOST_SEGMENTS: Def = def(
    "tcp_lost_segments_total",
    Counter,
    "Gaps: a segment starting beyond the next expected sequence number, so data was not seen (tcp.analysis.lost_segment).",
);
pub const ZERO_WINDOW: Def = def(
    "tcp_zero_window_segments_total",
    Counter,
    "Segments advertising a zero receive window (tcp.analysis.zero_window).",
);
pub const ZERO_WINDOW_PROBES: Def = def(
    "tcp_zero_window_probes_total",
    Counter,
    "Zero-window probes (tcp.analysis.zero_window_probe).",
);
pub const WINDOW_FULL: Def = def(
    "tcp_window_full_segments_total",
    Counter,
    "Segments that fill the receiver's advertised window (tcp.analysis.window_full).",
);
pub const KEEPALIVES: Def = def(
    "tcp_keepalives_total",
    Counter,
    "Keep-alive segments (tcp.analysis.keep_alive).",
);
pub const RTT: Def = def(
    "tcp_rtt_seconds",
    Histogram,
    "Round-trip time from the capture point, from a data segment to the ACK that first covers it, never from a retransmitted segment (Karn): leg=server times the server's answer to client data, leg=client the client's answer to server data.",
);

pub const BUILD_INFO: Def = def(
    "tcp_exporter_build_info",
    Gauge,
    "Always 1; the version label says which tcp-exporter this is.",
);
pub const CAPTURE_PACKETS: Def = def(
    "tcp_exporter_capture_packets_total",
    Counter,
    "Frames the capture delivered to the exporter.",
);
pub const CAPTURE_DROPS: Def = def(
    "tcp_exporter_capture_drops_total",
    Counter,
    "Frames lost before the exporter saw them, as the capture backend reports them (stage=kernel: no room in the capture buffer or ring; stage=interface: dropped by the interface or driver; stage=ring_freeze: times an AF_PACKET ring was full, its drops being under kernel; stage=ring_error: frames skipped in a malformed ring block; stage=run_refused: segments the xdp backend counted in the kernel whose connection had left the flow table when their run came).",
);
pub const DECODE_ERRORS: Def = def(
    "tcp_exporter_decode_errors_total",
    Counter,
    "Frames that did not decode into a TCP segment, by reason.",
);
pub const TRUNCATED_SEGMENTS: Def = def(
    "tcp_exporter_truncated_segments_total",
    Counter,
    "TCP segments counted and analysed whose options the snap length cut (the fixed header was captured; options past the cut are unknown, and a SYN's window scale cut off leaves the connection's window-full check off).",
);
pub const KERNEL_COUNTED: Def = def(
    "tcp_exporter_kernel_counted_segments_total",
    Counter,
    "TCP segments the xdp backend counted in the kernel (--xdp-count) and handed up in runs instead of one record each; they are in tcp_exporter_capture_packets_total and analysed as if handed up one by one.",
);
pub const KERNEL_COUNT_EVENTS: Def = def(
    "tcp_exporter_kernel_count_events_total",
    Counter,
    "What counting in the kernel (xdp --xdp-count) did, by event: arm (a connection armed to be counted), arm_refused (the kernel's map of arms had no room), flow_refused (a segment whose connection the kernel's map had no room for, handed up whole), arm_mismatch (an arm not written: the analysis did not take the record's segment), gap (a record handed on after waiting 1 ms for one numbered before it: lost to a full ring, counted as a kernel drop, or that late), flush_error (the kernel could not be asked for its runs).",
);
pub const TUNNEL_PACKETS: Def = def(
    "tcp_exporter_tunnel_packets_total",
    Counter,
    "TCP segments found inside an overlay encapsulation and analysed as the connection inside, by kind (vxlan, geneve, ip_in_ip, gre); a segment inside two counts once for each.",
);
pub const FLOWS_TRACKED: Def = def(
    "tcp_exporter_flows_tracked",
    Gauge,
    "Flows in the flow table now, closed ones lingering included.",
);
pub const FLOW_EVICTIONS: Def = def(
    "tcp_exporter_flow_evictions_total",
    Counter,
    "Flows removed from the flow table before they closed (reason=idle_timeout: no segment for --flow-idle-timeout; reason=table_full: made room under --max-flows).",
);
pub const SERIES_OVERFLOW: Def = def(
    "tcp_exporter_series_overflow_total",
    Counter,
    "Connections whose label set did not fit under --max-series (label sets across the exporter) and were counted under client=\"other\", server=\"other\".",
);
pub const SERIES_TRACKED: Def = def(
    "tcp_exporter_series_tracked",
    Gauge,
    "Label sets of the traffic metrics held now (kind=own: counted against --max-series; kind=folded: the client=\"other\", server=\"other\" series).",
);
pub const SERIES_EXPIRED: Def = def(
    "tcp_exporter_series_expired_total",
    Counter,
    "Label sets removed from the output because all their connections had left and nothing changed in them for --series-ttl (or their interface had been gone that long).",
);
pub const SERIES_RETIRED_DROPPED: Def = def(
    "tcp_exporter_series_retired_dropped_total",
    Counter,
    "Expired label sets whose last counts could not be kept until the next scrape (more than 4096 per worker between two scrapes): a sum over several label sets (a label left out, Istio's metrics) may step down once for each.",
);
pub const OTLP_EXPORTS: Def = def(
    "tcp_exporter_otlp_exports_total",
    Counter,
    "OTLP exports (--otlp-endpoint), by signal and result (ok, failed: not answered, refused, or partly rejected).",
);
pub const OTLP_LOG_RECORDS: Def = def(
    "tcp_exporter_otlp_log_records_total",
    Counter,
    "Flow-log records sent as OTLP logs (--otlp-logs), and dropped because their queue (--otlp-log-queue) was full.",
);
pub const LONG_CONNECTIONS: Def = def(
    "tcp_exporter_long_connections",
    Gauge,
    "Connections older than --long-connections shown now with their own tcp_long_connection_* series.",
);
pub const LONG_OVERFLOW: Def = def(
    "tcp_exporter_long_connections_overflow_total",
    Counter,
    "Connections that became older than --long-connections while --max-long-connections were already shown, and got no series.",
);
pub const FLOW_LOG_RECORDS: Def = def(
    "tcp_exporter_flow_log_records_total",
    Counter,
    "Flow-log records written (--flow-log).",
);
pub const FLOW_LOG_DROPS: Def = def(
    "tcp_exporter_flow_log_drops_total",
    Counter,
    "Flow-log records lost (reason=queue_full: the writer was behind and its queue full; reason=write_error: writing failed, e.g. a full disk).",
);
pub const CONNECTION_TABLE: Def = def(
    "tcp_exporter_connection_table_connections",
    Gauge,
    "Connections in the live connection table (/connections) now: every tracked one, and those closed within the last 60 s (at most 4,096 of them per worker).",
);
pub const CONNECTION_TABLE_CLOSED_DROPPED: Def = def(
    "tcp_exporter_connection_table_closed_dropped_total",
    Counter,
    "Closed connections dropped from the live connection table before their 60 s were over, to keep at most 4,096 per worker.",
);
pub const KUBERNETES_OBJECTS: Def = def(
    "tcp_exporter_kubernetes_objects",
    Gauge,
    "Objects of the cluster held in the identity index now, by kind (pods, services, nodes); with --kubernetes.",
);
pub const KUBERNETES_SYNCED: Def = def(
    "tcp_exporter_kubernetes_synced",
    Gauge,
    "1 once the first list of this kind completed; until every kind is, addresses the index does not know read `unknown`.",
);
pub const KUBERNETES_WATCH_ERRORS: Def = def(
    "tcp_exporter_kubernetes_watch_errors_total",
    Counter,
    "Errors of the watch of this kind (the API server unreachable, RBAC refusals, a dropped watch), each survived with a backoff.",
);
pub const KUBERNETES_RELISTS: Def = def(
    "tcp_exporter_kubernetes_relists_total",
    Counter,
    "Lists of this kind after the first (410 Gone after etcd compaction, a watch that could not resume).",
);
pub const KUBERNETES_IDENTITIES_OVERFLOW: Def = def(
    "tcp_exporter_kubernetes_identities_overflow_total",
    Counter,
    "Connections whose identity found the identity table full (65,535 distinct identities) and read `other`.",
);
pub const INTERFACES_REFUSED: Def = def(
    "tcp_exporter_interfaces_refused_total",
    Counter,
    "Interfaces that matched -i but were not captured because --max-interfaces were captured already (each counted once while it stays).",
);
pub const INTERFACE_UP: Def = def(
    "tcp_exporter_interface_up",
    Gauge,
    "1 while the capture on this interface runs, 0 when it failed.",
);

pub const LONG_AGE: Def = def(
    "tcp_long_connection_age_seconds",
    Gauge,
    "Age of an open connection older than --long-connections, from its first segment seen.",
);
pub const LONG_PAYLOAD_BYTES: Def = def(
    "tcp_long_connection_payload_bytes",
    Gauge,
    "TCP payload bytes a long-lived connection carried so far, by sender, retransmissions included.",
);
pub const LONG_PACKETS: Def = def(
    "tcp_long_connection_packets",
    Gauge,
    "TCP segments of a long-lived connection so far, by sender.",
);
pub const LONG_RETRANSMITTED: Def = def(
    "tcp_long_connection_retransmitted_segments",
    Gauge,
    "Retransmitted segments (every kind) of a long-lived connection so far, by sender.",
);
pub const LONG_RTT: Def = def(
    "tcp_long_connection_rtt_seconds",
    Gauge,
    "Smoothed data round-trip time of a long-lived connection from the capture point (RFC 6298 weights), by leg, as in tcp_rtt_seconds; absent until a sample.",
);

pub const HTTP_CONNECTIONS: Def = def(
    "tcp_exporter_http_connections",
    Gauge,
    "HTTP connections open to the exporter now (bounded by the connection limit).",
);
pub const HTTP_REJECTIONS: Def = def(
    "tcp_exporter_http_rejections_total",
    Counter,
    "HTTP connections and requests the exporter turned away, by reason.",
);

/// Upper bounds of the RTT histogram buckets, in seconds: from tens of
/// microseconds (a LAN, a host's own veths) to seconds (a bad WAN path).
pub const RTT_BUCKETS: [f64; 18] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Upper bounds of the connection-duration buckets, in seconds: from a
/// millisecond (a health check) to a day (a database pool).
pub const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0,
];

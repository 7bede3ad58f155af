//! Istio's TCP metrics (`--istio-metrics`): `istio_tcp_connections_opened_total`,
//! `istio_tcp_connections_closed_total`, `istio_tcp_sent_bytes_total` and
//! `istio_tcp_received_bytes_total`, with Istio's standard labels, so that
//! Istio's own dashboards and Kiali work on a cluster without a mesh.
//!
//! Nothing here runs per packet. A connection's series key says, when the
//! connection starts, which of Istio's reporters would have reported it
//! (`reporters`): `source` where the capture point is the client pod's
//! interface, `destination` where it is the server pod's; elsewhere (the
//! uplink, `any`, a file) each end that is a pod of this node (`--node-name`),
//! or of the cluster without one, as a proxy beside every pod would. At
//! scrape time the native series are summed into Istio's label sets
//! (`IstioSeries`): the counts are the native ones, read as Envoy and
//! ztunnel count.
//!
//! - opened: handshakes seen, `response_flags="-"`; connection attempts
//!   refused or unanswered, `response_flags="UF"` (Envoy's upstream
//!   connection failure), which are closed at once as well;
//! - closed: connections that ended (FIN, RST, idle timeout), `-`;
//! - received: bytes of the request, client to server; sent: of the
//!   response, server to client, whoever reports (Envoy's and ztunnel's
//!   meaning). Application bytes: TCP payload less the retransmitted
//!   payload, as a proxy reads them from its socket.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::IpAddr;

use crate::flow::Orientation;
use crate::identity::{Identities, Identity};

use super::collector::Text;
use super::labels::Reporter;
use super::names::{self, Def};
use super::shard::PairCounters;

/// A connection's series reports as Istio's source proxy would.
pub const SOURCE: u8 = 1;
/// ... as its destination proxy would.
pub const DESTINATION: u8 = 2;
/// The server port is HBONE's (15008): an ambient mesh's mutual TLS.
pub const HBONE: u8 = 4;
const HBONE_PORT: u16 = 15_008;

/// Istio's default cluster id, for `--cluster-name`.
pub const DEFAULT_CLUSTER: &str = "Kubernetes";
/// The DNS domain of Services in `destination_service`.
pub const CLUSTER_DOMAIN: &str = "cluster.local";
const UNKNOWN: &str = "unknown";

/// What `--istio-metrics` was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IstioOptions {
    /// `--cluster-name`: the cluster of the pods and Services known.
    pub cluster: String,
    /// `--node-name`: where the capture point is not a pod's interface,
    /// the node whose pods report; `None`: every pod of the cluster.
    pub node: Option<String>,
}

/// The reporter bits (`SOURCE`, `DESTINATION`, `HBONE`) of a connection
/// seen where `reporter` says.
pub fn reporters(
    options: &IstioOptions,
    identities: &Identities,
    reporter: Reporter,
    o: &Orientation,
) -> u8 {
    let local = |ip: IpAddr| identities.is_pod_on(ip, options.node.as_deref());
    let sides = match reporter {
        Reporter::Client => SOURCE,
        Reporter::Server => DESTINATION,
        Reporter::Node => {
            let mut bits = 0;
            if local(o.client) {
                bits |= SOURCE;
            }
            if local(o.server) {
                bits |= DESTINATION;
            }
            bits
        }
    };
    if sides != 0 && o.server_port == HBONE_PORT {
        sides | HBONE
    } else {
        sides
    }
}

/// Counts of one of Istio's label sets (without `response_flags`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IstioCounts {
    pub opened: u64,
    pub failed: u64,
    pub closed: u64,
    pub sent: u64,
    pub received: u64,
}

impl IstioCounts {
    fn of(c: &PairCounters) -> IstioCounts {
        let application = |d: &super::counters::DirCounters| {
            d.payload_bytes.saturating_sub(d.retransmitted_bytes)
        };
        IstioCounts {
            opened: c.opened,
            failed: c.refused + c.unanswered,
            closed: c.closed.iter().sum(),
            received: application(&c.dir[0]),
            sent: application(&c.dir[1]),
        }
    }

    fn add(&mut self, o: &IstioCounts) {
        self.opened += o.opened;
        self.failed += o.failed;
        self.closed += o.closed;
        self.sent += o.sent;
        self.received += o.received;
    }
}

/// Istio's series, by their label string (`response_flags` aside).
#[derive(Debug, Default)]
pub struct IstioSeries {
    series: BTreeMap<String, IstioCounts>,
}

impl IstioSeries {
    /// Adds a native series whose key has reporter bits `bits` and whose
    /// ends are `client` and `server`.
    pub fn add(
        &mut self,
        options: &IstioOptions,
        bits: u8,
        client: &Identity,
        server: &Identity,
        c: &PairCounters,
    ) {
        let counts = IstioCounts::of(c);
        for (bit, reporter) in [(SOURCE, "source"), (DESTINATION, "destination")] {
            if bits & bit == 0 {
                continue;
            }
            let security = match (bit, bits & HBONE != 0) {
                (SOURCE, _) => UNKNOWN,
                (_, true) => "mutual_tls",
                (_, false) => "none",
            };
            let labels = label_string(options, reporter, client, server, security);
            self.series.entry(labels).or_default().add(&counts);
        }
    }

    /// The four families, in the text format.
    pub fn write(&self, out: &mut Text) {
        type Read = fn(&IstioCounts) -> (u64, u64);
        let families: [(Def, Read); 4] = [
            (names::ISTIO_OPENED, |c| (c.opened, c.failed)),
            (names::ISTIO_CLOSED, |c| (c.closed, c.failed)),
            (names::ISTIO_SENT_BYTES, |c| (c.sent, 0)),
            (names::ISTIO_RECEIVED_BYTES, |c| (c.received, 0)),
        ];
        for (def, read) in families {
            out.header(def);
            for (labels, c) in &self.series {
                let (normal, failed) = read(c);
                out.sample(def.name, labels, &[("response_flags", "-")], normal);
                if c.failed > 0 {
                    out.sample(def.name, labels, &[("response_flags", "UF")], failed);
                }
            }
        }
    }

    /// Takes in `other`'s series (expired native series' last counts).
    pub fn absorb(&mut self, other: IstioSeries) {
        for (labels, c) in other.series {
            self.series.entry(labels).or_default().add(&c);
        }
    }

    /// Adds to each series what `retired` holds under its labels, and
    /// keeps in `retired` only those: a label set no live series has any
    /// more is gone from the output, and what it had counted with it.
    pub fn add_retired(&mut self, retired: &mut IstioSeries) {
        if retired.is_empty() {
            return;
        }
        let mut kept = BTreeMap::new();
        for (labels, c) in self.series.iter_mut() {
            if let Some((labels, r)) = retired.series.remove_entry(labels.as_str()) {
                c.add(&r);
                kept.insert(labels, r);
            }
        }
        retired.series = kept;
    }

    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

/// What Istio calls one end of a connection.
struct End<'a> {
    workload: &'a str,
    namespace: &'a str,
    app: &'a str,
    version: &'a str,
    canonical_service: &'a str,
    canonical_revision: &'a str,
    cluster: &'a str,
}

fn end<'a>(who: &'a Identity, cluster: &'a str) -> End<'a> {
    let or_unknown = |s: &'a str| if s.is_empty() { UNKNOWN } else { s };
    // A pod: the only identity with a canonical revision (`latest` at
    // least).
    if !who.istio[3].is_empty() {
        return End {
            workload: &who.workload,
            namespace: or_unknown(&who.namespace),
            app: or_unknown(&who.istio[0]),
            version: or_unknown(&who.istio[1]),
            canonical_service: &who.istio[2],
            canonical_revision: &who.istio[3],
            cluster,
        };
    }
    // A Service's cluster IP: which pod serves it is not seen before the
    // node's DNAT, so the workload stays unknown; the Service is ours.
    let service = &*who.kind == "Service";
    End {
        workload: UNKNOWN,
        namespace: UNKNOWN,
        app: UNKNOWN,
        version: UNKNOWN,
        canonical_service: UNKNOWN,
        canonical_revision: UNKNOWN,
        cluster: if service { cluster } else { UNKNOWN },
    }
}

fn label_string(
    options: &IstioOptions,
    reporter: &str,
    client: &Identity,
    server: &Identity,
    security: &str,
) -> String {
    let mut s = String::with_capacity(640);
    let mut label = |name: &str, value: &str| {
        if !s.is_empty() {
            s.push(',');
        }
        s.push_str(name);
        s.push_str("=\"");
        super::labels::escape_into(&mut s, value);
        s.push('"');
    };
    label("reporter", reporter);
    for (side, who) in [("source", client), ("destination", server)] {
        let e = end(who, &options.cluster);
        label(&format!("{side}_workload"), e.workload);
        label(&format!("{side}_workload_namespace"), e.namespace);
        // The principals are the peers' certificates: a capture never
        // sees them.
        label(&format!("{side}_principal"), UNKNOWN);
        label(&format!("{side}_app"), e.app);
        label(&format!("{side}_version"), e.version);
        if side == "destination" {
            let (fqdn, name, namespace) = if server.service.is_empty() {
                (UNKNOWN.to_string(), UNKNOWN, UNKNOWN)
            } else {
                let mut fqdn = String::new();
                let _ = write!(
                    fqdn,
                    "{}.{}.svc.{CLUSTER_DOMAIN}",
                    server.service, server.namespace
                );
                (fqdn, &*server.service, &*server.namespace)
            };
            label("destination_service", &fqdn);
            label("destination_service_name", name);
            label("destination_service_namespace", namespace);
        }
        label(&format!("{side}_canonical_service"), e.canonical_service);
        label(&format!("{side}_canonical_revision"), e.canonical_revision);
        label(&format!("{side}_cluster"), e.cluster);
    }
    label("request_protocol", "tcp");
    label("connection_security_policy", security);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::test_identity;

    fn pod(namespace: &str, workload: &str, service: &str, istio: [&str; 4]) -> Identity {
        Identity {
            istio: istio.map(Into::into),
            ..test_identity(namespace, workload, "Deployment", "", service)
        }
    }

    fn options() -> IstioOptions {
        IstioOptions {
            cluster: "east".into(),
            node: None,
        }
    }

    /// The value of `label` in a label string.
    fn value<'a>(labels: &'a str, label: &str) -> &'a str {
        let start = labels
            .find(&format!("{label}=\""))
            .unwrap_or_else(|| panic!("no {label} in {labels}"));
        let rest = &labels[start + label.len() + 2..];
        &rest[..rest.find('"').unwrap()]
    }

    fn counters() -> PairCounters {
        let mut c = PairCounters {
            opened: 3,
            refused: 1,
            unanswered: 1,
            closed: [2, 1, 0],
            ..PairCounters::default()
        };
        c.dir[0].payload_bytes = 1000;
        c.dir[0].retransmitted_bytes = 100;
        c.dir[1].payload_bytes = 5000;
        c
    }

    #[test]
    fn each_reporter_has_its_series_and_counts_as_envoy_does() {
        let client = pod("shop", "checkout", "", ["checkout", "v2", "checkout", "v2"]);
        let server = pod("data", "db", "db", ["", "", "database", "latest"]);
        let mut series = IstioSeries::default();
        series.add(
            &options(),
            SOURCE | DESTINATION,
            &client,
            &server,
            &counters(),
        );
        assert_eq!(series.len(), 2);
        for (labels, c) in &series.series {
            // Request bytes less retransmissions; the response; failures
            // apart (response_flags UF).
            assert_eq!(
                *c,
                IstioCounts {
                    opened: 3,
                    failed: 2,
                    closed: 3,
                    sent: 5000,
                    received: 900
                }
            );
            assert_eq!(value(labels, "source_workload"), "checkout");
            assert_eq!(value(labels, "source_version"), "v2");
            assert_eq!(value(labels, "source_cluster"), "east");
            assert_eq!(value(labels, "destination_app"), "unknown");
            assert_eq!(value(labels, "destination_canonical_service"), "database");
            assert_eq!(value(labels, "destination_canonical_revision"), "latest");
            assert_eq!(
                value(labels, "destination_service"),
                "db.data.svc.cluster.local"
            );
            assert_eq!(value(labels, "destination_service_name"), "db");
            assert_eq!(value(labels, "destination_service_namespace"), "data");
            assert_eq!(value(labels, "source_principal"), "unknown");
            assert_eq!(value(labels, "request_protocol"), "tcp");
            let security = match value(labels, "reporter") {
                "source" => "unknown",
                _ => "none",
            };
            assert_eq!(value(labels, "connection_security_policy"), security);
        }
    }

    #[test]
    fn hbone_is_mutual_tls_at_the_destination() {
        let client = pod("a", "x", "", ["x", "", "x", "latest"]);
        let server = pod("b", "y", "", ["y", "", "y", "latest"]);
        let mut series = IstioSeries::default();
        series.add(
            &options(),
            DESTINATION | HBONE,
            &client,
            &server,
            &counters(),
        );
        let (labels, _) = series.series.iter().next().unwrap();
        assert_eq!(value(labels, "reporter"), "destination");
        assert_eq!(value(labels, "connection_security_policy"), "mutual_tls");
        assert_eq!(value(labels, "destination_service"), "unknown");
    }

    #[test]
    fn services_and_outside_addresses_are_unknown_where_istio_says_so() {
        let client = pod("a", "x", "", ["x", "", "x", "latest"]);
        let service = test_identity("data", "db", "Service", "", "db");
        let outside = test_identity("", "external", "external", "", "");
        let mut series = IstioSeries::default();
        series.add(&options(), SOURCE, &client, &service, &counters());
        series.add(&options(), SOURCE, &client, &outside, &counters());
        let rows: Vec<&String> = series.series.keys().collect();
        assert_eq!(rows.len(), 2);
        let via_service = rows
            .iter()
            .find(|l| value(l, "destination_service") != "unknown")
            .unwrap();
        assert_eq!(value(via_service, "destination_workload"), "unknown");
        assert_eq!(value(via_service, "destination_cluster"), "east");
        assert_eq!(value(via_service, "destination_service_namespace"), "data");
        let outside = rows
            .iter()
            .find(|l| value(l, "destination_service") == "unknown")
            .unwrap();
        assert_eq!(value(outside, "destination_workload"), "unknown");
        assert_eq!(value(outside, "destination_workload_namespace"), "unknown");
        assert_eq!(value(outside, "destination_cluster"), "unknown");
        assert_eq!(value(outside, "destination_canonical_revision"), "unknown");
    }

    #[test]
    fn reporters_follow_the_pod_interface_else_the_pods_of_the_node() {
        use crate::identity::{Event, Phase, PodInfo};
        let ids = Identities::new();
        let pod = |uid: &str, ip: &str, node: &str| {
            Event::Pod(PodInfo {
                uid: uid.into(),
                namespace: "ns".into(),
                name: uid.into(),
                phase: Phase::Running,
                deleting: false,
                ips: vec![ip.parse().unwrap()],
                host_network: false,
                node: node.into(),
                owner: None,
                labels: vec![],
                ports: vec![],
                created: 1,
            })
        };
        ids.apply([pod("a", "10.0.0.1", "n1"), pod("b", "10.0.0.2", "n2")]);
        let o = crate::flow::test_orientation;
        let on = |node: Option<&str>| IstioOptions {
            cluster: "c".into(),
            node: node.map(Into::into),
        };
        let pods = o("10.0.0.1", "10.0.0.2", 80);
        // A pod's own interface says which, whatever the node.
        assert_eq!(reporters(&on(None), &ids, Reporter::Client, &pods), SOURCE);
        assert_eq!(
            reporters(&on(None), &ids, Reporter::Server, &pods),
            DESTINATION
        );
        // Elsewhere: the pods of the node named, or every pod.
        let node = Reporter::Node;
        assert_eq!(
            reporters(&on(None), &ids, node, &pods),
            SOURCE | DESTINATION
        );
        assert_eq!(reporters(&on(Some("n1")), &ids, node, &pods), SOURCE);
        assert_eq!(reporters(&on(Some("n2")), &ids, node, &pods), DESTINATION);
        assert_eq!(reporters(&on(Some("n3")), &ids, node, &pods), 0);
        let outside = o("192.0.2.1", "198.51.100.1", 80);
        assert_eq!(reporters(&on(None), &ids, node, &outside), 0);
        // HBONE, where someone reports.
        let hbone = o("10.0.0.1", "10.0.0.2", HBONE_PORT);
        assert_eq!(
            reporters(&on(None), &ids, Reporter::Server, &hbone),
            DESTINATION | HBONE
        );
        let outside_hbone = o("192.0.2.1", "198.51.100.1", HBONE_PORT);
        assert_eq!(reporters(&on(None), &ids, node, &outside_hbone), 0);
    }

    #[test]
    fn series_with_the_same_labels_add_up() {
        let client = pod("a", "x", "", ["x", "", "x", "latest"]);
        let server = pod("b", "y", "", ["y", "", "y", "latest"]);
        let mut series = IstioSeries::default();
        series.add(&options(), SOURCE, &client, &server, &counters());
        series.add(&options(), SOURCE, &client, &server, &counters());
        assert_eq!(series.len(), 1);
        assert_eq!(series.series.values().next().unwrap().opened, 6);
    }
}

//! Label selection and label values: which traffic labels the metrics carry
//! (`--labels`), what an address becomes before it is a label
//! (`--aggregate-cidr`), and the names of server ports (`--port-names`).
//!
//! A connection's labels are worked out once, when it starts, into a small
//! `SeriesKey` of addresses and ids: a label left out is `Absent` in the key,
//! so every connection that differs only in it shares one series, and that
//! is the aggregation. Strings are made only when a scrape comes.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use super::istio::{self, IstioOptions};
use crate::capture::routes::{HostRoutes, Routes};
use crate::flow::Orientation;
use crate::identity::{Identities, Identity, Peers, OTHER as OTHER_IDENTITY};

/// A traffic label that `--labels` can choose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Label {
    Interface,
    Client,
    Server,
    ServerPort,
    PortName,
    IpFamily,
    ClientNamespace,
    ClientWorkload,
    ClientWorkloadKind,
    ClientPod,
    ServerNamespace,
    ServerWorkload,
    ServerWorkloadKind,
    ServerPod,
    ServerService,
    Reporter,
}

impl Label {
    /// In the order labels are written in the exposition.
    pub const ALL: [Label; 16] = [
        Label::Interface,
        Label::Reporter,
        Label::Client,
        Label::Server,
        Label::ServerPort,
        Label::PortName,
        Label::IpFamily,
        Label::ClientNamespace,
        Label::ClientWorkload,
        Label::ClientWorkloadKind,
        Label::ClientPod,
        Label::ServerNamespace,
        Label::ServerWorkload,
        Label::ServerWorkloadKind,
        Label::ServerPod,
        Label::ServerService,
    ];

    /// The identity labels of the client side, then of the server side.
    pub const CLIENT_IDENTITY: [Label; 4] = [
        Label::ClientNamespace,
        Label::ClientWorkload,
        Label::ClientWorkloadKind,
        Label::ClientPod,
    ];
    pub const SERVER_IDENTITY: [Label; 5] = [
        Label::ServerNamespace,
        Label::ServerWorkload,
        Label::ServerWorkloadKind,
        Label::ServerPod,
        Label::ServerService,
    ];

    /// The value this identity label takes for `who` (the service for
    /// any label that is not an identity's).
    pub fn identity_value(self, who: &Identity) -> &str {
        match self {
            Label::ClientNamespace | Label::ServerNamespace => &who.namespace,
            Label::ClientWorkload | Label::ServerWorkload => &who.workload,
            Label::ClientWorkloadKind | Label::ServerWorkloadKind => &who.kind,
            Label::ClientPod | Label::ServerPod => &who.pod,
            _ => &who.service,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Label::Interface => "interface",
            Label::Client => "client",
            Label::Server => "server",
            Label::ServerPort => "server_port",
            Label::PortName => "port_name",
            Label::IpFamily => "ip_family",
            Label::ClientNamespace => "client_namespace",
            Label::ClientWorkload => "client_workload",
            Label::ClientWorkloadKind => "client_workload_kind",
            Label::ClientPod => "client_pod",
            Label::ServerNamespace => "server_namespace",
            Label::ServerWorkload => "server_workload",
            Label::ServerWorkloadKind => "server_workload_kind",
            Label::ServerPod => "server_pod",
            Label::ServerService => "server_service",
            Label::Reporter => "reporter",
        }
    }

    fn bit(self) -> u16 {
        1 << self as u16
    }

    /// Whether the label needs the cluster's identities (`--kubernetes`).
    pub fn is_identity(self) -> bool {
        (Label::ClientNamespace as u16..=Label::ServerService as u16).contains(&(self as u16))
    }
}

/// The traffic labels chosen with `--labels`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LabelSet(u16);

impl LabelSet {
    /// The contract's default (DESIGN.md): interface, client, server,
    /// server_port.
    pub const DEFAULT: LabelSet = LabelSet(0b1111);

    /// The default with `--kubernetes`: who talks to whom by namespace,
    /// workload and Service, the server port, and whose side the capture
    /// point is on.
    pub const KUBERNETES: LabelSet = LabelSet(
        1 << Label::Reporter as u16
            | 1 << Label::ClientNamespace as u16
            | 1 << Label::ClientWorkload as u16
            | 1 << Label::ServerNamespace as u16
            | 1 << Label::ServerWorkload as u16
            | 1 << Label::ServerService as u16
            | 1 << Label::ServerPort as u16,
    );

    pub fn has(self, label: Label) -> bool {
        self.0 & label.bit() != 0
    }

    pub fn iter(self) -> impl Iterator<Item = Label> {
        Label::ALL.into_iter().filter(move |l| self.has(*l))
    }

    /// Whether any label of `labels` is chosen.
    pub fn any(self, labels: &[Label]) -> bool {
        labels.iter().any(|l| self.has(*l))
    }
}

impl fmt::Display for LabelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Label::as_str).collect();
        f.write_str(&names.join(","))
    }
}

/// A `--labels`, `--aggregate-cidr` or `--port-names` value that cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LabelError {
    #[error(
        "--labels: unknown label {0:?}; choose from interface, client, server, server_port, \
         port_name, ip_family, reporter, and with --kubernetes client_namespace, client_workload, \
         client_workload_kind, client_pod, server_namespace, server_workload, \
         server_workload_kind, server_pod, server_service (comma-separated), or `none`"
    )]
    UnknownLabel(String),
    #[error("--labels: {0} is given twice")]
    DuplicateLabel(&'static str),
    #[error(
        "--aggregate-cidr {0:?}: expected [client:|server:]CIDR=/LENGTH or \
         [client:|server:]CIDR=NAME, e.g. 0.0.0.0/0=/24 or 10.0.0.0/8=cluster"
    )]
    RuleSyntax(String),
    #[error("--aggregate-cidr {0:?}: {1}")]
    Rule(String, String),
    #[error("--port-names {0}: {1}")]
    PortNames(String, String),
    #[error("label value {0:?}: {1}")]
    Name(String, &'static str),
}

impl FromStr for LabelSet {
    type Err = LabelError;

    fn from_str(s: &str) -> Result<LabelSet, LabelError> {
        let mut set = LabelSet(0);
        let s = s.trim();
        if s.is_empty() || s == "none" {
            return Ok(set);
        }
        for name in s.split(',').map(str::trim) {
            let label = Label::ALL
                .into_iter()
                .find(|l| l.as_str() == name)
                .ok_or_else(|| LabelError::UnknownLabel(name.to_string()))?;
            if set.has(label) {
                return Err(LabelError::DuplicateLabel(label.as_str()));
            }
            set.0 |= label.bit();
        }
        Ok(set)
    }
}

/// What an address label holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Peer {
    /// The label is not chosen.
    Absent,
    Ip(IpAddr),
    /// An address collapsed to its prefix by `--aggregate-cidr`.
    Net(IpAddr, u8),
    /// An address in a network that `--aggregate-cidr` names (an index into
    /// the labeler's names).
    Name(u16),
    /// Folded by the series cap.
    Other,
}

/// `ip_family` label values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }
}

/// The label set of a series, as values and ids. A field is `Absent` or
/// `None` when its label is not chosen. Counters use every field; histogram
/// series never carry the client (their buckets multiply series).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SeriesKey {
    /// Index into the exporter's interfaces, or `NO_INTERFACE`.
    pub interface: u16,
    /// The client's and the server's identity (numbers of
    /// `identity::Identities`), or `NO_IDENTITY` when none of that side's
    /// identity labels is chosen.
    pub client_id: u32,
    pub server_id: u32,
    pub client: Peer,
    pub server: Peer,
    pub server_port: Option<u16>,
    /// Index into the labeler's names; 0 is the empty name of a port with
    /// none.
    pub port_name: Option<u16>,
    pub family: Option<Family>,
    pub reporter: Option<Reporter>,
    /// With `--istio-metrics`: which of Istio's reporters this series
    /// stands for (`istio::SOURCE`, `DESTINATION`, `HBONE`); 0 otherwise.
    /// Not a label of its own: the native exposition sums over it.
    pub istio: u8,
}

/// Whose side of a connection a capture point is on (the `reporter`
/// label): an interface that leads to a pod sees connections of that pod,
/// as their client or their server; anywhere else the node's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reporter {
    Client,
    Server,
    Node,
}

impl Reporter {
    pub fn as_str(self) -> &'static str {
        match self {
            Reporter::Client => "client",
            Reporter::Server => "server",
            Reporter::Node => "node",
        }
    }

    /// On `interface`, given the addresses the host routes to it alone:
    /// the side whose address is one of them, else the node.
    pub fn on(routes: &Routes, interface: &str, o: &Orientation) -> Reporter {
        let behind = routes.behind(interface);
        if behind.contains(&o.client) {
            Reporter::Client
        } else if behind.contains(&o.server) {
            Reporter::Server
        } else {
            Reporter::Node
        }
    }
}

pub const NO_INTERFACE: u16 = u16::MAX;
pub const NO_IDENTITY: u32 = u32::MAX;

impl SeriesKey {
    /// The key of the histograms of this series: the same, without client.
    pub fn histogram(self) -> SeriesKey {
        SeriesKey {
            client: Peer::Absent,
            client_id: NO_IDENTITY,
            istio: 0,
            ..self
        }
    }

    /// The key this one folds into when the series cap is reached: client
    /// and server read `other`.
    pub fn folded(self) -> SeriesKey {
        let other = |p: Peer| if p == Peer::Absent { p } else { Peer::Other };
        let other_id = |id: u32| {
            if id == NO_IDENTITY {
                id
            } else {
                OTHER_IDENTITY
            }
        };
        SeriesKey {
            client: other(self.client),
            server: other(self.server),
            client_id: other_id(self.client_id),
            server_id: other_id(self.server_id),
            ..self
        }
    }
}

/// Which addresses a `--aggregate-cidr` rule applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Both,
    Client,
    Server,
}

/// What a rule turns a matching address into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Prefix(u8),
    Name(String),
}

/// One `--aggregate-cidr` rule: addresses in `net/prefix` become `target`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CidrRule {
    pub role: Role,
    pub net: IpAddr,
    pub prefix: u8,
    pub target: Target,
}

/// Longest label value accepted from a file or a flag.
pub const MAX_NAME_LEN: usize = 64;

fn check_name(name: &str) -> Result<(), LabelError> {
    if name.is_empty() {
        return Err(LabelError::Name(name.into(), "a name cannot be empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(LabelError::Name(name.into(), "longer than 64 bytes"));
    }
    if name.chars().any(char::is_control) {
        return Err(LabelError::Name(
            name.into(),
            "control characters are not allowed",
        ));
    }
    Ok(())
}

fn max_prefix(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// `ip` with every bit past `prefix` cleared.
pub fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let m = u32::MAX.checked_shl(32 - prefix as u32).unwrap_or(0);
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let m = u128::MAX.checked_shl(128 - prefix as u32).unwrap_or(0);
            IpAddr::V6((bits & m).into())
        }
    }
}

impl FromStr for CidrRule {
    type Err = LabelError;

    fn from_str(text: &str) -> Result<CidrRule, LabelError> {
        let syntax = || LabelError::RuleSyntax(text.to_string());
        let rule_error = |why: String| LabelError::Rule(text.to_string(), why);
        let s = text.trim();
        let (role, s) = if let Some(rest) = s.strip_prefix("client:") {
            (Role::Client, rest)
        } else if let Some(rest) = s.strip_prefix("server:") {
            (Role::Server, rest)
        } else {
            (Role::Both, s)
        };
        let (cidr, target) = s.split_once('=').ok_or_else(syntax)?;
        let (net, prefix) = cidr.trim().split_once('/').ok_or_else(syntax)?;
        let net: IpAddr = net.parse().map_err(|_| syntax())?;
        let prefix: u8 = prefix.parse().map_err(|_| syntax())?;
        if prefix > max_prefix(net) {
            return Err(rule_error(format!(
                "/{prefix} is longer than an {} address",
                Family::of(net).as_str()
            )));
        }
        if mask(net, prefix) != net {
            return Err(rule_error(format!(
                "{net}/{prefix} has bits set past the prefix; did you mean {}/{prefix}?",
                mask(net, prefix)
            )));
        }
        let target = target.trim();
        let target = match target.strip_prefix('/') {
            Some(len) => {
                let len: u8 = len.parse().map_err(|_| syntax())?;
                if len > max_prefix(net) {
                    return Err(rule_error(format!(
                        "/{len} is longer than an {} address",
                        Family::of(net).as_str()
                    )));
                }
                if len < prefix {
                    return Err(rule_error(format!(
                        "/{len} is shorter than the rule's own /{prefix}: addresses would \
                         become networks outside it"
                    )));
                }
                Target::Prefix(len)
            }
            None => {
                check_name(target)?;
                Target::Name(target.to_string())
            }
        };
        Ok(CidrRule {
            role,
            net,
            prefix,
            target,
        })
    }
}

/// Splits a flag value that may hold several comma-separated rules.
pub fn parse_rules(values: &[String]) -> Result<Vec<CidrRule>, LabelError> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .filter(|r| !r.trim().is_empty())
        .map(str::parse)
        .collect()
}

/// Istio's well-known ports, from "Ports used by Istio" in Istio's
/// deployment requirements: the sidecar's (Envoy and the Istio agent) and
/// istiod's.
pub const ISTIO_PORTS: [(u16, &str); 14] = [
    (15000, "envoy-admin"),
    (15001, "envoy-outbound"),
    (15004, "istio-agent-debug"),
    (15006, "envoy-inbound"),
    (15008, "hbone"),
    (15009, "hbone-secure-networks"),
    (15010, "istiod-xds-plaintext"),
    (15012, "istiod-xds"),
    (15014, "istiod-monitoring"),
    (15017, "istiod-webhook"),
    (15020, "istio-merged-metrics"),
    (15021, "istio-health"),
    (15053, "istio-dns"),
    (15090, "envoy-prometheus"),
];

/// Port names from every `--port-names` source, later sources overriding
/// earlier ones.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortNames(pub Vec<(u16, String)>);

impl PortNames {
    /// Adds a source: `istio` (the preset) or the text of a YAML file named
    /// `origin`.
    pub fn add_preset(&mut self, name: &str) -> bool {
        match name {
            "istio" => {
                self.0
                    .extend(ISTIO_PORTS.iter().map(|(p, n)| (*p, n.to_string())));
                true
            }
            _ => false,
        }
    }

    /// Reads a flat YAML map of port number to name (`PORT: NAME`, in any
    /// YAML style). A nested value, a list, a key that is not a port or a
    /// name that cannot be a label value is refused, naming the line.
    pub fn add_yaml(&mut self, origin: &str, text: &str) -> Result<(), LabelError> {
        let file: Option<PortFile> = serde_norway::from_str(text)
            .map_err(|e| LabelError::PortNames(origin.to_string(), e.to_string()))?;
        self.0.extend(file.map(|f| f.0).unwrap_or_default());
        Ok(())
    }
}

/// A port-names file: its entries in the order written, each checked as
/// it is read (so that an error carries its line).
struct PortFile(Vec<(u16, String)>);

impl<'de> serde::Deserialize<'de> for PortFile {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(PortFileVisitor)
    }
}

struct PortFileVisitor;

impl<'de> serde::de::Visitor<'de> for PortFileVisitor {
    type Value = PortFile;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a flat map of `PORT: NAME`")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<PortFile, A::Error> {
        let mut entries = Vec::new();
        use serde::de::Error as _;
        while let Some(PortKey(port)) = map.next_key()? {
            let PortName(name) = map
                .next_value()
                .map_err(|e| A::Error::custom(format!("port {port}: {e}")))?;
            entries.push((port, name));
        }
        Ok(PortFile(entries))
    }
}

/// A port number, written as a number or a string; checked as it is read,
/// so that serde_norway places an error at its line.
struct PortKey(u16);

impl<'de> serde::Deserialize<'de> for PortKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let port = match serde_norway::Value::deserialize(d)? {
            serde_norway::Value::Number(n) => n.as_u64(),
            serde_norway::Value::String(s) => s.parse().ok(),
            _ => None,
        };
        port.filter(|p| (1..=65535).contains(p))
            .map(|p| PortKey(p as u16))
            .ok_or_else(|| D::Error::custom("the key must be a port number from 1 to 65535"))
    }
}

/// A port's name, a valid label value.
struct PortName(String);

impl<'de> serde::Deserialize<'de> for PortName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let name = Option::<String>::deserialize(d)?.unwrap_or_default();
        check_name(&name).map_err(|e| D::Error::custom(e.to_string()))?;
        Ok(PortName(name))
    }
}

/// Turns a connection into its series key: applies `--labels`,
/// `--aggregate-cidr` and `--port-names`. Built once at start, shared by
/// every worker.
#[derive(Debug)]
pub struct Labeler {
    pub labels: LabelSet,
    /// The cluster's identities, with `--kubernetes`.
    pub identities: Option<Arc<Identities>>,
    /// The host's routes, for `reporter` on live interfaces (a file read
    /// with -r has no host: its connections are the node's).
    pub routes: Option<Arc<HostRoutes>>,
    /// `--istio-metrics` (with `--kubernetes`).
    pub istio: Option<IstioOptions>,
    /// Most specific first; among equals, in the order given.
    rules: Vec<(CidrRule, Option<u16>)>,
    ports: HashMap<u16, u16>,
    /// Names of networks and ports; 0 is the empty name.
    names: Vec<String>,
}

impl Labeler {
    pub fn new(labels: LabelSet, rules: Vec<CidrRule>, ports: &PortNames) -> Labeler {
        let mut names = vec![String::new()];
        let mut intern = |name: &str| -> u16 {
            match names.iter().position(|n| n == name) {
                Some(i) => i as u16,
                None => {
                    names.push(name.to_string());
                    (names.len() - 1) as u16
                }
            }
        };
        let mut rules: Vec<(CidrRule, Option<u16>)> = rules
            .into_iter()
            .map(|r| {
                let id = match &r.target {
                    Target::Name(n) => Some(intern(n)),
                    Target::Prefix(_) => None,
                };
                (r, id)
            })
            .collect();
        rules.sort_by_key(|(r, _)| std::cmp::Reverse(r.prefix));
        let ports = ports.0.iter().map(|(p, n)| (*p, intern(n))).collect();
        Labeler {
            labels,
            identities: None,
            routes: None,
            istio: None,
            rules,
            ports,
            names,
        }
    }

    /// The default labels, no aggregation, no port names.
    pub fn plain() -> Labeler {
        Labeler::new(LabelSet::DEFAULT, Vec::new(), &PortNames::default())
    }

    pub fn name(&self, id: u16) -> &str {
        self.names.get(id as usize).map_or("", String::as_str)
    }

    /// Whose side `interface` is on for connection `o`, and whether it is
    /// a pod's interface; a file read with -r is the node's.
    pub fn reporter(&self, interface: &str, o: &Orientation) -> (Reporter, bool) {
        match &self.routes {
            Some(routes) => {
                let routes = routes.current();
                (
                    Reporter::on(&routes, interface, o),
                    routes.is_pod_interface(interface),
                )
            }
            None => (Reporter::Node, false),
        }
    }

    /// The series key of a connection on interface `interface`.
    pub fn key(&self, interface: u16, o: &Orientation) -> SeriesKey {
        self.key_with((interface, ""), o, None)
    }

    /// The series key of a connection on the interface (id, name) whose
    /// ends were resolved already (`peers`: its record's), or are resolved
    /// now.
    pub fn key_with(
        &self,
        (interface, interface_name): (u16, &str),
        o: &Orientation,
        peers: Option<&Peers>,
    ) -> SeriesKey {
        let l = self.labels;
        use crate::identity::Role as Side;
        // Istio's labels name both ends whatever --labels chose.
        let istio = self.istio.as_ref().zip(self.identities.as_ref());
        let identity = |labels: &[Label], pod: Label, ip: IpAddr, side: Side| {
            let wanted = l.any(labels) || istio.is_some();
            let Some(ids) = self.identities.as_ref().filter(|_| wanted) else {
                return NO_IDENTITY;
            };
            match (peers, side) {
                (Some(p), Side::Client) => ids.number_of(&p.client, l.has(pod)),
                (Some(p), Side::Server) => ids.number_of(&p.server, l.has(pod)),
                (None, _) => ids.resolve(ip, o.server_port, side, l.has(pod)),
            }
        };
        // Whose pod interface this is, read once for the label and for
        // Istio's reporters; on a pod's interface whose pod is not known
        // (yet), Istio's are none rather than both.
        let (reporter, pod_interface) = if l.has(Label::Reporter) || istio.is_some() {
            self.reporter(interface_name, o)
        } else {
            (Reporter::Node, false)
        };
        SeriesKey {
            interface: if l.has(Label::Interface) {
                interface
            } else {
                NO_INTERFACE
            },
            client_id: identity(
                &Label::CLIENT_IDENTITY,
                Label::ClientPod,
                o.client,
                Side::Client,
            ),
            server_id: identity(
                &Label::SERVER_IDENTITY,
                Label::ServerPod,
                o.server,
                Side::Server,
            ),
            client: if l.has(Label::Client) {
                self.peer(o.client, Role::Client)
            } else {
                Peer::Absent
            },
            server: if l.has(Label::Server) {
                self.peer(o.server, Role::Server)
            } else {
                Peer::Absent
            },
            server_port: l.has(Label::ServerPort).then_some(o.server_port),
            port_name: l
                .has(Label::PortName)
                .then(|| self.port_name(o.server_port)),
            family: l.has(Label::IpFamily).then(|| Family::of(o.server)),
            reporter: l.has(Label::Reporter).then_some(reporter),
            istio: istio.map_or(0, |(options, ids)| match (reporter, pod_interface) {
                (Reporter::Node, true) => 0,
                _ => istio::reporters(options, ids, reporter, o),
            }),
        }
    }

    /// The name id of a server port; 0 (the empty name) when it has none.
    pub fn port_name(&self, port: u16) -> u16 {
        self.ports.get(&port).copied().unwrap_or(0)
    }

    /// An address as its label: aggregated by the first (most specific)
    /// rule that holds it, else itself.
    pub fn peer(&self, ip: IpAddr, role: Role) -> Peer {
        for (rule, name) in &self.rules {
            if rule.role != Role::Both && rule.role != role {
                continue;
            }
            if Family::of(ip) != Family::of(rule.net) || mask(ip, rule.prefix) != rule.net {
                continue;
            }
            return match (&rule.target, name) {
                (Target::Prefix(len), _) => Peer::Net(mask(ip, *len), *len),
                (Target::Name(_), Some(id)) => Peer::Name(*id),
                (Target::Name(_), None) => Peer::Ip(ip),
            };
        }
        Peer::Ip(ip)
    }

    /// Writes an address label's value.
    pub fn write_peer(&self, out: &mut String, p: Peer) {
        use std::fmt::Write;
        match p {
            Peer::Absent => {}
            Peer::Ip(ip) => {
                let _ = write!(out, "{ip}");
            }
            Peer::Net(ip, len) => {
                let _ = write!(out, "{ip}/{len}");
            }
            Peer::Name(id) => escape_into(out, self.name(id)),
            Peer::Other => out.push_str("other"),
        }
    }
}

/// Appends a label value, escaped as the text format wants (`\`, `"`, and
/// newline).
pub fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::flow::test_orientation as orient;

    #[test]
    fn labels_parse_in_any_order_and_refuse_unknown_or_repeated_names() {
        let set: LabelSet = "server_port, server,ip_family".parse().unwrap();
        assert_eq!(set.to_string(), "server,server_port,ip_family");
        assert_eq!("none".parse::<LabelSet>().unwrap().to_string(), "");
        assert_eq!(
            "".parse::<LabelSet>().unwrap(),
            "none".parse::<LabelSet>().unwrap()
        );
        assert_eq!(
            "interface,client,server,server_port"
                .parse::<LabelSet>()
                .unwrap(),
            LabelSet::DEFAULT
        );
        assert_eq!(
            "server,pod".parse::<LabelSet>(),
            Err(LabelError::UnknownLabel("pod".into()))
        );
        assert_eq!(
            "server,server".parse::<LabelSet>(),
            Err(LabelError::DuplicateLabel("server"))
        );
    }

    #[test]
    fn a_label_left_out_is_absent_from_the_key() {
        let l = Labeler::new(
            "server,ip_family".parse().unwrap(),
            vec![],
            &PortNames::default(),
        );
        let a = l.key(3, &orient("10.0.0.1", "10.0.0.9", 80));
        let b = l.key(5, &orient("10.0.0.2", "10.0.0.9", 443));
        assert_eq!(a, b, "client, port and interface do not split series");
        assert_eq!(a.family, Some(Family::V4));
        assert_eq!(a.interface, NO_INTERFACE);
    }

    #[test]
    fn cidr_rules_collapse_addresses_most_specific_first() {
        let rules = parse_rules(&[
            "0.0.0.0/0=/24,::/0=/64".to_string(),
            "10.0.0.0/8=cluster".to_string(),
            "client:192.168.0.0/16=/16".to_string(),
        ])
        .unwrap();
        let l = Labeler::new(LabelSet::DEFAULT, rules, &PortNames::default());
        let k = l.key(0, &orient("10.1.2.3", "203.0.113.77", 443));
        assert_eq!(k.client, Peer::Name(1));
        assert_eq!(l.name(1), "cluster");
        assert_eq!(k.server, Peer::Net("203.0.113.0".parse().unwrap(), 24));
        let k = l.key(0, &orient("192.168.7.7", "192.168.7.8", 443));
        assert_eq!(k.client, Peer::Net("192.168.0.0".parse().unwrap(), 16));
        assert_eq!(
            k.server,
            Peer::Net("192.168.7.0".parse().unwrap(), 24),
            "the client-only rule leaves servers to the next rule"
        );
        let k = l.key(0, &orient("2001:db8::1:2", "2001:db8:0:1::5", 443));
        assert_eq!(k.client, Peer::Net("2001:db8::".parse().unwrap(), 64));
        assert_eq!(k.server, Peer::Net("2001:db8:0:1::".parse().unwrap(), 64));
        let mut s = String::new();
        l.write_peer(&mut s, k.server);
        assert_eq!(s, "2001:db8:0:1::/64");
    }

    #[test]
    fn bad_cidr_rules_say_what_is_wrong() {
        for bad in [
            "10.0.0.0/8",
            "10.0.0.0=/8",
            "10.0.0.0/33=/34",
            "10.0.0.1/8=/16",
            "10.0.0.0/16=/8",
            "0.0.0.0/0=/64",
            "nonsense/8=/16",
            "10.0.0.0/8=",
        ] {
            assert!(bad.parse::<CidrRule>().is_err(), "{bad} parsed");
        }
        let e = "10.0.0.1/8=/16".parse::<CidrRule>().unwrap_err();
        assert!(e.to_string().contains("did you mean 10.0.0.0/8"), "{e}");
    }

    #[test]
    fn port_names_come_from_the_istio_preset_and_files_later_ones_winning() {
        let mut names = PortNames::default();
        assert!(names.add_preset("istio"));
        assert!(!names.add_preset("linkerd"));
        names
            .add_yaml(
                "ports.yaml",
                "# my ports\n---\n8080: web\n\"5432\": 'postgres'   # db\n15090: \"scrape # envoy\"\n9000: 'it''s'\n",
            )
            .unwrap();
        let l = Labeler::new("port_name".parse().unwrap(), vec![], &names);
        let name = |port| l.name(l.port_name(port)).to_string();
        assert_eq!(name(15006), "envoy-inbound");
        assert_eq!(name(15008), "hbone");
        assert_eq!(name(8080), "web");
        assert_eq!(name(5432), "postgres");
        assert_eq!(
            name(15090),
            "scrape # envoy",
            "the file overrides the preset"
        );
        assert_eq!(name(9000), "it's");
        assert_eq!(name(22), "");
        let k = l.key(0, &orient("10.0.0.1", "10.0.0.2", 8080));
        assert_eq!(k.port_name, Some(l.port_name(8080)));
        assert_eq!(k.server_port, None);
    }

    #[test]
    fn port_name_files_that_are_not_a_flat_map_of_ports_are_refused_with_the_line() {
        for (text, why) in [
            ("80: web\n  nested: 1\n", "line 2"),
            ("80: [a, b]\n", "line 1"),
            ("80: {a: b}\n", "line 1"),
            ("- 80\n", "expected a flat map"),
            ("web: 80\n", "port number"),
            ("0: zero\n", "port number"),
            ("70000: big\n", "port number"),
            (
                "80: web\n443:\n",
                "port 443: label value \"\": a name cannot be empty",
            ),
            ("80 web\n", "PORT: NAME"),
            ("80: 'web\n", "line 1"),
            ("80: \"a\\tb\"\n", "control characters"),
        ] {
            let e = PortNames::default().add_yaml("f.yaml", text).unwrap_err();
            assert!(e.to_string().contains(why), "{text:?}: {e}");
            assert!(e.to_string().starts_with("--port-names f.yaml:"), "{e}");
        }
    }

    #[test]
    fn port_name_files_in_flow_style_and_block_scalars_are_read() {
        let mut names = PortNames::default();
        names
            .add_yaml("f.yaml", "{80: http, '443': https}\n")
            .unwrap();
        names
            .add_yaml("g.yaml", "8443: >-\n  admin\n  tls\n")
            .unwrap();
        assert_eq!(
            names.0,
            [
                (80, "http".to_string()),
                (443, "https".to_string()),
                (8443, "admin tls".to_string())
            ]
        );
        assert!(PortNames::default().add_yaml("f.yaml", "# none\n").is_ok());
    }

    #[test]
    fn folding_turns_only_chosen_address_labels_into_other() {
        let l = Labeler::new(
            "server,server_port".parse().unwrap(),
            vec![],
            &PortNames::default(),
        );
        let k = l.key(0, &orient("10.0.0.1", "10.0.0.2", 80)).folded();
        assert_eq!((k.client, k.server), (Peer::Absent, Peer::Other));
        assert_eq!(k.server_port, Some(80));
    }

    #[test]
    fn label_values_are_escaped() {
        let mut s = String::new();
        escape_into(&mut s, "a\"b\\c\nd");
        assert_eq!(s, "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn the_reporter_is_the_side_whose_address_the_interface_leads_to() {
        let v4 = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n\
                  cali1\t0501F40A\t00000000\t0005\t0\t0\t0\tFFFFFFFF\n";
        let routes = Routes::parse(v4, "");
        let o = |client: &str, server: &str| orient(client, server, 80);
        let on = |iface: &str, o: &Orientation| Reporter::on(&routes, iface, o);
        assert_eq!(
            on("cali1", &o("10.244.1.5", "10.244.2.7")),
            Reporter::Client
        );
        assert_eq!(
            on("cali1", &o("10.244.2.7", "10.244.1.5")),
            Reporter::Server
        );
        assert_eq!(on("cali1", &o("10.244.2.7", "10.244.2.8")), Reporter::Node);
        assert_eq!(on("eth0", &o("10.244.1.5", "10.244.2.7")), Reporter::Node);
    }

    #[test]
    fn reporter_is_a_label_of_its_own_and_in_the_kubernetes_default() {
        let set: LabelSet = "reporter,server".parse().unwrap();
        assert!(set.has(Label::Reporter) && !Label::Reporter.is_identity());
        assert!(LabelSet::KUBERNETES.has(Label::Reporter));
        assert!(!LabelSet::DEFAULT.has(Label::Reporter));
        // Without the host's routes (a file), every connection is the node's.
        let l = Labeler::new(set, vec![], &PortNames::default());
        let k = l.key(0, &orient("10.0.0.1", "10.0.0.2", 80));
        assert_eq!(k.reporter, Some(Reporter::Node));
        assert_eq!(
            Labeler::plain()
                .key(0, &orient("10.0.0.1", "10.0.0.2", 80))
                .reporter,
            None
        );
    }
}

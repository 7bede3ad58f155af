//! The IP index: which object of the cluster an address belongs to now.
//!
//! It holds a projection of each Pod, Service and Node (the fields names
//! come from, not the objects), fed by `apply` with the watch's events,
//! and answers `resolve` when a connection starts. The rules, each one a
//! mistake other tools' users report:
//! - a pod IP belongs to a pod that runs: a finished pod (Succeeded,
//!   Failed) never owns its IP, and a terminating one (deletion timestamp
//!   set) only while no running pod claims it, so the new pod that reuses
//!   an address resolves as itself;
//! - ownership is by uid: a late delete of an old pod removes that pod's
//!   claim only, never the address's new owner;
//! - a hostNetwork pod shares its node's address: that address resolves to
//!   the node, unless the server port is one the pod declares on that
//!   node, which resolves to the pod;
//! - a Service's cluster IPs (every one; headless Services have none)
//!   resolve to the Service, as a capture before kube-proxy's DNAT sees
//!   them; a pod's `service` is the Service of its namespace whose
//!   selector matches its labels (several: the lexically first name).
//!
//! Strings are interned: the replicas of a workload share their namespace,
//! node, workload and label set, so a pod costs its own name, uid and
//! addresses and a few pointers (docs/performance.md, "Identity").

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use hashbrown::hash_table::{self, HashTable};

use super::workload::{workload, Owner};
use super::Identity;

pub type Name = Arc<str>;

/// A pod's phase, as the API reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Pending,
    Running,
    Succeeded,
    Failed,
    Unknown,
}

impl Phase {
    pub fn parse(s: &str) -> Phase {
        match s {
            "Pending" => Phase::Pending,
            "Running" => Phase::Running,
            "Succeeded" => Phase::Succeeded,
            "Failed" => Phase::Failed,
            _ => Phase::Unknown,
        }
    }

    fn finished(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed)
    }
}

/// What the index takes of a Pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodInfo {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub phase: Phase,
    /// Its deletion timestamp is set: terminating.
    pub deleting: bool,
    /// Every entry of status.podIPs.
    pub ips: Vec<IpAddr>,
    pub host_network: bool,
    pub node: String,
    /// The controller owner reference.
    pub owner: Option<Owner>,
    pub labels: Vec<(String, String)>,
    /// Ports declared by its containers (containerPort and hostPort): for
    /// a hostNetwork pod, the ports it serves on its node's address.
    pub ports: Vec<u16>,
    /// Creation time, seconds since the epoch: among running pods claiming
    /// one address, the newest owns it.
    pub created: i64,
}

/// What the index takes of a Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceInfo {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    /// spec.clusterIPs, less `None` (headless).
    pub cluster_ips: Vec<IpAddr>,
    pub selector: Vec<(String, String)>,
}

/// What the index takes of a Node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    /// status.addresses of type InternalIP and ExternalIP.
    pub addresses: Vec<IpAddr>,
}

/// The kinds of object watched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    Pod,
    Service,
    Node,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 3] = [ObjectKind::Pod, ObjectKind::Service, ObjectKind::Node];

    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Pod => "pods",
            ObjectKind::Service => "services",
            ObjectKind::Node => "nodes",
        }
    }
}

/// A change the watch saw (or a test makes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Pod(PodInfo),
    PodGone {
        uid: String,
    },
    Service(ServiceInfo),
    ServiceGone {
        uid: String,
    },
    Node(NodeInfo),
    NodeGone {
        name: String,
    },
    /// A list of this kind began (first list, or a relist after 410
    /// Gone): what it does not send again is gone once it is `Listed`.
    Relisting(ObjectKind),
    /// The list of this kind is complete.
    Listed(ObjectKind),
}

/// Which side of the connection an address is on: a hostNetwork pod's
/// declared port counts for the server only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Client,
    Server,
}

/// A label set shared by the pods that have it.
type Labels = Arc<[(Name, Name)]>;

/// What the replicas of a workload share: one record, numbered, that
/// every pod with this namespace, workload and label set points at. The
/// Service a selector gives depends on nothing else, so it is kept here
/// and recomputed per group, not per pod.
struct Group {
    namespace: Name,
    workload: Name,
    kind: Name,
    labels: Labels,
    service: Name,
    /// Istio's names of its pods: app, version, canonical service and
    /// revision (from the labels and the workload).
    istio: [Name; 4],
    /// Pods that point at it; at 0 its number is free again.
    pods: u32,
}

type GroupKey = (Name, Name, Name, Labels);

/// A pod's uid as a number: Kubernetes uids are UUIDs (anything else is
/// hashed to 128 bits). Two halves, not a u128, whose 16-byte alignment
/// would pad every entry that holds one.
type Uid = [u64; 2];

/// Where a pod is in the pod table.
type Slot = u32;

/// An entry of the address table: a slot, and in the top bit which of its
/// pod's addresses .
const SLOT_MASK: u32 = 0x7fff_ffff;

/// Hashed for an entry whose pod is gone (never, while the tables agree).
const NO_IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);

/// The uid of the pod in `slot`.
fn uid_at(pods: &[Option<Pod>], slot: Slot) -> Uid {
    pods.get(slot as usize)
        .and_then(Option::as_ref)
        .map_or([0; 2], |p| p.uid)
}

/// The address an entry of the address table stands for.
fn claimed_ip(pods: &[Option<Pod>], entry: u32) -> Option<IpAddr> {
    let pod = pods.get((entry & SLOT_MASK) as usize)?.as_ref()?;
    pod.ips.as_slice().get((entry >> 31) as usize).copied()
}

fn uid_of(uid: &str) -> Uid {
    let hex: String = uid.chars().filter(|c| *c != '-').collect();
    if hex.len() == 32 {
        if let Ok(n) = u128::from_str_radix(&hex, 16) {
            return [(n >> 64) as u64, n as u64];
        }
    }
    use std::hash::{Hash, Hasher};
    let half = |salt: u8| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        salt.hash(&mut h);
        uid.hash(&mut h);
        h.finish() as u128
    };
    [half(1) as u64, half(2) as u64]
}

/// At most two addresses (a dual-stack pod), kept inline.
#[derive(Clone, Copy)]
struct Ips {
    ips: [IpAddr; 2],
    len: u8,
}

impl Ips {
    fn new(from: &[IpAddr]) -> Ips {
        let unspecified = IpAddr::from([0u8; 4]);
        let mut ips = [unspecified; 2];
        let len = from.len().min(2);
        ips[..len].copy_from_slice(&from[..len]);
        Ips {
            ips,
            len: len as u8,
        }
    }

    fn as_slice(&self) -> &[IpAddr] {
        &self.ips[..self.len as usize]
    }
}

struct Pod {
    uid: Uid,
    name: Box<str>,
    ips: Ips,
    group: u32,
    /// Index into the node names.
    node: u32,
    created: i64,
    phase: Phase,
    deleting: bool,
    host_network: bool,
    /// Seen in the list under way (see `Relisting`).
    seen: bool,
}

struct Service {
    namespace: Name,
    name: Name,
    cluster_ips: Box<[IpAddr]>,
    selector: Labels,
    seen: bool,
}

struct Node {
    addresses: Box<[IpAddr]>,
    seen: bool,
}

impl Default for Index {
    /// As `new`: with the names resolving uses interned.
    fn default() -> Index {
        Index::new()
    }
}

/// Groups and Services that go between two prunings of interned names.
const PRUNE_AFTER: usize = 256;

/// The index. Not thread-safe by itself: the watch writes it under a lock
/// that connection starts read (`super::Identities`).
pub struct Index {
    /// Pods by slot, a free slot `None`: a vector, whose room beyond its
    /// length is never touched, so not resident (a hash table's empty
    /// slots are), and whose slots the other tables name in 4 bytes.
    pods: Vec<Option<Pod>>,
    free_pods: Vec<Slot>,
    /// The pods' slots, by uid; the uid is read from the pod, so an entry
    /// is its 4-byte slot alone (a map would hold the 16-byte key too).
    pod_slots: HashTable<Slot>,
    /// Each pod IP's claimant, as its slot and which of its addresses (read from
    /// the pod); an address claimed by more than one pod (reuse, a terminating
    /// pod) has them all in `contested`.
    pod_ips: HashTable<u32>,
    hasher: ahash::RandomState,
    contested: HashMap<IpAddr, Vec<Slot>>,
    groups: Vec<Group>,
    group_ids: HashMap<GroupKey, u32>,
    free_groups: Vec<u32>,
    /// Groups of each namespace, for Service selectors.
    groups_in: HashMap<Name, HashSet<u32>>,
    services: HashMap<Box<str>, Service>,
    cluster_ips: HashMap<IpAddr, Box<str>>,
    /// Services of each namespace, by name (lexical order).
    services_in: HashMap<Name, BTreeMap<Name, Box<str>>>,
    nodes: HashMap<Name, Node>,
    node_ips: HashMap<IpAddr, Name>,
    node_names: Vec<Name>,
    node_ids: HashMap<Name, u32>,
    /// hostNetwork pods' declared ports, by (node, port), and by pod.
    host_ports: HashMap<(u32, u16), Slot>,
    host_pod_ports: HashMap<Slot, Box<[u16]>>,
    strings: HashSet<Name>,
    label_sets: HashSet<Labels>,
    /// The names `resolve` uses without interning (see `new`), held here
    /// so that pruning keeps them.
    fixed: Vec<Name>,
    /// Groups and Services gone since interned names were last pruned.
    gone_since_prune: usize,
    listed: [bool; 3],
    relisting: [bool; 3],
}

fn kind_index(k: ObjectKind) -> usize {
    k as usize
}

impl Index {
    pub fn new() -> Index {
        let mut index = Index {
            pods: Default::default(),
            free_pods: Default::default(),
            pod_slots: Default::default(),
            pod_ips: Default::default(),
            hasher: Default::default(),
            contested: Default::default(),
            groups: Default::default(),
            group_ids: Default::default(),
            free_groups: Default::default(),
            groups_in: Default::default(),
            services: Default::default(),
            cluster_ips: Default::default(),
            services_in: Default::default(),
            nodes: Default::default(),
            node_ips: Default::default(),
            node_names: Default::default(),
            node_ids: Default::default(),
            host_ports: Default::default(),
            host_pod_ports: Default::default(),
            strings: Default::default(),
            label_sets: Default::default(),
            fixed: Default::default(),
            gone_since_prune: Default::default(),
            listed: Default::default(),
            relisting: Default::default(),
        };
        for fixed in ["", "Service", "Node", "external", "unknown"] {
            let name = index.intern(fixed);
            index.fixed.push(name);
        }
        index
    }

    /// Forgets interned names and label sets that nothing holds any more
    /// (every rollout brings a new `pod-template-hash`, so they would grow
    /// for ever), once `PRUNE_AFTER` groups or Services went: a pass over
    /// the interned names, not one per object.
    fn gone(&mut self) {
        self.gone_since_prune += 1;
        if self.gone_since_prune < PRUNE_AFTER {
            return;
        }
        self.gone_since_prune = 0;
        // Label sets first: they hold names.
        self.label_sets.retain(|l| Arc::strong_count(l) > 1);
        self.strings.retain(|n| Arc::strong_count(n) > 1);
    }

    /// Objects held, by kind.
    pub fn len(&self, kind: ObjectKind) -> usize {
        match kind {
            ObjectKind::Pod => self.pod_slots.len(),
            ObjectKind::Service => self.services.len(),
            ObjectKind::Node => self.nodes.len(),
        }
    }

    /// Whether the first list of every kind has completed.
    pub fn synced(&self) -> bool {
        self.listed.iter().all(|l| *l)
    }

    pub fn listed(&self, kind: ObjectKind) -> bool {
        self.listed[kind_index(kind)]
    }

    fn intern(&mut self, s: &str) -> Name {
        if let Some(n) = self.strings.get(s) {
            return Arc::clone(n);
        }
        let n: Name = s.into();
        self.strings.insert(Arc::clone(&n));
        n
    }

    fn intern_labels(&mut self, pairs: &[(String, String)]) -> Labels {
        let mut interned: Vec<(Name, Name)> = pairs
            .iter()
            .map(|(k, v)| (self.intern(k), self.intern(v)))
            .collect();
        interned.sort();
        let set: Labels = interned.into();
        if let Some(same) = self.label_sets.get(&set) {
            return Arc::clone(same);
        }
        self.label_sets.insert(Arc::clone(&set));
        set
    }

    pub fn apply(&mut self, event: Event) {
        match event {
            Event::Pod(p) => self.put_pod(p),
            Event::PodGone { uid } => self.remove_pod(&uid),
            Event::Service(s) => self.put_service(s),
            Event::ServiceGone { uid } => self.remove_service(&uid),
            Event::Node(n) => self.put_node(n),
            Event::NodeGone { name } => self.remove_node(&name),
            Event::Relisting(kind) => {
                self.relisting[kind_index(kind)] = true;
                match kind {
                    ObjectKind::Pod => self.pods.iter_mut().flatten().for_each(|p| p.seen = false),
                    ObjectKind::Service => self.services.values_mut().for_each(|s| s.seen = false),
                    ObjectKind::Node => self.nodes.values_mut().for_each(|n| n.seen = false),
                }
            }
            Event::Listed(kind) => {
                if std::mem::take(&mut self.relisting[kind_index(kind)]) {
                    self.sweep(kind);
                }
                self.listed[kind_index(kind)] = true;
            }
        }
    }

    /// After a relist: what the list did not send is gone.
    fn sweep(&mut self, kind: ObjectKind) {
        match kind {
            ObjectKind::Pod => {
                let gone: Vec<Uid> = self
                    .pods
                    .iter()
                    .flatten()
                    .filter(|p| !p.seen)
                    .map(|p| p.uid)
                    .collect();
                gone.into_iter().for_each(|u| self.remove_uid(u));
            }
            ObjectKind::Service => {
                let gone: Vec<Box<str>> = self
                    .services
                    .iter()
                    .filter(|(_, s)| !s.seen)
                    .map(|(u, _)| u.clone())
                    .collect();
                gone.iter().for_each(|u| self.remove_service(u));
            }
            ObjectKind::Node => {
                let gone: Vec<Name> = self
                    .nodes
                    .iter()
                    .filter(|(_, n)| !n.seen)
                    .map(|(n, _)| Arc::clone(n))
                    .collect();
                gone.iter().for_each(|n| self.remove_node(n));
            }
        }
    }

    fn put_pod(&mut self, p: PodInfo) {
        let uid = uid_of(&p.uid);
        let labels = self.intern_labels(&p.labels);
        let (workload, kind) = {
            let label = |k: &str| {
                p.labels
                    .iter()
                    .find(|(key, _)| key == k)
                    .map(|(_, v)| v.as_str())
            };
            workload(&p.name, p.owner.as_ref(), label)
        };
        let key = (
            self.intern(&p.namespace),
            self.intern(workload),
            self.intern(kind),
            labels,
        );
        // The new group before the old one is let go: a pod alone in its
        // group (a StatefulSet's, a bare one) that changes keeps the group.
        let group = self.group(key);
        self.remove_uid(uid);
        let node = self.node_id(&p.node);
        let slot = match self.free_pods.pop() {
            Some(slot) => slot,
            None => {
                self.pods.push(None);
                (self.pods.len() - 1) as Slot
            }
        };
        let pod = Pod {
            uid,
            name: p.name.into(),
            ips: Ips::new(&p.ips),
            group,
            node,
            created: p.created,
            phase: p.phase,
            deleting: p.deleting,
            host_network: p.host_network,
            seen: true,
        };
        if pod.host_network {
            for port in &p.ports {
                self.host_ports.insert((node, *port), slot);
            }
            if !p.ports.is_empty() {
                self.host_pod_ports.insert(slot, p.ports.into());
            }
        }
        let ips = pod.ips;
        let host_network = pod.host_network;
        // In its slot first: the tables read uids and addresses from it.
        self.pods[slot as usize] = Some(pod);
        let pods = &self.pods;
        let hasher = &self.hasher;
        self.pod_slots
            .insert_unique(hasher.hash_one(uid), slot, |&s| {
                hasher.hash_one(uid_at(pods, s))
            });
        if !host_network {
            for ip in ips.as_slice() {
                match self.claim(*ip, slot) {
                    None => {}
                    // The same address listed twice.
                    Some(before) if before == slot => {}
                    Some(before) => {
                        let claims = self.contested.entry(*ip).or_insert_with(|| vec![before]);
                        claims.push(slot);
                    }
                }
            }
        }
    }

    /// The pod that claims `ip` in `pod_ips`.
    fn claimant(&self, ip: &IpAddr) -> Option<Slot> {
        let pods = &self.pods;
        self.pod_ips
            .find(self.hasher.hash_one(ip), |&e| {
                claimed_ip(pods, e) == Some(*ip)
            })
            .map(|&e| e & SLOT_MASK)
    }

    /// Makes the pod in `slot` (which has `ip`) the claimant of `ip`; the
    /// one before, if any.
    fn claim(&mut self, ip: IpAddr, slot: Slot) -> Option<Slot> {
        let pods = &self.pods;
        let which = pods
            .get(slot as usize)?
            .as_ref()?
            .ips
            .as_slice()
            .iter()
            .position(|a| *a == ip)?;
        let entry = slot | (which as u32) << 31;
        let hasher = &self.hasher;
        let rehash = |&e: &u32| hasher.hash_one(claimed_ip(pods, e).unwrap_or(NO_IP));
        let found = self.pod_ips.entry(
            hasher.hash_one(ip),
            |&e| claimed_ip(pods, e) == Some(ip),
            rehash,
        );
        match found {
            hash_table::Entry::Occupied(mut o) => {
                let before = *o.get() & SLOT_MASK;
                *o.get_mut() = entry;
                Some(before)
            }
            hash_table::Entry::Vacant(v) => {
                v.insert(entry);
                None
            }
        }
    }

    /// `ip` has no claimant in `pod_ips` any more.
    fn unclaim(&mut self, ip: &IpAddr) {
        let pods = &self.pods;
        let found = self.pod_ips.find_entry(self.hasher.hash_one(ip), |&e| {
            claimed_ip(pods, e) == Some(*ip)
        });
        if let Ok(entry) = found {
            entry.remove();
        }
    }

    /// The number of a group, made (with its Service) if it is new.
    fn group(&mut self, key: GroupKey) -> u32 {
        if let Some(&id) = self.group_ids.get(&key) {
            self.groups[id as usize].pods += 1;
            return id;
        }
        let (namespace, workload, kind, labels) = key.clone();
        let service = self.service_for(&namespace, &labels);
        let label = |k: &str| labels.iter().find(|(n, _)| &**n == k).map(|(_, v)| &**v);
        let names = super::workload::istio_names(&workload, label);
        let istio = [
            names.app,
            names.version,
            names.canonical_service,
            names.canonical_revision,
        ]
        .map(|n| self.intern(n));
        let group = Group {
            namespace: Arc::clone(&namespace),
            workload,
            kind,
            labels,
            service,
            istio,
            pods: 1,
        };
        let id = match self.free_groups.pop() {
            Some(id) => {
                self.groups[id as usize] = group;
                id
            }
            None => {
                self.groups.push(group);
                (self.groups.len() - 1) as u32
            }
        };
        self.group_ids.insert(key, id);
        self.groups_in.entry(namespace).or_default().insert(id);
        id
    }

    fn release_group(&mut self, id: u32) {
        let g = &mut self.groups[id as usize];
        g.pods -= 1;
        if g.pods > 0 {
            return;
        }
        let key = (
            Arc::clone(&g.namespace),
            Arc::clone(&g.workload),
            Arc::clone(&g.kind),
            Arc::clone(&g.labels),
        );
        self.group_ids.remove(&key);
        if let Some(set) = self.groups_in.get_mut(&key.0) {
            set.remove(&id);
            if set.is_empty() {
                self.groups_in.remove(&key.0);
            }
        }
        // Its names go with it, unless something else holds them.
        self.groups[id as usize] = Group {
            namespace: self.empty(),
            workload: self.empty(),
            kind: self.empty(),
            labels: Arc::new([]),
            service: self.empty(),
            istio: Default::default(),
            pods: 0,
        };
        self.free_groups.push(id);
        self.gone();
    }

    fn node_id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.node_ids.get(name) {
            return id;
        }
        let name = self.intern(name);
        self.node_names.push(Arc::clone(&name));
        let id = (self.node_names.len() - 1) as u32;
        self.node_ids.insert(name, id);
        id
    }

    fn remove_pod(&mut self, uid: &str) {
        self.remove_uid(uid_of(uid));
    }

    fn remove_uid(&mut self, uid: Uid) {
        let pods = &self.pods;
        let found = self
            .pod_slots
            .find_entry(self.hasher.hash_one(uid), |&s| uid_at(pods, s) == uid);
        let Ok(entry) = found else {
            return;
        };
        let (slot, _) = entry.remove();
        // Its claims go while the pod is still in its slot (the address
        // table reads addresses from it).
        let ips = match &self.pods[slot as usize] {
            Some(pod) => pod.ips,
            None => return,
        };
        for ip in ips.as_slice() {
            match self.contested.get_mut(ip) {
                Some(claims) => {
                    claims.retain(|s| *s != slot);
                    let rest = claims.clone();
                    if let [only] = rest[..] {
                        self.contested.remove(ip);
                        self.claim(*ip, only);
                    } else if self.claimant(ip) == Some(slot) {
                        if let Some(&other) = rest.last() {
                            self.claim(*ip, other);
                        }
                    }
                }
                None => {
                    if self.claimant(ip) == Some(slot) {
                        self.unclaim(ip);
                    }
                }
            }
        }
        let Some(pod) = self.pods[slot as usize].take() else {
            return;
        };
        self.free_pods.push(slot);
        for port in self.host_pod_ports.remove(&slot).unwrap_or_default().iter() {
            let key = (pod.node, *port);
            if self.host_ports.get(&key) == Some(&slot) {
                self.host_ports.remove(&key);
            }
        }
        self.release_group(pod.group);
    }

    fn pod(&self, slot: Slot) -> Option<&Pod> {
        self.pods.get(slot as usize)?.as_ref()
    }

    /// The first Service (by name) of a namespace whose selector the
    /// labels match; the empty name if none.
    fn service_for(&self, namespace: &Name, labels: &Labels) -> Name {
        let found = self.services_in.get(namespace).and_then(|services| {
            services.iter().find_map(|(name, uid)| {
                let s = self.services.get(uid)?;
                let matches = !s.selector.is_empty()
                    && s.selector
                        .iter()
                        .all(|(k, v)| labels.iter().any(|(pk, pv)| pk == k && pv == v));
                matches.then(|| Arc::clone(name))
            })
        });
        found.unwrap_or_else(|| self.empty())
    }

    fn empty(&self) -> Name {
        self.intern_get("")
    }

    /// An interned string, without a write (`new` interns the fixed ones).
    fn intern_get(&self, s: &str) -> Name {
        self.strings.get(s).map_or_else(|| s.into(), Arc::clone)
    }

    /// Recomputes the Service of every group in a namespace (a Service
    /// came, went or changed its selector).
    fn reselect(&mut self, namespace: &Name) {
        let Some(ids) = self.groups_in.get(namespace) else {
            return;
        };
        let updates: Vec<(u32, Name)> = ids
            .iter()
            .map(|&id| {
                let g = &self.groups[id as usize];
                (id, self.service_for(&g.namespace, &g.labels))
            })
            .collect();
        for (id, service) in updates {
            self.groups[id as usize].service = service;
        }
    }

    fn put_service(&mut self, s: ServiceInfo) {
        self.remove_service_entry(&s.uid);
        let namespace = self.intern(&s.namespace);
        let name = self.intern(&s.name);
        let selector = self.intern_labels(&s.selector);
        let uid: Box<str> = s.uid.into();
        for ip in &s.cluster_ips {
            self.cluster_ips.insert(*ip, uid.clone());
        }
        self.services_in
            .entry(Arc::clone(&namespace))
            .or_default()
            .insert(Arc::clone(&name), uid.clone());
        self.services.insert(
            uid,
            Service {
                namespace: Arc::clone(&namespace),
                name,
                cluster_ips: s.cluster_ips.into(),
                selector,
                seen: true,
            },
        );
        self.reselect(&namespace);
    }

    fn remove_service(&mut self, uid: &str) {
        if let Some(namespace) = self.remove_service_entry(uid) {
            self.reselect(&namespace);
        }
    }

    /// Removes a Service's entries; its namespace, if it was there.
    fn remove_service_entry(&mut self, uid: &str) -> Option<Name> {
        let s = self.services.remove(uid)?;
        for ip in s.cluster_ips.iter() {
            if self.cluster_ips.get(ip).is_some_and(|u| &**u == uid) {
                self.cluster_ips.remove(ip);
            }
        }
        if let Some(names) = self.services_in.get_mut(&s.namespace) {
            if names.get(&s.name).is_some_and(|u| &**u == uid) {
                names.remove(&s.name);
            }
            if names.is_empty() {
                self.services_in.remove(&s.namespace);
            }
        }
        self.gone();
        Some(s.namespace)
    }

    fn put_node(&mut self, n: NodeInfo) {
        self.remove_node(&n.name);
        let name = self.intern(&n.name);
        for ip in &n.addresses {
            self.node_ips.insert(*ip, Arc::clone(&name));
        }
        self.nodes.insert(
            name,
            Node {
                addresses: n.addresses.into(),
                seen: true,
            },
        );
    }

    fn remove_node(&mut self, name: &str) {
        let Some(node) = self.nodes.remove(name) else {
            return;
        };
        for ip in node.addresses.iter() {
            if self.node_ips.get(ip).is_some_and(|n| &**n == name) {
                self.node_ips.remove(ip);
            }
        }
    }

    /// Which pod owns an address now: a running one (the newest, if
    /// several claim it), else a terminating one; never a finished one.
    fn owner_of(&self, ip: &IpAddr) -> Option<&Pod> {
        let eligible = |p: &&Pod| !p.phase.finished();
        match self.contested.get(ip) {
            None => self.claimant(ip).and_then(|s| self.pod(s)).filter(eligible),
            Some(claims) => claims
                .iter()
                .filter_map(|s| self.pod(*s))
                .filter(eligible)
                .max_by_key(|p| (!p.deleting, p.created)),
        }
    }

    fn pod_identity(&self, p: &Pod, with_pod: bool) -> Identity {
        let g = &self.groups[p.group as usize];
        Identity {
            namespace: Arc::clone(&g.namespace),
            workload: Arc::clone(&g.workload),
            kind: Arc::clone(&g.kind),
            pod: if with_pod {
                p.name.as_ref().into()
            } else {
                self.empty()
            },
            service: Arc::clone(&g.service),
            istio: g.istio.clone(),
        }
    }

    /// Who `ip` is, seen on `port` of a connection where it plays `role`;
    /// with the pod's name if `with_pod`.
    pub fn resolve_with(&self, ip: IpAddr, port: u16, role: Role, with_pod: bool) -> Identity {
        if let Some(s) = self.cluster_ips.get(&ip).and_then(|u| self.services.get(u)) {
            return Identity {
                namespace: Arc::clone(&s.namespace),
                workload: Arc::clone(&s.name),
                kind: self.intern_get("Service"),
                pod: self.empty(),
                service: Arc::clone(&s.name),
                istio: Default::default(),
            };
        }
        if let Some(p) = self.owner_of(&ip) {
            return self.pod_identity(p, with_pod);
        }
        if let Some(node) = self.node_ips.get(&ip) {
            if role == Role::Server {
                let host_pod = self
                    .node_ids
                    .get(node)
                    .and_then(|id| self.host_ports.get(&(*id, port)))
                    .and_then(|s| self.pod(*s))
                    .filter(|p| !p.phase.finished());
                if let Some(p) = host_pod {
                    return self.pod_identity(p, with_pod);
                }
            }
            return Identity {
                namespace: self.empty(),
                workload: Arc::clone(node),
                kind: self.intern_get("Node"),
                pod: self.empty(),
                service: self.empty(),
                istio: Default::default(),
            };
        }
        let what = if self.synced() { "external" } else { "unknown" };
        let name = self.intern_get(what);
        Identity {
            namespace: self.empty(),
            workload: Arc::clone(&name),
            kind: name,
            pod: self.empty(),
            service: self.empty(),
            istio: Default::default(),
        }
    }

    /// The node of the pod that owns `ip` now, if a pod does.
    pub fn pod_node(&self, ip: IpAddr) -> Option<&str> {
        let pod = self.owner_of(&ip)?;
        self.node_names.get(pod.node as usize).map(|n| &**n)
    }

    /// Who `ip` is, the pod's name included.
    pub fn resolve(&self, ip: IpAddr, port: u16, role: Role) -> Identity {
        self.resolve_with(ip, port, role, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn pod(uid: &str, ns: &str, name: &str, ips: &[&str]) -> PodInfo {
        PodInfo {
            uid: uid.into(),
            namespace: ns.into(),
            name: name.into(),
            phase: Phase::Running,
            deleting: false,
            ips: ips.iter().map(|s| ip(s)).collect(),
            host_network: false,
            node: "node-1".into(),
            owner: None,
            labels: vec![],
            ports: vec![],
            created: 100,
        }
    }

    fn synced() -> Index {
        let mut index = Index::new();
        for kind in ObjectKind::ALL {
            index.apply(Event::Listed(kind));
        }
        index
    }

    fn who(index: &Index, addr: &str) -> (String, String, String) {
        let id = index.resolve(ip(addr), 80, Role::Server);
        (
            id.namespace.to_string(),
            id.workload.to_string(),
            id.pod.to_string(),
        )
    }

    #[test]
    fn every_pod_ip_of_a_dual_stack_pod_resolves_to_it() {
        let mut index = synced();
        index.apply(Event::Pod(pod(
            "u1",
            "shop",
            "web-0",
            &["10.244.1.5", "fd00::5"],
        )));
        for addr in ["10.244.1.5", "fd00::5"] {
            assert_eq!(
                who(&index, addr),
                ("shop".into(), "web-0".into(), "web-0".into())
            );
        }
        assert_eq!(
            index
                .resolve(ip("10.9.9.9"), 80, Role::Client)
                .kind
                .as_ref(),
            "external"
        );
    }

    #[test]
    fn a_reused_ip_belongs_to_the_running_pod_not_the_finished_or_terminating_one() {
        let mut index = synced();
        let mut old = pod("old", "a", "job-x", &["10.244.1.7"]);
        old.phase = Phase::Succeeded;
        index.apply(Event::Pod(old));
        assert_eq!(
            who(&index, "10.244.1.7").1,
            "external",
            "a finished pod owns nothing"
        );
        let mut leaving = pod("leaving", "a", "web-1", &["10.244.1.7"]);
        leaving.deleting = true;
        index.apply(Event::Pod(leaving));
        assert_eq!(
            who(&index, "10.244.1.7").2,
            "web-1",
            "terminating, and alone: still its own"
        );
        let mut new = pod("new", "b", "api-1", &["10.244.1.7"]);
        new.created = 50; // older than the terminating pod, but running
        index.apply(Event::Pod(new));
        assert_eq!(who(&index, "10.244.1.7").2, "api-1");
    }

    #[test]
    fn a_late_delete_of_the_old_pod_leaves_the_new_owner() {
        let mut index = synced();
        index.apply(Event::Pod(pod("old", "a", "web-1", &["10.244.1.8"])));
        let mut new = pod("new", "b", "api-1", &["10.244.1.8"]);
        new.created = 200;
        index.apply(Event::Pod(new));
        assert_eq!(
            who(&index, "10.244.1.8").2,
            "api-1",
            "the newest running pod"
        );
        index.apply(Event::PodGone { uid: "old".into() });
        assert_eq!(who(&index, "10.244.1.8").2, "api-1");
        index.apply(Event::PodGone { uid: "new".into() });
        assert_eq!(who(&index, "10.244.1.8").1, "external");
    }

    #[test]
    fn claims_of_three_pods_on_one_address_give_way_in_any_order() {
        let mut index = synced();
        for (uid, created) in [("a", 1), ("b", 2), ("c", 3)] {
            let mut p = pod(uid, "ns", uid, &["10.0.0.9"]);
            p.created = created;
            index.apply(Event::Pod(p));
        }
        assert_eq!(who(&index, "10.0.0.9").2, "c", "the newest");
        index.apply(Event::PodGone { uid: "b".into() });
        assert_eq!(who(&index, "10.0.0.9").2, "c");
        index.apply(Event::PodGone { uid: "c".into() });
        assert_eq!(who(&index, "10.0.0.9").2, "a");
        // Updated in place (same uid): still the one claimant.
        index.apply(Event::Pod(pod("a", "ns", "a", &["10.0.0.9"])));
        assert_eq!(who(&index, "10.0.0.9").2, "a");
        index.apply(Event::PodGone { uid: "a".into() });
        assert_eq!(who(&index, "10.0.0.9").1, "external");
        assert_eq!(index.len(ObjectKind::Pod), 0);
    }

    #[test]
    fn replicas_share_one_group_that_goes_with_the_last() {
        // Three pods labelled alike, with or without a controller.
        let replicas = |owner: Option<Owner>| {
            let mut index = synced();
            for i in 0..3 {
                let ip = format!("10.0.1.{i}");
                let mut p = pod(&format!("r{i}"), "shop", &format!("web-{i}"), &[&ip]);
                p.labels = vec![("app".into(), "web".into())];
                p.owner = owner.clone();
                index.apply(Event::Pod(p));
            }
            index
        };
        let index = replicas(None);
        assert_eq!(
            index.group_ids.len(),
            3,
            "no controller: each pod its own workload"
        );
        let mut index = replicas(Some(Owner {
            kind: "StatefulSet".into(),
            name: "web".into(),
        }));
        assert_eq!(index.group_ids.len(), 1);
        for i in 0..3 {
            index.apply(Event::PodGone {
                uid: format!("r{i}"),
            });
        }
        assert!(index.group_ids.is_empty() && index.groups_in.is_empty());
        assert_eq!(index.free_groups.len(), 1);
    }

    #[test]
    fn a_host_network_address_is_its_node_but_for_the_ports_a_pod_declares() {
        let mut index = synced();
        index.apply(Event::Node(NodeInfo {
            name: "node-1".into(),
            addresses: vec![ip("192.168.1.10")],
        }));
        let mut agent = pod("ds", "kube-system", "agent-x", &["192.168.1.10"]);
        agent.host_network = true;
        agent.ports = vec![9100];
        agent.owner = Some(Owner {
            kind: "DaemonSet".into(),
            name: "agent".into(),
        });
        index.apply(Event::Pod(agent));
        let server = index.resolve(ip("192.168.1.10"), 9100, Role::Server);
        assert_eq!(
            (server.workload.as_ref(), server.kind.as_ref()),
            ("agent", "DaemonSet")
        );
        let other = index.resolve(ip("192.168.1.10"), 22, Role::Server);
        assert_eq!(
            (other.workload.as_ref(), other.kind.as_ref()),
            ("node-1", "Node")
        );
        let client = index.resolve(ip("192.168.1.10"), 9100, Role::Client);
        assert_eq!(client.kind.as_ref(), "Node", "a client's port says nothing");
    }

    #[test]
    fn a_cluster_ip_is_its_service_and_pods_get_the_first_matching_service() {
        let mut index = synced();
        let mut p = pod("u1", "shop", "cart-abc", &["10.244.2.3"]);
        p.labels = vec![("app".into(), "cart".into()), ("tier".into(), "web".into())];
        index.apply(Event::Pod(p));
        assert_eq!(
            index
                .resolve(ip("10.244.2.3"), 80, Role::Server)
                .service
                .as_ref(),
            ""
        );
        for (uid, name, selector) in [
            ("s2", "zz-cart", "cart"),
            ("s1", "cart", "cart"),
            ("s3", "other", "nope"),
        ] {
            index.apply(Event::Service(ServiceInfo {
                uid: uid.into(),
                namespace: "shop".into(),
                name: name.into(),
                cluster_ips: vec![ip(&format!("10.96.0.{}", name.len()))],
                selector: vec![("app".into(), selector.into())],
            }));
        }
        let id = index.resolve(ip("10.244.2.3"), 80, Role::Server);
        assert_eq!(
            id.service.as_ref(),
            "cart",
            "the lexically first of two that match"
        );
        let svc = index.resolve(ip("10.96.0.4"), 80, Role::Server);
        assert_eq!(
            (
                svc.namespace.as_ref(),
                svc.workload.as_ref(),
                svc.kind.as_ref(),
                svc.service.as_ref()
            ),
            ("shop", "cart", "Service", "cart")
        );
        index.apply(Event::ServiceGone { uid: "s1".into() });
        assert_eq!(
            index
                .resolve(ip("10.244.2.3"), 80, Role::Server)
                .service
                .as_ref(),
            "zz-cart"
        );
        // A Service of another namespace never selects it.
        index.apply(Event::Service(ServiceInfo {
            uid: "s4".into(),
            namespace: "elsewhere".into(),
            name: "a".into(),
            cluster_ips: vec![],
            selector: vec![("app".into(), "cart".into())],
        }));
        assert_eq!(
            index
                .resolve(ip("10.244.2.3"), 80, Role::Server)
                .service
                .as_ref(),
            "zz-cart"
        );
    }

    #[test]
    fn before_the_first_lists_complete_unknown_addresses_are_unknown() {
        let mut index = Index::new();
        assert_eq!(
            index
                .resolve(ip("10.1.1.1"), 80, Role::Client)
                .workload
                .as_ref(),
            "unknown"
        );
        index.apply(Event::Listed(ObjectKind::Pod));
        index.apply(Event::Listed(ObjectKind::Service));
        assert!(!index.synced());
        index.apply(Event::Listed(ObjectKind::Node));
        assert_eq!(
            index
                .resolve(ip("10.1.1.1"), 80, Role::Client)
                .workload
                .as_ref(),
            "external"
        );
    }

    #[test]
    fn names_of_rollouts_long_gone_are_forgotten() {
        let mut index = synced();
        let interned = |index: &Index| (index.strings.len(), index.label_sets.len());
        let rollout = |index: &mut Index, n: usize| {
            let hash = format!("{n:09x}");
            let mut p = pod(
                &format!("uid-{n}"),
                "shop",
                &format!("web-{hash}-x"),
                &["10.244.1.5"],
            );
            p.labels = vec![
                ("app".into(), "web".into()),
                ("pod-template-hash".into(), hash.clone()),
            ];
            p.owner = Some(Owner {
                kind: "ReplicaSet".into(),
                name: format!("web-{hash}"),
            });
            index.apply(Event::Pod(p));
            if n > 0 {
                index.apply(Event::PodGone {
                    uid: format!("uid-{}", n - 1),
                });
            }
        };
        rollout(&mut index, 0);
        let one = interned(&index);
        for n in 1..5 * PRUNE_AFTER {
            rollout(&mut index, n);
        }
        let (strings, sets) = interned(&index);
        assert!(
            strings <= one.0 + PRUNE_AFTER,
            "{strings} names after churn"
        );
        assert!(sets <= one.1 + PRUNE_AFTER, "{sets} label sets after churn");
        assert_eq!(who(&index, "10.244.1.5").1, "web");
        // What resolving uses without interning stays interned.
        for fixed in ["", "Service", "Node", "external", "unknown"] {
            assert!(index.strings.contains(fixed), "{fixed}");
        }
    }

    #[test]
    fn a_relist_removes_what_it_did_not_send_again() {
        let mut index = synced();
        index.apply(Event::Pod(pod("a", "ns", "a", &["10.0.0.1"])));
        index.apply(Event::Pod(pod("b", "ns", "b", &["10.0.0.2"])));
        index.apply(Event::Relisting(ObjectKind::Pod));
        index.apply(Event::Pod(pod("b", "ns", "b", &["10.0.0.2"])));
        index.apply(Event::Listed(ObjectKind::Pod));
        assert_eq!(index.len(ObjectKind::Pod), 1);
        assert_eq!(who(&index, "10.0.0.1").1, "external");
        assert_eq!(who(&index, "10.0.0.2").1, "b");
    }
}

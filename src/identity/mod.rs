//! Identity: whose traffic it is, on Kubernetes. This module owns what the
//! exporter knows of the cluster: a projection of its Pods, Services and
//! Nodes (`index`), how workloads are named (`workload`, as Istio names
//! them), and the table of identities that series keys refer to by number
//! (`Identities`). The API server's watch (`watch`) feeds the index; tests
//! and benchmarks feed it through the same `Index::apply`.
//!
//! It is read once per connection, when the connection is first seen
//! (`Identities::resolve`, a read lock): a connection's identity is fixed
//! for its life, and nothing per packet touches this module.

pub mod index;
pub mod watch;
pub mod workload;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

pub use index::{Event, Index, NodeInfo, ObjectKind, Phase, PodInfo, Role, ServiceInfo};

/// Who an address is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The pod's or Service's namespace; empty for nodes and addresses the
    /// cluster does not know.
    pub namespace: Arc<str>,
    /// The workload (Istio's name for it); a node's name; `external`;
    /// `unknown` before the first lists completed.
    pub workload: Arc<str>,
    /// `Deployment`, `StatefulSet`, ... `Pod`, `Node`, `Service`,
    /// `external`, `unknown`.
    pub kind: Arc<str>,
    /// The pod's name; empty for anything else.
    pub pod: Arc<str>,
    /// The Service addressed (a cluster IP), or the one whose selector
    /// matches the pod; empty if none.
    pub service: Arc<str>,
    /// A pod's names in Istio's metrics (`workload::istio_names`): app,
    /// version, canonical service, canonical revision; empty for anything
    /// but a pod.
    pub istio: [Arc<str>; 4],
}

impl Identity {
    fn of(namespace: &str, workload: &str, kind: &str, service: &str) -> Identity {
        Identity {
            namespace: namespace.into(),
            workload: workload.into(),
            kind: kind.into(),
            pod: "".into(),
            service: service.into(),
            istio: Default::default(),
        }
    }
}

/// An identity from its five names, for other modules' tests.
#[cfg(test)]
pub fn test_identity(
    namespace: &str,
    workload: &str,
    kind: &str,
    pod: &str,
    service: &str,
) -> Identity {
    Identity {
        namespace: namespace.into(),
        workload: workload.into(),
        kind: kind.into(),
        pod: pod.into(),
        service: service.into(),
        istio: Default::default(),
    }
}

/// Who both ends of one connection are, pod names included: for the
/// connection's own records (the flow log, long-connection series), which
/// name one connection and so may name its pods without adding series.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peers {
    pub client: Identity,
    pub server: Identity,
}

/// Identities that series keys hold, at most; more resolve to `other`.
/// Without pod names a label set's identity is a workload, so this bounds
/// workloads, not connections.
pub const MAX_IDENTITIES: usize = 65_535;

/// The exporter's view of the cluster, shared: the index (written by the
/// watch), and the identities series keys refer to by number.
pub struct Identities {
    index: RwLock<Index>,
    table: Mutex<Table>,
    /// The empty name, for identities without a pod.
    empty: Arc<str>,
    /// Whether identities keep Istio's names (`--istio-metrics`); without,
    /// they are left out, so that pods of a workload whose versions differ
    /// share one identity.
    istio_names: bool,
    pub stats: WatchStats,
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Identities")
    }
}

/// What the watch did, for the exporter's own metrics.
#[derive(Default)]
pub struct WatchStats {
    /// Watch errors survived, by kind of object.
    pub errors: [AtomicU64; 3],
    /// Lists begun again after the first (410 Gone, a dropped watch).
    pub relists: [AtomicU64; 3],
    /// Identities turned into `other` because the table was full.
    pub table_full: AtomicU64,
}

#[derive(Default)]
struct Table {
    ids: HashMap<Identity, u32>,
    list: Vec<Identity>,
}

/// The id of the identity `other` (a full table).
pub const OTHER: u32 = 0;

impl Identities {
    pub fn new() -> Arc<Identities> {
        Identities::with_istio_names(false)
    }

    /// The identities, with Istio's names of pods (app, version, canonical
    /// service and revision) if `istio_names`.
    pub fn with_istio_names(istio_names: bool) -> Arc<Identities> {
        let other = Identity::of("", "other", "other", "");
        let mut table = Table::default();
        table.ids.insert(other.clone(), OTHER);
        table.list.push(other);
        Arc::new(Identities {
            index: RwLock::new(Index::new()),
            table: Mutex::new(table),
            empty: "".into(),
            istio_names,
            stats: WatchStats::default(),
        })
    }

    /// Applies the watch's events, under one write lock.
    pub fn apply(&self, events: impl IntoIterator<Item = Event>) {
        let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
        for e in events {
            index.apply(e);
        }
    }

    /// Reads the index (for the exporter's metrics and tests).
    pub fn with_index<T>(&self, f: impl FnOnce(&Index) -> T) -> T {
        f(&self.index.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The number of who `ip` is now; called when a connection starts.
    /// Without `with_pod` the pod's name is left out, so that every pod of
    /// a workload shares one identity (and the table stays the size of the
    /// workloads, not of the pods that ever ran).
    pub fn resolve(&self, ip: IpAddr, port: u16, role: Role, with_pod: bool) -> u32 {
        let identity = self.with_index(|index| index.resolve_with(ip, port, role, with_pod));
        self.number(identity)
    }

    /// The number of an identity resolved already (`peers`), the pod's
    /// name left out unless `with_pod`: a connection's series and its
    /// record then name the same owner, read at one moment.
    pub fn number_of(&self, who: &Identity, with_pod: bool) -> u32 {
        if with_pod || who.pod.is_empty() {
            return self.number(who.clone());
        }
        self.number(Identity {
            pod: Arc::clone(&self.empty),
            ..who.clone()
        })
    }

    /// The number of an identity in the table: made if new, `other` when
    /// the table is full.
    fn number(&self, mut identity: Identity) -> u32 {
        if !self.istio_names {
            identity.istio = Default::default();
        }
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = table.ids.get(&identity) {
            return *id;
        }
        if table.list.len() > MAX_IDENTITIES {
            self.stats.table_full.fetch_add(1, Ordering::Relaxed);
            return OTHER;
        }
        let id = table.list.len() as u32;
        table.ids.insert(identity.clone(), id);
        table.list.push(identity);
        id
    }

    /// Who the two ends of a connection to `server_port` are now, under one
    /// read of the index; called when a connection with a record starts.
    /// Not kept in the table: the record holds them and lets go with it.
    pub fn peers(&self, client: IpAddr, server: IpAddr, server_port: u16) -> Arc<Peers> {
        self.with_index(|index| {
            Arc::new(Peers {
                client: index.resolve(client, server_port, Role::Client),
                server: index.resolve(server, server_port, Role::Server),
            })
        })
    }

    /// Whether a pod owns `ip` now, on `node` if one is named.
    pub fn is_pod_on(&self, ip: IpAddr, node: Option<&str>) -> bool {
        self.with_index(|index| match (index.pod_node(ip), node) {
            (Some(on), Some(node)) => on == node,
            (found, None) => found.is_some(),
            (None, Some(_)) => false,
        })
    }

    /// The identity behind a number (for label strings at scrape time).
    pub fn get(&self, id: u32) -> Identity {
        let table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        table
            .list
            .get(id as usize)
            .unwrap_or(&table.list[OTHER as usize])
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two pods of one workload, of two versions.
    fn two_versions(identities: &Identities) -> (u32, u32) {
        let pod = |version: &str| Identity {
            istio: ["web", version, "web", version].map(Into::into),
            ..test_identity("shop", "web", "Deployment", "", "")
        };
        (
            identities.number_of(&pod("v1"), false),
            identities.number_of(&pod("v2"), false),
        )
    }

    #[test]
    fn versions_split_a_workload_only_for_istio_s_names() {
        let plain = Identities::new();
        let (a, b) = two_versions(&plain);
        assert_eq!(a, b);
        assert_eq!(plain.get(a).istio, <[Arc<str>; 4]>::default());
        let istio = Identities::with_istio_names(true);
        let (a, b) = two_versions(&istio);
        assert_ne!(a, b);
        assert_eq!(&*istio.get(b).istio[1], "v2");
    }
}

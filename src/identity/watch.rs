//! The API server's watch (kube-rs): Pods in every namespace, Services and
//! Nodes, each listed and then watched by kube-rs's watcher (which lists
//! again after a 410 Gone or a dropped watch, and backs off after errors),
//! turned into index events. Each object becomes its projection here; the
//! object itself is not kept.
//!
//! Faults are survived and counted (`WatchStats`): an API server that
//! cannot be reached leaves identities `unknown` while the watch retries; a
//! resource that RBAC forbids is said once, naming the verb and resource.

use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::runtime::watcher::{self, watcher, Event as Watched};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};

use super::index::{Event, NodeInfo, ObjectKind, Phase, PodInfo, ServiceInfo};
use super::workload::Owner;
use super::Identities;

/// A client from `--kubeconfig FILE`, or else as kubectl finds one
/// (`KUBECONFIG`, `~/.kube/config`, or the pod's service account in the
/// cluster).
pub async fn client(kubeconfig: Option<&Path>) -> anyhow::Result<Client> {
    let config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("--kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &Default::default())
                .await
                .with_context(|| format!("--kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("no Kubernetes configuration: not in a cluster, no KUBECONFIG")?,
    };
    Client::try_from(config).context("cannot make a Kubernetes client")
}

/// Watches the three kinds until the runtime stops, feeding `identities`.
pub async fn run(client: Client, identities: Arc<Identities>) {
    let pods = watch_kind(
        Api::<Pod>::all(client.clone()),
        ObjectKind::Pod,
        Arc::clone(&identities),
        pod_info,
        |p| Event::PodGone {
            uid: p.metadata.uid.clone().unwrap_or_default(),
        },
    );
    let services = watch_kind(
        Api::<Service>::all(client.clone()),
        ObjectKind::Service,
        Arc::clone(&identities),
        service_info,
        |s| Event::ServiceGone {
            uid: s.metadata.uid.clone().unwrap_or_default(),
        },
    );
    let nodes = watch_kind(
        Api::<Node>::all(client),
        ObjectKind::Node,
        identities,
        node_info,
        |n| Event::NodeGone {
            name: n.metadata.name.clone().unwrap_or_default(),
        },
    );
    tokio::join!(pods, services, nodes);
}

async fn watch_kind<K>(
    api: Api<K>,
    kind: ObjectKind,
    identities: Arc<Identities>,
    applied: fn(&K) -> Option<Event>,
    deleted: fn(&K) -> Event,
) where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let mut stream = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
    let i = kind as usize;
    let mut lists = 0u64;
    let mut said_forbidden = false;
    while let Some(item) = stream.next().await {
        let event = match item {
            Ok(Watched::Init) => {
                lists += 1;
                if lists > 1 {
                    identities.stats.relists[i].fetch_add(1, Ordering::Relaxed);
                }
                Some(Event::Relisting(kind))
            }
            Ok(Watched::InitApply(o)) | Ok(Watched::Apply(o)) => applied(&o),
            Ok(Watched::Delete(o)) => Some(deleted(&o)),
            Ok(Watched::InitDone) => Some(Event::Listed(kind)),
            Err(e) => {
                identities.stats.errors[i].fetch_add(1, Ordering::Relaxed);
                if forbidden(&e) {
                    if !said_forbidden {
                        eprintln!(
                            "tcp-exporter: kubernetes: forbidden to list and watch {} (RBAC): \
                             grant get, list and watch on {} in a ClusterRole bound to this \
                             exporter's service account; meanwhile their addresses read \
                             `unknown`",
                            kind.as_str(),
                            kind.as_str()
                        );
                        said_forbidden = true;
                    }
                } else if identities.stats.errors[i].load(Ordering::Relaxed) == 1 {
                    eprintln!(
                        "tcp-exporter: kubernetes: watching {}: {e}; retrying (errors are counted \
                         in tcp_exporter_kubernetes_watch_errors_total)",
                        kind.as_str()
                    );
                }
                None
            }
        };
        if let Some(event) = event {
            identities.apply([event]);
        }
    }
}

fn forbidden(e: &watcher::Error) -> bool {
    let api = match e {
        watcher::Error::InitialListFailed(e) | watcher::Error::WatchStartFailed(e) => e,
        watcher::Error::WatchError(status) => return status.code == 403,
        _ => return false,
    };
    matches!(api, kube::Error::Api(status) if status.code == 403)
}

fn ips<'a>(values: impl Iterator<Item = &'a str>) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for ip in values.filter_map(|s| s.parse().ok()) {
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}

fn pod_info(p: &Pod) -> Option<Event> {
    let meta = &p.metadata;
    let spec = p.spec.as_ref();
    let status = p.status.as_ref();
    let listed = status.and_then(|s| s.pod_ips.as_ref());
    let single = status.and_then(|s| s.pod_ip.as_deref());
    let pod_ips = match listed {
        Some(list) => ips(list.iter().map(|p| p.ip.as_str())),
        None => ips(single.into_iter()),
    };
    let mut ports = Vec::new();
    for c in spec.map(|s| s.containers.as_slice()).unwrap_or_default() {
        for port in c.ports.iter().flatten() {
            for p in [Some(port.container_port), port.host_port]
                .into_iter()
                .flatten()
            {
                if let Ok(p) = u16::try_from(p) {
                    if !ports.contains(&p) {
                        ports.push(p);
                    }
                }
            }
        }
    }
    Some(Event::Pod(PodInfo {
        uid: meta.uid.clone()?,
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        phase: Phase::parse(status.and_then(|s| s.phase.as_deref()).unwrap_or("")),
        deleting: meta.deletion_timestamp.is_some(),
        ips: pod_ips,
        host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
        node: spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        owner: meta
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .map(|o| Owner {
                kind: o.kind.clone(),
                name: o.name.clone(),
            }),
        labels: meta
            .labels
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        ports,
        created: meta
            .creation_timestamp
            .as_ref()
            .map_or(0, |t| t.0.as_second()),
    }))
}

fn service_info(s: &Service) -> Option<Event> {
    let meta = &s.metadata;
    let spec = s.spec.as_ref();
    let listed = spec.and_then(|s| s.cluster_ips.as_ref());
    let single = spec.and_then(|s| s.cluster_ip.as_deref());
    // "None" (headless) parses as no address and is left out.
    let cluster_ips = match listed {
        Some(list) => ips(list.iter().map(String::as_str)),
        None => ips(single.into_iter()),
    };
    Some(Event::Service(ServiceInfo {
        uid: meta.uid.clone()?,
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        cluster_ips,
        selector: spec
            .and_then(|s| s.selector.as_ref())
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }))
}

fn node_info(n: &Node) -> Option<Event> {
    let addresses = n
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
        .filter(|a| a.type_ == "InternalIP" || a.type_ == "ExternalIP")
        .map(|a| a.address.as_str());
    Some(Event::Node(NodeInfo {
        name: n.metadata.name.clone()?,
        addresses: ips(addresses),
    }))
}

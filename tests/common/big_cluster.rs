//! A large cluster for the identity index: 150,000 pods (5,000
//! workloads of 30 replicas over 500 namespaces, one in ten a StatefulSet,
//! the rest Deployments; names, uids and labels as the API gives them), 20,000 Services and 5,000 Nodes, fed through
//! `Identities::apply`, the path the watch's events take; and the resident
//! memory the pods added. Shared by benches/identity.rs and
//! tests/identity_memory.rs (included by path in each).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use tcp_exporter::identity::workload::Owner;
use tcp_exporter::identity::{
    Event, Identities, NodeInfo, ObjectKind, Phase, PodInfo, ServiceInfo,
};

pub const NAMESPACES: usize = 500;
pub const DEPLOYMENTS: usize = 5_000;
pub const REPLICAS: usize = 30;
pub const SERVICES: usize = 20_000;
pub const NODES: usize = 5_000;

pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap()
        * 1024
}

pub fn pod_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0af4_0000u32 + i as u32))
}

fn uid(kind: u8, i: usize) -> String {
    format!("{kind:02x}{i:06x}-7c1e-4f5a-9d2b-3e8f6a1b2c4d")
}

/// The cluster, and the resident bytes each pod added.
pub fn cluster() -> (Arc<Identities>, f64) {
    let identities = Identities::new();
    let nodes: Vec<Event> = (0..NODES)
        .map(|n| {
            Event::Node(NodeInfo {
                name: format!("ip-10-0-{}-{}.ec2.internal", n / 250, n % 250),
                addresses: vec![IpAddr::V4(Ipv4Addr::from(0x0a00_0000u32 + n as u32))],
            })
        })
        .collect();
    identities.apply(nodes);
    let services: Vec<Event> = (0..SERVICES)
        .map(|s| {
            let d = s % DEPLOYMENTS;
            Event::Service(ServiceInfo {
                uid: uid(2, s),
                namespace: format!("team-{}", d % NAMESPACES),
                name: format!("svc-{s}"),
                cluster_ips: vec![IpAddr::V4(Ipv4Addr::from(0x0a60_0000u32 + s as u32))],
                selector: vec![("app".into(), format!("app-{d}"))],
            })
        })
        .collect();
    identities.apply(services);
    // Freed memory handed back first, so that the pods do not fill the
    // holes the events above left and look cheaper than they are.
    // SAFETY: malloc_trim only releases free memory of glibc's heap.
    unsafe { libc::malloc_trim(0) };
    let before = rss_bytes();
    let mut i = 0;
    for d in 0..DEPLOYMENTS {
        let hash = format!("{:010x}", d * 7919);
        // One workload in ten a StatefulSet: a pod of its own label set
        // (statefulset.kubernetes.io/pod-name), so a group of its own.
        let stateful = d % 10 == 0;
        let rs = format!("app-{d}-{hash}");
        let pods: Vec<Event> = (0..REPLICAS)
            .map(|r| {
                i += 1;
                let (name, owner, extra) = if stateful {
                    let name = format!("app-{d}-{r}");
                    let owner = Owner {
                        kind: "StatefulSet".into(),
                        name: format!("app-{d}"),
                    };
                    (
                        name.clone(),
                        owner,
                        ("statefulset.kubernetes.io/pod-name".into(), name),
                    )
                } else {
                    let owner = Owner {
                        kind: "ReplicaSet".into(),
                        name: rs.clone(),
                    };
                    let name = format!("{rs}-{:05x}", r * 104_729 % 0xfffff);
                    (name, owner, ("pod-template-hash".into(), hash.clone()))
                };
                Event::Pod(PodInfo {
                    uid: uid(1, i),
                    namespace: format!("team-{}", d % NAMESPACES),
                    name,
                    phase: Phase::Running,
                    deleting: false,
                    ips: vec![pod_ip(i)],
                    host_network: false,
                    node: format!("ip-10-0-{}-{}.ec2.internal", i % NODES / 250, i % 250),
                    owner: Some(owner),
                    labels: vec![
                        ("app".into(), format!("app-{d}")),
                        extra,
                        ("version".into(), "v2".into()),
                        ("app.kubernetes.io/part-of".into(), "shop".into()),
                    ],
                    ports: vec![8080, 9090],
                    created: 1_700_000_000 + i as i64,
                })
            })
            .collect();
        identities.apply(pods);
    }
    identities.apply(ObjectKind::ALL.map(Event::Listed));
    let after = rss_bytes();
    let pods = identities.with_index(|x| x.len(ObjectKind::Pod));
    let per_pod = after.saturating_sub(before) as f64 / pods as f64;
    eprintln!(
        "identity index: {pods} pods, {SERVICES} services, {NODES} nodes; \
         {per_pod:.0} resident bytes per pod ({:.1} MiB for the pods)",
        after.saturating_sub(before) as f64 / (1 << 20) as f64
    );
    (identities, per_pod)
}

//! The identity index at the scale of a large cluster
//! (tests/common/big_cluster.rs): prints the resident bytes each pod adds,
//! then times what a new connection costs: resolving both of its ends, as
//! series keys do, and with pod names, as a connection's record does (with
//! `--flow-log` or `--long-connections`). `cargo bench --bench identity`.

use std::net::{IpAddr, Ipv4Addr};

use criterion::{criterion_group, criterion_main, Criterion};

use tcp_exporter::identity::Role;

#[path = "../tests/common/big_cluster.rs"]
mod big_cluster;

use big_cluster::{cluster, pod_ip, DEPLOYMENTS, REPLICAS, SERVICES};

fn bench(c: &mut Criterion) {
    let (identities, _) = cluster();
    let mut n = 0usize;
    c.bench_function("identity: a new connection's two ends (pod to pod)", |b| {
        b.iter(|| {
            n = (n + 7) % (DEPLOYMENTS * REPLICAS);
            let client = identities.resolve(pod_ip(n + 1), 8080, Role::Client, false);
            let server = identities.resolve(pod_ip(n / 2 + 1), 8080, Role::Server, false);
            std::hint::black_box((client, server))
        })
    });
    c.bench_function(
        "identity: a new connection's two ends (pod to cluster IP)",
        |b| {
            b.iter(|| {
                n = (n + 7) % SERVICES;
                let client = identities.resolve(pod_ip(n + 1), 8080, Role::Client, false);
                let service = IpAddr::V4(Ipv4Addr::from(0x0a60_0000u32 + n as u32));
                let server = identities.resolve(service, 8080, Role::Server, false);
                std::hint::black_box((client, server))
            })
        },
    );
    c.bench_function(
        "identity: a new connection's two ends, pods named (a record's)",
        |b| {
            b.iter(|| {
                n = (n + 7) % (DEPLOYMENTS * REPLICAS);
                std::hint::black_box(identities.peers(pod_ip(n + 1), pod_ip(n / 2 + 1), 8080))
            })
        },
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);

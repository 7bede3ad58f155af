//! The identity index's resident memory at the scale of a large cluster
//! (150,000 pods, 20,000 Services, 5,000 Nodes; tests/common/big_cluster.rs):
//! the budget is 300 bytes per pod. Resident memory, not time, so
//! what another process does to this machine does not move it much; one
//! test in a binary of its own, so no other test's memory is counted.

#[path = "common/big_cluster.rs"]
mod big_cluster;

use tcp_exporter::identity::{ObjectKind, Role};

/// Bytes per pod resident, at most (the budget).
const BUDGET: f64 = 300.0;

#[test]
fn a_pod_costs_at_most_300_resident_bytes_in_a_large_cluster() {
    let (identities, per_pod) = big_cluster::cluster();
    let pods = identities.with_index(|i| i.len(ObjectKind::Pod));
    assert_eq!(
        pods,
        big_cluster::DEPLOYMENTS * big_cluster::REPLICAS,
        "every pod held"
    );
    // The index holds what was fed: the last pod resolves as its workload.
    let last = identities.with_index(|i| i.resolve(big_cluster::pod_ip(pods), 8080, Role::Server));
    assert_eq!(&*last.kind, "Deployment");
    assert!(
        per_pod <= BUDGET,
        "{per_pod:.0} resident bytes per pod, over the budget of {BUDGET}"
    );
}

//! Workload names as Istio derives them from a pod (its `workloadname`
//! logic in pkg/kube/labels and the sidecar's metadata): the
//! `service.istio.io/workload-name` label first; a ReplicaSet whose pod
//! carries `pod-template-hash` is its Deployment; a Job named as a CronJob
//! schedules them (its name, `-`, 8 to 10 digits) is that CronJob; any other
//! controller names itself; a pod without one is its own workload.

/// The label that overrides every derivation.
pub const WORKLOAD_NAME_LABEL: &str = "service.istio.io/workload-name";
const CANONICAL_NAME: &str = "service.istio.io/canonical-name";
const CANONICAL_REVISION: &str = "service.istio.io/canonical-revision";
const APP_NAME: &str = "app.kubernetes.io/name";
const APP_VERSION: &str = "app.kubernetes.io/version";
/// The canonical revision of a pod without a label for it.
pub const LATEST: &str = "latest";
const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// A pod's controller, from its controller owner reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub kind: String,
    pub name: String,
}

/// (workload name, workload kind) of a pod. The kind is the controller's
/// as derived (a label that renames the workload does not change what
/// kind of thing runs it).
pub fn workload<'a>(
    pod: &'a str,
    owner: Option<&'a Owner>,
    label: impl Fn(&str) -> Option<&'a str>,
) -> (&'a str, &'a str) {
    let (name, kind) = match owner {
        None => (pod, "Pod"),
        Some(owner) => match owner.kind.as_str() {
            "ReplicaSet" => match label(POD_TEMPLATE_HASH)
                .and_then(|hash| owner.name.strip_suffix(hash)?.strip_suffix('-'))
            {
                Some(deployment) if !deployment.is_empty() => (deployment, "Deployment"),
                _ => (owner.name.as_str(), "ReplicaSet"),
            },
            "Job" => match cronjob_of(&owner.name) {
                Some(cronjob) => (cronjob, "CronJob"),
                None => (owner.name.as_str(), "Job"),
            },
            kind => (owner.name.as_str(), kind),
        },
    };
    match label(WORKLOAD_NAME_LABEL).filter(|n| !n.is_empty()) {
        Some(renamed) => (renamed, kind),
        None => (name, kind),
    }
}

/// A pod's names in Istio's metrics, from its labels (Istio's
/// pkg/kube/labels): `app` and `version` (`app.kubernetes.io/name` or
/// `app`, `app.kubernetes.io/version` or `version`; empty without), the
/// canonical service (`service.istio.io/canonical-name`, else the app,
/// else the workload) and the canonical revision
/// (`service.istio.io/canonical-revision`, else the version, else
/// `latest`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IstioNames<'a> {
    pub app: &'a str,
    pub version: &'a str,
    pub canonical_service: &'a str,
    pub canonical_revision: &'a str,
}

pub fn istio_names<'a>(
    workload: &'a str,
    label: impl Fn(&str) -> Option<&'a str>,
) -> IstioNames<'a> {
    let first = |names: &[&str]| names.iter().find_map(|n| label(n));
    let app = first(&[APP_NAME, "app"]);
    let version = first(&[APP_VERSION, "version"]);
    IstioNames {
        app: app.unwrap_or(""),
        version: version.unwrap_or(""),
        canonical_service: label(CANONICAL_NAME).or(app).unwrap_or(workload),
        canonical_revision: label(CANONICAL_REVISION).or(version).unwrap_or(LATEST),
    }
}

/// The CronJob a Job's name says made it: `NAME-` and 8 to 10 digits (the
/// scheduled time in minutes since the epoch).
fn cronjob_of(job: &str) -> Option<&str> {
    let (name, digits) = job.rsplit_once('-')?;
    let scheduled = (8..=10).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
    (scheduled && !name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(kind: &str, name: &str) -> Owner {
        Owner {
            kind: kind.into(),
            name: name.into(),
        }
    }

    fn labels<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> {
        move |k| pairs.iter().find(|(key, _)| *key == k).map(|(_, v)| *v)
    }

    #[test]
    fn a_replicaset_with_a_template_hash_is_its_deployment() {
        let rs = owner("ReplicaSet", "checkout-7d9f8b6c5");
        let l = [("pod-template-hash", "7d9f8b6c5")];
        assert_eq!(
            workload("checkout-7d9f8b6c5-abcde", Some(&rs), labels(&l)),
            ("checkout", "Deployment")
        );
        // Without the label it is a ReplicaSet of its own.
        assert_eq!(
            workload("x", Some(&rs), labels(&[])),
            ("checkout-7d9f8b6c5", "ReplicaSet")
        );
        // A hash that is not the name's suffix: not a Deployment's.
        let l = [("pod-template-hash", "other")];
        assert_eq!(
            workload("x", Some(&rs), labels(&l)),
            ("checkout-7d9f8b6c5", "ReplicaSet")
        );
    }

    #[test]
    fn a_job_named_by_a_cronjob_schedule_is_that_cronjob() {
        for (job, want) in [
            ("backup-28901234", ("backup", "CronJob")),
            ("db-backup-2890123456", ("db-backup", "CronJob")),
            ("backup-1234567", ("backup-1234567", "Job")),
            ("backup-28901234567", ("backup-28901234567", "Job")),
            ("backup-2890123x", ("backup-2890123x", "Job")),
            ("migrate", ("migrate", "Job")),
        ] {
            let o = owner("Job", job);
            assert_eq!(workload("p", Some(&o), labels(&[])), want, "{job}");
        }
    }

    #[test]
    fn other_controllers_name_themselves_and_a_bare_pod_is_its_own() {
        let sts = owner("StatefulSet", "postgres");
        assert_eq!(
            workload("postgres-0", Some(&sts), labels(&[])),
            ("postgres", "StatefulSet")
        );
        let ds = owner("DaemonSet", "node-agent");
        assert_eq!(
            workload("node-agent-x1", Some(&ds), labels(&[])),
            ("node-agent", "DaemonSet")
        );
        assert_eq!(workload("debug", None, labels(&[])), ("debug", "Pod"));
    }

    #[test]
    fn the_istio_workload_name_label_overrides() {
        let rs = owner("ReplicaSet", "checkout-7d9f8b6c5");
        let l = [
            ("pod-template-hash", "7d9f8b6c5"),
            ("service.istio.io/workload-name", "shop"),
        ];
        assert_eq!(workload("p", Some(&rs), labels(&l)), ("shop", "Deployment"));
        let l = [("service.istio.io/workload-name", "solo")];
        assert_eq!(workload("p", None, labels(&l)), ("solo", "Pod"));
    }

    #[test]
    fn istio_s_names_take_its_labels_in_its_order() {
        fn names(l: &'static [(&'static str, &'static str)]) -> IstioNames<'static> {
            istio_names("checkout", labels(l))
        }
        // Nothing: the workload, latest, and no app or version.
        assert_eq!(
            names(&[]),
            IstioNames {
                app: "",
                version: "",
                canonical_service: "checkout",
                canonical_revision: LATEST
            }
        );
        // app and version, and the canonical names from them.
        let plain = names(&[("app", "cart"), ("version", "v2")]);
        assert_eq!((plain.app, plain.version), ("cart", "v2"));
        assert_eq!(
            (plain.canonical_service, plain.canonical_revision),
            ("cart", "v2")
        );
        // The app.kubernetes.io labels before the plain ones.
        let k8s = names(&[
            ("app", "cart"),
            ("app.kubernetes.io/name", "cart-api"),
            ("version", "v2"),
            ("app.kubernetes.io/version", "2.1.0"),
        ]);
        assert_eq!((k8s.app, k8s.version), ("cart-api", "2.1.0"));
        assert_eq!(
            (k8s.canonical_service, k8s.canonical_revision),
            ("cart-api", "2.1.0")
        );
        // Istio's own labels before everything, for the canonical names
        // only.
        let istio = names(&[
            ("app", "cart"),
            ("version", "v2"),
            ("service.istio.io/canonical-name", "shop-cart"),
            ("service.istio.io/canonical-revision", "canary"),
        ]);
        assert_eq!((istio.app, istio.version), ("cart", "v2"));
        assert_eq!(
            (istio.canonical_service, istio.canonical_revision),
            ("shop-cart", "canary")
        );
    }
}

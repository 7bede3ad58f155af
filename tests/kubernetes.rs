//! `--kubernetes` against a real kube-apiserver and etcd on 127.0.0.1
//! (scripts/kube-test-cluster.sh; no mocks of the API). The tests create
//! Nodes, Pods (status.podIP patched through the status subresource) and
//! Services with curl, then send real traffic between network namespaces
//! that carry those pods' addresses, or read test captures whose addresses
//! are theirs (some rewritten with tcprewrite), and check the identity
//! labels, the long-connection series and the flow log; the watch's faults (an API server that does not answer, RBAC that
//! forbids a resource, a restart and an etcd compaction) with a live
//! exporter.
//!
//! Needs root (live captures, network namespaces), iproute2, python3, curl,
//! tcprewrite and what the script needs (Go, openssl); `TCPX_SKIP_LIVE=1`
//! skips, as the other live tests.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::{pcap, sum_metric_where, tool, try_http_get, TempDir};

const EXPORTER: &str = env!("CARGO_BIN_EXE_tcp-exporter");

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kube-test-cluster.sh")
}

fn skip() -> bool {
    if std::env::var("TCPX_SKIP_LIVE").as_deref() == Ok("1") {
        eprintln!("kubernetes test: skipped (TCPX_SKIP_LIVE=1)");
        return true;
    }
    false
}

/// A cluster of the test's own, stopped when dropped.
struct Cluster {
    dir: TempDir,
    server: String,
    token: String,
}

impl Cluster {
    fn start(tag: &str) -> Cluster {
        let dir = TempDir::new(tag);
        let out = Command::new("bash")
            .arg(script())
            .arg("start")
            .arg(&dir.0)
            .output()
            .expect("run scripts/kube-test-cluster.sh");
        let cluster = Cluster {
            server: String::new(),
            token: String::new(),
            dir,
        };
        assert!(
            out.status.success(),
            "kube-test-cluster.sh start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let kubeconfig = std::fs::read_to_string(cluster.kubeconfig()).unwrap();
        let server = kubeconfig
            .lines()
            .find_map(|l| l.trim().strip_prefix("server: "))
            .expect("a server in the kubeconfig")
            .to_string();
        let token = std::fs::read_to_string(cluster.dir.path("admin-token"))
            .unwrap()
            .trim()
            .to_string();
        let mut cluster = cluster;
        cluster.server = server;
        cluster.token = token;
        cluster
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path("kubeconfig")
    }

    fn script(&self, command: &str) {
        let out = Command::new("bash")
            .arg(script())
            .arg(command)
            .arg(&self.dir.0)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kube-test-cluster.sh {command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// An API request with the admin token; the status code and body.
    fn api(&self, method: &str, path: &str, body: &str, content_type: &str) -> (u16, String) {
        let out = Command::new("curl")
            .args(["-sS", "-X", method, "-w", "\n%{http_code}", "--cacert"])
            .arg(self.dir.path("ca.crt"))
            .args(["-H", &format!("Authorization: Bearer {}", self.token)])
            .args(["-H", &format!("Content-Type: {content_type}")])
            .args(["--data-binary", body])
            .arg(format!("{}{path}", self.server))
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    fn ok(&self, method: &str, path: &str, body: &str, content_type: &str) {
        let (code, answer) = self.api(method, path, body, content_type);
        assert!(
            (200..300).contains(&code),
            "{method} {path}: {code} {answer}"
        );
    }

    fn create(&self, path: &str, body: &str) {
        self.ok("POST", path, body, "application/json");
    }

    fn namespace(&self, name: &str) {
        let (code, answer) = self.api(
            "POST",
            "/api/v1/namespaces",
            &format!(r#"{{"metadata":{{"name":"{name}"}}}}"#),
            "application/json",
        );
        assert!(
            code == 201 || code == 409,
            "namespace {name}: {code} {answer}"
        );
    }

    fn node(&self, name: &str, ip: &str) {
        self.create(
            "/api/v1/nodes",
            &format!(r#"{{"metadata":{{"name":"{name}"}}}}"#),
        );
        self.ok(
            "PATCH",
            &format!("/api/v1/nodes/{name}/status"),
            &format!(r#"{{"status":{{"addresses":[{{"type":"InternalIP","address":"{ip}"}}]}}}}"#),
            "application/merge-patch+json",
        );
    }

    /// A pod: `owner` is (kind, name) of its controller; `phase` its
    /// status; `spec` extra pod spec fields (JSON, without braces).
    fn pod(&self, p: &PodSpec) {
        self.namespace(p.namespace);
        let owner = match p.owner {
            Some((kind, name)) => format!(
                r#","ownerReferences":[{{"apiVersion":"apps/v1","kind":"{kind}","name":"{name}","uid":"6f1c2d3e-0000-4000-8000-000000000001","controller":true}}]"#
            ),
            None => String::new(),
        };
        let labels: Vec<String> = p
            .labels
            .iter()
            .map(|(k, v)| format!(r#""{k}":"{v}""#))
            .collect();
        let ports: Vec<String> = p
            .ports
            .iter()
            .map(|port| format!(r#"{{"containerPort":{port}}}"#))
            .collect();
        self.create(
            &format!("/api/v1/namespaces/{}/pods", p.namespace),
            &format!(
                r#"{{"metadata":{{"name":"{}","labels":{{{}}}{owner}}},"spec":{{"nodeName":"{}","hostNetwork":{},"containers":[{{"name":"c","image":"x","ports":[{}]}}]}}}}"#,
                p.name,
                labels.join(","),
                p.node,
                p.host_network,
                ports.join(",")
            ),
        );
        self.ok(
            "PATCH",
            &format!("/api/v1/namespaces/{}/pods/{}/status", p.namespace, p.name),
            &format!(
                r#"{{"status":{{"phase":"{}","podIP":"{}","podIPs":[{{"ip":"{}"}}]}}}}"#,
                p.phase, p.ip, p.ip
            ),
            "application/merge-patch+json",
        );
    }

    fn delete_pod(&self, namespace: &str, name: &str, grace: u32) {
        self.ok(
            "DELETE",
            &format!("/api/v1/namespaces/{namespace}/pods/{name}"),
            &format!(r#"{{"gracePeriodSeconds":{grace}}}"#),
            "application/json",
        );
    }

    fn service(&self, namespace: &str, name: &str, ip: &str, app: &str) {
        self.namespace(namespace);
        self.create(
            &format!("/api/v1/namespaces/{namespace}/services"),
            &format!(
                r#"{{"metadata":{{"name":"{name}"}},"spec":{{"clusterIP":"{ip}","selector":{{"app":"{app}"}},"ports":[{{"port":5001}}]}}}}"#
            ),
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(&self.dir.0)
            .output();
    }
}

struct PodSpec<'a> {
    namespace: &'a str,
    name: &'a str,
    ip: &'a str,
    labels: &'a [(&'a str, &'a str)],
    owner: Option<(&'a str, &'a str)>,
    host_network: bool,
    ports: &'a [u16],
    phase: &'a str,
    node: &'a str,
}

impl Default for PodSpec<'_> {
    fn default() -> Self {
        PodSpec {
            namespace: "default",
            name: "p",
            ip: "10.244.0.1",
            labels: &[],
            owner: None,
            host_network: false,
            ports: &[],
            phase: "Running",
            node: "node-1",
        }
    }
}

/// A Deployment's pod (shop/checkout) at `client` and a StatefulSet's
/// (data/db-0) at `server`.
fn shop_and_db(c: &Cluster, client: &str, server: &str) {
    c.pod(&PodSpec {
        namespace: "shop",
        name: "checkout-7d9f8b6c5-x2x9q",
        ip: client,
        labels: &[("app", "checkout"), ("pod-template-hash", "7d9f8b6c5")],
        owner: Some(("ReplicaSet", "checkout-7d9f8b6c5")),
        ..PodSpec::default()
    });
    c.pod(&PodSpec {
        namespace: "data",
        name: "db-0",
        ip: server,
        labels: &[("app", "db")],
        owner: Some(("StatefulSet", "db")),
        ..PodSpec::default()
    });
}

const LABELS: &str = "client_namespace,client_workload,client_workload_kind,server_namespace,\
                      server_workload,server_workload_kind,server_pod,server_service,server_port";

/// `-r capture --print --kubernetes` on the cluster: the (client, server)
/// identity of each server port's series of tcp_connections_opened_total.
fn named(cluster: &Cluster, capture: &Path) -> Vec<(String, [String; 8])> {
    let out = Command::new(EXPORTER)
        .arg("-r")
        .arg(capture)
        .args(["--print", "--kubernetes", "--kubeconfig"])
        .arg(cluster.kubeconfig())
        .args(["--labels", LABELS])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let text = String::from_utf8(out.stdout).unwrap();
    common::promtool_check(&text, "an exposition with identities");
    let mut rows: Vec<(String, [String; 8])> = common::samples(&text)
        .into_iter()
        .filter(|s| s.name == "tcp_connections_opened_total")
        .map(|s| {
            let l = |k: &str| s.label(k).unwrap_or("?").to_string();
            (
                l("server_port"),
                [
                    l("client_namespace"),
                    l("client_workload"),
                    l("client_workload_kind"),
                    l("server_namespace"),
                    l("server_workload"),
                    l("server_workload_kind"),
                    l("server_pod"),
                    l("server_service"),
                ],
            )
        })
        .collect();
    rows.sort();
    rows
}

/// The identity a row's server has: (namespace, workload, kind, pod,
/// service).
fn server_of(rows: &[(String, [String; 8])], port: &str) -> [String; 5] {
    let (_, r) = rows
        .iter()
        .find(|(p, _)| p == port)
        .unwrap_or_else(|| panic!("no series on port {port}: {rows:?}"));
    [
        r[3].clone(),
        r[4].clone(),
        r[5].clone(),
        r[6].clone(),
        r[7].clone(),
    ]
}

fn s(v: [&str; 5]) -> [String; 5] {
    v.map(String::from)
}

/// bulk_loss.pcap with its server (10.250.0.2) moved to `to`.
fn rewritten(dir: &TempDir, to: &str) -> PathBuf {
    let out = dir.path(&format!("server-{to}.pcap"));
    tool(
        "tcprewrite",
        &[
            &format!("--pnat=10.250.0.2/32:{to}/32"),
            "--infile",
            pcap("bulk_loss.pcap").to_str().unwrap(),
            "--outfile",
            out.to_str().unwrap(),
        ],
    );
    out
}

#[test]
fn a_capture_is_named_as_the_cluster_is_now() {
    if skip() {
        return;
    }
    let c = Cluster::start("kube-names");
    let work = TempDir::new("kube-names-work");
    c.node("node-1", "192.168.50.1");
    // bulk_loss.pcap: 10.250.0.1 connects to 10.250.0.2 on 5001-5003.
    shop_and_db(&c, "10.250.0.1", "10.250.0.2");
    c.service("data", "db", "10.96.0.50", "db");
    let direct = named(&c, &pcap("bulk_loss.pcap"));
    assert_eq!(direct.len(), 3, "{direct:?}");
    for (_, r) in &direct {
        assert_eq!(r[..3], ["shop", "checkout", "Deployment"], "{direct:?}");
    }
    assert_eq!(
        server_of(&direct, "5001"),
        s(["data", "db", "StatefulSet", "db-0", "db"])
    );

    // Through the ClusterIP, before kube-proxy's DNAT: the Service.
    let via_service = named(&c, &rewritten(&work, "10.96.0.50"));
    assert_eq!(
        server_of(&via_service, "5001"),
        s(["data", "db", "Service", "", "db"])
    );

    // The IP reused: db-0 deleted, a finished pod and a running one of
    // another namespace claim 10.250.0.2; the running one owns it.
    c.delete_pod("data", "db-0", 0);
    c.pod(&PodSpec {
        namespace: "batch",
        name: "report-28901234-abcde",
        ip: "10.250.0.2",
        owner: Some(("Job", "report-28901234")),
        phase: "Succeeded",
        ..PodSpec::default()
    });
    c.pod(&PodSpec {
        namespace: "cache",
        name: "redis-0",
        ip: "10.250.0.2",
        labels: &[("app", "redis")],
        owner: Some(("StatefulSet", "redis")),
        ..PodSpec::default()
    });
    let reused = named(&c, &pcap("bulk_loss.pcap"));
    assert_eq!(
        server_of(&reused, "5001"),
        s(["cache", "redis", "StatefulSet", "redis-0", ""])
    );

    // redis-0 terminating (no kubelet ever finishes it), a new pod takes
    // the address: the new one owns it; gone too, the terminating one.
    c.delete_pod("cache", "redis-0", 300);
    c.pod(&PodSpec {
        namespace: "cache",
        name: "redis-1",
        ip: "10.250.0.2",
        owner: Some(("StatefulSet", "redis")),
        ..PodSpec::default()
    });
    let replaced = named(&c, &pcap("bulk_loss.pcap"));
    assert_eq!(server_of(&replaced, "5001")[3], "redis-1");
    c.delete_pod("cache", "redis-1", 0);
    let terminating = named(&c, &pcap("bulk_loss.pcap"));
    assert_eq!(server_of(&terminating, "5001")[3], "redis-0");

    // A hostNetwork pod serving 5001 on the node's address: the pod there,
    // the node on the other ports.
    c.pod(&PodSpec {
        namespace: "monitoring",
        name: "agent-7xk2p",
        ip: "192.168.50.1",
        owner: Some(("DaemonSet", "agent")),
        host_network: true,
        ports: &[5001],
        ..PodSpec::default()
    });
    let host = named(&c, &rewritten(&work, "192.168.50.1"));
    assert_eq!(
        server_of(&host, "5001"),
        s(["monitoring", "agent", "DaemonSet", "agent-7xk2p", ""])
    );
    assert_eq!(server_of(&host, "5002"), s(["", "node-1", "Node", "", ""]));

    // An address the cluster does not know.
    let outside = named(&c, &rewritten(&work, "203.0.113.9"));
    assert_eq!(
        server_of(&outside, "5001"),
        s(["", "external", "external", "", ""])
    );
}

/// `-r capture --print --kubernetes --istio-metrics` with `args`: the
/// exposition, checked by promtool.
fn istio_printed(cluster: &Cluster, capture: &Path, args: &[&str]) -> String {
    let out = Command::new(EXPORTER)
        .arg("-r")
        .arg(capture)
        .args(["--print", "--kubernetes", "--istio-metrics", "--kubeconfig"])
        .arg(cluster.kubeconfig())
        .args(args)
        .env_remove("NODE_NAME")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    common::promtool_check(&text, "an exposition with Istio's metrics");
    text
}

/// The series of `metric` whose `reporter` is `reporter`.
fn istio_series(text: &str, metric: &str, reporter: &str) -> Vec<common::Sample> {
    common::samples(text)
        .into_iter()
        .filter(|s| s.name == metric && s.label("reporter") == Some(reporter))
        .collect()
}

#[test]
fn istio_metrics_name_both_ends_as_istio_does() {
    if skip() {
        return;
    }
    let c = Cluster::start("kube-istio");
    let work = TempDir::new("kube-istio-work");
    c.node("node-1", "192.168.50.1");
    c.node("node-2", "192.168.50.2");
    // bulk_loss.pcap: 10.250.0.1 connects to 10.250.0.2 on 5001-5003.
    c.pod(&PodSpec {
        namespace: "shop",
        name: "checkout-7d9f8b6c5-x2x9q",
        ip: "10.250.0.1",
        labels: &[
            ("app", "checkout"),
            ("version", "v2"),
            ("pod-template-hash", "7d9f8b6c5"),
        ],
        owner: Some(("ReplicaSet", "checkout-7d9f8b6c5")),
        ..PodSpec::default()
    });
    c.pod(&PodSpec {
        namespace: "data",
        name: "db-0",
        ip: "10.250.0.2",
        labels: &[
            ("app", "db"),
            ("service.istio.io/canonical-name", "database"),
            ("app.kubernetes.io/version", "14.2"),
        ],
        owner: Some(("StatefulSet", "db")),
        node: "node-2",
        ..PodSpec::default()
    });
    c.service("data", "db", "10.96.0.50", "db");

    // Without --node-name every pod reports, as a proxy beside each would:
    // the client's as source, the server's as destination.
    let text = istio_printed(&c, &pcap("bulk_loss.pcap"), &[]);
    let native = common::samples(&text);
    let sum = |name: &str, sender: &str| -> f64 {
        native
            .iter()
            .filter(|s| s.name == name && s.label("sender") == Some(sender))
            .map(|s| s.value)
            .sum()
    };
    let opened: f64 = native
        .iter()
        .filter(|s| s.name == "tcp_connections_opened_total")
        .map(|s| s.value)
        .sum();
    assert!(opened > 0.0);
    let closed: f64 = native
        .iter()
        .filter(|s| s.name == "tcp_connections_closed_total")
        .map(|s| s.value)
        .sum();
    let request =
        sum("tcp_payload_bytes_total", "client") - sum("tcp_retransmitted_bytes_total", "client");
    let response =
        sum("tcp_payload_bytes_total", "server") - sum("tcp_retransmitted_bytes_total", "server");
    assert!(request > 0.0);
    for (reporter, security) in [("source", "unknown"), ("destination", "none")] {
        let series = istio_series(&text, "istio_tcp_connections_opened_total", reporter);
        assert_eq!(series.len(), 1, "{reporter}: {series:?}");
        let s = &series[0];
        assert_eq!(s.value, opened);
        for (label, want) in [
            ("source_workload", "checkout"),
            ("source_workload_namespace", "shop"),
            ("source_principal", "unknown"),
            ("source_app", "checkout"),
            ("source_version", "v2"),
            ("source_canonical_service", "checkout"),
            ("source_canonical_revision", "v2"),
            ("source_cluster", "Kubernetes"),
            ("destination_workload", "db"),
            ("destination_workload_namespace", "data"),
            ("destination_principal", "unknown"),
            ("destination_app", "db"),
            ("destination_version", "14.2"),
            ("destination_service", "db.data.svc.cluster.local"),
            ("destination_service_name", "db"),
            ("destination_service_namespace", "data"),
            ("destination_canonical_service", "database"),
            ("destination_canonical_revision", "14.2"),
            ("destination_cluster", "Kubernetes"),
            ("request_protocol", "tcp"),
            ("response_flags", "-"),
            ("connection_security_policy", security),
        ] {
            assert_eq!(s.label(label), Some(want), "{reporter}: {label} in {s:?}");
        }
        let value = |metric: &str| -> f64 {
            istio_series(&text, metric, reporter)
                .iter()
                .map(|s| s.value)
                .sum()
        };
        assert_eq!(
            value("istio_tcp_connections_closed_total"),
            closed,
            "{reporter}"
        );
        assert_eq!(
            value("istio_tcp_received_bytes_total"),
            request,
            "{reporter}"
        );
        assert_eq!(value("istio_tcp_sent_bytes_total"), response, "{reporter}");
    }

    // The native series are what they are without Istio's: the reporters
    // and names Istio adds to a series' key are summed over.
    let plain = Command::new(EXPORTER)
        .arg("-r")
        .arg(pcap("bulk_loss.pcap"))
        .args(["--print", "--kubernetes", "--kubeconfig"])
        .arg(c.kubeconfig())
        .output()
        .unwrap();
    let traffic = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("tcp_") && !l.starts_with("tcp_exporter_"))
            .map(String::from)
            .collect()
    };
    assert_eq!(
        traffic(&String::from_utf8_lossy(&plain.stdout)),
        traffic(&text)
    );

    // Taken on node-1: only its pod (the client) reports; on node-2 only
    // the server; on a node with neither, nothing. The cluster's name.
    let node1 = istio_printed(
        &c,
        &pcap("bulk_loss.pcap"),
        &["--node-name", "node-1", "--cluster-name", "east"],
    );
    let source = istio_series(&node1, "istio_tcp_connections_opened_total", "source");
    assert_eq!(source.len(), 1);
    assert_eq!(source[0].label("source_cluster"), Some("east"));
    assert!(istio_series(&node1, "istio_tcp_connections_opened_total", "destination").is_empty());
    let node2 = istio_printed(&c, &pcap("bulk_loss.pcap"), &["--node-name", "node-2"]);
    assert!(istio_series(&node2, "istio_tcp_connections_opened_total", "source").is_empty());
    assert_eq!(
        istio_series(&node2, "istio_tcp_connections_opened_total", "destination").len(),
        1
    );
    let node3 = istio_printed(&c, &pcap("bulk_loss.pcap"), &["--node-name", "node-3"]);
    assert!(!node3.contains("istio_tcp_connections_opened_total{"));

    // Through the Service's cluster IP: the Service is known, the pod
    // behind it is not (the capture is before the node's DNAT).
    let via = istio_printed(&c, &rewritten(&work, "10.96.0.50"), &[]);
    let source = istio_series(&via, "istio_tcp_connections_opened_total", "source");
    assert_eq!(source.len(), 1, "{source:?}");
    for (label, want) in [
        ("destination_workload", "unknown"),
        ("destination_canonical_service", "unknown"),
        ("destination_service", "db.data.svc.cluster.local"),
        ("destination_cluster", "Kubernetes"),
    ] {
        assert_eq!(source[0].label(label), Some(want), "{label}");
    }
    // An address the cluster does not know: unknown, and no destination
    // proxy to report.
    let outside = istio_printed(&c, &rewritten(&work, "203.0.113.9"), &[]);
    let source = istio_series(&outside, "istio_tcp_connections_opened_total", "source");
    assert_eq!(source[0].label("destination_service"), Some("unknown"));
    assert_eq!(source[0].label("destination_cluster"), Some("unknown"));
    assert!(istio_series(
        &outside,
        "istio_tcp_connections_opened_total",
        "destination"
    )
    .is_empty());
}

/// An exporter capturing on lo with --kubernetes; killed when dropped.
struct Live {
    child: Child,
    http: SocketAddr,
    log: PathBuf,
}

impl Live {
    fn start(kubeconfig: &Path, log: PathBuf) -> Live {
        Live::start_with(kubeconfig, log, &["-i", "lo"])
    }

    fn start_with(kubeconfig: &Path, log: PathBuf, args: &[&str]) -> Live {
        let port = common::free_port();
        let child = Command::new(EXPORTER)
            .args(["-p", &port.to_string(), "--listen", "127.0.0.1"])
            .args(args)
            .args(["--kubernetes", "--kubeconfig"])
            .arg(kubeconfig)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let live = Live {
            child,
            http: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            log,
        };
        live.wait("ready", |text| !text.is_empty());
        live
    }

    fn metrics(&self) -> String {
        match try_http_get(self.http, "/metrics") {
            Ok((200, text)) => text,
            _ => String::new(),
        }
    }

    fn kind(&self, text: &str, metric: &str, kind: &str) -> f64 {
        sum_metric_where(text, metric, "kind", kind)
    }

    fn wait(&self, what: &str, check: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = self.metrics();
            if check(&text) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; log: {}\n{text}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            sleep(Duration::from_millis(100));
        }
    }
}

impl Live {
    /// Stops it with SIGTERM and waits for it to exit.
    fn stop(mut self) {
        // SAFETY: kill(2) on the PID of a child this test started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        assert!(status.success(), "the exporter exited with {status}");
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn rbac_that_forbids_a_resource_is_said_by_name_and_the_rest_is_watched() {
    if skip() {
        return;
    }
    let c = Cluster::start("kube-rbac");
    c.create(
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        r#"{"metadata":{"name":"tcpx-no-services"},"rules":[{"apiGroups":[""],"resources":["pods","nodes"],"verbs":["get","list","watch"]}]}"#,
    );
    c.create(
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        r#"{"metadata":{"name":"tcpx-no-services"},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"tcpx-no-services"},"subjects":[{"kind":"User","apiGroup":"rbac.authorization.k8s.io","name":"tcpx-limited"}]}"#,
    );
    let log = c.dir.path("exporter.log");
    let live = Live::start(&c.dir.path("kubeconfig-limited"), log.clone());
    let synced = "tcp_exporter_kubernetes_synced";
    live.wait("pods and nodes listed, services refused", |t| {
        live.kind(t, synced, "pods") == 1.0
            && live.kind(t, synced, "nodes") == 1.0
            && live.kind(t, "tcp_exporter_kubernetes_watch_errors_total", "services") > 0.0
    });
    assert_eq!(live.kind(&live.metrics(), synced, "services"), 0.0);
    let said = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        said.matches("forbidden to list and watch services").count(),
        1,
        "{said}"
    );
    assert!(!said.contains("forbidden to list and watch pods"), "{said}");
}

#[test]
fn the_watch_survives_an_unreachable_api_a_restart_and_a_compaction() {
    if skip() {
        return;
    }
    let c = Cluster::start("kube-faults");
    // An API server that does not answer at start: the exporter serves,
    // counts the errors, and identities read unknown.
    let dead = c.dir.path("kubeconfig-dead");
    let port = common::free_port();
    let config = std::fs::read_to_string(c.kubeconfig()).unwrap();
    let server = config
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .unwrap()
        .to_string();
    std::fs::write(
        &dead,
        config.replace(&server, &format!("https://127.0.0.1:{port}")),
    )
    .unwrap();
    let unreachable = Live::start(&dead, c.dir.path("dead.log"));
    unreachable.wait("errors counted", |t| {
        unreachable.kind(t, "tcp_exporter_kubernetes_watch_errors_total", "pods") > 0.0
    });
    assert_eq!(
        unreachable.kind(
            &unreachable.metrics(),
            "tcp_exporter_kubernetes_synced",
            "pods"
        ),
        0.0
    );
    drop(unreachable);

    let live = Live::start(&c.kubeconfig(), c.dir.path("exporter.log"));
    let objects = "tcp_exporter_kubernetes_objects";
    live.wait("synced", |t| {
        live.kind(t, "tcp_exporter_kubernetes_synced", "pods") == 1.0
    });
    c.node("node-1", "192.168.50.1");
    c.pod(&PodSpec {
        namespace: "a",
        name: "before",
        ..PodSpec::default()
    });
    live.wait("the pod seen", |t| live.kind(t, objects, "pods") == 1.0);
    // The API server restarted: the watch comes back and sees what was
    // made after.
    c.script("restart-apiserver");
    c.pod(&PodSpec {
        namespace: "a",
        name: "after-restart",
        ip: "10.244.0.2",
        ..PodSpec::default()
    });
    live.wait("the pod made after the restart", |t| {
        live.kind(t, objects, "pods") == 2.0
    });
    // etcd compacted, then the API server restarted (its watch cache does
    // not see a compaction): resuming from an old resourceVersion is 410
    // Gone, and the watch lists again.
    c.script("etcd-compact");
    c.script("restart-apiserver");
    c.pod(&PodSpec {
        namespace: "a",
        name: "after-compaction",
        ip: "10.244.0.3",
        ..PodSpec::default()
    });
    c.delete_pod("a", "before", 0);
    live.wait("a relist, and the index as the cluster is", |t| {
        let relists: f64 = ["pods", "services", "nodes"]
            .iter()
            .map(|k| live.kind(t, "tcp_exporter_kubernetes_relists_total", k))
            .sum();
        relists > 0.0 && live.kind(t, objects, "pods") == 2.0
    });
}

/// Two pods' addresses on a veth pair: this namespace is the client pod
/// (`CLIENT_IP`), a network namespace of the test's own the server pod
/// (`SERVER_IP`) and, as an address of its own, a Service's ClusterIP (a
/// capture before kube-proxy's DNAT sees the ClusterIP both ways). A
/// Python server there echoes on ports 5001 and 5002. Everything is removed
/// when dropped, also when the test fails.
struct PodNet {
    ns: String,
    host_if: String,
    server: Option<Child>,
}

const CLIENT_IP: &str = "10.250.7.1";
const SERVER_IP: &str = "10.250.7.2";
const CLUSTER_IP: &str = "10.96.7.50";

/// Runs `ip` with `args`, which must succeed.
fn ip(args: &[&str]) {
    tool("ip", args);
}

impl PodNet {
    fn new() -> PodNet {
        let pid = std::process::id();
        let mut net = PodNet {
            ns: format!("tcpx-k8s-{pid}"),
            host_if: format!("tk{pid}a"),
            server: None,
        };
        let (ns, a) = (net.ns.clone(), net.host_if.clone());
        let b = format!("tk{pid}b");
        ip(&["netns", "add", &ns]);
        ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
        ip(&["link", "set", &b, "netns", &ns]);
        ip(&["addr", "add", &format!("{CLIENT_IP}/24"), "dev", &a]);
        ip(&["link", "set", &a, "up"]);
        ip(&["route", "add", &format!("{CLUSTER_IP}/32"), "dev", &a]);
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &ns, "ip"];
            all.extend_from_slice(args);
            ip(&all);
        };
        inside(&["addr", "add", &format!("{SERVER_IP}/24"), "dev", &b]);
        inside(&["addr", "add", &format!("{CLUSTER_IP}/32"), "dev", &b]);
        inside(&["link", "set", &b, "up"]);
        inside(&["link", "set", "lo", "up"]);
        let mut server = Command::new("ip")
            .args(["netns", "exec", &ns, "python3", "-c", common::ECHO_SERVER])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut ready = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(server.stdout.take().unwrap())
            .read_line(&mut ready)
            .unwrap();
        net.server = Some(server);
        assert_eq!(ready.trim(), "ready");
        net
    }

    /// A connection from the client pod to `to`.
    fn connect(&self, to: &str, port: u16) -> std::net::TcpStream {
        let to: SocketAddr = format!("{to}:{port}").parse().unwrap();
        let s = std::net::TcpStream::connect_timeout(&to, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect {to}: {e}"));
        assert_eq!(s.local_addr().unwrap().ip().to_string(), CLIENT_IP);
        s
    }
}

/// Writes `data` and reads its echo.
fn exchange(s: &mut std::net::TcpStream, data: &[u8]) {
    use std::io::{Read, Write};
    s.write_all(data).unwrap();
    let mut back = vec![0; data.len()];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, data);
}

impl Drop for PodNet {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
    }
}

/// The identity labels of the samples of `metric` whose `label` is `value`.
fn identities_where(text: &str, metric: &str, label: &str, value: &str) -> Vec<[String; 5]> {
    common::samples(text)
        .into_iter()
        .filter(|s| s.name == metric && s.label(label) == Some(value))
        .map(|s| {
            [
                "server_namespace",
                "server_workload",
                "server_workload_kind",
                "server_pod",
                "server_service",
            ]
            .map(|k| s.label(k).unwrap_or("?").to_string())
        })
        .collect()
}

#[test]
fn live_traffic_between_pods_is_named_and_keeps_its_owner_when_the_ip_is_reused() {
    if skip() {
        return;
    }
    let c = Cluster::start("kube-live");
    let net = PodNet::new();
    c.node("node-1", "192.168.50.1");
    shop_and_db(&c, CLIENT_IP, SERVER_IP);
    c.service("data", "db", CLUSTER_IP, "db");

    let flow_log = c.dir.path("flow.jsonl");
    let live = Live::start_with(
        &c.kubeconfig(),
        c.dir.path("exporter.log"),
        &[
            "-i",
            &net.host_if,
            "--labels",
            LABELS,
            "--long-connections",
            "1s",
            "--flow-log",
            flow_log.to_str().unwrap(),
            "--flow-log-interval",
            "1s",
            "--istio-metrics",
        ],
    );
    let objects = "tcp_exporter_kubernetes_objects";
    live.wait("pods and the Service listed", |t| {
        // Services: `kubernetes` in default, and db.
        live.kind(t, objects, "pods") == 2.0 && live.kind(t, objects, "services") == 2.0
    });

    // Directly to db-0, kept open; and through the Service's ClusterIP.
    let mut direct = net.connect(SERVER_IP, 5001);
    exchange(&mut direct, b"hello db-0");
    let mut via_service = net.connect(CLUSTER_IP, 5001);
    exchange(&mut via_service, b"hello db");
    drop(via_service);
    let opened = "tcp_connections_opened_total";
    live.wait("both connections counted", |t| {
        identities_where(t, opened, "server_port", "5001").len() == 2
    });
    let mut named = identities_where(&live.metrics(), opened, "server_port", "5001");
    named.sort();
    assert_eq!(
        named,
        vec![
            s(["data", "db", "Service", "", "db"]),
            s(["data", "db", "StatefulSet", "db-0", "db"]),
        ]
    );
    let text = live.metrics();
    let client = common::samples(&text)
        .into_iter()
        .find(|s| s.name == opened)
        .unwrap();
    assert_eq!(client.label("client_namespace"), Some("shop"));
    assert_eq!(client.label("client_workload"), Some("checkout"));
    assert_eq!(client.label("client_workload_kind"), Some("Deployment"));
    // Istio's view: the capture point is the server pod's veth (its other
    // end holds the server's addresses), so the destination reports, though
    // `reporter` is not among the labels.
    let istio: Vec<common::Sample> = common::samples(&text)
        .into_iter()
        .filter(|s| s.name == "istio_tcp_connections_opened_total")
        .collect();
    assert!(!istio.is_empty(), "{text}");
    for s in &istio {
        assert_eq!(s.label("reporter"), Some("destination"), "{s:?}");
        assert_eq!(s.label("source_workload"), Some("checkout"), "{s:?}");
        assert_eq!(
            s.label("destination_service"),
            Some("db.data.svc.cluster.local")
        );
    }

    // db-0 goes, redis-0 gets its address. The connection that was open
    // keeps its owner; a new one is redis-0's.
    c.delete_pod("data", "db-0", 0);
    live.wait("db-0 gone", |t| live.kind(t, objects, "pods") == 1.0);
    c.pod(&PodSpec {
        namespace: "cache",
        name: "redis-0",
        ip: SERVER_IP,
        labels: &[("app", "redis")],
        owner: Some(("StatefulSet", "redis")),
        ..PodSpec::default()
    });
    live.wait("redis-0 seen", |t| live.kind(t, objects, "pods") == 2.0);
    let mut reused = net.connect(SERVER_IP, 5002);
    exchange(&mut reused, b"hello redis-0");
    let mut again = net.connect(SERVER_IP, 5001);
    exchange(&mut again, b"hello redis-0 on 5001");
    drop(again);
    // The open connection keeps talking, so that it grows old on the
    // capture clock and gets its long-connection series.
    let long = "tcp_long_connection_age_seconds";
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        exchange(&mut direct, b"still here");
        let text = live.metrics();
        if identities_where(&text, opened, "server_port", "5002").len() == 1
            && identities_where(&text, opened, "server_port", "5001").len() == 3
            && common::samples(&text).iter().any(|s| s.name == long)
        {
            break;
        }
        assert!(Instant::now() < deadline, "no long series or 5002: {text}");
        sleep(Duration::from_millis(200));
    }
    let text = live.metrics();
    assert_eq!(
        identities_where(&text, opened, "server_port", "5002"),
        vec![s(["cache", "redis", "StatefulSet", "redis-0", ""])]
    );
    // On 5001: db-0's series kept their owner, and the new connection has
    // a series of redis-0's.
    let mut on_5001 = identities_where(&text, opened, "server_port", "5001");
    on_5001.sort();
    assert_eq!(
        on_5001,
        vec![
            s(["cache", "redis", "StatefulSet", "redis-0", ""]),
            s(["data", "db", "Service", "", "db"]),
            s(["data", "db", "StatefulSet", "db-0", "db"]),
        ]
    );
    let long_series: Vec<_> = common::samples(&text)
        .into_iter()
        .filter(|s| s.name == long && s.label("server_port") == Some("5001"))
        .collect();
    assert_eq!(long_series.len(), 1, "{text}");
    let l = &long_series[0];
    for (label, want) in [
        ("client_namespace", "shop"),
        ("client_workload", "checkout"),
        ("client_pod", "checkout-7d9f8b6c5-x2x9q"),
        ("server_namespace", "data"),
        ("server_workload", "db"),
        ("server_workload_kind", "StatefulSet"),
        ("server_pod", "db-0"),
        ("server_service", "db"),
    ] {
        assert_eq!(l.label(label), Some(want), "{label} of {text}");
    }
    drop(direct);
    drop(reused);
    // Stopped as a user would (SIGTERM): the flow log is flushed.
    live.stop();

    // The flow log names both ends of each connection, as they were when
    // it started.
    let records: Vec<serde_json::Value> = std::fs::read_to_string(&flow_log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let pod_of = |server: &str, port: u64| -> Vec<String> {
        let mut pods: Vec<String> = records
            .iter()
            .filter(|r| r["server"] == server && r["server_port"] == port)
            .map(|r| {
                assert_eq!(r["client_workload"], "checkout", "{r}");
                assert_eq!(r["client_pod"], "checkout-7d9f8b6c5-x2x9q", "{r}");
                r["server_workload"].as_str().unwrap().to_string()
                    + "/"
                    + r["server_pod"].as_str().unwrap()
            })
            .collect();
        pods.sort();
        pods.dedup();
        pods
    };
    assert_eq!(pod_of(SERVER_IP, 5001), ["db/db-0", "redis/redis-0"]);
    assert_eq!(pod_of(CLUSTER_IP, 5001), ["db/"]);
    assert_eq!(pod_of(SERVER_IP, 5002), ["redis/redis-0"]);
}

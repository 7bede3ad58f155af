"""End to end against a real Prometheus (Debian's /usr/bin/prometheus) and a
real Kubernetes API server (scripts/kube-test-cluster.sh: kube-apiserver
and etcd on loopback).

The exporter serves the metrics of a capture with heavy loss
(`tcp-exporter -r FILE -p PORT --long-connections AGE --flow-log FILE`: the
optional series on, for the dashboard's panels), twice, one per label mode:

- `ip`: without --kubernetes, so the traffic series carry the address
  labels (interface, client, server, server_port);
- `identity`: with `--kubernetes --kubeconfig` on the test's cluster, so
  they carry the Kubernetes default labels (client_namespace,
  client_workload, server_namespace, server_workload, server_service,
  server_port). The cluster holds a Node, and for the capture's two
  addresses a Deployment's pod (ReplicaSet with pod-template-hash) as the
  client and a StatefulSet's pod selected by a Service as the server.
  Also with `--istio-metrics`: Istio's four TCP families with Istio's
  labels. The exporters run without NODE_NAME in their environment (and
  no --node-name), so every pod end of a file reports: the one connection
  pair gives a reporter="source" and a reporter="destination" series.

Both also send their metrics and flow-log records over OTLP/gRPC to a real
OpenTelemetry Collector (scripts/otel-collector.sh), for the dashboard's
OTLP row and alerts: every export succeeds and no record is dropped.

Each has a Prometheus of its own on another loopback port, as a deployment
in that mode would, scraping it every second and evaluating the alerting
rules every second (a copy of alerts/tcp-exporter.rules.yml whose `for:`
durations are cut to a few seconds; everything else as shipped). Then,
through Prometheus' HTTP API:

- `promtool check metrics` passes on what each exporter serves, and the
  identity exporter names the capture's ends as the cluster says;
- every alerting rule is loaded and evaluates without error, and every alert
  expression parses;
- every variable query of the dashboard finds the values of its mode's
  labels and none in the other mode (where Grafana leaves it at All, `.*`);
  every panel query (variables substituted: all values, then one value
  each) parses, and every panel returns data in both modes, but those of
  the Kubernetes rows, which return data with identity labels only; each
  query returns data in at least one mode;
- Istio's published Workload, Service and Mesh dashboards
  (testdata/istio-dashboards: their variables and TCP panel queries) work
  on the identity mode's Prometheus. The istio_tcp_* series carry every
  label those queries select or group on, with the values Istio's proxies
  would write for the two pods (both reporters). Each dashboard's variables
  are resolved in order as Grafana resolves them (query_result() rendered
  as Grafana renders it, then the variable's regex) and find the cluster's
  namespaces, workloads and Service; for the chosen views (the server; for
  the Workload dashboard also the client) and each choice of $qrep, every
  TCP panel query returns non-zero data over the replay, but those listed
  in ISTIO_NO_DATA, which parse and return nothing, for the reason given
  there (mutual TLS, which a plaintext capture never has; the direction a
  workload does not take);
- the alerts this capture must trigger fire (retransmission ratio, reset
  storm, zero windows; per workload also failed connections) in the family
  of that mode only, those it must not (capture drops, flow table, series
  overflow, flow-log drops, long-connection overflow, HTTP connection limit,
  unauthorized requests, Kubernetes watch, exporter down) stay quiet, and
  stopping the exporters makes TCPExporterDown fire.

Counters must grow for rate() to see anything, and a capture file is read in
milliseconds, so the capture is replayed in steps: the exporters are
restarted, on the same ports and under the same file name, on ever longer
prefixes of the capture, one step every STEP_SECONDS. Prometheus sees the
counters climb as it would on a live exporter (the analysis only looks
forward in capture time, so each counter of a prefix is at most the next
prefix's: checked for this capture when the test was written).

Every process is stopped by PID (the cluster by its script, which stops the
processes it started), and the temporary directory removed, in every case
(class cleanups).
"""

import json
import math
import os
import re
import shutil
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request
from types import SimpleNamespace

import yaml

from common import (EXPORTER, IDENTITY_VARIABLES, IP_VARIABLES, KUBERNETES_ROWS, REPORTER_VARIABLE, ROOT, RULES,
                    VARIABLES, dashboard_rows, dashboard_variables, free_port, grafana_regex, http_get,
                    load_dashboard, reporter_variable, start, stop, substitute, tool, wait_for)

SEED = 6
CONVERSATIONS = 1500  # about 50k segments: 960 RSTs, 8000 zero windows, 20% retransmitted
STEPS = 8
STEP_SECONDS = 2.0
TEST_FOR = "3s"  # `for:` of every rule in the test copy
CAPTURE_NAME = "heavy_loss.pcap"  # also the `interface` label
KUBE_SCRIPT = ROOT / "scripts" / "kube-test-cluster.sh"
# Both exporters also send their metrics and flow-log records to a real
# OpenTelemetry Collector (built once, as for tests/otlp.rs), so that the
# dashboard's OTLP panels and alerts have their series: every export must
# succeed and no record be dropped (the capture's records, about 3,500 per
# run, fit the queue's 16,384).
OTEL_SCRIPT = ROOT / "scripts" / "otel-collector.sh"
OTLP_INTERVAL = "500ms"
CLUSTER_START_TIMEOUT = 180  # the script's own limit is 120 s per component

# Flags beyond -r/-p/--listen. The dashboard has panels for the series these
# turn on (tcp_long_connection_*, tcp_exporter_long_connections*,
# tcp_exporter_flow_log_*), and every panel must find data. Connections of
# this capture that do not close idle for up to --flow-idle-timeout (300 s
# of capture time) before they leave, so many are older than 30 s when a
# prefix ends (94 at the end of the whole capture: far under the default
# --max-long-connections, 1000). With a flow-log record only when a
# connection opens and closes (the interval longer than the capture), the
# whole capture makes about 3,500 records, fewer than the writer's queue
# holds (16,384): none can be dropped, whatever the speed.
LONG_CONNECTIONS = "30s"
FLOW_LOG_INTERVAL = "1h"

# The capture's ends (scripts/random-conversations.py): 10.0.0.1 connects
# to 10.0.0.2 on port 80. The cluster's objects for them, and the identity
# labels the exporter must give them.
CLIENT_IP, SERVER_IP, SERVER_PORT = "10.0.0.1", "10.0.0.2", "80"
CLIENT_POD = {"namespace": "shop", "name": "checkout-7d9f8b6c5-x2x9q", "ip": CLIENT_IP,
              "labels": {"app": "checkout", "pod-template-hash": "7d9f8b6c5"},
              "owner": ("ReplicaSet", "checkout-7d9f8b6c5", "6f1c2d3e-0000-4000-8000-000000000001")}
SERVER_POD = {"namespace": "data", "name": "db-0", "ip": SERVER_IP, "labels": {"app": "db"},
              "owner": ("StatefulSet", "db", "6f1c2d3e-0000-4000-8000-000000000002")}
SERVER_SERVICE = {"namespace": "data", "name": "db", "cluster_ip": "10.96.0.50", "selector": {"app": "db"}}
# A file read with -r has no pod interfaces: its reporter is the node.
IDENTITY = {"reporter": "node", "client_namespace": "shop", "client_workload": "checkout", "server_namespace": "data",
            "server_workload": "db", "server_service": "db", "server_port": SERVER_PORT}

MODES = ("ip", "identity")
# What each mode's variables must find; a variable of the other mode's
# labels finds nothing, and Grafana leaves it at All (`.*`, which also
# matches a label the series do not carry).
VARIABLE_VALUES = {
    "ip": {"interface": [CAPTURE_NAME], "server": [SERVER_IP], "client": [CLIENT_IP], "server_port": [SERVER_PORT]},
    "identity": {"server_namespace": ["data"], "server_workload": ["db"], "client_namespace": ["shop"],
                 "client_workload": ["checkout"], "server_port": [SERVER_PORT]},
}

# Traffic alerts come in two families (alerts/tcp-exporter.rules.yml): by
# address for series without identity labels, by workload for those with.
# Each mode must fire its own family and not the other's.
MUST_FIRE = {
    "ip": {"TCPHighRetransmissionRatio", "TCPResetStorm", "TCPSustainedZeroWindow"},
    "identity": {"TCPWorkloadHighRetransmissionRatio", "TCPWorkloadResetStorm", "TCPWorkloadSustainedZeroWindow",
                 "TCPWorkloadConnectionFailures"},
}
MUST_FIRE_LABELS = {
    "ip": {"server": SERVER_IP, "server_port": SERVER_PORT},
    "identity": {"server_namespace": "data", "server_workload": "db"},
}
EXPORTER_ALERTS = {"TCPExporterDown", "TCPExporterAbsent", "TCPExporterCaptureDrops",
                   "TCPExporterInterfaceDown", "TCPExporterFlowTableFull", "TCPExporterSeriesOverflow",
                   "TCPExporterFlowLogDrops", "TCPExporterLongConnectionsOverflow",
                   "TCPExporterHTTPConnectionLimit", "TCPExporterUnauthorizedRequests",
                   "TCPExporterKubernetesNotSynced", "TCPExporterKubernetesWatchErrors",
                   "TCPExporterKubernetesIdentitiesOverflow", "TCPExporterOTLPExportsFailing",
                   "TCPExporterOTLPLogRecordsDropped"}
MUST_NOT_FIRE = {
    "ip": EXPORTER_ALERTS | MUST_FIRE["identity"],
    "identity": EXPORTER_ALERTS | MUST_FIRE["ip"],
}

# --istio-metrics (identity mode). The labels Istio's proxies would write
# for the capture's connections between the two pods, in plaintext: no peer
# certificates (principals unknown), no version labels on the pods
# (versions unknown, canonical revisions latest), Istio's default cluster
# id. A source proxy does not know the security policy, a destination
# proxy saw no TLS.
ISTIO_FAMILIES = ("istio_tcp_connections_opened_total", "istio_tcp_connections_closed_total",
                  "istio_tcp_sent_bytes_total", "istio_tcp_received_bytes_total")
SERVICE_FQDN = "db.data.svc.cluster.local"
ISTIO_LABELS = {
    "source_workload": "checkout", "source_workload_namespace": "shop", "source_principal": "unknown",
    "source_app": "checkout", "source_version": "unknown", "source_canonical_service": "checkout",
    "source_canonical_revision": "latest", "source_cluster": "Kubernetes",
    "destination_workload": "db", "destination_workload_namespace": "data", "destination_principal": "unknown",
    "destination_app": "db", "destination_version": "unknown", "destination_service": SERVICE_FQDN,
    "destination_service_name": "db", "destination_service_namespace": "data",
    "destination_canonical_service": "db", "destination_canonical_revision": "latest",
    "destination_cluster": "Kubernetes", "request_protocol": "tcp",
}
ISTIO_SECURITY_POLICY = {"source": "unknown", "destination": "none"}
ISTIO_RESPONSE_FLAGS = {"-", "UF"}  # UF: refused or unanswered

ISTIO_DASHBOARDS = ROOT / "testdata" / "istio-dashboards"
# The views of Istio's dashboards the test opens: the values chosen for
# their single-value variables. The Workload dashboard twice: its inbound
# panels show the server's side, its outbound ones (reporter="source") the
# client's. Variables with All (srcns, srcwl, dstsvc, ...) stay at All,
# Grafana's default for them.
ISTIO_VIEWS = {
    "workload": {"server": {"namespace": "data", "workload": "db"},
                 "client": {"namespace": "shop", "workload": "checkout"}},
    "service": {"server": {"service": SERVICE_FQDN}},
    "mesh": {"mesh": {}},
}
# $qrep (custom, multi, no All): both reporters, then each alone.
ISTIO_QREP_CHOICES = (("source", "destination"), ("source",), ("destination",))
# What each variable finds in each view. Istio's $namespace lists the
# namespaces of destination workloads only: the client view sets "shop" as
# a link would (var-namespace=shop), and $workload then finds checkout. A
# view's variables find nothing of a direction its workload does not take:
# db opens no connection (no $dstsvc), checkout accepts none (no $srcns,
# $srcwl).
ISTIO_VARIABLE_VALUES = {
    ("workload", "server"): {"namespace": ["data"], "workload": ["db"], "qrep": ["source", "destination"],
                             "srcns": ["shop"], "srcwl": ["checkout"], "dstsvc": []},
    ("workload", "client"): {"namespace": ["data"], "workload": ["checkout"], "qrep": ["source", "destination"],
                             "srcns": [], "srcwl": [], "dstsvc": [SERVICE_FQDN]},
    ("service", "server"): {"service": [SERVICE_FQDN], "qrep": ["source", "destination"],
                            "srccluster": ["Kubernetes"], "srcns": ["shop"], "srcwl": ["checkout"],
                            "dstcluster": ["Kubernetes"], "dstns": ["data"], "dstwl": ["db"]},
    ("mesh", "mesh"): {},
}
# The TCP panel queries that return no data by design in a view, as
# (dashboard, view, panel id, index of the query in the panel): they must
# parse and return nothing there. Every other query returns data in every
# view and $qrep choice.
MUTUAL_TLS = ('selects connection_security_policy="mutual_tls", which a plaintext capture never has (the '
              'exporter writes it only for connections to HBONE\'s port, 15008, as their destination reports them)')
DB_OPENS_NOTHING = "client side of db (source_workload=~\"db\"): db opens no connection"
CHECKOUT_ACCEPTS_NOTHING = ("server side of checkout (destination_workload=~\"checkout\"): checkout accepts"
                            " no connection")
ISTIO_NO_DATA = {
    ("workload", "server", 80, 0): MUTUAL_TLS,  # Bytes Received from Incoming TCP Connection
    ("workload", "server", 82, 0): MUTUAL_TLS,  # Bytes Sent to Incoming TCP Connection
    ("workload", "server", 76, 0): MUTUAL_TLS,  # Bytes Sent on Outgoing TCP Connection
    ("workload", "server", 78, 0): MUTUAL_TLS,  # Bytes Received from Outgoing TCP Connection
    ("workload", "server", 85, 0): DB_OPENS_NOTHING,  # TCP Client Traffic
    ("workload", "server", 76, 1): DB_OPENS_NOTHING,
    ("workload", "server", 78, 1): DB_OPENS_NOTHING,
    ("workload", "client", 80, 0): MUTUAL_TLS,
    ("workload", "client", 82, 0): MUTUAL_TLS,
    ("workload", "client", 76, 0): MUTUAL_TLS,
    ("workload", "client", 78, 0): MUTUAL_TLS,
    ("workload", "client", 84, 0): CHECKOUT_ACCEPTS_NOTHING,  # TCP Server Traffic
    ("workload", "client", 80, 1): CHECKOUT_ACCEPTS_NOTHING,
    ("workload", "client", 82, 1): CHECKOUT_ACCEPTS_NOTHING,
    ("service", "server", 80, 0): MUTUAL_TLS,  # Bytes Received from Incoming TCP Connection (by source)
    ("service", "server", 82, 0): MUTUAL_TLS,  # Bytes Sent to Incoming TCP Connection (by source)
    ("service", "server", 92, 0): MUTUAL_TLS,  # Bytes Received from Incoming TCP Connection (by destination)
    ("service", "server", 93, 0): MUTUAL_TLS,  # Bytes Sent to Incoming TCP Connection (by destination)
}


def split_pcap(path, steps, outdir):
    """Writes `steps` prefixes of the classic pcap file `path`, the last one
    whole, each as outdir/stepN/CAPTURE_NAME; returns their paths."""
    with open(path, "rb") as f:
        data = f.read()
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise ValueError("%s: not a classic pcap file" % path)
    ends = []
    off = 24
    while off + 16 <= len(data):
        caplen = struct.unpack(endian + "I", data[off + 8:off + 12])[0]
        off += 16 + caplen
        ends.append(off)
    out = []
    for k in range(1, steps + 1):
        cut = ends[len(ends) * k // steps - 1]
        d = os.path.join(outdir, "step%d" % k)
        os.mkdir(d)
        p = os.path.join(d, CAPTURE_NAME)
        with open(p, "wb") as f:
            f.write(data[:cut])
        out.append(p)
    return out


def shorten_for(rules_text, duration):
    """The rules file with every `for:` set to `duration`; also returns how
    many were changed."""
    return re.subn(r"(?m)^(\s*for:\s*)\S+\s*$", r"\g<1>" + duration, rules_text)


def load_istio_dashboards():
    """Istio's dashboards' variables and TCP panel queries, by file stem."""
    out = {}
    for name in ISTIO_VIEWS:
        with open(ISTIO_DASHBOARDS / (name + ".json")) as f:
            out[name] = json.load(f)
    return out


def istio_dashboard_labels(dashboards):
    """Every label the dashboards' variable queries and TCP panel queries
    select on (`label op "value"`) or group by (`by (...)`)."""
    texts = [v.get("query", "") for d in dashboards.values() for v in d["variables"] if v["type"] == "query"]
    texts += [e for d in dashboards.values() for p in d["tcp_panels"] for e in p["expr"]]
    out = set()
    for t in texts:
        out.update(re.findall(r'([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)\s*"', t))
        for group in re.findall(r"\bby\s*\(([^)]*)\)", t):
            out.update(x.strip() for x in group.split(",") if x.strip())
    return out


def query_result_texts(data):
    """An instant query's answer (the API's `data`) as Grafana's
    query_result() renders it: per series `name{label="value",...} value
    timestamp_ms` (the name empty after an aggregation); a scalar or
    string, its value."""
    if data["resultType"] in ("scalar", "string"):
        return [data["result"][1]]
    out = []
    for series in data["result"]:
        metric = dict(series["metric"])
        name = metric.pop("__name__", "")
        ms = series["value"][0] * 1000
        out.append("%s{%s} %s %s" % (name, ",".join('%s="%s"' % kv for kv in metric.items()), series["value"][1],
                                     int(ms) if ms == int(ms) else ms))
    return out


def js_regex(text):
    """A Grafana variable's regex as Python's, and whether it is global:
    /PATTERN/FLAGS as JavaScript reads it, anything else anchored
    (Grafana's stringToJsRegex)."""
    m = re.fullmatch(r"/(.*?)/(g?i?m?y?s?)", text, re.S)
    if m is None:
        return re.compile("^" + text + "$"), False
    flags = (re.I if "i" in m.group(2) else 0) | (re.M if "m" in m.group(2) else 0) | (re.S if "s" in m.group(2) else 0)
    return re.compile(re.sub(r"\(\?<(?![=!])", "(?P<", m.group(1)), flags), "g" in m.group(2)


def grafana_options(texts, regex):
    """The values Grafana makes of a variable query's texts
    (metricNamesToVariableValues): with a regex, texts it does not match
    are left out and each other gives its group `value`, else its first
    capture group (each match's with the g flag), else the whole text;
    distinct, in order."""
    values = []
    if not regex:
        values = list(texts)
    else:
        r, is_global = js_regex(regex)
        for text in texts:
            matches = list(r.finditer(text)) if is_global else [m for m in [r.search(text)] if m]
            if not matches:
                continue
            if "value" in r.groupindex:
                values.append(next((m.group("value") for m in matches if m.group("value")), text))
            elif r.groups and len(matches) > 1:
                values.extend(m.group(1) for m in matches)
            elif r.groups:
                values.append(matches[0].group(1))
            else:
                values.append(text)
    out = []
    for v in values:
        if v is not None and v not in out:
            out.append(v)
    return out


ALL = "$__all"


def grafana_format(variable, selected, options):
    """What Grafana's Prometheus data source puts in a query for `variable`
    set to `selected` (a list of values, or ALL): a variable with neither
    multi nor includeAll its value as is (backslashes and quotes escaped);
    otherwise each value regex-escaped (common.grafana_regex), several as
    (a|b). All is the variable's allValue, or every option (none: `()`)."""
    if not variable.get("multi") and not variable.get("includeAll"):
        value = selected[0] if selected else ""  # none found: Grafana's "None"
        return value.replace("\\", "\\\\").replace("'", "\\\\'")
    if selected == ALL:
        if variable.get("allValue"):
            return variable["allValue"]
        selected = options
    escaped = [grafana_regex(v) for v in selected]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


class KubeAPI:
    """The test cluster's API, as its admin (a bearer token, the cluster's CA)."""

    def __init__(self, cluster_dir):
        with open(os.path.join(cluster_dir, "kubeconfig")) as f:
            self.server = next(line.split("server:", 1)[1].strip() for line in f if "server:" in line)
        with open(os.path.join(cluster_dir, "admin-token")) as f:
            self.token = f.read().strip()
        self.tls = ssl.create_default_context(cafile=os.path.join(cluster_dir, "ca.crt"))

    def call(self, method, path, body, content_type="application/json"):
        request = urllib.request.Request(
            self.server + path, data=json.dumps(body).encode(), method=method,
            headers={"Authorization": "Bearer " + self.token, "Content-Type": content_type})
        try:
            with urllib.request.urlopen(request, context=self.tls, timeout=10) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:
            raise AssertionError("%s %s: %d %s" % (method, path, e.code, e.read().decode(errors="replace")[:500]))

    def create(self, path, body):
        return self.call("POST", path, body)

    def patch_status(self, path, status):
        # The status subresource: a create ignores status, as it would a
        # kubelet's report.
        return self.call("PATCH", path + "/status", {"status": status}, "application/merge-patch+json")

    def node(self, name, ip):
        self.create("/api/v1/nodes", {"metadata": {"name": name}})
        self.patch_status("/api/v1/nodes/" + name, {"addresses": [{"type": "InternalIP", "address": ip}]})

    def namespace(self, name):
        self.create("/api/v1/namespaces", {"metadata": {"name": name}})

    def pod(self, p, node):
        kind, name, uid = p["owner"]
        self.create("/api/v1/namespaces/%s/pods" % p["namespace"], {
            "metadata": {"name": p["name"], "labels": p["labels"],
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": uid,
                                              "controller": True}]},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]},
        })
        self.patch_status("/api/v1/namespaces/%s/pods/%s" % (p["namespace"], p["name"]),
                          {"phase": "Running", "podIP": p["ip"], "podIPs": [{"ip": p["ip"]}]})

    def service(self, s, port):
        self.create("/api/v1/namespaces/%s/services" % s["namespace"], {
            "metadata": {"name": s["name"]},
            "spec": {"clusterIP": s["cluster_ip"], "selector": s["selector"], "ports": [{"port": port}]},
        })


class PrometheusEndToEnd(unittest.TestCase):
    modes = {}
    cluster_start = None

    # ------------------------------------------------------------ set-up
    @classmethod
    def setUpClass(cls):
        prometheus_bin = tool("prometheus")
        if prometheus_bin is None:
            raise AssertionError("no prometheus binary: run `make test-deps` (Debian package prometheus)")
        if not EXPORTER.exists():
            raise AssertionError("%s missing: run `cargo build --release`" % EXPORTER)
        started = time.monotonic()
        cls.tmp = tempfile.mkdtemp(prefix="tcp-exporter-prometheus-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, ignore_errors=True)
        # The cluster starts (about 4 s) while the rest is made ready.
        cls.cluster_dir = os.path.join(cls.tmp, "cluster")
        cls.cluster_start = start(["bash", KUBE_SCRIPT, "start", cls.cluster_dir],
                                  os.path.join(cls.tmp, "cluster-start.log"))
        cls.addClassCleanup(cls._stop_cluster)
        cls.collector_dir = os.path.join(cls.tmp, "otelcol")
        cls.addClassCleanup(lambda: subprocess.run(["bash", str(OTEL_SCRIPT), "stop", cls.collector_dir],
                                                   capture_output=True))
        out = subprocess.run(["bash", str(OTEL_SCRIPT), "start", cls.collector_dir], capture_output=True, text=True)
        if out.returncode != 0:
            raise AssertionError("otel-collector.sh start: %s" % out.stderr)
        with open(os.path.join(cls.collector_dir, "endpoints")) as f:
            grpc = dict(line.strip().split("=", 1) for line in f if "=" in line)["grpc"]
        otlp_flags = ["--otlp-endpoint", "http://" + grpc, "--otlp-interval", OTLP_INTERVAL, "--otlp-logs"]
        cls.modes = {m: SimpleNamespace(name=m, exporter=None, prometheus=None) for m in MODES}
        for m in cls.modes.values():  # cleanups run last first: exporters, Prometheus, cluster
            cls.addClassCleanup(lambda m=m: stop(m.prometheus))
            cls.addClassCleanup(lambda m=m: stop(m.exporter))

        full = os.path.join(cls.tmp, "full.pcap")
        subprocess.run([sys.executable, str(ROOT / "scripts" / "random-conversations.py"),
                        "--seed", str(SEED), "--count", str(CONVERSATIONS), full], check=True)
        cls.steps = split_pcap(full, STEPS, cls.tmp)

        rules_text, n = shorten_for(RULES.read_text(), TEST_FOR)
        cls.rules = yaml.safe_load(RULES.read_text())
        cls.alert_rules = [r for g in cls.rules["groups"] for r in g["rules"] if "alert" in r]
        if n != len(cls.alert_rules):
            raise AssertionError("shortened %d `for:` lines, but the file has %d alerts" % (n, len(cls.alert_rules)))
        rules_path = os.path.join(cls.tmp, "rules.yml")
        with open(rules_path, "w") as f:
            f.write(rules_text)

        for m in cls.modes.values():
            m.exporter_port = free_port()
            m.exporter_url = "http://127.0.0.1:%d" % m.exporter_port
            m.prom_port = free_port()
            m.prom_url = "http://127.0.0.1:%d" % m.prom_port
            m.flags = list(otlp_flags)
            config_path = os.path.join(cls.tmp, "prometheus-%s.yml" % m.name)
            with open(config_path, "w") as f:
                yaml.safe_dump({
                    "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
                    "rule_files": [rules_path],
                    "scrape_configs": [{
                        "job_name": "tcp-exporter",
                        "static_configs": [{"targets": ["127.0.0.1:%d" % m.exporter_port]}],
                    }],
                }, f)
            m.prometheus = start([prometheus_bin, "--config.file=" + config_path,
                                  "--storage.tsdb.path=" + os.path.join(cls.tmp, "data-" + m.name),
                                  "--web.listen-address=127.0.0.1:%d" % m.prom_port,
                                  "--log.level=warn"],
                                 os.path.join(cls.tmp, "prometheus-%s.log" % m.name))

        # The cluster, and in it the objects behind the capture's addresses.
        try:
            rc = cls.cluster_start.wait(timeout=CLUSTER_START_TIMEOUT)
        except subprocess.TimeoutExpired:
            rc = None
        if rc != 0:
            raise AssertionError("kube-test-cluster.sh start %s: %s\n%s"
                                 % (cls.cluster_dir, "timed out" if rc is None else "exit %d" % rc, cls._logs()))
        kube = KubeAPI(cls.cluster_dir)
        kube.node("node-1", "192.168.50.1")
        for ns in sorted({CLIENT_POD["namespace"], SERVER_POD["namespace"]}):
            kube.namespace(ns)
        kube.pod(CLIENT_POD, "node-1")
        kube.pod(SERVER_POD, "node-1")
        kube.service(SERVER_SERVICE, int(SERVER_PORT))
        cls.modes["identity"].flags += ["--kubernetes", "--kubeconfig", os.path.join(cls.cluster_dir, "kubeconfig"),
                                       "--istio-metrics"]
        # No --node-name, and no NODE_NAME (its environment variable) to
        # stand in for it: every pod end of the file reports.
        cls.exporter_env = {k: v for k, v in os.environ.items() if k != "NODE_NAME"}

        cls._serve_all(cls.steps[0])
        for m in cls.modes.values():
            wait_for("Prometheus (%s) to be ready" % m.name, lambda m=m: cls._alive(m.prometheus, "prometheus")
                     and http_get(m.prom_url + "/-/ready")[0] == 200, 30)
            wait_for("Prometheus (%s) to scrape its exporter" % m.name,
                     lambda m=m: [s for s in cls.query(m.name, 'up{job="tcp-exporter"} == 1')], 30)
        cls.replay_start = time.time()

        # The replay: one longer prefix every STEP_SECONDS, both exporters.
        for path in cls.steps[1:]:
            time.sleep(STEP_SECONDS)
            cls._serve_all(path)
        # Two more scrapes of the whole capture, and rule evaluations on them.
        time.sleep(2.5)
        # "Now" for the queries of Istio's dashboards: the exporters still
        # serve the whole capture (test_8 stops them).
        cls.replay_end = time.time()
        print("\n  set-up (capture, cluster, 2 Prometheus, %d-step replay of 2 exporters): %.1f s"
              % (STEPS, time.monotonic() - started), file=sys.stderr)

    @classmethod
    def _stop_cluster(cls):
        if cls.cluster_start is not None and cls.cluster_start.poll() is None:
            stop(cls.cluster_start, timeout=30)  # the script stops what it started
        if os.path.isdir(cls.cluster_dir):
            subprocess.run(["bash", str(KUBE_SCRIPT), "stop", cls.cluster_dir], capture_output=True)

    @classmethod
    def _serve_all(cls, pcap):
        """Every mode's exporter (re)started on `pcap`, then waited for."""
        for m in cls.modes.values():
            stop(m.exporter)
        for m in cls.modes.values():
            m.exporter = start([EXPORTER, "-r", pcap, "-p", m.exporter_port, "--listen", "127.0.0.1",
                                "--long-connections", LONG_CONNECTIONS,
                                "--flow-log", os.path.join(cls.tmp, "flow-%s.jsonl" % m.name),
                                "--flow-log-interval", FLOW_LOG_INTERVAL] + m.flags,
                               os.path.join(cls.tmp, "exporter-%s.log" % m.name), env=cls.exporter_env)
        for m in cls.modes.values():
            # --kubernetes with -r lists the cluster first (up to 30 s).
            wait_for("the exporter (%s) to have read %s" % (m.name, pcap),
                     lambda m=m: cls._alive(m.exporter, "tcp-exporter (%s)" % m.name)
                     and http_get(m.exporter_url + "/readyz")[0] == 200, 40, interval=0.05)

    @classmethod
    def _alive(cls, proc, name):
        if proc.poll() is not None:
            raise AssertionError("%s exited with %s; the logs:\n%s" % (name, proc.returncode, cls._logs()))
        return True

    @classmethod
    def _logs(cls):
        out = []
        names = ["cluster-start.log"] + ["%s-%s.log" % (what, m) for m in MODES for what in ("exporter", "prometheus")]
        paths = [os.path.join(cls.tmp, n) for n in names]
        paths += [os.path.join(cls.cluster_dir, n) for n in ("kube-apiserver.log", "etcd.log")]
        for p in paths:
            if os.path.exists(p):
                with open(p, errors="replace") as f:
                    out.append("--- %s\n%s" % (os.path.relpath(p, cls.tmp), f.read()[-4000:]))
        return "\n".join(out)

    # ------------------------------------------------------------ API helpers
    @classmethod
    def api(cls, mode, path, params=None):
        url = cls.modes[mode].prom_url + path
        if params:
            url += "?" + urllib.parse.urlencode(params, doseq=True)
        status, body = http_get(url, timeout=10)
        try:
            doc = json.loads(body)
        except ValueError:
            doc = {"status": "error", "error": "HTTP %d: %r" % (status, body[:200])}
        return doc

    @classmethod
    def query(cls, mode, expr, at=None):
        """The result of an instant query in `mode`'s Prometheus (at Unix
        time `at`, or now); raises AssertionError with Prometheus' message
        if it fails (a parse error, say)."""
        doc = cls.api(mode, "/api/v1/query", dict({"query": expr}, **({"time": at} if at else {})))
        if doc.get("status") != "success":
            raise AssertionError("query failed (%s): %s\n  %s" % (mode, doc.get("error"), expr))
        data = doc["data"]
        if data["resultType"] in ("vector", "matrix"):
            return data["result"]
        return [{"metric": {}, "value": data["result"]}]

    @classmethod
    def query_range(cls, mode, expr, start, end, step=1):
        """The series of a range query in `mode`'s Prometheus; raises
        AssertionError with Prometheus' message if it fails."""
        doc = cls.api(mode, "/api/v1/query_range", {"query": expr, "start": start, "end": end, "step": step})
        if doc.get("status") != "success":
            raise AssertionError("range query failed (%s): %s\n  %s" % (mode, doc.get("error"), expr))
        return doc["data"]["result"]

    @staticmethod
    def numbers(result):
        """The sample values of an instant-query result, as floats."""
        out = []
        for series in result:
            values = [series["value"]] if "value" in series else series.get("values", [])
            out.extend(float(v[1]) for v in values)
        return out

    # ------------------------------------------------------------ tests
    def test_1_promtool_check_metrics_on_served_output(self):
        for mode in MODES:
            with self.subTest(mode=mode):
                status, text = http_get(self.modes[mode].exporter_url + "/metrics")
                self.assertEqual(status, 200)
                self.assertIn("tcp_retransmitted_segments_total{", text)
                r = subprocess.run([tool("promtool"), "check", "metrics"], input=text, capture_output=True, text=True)
                self.assertEqual(r.returncode, 0, "promtool check metrics:\n%s%s" % (r.stdout, r.stderr))

    def test_1b_identity_exporter_names_the_ends_as_the_cluster_does(self):
        # Everything the identity panels show rests on this: the ReplicaSet
        # with pod-template-hash is its Deployment, the StatefulSet itself,
        # the Service that selects the server pod.
        _, text = http_get(self.modes["identity"].exporter_url + "/metrics")
        opened = [line for line in text.splitlines() if line.startswith("tcp_connections_opened_total{")]
        self.assertTrue(opened, text[:2000])
        for line in opened:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
            self.assertEqual(labels, IDENTITY, line)
        self.assertIn('tcp_exporter_kubernetes_synced{kind="pods"} 1', text)
        _, text = http_get(self.modes["ip"].exporter_url + "/metrics")
        self.assertNotIn("tcp_exporter_kubernetes_", text)
        self.assertNotIn("server_workload=", text)
        self.assertNotIn("reporter=", text)

    def test_1c_otlp_exports_succeed_and_drop_nothing(self):
        for mode in MODES:
            with self.subTest(mode=mode):
                ok = self.numbers(self.query(mode, 'sum by (signal) (tcp_exporter_otlp_exports_total{result="ok"})'))
                self.assertEqual(len(ok), 2, "metrics and logs")
                self.assertTrue(all(v > 0 for v in ok), ok)
                for query in ('sum(tcp_exporter_otlp_exports_total{result="failed"})',
                              'sum(tcp_exporter_otlp_log_records_total{result="dropped"})'):
                    self.assertEqual(self.numbers(self.query(mode, query)), [0.0], query)
                sent = self.numbers(self.query(mode, 'sum(tcp_exporter_otlp_log_records_total{result="sent"})'))
                self.assertTrue(sent and sent[0] > 0, sent)
        # What the collector took in names both exporters' traffic.
        with open(os.path.join(self.collector_dir, "metrics.json")) as f:
            text = f.read()
        self.assertIn('"tcp_packets"', text)
        self.assertIn('"client.k8s.workload.name"', text)

    def test_2_every_rule_loaded_and_evaluates(self):
        names = {r["alert"] for r in self.alert_rules}
        for mode in MODES:
            with self.subTest(mode=mode):
                def evaluated():
                    rules = [r for g in self.api(mode, "/api/v1/rules")["data"]["groups"] for r in g["rules"]]
                    return rules if all(r.get("health") != "unknown" for r in rules) else None

                rules = wait_for("every rule to be evaluated (%s)" % mode, evaluated, 20)
                self.assertEqual({r["name"] for r in rules}, names)
                for r in rules:
                    self.assertEqual(r["health"], "ok", "%s: %s" % (r["name"], r.get("lastError")))

    def test_3_alert_expressions_parse(self):
        for rule in self.alert_rules:
            with self.subTest(alert=rule["alert"]):
                self.query("ip", rule["expr"])

    def variable_values(self, mode):
        """Each dashboard variable's values in `mode`, found with its own
        query (Grafana's label_values(selector, label)), chained as Grafana
        chains them: one value each, or All (`.*`) where none was found."""
        dashboard = load_dashboard()
        chosen = {REPORTER_VARIABLE: reporter_variable(dashboard)[1]}  # the default view
        found = {}
        for name, q in dashboard_variables(dashboard):
            m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\)\s*", q, re.S)
            self.assertIsNotNone(m, "variable %s: not a label_values() query: %s" % (name, q))
            selector = substitute(m.group(1), chosen)
            doc = self.api(mode, "/api/v1/label/%s/values" % m.group(2), {"match[]": selector})
            self.assertEqual(doc.get("status"), "success", "variable %s: %s" % (name, doc.get("error")))
            found[name] = sorted(doc["data"])
            chosen[name] = grafana_regex(found[name][0]) if found[name] else ".*"
        return found, chosen

    def test_4_dashboard_variables_find_their_modes_values(self):
        for mode in MODES:
            with self.subTest(mode=mode):
                found, _ = self.variable_values(mode)
                self.assertEqual(set(found), set(VARIABLES))
                expected = {name: VARIABLE_VALUES[mode].get(name, []) for name in VARIABLES}
                self.assertEqual(found, expected)
        # Every variable finds values in one mode or the other.
        self.assertEqual(set(VARIABLE_VALUES["ip"]) | set(VARIABLE_VALUES["identity"]), set(VARIABLES))
        self.assertTrue(set(IP_VARIABLES) <= set(VARIABLE_VALUES["ip"]))
        self.assertTrue(set(IDENTITY_VARIABLES) <= set(VARIABLE_VALUES["identity"]))

    def panel_data(self, values):
        """Runs every panel query in both modes, `values[mode]` substituted
        for the variables; returns [(row, panel title, refId, modes in which
        the query returned data other than NaN)]."""
        out = []
        for row, panel in dashboard_rows(load_dashboard()):
            for t in panel.get("targets", []):
                if "expr" not in t:
                    continue
                with_data = set()
                for mode in MODES:
                    q = substitute(t["expr"], values[mode])
                    nums = self.numbers(self.query(mode, q))
                    if any(not math.isnan(v) for v in nums):
                        with_data.add(mode)
                out.append((row, panel["title"], t["refId"], with_data))
        return out

    def check_panels(self, values, report=False):
        """Every panel returns data in both modes, those of KUBERNETES_ROWS
        with identity labels only; every query in at least one mode (a query
        of one mode only is fine where the panel has another for the other
        mode, as the by-server panels do: A by address, B by workload)."""
        results = self.panel_data(values)
        self.assertGreater(len(results), 30)
        panels = {}
        for row, title, ref, with_data in results:
            with self.subTest(panel=title, query=ref):
                self.assertTrue(with_data, "no data in either mode (all values: %s)" % values)
            panels.setdefault((row, title), {})[ref] = with_data
        for (row, title), refs in panels.items():
            expected = {"identity"} if row in KUBERNETES_ROWS else set(MODES)
            got = set().union(*refs.values())
            with self.subTest(panel=title):
                self.assertEqual(got, expected, "modes with data, by query: %s" % refs)
        if not report:
            return
        one_mode = sorted("%s [%s]: %s only" % (title, ref, "".join(d)) for _, title, ref, d in results if len(d) == 1)
        print("\n  %d panels, %d queries; %d panels only with identity labels; queries with data in one mode"
              " (the others have data in both):\n    %s"
              % (len(panels), len(results), sum(1 for (row, _) in panels if row in KUBERNETES_ROWS),
                 "\n    ".join(one_mode)), file=sys.stderr)

    def test_5_dashboard_queries_return_data_for_all_values(self):
        # In every view of the Reporter variable: these series have one
        # view only (reporter="node", or no reporter label), which each
        # choice shows.
        options, default = reporter_variable(load_dashboard())
        for text, value in options:
            with self.subTest(reporter=text):
                all_values = dict({name: ".*" for name in VARIABLES}, **{REPORTER_VARIABLE: value})
                self.check_panels({mode: all_values for mode in MODES}, report=value == default)

    def test_6_dashboard_queries_return_data_for_one_value_each(self):
        # A query that filters a metric by a label it does not carry (client on
        # the RTT histograms, say) finds nothing here, where `.*` matched. In
        # each mode the other mode's variables have no values and stay All,
        # as in Grafana.
        self.check_panels({mode: self.variable_values(mode)[1] for mode in MODES})

    def test_6b_istio_series_carry_the_labels_istio_would_write(self):
        with open("/proc/%d/environ" % self.modes["identity"].exporter.pid, "rb") as f:
            names = [e.split(b"=", 1)[0] for e in f.read().split(b"\0")]
        self.assertNotIn(b"NODE_NAME", names, "the exporter must read the file as from no node")
        used = istio_dashboard_labels(load_istio_dashboards())
        self.assertTrue({"reporter", "source_workload", "destination_service", "connection_security_policy",
                         "source_cluster", "destination_cluster"} <= used, used)
        result = self.query("identity", '{__name__=~"istio_.*"}', at=self.replay_end)
        reporters = {}
        for series in result:
            labels = {k: v for k, v in series["metric"].items() if k not in ("__name__", "job", "instance")}
            reporters.setdefault(series["metric"]["__name__"], set()).add(labels.get("reporter"))
            with self.subTest(series=series["metric"]):
                self.assertFalse(used - set(labels), "labels the dashboards use, missing")
                self.assertIn(labels.pop("response_flags", None), ISTIO_RESPONSE_FLAGS)
                reporter = labels.get("reporter")
                expected = dict(ISTIO_LABELS, reporter=reporter,
                                connection_security_policy=ISTIO_SECURITY_POLICY.get(reporter))
                wrong = {k: (labels.get(k), expected.get(k)) for k in set(labels) | set(expected)
                         if labels.get(k) != expected.get(k)}
                self.assertEqual(wrong, {}, "label: (served, what Istio would write)")
        self.assertEqual(reporters, {name: {"source", "destination"} for name in ISTIO_FAMILIES})
        for reporter in ("source", "destination"):
            sent = self.query("identity", 'istio_tcp_sent_bytes_total{reporter="%s"}' % reporter, at=self.replay_end)
            self.assertTrue(any(v > 0 for v in self.numbers(sent)), "%s: %s" % (reporter, sent))
        self.assertEqual(self.query("ip", '{__name__=~"istio_.*"}', at=self.replay_end), [])

    def istio_variable_query(self, query, regex):
        """A variable's values as Grafana finds them: query_result(EXPR) an
        instant query at the end of the replay rendered per series,
        label_values([SELECTOR,] LABEL) the label's values; then the
        variable's regex."""
        m = re.fullmatch(r"\s*query_result\((.+)\)\s*", query, re.S)
        if m:
            doc = self.api("identity", "/api/v1/query", {"query": m.group(1), "time": self.replay_end})
            self.assertEqual(doc.get("status"), "success", "%s\n  %s" % (doc.get("error"), query))
            return grafana_options(query_result_texts(doc["data"]), regex)
        m = re.fullmatch(r"\s*label_values\((?:(.+),\s*)?(\w+)\)\s*", query, re.S)
        self.assertIsNotNone(m, "neither query_result() nor label_values(): %s" % query)
        doc = self.api("identity", "/api/v1/label/%s/values" % m.group(2),
                       {"match[]": m.group(1)} if m.group(1) else None)
        self.assertEqual(doc.get("status"), "success", "%s\n  %s" % (doc.get("error"), query))
        return grafana_options(doc["data"], regex)

    def istio_variables(self, dashboard, chosen, qrep):
        """`dashboard`'s variables resolved in order, each query with the
        earlier ones substituted: (values found, by name; the text each puts
        in a query). `chosen` sets single values, `qrep` the reporters; a
        variable with All stays at All, any other takes its first value."""
        found, text = {}, {}
        for v in dashboard["variables"]:
            name = v["name"]
            if v["type"] == "datasource":
                continue
            if v["type"] == "custom":
                found[name] = [x.strip() for x in re.findall(r"(?:\\,|[^,])+", v["query"])]
            else:
                self.assertEqual(v["type"], "query", name)
                found[name] = self.istio_variable_query(substitute(v["query"], text), v.get("regex", ""))
            if name == "qrep":
                selected = list(qrep)
            elif name in chosen:
                selected = [chosen[name]]
            else:
                selected = ALL if v.get("includeAll") else found[name][:1]
            text[name] = grafana_format(v, selected, found[name])
        return found, text

    def istio_runs(self):
        """(dashboard name, its data, view, $qrep choice, chosen values) of
        every view, with each $qrep choice where the dashboard has one."""
        out = []
        for name, dashboard in load_istio_dashboards().items():
            has_qrep = any(v["name"] == "qrep" for v in dashboard["variables"])
            for view, chosen in ISTIO_VIEWS[name].items():
                for qrep in ISTIO_QREP_CHOICES if has_qrep else [()]:
                    out.append((name, dashboard, view, qrep, chosen))
        return out

    def test_6c_istio_dashboard_variables_find_the_cluster(self):
        for name, dashboard, view, qrep, chosen in self.istio_runs():
            with self.subTest(dashboard=name, view=view, qrep=qrep):
                found, _ = self.istio_variables(dashboard, chosen, qrep)
                self.assertEqual(found, ISTIO_VARIABLE_VALUES[name, view])

    def test_6d_istio_dashboard_tcp_panels_return_data(self):
        # irate() over the replay: after it the counters stand still, and
        # an instant query now would read 0.
        with_data, checked = {}, set()
        for name, dashboard, view, qrep, chosen in self.istio_runs():
            _, text = self.istio_variables(dashboard, chosen, qrep)
            for panel in dashboard["tcp_panels"]:
                for i, expr in enumerate(panel["expr"]):
                    key = (name, view, panel["id"], i)
                    checked.add(key)
                    where = "%s dashboard, view %s, panel %d %r, query %d; variables %s" % (
                        name, view, panel["id"], panel["title"], i, text)
                    with self.subTest(dashboard=name, view=view, qrep=qrep, panel=panel["id"], query=i):
                        q = substitute(expr, text)
                        result = self.query_range("identity", q, self.replay_start, self.replay_end)
                        if key in ISTIO_NO_DATA:
                            self.assertEqual(result, [], "%s: expected no data (%s)\n  %s"
                                             % (where, ISTIO_NO_DATA[key], q))
                            continue
                        nums = self.numbers(result)
                        self.assertTrue(any(v != 0 and not math.isnan(v) for v in nums),
                                        "%s: no non-zero value over the replay (%d series)\n  %s"
                                        % (where, len(result), q))
                        with_data.setdefault((name, panel["id"], i), set()).add(view)
        self.assertEqual(set(ISTIO_NO_DATA) - checked, set(), "ISTIO_NO_DATA names queries that do not exist")
        # A query is without data in every view for mutual TLS only.
        for name, view, panel, i in checked:
            if (name, panel, i) not in with_data:
                with self.subTest(dashboard=name, panel=panel, query=i):
                    self.assertEqual(ISTIO_NO_DATA.get((name, view, panel, i)), MUTUAL_TLS)
        mtls = sum(1 for r in ISTIO_NO_DATA.values() if r == MUTUAL_TLS)
        print("\n  Istio dashboards: %d panel queries x view, %d with data; no data by design: %d mutual TLS,"
              " %d of a direction the view's workload does not take"
              % (len(checked), len(checked) - len(ISTIO_NO_DATA), mtls, len(ISTIO_NO_DATA) - mtls), file=sys.stderr)

    def alerts(self, mode):
        return self.api(mode, "/api/v1/alerts")["data"]["alerts"]

    def test_7_loss_alerts_fire_and_the_others_do_not(self):
        for mode in MODES:
            with self.subTest(mode=mode):
                deadline = time.monotonic() + 60
                while True:
                    states = {(a["labels"]["alertname"], a["state"]) for a in self.alerts(mode)}
                    if MUST_FIRE[mode] <= {name for name, state in states if state == "firing"}:
                        break
                    if time.monotonic() > deadline:
                        self.fail("after 60 s, %s should fire; the alerts are: %s"
                                  % (sorted(MUST_FIRE[mode]), sorted(states)))
                    time.sleep(1)
                for a in self.alerts(mode):
                    name = a["labels"]["alertname"]
                    if name in MUST_FIRE[mode]:
                        for label, value in MUST_FIRE_LABELS[mode].items():
                            self.assertEqual(a["labels"].get(label), value, "%s: %s" % (name, a["labels"]))
                    self.assertNotIn(name, MUST_NOT_FIRE[mode], "%s is %s: %s" % (name, a["state"], a["labels"]))

    def test_8_exporter_down_fires_when_the_exporter_stops(self):
        for m in self.modes.values():
            stop(m.exporter)
        for m in self.modes.values():
            def down(m=m):
                return [a for a in self.alerts(m.name)
                        if a["labels"]["alertname"] == "TCPExporterDown" and a["state"] == "firing"]

            alerts = wait_for("TCPExporterDown to fire (%s)" % m.name, down, 30, interval=1)
            self.assertEqual(alerts[0]["labels"]["instance"], "127.0.0.1:%d" % m.exporter_port)


if __name__ == "__main__":
    unittest.main()

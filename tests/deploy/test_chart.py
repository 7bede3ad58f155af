"""The Helm chart, with real Helm: the library inside the PyPI package
helm-sdkpy (Helm's own Go code behind a C interface).

- Lint: helm-sdkpy's Lint action on the chart, and on a copy whose
  values.yaml is the defaults merged with values/xdp-monitoring.yaml (Lint
  takes no values). helm-sdkpy reports each message's severity and path but
  not its text (the Go error serialises as {}), so a failure names the file
  and the render below gives the reason.
- Render: helm-sdkpy has no `template` action. Its Install action, pointed at
  a stand-in API server on loopback (kubestub.py), renders the chart exactly
  as `helm install` would and returns the manifest; the stub serves discovery
  with or without monitoring.coreos.com/v1, which is what
  `.Capabilities.APIVersions` sees. values.schema.json is enforced there too.
- Every rendered manifest of a built-in kind is validated with
  kubernetes-validate (strict: unknown fields fail) for the oldest Kubernetes
  the chart accepts and the newest the package knows. Its schemas have no
  Prometheus Operator kinds: ServiceMonitor, PodMonitor and PrometheusRule
  are checked here against what they must select and carry instead, and the
  PrometheusRule's rules go through `promtool check rules`.
- The web config the chart renders (webConfig) is given to the exporter
  itself, laid out as the kubelet lays out the projected volume, with
  certificates made by openssl: HTTPS, passwords, headers, and a renewed
  certificate arriving the way a Secret update does. Likewise the otlp.tls
  Secret: the exporter reads its files through the --otlp-ca, --otlp-cert
  and --otlp-key paths the chart renders.
"""

import asyncio
import base64
import copy
import http.client
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import unittest

import yaml

from common import REPORTER_CAPABILITIES, CHART, DASHBOARD, EXPORTER, RULES, ROOT, XDP_CAPABILITIES, free_port, start, stop, tool, wait_for
from kubestub import KubeStub

XDP_VALUES = ROOT / "tests" / "deploy" / "values" / "xdp-monitoring.yaml"
OLDEST_KUBERNETES = "1.25"  # Chart.yaml kubeVersion
RELEASE = "tcpx"
NAMESPACE = "monitoring"
MONITORING_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
# xdp settings too: only backend xdp renders them.
AF_PACKET_VALUES = {"backend": "af-packet", "filter": "tcp port 443",
                    "afPacket": {"workers": 4, "ringBlockSizeKiB": 2048, "ringBlocks": 32, "ringTimeoutMs": 20},
                    "xdp": {"mode": "native", "ringSizeMiB": 64}}
# The fewest values backend xdp renders with.
XDP_MINIMAL_VALUES = {"backend": "xdp", "capture": {"mode": "interfaces", "interfaces": ["eth0"]}}
XDP_INTERFACES_MESSAGE = "backend xdp needs named interfaces or globs, not `any`"
XDP_FILTER_MESSAGE = "backend xdp takes no filter"
# What the pcap and af-packet backends get: NET_RAW opens the capture, and
# NET_ADMIN, only with the reporter label, reads the addresses of each
# veth's other end in the pod's namespace (test_capabilities.py measures
# both). The exporter's default labels with --kubernetes have reporter.
CAPTURE_CAPABILITIES = ["NET_RAW"]
REPORTER_NOTE = "NET_ADMIN is for the reporter label"
# What every render starts with when capture, port and listen are the
# defaults: the pods' interfaces, each with a 1 MiB buffer (pcap).
POD_CAPTURE_ARGS = ["-i", "pods", "--buffer-size", "1"]
DEFAULT_ARGS = POD_CAPTURE_ARGS + ["--port", "9090", "--listen", "0.0.0.0"]
# The exporter's interfaces of capture.mode pods (src/config.rs POD_INTERFACES),
# which values.yaml and the README name.
POD_INTERFACE_GLOBS = ["cali*", "lxc*", "veth*", "eni*", "gke*", "azv*"]
# The most pods a node runs where the kubelet's maxPods is raised (110 by
# default): capture.mode pods needs --max-interfaces at least that.
MAX_PODS_PER_NODE = 250
# kubernetes.enabled (the default): --kubernetes after --labels, a ClusterRole
# with exactly these rules and a binding to the pods' ServiceAccount, all
# named after the release.
KUBERNETES_RULES = [{"apiGroups": [""], "resources": ["pods", "services", "nodes"], "verbs": ["get", "list", "watch"]}]
FULLNAME = RELEASE + "-tcp-exporter"
KUBERNETES_OFF = {"kubernetes": {"enabled": False}}
KUBERNETES_LABELS = ["client_namespace", "client_workload", "client_workload_kind", "client_pod", "server_namespace",
                     "server_workload", "server_workload_kind", "server_pod", "server_service"]
NO_SERVICE_ACCOUNT_NAME_MESSAGE = "kubernetes.enabled with serviceAccount.create false needs serviceAccount.name"
# Where the container reads portNames.custom (the ConfigMap's mount and key).
PORT_NAMES_DIR = "/etc/tcp-exporter"
PORT_NAMES_FILE = PORT_NAMES_DIR + "/port-names.yaml"
PORT_NAMES_CONFIGMAP = RELEASE + "-tcp-exporter-port-names"
DASHBOARD_CONFIGMAP = RELEASE + "-tcp-exporter-dashboard"
# Where the container reads webConfig: the projected volume's mount and the
# web config's key, and the Secret the chart renders it into.
WEB_CONFIG_DIR = "/etc/tcp-exporter-web"
WEB_CONFIG_FILE = WEB_CONFIG_DIR + "/web-config.yml"
WEB_CONFIG_SECRET = RELEASE + "-tcp-exporter-web-config"
# The passwords behind the bcrypt hashes of values/xdp-monitoring.yaml.
WEB_PASSWORDS = {"prometheus": "scrape-test-only", "ops team's #2": "second-test-only"}
SCRAPE_BASIC_AUTH = {"username": {"name": "tcpx-scrape", "key": "username"},
                     "password": {"name": "tcpx-scrape", "key": "password"}}
# A capture for the exporter to serve while its web config is tried.
SMALL_CAPTURE = ROOT / "testdata" / "pcaps" / "short_conns.pcap"
# otlp with every value set: OTLP/HTTP to a Collector's Service, headers
# given out of order (the args take them sorted by name).
OTLP_ENDPOINT = "http://otel-collector.monitoring.svc:4318"
OTLP_VALUES = {"otlp": {"enabled": True, "endpoint": OTLP_ENDPOINT, "protocol": "http", "interval": "30s",
                        "timeout": 3, "headers": {"X-Scope-OrgID": "tenant-a", "Authorization": "Bearer t0k=n"},
                        "logs": True, "logQueue": 50000}}
OTLP_ARGS = ["--otlp-endpoint", OTLP_ENDPOINT, "--otlp-protocol", "http", "--otlp-interval", "30s",
             "--otlp-timeout", "3", "--otlp-header", "Authorization=Bearer t0k=n",
             "--otlp-header", "X-Scope-OrgID=tenant-a", "--otlp-logs", "--otlp-log-queue", "50000"]
# A Collector on each node with hostPort 4317, at the node's address: on the
# host network the pods' POD_IP (status.podIP) is that address, and
# Kubernetes expands $(POD_IP) in args from the container's env.
OTLP_NODE_ENDPOINT = "http://$(POD_IP):4317"
OTLP_NO_ENDPOINT_MESSAGE = "otlp.enabled needs otlp.endpoint, the receiver's URL"
# otlp.tls: a receiver over TLS, checked against the CA in a Secret (ca.crt,
# values.yaml's default key), which also holds the client certificate (the
# Secret cert-manager makes for a Certificate). The Secret is mounted whole
# in a folder of its own: not under PORT_NAMES_DIR, a read-only ConfigMap
# mount in which the mount point could not be made.
OTLP_HTTPS_ENDPOINT = "https://otel-collector.monitoring.svc:4317"
OTLP_TLS_SECRET = "otlp-client"
OTLP_TLS_DIR = "/etc/tcp-exporter-otlp"
OTLP_TLS_VALUES = {"otlp": {"enabled": True, "endpoint": OTLP_HTTPS_ENDPOINT,
                            "tls": {"secret": OTLP_TLS_SECRET, "clientCertificate": True}}}
OTLP_TLS_ARGS = ["--otlp-endpoint", OTLP_HTTPS_ENDPOINT, "--otlp-protocol", "grpc",
                 "--otlp-ca", OTLP_TLS_DIR + "/ca.crt",
                 "--otlp-cert", OTLP_TLS_DIR + "/tls.crt", "--otlp-key", OTLP_TLS_DIR + "/tls.key"]
OTLP_TLS_HTTP_MESSAGE = "otlp.tls.secret and otlp.tls.clientCertificate are for an https:// endpoint"
# Flags the chart can render before the exporter has them (later issues):
# remove each from here when `tcp-exporter --help` lists it.
PENDING_FLAGS = set()
PENDING_BACKENDS = set()

helm = None
kubernetes_validate = None
_helm_home = None
_saved_env = {}


def setUpModule():
    global helm, kubernetes_validate, _helm_home
    # Helm keeps a cache, config and data directory; the library reads these
    # when it loads (on first use), so they point into a temporary directory.
    # helm-sdkpy makes ~/.cache/helm, ~/.config/helm and ~/.local/share/helm
    # whatever HELM_*_HOME say, so HOME itself points there while it runs.
    _helm_home = tempfile.mkdtemp(prefix="tcp-exporter-helm-")
    _saved_env.update({k: os.environ.get(k) for k in ("HOME", "HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME")})
    os.environ["HOME"] = _helm_home
    for var, sub in (("HELM_CACHE_HOME", ".cache/helm"), ("HELM_CONFIG_HOME", ".config/helm"),
                     ("HELM_DATA_HOME", ".local/share/helm")):
        os.environ[var] = os.path.join(_helm_home, sub)
    import helm_sdkpy
    import kubernetes_validate as kv
    helm, kubernetes_validate = helm_sdkpy, kv


def tearDownModule():
    for k, v in _saved_env.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    if _helm_home:
        shutil.rmtree(_helm_home, ignore_errors=True)


def deep_merge(base, override):
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def xdp_values():
    with open(XDP_VALUES) as f:
        return yaml.safe_load(f)


def lint(chart_dir):
    """Helm's lint messages as (severity name, path)."""
    config = helm.Configuration(namespace=NAMESPACE)
    result = asyncio.run(helm.Lint(config).run(str(chart_dir)))
    names = {0: "unknown", 1: "info", 2: "warning", 3: "error"}
    return [(names.get(m["Severity"], str(m["Severity"])), m["Path"]) for m in result.get("Messages") or []]


class Rendered:
    def __init__(self, docs, notes, sent):
        self.docs = docs
        self.notes = notes
        self.sent = sent  # what Helm sent to the API server

    def kinds(self):
        return sorted(d["kind"] for d in self.docs)

    def one(self, kind, name=None):
        found = [d for d in self.docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
        assert len(found) == 1, "%d %s%s in the manifest" % (len(found), kind, "" if name is None else " " + name)
        return found[0]

    def names(self, kind):
        return sorted(d["metadata"]["name"] for d in self.docs if d["kind"] == kind)


def render(values=None, monitoring_crds=False):
    """`helm install` of the chart against the stub API server; returns the
    manifest Helm rendered and applied."""
    stub = KubeStub(monitoring_crds=monitoring_crds)
    fd, kubeconfig = tempfile.mkstemp(prefix="kubeconfig-", suffix=".yaml", dir=_helm_home)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(stub.kubeconfig())
        config = helm.Configuration(namespace=NAMESPACE, kubeconfig=kubeconfig)
        result = asyncio.run(helm.Install(config).run(RELEASE, str(CHART), values=values, wait=False, timeout=60))
        docs = [d for d in yaml.safe_load_all(result["manifest"]) if d]
        return Rendered(docs, result["info"].get("notes", ""), list(stub.created))
    finally:
        stub.stop()
        os.unlink(kubeconfig)


def port_keys_as_strings(custom):
    """portNames.custom as Helm holds it, and as its toYaml writes it: the
    ports as string keys."""
    return {str(port): name for port, name in custom.items()}


def container(daemonset):
    containers = daemonset["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def web_config_text(rendered, name=WEB_CONFIG_SECRET):
    """The web config file the chart rendered into its Secret."""
    secret = rendered.one("Secret", name)
    return base64.b64decode(secret["data"]["web-config.yml"]).decode()


def exporter_reads_web_config(text):
    """(exit status, stderr) of the exporter reading `text` as its
    --web.config.file while it analyses a capture with --print: the file is
    read and checked at start (certificate files are loaded only to serve)."""
    with tempfile.TemporaryDirectory(prefix="tcp-exporter-webconfig-") as tmp:
        path = os.path.join(tmp, "web-config.yml")
        with open(path, "w") as f:
            f.write(text)
        out = subprocess.run([str(EXPORTER), "-r", str(SMALL_CAPTURE), "--print", "--web.config.file", path],
                             capture_output=True, text=True, timeout=60)
        return out.returncode, out.stderr


def exporter_takes_args(args):
    """(exit status, stderr) of the exporter started with `args` while it
    analyses a capture with --print: the --otlp-* flags are checked at start
    (the endpoint's URL, scheme and host, the durations, the headers'
    NAME=VALUE form); with --print nothing is exported."""
    out = subprocess.run([str(EXPORTER), "-r", str(SMALL_CAPTURE), "--print", *args],
                         capture_output=True, text=True, timeout=60)
    return out.returncode, out.stderr


def exporter_reads_port_names(text):
    """(exit status, stderr, the port_name values served) of the exporter
    reading `text` as a --port-names file while it analyses a capture whose
    one server port is 8080: the file is read and every entry checked at
    start, and 8080's name shows the file's port keys read as numbers."""
    with tempfile.TemporaryDirectory(prefix="tcp-exporter-portnames-") as tmp:
        path = os.path.join(tmp, "port-names.yaml")
        with open(path, "w") as f:
            f.write(text)
        out = subprocess.run([str(EXPORTER), "-r", str(SMALL_CAPTURE), "--print", "--labels", "port_name",
                              "--port-names", path], capture_output=True, text=True, timeout=60)
        escaped = re.findall(r'port_name="((?:[^"\\]|\\.)*)"', out.stdout)
        unescape = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}
        names = {re.sub(r"\\.", lambda m: unescape[m.group(0)], v) for v in escaped}
        return out.returncode, out.stderr, names


def openssl(directory, *args):
    binary = tool("openssl")
    if binary is None:
        raise AssertionError("no openssl: run `make test-deps` (Debian package openssl)")
    subprocess.run([binary, *args], cwd=directory, check=True, capture_output=True)


def make_ca(directory):
    """ca.crt and ca.key: a CA, as cert-manager's ca.crt would be."""
    openssl(directory, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=tcpx-chart-test-CA", "-days", "2")


def make_server_certificate(directory, ca_directory):
    """tls.crt and tls.key in `directory`, for 127.0.0.1, signed by the CA."""
    with open(os.path.join(directory, "tls.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    openssl(directory, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "tls.key", "-out", "tls.csr", "-subj", "/CN=tcp-exporter")
    openssl(directory, "x509", "-req", "-in", "tls.csr", "-CA", os.path.join(ca_directory, "ca.crt"),
            "-CAkey", os.path.join(ca_directory, "ca.key"), "-CAcreateserial", "-out", "tls.crt",
            "-days", "2", "-extfile", "tls.ext")
    for leftover in ("tls.csr", "tls.ext"):
        os.unlink(os.path.join(directory, leftover))


class ProjectedVolume:
    """A folder laid out as the kubelet lays out a Secret or projected volume:
    each file is a symlink to ..data/FILE, ..data a symlink to a timestamped
    folder, and an update writes a new folder and swaps ..data in one
    rename. The exporter must see the new files through the same paths."""

    def __init__(self, root):
        self.root = root
        self.generation = 0

    def publish(self, files):
        """files: name -> bytes; becomes what the volume holds, atomically."""
        self.generation += 1
        stamp = "..2026_01_01_00_00_%02d.%d" % (self.generation, os.getpid())
        os.mkdir(os.path.join(self.root, stamp))
        for name, data in files.items():
            with open(os.path.join(self.root, stamp, name), "wb") as f:
                f.write(data)
        tmp_link = os.path.join(self.root, "..data_tmp")
        os.symlink(stamp, tmp_link)
        os.replace(tmp_link, os.path.join(self.root, "..data"))
        for name in files:
            link = os.path.join(self.root, name)
            if not os.path.islink(link):
                os.symlink(os.path.join("..data", name), link)


class ChartLint(unittest.TestCase):
    def assertLintClean(self, chart_dir):
        bad = [m for m in lint(chart_dir) if m[0] not in ("info",)]
        self.assertEqual(bad, [], "helm lint reports (severity, file); the render tests show why")

    def test_lint_default_values(self):
        self.assertLintClean(CHART)

    def test_lint_xdp_monitoring_values(self):
        with tempfile.TemporaryDirectory(prefix="tcp-exporter-chart-") as tmp:
            chart = os.path.join(tmp, "tcp-exporter")
            shutil.copytree(CHART, chart)
            with open(CHART / "values.yaml") as f:
                defaults = yaml.safe_load(f)
            with open(os.path.join(chart, "values.yaml"), "w") as f:
                yaml.safe_dump(deep_merge(defaults, xdp_values()), f)
            self.assertLintClean(chart)

    def test_lint_catches_a_broken_template(self):
        # The lint check above is only worth something if a broken chart fails it.
        with tempfile.TemporaryDirectory(prefix="tcp-exporter-chart-") as tmp:
            chart = os.path.join(tmp, "tcp-exporter")
            shutil.copytree(CHART, chart)
            with open(os.path.join(chart, "templates", "service.yaml"), "a") as f:
                f.write("\n{{ .Values.port | no_such_function }}\n")
            self.assertIn(("error", "templates/"), lint(chart))


class ChartRender(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.default = render()
        cls.default_operator = render(monitoring_crds=True)
        cls.xdp = render(xdp_values(), monitoring_crds=True)
        cls.af_packet = render(AF_PACKET_VALUES)
        cls.xdp_minimal = render(XDP_MINIMAL_VALUES)
        cls.kubernetes_off = render(KUBERNETES_OFF)
        cls.own_service_account = render({"serviceAccount": {"create": False, "name": "tcpx-reader"}})
        cls.otlp = render(OTLP_VALUES)
        cls.otlp_tls = render(OTLP_TLS_VALUES)
        cls.renders = {"default": cls.default, "default with operator": cls.default_operator,
                       "xdp-monitoring.yaml": cls.xdp, "af-packet": cls.af_packet, "xdp minimal": cls.xdp_minimal,
                       "kubernetes off": cls.kubernetes_off, "own service account": cls.own_service_account,
                       "otlp": cls.otlp, "otlp tls": cls.otlp_tls}

    # ------------------------------------------------------------ which objects
    def test_without_the_operator_no_monitoring_objects(self):
        self.assertEqual(self.default.kinds(), ["ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet",
                                                "Service", "ServiceAccount"])

    def test_with_the_operator_servicemonitor_and_rules_by_default(self):
        self.assertEqual(self.default_operator.kinds(),
                         ["ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet", "PrometheusRule", "Service",
                          "ServiceAccount", "ServiceMonitor"])

    def test_podmonitor_when_enabled(self):
        # Two ConfigMaps: the dashboard and portNames.custom; the Secret:
        # webConfig.config.
        self.assertEqual(self.xdp.kinds(), ["ClusterRole", "ClusterRoleBinding", "ConfigMap", "ConfigMap", "DaemonSet",
                                            "PodMonitor", "PrometheusRule", "Secret", "Service", "ServiceAccount",
                                            "ServiceMonitor"])

    def test_force_renders_monitoring_objects_without_the_operator(self):
        # Helm renders the three, then cannot apply them to a cluster that has
        # no such kinds, and says so: the forced objects were rendered. (In
        # `helm template`, which needs no cluster, they are simply output.)
        with self.assertRaises(helm.InstallError) as cm:
            render(xdp_values(), monitoring_crds=False)
        message = str(cm.exception)
        for kind in sorted(MONITORING_KINDS):
            self.assertIn('no matches for kind "%s" in version "monitoring.coreos.com/v1"' % kind, message)

    def test_helm_applied_what_it_rendered(self):
        for name, r in self.renders.items():
            with self.subTest(render=name):
                # Not Helm's own release record, a Secret too.
                posted = sorted(path.rsplit("/", 1)[1] for method, path, body in r.sent
                                if method == "POST" and not (path.endswith("/secrets")
                                                             and b"sh.helm.release.v1." in body))
                self.assertEqual(posted, sorted(d["kind"].lower() + "s" for d in r.docs))

    # ------------------------------------------------------------ the DaemonSet
    def assertPodBasics(self, ds, scheme=None, kubernetes=True):
        """The pod's fixed settings; `scheme` is the probes' (None: HTTP);
        `kubernetes`: kubernetes.enabled, the only case with a token."""
        pod = ds["spec"]["template"]["spec"]
        self.assertIs(pod["hostNetwork"], True)
        self.assertEqual(pod["dnsPolicy"], "ClusterFirstWithHostNet")
        self.assertIs(pod["automountServiceAccountToken"], kubernetes)
        c = container(ds)
        sc = c["securityContext"]
        self.assertIs(sc["readOnlyRootFilesystem"], True)
        self.assertIs(sc["allowPrivilegeEscalation"], False)
        self.assertIs(sc["privileged"], False)
        self.assertEqual(sc["capabilities"]["drop"], ["ALL"])
        probe_scheme = {} if scheme is None else {"scheme": scheme}
        self.assertEqual(c["livenessProbe"]["httpGet"], {"path": "/healthz", "port": "metrics", **probe_scheme})
        self.assertEqual(c["readinessProbe"]["httpGet"], {"path": "/readyz", "port": "metrics", **probe_scheme})
        self.assertIn("resources", c)
        return pod, c

    def test_default_daemonset(self):
        ds = self.default.one("DaemonSet")
        pod, c = self.assertPodBasics(ds)
        self.assertEqual(c["args"], DEFAULT_ARGS + ["--kubernetes"])
        # The default labels with --kubernetes have reporter.
        self.assertEqual(c["securityContext"]["capabilities"]["add"], REPORTER_CAPABILITIES)
        self.assertEqual(c["ports"], [{"name": "metrics", "containerPort": 9090, "hostPort": 9090, "protocol": "TCP"}])
        self.assertEqual(pod["tolerations"], [{"operator": "Exists"}])
        self.assertNotIn("priorityClassName", pod)
        self.assertEqual(c["image"], "tcp-exporter:0.1.0")
        self.assertIn("Capabilities: drop ALL, add NET_RAW, NET_ADMIN.", self.default.notes)
        self.assertIn(REPORTER_NOTE, self.default.notes)
        self.assertIn({"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}, c["env"])

    def test_xdp_daemonset_carries_every_value(self):
        ds = self.xdp.one("DaemonSet")
        pod, c = self.assertPodBasics(ds, scheme="HTTPS")
        self.assertEqual(c["args"], [
            "-i", "eth0", "-i", "eth1", "-i", "bond0.100", "--buffer-size", "64",
            "--port", "9187", "--listen", "$(POD_IP)", "--web.config.file", WEB_CONFIG_FILE,
            "--backend", "xdp", "--xdp-mode", "native", "--xdp-ring-size", "64",
            "--labels", "interface,server,server_port,port_name,ip_family", "--kubernetes",
            "--max-flows", "1000000", "--max-interfaces", "64", "--flow-idle-timeout", "120", "--max-series", "20000",
            "--series-ttl", "10m", "--aggregate-cidr", "10.0.0.0/8=cluster,client:0.0.0.0/0=/16,::/0=/64",
            "--port-names", "istio", "--port-names", PORT_NAMES_FILE,
            "--long-connections", "1h", "--max-long-connections", "500",
            "--flow-log", "-", "--flow-log-interval", "30s",
            "--snaplen", "128", "--promisc",
            "--future-flag=1",
        ])
        self.assertEqual(c["securityContext"]["capabilities"]["add"], XDP_CAPABILITIES + ["SYS_RESOURCE"])
        self.assertEqual(c["ports"][0]["containerPort"], 9187)
        self.assertEqual(c["ports"][0]["hostPort"], 9187)
        self.assertIn({"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}, c["env"])
        self.assertEqual(pod["priorityClassName"], "system-node-critical")
        self.assertEqual(pod["tolerations"], xdp_values()["tolerations"])
        self.assertEqual(c["resources"], xdp_values()["resources"])
        self.assertEqual(ds["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"], "9187")

    def test_af_packet_backend_needs_what_pcap_needs(self):
        c = container(self.af_packet.one("DaemonSet"))
        # No --xdp-*: those settings are for backend xdp only (the exporter
        # refuses them with another backend).
        # Pods mode, but the values' own ring settings: no small defaults.
        self.assertEqual(c["args"], ["-i", "pods", "--port", "9090", "--listen", "0.0.0.0",
                                     "--filter", "tcp port 443",
                                     "--backend", "af-packet", "--ring-block-size", "2048", "--ring-blocks", "32",
                                     "--ring-timeout", "20", "--workers", "4", "--kubernetes"])
        # NET_ADMIN for reporter, in the default labels with --kubernetes.
        self.assertEqual(c["securityContext"]["capabilities"]["add"], REPORTER_CAPABILITIES)

    def test_xdp_backend_gets_exactly_the_measured_capabilities(self):
        c = container(self.xdp_minimal.one("DaemonSet"))
        self.assertEqual(c["args"], ["-i", "eth0", "--port", "9090", "--listen", "0.0.0.0",
                                     "--backend", "xdp", "--xdp-mode", "auto", "--kubernetes"])
        sc = c["securityContext"]
        self.assertEqual(sc["capabilities"], {"drop": ["ALL"], "add": XDP_CAPABILITIES})
        self.assertEqual(sc["runAsUser"], 0)
        self.assertIs(sc["allowPrivilegeEscalation"], False)
        self.assertIn("Capabilities: drop ALL, add BPF, NET_ADMIN, PERFMON.", self.xdp_minimal.notes)
        self.assertNotIn(REPORTER_NOTE, self.xdp_minimal.notes)

    def test_the_reporter_label_adds_net_admin_to_pcap_and_af_packet(self):
        with_reporter = ["reporter", "client", "server"]
        cases = (
            # kubernetes.enabled and no labels: the exporter's default set
            # with --kubernetes, which has reporter.
            ({}, REPORTER_CAPABILITIES),
            ({"labels": None}, REPORTER_CAPABILITIES),
            ({"labels": with_reporter}, REPORTER_CAPABILITIES),
            (dict(KUBERNETES_OFF, labels=with_reporter), REPORTER_CAPABILITIES),
            # Added once, also when extraCapabilities names it.
            ({"labels": with_reporter, "securityContext": {"extraCapabilities": ["NET_ADMIN"]}},
             REPORTER_CAPABILITIES),
            # The default set without --kubernetes has no reporter.
            (KUBERNETES_OFF, CAPTURE_CAPABILITIES),
            ({"labels": ["client_workload", "server_workload", "server_port"]}, CAPTURE_CAPABILITIES),
            (dict(KUBERNETES_OFF, labels=["interface", "client", "server"]), CAPTURE_CAPABILITIES),
            # Istio's reporters need the pod behind each interface too.
            ({"labels": ["client_workload", "server_workload"], "istio": {"enabled": True}},
             REPORTER_CAPABILITIES),
        )
        for backend in ("pcap", "af-packet"):
            for values, caps in cases:
                with self.subTest(backend=backend, values=values):
                    r = render(dict(values, backend=backend))
                    sc = container(r.one("DaemonSet"))["securityContext"]
                    self.assertEqual(sc["capabilities"], {"drop": ["ALL"], "add": caps})
                    self.assertEqual(REPORTER_NOTE in r.notes, caps == REPORTER_CAPABILITIES, r.notes)
        # xdp keeps its set: its NET_ADMIN serves the reporter label too.
        for values in ({}, {"labels": with_reporter}, dict(KUBERNETES_OFF, labels=["interface", "client"])):
            with self.subTest(backend="xdp", values=values):
                r = render(dict(XDP_MINIMAL_VALUES, **values))
                sc = container(r.one("DaemonSet"))["securityContext"]
                self.assertEqual(sc["capabilities"], {"drop": ["ALL"], "add": XDP_CAPABILITIES})
                self.assertNotIn(REPORTER_NOTE, r.notes)

    def test_xdp_settings_render_only_when_set(self):
        cases = (({"mode": None, "ringSizeMiB": 1024}, ["--xdp-ring-size", "1024"]),
                 ({"mode": "generic", "ringSizeMiB": 4}, ["--xdp-mode", "generic", "--xdp-ring-size", "4"]),
                 (None, []))  # null removes the defaults: the exporter's own apply
        for xdp, flags in cases:
            with self.subTest(xdp=xdp):
                c = container(render(dict(XDP_MINIMAL_VALUES, xdp=xdp)).one("DaemonSet"))
                self.assertEqual(c["args"], ["-i", "eth0", "--port", "9090", "--listen", "0.0.0.0",
                                             "--backend", "xdp"] + flags + ["--kubernetes"])

    def test_xdp_without_named_interfaces_does_not_render(self):
        # The exporter would exit at start: the chart says why instead.
        for values in ({"capture": {"mode": "any"}},
                       {"capture": {"mode": "interfaces", "interfaces": ["any"]}},
                       {"capture": {"mode": "interfaces", "interfaces": ["eth0", "any"]}},
                       {"interfaces": ["any"]}, {"interfaces": ["eth0", "any"]}):
            with self.subTest(values=values):
                with self.assertRaises(helm.InstallError) as cm:
                    render(dict(values, backend="xdp"))
                self.assertIn(XDP_INTERFACES_MESSAGE, str(cm.exception))
                self.assertIn("capture: {mode: interfaces, interfaces: [eth0]}", str(cm.exception))

    def test_xdp_with_a_filter_does_not_render(self):
        with self.assertRaises(helm.InstallError) as cm:
            render(dict(XDP_MINIMAL_VALUES, filter="tcp port 443"))
        self.assertIn(XDP_FILTER_MESSAGE, str(cm.exception))

    # ------------------------------------------------------------ capture.mode
    def test_pods_mode_is_the_default_and_fits_the_exporters_bounds(self):
        with open(CHART / "values.yaml") as f:
            text = f.read()
        defaults = yaml.safe_load(text)
        self.assertEqual(defaults["capture"], {"mode": "pods", "interfaces": []})
        # The older value is not set by default: it would win over capture.
        self.assertNotIn("interfaces", defaults)
        # values.yaml names the globs `-i pods` takes, as the exporter has them.
        config_rs = (ROOT / "src" / "config.rs").read_text()
        m = re.search(r"POD_INTERFACES: \[&str; \d+\] = \[([^\]]*)\]", config_rs)
        self.assertIsNotNone(m, "no POD_INTERFACES in src/config.rs")
        self.assertEqual(re.findall(r'"([^"]+)"', m.group(1)), POD_INTERFACE_GLOBS)
        self.assertIn("(%s)" % ", ".join(POD_INTERFACE_GLOBS), text)
        # One capture per pod interface: the exporter's default bound holds
        # a node of MAX_PODS_PER_NODE pods, so the chart leaves it unset.
        self.assertIsNone(defaults["maxInterfaces"])
        help_text = subprocess.run([str(EXPORTER), "--help"], capture_output=True, text=True, check=True).stdout
        m = re.search(r"--max-interfaces <N>.*?\[default: (\d+)\]", help_text, re.S)
        self.assertIsNotNone(m, "no --max-interfaces default in tcp-exporter --help")
        self.assertGreaterEqual(int(m.group(1)), MAX_PODS_PER_NODE)

    def test_capture_modes_render_their_interfaces(self):
        # Each mode's -i; only pods mode adds its small buffer (pcap).
        cases = (
            ({"mode": "pods"}, POD_CAPTURE_ARGS, "pods"),
            ({"mode": "uplink"}, ["-i", "uplink"], "uplink"),
            ({"mode": "any"}, ["-i", "any"], "any"),
            ({"mode": "interfaces", "interfaces": ["eth0", "veth*", "uplink"]},
             ["-i", "eth0", "-i", "veth*", "-i", "uplink"], "eth0, -i veth*, -i uplink"),
        )
        for capture, interface_args, shown in cases:
            with self.subTest(capture=capture):
                r = render({"capture": capture})
                c = container(r.one("DaemonSet"))
                self.assertEqual(c["args"], interface_args + ["--port", "9090", "--listen", "0.0.0.0", "--kubernetes"])
                self.assertIn("Backend: pcap; capture: %s (-i %s)." % (capture["mode"], shown), r.notes)
        self.assertIn("Backend: pcap; capture: pods (-i pods).", self.default.notes)

    def test_pods_mode_gives_each_pod_interface_a_small_buffer(self):
        # A capture per pod: the buffers left unset are small in pods mode
        # only; a value set is rendered as it is.
        tail = ["--port", "9090", "--listen", "0.0.0.0"]
        cases = (
            ({"bufferSizeMiB": 4}, ["-i", "pods", "--buffer-size", "4"] + tail),
            ({"backend": "af-packet"},
             ["-i", "pods"] + tail + ["--backend", "af-packet", "--ring-blocks", "2", "--workers", "1"]),
            ({"backend": "af-packet", "afPacket": {"workers": 2}},
             ["-i", "pods"] + tail + ["--backend", "af-packet", "--ring-blocks", "2", "--workers", "2"]),
            ({"backend": "af-packet", "capture": {"mode": "uplink"}},
             ["-i", "uplink"] + tail + ["--backend", "af-packet"]),
            ({"backend": "xdp"},
             ["-i", "pods"] + tail + ["--backend", "xdp", "--xdp-mode", "auto", "--xdp-ring-size", "4"]),
            ({"backend": "xdp", "xdp": {"ringSizeMiB": 16}},
             ["-i", "pods"] + tail + ["--backend", "xdp", "--xdp-mode", "auto", "--xdp-ring-size", "16"]),
            ({"backend": "xdp", "capture": {"mode": "uplink"}},
             ["-i", "uplink"] + tail + ["--backend", "xdp", "--xdp-mode", "auto"]),
            # Globs of one's own are not pods mode.
            ({"capture": {"mode": "interfaces", "interfaces": ["cali*"]}}, ["-i", "cali*"] + tail),
        )
        for values, args in cases:
            with self.subTest(values=values):
                self.assertEqual(container(render(values).one("DaemonSet"))["args"], args + ["--kubernetes"])

    def test_the_older_interfaces_value_still_works(self):
        # A list that is not empty is capture.mode interfaces with that list.
        r = render({"interfaces": ["eth0", "veth*"]})
        self.assertEqual(container(r.one("DaemonSet"))["args"],
                         ["-i", "eth0", "-i", "veth*", "--port", "9090", "--listen", "0.0.0.0", "--kubernetes"])
        self.assertIn("The top-level `interfaces` value is the chart's older one", r.notes)
        self.assertNotIn("older one", self.default.notes)
        # Also where capture.mode interfaces has no list of its own.
        c = container(render({"interfaces": ["eth0"], "capture": {"mode": "interfaces"}}).one("DaemonSet"))
        self.assertEqual(c["args"][:2], ["-i", "eth0"])
        # Empty or null: not used.
        for interfaces in ([], None):
            with self.subTest(interfaces=interfaces):
                c = container(render({"interfaces": interfaces}).one("DaemonSet"))
                self.assertEqual(c["args"], DEFAULT_ARGS + ["--kubernetes"])

    def test_capture_settings_that_contradict_do_not_render(self):
        cases = (
            ({"capture": {"mode": "interfaces"}}, "capture.mode interfaces needs capture.interfaces"),
            ({"capture": {"mode": "interfaces", "interfaces": []}}, "capture.mode interfaces needs capture.interfaces"),
            ({"capture": {"interfaces": ["eth0"]}},
             "capture.interfaces is read only with capture.mode interfaces, and capture.mode is pods"),
            ({"capture": {"mode": "uplink", "interfaces": ["eth0"]}},
             "capture.interfaces is read only with capture.mode interfaces, and capture.mode is uplink"),
            ({"interfaces": ["eth0"], "capture": {"mode": "interfaces", "interfaces": ["eth1"]}},
             "interfaces and capture.interfaces are both set"),
            ({"interfaces": ["eth0"], "capture": {"mode": "any"}},
             "capture.mode any and the older top-level interfaces list are both set"),
            ({"interfaces": ["eth0"], "capture": {"mode": "uplink"}},
             "capture.mode uplink and the older top-level interfaces list are both set"),
        )
        for values, message in cases:
            with self.subTest(values=values):
                with self.assertRaises(helm.InstallError) as cm:
                    render(values)
                self.assertIn(message, str(cm.exception))

    # ------------------------------------------------------------ --kubernetes and its RBAC
    def assertReadOnlyClusterRole(self, r, subject):
        """The ClusterRole reads pods, services and nodes and nothing else, and
        is bound to `subject`, the pods' ServiceAccount in the release's
        namespace."""
        role = r.one("ClusterRole")
        self.assertEqual(role["metadata"]["name"], FULLNAME)
        self.assertNotIn("namespace", role["metadata"])
        # No aggregationRule: the rules below are all it grants.
        self.assertEqual(sorted(role), ["apiVersion", "kind", "metadata", "rules"])
        self.assertEqual(role["apiVersion"], "rbac.authorization.k8s.io/v1")

        def normalised(rules):
            return [{k: sorted(v) for k, v in rule.items()} for rule in rules]
        self.assertEqual(normalised(role["rules"]), normalised(KUBERNETES_RULES))
        binding = r.one("ClusterRoleBinding")
        self.assertEqual(binding["metadata"]["name"], FULLNAME)
        self.assertNotIn("namespace", binding["metadata"])
        self.assertEqual(binding["roleRef"], {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                              "name": FULLNAME})
        self.assertEqual(binding["subjects"], [{"kind": "ServiceAccount", "name": subject, "namespace": NAMESPACE}])
        # No other grant anywhere in the chart.
        self.assertEqual([k for k in r.kinds() if k in ("Role", "RoleBinding")], [])
        ds = r.one("DaemonSet")
        pod, c = ds["spec"]["template"]["spec"], container(ds)
        self.assertEqual(pod["serviceAccountName"], subject)
        self.assertIs(pod["automountServiceAccountToken"], True)
        self.assertEqual(c["args"].count("--kubernetes"), 1)
        self.assertIn({"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}, c["env"])
        self.assertIn("%s may get, list and watch\npods, services and nodes in every namespace" % subject, r.notes)

    def test_kubernetes_by_default_reads_pods_services_and_nodes_only(self):
        for name in ("default", "default with operator", "xdp-monitoring.yaml", "af-packet", "xdp minimal"):
            with self.subTest(render=name):
                r = self.renders[name]
                self.assertReadOnlyClusterRole(r, FULLNAME)
                sa = r.one("ServiceAccount")
                self.assertEqual(sa["metadata"]["name"], FULLNAME)
                self.assertEqual(sa["metadata"]["namespace"], NAMESPACE)
                # Only the exporter's pods ask for the token (their own
                # automountServiceAccountToken wins over the account's).
                self.assertIs(sa["automountServiceAccountToken"], False)

    def test_kubernetes_with_an_account_of_ones_own(self):
        r = self.own_service_account
        self.assertEqual(r.names("ServiceAccount"), [])
        self.assertReadOnlyClusterRole(r, "tcpx-reader")

    def test_istio_metrics_need_kubernetes(self):
        with self.assertRaises(helm.InstallError) as cm:
            render(dict(KUBERNETES_OFF, istio={"enabled": True}))
        self.assertIn("istio.enabled needs kubernetes.enabled", str(cm.exception))

    def test_kubernetes_never_binds_the_default_service_account(self):
        # Every pod of the namespace without an account of its own runs as
        # "default": the chart refuses to grant it the ClusterRole.
        with self.assertRaises(helm.InstallError) as cm:
            render({"serviceAccount": {"create": False}})
        self.assertIn(NO_SERVICE_ACCOUNT_NAME_MESSAGE, str(cm.exception))
        # Without --kubernetes it grants nothing, so "default" is fine (as before).
        ds = render(dict(KUBERNETES_OFF, serviceAccount={"create": False})).one("DaemonSet")
        self.assertEqual(ds["spec"]["template"]["spec"]["serviceAccountName"], "default")

    def test_kubernetes_disabled_grants_nothing_and_mounts_no_token(self):
        # null removes the block (Helm): the same as enabled: false.
        for name, r in (("enabled: false", self.kubernetes_off), ("null", render({"kubernetes": None}))):
            with self.subTest(kubernetes=name):
                self.assertEqual(r.kinds(), ["ConfigMap", "DaemonSet", "Service", "ServiceAccount"])
                ds = r.one("DaemonSet")
                pod, c = self.assertPodBasics(ds, kubernetes=False)
                self.assertEqual(c["args"], DEFAULT_ARGS)
                self.assertEqual(pod["serviceAccountName"], FULLNAME)
                self.assertNotIn("get, list and watch", r.notes)

    def test_kubernetes_labels_render_with_kubernetes_only(self):
        c = container(render({"labels": ["client_workload", "server_service", "server_port"]}).one("DaemonSet"))
        self.assertEqual(c["args"], DEFAULT_ARGS + ["--labels", "client_workload,server_service,server_port",
                                                    "--kubernetes"])
        c = container(render({"labels": KUBERNETES_LABELS}).one("DaemonSet"))
        self.assertEqual(c["args"], DEFAULT_ARGS + ["--labels", ",".join(KUBERNETES_LABELS), "--kubernetes"])
        # The exporter would refuse them without --kubernetes: the chart says why.
        for label in KUBERNETES_LABELS:
            with self.subTest(label=label):
                with self.assertRaises(helm.InstallError) as cm:
                    render(dict(KUBERNETES_OFF, labels=["interface", label]))
                self.assertIn("labels: %s comes from the cluster and needs kubernetes.enabled" % label,
                              str(cm.exception))

    # ------------------------------------------------------------ issue 7's flags
    def test_new_values_default_to_rendering_nothing(self):
        # Every new value is off or unset in values.yaml, so that the
        # exporter's own defaults apply: no flag, no volume, no ConfigMap but
        # the dashboard's, no checksum annotation.
        with open(CHART / "values.yaml") as f:
            defaults = yaml.safe_load(f)
        self.assertEqual({k: defaults[k] for k in ("seriesTTL", "aggregateCidr", "portNames", "longConnections",
                                                   "flowLog", "otlp", "webConfig")},
                         {"seriesTTL": None, "aggregateCidr": [], "portNames": {"presets": [], "custom": {}},
                          "longConnections": {"age": None, "max": None},
                          "flowLog": {"enabled": False, "interval": None},
                          "otlp": {"enabled": False, "endpoint": None, "protocol": "grpc", "interval": None,
                                   "timeout": None, "headers": {}, "logs": False, "logQueue": None,
                                   "tls": {"secret": "", "ca": "ca.crt", "clientCertificate": False}},
                          "webConfig": {"enabled": False, "config": {}, "existingSecret": "", "tlsSecret": ""}})
        for monitor in ("serviceMonitor", "podMonitor"):
            self.assertEqual({k: defaults[monitor][k] for k in ("tlsConfig", "basicAuth")},
                             {"tlsConfig": {}, "basicAuth": {}})
        for name, r in (("default", self.default), ("default with operator", self.default_operator)):
            with self.subTest(render=name):
                ds = r.one("DaemonSet")
                c = container(ds)
                self.assertEqual(c["args"], DEFAULT_ARGS + ["--kubernetes"])
                self.assertNotIn("volumeMounts", c)
                self.assertNotIn("volumes", ds["spec"]["template"]["spec"])
                self.assertEqual(sorted(ds["spec"]["template"]["metadata"]["annotations"]),
                                 ["prometheus.io/path", "prometheus.io/port", "prometheus.io/scrape"])
                self.assertEqual(r.names("ConfigMap"), [DASHBOARD_CONFIGMAP])
                self.assertEqual(r.names("Secret"), [])
                self.assertNotIn("OTLP", r.notes)

    def test_new_values_render_their_flags_in_order(self):
        # kubernetes.enabled is the default: --kubernetes follows --labels.
        cases = (
            ({"labels": ["ip_family", "port_name"]}, ["--labels", "ip_family,port_name", "--kubernetes"]),
            ({"seriesTTL": "90s"}, ["--kubernetes", "--series-ttl", "90s"]),
            ({"seriesTTL": "500ms"}, ["--kubernetes", "--series-ttl", "500ms"]),
            # A number is seconds, printed whole (not 500000.0 or 5e+05).
            ({"seriesTTL": 500000}, ["--kubernetes", "--series-ttl", "500000"]),
            ({"aggregateCidr": ["0.0.0.0/0=/24"]}, ["--kubernetes", "--aggregate-cidr", "0.0.0.0/0=/24"]),
            # One flag, the rules joined by commas, in the order given.
            ({"aggregateCidr": ["10.0.0.0/8=cluster", "0.0.0.0/0=/24", "::/0=/64", "client:0.0.0.0/0=/16",
                                "server:fd00::/8=service mesh"]},
             ["--kubernetes", "--aggregate-cidr",
              "10.0.0.0/8=cluster,0.0.0.0/0=/24,::/0=/64,client:0.0.0.0/0=/16,server:fd00::/8=service mesh"]),
            ({"portNames": {"presets": ["istio"]}}, ["--kubernetes", "--port-names", "istio"]),
            ({"portNames": {"custom": {80: "http"}}}, ["--kubernetes", "--port-names", PORT_NAMES_FILE]),
            # The file after the presets: a later source overrides an earlier one.
            ({"portNames": {"presets": ["istio"], "custom": {80: "http"}}},
             ["--kubernetes", "--port-names", "istio", "--port-names", PORT_NAMES_FILE]),
            ({"longConnections": {"age": "1h"}}, ["--kubernetes", "--long-connections", "1h"]),
            ({"longConnections": {"age": 3600, "max": 5000}},
             ["--kubernetes", "--long-connections", "3600", "--max-long-connections", "5000"]),
            # Without an age the feature is off: its bound is left out too.
            ({"longConnections": {"max": 5000}}, ["--kubernetes"]),
            ({"flowLog": {"enabled": True}}, ["--kubernetes", "--flow-log", "-"]),
            ({"flowLog": {"enabled": True, "interval": "1m"}},
             ["--kubernetes", "--flow-log", "-", "--flow-log-interval", "1m"]),
            ({"flowLog": {"enabled": True, "interval": "100ms"}},
             ["--kubernetes", "--flow-log", "-", "--flow-log-interval", "100ms"]),
            ({"flowLog": {"enabled": False, "interval": "1m"}}, ["--kubernetes"]),
            ({"connectionTable": {"enabled": False}}, ["--kubernetes", "--no-connection-table"]),
            ({"connectionTable": {"enabled": True}}, ["--kubernetes"]),
            ({"connectionTable": None}, ["--kubernetes"]),
            ({"istio": {"enabled": True}}, ["--kubernetes", "--istio-metrics"]),
            ({"istio": {"enabled": True, "clusterName": "east-1"}},
             ["--kubernetes", "--istio-metrics", "--cluster-name", "east-1"]),
            ({"istio": {"enabled": False, "clusterName": "east-1"}}, ["--kubernetes"]),
            # otlp: the endpoint, and the protocol unless it is null (values.yaml
            # sets grpc, the exporter's default).
            ({"otlp": {"enabled": True, "endpoint": "http://collector:4317"}},
             ["--kubernetes", "--otlp-endpoint", "http://collector:4317", "--otlp-protocol", "grpc"]),
            ({"otlp": {"enabled": True, "endpoint": "http://collector:4318", "protocol": "http"}},
             ["--kubernetes", "--otlp-endpoint", "http://collector:4318", "--otlp-protocol", "http"]),
            ({"otlp": {"enabled": True, "endpoint": "http://collector:4317", "protocol": None}},
             ["--kubernetes", "--otlp-endpoint", "http://collector:4317"]),
            ({"otlp": {"enabled": True, "endpoint": "http://collector:4317", "interval": "1m"}},
             ["--kubernetes", "--otlp-endpoint", "http://collector:4317", "--otlp-protocol", "grpc",
              "--otlp-interval", "1m"]),
            ({"otlp": {"enabled": True, "endpoint": "http://collector:4317", "interval": 15, "timeout": "500ms"}},
             ["--kubernetes", "--otlp-endpoint", "http://collector:4317", "--otlp-protocol", "grpc",
              "--otlp-interval", "15", "--otlp-timeout", "500ms"]),
            # A number is seconds, printed whole.
            ({"otlp": {"enabled": True, "endpoint": "http://collector:4317", "timeout": 600000}},
             ["--kubernetes", "--otlp-endpoint", "http://collector:4317", "--otlp-protocol", "grpc",
              "--otlp-timeout", "600000"]),
            # One --otlp-header each, sorted by name (byte order: upper case
            # first); the value is everything after the first "=".
            ({"otlp": {"enabled": True, "endpoint": "http://collector:4317",
                       "headers": {"x-b": "2", "X-A": "1", "authorization": 'Basic a2V5=="; \\ x'}}},
             ["--kubernetes", "--otlp-endpoint", "http://collector:4317", "--otlp-protocol", "grpc",
              "--otlp-header", "X-A=1", "--otlp-header", 'authorization=Basic a2V5=="; \\ x',
              "--otlp-header", "x-b=2"]),
            ({"otlp": {"enabled": True, "endpoint": "http://collector:4317", "headers": {}}},
             ["--kubernetes", "--otlp-endpoint", "http://collector:4317", "--otlp-protocol", "grpc"]),
            ({"otlp": {"enabled": True, "endpoint": "http://collector:4317", "logs": True}},
             ["--kubernetes", "--otlp-endpoint", "http://collector:4317", "--otlp-protocol", "grpc",
              "--otlp-logs"]),
            ({"otlp": {"enabled": True, "endpoint": "http://collector:4317", "logs": False}},
             ["--kubernetes", "--otlp-endpoint", "http://collector:4317", "--otlp-protocol", "grpc"]),
            # logQueue only with logs (the exporter wants --otlp-logs with it).
            ({"otlp": {"enabled": True, "endpoint": "http://collector:4317", "logs": True, "logQueue": 1}},
             ["--kubernetes", "--otlp-endpoint", "http://collector:4317", "--otlp-protocol", "grpc",
              "--otlp-logs", "--otlp-log-queue", "1"]),
            ({"otlp": {"enabled": True, "endpoint": "http://collector:4317", "logs": True, "logQueue": 1000000}},
             ["--kubernetes", "--otlp-endpoint", "http://collector:4317", "--otlp-protocol", "grpc",
              "--otlp-logs", "--otlp-log-queue", "1000000"]),
            ({"otlp": {"enabled": True, "endpoint": "http://collector:4317", "logQueue": 100}},
             ["--kubernetes", "--otlp-endpoint", "http://collector:4317", "--otlp-protocol", "grpc"]),
            # otlp.tls. https:// without a secret: the system's roots, no
            # flag; ca is read only with a secret.
            ({"otlp": {"enabled": True, "endpoint": OTLP_HTTPS_ENDPOINT}},
             ["--kubernetes", "--otlp-endpoint", OTLP_HTTPS_ENDPOINT, "--otlp-protocol", "grpc"]),
            ({"otlp": {"enabled": True, "endpoint": OTLP_HTTPS_ENDPOINT, "tls": {"ca": "receiver-ca.pem"}}},
             ["--kubernetes", "--otlp-endpoint", OTLP_HTTPS_ENDPOINT, "--otlp-protocol", "grpc"]),
            ({"otlp": {"enabled": True, "endpoint": OTLP_HTTPS_ENDPOINT, "tls": None}},
             ["--kubernetes", "--otlp-endpoint", OTLP_HTTPS_ENDPOINT, "--otlp-protocol", "grpc"]),
            # A secret: its ca.crt (the default key) checks the receiver.
            ({"otlp": {"enabled": True, "endpoint": OTLP_HTTPS_ENDPOINT, "tls": {"secret": OTLP_TLS_SECRET}}},
             ["--kubernetes", "--otlp-endpoint", OTLP_HTTPS_ENDPOINT, "--otlp-protocol", "grpc",
              "--otlp-ca", OTLP_TLS_DIR + "/ca.crt"]),
            ({"otlp": {"enabled": True, "endpoint": OTLP_HTTPS_ENDPOINT,
                       "tls": {"secret": OTLP_TLS_SECRET, "ca": "receiver-ca.pem"}}},
             ["--kubernetes", "--otlp-endpoint", OTLP_HTTPS_ENDPOINT, "--otlp-protocol", "grpc",
              "--otlp-ca", OTLP_TLS_DIR + "/receiver-ca.pem"]),
            # With the client certificate: the Secret's tls.crt and tls.key.
            (OTLP_TLS_VALUES, ["--kubernetes"] + OTLP_TLS_ARGS),
            # ca "": the system's roots check the receiver; the Secret gives
            # the client certificate only.
            ({"otlp": {"enabled": True, "endpoint": OTLP_HTTPS_ENDPOINT,
                       "tls": {"secret": OTLP_TLS_SECRET, "ca": "", "clientCertificate": True}}},
             ["--kubernetes", "--otlp-endpoint", OTLP_HTTPS_ENDPOINT, "--otlp-protocol", "grpc",
              "--otlp-cert", OTLP_TLS_DIR + "/tls.crt", "--otlp-key", OTLP_TLS_DIR + "/tls.key"]),
            # After the other --otlp-* flags, before the flags that follow them.
            ({"otlp": {"enabled": True, "endpoint": "https://c:4318", "protocol": "http", "headers": {"X-A": "1"},
                       "logs": True, "tls": {"secret": OTLP_TLS_SECRET, "clientCertificate": True}},
              "snaplen": 128},
             ["--kubernetes", "--otlp-endpoint", "https://c:4318", "--otlp-protocol", "http",
              "--otlp-header", "X-A=1", "--otlp-logs", "--otlp-ca", OTLP_TLS_DIR + "/ca.crt",
              "--otlp-cert", OTLP_TLS_DIR + "/tls.crt", "--otlp-key", OTLP_TLS_DIR + "/tls.key",
              "--snaplen", "128"]),
            # Off: nothing, whatever else is set.
            (dict(OTLP_VALUES, otlp=dict(OTLP_VALUES["otlp"], enabled=False)), ["--kubernetes"]),
            ({"otlp": {"endpoint": "http://collector:4317"}}, ["--kubernetes"]),
            ({"otlp": dict(OTLP_TLS_VALUES["otlp"], enabled=False)}, ["--kubernetes"]),
            # Empty and null are the exporter's defaults (null removes the
            # chart's defaults; the templates must not trip over that).
            ({"aggregateCidr": [], "portNames": {"presets": [], "custom": {}}}, ["--kubernetes"]),
            ({"seriesTTL": None, "aggregateCidr": None, "portNames": None, "longConnections": None,
              "flowLog": None, "otlp": None, "webConfig": None}, ["--kubernetes"]),
            # All of them, between the flags that were there before.
            ({"maxSeries": 2000, "seriesTTL": "5m", "aggregateCidr": ["::/0=/64"],
              "portNames": {"presets": ["istio"], "custom": {8080: "web"}},
              "longConnections": {"age": "30m", "max": 100}, "flowLog": {"enabled": True, "interval": 10},
              "otlp": OTLP_VALUES["otlp"], "snaplen": 128, "promisc": True},
             ["--kubernetes", "--max-series", "2000", "--series-ttl", "5m", "--aggregate-cidr", "::/0=/64",
              "--port-names", "istio", "--port-names", PORT_NAMES_FILE,
              "--long-connections", "30m", "--max-long-connections", "100",
              "--flow-log", "-", "--flow-log-interval", "10"] + OTLP_ARGS + [
              "--snaplen", "128", "--promisc"]),
        )
        for values, flags in cases:
            with self.subTest(values=values):
                c = container(render(values).one("DaemonSet"))
                self.assertEqual(c["args"], DEFAULT_ARGS + flags)

    def test_custom_port_names_are_a_configmap_mounted_read_only(self):
        ds = self.xdp.one("DaemonSet")
        pod, c = ds["spec"]["template"]["spec"], container(ds)
        cm = self.xdp.one("ConfigMap", PORT_NAMES_CONFIGMAP)
        self.assertEqual(cm["metadata"]["namespace"], NAMESPACE)
        self.assertEqual(list(cm["data"]), ["port-names.yaml"])
        # The file holds the values' map. toYaml writes the ports as quoted
        # keys (Helm's values have string keys), which the exporter reads as
        # port numbers: 8080 gets its name.
        text = cm["data"]["port-names.yaml"]
        self.assertEqual(yaml.safe_load(text), port_keys_as_strings(xdp_values()["portNames"]["custom"]))
        self.assertEqual(exporter_reads_port_names(text), (0, "", {"web"}))
        # (The other volume is webConfig's.)
        self.assertEqual([v for v in pod["volumes"] if v["name"] == "port-names"],
                         [{"name": "port-names", "configMap": {"name": PORT_NAMES_CONFIGMAP}}])
        mounts = [m for m in c["volumeMounts"] if m["name"] == "port-names"]
        self.assertEqual(mounts, [{"name": "port-names", "mountPath": PORT_NAMES_DIR, "readOnly": True}])
        # The flag names that key under that mount, after the preset.
        path = mounts[0]["mountPath"] + "/" + list(cm["data"])[0]
        i = c["args"].index(path)
        self.assertEqual(c["args"][i - 3:i + 1], ["--port-names", "istio", "--port-names", path])
        self.assertIs(c["securityContext"]["readOnlyRootFilesystem"], True)
        self.assertRegex(ds["spec"]["template"]["metadata"]["annotations"]["checksum/port-names"], r"^[0-9a-f]{64}$")

    def port_names_file(self, values):
        return render(values).one("ConfigMap", PORT_NAMES_CONFIGMAP)["data"]["port-names.yaml"]

    def test_port_names_file_keeps_names_that_look_like_other_yaml(self):
        # Names that YAML would read as booleans, numbers, nulls, mappings,
        # comments or sequences if written bare, quotes and backslashes, and
        # the bounds: ports 1 and 65535, names of 64 bytes.
        custom = {1: "yes", 80: "123", 443: "null", 8080: "a: b #c", 8443: 'say "hi"', 9000: "x" * 64,
                  9001: "é" * 32, 9090: "ünïcode", 9443: "it's", 10000: "C:\\path", 15000: "it's \"x\"",
                  65535: "- item"}
        text = self.port_names_file({"portNames": {"custom": custom}})
        self.assertEqual(yaml.safe_load(text), port_keys_as_strings(custom))
        self.assertEqual(exporter_reads_port_names(text), (0, "", {"a: b #c"}))

    def test_port_names_longer_than_64_bytes_do_not_render(self):
        # The schema counts characters; the exporter takes 64 bytes.
        with self.assertRaises(helm.InstallError) as cm:
            render({"portNames": {"custom": {8080: "é" * 33}}})
        self.assertIn("portNames.custom: the name of port 8080 is 66 bytes long", str(cm.exception))

    def test_a_change_of_port_names_rolls_the_daemonset(self):
        def annotations(values):
            return render(values).one("DaemonSet")["spec"]["template"]["metadata"]["annotations"]

        def checksum(custom):
            return annotations({"portNames": {"custom": custom}})["checksum/port-names"]

        first = checksum({80: "http", 443: "https"})
        self.assertEqual(checksum({443: "https", 80: "http"}), first)
        self.assertNotEqual(checksum({80: "http", 443: "tls"}), first)
        self.assertNotEqual(checksum({80: "http", 443: "https", 8080: "web"}), first)
        # Also when the pods carry no other annotation.
        self.assertEqual(annotations({"scrapeAnnotations": False, "portNames": {"custom": {80: "http", 443: "https"}}}),
                         {"checksum/port-names": first})

    def test_every_flag_the_chart_renders_is_one_the_exporter_has(self):
        # Catches a flag renamed in the CLI but not in the chart.
        help_text = subprocess.run([str(EXPORTER), "--help"], capture_output=True, text=True, check=True).stdout
        flags = set(re.findall(r"(?m)^\s+(?:-\w, )?(--[a-z][a-z0-9.-]*)", help_text))
        self.assertIn("--web.config.file", flags)
        self.assertIn("--interface", flags)
        flags.add("-i")
        rendered = set()
        for r in (self.xdp, self.af_packet, self.otlp, self.otlp_tls):
            args = container(r.one("DaemonSet"))["args"]
            # Not "-" (--flow-log's value: standard output).
            rendered |= {a for a in args if re.match(r"--?[a-z]", a) and a not in xdp_values()["extraArgs"]}
        self.assertLessEqual(rendered - PENDING_FLAGS, flags)
        # The renders above exercise every pending flag, so each is checked
        # here once PENDING_FLAGS no longer lists it.
        self.assertLessEqual(PENDING_FLAGS, rendered, "a pending flag that neither render has")
        m = re.search(r"--backend.*?\[possible values: ([^\]]+)\]", help_text, re.S)
        self.assertIsNotNone(m, "no --backend in tcp-exporter --help")
        backends = set(m.group(1).replace(" ", "").split(","))
        with open(CHART / "values.schema.json") as f:
            schema_backends = set(json.load(f)["properties"]["backend"]["enum"])
        self.assertLessEqual(backends, schema_backends, "a backend the chart does not offer")
        self.assertLessEqual(schema_backends - backends, PENDING_BACKENDS)
        # The labels the schema takes are the exporter's, those of
        # --kubernetes included.
        m = re.search(r"--labels <LIST>\s+(.*?)\n\s*\n", help_text, re.S)
        self.assertIsNotNone(m, "no --labels in tcp-exporter --help")
        with open(CHART / "values.schema.json") as f:
            schema_labels = set(json.load(f)["properties"]["labels"]["items"]["enum"])
        # A label the help text does not list (reporter: issue 15) must be
        # one the exporter takes: it prints a file's metrics with it.
        for label in sorted(schema_labels - set(re.findall(r"\b[a-z]+(?:_[a-z]+)*\b", m.group(1)))):
            with self.subTest(label=label):
                self.assertNotIn(label, KUBERNETES_LABELS)
                r = subprocess.run([str(EXPORTER), "-r", str(SMALL_CAPTURE), "--print", "--labels", label],
                                   capture_output=True, text=True)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertIn('%s="' % label, r.stdout)
        self.assertLessEqual(set(KUBERNETES_LABELS), schema_labels)

    # ------------------------------------------------------------ otlp: metrics over OTLP
    def test_otlp_renders_every_value_and_the_exporter_takes_them(self):
        c = container(self.otlp.one("DaemonSet"))
        self.assertEqual(c["args"], DEFAULT_ARGS + ["--kubernetes"] + OTLP_ARGS)
        self.assertEqual(exporter_takes_args(OTLP_ARGS), (0, ""))
        # And the fewest: the endpoint, with values.yaml's protocol.
        c = container(render({"otlp": {"enabled": True, "endpoint": "http://127.0.0.1:4317"}}).one("DaemonSet"))
        otlp_args = c["args"][c["args"].index("--otlp-endpoint"):]
        self.assertEqual(otlp_args, ["--otlp-endpoint", "http://127.0.0.1:4317", "--otlp-protocol", "grpc"])
        self.assertEqual(exporter_takes_args(otlp_args), (0, ""))
        self.assertIn("OTLP (--otlp-endpoint): every exporter also sends its metrics to %s over OTLP/HTTP."
                      % OTLP_ENDPOINT, self.otlp.notes)
        self.assertIn('tcp_exporter_otlp_exports_total{result="failed"}', self.otlp.notes)
        # The resource's k8s.node.name comes from NODE_NAME.
        self.assertIn({"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}, c["env"])

    def test_otlp_endpoint_reaches_a_collector_on_the_node_through_pod_ip(self):
        # No HOST_IP env: on the host network status.podIP is the node's
        # address, which status.hostIP would give, and POD_IP is set from it.
        r = render({"otlp": {"enabled": True, "endpoint": OTLP_NODE_ENDPOINT}})
        ds = r.one("DaemonSet")
        pod, c = self.assertPodBasics(ds)
        self.assertEqual(c["args"], DEFAULT_ARGS + ["--kubernetes", "--otlp-endpoint", OTLP_NODE_ENDPOINT,
                                                    "--otlp-protocol", "grpc"])
        self.assertIn({"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}, c["env"])
        self.assertIn("($(POD_IP): each node's own address)", r.notes)
        # What the exporter gets once Kubernetes has expanded it.
        self.assertEqual(exporter_takes_args(["--otlp-endpoint", OTLP_NODE_ENDPOINT.replace("$(POD_IP)", "10.0.0.7")]),
                         (0, ""))
        self.assertEqual(exporter_takes_args(["--otlp-endpoint", OTLP_NODE_ENDPOINT.replace("$(POD_IP)", "[fd00::7]")]),
                         (0, ""))

    def test_otlp_that_cannot_work_does_not_render(self):
        cases = (
            ({"enabled": True}, OTLP_NO_ENDPOINT_MESSAGE),
            ({"enabled": True, "endpoint": None}, OTLP_NO_ENDPOINT_MESSAGE),
            ({"enabled": True, "endpoint": None, "headers": {"X-A": "1"}}, OTLP_NO_ENDPOINT_MESSAGE),
            # otlp.tls with http://: the exporter refuses --otlp-ca,
            # --otlp-cert and --otlp-key without TLS.
            ({"enabled": True, "endpoint": "http://collector:4317", "tls": {"secret": OTLP_TLS_SECRET}},
             OTLP_TLS_HTTP_MESSAGE + ", and otlp.endpoint is http://collector:4317"),
            ({"enabled": True, "endpoint": "http://collector:4317",
              "tls": {"secret": OTLP_TLS_SECRET, "clientCertificate": True}}, OTLP_TLS_HTTP_MESSAGE),
            ({"enabled": True, "endpoint": "http://collector:4317", "tls": {"clientCertificate": True}},
             OTLP_TLS_HTTP_MESSAGE),
            ({"enabled": True, "endpoint": OTLP_NODE_ENDPOINT, "tls": {"secret": OTLP_TLS_SECRET}},
             OTLP_TLS_HTTP_MESSAGE),
            # A client certificate needs the Secret that holds it.
            ({"enabled": True, "endpoint": OTLP_HTTPS_ENDPOINT, "tls": {"clientCertificate": True}},
             "otlp.tls.clientCertificate needs otlp.tls.secret"),
            ({"enabled": True, "endpoint": OTLP_HTTPS_ENDPOINT, "tls": {"ca": "", "clientCertificate": True}},
             "otlp.tls.clientCertificate needs otlp.tls.secret"),
            # A Secret of which nothing would be read.
            ({"enabled": True, "endpoint": OTLP_HTTPS_ENDPOINT, "tls": {"secret": OTLP_TLS_SECRET, "ca": ""}},
             "otlp.tls.secret otlp-client would be mounted but nothing in it read"),
            # Binary gRPC metadata: the exporter's gRPC client refuses the
            # name at every export.
            ({"enabled": True, "endpoint": "http://collector:4317", "headers": {"trace-bin": "x"}},
             "otlp.headers: trace-bin names a binary gRPC header"),
            ({"enabled": True, "endpoint": "http://collector:4317", "protocol": None, "headers": {"Trace-BIN": "x"}},
             "otlp.headers: Trace-BIN names a binary gRPC header"),
        )
        for otlp, message in cases:
            with self.subTest(otlp=otlp):
                with self.assertRaises(helm.InstallError) as cm:
                    render({"otlp": otlp})
                self.assertIn(message, str(cm.exception))
        # (test_otlp_tls_args_are_files_the_exporter_reads: the exporter
        # refuses the TLS files with http:// too.)
        # Nothing is read of tls while otlp is off, nor of ca without a secret.
        for otlp in ({"enabled": False, "endpoint": "http://collector:4317",
                      "tls": {"secret": OTLP_TLS_SECRET, "clientCertificate": True}},
                     {"enabled": True, "endpoint": "http://collector:4317", "tls": {"ca": "receiver-ca.pem"}}):
            with self.subTest(otlp=otlp):
                self.assertNotIn("--otlp-ca", container(render({"otlp": otlp}).one("DaemonSet"))["args"])
        # Over OTLP/HTTP such a name is an ordinary header.
        c = container(render({"otlp": {"enabled": True, "endpoint": "http://collector:4318", "protocol": "http",
                                       "headers": {"trace-bin": "x"}}}).one("DaemonSet"))
        self.assertEqual(c["args"][-2:], ["--otlp-header", "trace-bin=x"])

    def otlp_tls_volume(self, ds):
        pod, c = ds["spec"]["template"]["spec"], container(ds)
        volumes = [v for v in pod.get("volumes", []) if v["name"] == "otlp-tls"]
        mounts = [m for m in c.get("volumeMounts", []) if m["name"] == "otlp-tls"]
        return volumes, mounts

    def test_otlp_tls_secret_is_mounted_read_only_as_a_whole(self):
        ds = self.otlp_tls.one("DaemonSet")
        c = container(ds)
        volumes, mounts = self.otlp_tls_volume(ds)
        # The Secret whole (no items, no subPath): pods that start again
        # read its current files, a renewed certificate included.
        self.assertEqual(volumes, [{"name": "otlp-tls", "secret": {"secretName": OTLP_TLS_SECRET,
                                                                   "defaultMode": 0o400}}])
        self.assertEqual(mounts, [{"name": "otlp-tls", "mountPath": OTLP_TLS_DIR, "readOnly": True}])
        # Every file the flags name is in that folder.
        for flag in ("--otlp-ca", "--otlp-cert", "--otlp-key"):
            with self.subTest(flag=flag):
                self.assertEqual(os.path.dirname(c["args"][c["args"].index(flag) + 1]), mounts[0]["mountPath"])
        # Not inside another volume's mount (the port names' ConfigMap is
        # mounted read-only at /etc/tcp-exporter).
        for other in (PORT_NAMES_DIR, WEB_CONFIG_DIR):
            self.assertFalse((OTLP_TLS_DIR + "/").startswith(other + "/"), other)
        # 0400 as Helm sent it to the API server (YAML's octal, not 400).
        [sent] = [json.loads(body) for method, path, body in self.otlp_tls.sent
                  if method == "POST" and path.endswith("/daemonsets")]
        [secret] = [v["secret"] for v in sent["spec"]["template"]["spec"]["volumes"] if v["name"] == "otlp-tls"]
        self.assertEqual(secret["defaultMode"], 256)
        # The chart renders no Secret of its own for it, and no checksum: it
        # does not read the Secret.
        self.assertEqual(self.otlp_tls.names("Secret"), [])
        self.assertEqual(sorted(ds["spec"]["template"]["metadata"]["annotations"]),
                         ["prometheus.io/path", "prometheus.io/port", "prometheus.io/scrape"])
        self.assertIn("TLS: the receiver's certificate is checked against ca.crt of Secret otlp-client; the client "
                      "certificate is tls.crt and tls.key of Secret otlp-client.", self.otlp_tls.notes)
        self.assertIn("rollout restart daemonset/%s" % FULLNAME, self.otlp_tls.notes)
        # Beside the port names' and the web config's volumes.
        r = render(deep_merge(xdp_values(), OTLP_TLS_VALUES), monitoring_crds=True)
        ds = r.one("DaemonSet")
        self.assertEqual([v["name"] for v in ds["spec"]["template"]["spec"]["volumes"]],
                         ["port-names", "web-config", "otlp-tls"])
        self.assertEqual([m["name"] for m in container(ds)["volumeMounts"]], ["port-names", "web-config", "otlp-tls"])
        self.assertEqual(self.otlp_tls_volume(ds), (volumes, mounts))

    def test_otlp_without_a_tls_secret_mounts_nothing(self):
        https = render({"otlp": {"enabled": True, "endpoint": OTLP_HTTPS_ENDPOINT}})
        self.assertIn("TLS: the receiver's certificate is checked against the system's roots.", https.notes)
        self.assertNotIn("rollout restart", https.notes)
        self.assertNotIn("TLS:", self.otlp.notes)
        for name, r in (("http", self.otlp), ("https, the system's roots", https),
                        ("https, ca without a secret",
                         render({"otlp": {"enabled": True, "endpoint": OTLP_HTTPS_ENDPOINT, "tls": {"ca": "ca.pem"}}})),
                        ("otlp off", render({"otlp": dict(OTLP_TLS_VALUES["otlp"], enabled=False)}))):
            with self.subTest(render=name):
                ds = r.one("DaemonSet")
                self.assertNotIn("volumes", ds["spec"]["template"]["spec"])
                self.assertNotIn("volumeMounts", container(ds))

    def test_otlp_tls_args_are_files_the_exporter_reads(self):
        """The --otlp-* args the chart renders, given to the exporter with
        the Secret laid out as the kubelet lays out its volume (certificates
        made by openssl, as cert-manager's kubernetes.io/tls Secret holds
        them): the exporter reads and checks the files at start."""
        cases = (
            ("ca and client certificate", OTLP_TLS_VALUES["otlp"]["tls"]),
            ("ca", {"secret": OTLP_TLS_SECRET}),
            ("ca of another key", {"secret": OTLP_TLS_SECRET, "ca": "receiver-ca.pem"}),
            ("client certificate, the system's roots", {"secret": OTLP_TLS_SECRET, "ca": "",
                                                         "clientCertificate": True}),
        )
        with tempfile.TemporaryDirectory(prefix="tcp-exporter-chart-otlp-tls-") as tmp:
            ca_dir, client_dir, volume_dir, no_ca_dir = (os.path.join(tmp, d)
                                                         for d in ("ca", "client", "volume", "no-ca"))
            for d in (ca_dir, client_dir, volume_dir, no_ca_dir):
                os.mkdir(d)
            make_ca(ca_dir)
            make_server_certificate(client_dir, ca_dir)

            def read(path):
                with open(path, "rb") as f:
                    return f.read()

            client = {"tls.crt": read(os.path.join(client_dir, "tls.crt")),
                      "tls.key": read(os.path.join(client_dir, "tls.key"))}
            ca = read(os.path.join(ca_dir, "ca.crt"))
            ProjectedVolume(volume_dir).publish({"ca.crt": ca, "receiver-ca.pem": ca, **client})
            # As an ACME issuer's Secret: no ca.crt.
            ProjectedVolume(no_ca_dir).publish(client)

            def otlp_args(tls, directory):
                c = container(render({"otlp": dict(OTLP_TLS_VALUES["otlp"], tls=tls)}).one("DaemonSet"))
                args = c["args"][c["args"].index("--otlp-endpoint"):]
                return [a.replace(OTLP_TLS_DIR + "/", directory + "/") for a in args]

            for name, tls in cases:
                with self.subTest(secret=name):
                    args = otlp_args(tls, volume_dir)
                    self.assertIn(volume_dir + "/", " ".join(args))
                    self.assertEqual(exporter_takes_args(args), (0, ""))
            # A key the Secret lacks stops the exporter at start, naming the file.
            status, stderr = exporter_takes_args(otlp_args(OTLP_TLS_VALUES["otlp"]["tls"], no_ca_dir))
            self.assertNotEqual(status, 0)
            self.assertIn("--otlp-ca %s/ca.crt: No such file or directory" % no_ca_dir, stderr)
            # With http:// the exporter refuses the files: the chart refuses
            # otlp.tls.secret with it (test_otlp_that_cannot_work_does_not_render).
            args = otlp_args(OTLP_TLS_VALUES["otlp"]["tls"], volume_dir)
            args[1] = "http://otel-collector.monitoring.svc:4317"
            status, stderr = exporter_takes_args(args)
            self.assertNotEqual(status, 0)
            self.assertIn("--otlp-ca, --otlp-cert and --otlp-key are for an https:// endpoint", stderr)
        # Without a secret: https:// with the system's roots.
        c = container(render({"otlp": {"enabled": True, "endpoint": OTLP_HTTPS_ENDPOINT}}).one("DaemonSet"))
        self.assertEqual(exporter_takes_args(c["args"][c["args"].index("--otlp-endpoint"):]), (0, ""))

    # ------------------------------------------------------------ webConfig: HTTPS and basic auth
    def web_volume(self, ds):
        pod, c = ds["spec"]["template"]["spec"], container(ds)
        volumes = [v for v in pod.get("volumes", []) if v["name"] == "web-config"]
        mounts = [m for m in c.get("volumeMounts", []) if m["name"] == "web-config"]
        return volumes, mounts

    def test_web_config_is_a_secret_mounted_with_the_tls_secret(self):
        ds = self.xdp.one("DaemonSet")
        values = xdp_values()["webConfig"]
        secret = self.xdp.one("Secret", WEB_CONFIG_SECRET)
        self.assertEqual(secret["metadata"]["namespace"], NAMESPACE)
        self.assertEqual(secret["type"], "Opaque")
        self.assertEqual(list(secret["data"]), ["web-config.yml"])
        # The values' config, with the TLS Secret's files filled in (named
        # relative to the file's folder, where they are mounted).
        expected = copy.deepcopy(values["config"])
        expected["tls_server_config"].update({"cert_file": "tls.crt", "key_file": "tls.key"})
        text = web_config_text(self.xdp)
        self.assertEqual(yaml.safe_load(text), expected)
        self.assertEqual(exporter_reads_web_config(text), (0, ""))
        # One folder: the config Secret and the TLS Secret, whole (no
        # subPath, no items), so that updates to either reach the pod.
        volumes, mounts = self.web_volume(ds)
        self.assertEqual(volumes, [{"name": "web-config", "projected": {
            "defaultMode": 0o400,
            "sources": [{"secret": {"name": WEB_CONFIG_SECRET}}, {"secret": {"name": values["tlsSecret"]}}]}}])
        self.assertEqual(mounts, [{"name": "web-config", "mountPath": WEB_CONFIG_DIR, "readOnly": True}])
        self.assertEqual(WEB_CONFIG_FILE, mounts[0]["mountPath"] + "/" + list(secret["data"])[0])
        # 0400 as Helm sent it to the API server (YAML's octal, not 400).
        sent = [json.loads(body) for method, path, body in self.xdp.sent
                if method == "POST" and path.endswith("/daemonsets")]
        self.assertEqual(len(sent), 1)
        [projected] = [v["projected"] for v in sent[0]["spec"]["template"]["spec"]["volumes"]
                       if v["name"] == "web-config"]
        self.assertEqual(projected["defaultMode"], 256)
        annotations = ds["spec"]["template"]["metadata"]["annotations"]
        self.assertRegex(annotations["checksum/web-config"], r"^[0-9a-f]{64}$")
        self.assertEqual(annotations["prometheus.io/scheme"], "https")

    def test_with_a_tls_secret_probes_and_scrapes_use_https(self):
        # The probes: assertPodBasics in test_xdp_daemonset_carries_every_value.
        for kind, endpoints, key in (("ServiceMonitor", "endpoints", "serviceMonitor"),
                                     ("PodMonitor", "podMetricsEndpoints", "podMonitor")):
            with self.subTest(kind=kind):
                [ep] = self.xdp.one(kind)["spec"][endpoints]
                self.assertEqual(ep["scheme"], "https")
                self.assertEqual(ep["tlsConfig"], xdp_values()[key]["tlsConfig"])
                self.assertEqual(ep["basicAuth"], SCRAPE_BASIC_AUTH)
        # Without webConfig: plain HTTP, nothing else.
        ds = self.default_operator.one("DaemonSet")
        self.assertPodBasics(ds)
        self.assertNotIn("prometheus.io/scheme", ds["spec"]["template"]["metadata"]["annotations"])
        [ep] = self.default_operator.one("ServiceMonitor")["spec"]["endpoints"]
        self.assertEqual(ep["scheme"], "http")
        self.assertNotIn("tlsConfig", ep)
        self.assertNotIn("basicAuth", ep)

    def test_a_tls_secret_alone_is_enough_for_https(self):
        r = render({"webConfig": {"enabled": True, "tlsSecret": "node-tls"}}, monitoring_crds=True)
        ds = r.one("DaemonSet")
        self.assertPodBasics(ds, scheme="HTTPS")
        self.assertEqual(container(ds)["args"], DEFAULT_ARGS + ["--web.config.file", WEB_CONFIG_FILE, "--kubernetes"])
        text = web_config_text(r)
        self.assertEqual(yaml.safe_load(text), {"tls_server_config": {"cert_file": "tls.crt", "key_file": "tls.key"}})
        self.assertEqual(exporter_reads_web_config(text), (0, ""))
        [ep] = r.one("ServiceMonitor")["spec"]["endpoints"]
        self.assertEqual(ep["scheme"], "https")
        # Empty tlsConfig: Prometheus's defaults; no basicAuth asked for.
        self.assertNotIn("tlsConfig", ep)
        self.assertNotIn("basicAuth", ep)
        self.assertIn("https://<node-ip>:9090/metrics", r.notes)
        self.assertIn("curl -sk https://", r.notes)

    def test_a_tls_secret_fills_in_only_the_file_names_the_config_leaves_out(self):
        # The chart's names are merged under the config's, not over them.
        r = render({"webConfig": {"enabled": True, "tlsSecret": "node-tls",
                                  "config": {"tls_server_config": {"cert_file": "chain.pem"}}}})
        self.assertEqual(yaml.safe_load(web_config_text(r)),
                         {"tls_server_config": {"cert_file": "chain.pem", "key_file": "tls.key"}})

    def test_basic_auth_without_tls_stays_http(self):
        users = {"prometheus": xdp_values()["webConfig"]["config"]["basic_auth_users"]["prometheus"]}
        r = render({"webConfig": {"enabled": True, "config": {"basic_auth_users": users}},
                    "serviceMonitor": {"basicAuth": SCRAPE_BASIC_AUTH, "tlsConfig": {"insecureSkipVerify": True}}},
                   monitoring_crds=True)
        ds = r.one("DaemonSet")
        self.assertPodBasics(ds)
        self.assertEqual(yaml.safe_load(web_config_text(r)), {"basic_auth_users": users})
        volumes, _ = self.web_volume(ds)
        self.assertEqual(volumes[0]["projected"]["sources"], [{"secret": {"name": WEB_CONFIG_SECRET}}])
        [ep] = r.one("ServiceMonitor")["spec"]["endpoints"]
        self.assertEqual(ep["scheme"], "http")
        self.assertEqual(ep["basicAuth"], SCRAPE_BASIC_AUTH)
        # A TLS config for an HTTP scrape means nothing: not rendered.
        self.assertNotIn("tlsConfig", ep)
        self.assertIn("curl -s -u USER:PASSWORD http://", r.notes)

    def test_an_existing_secret_is_mounted_as_it_is(self):
        for tls_secret, scheme in (("node-tls", "HTTPS"), ("", None)):
            with self.subTest(tlsSecret=tls_secret):
                r = render({"webConfig": {"enabled": True, "existingSecret": "my-web-config",
                                          "tlsSecret": tls_secret}})
                ds = r.one("DaemonSet")
                self.assertPodBasics(ds, scheme=scheme)
                self.assertEqual(r.names("Secret"), [])
                self.assertEqual(container(ds)["args"],
                                 DEFAULT_ARGS + ["--web.config.file", WEB_CONFIG_FILE, "--kubernetes"])
                volumes, mounts = self.web_volume(ds)
                sources = [{"secret": {"name": "my-web-config"}}]
                if tls_secret:
                    sources.append({"secret": {"name": tls_secret}})
                self.assertEqual(volumes[0]["projected"]["sources"], sources)
                self.assertEqual(mounts, [{"name": "web-config", "mountPath": WEB_CONFIG_DIR, "readOnly": True}])
                # The chart cannot see that Secret: no checksum of it.
                self.assertNotIn("checksum/web-config", ds["spec"]["template"]["metadata"]["annotations"])

    def test_web_config_renders_nothing_unless_enabled(self):
        r = render({"webConfig": {"enabled": False, "tlsSecret": "node-tls",
                                  "config": {"basic_auth_users": {"a": xdp_values()["webConfig"]["config"][
                                      "basic_auth_users"]["prometheus"]}}},
                    "serviceMonitor": {"basicAuth": SCRAPE_BASIC_AUTH, "tlsConfig": {"insecureSkipVerify": True}}},
                   monitoring_crds=True)
        ds = r.one("DaemonSet")
        self.assertPodBasics(ds)
        self.assertEqual(container(ds)["args"], DEFAULT_ARGS + ["--kubernetes"])
        self.assertNotIn("volumes", ds["spec"]["template"]["spec"])
        self.assertEqual(r.names("Secret"), [])
        [ep] = r.one("ServiceMonitor")["spec"]["endpoints"]
        self.assertEqual(ep["scheme"], "http")
        self.assertNotIn("basicAuth", ep)
        self.assertNotIn("tlsConfig", ep)

    def test_web_config_file_keeps_names_and_values_that_look_like_other_yaml(self):
        # User names and header values that YAML (or the exporter's subset of
        # it) would read otherwise if written bare.
        bcrypt = xdp_values()["webConfig"]["config"]["basic_auth_users"]["prometheus"]
        # (No colon in a user name: the schema refuses it, see below.)
        users = {name: bcrypt for name in ("yes", "null", "123", "- item", "a #b", "it's", 'say "hi"', "[x]",
                                           "{y}", "*alias", "&anchor", "!tag", "|", ">", "C\\path", "ünïcode")}
        headers = {"Content-Security-Policy": "default-src 'self'; img-src * data: # x",
                   "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
                   "X-Frame-Options": "'deny'", "X-XSS-Protection": '1; mode="block"',
                   "X-Content-Type-Options": "- [nosniff] {x} \\"}
        config = {"basic_auth_users": users, "http_server_config": {"headers": headers},
                  "tls_server_config": {"min_version": "TLS13", "client_auth_type": "VerifyClientCertIfGiven",
                                        "client_ca_file": "client CA's #1.crt"}}
        text = web_config_text(render({"webConfig": {"enabled": True, "config": config, "tlsSecret": "t"}}))
        expected = copy.deepcopy(config)
        expected["tls_server_config"].update({"cert_file": "tls.crt", "key_file": "tls.key"})
        self.assertEqual(yaml.safe_load(text), expected)
        self.assertEqual(exporter_reads_web_config(text), (0, ""))

    def test_web_config_that_toyaml_writes_beyond_the_old_yaml_subset(self):
        # Values as Helm users write them, which toYaml renders in forms the
        # exporter's first YAML reader (a subset: one `KEY: VALUE` per line)
        # refused: a header value longer than a line, folded over three in
        # single quotes with '' escapes; user names that YAML reads as
        # booleans or numbers unless quoted; bcrypt hashes full of `$`.
        bcrypt = xdp_values()["webConfig"]["config"]["basic_auth_users"]["prometheus"]
        users = {name: bcrypt for name in ("yes", "on", "Off", "y", "1234", "0x1F", "1e3", "~", "true")}
        csp = ("default-src 'self'; script-src 'self' 'sha256-Zm9vYmFy$=' https://cdn.example.com:443; "
               "img-src * data: blob:; frame-ancestors 'none' # not framed")
        headers = {"Content-Security-Policy": csp, "Strict-Transport-Security": "max-age=63072000; preload"}
        config = {"basic_auth_users": users, "http_server_config": {"headers": headers}}
        text = web_config_text(render({"webConfig": {"enabled": True, "config": config, "tlsSecret": "t"}}))
        expected = dict(copy.deepcopy(config), tls_server_config={"cert_file": "tls.crt", "key_file": "tls.key"})
        self.assertEqual(yaml.safe_load(text), expected)
        self.assertEqual(exporter_reads_web_config(text), (0, ""))

    def test_port_names_that_toyaml_writes_read_back_and_are_accepted(self):
        # Many ports, as a cluster's list grows, and names that YAML reads
        # as booleans, numbers or null unless toYaml quotes them; 8080, the
        # capture's server port, named `on`.
        custom = {port: "svc-%d" % port for port in range(8000, 8200)}
        custom.update({8080: "on", 1: "yes", 2: "1234", 3: "0x1F", 4: "1e3", 5: "~", 6: "Off", 7: "$2y$ # x: y",
                       65535: "'quoted' \"both\""})
        text = self.port_names_file({"portNames": {"custom": custom}})
        self.assertEqual(yaml.safe_load(text), port_keys_as_strings(custom))
        self.assertEqual(exporter_reads_port_names(text), (0, "", {"on"}))

    def test_a_change_of_web_config_rolls_the_daemonset(self):
        bcrypt = xdp_values()["webConfig"]["config"]["basic_auth_users"]["prometheus"]

        def checksum(config):
            ds = render({"webConfig": {"enabled": True, "config": config}}).one("DaemonSet")
            return ds["spec"]["template"]["metadata"]["annotations"]["checksum/web-config"]

        first = checksum({"basic_auth_users": {"a": bcrypt, "b": bcrypt}})
        self.assertEqual(checksum({"basic_auth_users": {"b": bcrypt, "a": bcrypt}}), first)
        self.assertNotEqual(checksum({"basic_auth_users": {"a": bcrypt}}), first)

    def test_web_config_that_cannot_work_does_not_render(self):
        bcrypt = xdp_values()["webConfig"]["config"]["basic_auth_users"]["prometheus"]
        users = {"basic_auth_users": {"prometheus": bcrypt}}
        cases = (
            ({"webConfig": {"enabled": True}}, False, "webConfig.enabled needs something to serve with"),
            ({"webConfig": {"enabled": True, "config": users, "existingSecret": "x"}}, False,
             "set config or existingSecret, not both"),
            ({"webConfig": {"enabled": True, "config": {"tls_server_config": {"min_version": "TLS13"}}}}, False,
             "tls_server_config needs webConfig.tlsSecret"),
            ({"webConfig": {"enabled": True, "tlsSecret": "t", "config": {"tls_server_config": {
                "client_auth_type": "RequireAndVerifyClientCert", "client_ca_file": "ca.crt"}}}}, False,
             "would refuse the kubelet's probes"),
            ({"webConfig": {"enabled": True, "tlsSecret": "t", "config": {"tls_server_config": {
                "client_auth_type": "VerifyClientCertIfGiven"}}}}, False,
             "client_auth_type VerifyClientCertIfGiven needs client_ca_file"),
            ({"webConfig": {"enabled": True, "tlsSecret": "t", "config": {"tls_server_config": {
                "client_ca_file": "ca.crt"}}}}, False, "client_ca_file is set but client_auth_type is NoClientCert"),
            ({"webConfig": {"enabled": True, "tlsSecret": "t", "config": {"tls_server_config": {
                "min_version": "TLS13", "max_version": "TLS12"}}}}, False, "min_version TLS13 is above max_version"),
            # Passwords on, but the scrape sends none.
            ({"webConfig": {"enabled": True, "config": users}}, True, "serviceMonitor.basicAuth is empty"),
            ({"webConfig": {"enabled": True, "config": users}, "serviceMonitor": {"enabled": False},
              "podMonitor": {"enabled": True}}, True, "podMonitor.basicAuth is empty"),
        )
        for values, operator, message in cases:
            with self.subTest(values=values):
                with self.assertRaises(helm.InstallError) as cm:
                    render(values, monitoring_crds=operator)
                self.assertIn(message, str(cm.exception))
        # Without the operator nothing scrapes with the chart's settings, so
        # passwords alone render.
        self.assertEqual(render({"webConfig": {"enabled": True, "config": users}}).names("Secret"),
                         [WEB_CONFIG_SECRET])

    def test_the_rendered_web_config_serves_https_and_takes_a_renewed_certificate(self):
        """The exporter run on the web config the chart rendered, in a folder
        laid out as the kubelet lays out the projected volume (the config
        Secret's key and the TLS Secret's keys), read through the path the
        chart passes; then a renewed TLS Secret, published the way the
        kubelet updates the volume."""
        web = xdp_values()["webConfig"]
        with tempfile.TemporaryDirectory(prefix="tcp-exporter-chart-tls-") as tmp:
            ca_dir, first_dir, second_dir, volume_dir = (os.path.join(tmp, d) for d in ("ca", "1", "2", "volume"))
            for d in (ca_dir, first_dir, second_dir, volume_dir):
                os.mkdir(d)
            make_ca(ca_dir)
            make_server_certificate(first_dir, ca_dir)
            make_server_certificate(second_dir, ca_dir)

            def read(path):
                with open(path, "rb") as f:
                    return f.read()

            def tls_secret(cert_dir):
                # A kubernetes.io/tls Secret as cert-manager writes it.
                return {"tls.crt": read(os.path.join(cert_dir, "tls.crt")),
                        "tls.key": read(os.path.join(cert_dir, "tls.key")),
                        "ca.crt": read(os.path.join(ca_dir, "ca.crt"))}

            volume = ProjectedVolume(volume_dir)
            config = web_config_text(self.xdp).encode()
            volume.publish({"web-config.yml": config, **tls_secret(first_dir)})
            port = free_port()
            log = os.path.join(tmp, "exporter.log")
            proc = start([EXPORTER, "-r", SMALL_CAPTURE, "-p", port, "--listen", "127.0.0.1",
                          "--web.config.file", os.path.join(volume_dir, os.path.basename(WEB_CONFIG_FILE))], log)
            self.addCleanup(stop, proc)
            context = ssl.create_default_context(cafile=os.path.join(ca_dir, "ca.crt"))

            def log_text():
                with open(log, errors="replace") as f:
                    return f.read()

            def get(path, user=None, password=None):
                conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
                try:
                    headers = {}
                    if user is not None:
                        token = base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
                        headers["Authorization"] = "Basic " + token
                    conn.request("GET", path, headers=headers)
                    r = conn.getresponse()
                    # r.headers: names compared without case (hyper sends them
                    # in lower case).
                    return r.status, r.headers, r.read().decode()
                finally:
                    conn.close()

            def served_certificate():
                with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                    with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                        return tls.getpeercert(binary_form=True)

            def ready():
                if proc.poll() is not None:
                    raise AssertionError("the exporter exited: %s" % log_text())
                try:
                    return get("/readyz")[0] == 200
                except OSError:
                    return False

            wait_for("the exporter to serve HTTPS", ready, 30)
            # The probes' paths need no password; the data does.
            self.assertEqual(get("/healthz")[0], 200)
            status, headers, _ = get("/metrics")
            self.assertEqual(status, 401)
            self.assertIn("Basic", headers.get("WWW-Authenticate", ""))
            self.assertEqual(get("/metrics", "prometheus", "wrong")[0], 401)
            for user, password in WEB_PASSWORDS.items():
                with self.subTest(user=user):
                    status, headers, body = get("/metrics", user, password)
                    self.assertEqual(status, 200)
                    self.assertIn("tcp_packets_total{", body)
                    for name, value in web["config"]["http_server_config"]["headers"].items():
                        self.assertEqual(headers.get(name), value)
            # Plain HTTP is not served on the port.
            with socket.create_connection(("127.0.0.1", port), timeout=10) as plain:
                plain.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                try:
                    answer = plain.recv(64)
                except OSError:
                    answer = b""
            self.assertFalse(answer.startswith(b"HTTP/"), answer)
            _, _, body = get("/metrics", "prometheus", WEB_PASSWORDS["prometheus"])
            rejected = dict(re.findall(r'(?m)^tcp_exporter_http_rejections_total\{reason="(\w+)"\} (\d+)$', body))
            self.assertEqual({k: v for k, v in rejected.items() if v != "0"},
                             {"unauthorized": "2", "tls_handshake": "1"})

            first = served_certificate()
            self.assertEqual(first, ssl.PEM_cert_to_DER_cert(read(os.path.join(first_dir, "tls.crt")).decode()))
            # The TLS Secret renewed: the same paths now lead to a new pair.
            volume.publish({"web-config.yml": config, **tls_secret(second_dir)})
            second = ssl.PEM_cert_to_DER_cert(read(os.path.join(second_dir, "tls.crt")).decode())
            self.assertNotEqual(first, second)
            wait_for("the renewed certificate to be served", lambda: served_certificate() == second, 15, interval=0.3)
            self.assertIn("TLS certificate reloaded", log_text())
            self.assertIsNone(proc.poll())

    # ------------------------------------------------------------ schemas
    def test_manifests_validate_against_kubernetes_schemas(self):
        versions = [OLDEST_KUBERNETES, kubernetes_validate.utils.latest_version()]
        checked = 0
        for name, r in self.renders.items():
            for doc in r.docs:
                if doc["kind"] in MONITORING_KINDS:
                    continue  # no schema in kubernetes-validate: see test_monitoring_objects_*
                for version in versions:
                    with self.subTest(render=name, kind=doc["kind"], kubernetes=version):
                        try:
                            kubernetes_validate.validate(doc, version, strict=True)
                        except kubernetes_validate.utils.ValidationError as e:
                            self.fail("%s %s: %s at %s" % (doc["kind"], doc["metadata"]["name"], e.message,
                                                           "/".join(str(p) for p in e.path)))
                        checked += 1
        self.assertGreaterEqual(checked, 16)

    def test_values_schema_rejects_bad_values(self):
        for bad in ({"backend": "dpdk"}, {"interfaces": "eth0"}, {"port": 70000}, {"interface": ["eth0"]},
                    {"maxFlows": 0}, {"securityContext": {"extraCapabilities": ["cap_sys_admin"]}},
                    # --xdp-ring-size: a power of two from 4 to 1024 MiB.
                    dict(XDP_MINIMAL_VALUES, xdp={"ringSizeMiB": 3}),
                    dict(XDP_MINIMAL_VALUES, xdp={"ringSizeMiB": 2}),
                    dict(XDP_MINIMAL_VALUES, xdp={"ringSizeMiB": 0}),
                    dict(XDP_MINIMAL_VALUES, xdp={"ringSizeMiB": 2048}),
                    dict(XDP_MINIMAL_VALUES, xdp={"ringSizeMiB": "16"}),
                    dict(XDP_MINIMAL_VALUES, xdp={"mode": "offload"}),
                    dict(XDP_MINIMAL_VALUES, xdp={"ringSize": 16})):
            with self.subTest(values=bad):
                with self.assertRaises(helm.InstallError) as cm:
                    render(bad)
                self.assertIn("schema", str(cm.exception))

    def test_values_schema_rejects_bad_new_values(self):
        # Each with where Helm's schema check reports it, so that a refusal
        # for another reason does not pass. (Helm reports a bad port key of
        # portNames.custom under an unrelated path: the key itself is checked;
        # so with webConfig's user and header names.)
        cases = (
            ({"labels": ["pod"]}, "at '/labels/0'"),
            ({"labels": ["Server"]}, "at '/labels/0'"),
            ({"labels": ["server", "server"]}, "at '/labels'"),
            ({"labels": "interface,server"}, "at '/labels'"),
            ({"maxSeries": 0}, "at '/maxSeries'"),
            ({"seriesTTL": "5 m"}, "at '/seriesTTL'"),
            ({"seriesTTL": "1d"}, "at '/seriesTTL'"),
            ({"seriesTTL": "5m30s"}, "at '/seriesTTL'"),
            ({"seriesTTL": "-5m"}, "at '/seriesTTL'"),
            ({"seriesTTL": ""}, "at '/seriesTTL'"),
            ({"seriesTTL": -1}, "at '/seriesTTL'"),
            ({"seriesTTL": 1.5}, "at '/seriesTTL'"),
            ({"longConnections": {"age": "an hour"}}, "at '/longConnections/age'"),
            ({"longConnections": {"max": 0}}, "at '/longConnections/max'"),
            ({"longConnections": {"maxConnections": 10}}, "at '/longConnections'"),
            ({"flowLog": {"enabled": True, "interval": "5sec"}}, "at '/flowLog/interval'"),
            # The exporter takes no zero interval.
            ({"flowLog": {"enabled": True, "interval": "0s"}}, "at '/flowLog/interval'"),
            ({"flowLog": {"enabled": True, "interval": "000ms"}}, "at '/flowLog/interval'"),
            ({"flowLog": {"enabled": True, "interval": 0}}, "at '/flowLog/interval'"),
            ({"flowLog": {"enabled": "yes"}}, "at '/flowLog/enabled'"),
            ({"flowLog": {"path": "/var/log/flows"}}, "at '/flowLog'"),
            ({"aggregateCidr": "0.0.0.0/0=/24"}, "at '/aggregateCidr'"),
            ({"aggregateCidr": [24]}, "at '/aggregateCidr/0'"),
            ({"aggregateCidr": [{"cidr": "0.0.0.0/0", "prefix": 24}]}, "at '/aggregateCidr/0'"),
            ({"aggregateCidr": ["10.0.0.0/8"]}, "at '/aggregateCidr/0'"),
            ({"aggregateCidr": ["peer:10.0.0.0/8=/16"]}, "at '/aggregateCidr/0'"),
            # A comma would split the rule when the list is joined.
            ({"aggregateCidr": ["10.0.0.0/8=a,b"]}, "at '/aggregateCidr/0'"),
            ({"portNames": {"presets": ["linkerd"]}}, "at '/portNames/presets/0'"),
            ({"portNames": {"presets": "istio"}}, "at '/portNames/presets'"),
            ({"portNames": {"istio": True}}, "at '/portNames'"),
            ({"portNames": {"custom": {70000: "x"}}}, "'70000' does not match pattern"),
            ({"portNames": {"custom": {65536: "x"}}}, "'65536' does not match pattern"),
            ({"portNames": {"custom": {0: "x"}}}, "'0' does not match pattern"),
            ({"portNames": {"custom": {"080": "x"}}}, "'080' does not match pattern"),
            ({"portNames": {"custom": {"http": "x"}}}, "'http' does not match pattern"),
            ({"portNames": {"custom": {80: ""}}}, "at '/portNames/custom/80'"),
            ({"portNames": {"custom": {80: "x" * 65}}}, "at '/portNames/custom/80'"),
            ({"portNames": {"custom": {80: 8080}}}, "at '/portNames/custom/80'"),
            ({"portNames": {"custom": {80: "a\tb"}}}, "at '/portNames/custom/80'"),
            ({"portNames": {"custom": {80: "web\n"}}}, "at '/portNames/custom/80'"),
            # webConfig: only what the exporter reads, as it reads it.
            ({"webConfig": {"tls": True}}, "at '/webConfig'"),
            # The config as YAML text rather than as values (Helm warns that a
            # string cannot replace the map; the schema refuses it).
            ({"webConfig": {"config": "basic_auth_users: {}"}}, "at '/webConfig/config'"),
            ({"webConfig": {"config": {"tls_config": {}}}}, "at '/webConfig/config'"),
            ({"webConfig": {"config": {"tls_server_config": {"cipher_suites": ["TLS_AES_128_GCM_SHA256"]}}}},
             "at '/webConfig/config/tls_server_config'"),
            ({"webConfig": {"config": {"tls_server_config": {"min_version": "TLS11"}}}},
             "at '/webConfig/config/tls_server_config/min_version'"),
            ({"webConfig": {"config": {"tls_server_config": {"client_auth_type": "RequireAnyClientCert"}}}},
             "at '/webConfig/config/tls_server_config/client_auth_type'"),
            ({"webConfig": {"config": {"basic_auth_users": {"bob": "secret"}}}},
             "at '/webConfig/config/basic_auth_users/bob'"),
            # bcrypt's cost runs from 04 to 31.
            ({"webConfig": {"config": {"basic_auth_users": {"bob": "$2y$03$" + "a" * 53}}}},
             "at '/webConfig/config/basic_auth_users/bob'"),
            ({"webConfig": {"config": {"basic_auth_users": {"bob": "$2y$10$" + "a" * 52}}}},
             "at '/webConfig/config/basic_auth_users/bob'"),
            # Basic auth splits user and password at the first colon.
            ({"webConfig": {"config": {"basic_auth_users": {"a:b": "$2y$10$" + "a" * 53}}}},
             "'a:b' does not match pattern"),
            ({"webConfig": {"config": {"http_server_config": {"headers": {"Server": "tcp-exporter"}}}}},
             "invalid propertyName 'Server'"),
            ({"webConfig": {"config": {"http_server_config": {"headers": {"X-Frame-Options": "deny\r\nX: y"}}}}},
             "at '/webConfig/config/http_server_config/headers/X-Frame-Options'"),
            ({"webConfig": {"config": {"http_server_config": {"http2": True}}}},
             "at '/webConfig/config/http_server_config'"),
            ({"webConfig": {"existingSecret": "My_Secret"}}, "at '/webConfig/existingSecret'"),
            ({"webConfig": {"tlsSecret": "tls/secret"}}, "at '/webConfig/tlsSecret'"),
            # The scrape's credentials and TLS settings.
            ({"serviceMonitor": {"basicAuth": {"username": SCRAPE_BASIC_AUTH["username"]}}},
             "at '/serviceMonitor/basicAuth'"),
            ({"serviceMonitor": {"basicAuth": {"username": "prometheus", "password": "secret"}}},
             "at '/serviceMonitor/basicAuth/username'"),
            ({"podMonitor": {"basicAuth": dict(SCRAPE_BASIC_AUTH, token={"name": "s", "key": "t"})}},
             "at '/podMonitor/basicAuth'"),
            ({"podMonitor": {"tlsConfig": {"insecureSkipVerify": "yes"}}},
             "at '/podMonitor/tlsConfig/insecureSkipVerify'"),
            # --kubernetes: a boolean, and nothing else in its block.
            ({"kubernetes": {"enabled": "yes"}}, "at '/kubernetes/enabled'"),
            ({"kubernetes": {"enabled": 1}}, "at '/kubernetes/enabled'"),
            ({"kubernetes": {"enabled": True, "kubeconfig": "/etc/kubeconfig"}}, "at '/kubernetes'"),
            ({"kubernetes": {"enabled": True, "rbac": {"create": False}}}, "at '/kubernetes'"),
            ({"kubernetes": "true"}, "at '/kubernetes'"),
            ({"labels": ["namespace"]}, "at '/labels/0'"),
            ({"labels": ["server_workload", "server_workload"]}, "at '/labels'"),
            # capture: a mode of the four, a list of interface names.
            ({"capture": {"mode": "all"}}, "at '/capture/mode'"),
            ({"capture": {"mode": "eth0"}}, "at '/capture/mode'"),
            ({"capture": {"mode": "interfaces", "interfaces": "eth0"}}, "at '/capture/interfaces'"),
            ({"capture": {"mode": "interfaces", "interfaces": ["eth0", "eth0"]}}, "at '/capture/interfaces'"),
            ({"capture": {"mode": "interfaces", "interfaces": ["sixteen-chars-xx"]}}, "at '/capture/interfaces/0'"),
            ({"capture": {"mode": "interfaces", "interfaces": ["eth0 eth1"]}}, "at '/capture/interfaces/0'"),
            ({"capture": {"mode": "interfaces", "interfaces": [""]}}, "at '/capture/interfaces/0'"),
            ({"capture": {"interface": ["eth0"]}}, "at '/capture'"),
            ({"capture": "pods"}, "at '/capture'"),
            ({"interfaces": "eth0"}, "at '/interfaces'"),
            # otlp: what the exporter's flags take.
            ({"otlp": {"enabled": "yes"}}, "at '/otlp/enabled'"),
            ({"otlp": {"insecure": True}}, "at '/otlp'"),
            ({"otlp": "http://collector:4317"}, "at '/otlp'"),
            ({"otlp": {"enabled": True, "endpoint": "collector:4317"}}, "at '/otlp/endpoint'"),
            ({"otlp": {"enabled": True, "endpoint": "HTTP://collector:4317"}}, "at '/otlp/endpoint'"),
            ({"otlp": {"enabled": True, "endpoint": "grpc://collector:4317"}}, "at '/otlp/endpoint'"),
            ({"otlp": {"enabled": True, "endpoint": "http://"}}, "at '/otlp/endpoint'"),
            ({"otlp": {"enabled": True, "endpoint": "http://collector :4317"}}, "at '/otlp/endpoint'"),
            ({"otlp": {"enabled": True, "endpoint": ""}}, "at '/otlp/endpoint'"),
            ({"otlp": {"enabled": True, "endpoint": "http://c:4317", "protocol": "grpcs"}}, "at '/otlp/protocol'"),
            ({"otlp": {"enabled": True, "endpoint": "http://c:4317", "protocol": "HTTP"}}, "at '/otlp/protocol'"),
            # The OpenTelemetry SDKs' OTEL_EXPORTER_OTLP_PROTOCOL spelling.
            ({"otlp": {"enabled": True, "endpoint": "http://c:4317", "protocol": "http/protobuf"}},
             "at '/otlp/protocol'"),
            ({"otlp": {"enabled": True, "endpoint": "http://c:4317", "interval": "5sec"}}, "at '/otlp/interval'"),
            ({"otlp": {"enabled": True, "endpoint": "http://c:4317", "interval": "0s"}}, "at '/otlp/interval'"),
            ({"otlp": {"enabled": True, "endpoint": "http://c:4317", "timeout": 0}}, "at '/otlp/timeout'"),
            ({"otlp": {"enabled": True, "endpoint": "http://c:4317", "timeout": "1.5s"}}, "at '/otlp/timeout'"),
            ({"otlp": {"enabled": True, "endpoint": "http://c:4317", "headers": ["X-A=1"]}}, "at '/otlp/headers'"),
            # Header names: HTTP token characters only.
            ({"otlp": {"enabled": True, "endpoint": "http://c:4317", "headers": {"X Token": "a"}}},
             "'X Token' does not match pattern"),
            ({"otlp": {"enabled": True, "endpoint": "http://c:4317", "headers": {"x-token:": "a"}}},
             "'x-token:' does not match pattern"),
            ({"otlp": {"enabled": True, "endpoint": "http://c:4317", "headers": {"x=y": "a"}}},
             "'x=y' does not match pattern"),
            ({"otlp": {"enabled": True, "endpoint": "http://c:4317", "headers": {"clé": "a"}}},
             "'clé' does not match pattern"),
            # Values: printable ASCII, strings (a number must be quoted).
            ({"otlp": {"enabled": True, "endpoint": "http://c:4317", "headers": {"X-A": "a\r\nX-B: b"}}},
             "at '/otlp/headers/X-A'"),
            ({"otlp": {"enabled": True, "endpoint": "http://c:4317", "headers": {"X-A": "é"}}},
             "at '/otlp/headers/X-A'"),
            ({"otlp": {"enabled": True, "endpoint": "http://c:4317", "headers": {"X-Scope-OrgID": 1234}}},
             "at '/otlp/headers/X-Scope-OrgID'"),
            # otlp.tls: a Secret's name, one of its keys, a boolean, nothing else.
            ({"otlp": {"tls": "otlp-client"}}, "at '/otlp/tls'"),
            ({"otlp": {"logQueue": 0}}, "at '/otlp/logQueue'"),
            ({"otlp": {"logQueue": "16384"}}, "at '/otlp/logQueue'"),
            ({"otlp": {"logQueue": 1.5}}, "at '/otlp/logQueue'"),
            ({"otlp": {"logQueue": 4294967296}}, "at '/otlp/logQueue'"),
            ({"otlp": {"tls": {"insecureSkipVerify": True}}}, "at '/otlp/tls'"),
            ({"otlp": {"tls": {"cert": "tls.crt"}}}, "at '/otlp/tls'"),
            ({"otlp": {"tls": {"secret": True}}}, "at '/otlp/tls/secret'"),
            ({"otlp": {"tls": {"secret": "Otlp_Client"}}}, "at '/otlp/tls/secret'"),
            ({"otlp": {"tls": {"secret": "otlp-client."}}}, "at '/otlp/tls/secret'"),
            ({"otlp": {"tls": {"secret": "monitoring/otlp-client"}}}, "at '/otlp/tls/secret'"),
            ({"otlp": {"tls": {"ca": 1}}}, "at '/otlp/tls/ca'"),
            ({"otlp": {"tls": {"ca": True}}}, "at '/otlp/tls/ca'"),
            # A key, not a path: the file is in the Secret's folder.
            ({"otlp": {"tls": {"ca": "certs/ca.crt"}}}, "at '/otlp/tls/ca'"),
            ({"otlp": {"tls": {"ca": "/etc/ssl/certs/ca-certificates.crt"}}}, "at '/otlp/tls/ca'"),
            ({"otlp": {"tls": {"ca": ".."}}}, "at '/otlp/tls/ca'"),
            ({"otlp": {"tls": {"ca": "..data"}}}, "at '/otlp/tls/ca'"),
            ({"otlp": {"tls": {"ca": "ca crt"}}}, "at '/otlp/tls/ca'"),
            ({"otlp": {"tls": {"clientCertificate": "true"}}}, "at '/otlp/tls/clientCertificate'"),
            ({"otlp": {"tls": {"clientCertificate": 1}}}, "at '/otlp/tls/clientCertificate'"),
        )
        for bad, where in cases:
            with self.subTest(values=bad):
                with self.assertRaises(helm.InstallError) as cm:
                    render(bad)
                self.assertIn("schema", str(cm.exception))
                self.assertIn(where, str(cm.exception))

    # ------------------------------------------------------------ monitoring objects
    def assertSelects(self, selector, labels):
        for k, v in selector["matchLabels"].items():
            self.assertEqual(labels.get(k), v, "selector %s does not match labels %s" % (selector, labels))

    def test_monitoring_objects_select_the_exporter(self):
        for name, r in (("default with operator", self.default_operator), ("xdp-monitoring.yaml", self.xdp)):
            with self.subTest(render=name):
                ds, svc, sm = r.one("DaemonSet"), r.one("Service"), r.one("ServiceMonitor")
                pod_labels = ds["spec"]["template"]["metadata"]["labels"]
                self.assertSelects({"matchLabels": svc["spec"]["selector"]}, pod_labels)
                self.assertEqual(svc["spec"]["clusterIP"], "None")
                self.assertSelects(sm["spec"]["selector"], svc["metadata"]["labels"])
                self.assertEqual(sm["spec"]["namespaceSelector"], {"matchNames": [NAMESPACE]})
                ports = {p["name"] for p in svc["spec"]["ports"]}
                for ep in sm["spec"]["endpoints"]:
                    self.assertIn(ep["port"], ports)
                    self.assertEqual(ep["path"], "/metrics")
                # The job the alerting rules expect.
                self.assertEqual(svc["metadata"]["labels"][sm["spec"]["jobLabel"]], "tcp-exporter")
        pm = self.xdp.one("PodMonitor")
        ds = self.xdp.one("DaemonSet")
        pod_labels = ds["spec"]["template"]["metadata"]["labels"]
        self.assertSelects(pm["spec"]["selector"], pod_labels)
        self.assertEqual(pod_labels[pm["spec"]["jobLabel"]], "tcp-exporter")
        container_ports = {p["name"] for p in container(ds)["ports"]}
        for ep in pm["spec"]["podMetricsEndpoints"]:
            self.assertIn(ep["port"], container_ports)
        self.assertEqual(self.xdp.one("ServiceMonitor")["metadata"]["labels"]["release"], "kube-prometheus-stack")
        self.assertEqual(self.xdp.one("ServiceMonitor")["spec"]["endpoints"][0]["interval"], "15s")

    def test_prometheus_rule_is_the_rules_file(self):
        with open(RULES) as f:
            groups = yaml.safe_load(f)["groups"]
        rule = self.default_operator.one("PrometheusRule")
        self.assertEqual(rule["spec"]["groups"], groups)
        # With additionalRuleLabels: added to every rule, never over a rule's own.
        forced = self.xdp.one("PrometheusRule")
        self.assertEqual(forced["metadata"]["labels"]["release"], "kube-prometheus-stack")
        for g_shipped, g in zip(groups, forced["spec"]["groups"]):
            for r_shipped, r in zip(g_shipped["rules"], g["rules"]):
                self.assertEqual(r["labels"], {**{"team": "network"}, **r_shipped["labels"]})
                self.assertEqual(r["expr"], r_shipped["expr"])
        # And what the chart ships passes promtool.
        with tempfile.TemporaryDirectory(prefix="tcp-exporter-rules-") as tmp:
            for name, doc in (("default", rule), ("xdp", forced)):
                path = os.path.join(tmp, name + ".yml")
                with open(path, "w") as f:
                    yaml.safe_dump({"groups": doc["spec"]["groups"]}, f)
                out = subprocess.run([tool("promtool"), "check", "rules", path], capture_output=True, text=True)
                self.assertEqual(out.returncode, 0, out.stdout + out.stderr)

    def test_dashboard_configmap_carries_the_dashboard(self):
        with open(DASHBOARD) as f:
            dashboard = json.load(f)
        cases = (("default", self.default, NAMESPACE, None),
                 ("xdp-monitoring.yaml", self.xdp, "grafana", {"grafana_folder": "Network"}))
        for name, r, namespace, annotations in cases:
            with self.subTest(render=name):
                cm = r.one("ConfigMap", DASHBOARD_CONFIGMAP)
                self.assertEqual(cm["metadata"]["labels"]["grafana_dashboard"], "1")
                self.assertEqual(cm["metadata"]["namespace"], namespace)
                self.assertEqual(cm["metadata"].get("annotations"), annotations)
                self.assertEqual(json.loads(cm["data"]["tcp-exporter.json"]), dashboard)


class SingleSource(unittest.TestCase):
    """dashboards/ and alerts/ hold the same bytes as the chart's files/, which
    the chart reads (Helm cannot read outside the chart): symlinks today."""

    def test_dashboard_and_rules_are_the_charts(self):
        for top, in_chart in ((DASHBOARD, CHART / "files" / "tcp-exporter.json"),
                              (RULES, CHART / "files" / "tcp-exporter.rules.yml")):
            with self.subTest(file=str(top.relative_to(ROOT))):
                self.assertEqual(top.read_bytes(), in_chart.read_bytes(),
                                 "%s differs from %s" % (top, in_chart))


if __name__ == "__main__":
    unittest.main()

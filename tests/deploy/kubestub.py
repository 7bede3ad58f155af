"""A stand-in Kubernetes API server on loopback, so that real Helm (the
library inside helm-sdkpy) can run `install` and hand back the manifest it
rendered. helm-sdkpy has no `template` action; `install` against this stub is
how the tests get Helm's own rendering, with the API groups the stub serves
as `.Capabilities` (with or without monitoring.coreos.com/v1).

It answers discovery (/version, /api, /apis and each group version), lists
no existing release, accepts every create (echoing the object) and records
what Helm sent. Nothing is validated here: the tests validate the rendered
manifests themselves.
"""

import http.server
import json
import threading

CORE = [
    ("configmaps", "ConfigMap", True),
    ("secrets", "Secret", True),
    ("services", "Service", True),
    ("serviceaccounts", "ServiceAccount", True),
    ("pods", "Pod", True),
    ("namespaces", "Namespace", False),
]
GROUPS = {
    "apps/v1": [("daemonsets", "DaemonSet", True), ("deployments", "Deployment", True)],
    "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    "scheduling.k8s.io/v1": [("priorityclasses", "PriorityClass", False)],
    "rbac.authorization.k8s.io/v1": [("clusterroles", "ClusterRole", False),
                                     ("clusterrolebindings", "ClusterRoleBinding", False),
                                     ("roles", "Role", True), ("rolebindings", "RoleBinding", True)],
}
MONITORING = {
    "monitoring.coreos.com/v1": [
        ("servicemonitors", "ServiceMonitor", True),
        ("podmonitors", "PodMonitor", True),
        ("prometheusrules", "PrometheusRule", True),
    ],
}
NOT_FOUND = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}


def _resource_list(group_version, resources):
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": [
            {"name": name, "singularName": "", "namespaced": namespaced, "kind": kind,
             "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}
            for name, kind, namespaced in resources
        ],
    }


class KubeStub:
    """Serves on 127.0.0.1 on a free port until stop()."""

    def __init__(self, monitoring_crds, kube_version=(1, 33)):
        groups = dict(GROUPS)
        if monitoring_crds:
            groups.update(MONITORING)
        self.groups = groups
        self.kube_version = kube_version
        self.created = []  # (method, path, body) of every write
        self._lock = threading.Lock()
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code, obj):
                body = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                code, obj = stub._get(self.path.split("?")[0])
                self._send(code, obj)

            def _write(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with stub._lock:
                    stub.created.append((self.command, self.path.split("?")[0], body))
                # Release records come as protobuf; Helm does not read the echo.
                try:
                    obj = json.loads(body)
                except ValueError:
                    obj = {}
                self._send(201 if self.command == "POST" else 200, obj)

            do_POST = do_PUT = do_PATCH = _write

            def do_DELETE(self):
                self._send(404, NOT_FOUND)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _get(self, path):
        major, minor = self.kube_version
        if path == "/version":
            return 200, {"major": str(major), "minor": str(minor), "gitVersion": "v%d.%d.0" % (major, minor),
                         "platform": "linux/amd64"}
        if path == "/api":
            return 200, {"kind": "APIVersions", "versions": ["v1"]}
        if path == "/api/v1":
            return 200, _resource_list("v1", CORE)
        if path == "/apis":
            by_group = {}
            for gv in self.groups:
                group, version = gv.split("/")
                by_group.setdefault(group, []).append(version)
            return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": g, "versions": [{"groupVersion": "%s/%s" % (g, v), "version": v} for v in vs],
                 "preferredVersion": {"groupVersion": "%s/%s" % (g, vs[0]), "version": vs[0]}}
                for g, vs in by_group.items()]}
        if path.startswith("/apis/") and path[len("/apis/"):] in self.groups:
            gv = path[len("/apis/"):]
            return 200, _resource_list(gv, self.groups[gv])
        if path.endswith("/secrets"):  # Helm's release history: none
            return 200, {"kind": "SecretList", "apiVersion": "v1", "metadata": {}, "items": []}
        return 404, NOT_FOUND

    def kubeconfig(self):
        return (
            "apiVersion: v1\nkind: Config\n"
            "clusters:\n- name: stub\n  cluster:\n    server: %s\n"
            "users:\n- name: stub\n  user:\n    token: stub\n"
            "contexts:\n- name: stub\n  context:\n    cluster: stub\n    user: stub\n    namespace: default\n"
            "current-context: stub\n" % self.url
        )

    def stop(self):
        self._server.shutdown()
        self._server.server_close()

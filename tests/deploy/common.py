"""Paths and helpers shared by the deployment tests: free loopback ports,
plain HTTP GETs, child processes that die with the test, the dashboard's
queries."""

import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXPORTER = ROOT / "target" / "release" / "tcp-exporter"
CHART = ROOT / "k8s" / "tcp-exporter"
DASHBOARD = ROOT / "dashboards" / "tcp-exporter.json"
RULES = ROOT / "alerts" / "tcp-exporter.rules.yml"
CHART_DASHBOARD = CHART / "files" / "tcp-exporter.json"
CHART_RULES = CHART / "files" / "tcp-exporter.rules.yml"

# The capabilities the chart adds for backend xdp, and all the xdp backend
# needs (no NET_RAW): test_chart.py checks the chart renders exactly these,
# test_capabilities.py that the exporter starts with them and with no fewer.
XDP_CAPABILITIES = ["BPF", "NET_ADMIN", "PERFMON"]
# pcap and af-packet with the reporter label: NET_ADMIN reads the pods'
# addresses behind their veths.
REPORTER_CAPABILITIES = ["NET_RAW", "NET_ADMIN"]


def tool(name):
    """Absolute path of a command, or None."""
    return shutil.which(name) or (("/usr/bin/" + name) if os.path.exists("/usr/bin/" + name) else None)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=5.0):
    """(status, body as str); status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except (urllib.error.URLError, OSError):
        return 0, ""


def wait_for(what, predicate, timeout, interval=0.2):
    """Polls predicate() until it returns something true; returns it, or
    raises AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(interval)


_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    # The child gets SIGKILL if the test process dies without cleaning up
    # (killed with -9, say), so no exporter or Prometheus outlives a run.
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def start(args, log_path, env=None):
    """Starts a child process with stdout and stderr to log_path, in `env`
    (a whole environment; None: this process')."""
    log = open(log_path, "ab")
    try:
        return subprocess.Popen([str(a) for a in args], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent, env=env)
    finally:
        log.close()


def stop(proc, timeout=10):
    """SIGTERM, then SIGKILL after `timeout` seconds; by PID, only our own child."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def load_dashboard():
    with open(DASHBOARD) as f:
        return json.load(f)


def dashboard_panels(dashboard):
    """Every panel, those inside rows included."""
    out = []
    for panel in dashboard.get("panels", []):
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def dashboard_targets(dashboard):
    """(panel title, refId, expr) of every query of every panel."""
    return [(p.get("title", "?"), t.get("refId", "?"), t["expr"])
            for p in dashboard_panels(dashboard) for t in p.get("targets", []) if "expr" in t]


def dashboard_rows(dashboard):
    """(row title, panel) of every panel but the rows themselves, in order;
    the row title is None above the first row."""
    out = []
    title = None
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            title = panel.get("title")
            out.extend((title, p) for p in panel.get("panels", []))
        else:
            out.append((title, panel))
    return out


# The dashboard's variables: those of the address labels, which the
# Kubernetes default labels (--kubernetes) leave out, and those of the
# identity labels, which only --kubernetes gives. server_port is in both.
IP_VARIABLES = ("interface", "server", "client")
IDENTITY_VARIABLES = ("server_namespace", "server_workload", "client_namespace", "client_workload")
VARIABLES = IP_VARIABLES + IDENTITY_VARIABLES + ("server_port",)
# Rows whose panels show only series with identity labels or the
# exporter's Kubernetes metrics: without --kubernetes they stay empty.
KUBERNETES_ROWS = ("Who talks to whom (--kubernetes)", "Kubernetes watch (--kubernetes)")


# The Reporter variable: not a query but a choice of views (custom), each a
# regex over the reporter label that every traffic selector matches
# (reporter=~"$reporter"); its values also match series without the label.
REPORTER_VARIABLE = "reporter"
# What each choice must match: a reporter's view of pod-to-pod connections,
# and everything that has one view only (node, or no reporter label).
REPORTER_CHOICES = {"client": {"client", "node", ""}, "server": {"server", "node", ""},
                    "both (pod-to-pod twice)": {"client", "server", "node", ""}}
REPORTER_DEFAULT = "client"


def reporter_variable(dashboard):
    """The Reporter variable: (its options as [(text, value)], the value of
    the one selected by default)."""
    [v] = [v for v in dashboard.get("templating", {}).get("list", []) if v.get("name") == REPORTER_VARIABLE]
    return [(o["text"], o["value"]) for o in v["options"]], v["current"]["value"]


def dashboard_variables(dashboard):
    """The query variables, as (name, query string)."""
    out = []
    for v in dashboard.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v.get("query")
            out.append((v["name"], q["query"] if isinstance(q, dict) else q))
    return out


# Grafana's built-in variables, as the test gives them: $__rate_interval is
# max(4 x scrape interval, $__interval + scrape interval) in Grafana.
BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "5m", "__range_s": "300"}

_VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def substitute(expr, values):
    """expr with $var, ${var} and [[var]] replaced from `values` (dashboard
    variables, as the regex text Grafana would insert) and BUILTINS.
    Raises KeyError on a variable it does not know."""
    def repl(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name in values:
            return values[name]
        if name in BUILTINS:
            return BUILTINS[name]
        raise KeyError("unknown variable $%s in %r" % (name, expr))
    return _VAR.sub(repl, expr)


def grafana_regex(value):
    """A single selected value as Grafana puts it into `label=~"$var"`: regex
    metacharacters escaped, then escaped again for the PromQL string."""
    return re.escape(value).replace("\\", "\\\\")

"""The Grafana dashboard and the alerting rules, read as files: importable by
file into current Grafana, queries written the way Grafana needs them, and
every metric they name is one the exporter defines (src/metrics/names.rs).
Whether the queries run and return data is test_prometheus.py's job."""

import re
import subprocess
import unittest

import yaml

from common import EXPORTER, ROOT, RULES, dashboard_panels, dashboard_targets, dashboard_variables, load_dashboard, tool

NAMES_RS = ROOT / "src" / "metrics" / "names.rs"
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
VARIABLES = {"interface", "client", "server", "server_port"}
# Metrics of the contract that have no panel, and why.
NOT_ON_DASHBOARD = {
    "tcp_dont_fragment_packets_total": "an IP-level detail; nothing to act on at a glance",
    "tcp_keepalives_total": "keep-alives are normal traffic",
    # Only with --kubernetes: the Prometheus deployment test runs the
    # exporter without a cluster, where a panel of them could not return
    # data. They get panels with the chart's Kubernetes values.
    "tcp_exporter_kubernetes_objects": "only with --kubernetes",
    "tcp_exporter_kubernetes_synced": "only with --kubernetes",
    "tcp_exporter_kubernetes_watch_errors_total": "only with --kubernetes",
    "tcp_exporter_kubernetes_relists_total": "only with --kubernetes",
    "tcp_exporter_kubernetes_identities_overflow_total": "only with --kubernetes",
}
_METRIC = re.compile(r"(?<![A-Za-z0-9_:])(tcp_[a-z0-9_]+)")


_CONTRACT = []


def exposition_families():
    """The metric families the exporter prints for a test capture, with
    long-connection series on (HTTP's own families come only with a server)."""
    capture = ROOT / "testdata" / "pcaps" / "bulk_loss.pcap"
    out = subprocess.run(
        [str(EXPORTER), "-r", str(capture), "--print", "--long-connections", "1ms"],
        capture_output=True, text=True, check=True,
    ).stdout
    return {line.split()[2] for line in out.splitlines() if line.startswith("# TYPE ")}


def contract_metrics():
    """Metric names defined in src/metrics/names.rs. Read with a regex, so
    checked against what the exporter prints: a regex that stopped matching
    would find fewer names, and every test that reads them would pass."""
    if not _CONTRACT:
        names = set(re.findall(r'def\(\s*"([a-z0-9_]+)"', NAMES_RS.read_text()))
        printed = exposition_families()
        missing = printed - names
        if missing or len(names) < len(printed):
            raise AssertionError(
                f"{NAMES_RS} read as {len(names)} names; the exporter prints "
                f"{len(printed)} families, {sorted(missing)} not among them"
            )
        _CONTRACT.append(names)
    return _CONTRACT[0]


def metric_names(expr):
    out = set()
    for name in _METRIC.findall(expr):
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and not name.endswith("_total"):
                name = name[: -len(suffix)]
                break
        out.add(name)
    return out


class Dashboard(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = load_dashboard()
        cls.panels = [p for p in dashboard_panels(cls.d) if p.get("type") != "row"]

    def test_importable_by_file(self):
        self.assertEqual([i["name"] for i in self.d["__inputs"]], ["DS_PROMETHEUS"])
        self.assertEqual(self.d["__inputs"][0]["type"], "datasource")
        self.assertEqual(self.d["__inputs"][0]["pluginId"], "prometheus")
        self.assertGreaterEqual(self.d["schemaVersion"], 39)
        self.assertIsNone(self.d.get("id"))
        self.assertTrue(self.d["uid"])
        self.assertTrue(self.d["title"])

    def test_every_panel_and_query_uses_the_datasource_input(self):
        for p in self.panels:
            with self.subTest(panel=p["title"]):
                self.assertEqual(p.get("datasource"), DATASOURCE)
                self.assertTrue(p.get("targets"), "a panel without queries")
                for t in p["targets"]:
                    self.assertEqual(t.get("datasource"), DATASOURCE)

    def test_datasource_variable_for_provisioning(self):
        # A dashboard loaded by Grafana's sidecar is not imported, so nothing
        # replaces ${DS_PROMETHEUS}: a data source variable of that name does.
        ds = [v for v in self.d["templating"]["list"] if v["type"] == "datasource"]
        self.assertEqual([(v["name"], v["query"]) for v in ds], [("DS_PROMETHEUS", "prometheus")])

    def test_template_variables(self):
        vs = {v["name"]: v for v in self.d["templating"]["list"] if v["type"] == "query"}
        self.assertEqual(set(vs), VARIABLES)
        for name, v in vs.items():
            with self.subTest(variable=name):
                self.assertEqual(v["datasource"], DATASOURCE)
                self.assertTrue(v["multi"])
                self.assertTrue(v["includeAll"])
                self.assertEqual(v["allValue"], ".*")
        for name, q in dashboard_variables(self.d):
            with self.subTest(variable=name):
                self.assertRegex(q, r"^label_values\(.+, %s\)$" % name)

    def test_panel_ids_unique_and_layout_without_overlap(self):
        all_panels = dashboard_panels(self.d)
        ids = [p["id"] for p in all_panels]
        self.assertEqual(len(ids), len(set(ids)))
        boxes = []
        for p in all_panels:
            g = p["gridPos"]
            self.assertLessEqual(g["x"] + g["w"], 24, p["title"])
            for other_title, o in boxes:
                overlap = (g["x"] < o["x"] + o["w"] and o["x"] < g["x"] + g["w"]
                           and g["y"] < o["y"] + o["h"] and o["y"] < g["y"] + g["h"])
                self.assertFalse(overlap, "%r overlaps %r" % (p["title"], other_title))
            boxes.append((p["title"], g))

    def test_ranges_are_grafana_intervals(self):
        # A fixed [5m] would be wrong at some zoom levels; $__rate_interval
        # follows the scrape interval and the zoom.
        for title, ref, expr in dashboard_targets(self.d):
            with self.subTest(panel=title, query=ref):
                for window in re.findall(r"\[([^\]]+)\]", expr):
                    self.assertIn(window, ("$__rate_interval", "$__range"))

    def test_queries_name_only_metrics_the_exporter_defines(self):
        known = contract_metrics() | {"up"}
        for title, ref, expr in dashboard_targets(self.d):
            with self.subTest(panel=title, query=ref):
                self.assertLessEqual(metric_names(expr), known)

    def test_every_metric_of_the_contract_has_a_panel(self):
        used = set()
        for _, _, expr in dashboard_targets(self.d):
            used |= metric_names(expr)
        missing = contract_metrics() - used - set(NOT_ON_DASHBOARD)
        self.assertEqual(missing, set(), "add a panel, or list the metric in NOT_ON_DASHBOARD with a reason")


class ContractNames(unittest.TestCase):
    def test_names_rs_is_read_whole(self):
        names = contract_metrics()
        self.assertGreaterEqual(len(names), 40)
        self.assertTrue(exposition_families() <= names)


class AlertRules(unittest.TestCase):
    def test_promtool_check_rules(self):
        r = subprocess.run([tool("promtool"), "check", "rules", str(RULES)], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("SUCCESS", r.stdout)

    def test_rules_name_only_metrics_the_exporter_defines(self):
        with open(RULES) as f:
            rules = [r for g in yaml.safe_load(f)["groups"] for r in g["rules"]]
        known = contract_metrics()
        for r in rules:
            with self.subTest(alert=r["alert"]):
                self.assertLessEqual(metric_names(r["expr"]), known)
                self.assertIn(r["labels"]["severity"], ("info", "warning", "critical"))
                self.assertTrue(r["annotations"]["summary"] and r["annotations"]["description"])


if __name__ == "__main__":
    unittest.main()

"""The Grafana dashboard and the alerting rules, read as files: importable by
file into current Grafana, queries written the way Grafana needs them, and
every metric they name is one the exporter defines (src/metrics/names.rs).
Whether the queries run and return data is test_prometheus.py's job."""

import re
import subprocess
import unittest

import yaml

from common import (EXPORTER, KUBERNETES_ROWS, ROOT, RULES, VARIABLES, dashboard_panels, dashboard_rows,
                    dashboard_targets, dashboard_variables, load_dashboard, tool)

NAMES_RS = ROOT / "src" / "metrics" / "names.rs"
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
# Metrics of the contract that have no panel, and why.
NOT_ON_DASHBOARD = {
    "tcp_dont_fragment_packets_total": "an IP-level detail; nothing to act on at a glance",
    "tcp_keepalives_total": "keep-alives are normal traffic",
    "tcp_exporter_tunnel_packets_total": "how much traffic came in overlays: a decoding detail "
                                         "(README, Overlays); the traffic itself is on every panel",
}
# Traffic series without client labels (the histograms): the client
# variables do not filter them.
NO_CLIENT = ("tcp_rtt_seconds", "tcp_handshake_rtt_seconds", "tcp_connection_duration_seconds")
CLIENT_VARIABLES = {"client", "client_namespace", "client_workload"}
_METRIC = re.compile(r"(?<![A-Za-z0-9_:])(tcp_[a-z0-9_]+)")
_SELECTOR = re.compile(r"(?<![A-Za-z0-9_:])(tcp_[a-z0-9_]+)(\{[^}]*\})?")


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
        self.assertEqual(set(vs), set(VARIABLES))
        for name, v in vs.items():
            with self.subTest(variable=name):
                self.assertEqual(v["datasource"], DATASOURCE)
                self.assertTrue(v["multi"])
                self.assertTrue(v["includeAll"])
                # All is `.*`, which also matches a label the series do not
                # carry: the address variables with --kubernetes' default
                # labels, the identity ones without --kubernetes. Grafana's
                # own All (the values found, joined) would match nothing there.
                self.assertEqual(v["allValue"], ".*")
                self.assertTrue(v.get("description"))
        earlier = []
        for name, q in dashboard_variables(self.d):
            with self.subTest(variable=name):
                # Values of the traffic series, each narrowed by those before.
                m = re.fullmatch(r"label_values\(tcp_packets_total(?:\{(.*)\})?, %s\)" % name, q)
                self.assertIsNotNone(m, q)
                self.assertEqual(re.findall(r'(\w+)=~"\$(\w+)"', m.group(1) or ""), [(e, e) for e in earlier])
            earlier.append(name)

    def test_traffic_queries_filter_on_every_variable(self):
        # Every selector of a traffic metric filters on every variable (the
        # histograms on all but the client ones); the exporter's own metrics
        # at most on interface.
        for title, ref, expr in dashboard_targets(self.d):
            for metric, matchers in _SELECTOR.findall(expr):
                with self.subTest(panel=title, query=ref, metric=metric):
                    filters = dict(re.findall(r'(\w+)=~"\$(\w+)"', matchers))
                    self.assertTrue(all(k == v for k, v in filters.items()), matchers)
                    if metric.startswith("tcp_exporter_"):
                        self.assertLessEqual(set(filters), {"interface"})
                    elif metric_names(metric) <= set(NO_CLIENT):
                        self.assertEqual(set(filters), set(VARIABLES) - CLIENT_VARIABLES)
                    else:
                        self.assertEqual(set(filters), set(VARIABLES))

    def test_by_server_panels_have_a_query_for_each_label_mode(self):
        # A query of the series without identity labels (server_workload="",
        # by address) comes with one of the series with them
        # (server_workload!="", by workload) in the same panel, and the other
        # way round outside the Kubernetes rows, whose panels are only for
        # --kubernetes.
        for row, p in dashboard_rows(self.d):
            exprs = [t["expr"] for t in p["targets"]]
            ip = [e for e in exprs if 'server_workload=""' in e]
            identity = [e for e in exprs if 'server_workload!=""' in e]
            with self.subTest(panel=p["title"]):
                if row in KUBERNETES_ROWS:
                    self.assertEqual(ip, [])
                    for e in exprs:
                        self.assertTrue('server_workload!=""' in e or metric_names(e) <= {
                            n for n in contract_metrics() if n.startswith("tcp_exporter_kubernetes_")}, e)
                else:
                    self.assertEqual(bool(ip), bool(identity), exprs)

    def test_kubernetes_rows_exist(self):
        rows = [p["title"] for p in self.d["panels"] if p.get("type") == "row"]
        for title in KUBERNETES_ROWS:
            self.assertIn(title, rows)

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

    def test_each_traffic_series_feeds_one_alert_family(self):
        # Series without identity labels feed the alerts by address, series
        # with them (--kubernetes) the alerts by workload: never both, so no
        # alert twice, and never neither.
        with open(RULES) as f:
            rules = [r for g in yaml.safe_load(f)["groups"] for r in g["rules"]]
        families = {"TCPWorkload": 0, "TCP": 0}
        for r in rules:
            if r["alert"].startswith("TCPExporter"):
                continue
            workload = r["alert"].startswith("TCPWorkload")
            families["TCPWorkload" if workload else "TCP"] += 1
            for metric, matchers in _SELECTOR.findall(r["expr"]):
                with self.subTest(alert=r["alert"], metric=metric):
                    self.assertFalse(metric.startswith("tcp_exporter_"))
                    self.assertIn('server_workload!=""' if workload else 'server_workload=""', matchers)
                    self.assertIn("by (server_namespace, server_workload" if workload else "by (server, server_port",
                                  r["expr"])
        self.assertTrue(all(families.values()), families)

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

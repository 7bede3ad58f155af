"""The Grafana dashboard and the alerting rules, read as files: importable by
file into current Grafana, queries written the way Grafana needs them, and
every metric they name is one the exporter defines (src/metrics/names.rs).
Whether the queries run and return data is test_prometheus.py's job."""

import os
import re
import subprocess
import tempfile
import unittest

import yaml

from common import (EXPORTER, KUBERNETES_ROWS, REPORTER_CHOICES, REPORTER_DEFAULT, REPORTER_VARIABLE, ROOT, RULES,
                    VARIABLES, dashboard_panels, dashboard_rows, dashboard_targets, dashboard_variables,
                    load_dashboard, reporter_variable, tool)

NAMES_RS = ROOT / "src" / "metrics" / "names.rs"
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
# Metrics of the contract that have no panel, and why.
NOT_ON_DASHBOARD = {
    "tcp_dont_fragment_packets_total": "an IP-level detail; nothing to act on at a glance",
    "tcp_keepalives_total": "keep-alives are normal traffic",
    "tcp_exporter_tunnel_packets_total": "how much traffic came in overlays: a decoding detail "
                                         "(README, Overlays); the traffic itself is on every panel",
}
# The xdp backend's --xdp-count (off by default): how its counting in the
# kernel went, not the traffic, which every panel shows either way.
NOT_ON_DASHBOARD["tcp_exporter_kernel_counted_segments_total"] = (
    "segments the xdp backend counted in the kernel (--xdp-count, off by default); "
    "they are in the packet counts every panel shows")
NOT_ON_DASHBOARD["tcp_exporter_kernel_count_events_total"] = (
    "how --xdp-count's arming and ordering went (off by default); its drops are "
    "in tcp_exporter_capture_drops_total, which has a panel")
NOT_ON_DASHBOARD["tcp_exporter_series_retired_dropped_total"] = (
    "a bound almost never met (4096 expiries per worker between two scrapes); "
    "the series overflow and expiry panels show the series' health")
# Istio's families (--istio-metrics) are for Istio's own dashboards and
# Kiali, whose queries test_prometheus.py runs; ours reads the native ones.
for _istio in ("istio_tcp_connections_opened_total", "istio_tcp_connections_closed_total",
               "istio_tcp_sent_bytes_total", "istio_tcp_received_bytes_total"):
    NOT_ON_DASHBOARD[_istio] = "the same traffic in Istio's names, for Istio's dashboards (README)"
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
        # The Reporter variable comes first: every other one lists values of
        # the view it chooses.
        earlier = [REPORTER_VARIABLE]
        for name, q in dashboard_variables(self.d):
            with self.subTest(variable=name):
                # Values of the traffic series, each narrowed by those before.
                m = re.fullmatch(r"label_values\(tcp_packets_total(?:\{(.*)\})?, %s\)" % name, q)
                self.assertIsNotNone(m, q)
                self.assertEqual(re.findall(r'(\w+)=~"\$(\w+)"', m.group(1) or ""), [(e, e) for e in earlier])
            earlier.append(name)

    def test_reporter_variable_chooses_one_view(self):
        # A choice of views, not a list of the label's values: one at a
        # time, client by default, each a regex that also matches series
        # without the label (Grafana inserts a single value of a variable
        # that is neither multi nor All as it is).
        names = [v["name"] for v in self.d["templating"]["list"]]
        self.assertEqual(names[:2], ["DS_PROMETHEUS", REPORTER_VARIABLE])
        v = self.d["templating"]["list"][1]
        self.assertEqual(v["type"], "custom")
        self.assertFalse(v["multi"])
        self.assertFalse(v["includeAll"])
        self.assertTrue(v.get("description"))
        options, default = reporter_variable(self.d)
        self.assertEqual([text for text, _ in options], list(REPORTER_CHOICES))
        self.assertEqual(default, dict(options)[REPORTER_DEFAULT])
        self.assertEqual(v["current"]["text"], REPORTER_DEFAULT)
        self.assertEqual([o["selected"] for o in v["options"]], [text == REPORTER_DEFAULT for text, _ in options])
        # Grafana builds the options from the query ("text : value", commas
        # between); the saved ones must be what it builds.
        self.assertEqual([tuple(part.split(" : ")) for part in v["query"].split(",")], options)
        for text, value in options:
            with self.subTest(choice=text):
                matched = {r for r in ("client", "server", "node", "") if re.fullmatch(value, r)}
                self.assertEqual(matched, REPORTER_CHOICES[text])

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
                        self.assertEqual(set(filters), set(VARIABLES) - CLIENT_VARIABLES | {REPORTER_VARIABLE})
                    else:
                        self.assertEqual(set(filters), set(VARIABLES) | {REPORTER_VARIABLE})

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

    def test_reporters_are_judged_apart_never_summed(self):
        # A pod-to-pod connection is seen by the client pod's interface and
        # by the server pod's (reporter client and server); the traffic
        # alerts take the worst of the views, never their sum, and keep a
        # view that only one side has. `promtool test rules` evaluates each
        # alert's expression on series made for it: per view, rates of
        # 0.6 RST/s (two views summed would cross 1/s), and so on.
        with open(RULES) as f:
            exprs = {r["alert"]: r["expr"] for g in yaml.safe_load(f)["groups"] for r in g["rules"]}

        def series(metric, labels, per_minute):
            text = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
            return {"series": "%s{%s}" % (metric, text), "values": "0+%gx20" % per_minute}

        db = {"server_namespace": "data", "server_workload": "db"}
        external = {"server_namespace": "", "server_workload": "external"}
        no_endpoints = {"server_namespace": "shop", "server_workload": "cart"}  # a Service
        views = ({"reporter": "client"}, {"reporter": "server"})
        inputs = (
            # db: 0.6 RST/s in each view and no connection opened: one view
            # is under 1/s. external: seen by its clients only, 2 RST/s.
            [series("tcp_resets_total", dict(db, **v), 36) for v in views]
            + [series("tcp_resets_total", dict(external, reporter="client"), 120)]
            # db: 2 segments/s, a tenth retransmitted, in each view.
            + [series("tcp_packets_total", dict(db, **v), 120) for v in views]
            + [series("tcp_retransmitted_segments_total", dict(db, **v), 12) for v in views]
            # A Service without endpoints: its clients' SYNs unanswered,
            # 0.2/s, seen by the clients' interfaces only.
            + [series("tcp_connections_failed_total", dict(no_endpoints, reporter="client", reason="unanswered"), 12)]
            # Without --kubernetes and without a reporter label: one view.
            + [series("tcp_resets_total", {"server": "10.0.0.2", "server_port": "80", "server_workload": ""}, 120)]
        )
        cases = (
            ("TCPWorkloadResetStorm", [(external, 2)]),
            ("TCPWorkloadHighRetransmissionRatio", [(db, 0.1)]),
            ("TCPWorkloadConnectionFailures", [(dict(no_endpoints, reason="unanswered"), 1)]),
            ("TCPResetStorm", [({"server": "10.0.0.2", "server_port": "80"}, 2)]),
        )
        tests = {"evaluation_interval": "1m", "tests": [{
            "interval": "1m",
            "input_series": inputs,
            "promql_expr_test": [{
                "expr": exprs[alert], "eval_time": "10m",
                # An empty label is no label.
                "exp_samples": [{"labels": "{%s}" % ",".join('%s="%s"' % kv for kv in sorted(labels.items()) if kv[1]),
                                 "value": value} for labels, value in samples],
            } for alert, samples in cases],
        }]}
        with tempfile.TemporaryDirectory(prefix="tcp-exporter-rules-") as d:
            path = os.path.join(d, "reporters.test.yml")
            with open(path, "w") as f:
                yaml.safe_dump(tests, f)
            r = subprocess.run([tool("promtool"), "test", "rules", path], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

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

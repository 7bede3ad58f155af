"""End to end against a real Prometheus (Debian's /usr/bin/prometheus).

The exporter serves the metrics of a capture with heavy loss
(`tcp-exporter -r FILE -p PORT --long-connections AGE --flow-log FILE`: the
optional series on, for the dashboard's panels), and a Prometheus on
another loopback port scrapes it every second and evaluates the alerting
rules every second (a copy of alerts/tcp-exporter.rules.yml whose `for:`
durations are cut to a few seconds; everything else as shipped). Then,
through Prometheus' HTTP API:

- `promtool check metrics` passes on what the exporter serves;
- every alerting rule is loaded and evaluates without error, and every alert
  expression parses;
- every variable query of the dashboard finds values, and every panel query
  (variables substituted: all values, then one value each) parses and
  returns data;
- the alerts this capture must trigger fire (retransmission ratio, reset
  storm, zero windows), those it must not (capture drops, flow table,
  series overflow, flow-log drops, long-connection overflow, HTTP
  connection limit, unauthorized requests, exporter down) stay quiet, and
  stopping the exporter makes TCPExporterDown fire.

Counters must grow for rate() to see anything, and a capture file is read in
milliseconds, so the capture is replayed in steps: the exporter is restarted,
on the same port and under the same file name, on ever longer prefixes of the
capture, one step every STEP_SECONDS. Prometheus sees the counters climb as
it would on a live exporter (the analysis only looks forward in capture
time, so each counter of a prefix is at most the next prefix's: checked for
this capture when the test was written).

Both processes are stopped by PID and the temporary directory removed in
every case (class cleanups).
"""

import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

import yaml

from common import (EXPORTER, ROOT, RULES, dashboard_targets, dashboard_variables, free_port,
                    grafana_regex, http_get, load_dashboard, start, stop, substitute, tool,
                    wait_for)

SEED = 6
CONVERSATIONS = 1500  # about 50k segments: 960 RSTs, 8000 zero windows, 20% retransmitted
STEPS = 8
STEP_SECONDS = 2.0
TEST_FOR = "3s"  # `for:` of every rule in the test copy
CAPTURE_NAME = "heavy_loss.pcap"  # also the `interface` label

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

MUST_FIRE = {"TCPHighRetransmissionRatio", "TCPResetStorm", "TCPSustainedZeroWindow"}
MUST_NOT_FIRE = {"TCPExporterDown", "TCPExporterAbsent", "TCPExporterCaptureDrops",
                 "TCPExporterInterfaceDown", "TCPExporterFlowTableFull", "TCPExporterSeriesOverflow",
                 "TCPExporterFlowLogDrops", "TCPExporterLongConnectionsOverflow",
                 "TCPExporterHTTPConnectionLimit", "TCPExporterUnauthorizedRequests"}


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


class PrometheusEndToEnd(unittest.TestCase):
    prometheus = None
    exporter = None

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
        cls.addClassCleanup(lambda: stop(cls.exporter))
        cls.addClassCleanup(lambda: stop(cls.prometheus))

        full = os.path.join(cls.tmp, "full.pcap")
        subprocess.run([sys.executable, str(ROOT / "scripts" / "random-conversations.py"),
                        "--seed", str(SEED), "--count", str(CONVERSATIONS), full], check=True)
        cls.steps = split_pcap(full, STEPS, cls.tmp)

        cls.exporter_port = free_port()
        cls.exporter_url = "http://127.0.0.1:%d" % cls.exporter_port
        cls._serve(cls.steps[0])

        rules_text, n = shorten_for(RULES.read_text(), TEST_FOR)
        cls.rules = yaml.safe_load(RULES.read_text())
        cls.alert_rules = [r for g in cls.rules["groups"] for r in g["rules"] if "alert" in r]
        if n != len(cls.alert_rules):
            raise AssertionError("shortened %d `for:` lines, but the file has %d alerts" % (n, len(cls.alert_rules)))
        rules_path = os.path.join(cls.tmp, "rules.yml")
        with open(rules_path, "w") as f:
            f.write(rules_text)
        config_path = os.path.join(cls.tmp, "prometheus.yml")
        with open(config_path, "w") as f:
            yaml.safe_dump({
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
                "rule_files": [rules_path],
                "scrape_configs": [{
                    "job_name": "tcp-exporter",
                    "static_configs": [{"targets": ["127.0.0.1:%d" % cls.exporter_port]}],
                }],
            }, f)

        cls.prom_port = free_port()
        cls.prom_url = "http://127.0.0.1:%d" % cls.prom_port
        cls.prometheus = start([prometheus_bin, "--config.file=" + config_path,
                                "--storage.tsdb.path=" + os.path.join(cls.tmp, "data"),
                                "--web.listen-address=127.0.0.1:%d" % cls.prom_port,
                                "--log.level=warn"],
                               os.path.join(cls.tmp, "prometheus.log"))
        wait_for("Prometheus to be ready", lambda: cls._alive(cls.prometheus, "prometheus")
                 and http_get(cls.prom_url + "/-/ready")[0] == 200, 30)
        wait_for("Prometheus to scrape the exporter",
                 lambda: [s for s in cls.query('up{job="tcp-exporter"} == 1')], 30)

        # The replay: one longer prefix every STEP_SECONDS.
        for path in cls.steps[1:]:
            time.sleep(STEP_SECONDS)
            stop(cls.exporter)
            cls._serve(path)
        # Two more scrapes of the whole capture, and rule evaluations on them.
        time.sleep(2.5)
        print("\n  set-up (capture, Prometheus, %d-step replay): %.1f s" % (STEPS, time.monotonic() - started),
              file=sys.stderr)

    @classmethod
    def _serve(cls, pcap):
        cls.exporter = start([EXPORTER, "-r", pcap, "-p", cls.exporter_port, "--listen", "127.0.0.1",
                              "--long-connections", LONG_CONNECTIONS,
                              "--flow-log", os.path.join(cls.tmp, "flow.jsonl"),
                              "--flow-log-interval", FLOW_LOG_INTERVAL],
                             os.path.join(cls.tmp, "exporter.log"))
        wait_for("the exporter to have read %s" % pcap,
                 lambda: cls._alive(cls.exporter, "tcp-exporter")
                 and http_get(cls.exporter_url + "/readyz")[0] == 200, 20, interval=0.05)

    @classmethod
    def _alive(cls, proc, name):
        if proc.poll() is not None:
            raise AssertionError("%s exited with %s; its log:\n%s" % (name, proc.returncode, cls._logs()))
        return True

    @classmethod
    def _logs(cls):
        out = []
        for name in ("exporter.log", "prometheus.log"):
            p = os.path.join(cls.tmp, name)
            if os.path.exists(p):
                with open(p, errors="replace") as f:
                    out.append("--- %s\n%s" % (name, f.read()[-4000:]))
        return "\n".join(out)

    # ------------------------------------------------------------ API helpers
    @classmethod
    def api(cls, path, params=None):
        url = cls.prom_url + path
        if params:
            url += "?" + urllib.parse.urlencode(params, doseq=True)
        status, body = http_get(url, timeout=10)
        try:
            doc = json.loads(body)
        except ValueError:
            doc = {"status": "error", "error": "HTTP %d: %r" % (status, body[:200])}
        return doc

    @classmethod
    def query(cls, expr):
        """The result of an instant query; raises AssertionError with
        Prometheus' message if it fails (a parse error, say)."""
        doc = cls.api("/api/v1/query", {"query": expr})
        if doc.get("status") != "success":
            raise AssertionError("query failed: %s\n  %s" % (doc.get("error"), expr))
        data = doc["data"]
        if data["resultType"] in ("vector", "matrix"):
            return data["result"]
        return [{"metric": {}, "value": data["result"]}]

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
        status, text = http_get(self.exporter_url + "/metrics")
        self.assertEqual(status, 200)
        self.assertIn("tcp_retransmitted_segments_total{", text)
        r = subprocess.run([tool("promtool"), "check", "metrics"], input=text, capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, "promtool check metrics:\n%s%s" % (r.stdout, r.stderr))

    def test_2_every_rule_loaded_and_evaluates(self):
        names = {r["alert"] for r in self.alert_rules}

        def evaluated():
            rules = [r for g in self.api("/api/v1/rules")["data"]["groups"] for r in g["rules"]]
            return rules if all(r.get("health") != "unknown" for r in rules) else None

        rules = wait_for("every rule to be evaluated", evaluated, 20)
        self.assertEqual({r["name"] for r in rules}, names)
        for r in rules:
            self.assertEqual(r["health"], "ok", "%s: %s" % (r["name"], r.get("lastError")))

    def test_3_alert_expressions_parse(self):
        for rule in self.alert_rules:
            with self.subTest(alert=rule["alert"]):
                self.query(rule["expr"])

    def variable_values(self):
        """Each dashboard variable's values, found with its own query (Grafana's
        label_values(selector, label)), chained as Grafana chains them."""
        chosen = {}
        found = {}
        for name, q in dashboard_variables(load_dashboard()):
            m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\)\s*", q, re.S)
            self.assertIsNotNone(m, "variable %s: not a label_values() query: %s" % (name, q))
            selector = substitute(m.group(1), chosen)
            doc = self.api("/api/v1/label/%s/values" % m.group(2), {"match[]": selector})
            self.assertEqual(doc.get("status"), "success", "variable %s: %s" % (name, doc.get("error")))
            self.assertTrue(doc["data"], "variable %s finds no values: %s" % (name, q))
            found[name] = doc["data"]
            chosen[name] = grafana_regex(sorted(doc["data"])[0])
        return found, chosen

    def test_4_dashboard_variables_find_values(self):
        found, _ = self.variable_values()
        self.assertEqual(set(found), {"interface", "client", "server", "server_port"})
        self.assertEqual(found["interface"], [CAPTURE_NAME])

    def check_panels(self, values):
        targets = dashboard_targets(load_dashboard())
        self.assertGreater(len(targets), 30)
        for title, ref, expr in targets:
            with self.subTest(panel=title, query=ref):
                q = substitute(expr, values)
                result = self.query(q)
                self.assertTrue(result, "no data:\n  %s" % q)
                nums = self.numbers(result)
                self.assertTrue(any(not math.isnan(v) for v in nums), "only NaN:\n  %s" % q)

    def test_5_dashboard_queries_return_data_for_all_values(self):
        self.check_panels({name: ".*" for name in ("interface", "client", "server", "server_port")})

    def test_6_dashboard_queries_return_data_for_one_value_each(self):
        # A query that filters a metric by a label it does not carry (client on
        # the RTT histograms, say) finds nothing here, where `.*` matched.
        _, chosen = self.variable_values()
        self.check_panels(chosen)

    def alerts(self):
        return self.api("/api/v1/alerts")["data"]["alerts"]

    def test_7_loss_alerts_fire_and_the_others_do_not(self):
        deadline = time.monotonic() + 60
        while True:
            states = {(a["labels"]["alertname"], a["state"]) for a in self.alerts()}
            if MUST_FIRE <= {name for name, state in states if state == "firing"}:
                break
            if time.monotonic() > deadline:
                self.fail("after 60 s, %s should fire; the alerts are: %s" % (sorted(MUST_FIRE), sorted(states)))
            time.sleep(1)
        for a in self.alerts():
            if a["labels"]["alertname"] in MUST_FIRE:
                self.assertEqual(a["labels"].get("server"), "10.0.0.2")
                self.assertEqual(a["labels"].get("server_port"), "80")
            self.assertNotIn(a["labels"]["alertname"], MUST_NOT_FIRE,
                             "%s is %s: %s" % (a["labels"]["alertname"], a["state"], a["labels"]))

    def test_8_exporter_down_fires_when_the_exporter_stops(self):
        stop(self.exporter)

        def down():
            return [a for a in self.alerts()
                    if a["labels"]["alertname"] == "TCPExporterDown" and a["state"] == "firing"]

        alerts = wait_for("TCPExporterDown to fire", down, 30, interval=1)
        self.assertEqual(alerts[0]["labels"]["instance"], "127.0.0.1:%d" % self.exporter_port)


if __name__ == "__main__":
    unittest.main()

"""The Grafana dashboard (docs/grafana/qwen-gateway.json) against a real Prometheus.

No Grafana can run here (it is not in Debian), so the dashboard's queries are checked where their data lives:
a real `prometheus` (Debian's package) scrapes a real gateway every second, openai-python drives a small load
through the gateway against the emulator (whole answers, streams, errors, a throttling retry, a quota that
rotates to the second account and leaves the first cooling down), and every target of every panel runs
through Prometheus's HTTP API with Grafana's variables replaced by fixed values. A panel whose query finds
nothing (or only NaN) fails the test with its title.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from helpers.home import CODING_PLAN, Home
from helpers.procs import ROOT, _stop, free_port

DASHBOARD = ROOT / "docs" / "grafana" / "qwen-gateway.json"
PROMETHEUS_YML = ROOT / "docs" / "grafana" / "prometheus.yml"
PROVISIONING = ROOT / "docs" / "grafana" / "provisioning"
PROMETHEUS = shutil.which("prometheus")
# Grafana's variables as the test fixes them: windows long enough to hold the whole run, every gateway
VARIABLES = {"$__rate_interval": "2m", "$__range": "10m", "$instance": ".*"}
API = ("chat.completions", "responses")


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def targets(dash: dict) -> Iterator[tuple[str, str, str]]:
    """(panel title, refId, expr with the variables replaced) for every target of every panel."""
    for p in dash["panels"]:
        for t in p.get("targets", []):
            expr = t["expr"]
            for var, value in VARIABLES.items():
                expr = expr.replace(var, value)
            yield p["title"], t["refId"], expr


def test_the_dashboard_is_provisioning_ready():
    """Loads as JSON; a uid; a schema of Grafana 10/11; a `datasource` variable of type prometheus that every
    panel and every target uses; unique panel ids; every panel has a query, a unit, and no variable left
    that the Prometheus test does not fix."""
    dash = dashboard()
    assert dash["uid"] == "qwen-gateway" and dash["title"]
    assert 36 <= dash["schemaVersion"] <= 41  # Grafana 10.0 … 11.x
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(ids)}"
    titles = [p["title"] for p in dash["panels"]]
    assert len(titles) == len(set(titles)), "a failing panel is named by its title: titles must be unique"
    ours = {"type": "prometheus", "uid": "${datasource}"}
    assert variables["instance"]["datasource"] == ours
    for p in dash["panels"]:
        assert p.get("datasource") == ours, p["title"]
        assert p["targets"], f"{p['title']}: no query"
        assert p["fieldConfig"]["defaults"].get("unit"), f"{p['title']}: no unit"
        assert {"x", "y", "w", "h"} <= set(p["gridPos"]), p["title"]
        for t in p["targets"]:
            assert t.get("datasource") == ours and t["expr"], (p["title"], t["refId"])
    left = {v for _, _, expr in targets(dash) for v in re.findall(r"\$\{?\w+", expr)}
    assert left == set(), f"variables the Prometheus test does not replace: {left}"


def test_the_provisioning_files_point_where_the_docs_copy_the_dashboard():
    from ruamel.yaml import YAML  # mitmproxy's YAML library: always installed with the gateway
    yaml = YAML(typ="safe")
    provider = yaml.load((PROVISIONING / "dashboards" / "qwen-gateway.yaml").read_text())
    assert provider["apiVersion"] == 1
    assert provider["providers"][0]["type"] == "file"
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards/qwen-gateway"
    assert "/var/lib/grafana/dashboards/qwen-gateway" in (ROOT / "docs" / "observability.md").read_text()
    source = yaml.load((PROVISIONING / "datasources" / "prometheus.yaml").read_text())
    assert [d["type"] for d in source["datasources"]] == ["prometheus"]


# ---- against a real Prometheus ---------------------------------------------------------------------------


class Prometheus:
    def __init__(self, workdir: Path, gateway_port: int) -> None:
        text = PROMETHEUS_YML.read_text()
        assert "127.0.0.1:8080" in text and "scrape_interval: 15s" in text  # the shipped example, retargeted
        text = text.replace("127.0.0.1:8080", f"127.0.0.1:{gateway_port}").replace(
            "scrape_interval: 15s", "scrape_interval: 1s\n  scrape_timeout: 1s")
        self.config = workdir / "prometheus.yml"
        self.config.write_text(text)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.logfile = workdir / "prometheus.log"
        self.proc = subprocess.Popen(
            [str(PROMETHEUS), f"--config.file={self.config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=open(self.logfile, "w"), stderr=subprocess.STDOUT, cwd=str(workdir))
        self.http = httpx.Client(base_url=self.url, timeout=10, trust_env=False)

    def ready(self, timeout: float = 60) -> None:
        """Until /-/ready answers 200 (the TSDB opened, the scrape loop running)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.http.get("/-/ready").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert self.proc.poll() is None, "prometheus exited:\n" + self.log()
            assert time.monotonic() < deadline, f"prometheus not ready within {timeout} s:\n" + self.log()
            time.sleep(0.2)

    def log(self) -> str:
        return self.logfile.read_text() if self.logfile.exists() else ""

    def query(self, expr: str) -> list[dict]:
        r = self.http.get("/api/v1/query", params={"query": expr})
        assert r.status_code == 200, f"{expr}: {r.status_code} {r.text}"
        data = r.json()["data"]
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def wait(self, expr: str, ok, what: str, timeout: float = 30) -> list[dict]:
        """Query until `ok(result)`, at most `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                result = self.query(expr)
                if ok(result):
                    return result
            except httpx.HTTPError:
                result = []
            if time.monotonic() > deadline:
                raise AssertionError(f"Prometheus: {what} not within {timeout} s ({expr} -> {result})\n" + self.log())
            assert self.proc.poll() is None, "prometheus exited:\n" + self.log()
            time.sleep(0.25)

    def stop(self) -> None:
        self.http.close()
        _stop(self.proc)


def values(result: list[dict]) -> list[float]:
    return [float(r["value"][1]) for r in result]


def api_total(gw) -> float:
    """The gateway's own count of API requests now (what Prometheus must have scraped)."""
    text = httpx.get(gw.url + "/metrics", trust_env=False, timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("qwen_requests_total{") and any(f'endpoint="{e}"' in line for e in API):
            total += float(line.rsplit(" ", 1)[1])
    return total


def scraped(prom: Prometheus, gw, expected: int) -> None:
    """Wait (bounded) until the gateway has counted the `expected` API requests (its observers count an
    exchange just after the client has its answer), then until Prometheus has scraped them."""
    deadline = time.monotonic() + 20
    while (counted := api_total(gw)) != expected:
        assert counted < expected and time.monotonic() < deadline, f"the gateway counted {counted:g}, not {expected}"
        time.sleep(0.1)
    prom.wait(f'sum(qwen_requests_total{{endpoint=~"{"|".join(API)}"}})',
              lambda r: values(r) == [expected], f"{expected:g} API requests scraped")


def load(gw, emu, *, failing_stream: bool) -> int:
    """One round: a whole answer, a chat stream, a Responses stream, a refused prompt; optionally a stream that
    breaks after its 200. Returns how many API requests it sent."""
    import openai
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0, timeout=30)
    msgs = [{"role": "user", "content": "dashboard " * 20}]
    assert c.chat.completions.create(model="gpt-4o", messages=msgs).choices[0].message.content
    chunks = list(c.chat.completions.create(model="gpt-4o", messages=msgs, stream=True,
                                            stream_options={"include_usage": True}))
    assert any(ch.choices and ch.choices[0].delta.content for ch in chunks)
    events = [e.type for e in c.responses.create(model="gpt-4o", input="dashboard", stream=True)]
    assert events[-1] == "response.completed", events
    emu.fault("context400")
    with pytest.raises(openai.BadRequestError):
        c.chat.completions.create(model="gpt-4o", messages=msgs)
    if failing_stream:
        emu.fault("midstream504", count=3)  # each continuation breaks too: the stream's error after two
        with pytest.raises(openai.APIError):
            list(c.chat.completions.create(model="gpt-4o", messages=msgs, stream=True))
    return 5 if failing_stream else 4


@pytest.mark.e2e
@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus is not installed (Debian package `prometheus`; "
                    "scripts/install-test-tools.sh installs it)")
def test_every_panel_has_data_in_a_real_prometheus(make_gateway, emu, tmp_path):
    import openai
    home = Home(tmp_path, emu)
    key_a = home.key("a", path=CODING_PLAN, key_env="KEY_A", default_model="qwen3-coder-plus")
    home.key("b", path=CODING_PLAN, key_env="KEY_B", default_model="qwen3-coder-plus")
    gw = make_gateway("dash", env=home.env())
    emu.switches(usage_cached_tokens=16)
    prom = Prometheus(tmp_path, gw.port)
    try:
        prom.ready()
        prom.wait('up{job="qwen-gateway"}', lambda r: values(r) == [1.0], "the gateway's target up")
        c = openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0, timeout=30)
        # a quota error on account a: the gateway rotates to b (no client error), a cools down until the reset
        emu.fault("quota429", token=key_a)
        for _ in range(2):  # round-robin: one of the two goes to a first
            c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "rotate"}])
        # throttled once: the gateway waits Qwen's Retry-After and sends the request again
        emu.fault("throttle429", retry_after=1)
        c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "patience"}])
        sent = 3 + load(gw, emu, failing_stream=False)
        scraped(prom, gw, sent)
        # a second round, so that every rate() sees its counters move between two scrapes
        sent += load(gw, emu, failing_stream=True)
        scraped(prom, gw, sent)

        dash = dashboard()
        empty = []
        for title, ref, expr in targets(dash):
            found = [v for v in values(prom.query(expr)) if not math.isnan(v)]
            if not found:
                empty.append(f"{title} [{ref}]: {expr}")
        assert not empty, "panels with no data:\n" + "\n".join(empty)
        labels = prom.http.get("/api/v1/label/instance/values", params={"match[]": "qwen_requests_total"}).json()
        assert labels["data"] == [f"127.0.0.1:{gw.port}"]  # the Gateway variable's values

        def panel(title: str) -> dict[str, float]:
            (_, _, expr), = [t for t in targets(dash) if t[0] == title]
            return {r["metric"].get("account", ""): float(r["value"][1]) for r in prom.query(expr)}

        # the figures behind the panels are the load's
        cooldown = panel("Account cooldown: time left")
        assert cooldown["a"] > 0 and cooldown["b"] == 0, cooldown
        assert panel("Usable accounts") == {"": 1.0}  # b; a cools down
        assert panel("Account rotations (range)")[""] > 0
        assert panel("Retries (range)")[""] >= 2  # rotated + throttled (increase() extrapolates, never below)
        reasons = {r["metric"]["reason"] for r in prom.query('qwen_retries_total > 0')}
        # the breaking stream continued twice (its pooled connection to the emulator may have been found closed)
        assert {"rotated", "throttled", "continued"} <= reasons <= {"rotated", "throttled", "continued", "reconnected"}
        codes = {r["metric"]["code"] for r in prom.query("qwen_errors_total")}
        assert {"context_length_exceeded", "504"} <= codes, codes
        assert panel("Streams open") == {"": 0.0}
    finally:
        prom.stop()

"""Prometheus metrics: the Metrics observer (its own registry, exposition, every exchange counted)."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from qwen_gateway.exchange import RetryReason
from qwen_gateway.observe.metrics import Metrics
from helpers.observe_testlib import answered, config, exchange, local, refused, retry

REFRESHED, ROTATED, THROTTLED, RECONNECTED = (RetryReason.REFRESHED, RetryReason.ROTATED, RetryReason.THROTTLED,
                                              RetryReason.RECONNECTED)


def scrape(m: Metrics) -> dict[tuple, float]:
    assert m.content_type.startswith("text/plain; version=")
    out = {}
    for fam in text_string_to_metric_families(m.exposition().decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def finish(m: Metrics, ex) -> None:
    m.finished(ex, answered(ex))


def req(s, status, account="default", upstream="coder-model", endpoint="chat.completions", model="gpt-4o", key=""):
    return s.get(("qwen_requests_total", (("account", account), ("endpoint", endpoint), ("key", key),
                                          ("model", model), ("status", status), ("upstream_model", upstream))), 0)


def test_a_fresh_registry_has_the_label_less_series_and_every_retry_reason_at_zero():
    """A counter series that appears at its first increment hides that increment from rate() and increase():
    the retry reasons are known in advance, so their series exist from the start."""
    s = scrape(Metrics())
    assert {(k[0], k[1]): v for k, v in s.items() if not k[0].endswith("_created")} == {
        ("qwen_account_rotations_total", ()): 0, ("qwen_streams_in_flight", ()): 0,
        **{("qwen_retries_total", (("reason", r.value),)): 0 for r in RetryReason}}


def test_counts_requests_tokens_latency_and_typed_retries():
    m = Metrics()
    m.configure(config())
    finish(m, exchange(ttfb_ms=85.0, stream=True))
    finish(m, exchange(retries=(retry(REFRESHED), retry(ROTATED)), account="ds", upstream_model="qwen3-coder-plus"))
    finish(m, exchange(retries=(retry(THROTTLED, wait_s=1.0),)))
    finish(m, exchange(retries=(retry(RECONNECTED),)))
    # a quota error with no account left: the gateway did not send it again, so no Retry
    finish(m, exchange(status=429, usage=None, error=(429, "insufficient_quota", "m"),
                       notes=("quota exhausted on ds: rotated",)))
    finish(m, exchange(status=None, usage=None, error=(502, "x", "reset")))
    s = scrape(m)
    assert (req(s, "200"), req(s, "200", "ds", "qwen3-coder-plus"), req(s, "429"), req(s, "502")) == (3, 1, 1, 1)
    assert s[("qwen_tokens_total", (("account", "default"), ("key", ""), ("kind", "prompt"), ("model", "coder-model")))] == 3 * 1180
    assert s[("qwen_tokens_total", (("account", "default"), ("key", ""), ("kind", "cached"), ("model", "coder-model")))] == 3 * 1024
    assert s[("qwen_tokens_total", (("account", "ds"), ("key", ""), ("kind", "completion"), ("model", "qwen3-coder-plus")))] == 42
    hist = (("endpoint", "chat.completions"), ("model", "coder-model"))
    assert s[("qwen_request_duration_seconds_count", hist)] == 5
    assert abs(s[("qwen_request_duration_seconds_sum", hist)] - 5 * 1.31) < 1e-6
    assert s[("qwen_time_to_first_byte_seconds_count", hist)] == 1
    retries = {dict(k[1])["reason"]: v for k, v in s.items() if k[0] == "qwen_retries_total" and v}
    assert retries == {"refreshed": 1, "rotated": 1, "throttled": 1, "reconnected": 1}  # notes are not read
    assert s[("qwen_account_rotations_total", ())] == 1
    assert s[("qwen_streams_in_flight", ())] == 0


def test_every_exchange_is_counted_local_answers_by_route():
    m = Metrics()
    finish(m, local("models"))
    finish(m, local("health", path="/health"))
    finish(m, local("metrics", path="/metrics"))
    finish(m, refused(404, "unknown_url", "Unknown request URL", endpoint=None, route="unknown", path="/v2/x"))
    finish(m, refused(503, "no_usable_account", "No Qwen account can answer now."))
    finish(m, refused(400, "context_length_exceeded", "too long", model="gpt-4o-mini"))
    s = scrape(m)
    for route in ("models", "health", "metrics"):
        assert req(s, "200", account="", upstream="", endpoint=route, model="") == 1, route
    assert req(s, "404", account="", upstream="", endpoint="unknown", model="gpt-4o") == 1
    assert req(s, "503", account="", upstream="") == 1
    assert req(s, "400", account="", upstream="", model="gpt-4o-mini") == 1
    # API requests refused locally have a latency; local answers add nothing to the histograms
    durations = {dict(k[1])["model"]: v for k, v in s.items() if k[0] == "qwen_request_duration_seconds_count"}
    assert durations == {"gpt-4o": 1, "gpt-4o-mini": 1}


def test_streams_in_flight():
    m = Metrics()
    a, b, plain = exchange(stream=True), exchange(stream=True), exchange()
    for ex in (a, b):
        m.stream_started(ex, answered(ex))
    m.stream_started(a, answered(a))  # a second call does not count twice
    assert m.streams == 2
    finish(m, a)
    assert m.streams == 1
    finish(m, plain)  # never streamed: the gauge is not touched
    assert m.streams == 1
    m.configure(config(metrics=False))
    finish(m, b)  # switched off meanwhile: the gauge still returns to zero
    assert m.streams == 0


def test_recording_off_with_metrics_false():
    m = Metrics()
    m.configure(config(metrics=False))
    finish(m, exchange())
    m.stream_started(exchange(stream=True), None)
    s = scrape(m)
    assert not any(k[0] == "qwen_requests_total" for k in s) and m.streams == 0


def test_own_registry_not_the_global_one():
    a, b = Metrics(), Metrics()
    finish(a, exchange())
    assert a.registry is not REGISTRY and a.registry is not b.registry
    assert "qwen_requests_total" not in {s.name for fam in REGISTRY.collect() for s in fam.samples}
    assert req(scrape(a), "200") == 1 and req(scrape(b), "200") == 0


class StatusPool:
    """What the metrics read of the account pool: its public status rows (as /health shows them)."""

    def __init__(self, rows: list[dict]) -> None:
        self.rows = rows
        self.calls = 0

    def status(self) -> list[dict]:
        self.calls += 1
        return [dict(r) for r in self.rows]


def iso_in(seconds: float) -> str:
    import time
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + seconds))


def scrape_with(m: Metrics, pool) -> dict[tuple, float]:
    out = {}
    for fam in text_string_to_metric_families(m.exposition(pool).decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_account_gauges_are_read_from_the_pool_at_scrape_time_only():
    m = Metrics()
    pool = StatusPool([
        {"name": "a", "kind": "key", "state": "cooling_down", "cooldown_until": iso_in(3600),
         "requests_today": 7, "last_error": "quota exhausted"},
        {"name": "default", "kind": "oauth", "state": "ok", "cooldown_until": None, "requests_today": 2},
        {"name": "old", "kind": "oauth", "state": "needs_login", "cooldown_until": None, "requests_today": 0},
        {"name": "accounts.json", "kind": "config", "state": "error", "cooldown_until": None, "requests_today": 0},
    ])
    finish(m, exchange())
    assert pool.calls == 0  # nothing on the request path
    s = scrape_with(m, pool)
    assert pool.calls == 1
    left = s[("qwen_account_cooldown_seconds", (("account", "a"),))]
    assert 3590 < left <= 3600
    assert s[("qwen_account_cooldown_seconds", (("account", "default"),))] == 0
    usable = {dict(k[1])["account"]: v for k, v in s.items() if k[0] == "qwen_account_usable"}
    assert usable == {"a": 0, "default": 1, "old": 0}  # a broken accounts.json is not an account
    assert s[("qwen_account_requests_today", (("account", "a"),))] == 7
    states = {k[1]: v for k, v in s.items() if k[0] == "qwen_account_state"}
    assert states == {(("account", "a"), ("kind", "key"), ("state", "cooling_down")): 1,
                      (("account", "default"), ("kind", "oauth"), ("state", "ok")): 1,
                      (("account", "old"), ("kind", "oauth"), ("state", "needs_login")): 1}
    # a cooldown that is over reads 0, never negative; the next scrape reads the pool again
    pool.rows[0].update(state="ok", cooldown_until=iso_in(-30))
    s = scrape_with(m, pool)
    assert s[("qwen_account_cooldown_seconds", (("account", "a"),))] == 0
    assert s[("qwen_account_usable", (("account", "a"),))] == 1
    assert pool.calls == 2


def test_no_pool_or_a_failing_pool_still_gives_the_request_metrics():
    class Broken:
        def status(self):
            raise RuntimeError("database gone")

    m = Metrics()
    finish(m, exchange())
    for pool in (None, Broken()):
        s = scrape_with(m, pool)
        assert req(s, "200") == 1
        assert not any(k[0].startswith("qwen_account_") and not k[0].startswith("qwen_account_rotations")
                       for k in s)


def test_errors_are_counted_by_endpoint_account_and_code_mid_stream_failures_included():
    m = Metrics()
    finish(m, exchange())  # served: no error
    finish(m, exchange(status=429, usage=None, error=(429, "insufficient_quota", "m")))
    finish(m, refused(400, "context_length_exceeded", "too long"))
    finish(m, refused(404, "unknown_url", "Unknown request URL", endpoint=None, route="unknown", path="/v2/x"))
    # a stream that broke after its 200 went out: the client got an error event, not an error status
    finish(m, exchange(stream=True, ttfb_ms=40.0, stream_error="Qwen ended the stream before the answer was complete."))
    s = scrape(m)
    errors = {(dict(k[1])["endpoint"], dict(k[1])["account"], dict(k[1])["code"]): v
              for k, v in s.items() if k[0] == "qwen_errors_total"}
    assert errors == {("chat.completions", "default", "insufficient_quota"): 1,
                      ("chat.completions", "", "context_length_exceeded"): 1,
                      ("unknown", "", "unknown_url"): 1,
                      ("chat.completions", "default", "stream_error"): 1}


def test_account_gauges_from_a_real_pool_after_a_quota_error(tmp_path):
    """The rows come from the real pool (upstream/pool/pool.py): a change to how it reports cooldowns fails here."""
    from qwen_gateway.accounts import Outcome
    from qwen_gateway.auth.key_account import KeyAccount
    from qwen_gateway.upstream.pool.pool import AccountPool
    from qwen_gateway.auth.state import AccountState

    accounts = [KeyAccount({"name": n, "kind": "key", "base_url": "http://127.0.0.1:9/v1", "key": "sk-test-" + n})
                for n in ("a", "b")]
    pool = AccountPool(accounts, AccountState(tmp_path / "state.sqlite3"))
    try:
        pool.report("a", Outcome.QUOTA, retry_after=600)
        pool.report("b", Outcome.OK)
        text = Metrics().exposition(pool)
        s = scrape_with(Metrics(), pool)
    finally:
        pool.close()
    assert 590 <= s[("qwen_account_cooldown_seconds", (("account", "a"),))] <= 600
    assert s[("qwen_account_cooldown_seconds", (("account", "b"),))] == 0
    assert {k[1][0][1]: v for k, v in s.items() if k[0] == "qwen_account_usable"} == {"a": 0, "b": 1}
    assert s[("qwen_account_requests_today", (("account", "b"),))] == 1
    assert s[("qwen_account_state", (("account", "a"), ("kind", "key"), ("state", "cooling_down")))] == 1
    assert b'account="a"' in text and b"sk-test" not in text  # never a key (the rows /health shows)


def test_what_qwen_taught_and_its_unknown_refusals_are_scraped(tmp_path):
    from prometheus_client.parser import text_string_to_metric_families as families
    from qwen_gateway.models.learned import LearnedFacts

    learned = LearnedFacts(tmp_path)
    learned.learn("qwen3.8-flash", "output", 32768)
    learned.learn("old", "output", 9000, now=1.0)  # past its day: not held, not a gauge
    learned.unknown["qwen4-flash"] = 2
    text = Metrics().exposition(None, learned).decode()
    s = {(x.name, tuple(sorted(x.labels.items()))): x.value for f in families(text) for x in f.samples}
    assert s[("qwen_learned_fact", (("fact", "output"), ("model", "qwen3.8-flash")))] == 32768
    assert not any(k[0] == "qwen_learned_fact" and ("model", "old") in k[1] for k in s)
    assert s[("qwen_unknown_refusals_total", (("model", "qwen4-flash"),))] == 2
    learned.close()


# ---- the exposition pinned: what scrapers read, whatever keeps the numbers -----------------------------------

EXPLICIT = {"prompt_tokens": 3000, "completion_tokens": 100,
            "prompt_tokens_details": {"cached_tokens": 1500, "cache_creation_input_tokens": 1000}}


def timed(ex, seconds: float, ttfb: float | None = None):
    """Exact durations (on the buckets' bounds, past the last one)."""
    ex.started, ex.result.ended = 1000.0, 1000.0 + seconds
    if ttfb is not None:
        ex.result.first_byte_at = 1000.0 + ttfb
    return ex


def record_a_fixed_set(m: Metrics) -> None:
    """Streams (one still in flight), retries, a quota error, USD and plan costs, a cache write and a negative
    saving, durations on bucket bounds and past the last, a broken stream, refusals and a local answer."""
    m.configure(config())
    a = timed(exchange(stream=True), 1.31, ttfb=0.05)
    a.key.name = "team"
    m.stream_started(a, answered(a))
    finish(m, a)
    b = timed(exchange(retries=(retry(REFRESHED), retry(ROTATED)), account="ds", upstream_model="qwen3-coder-plus"),
              0.5)
    b.result.usage, b.result.cost, b.result.cost_unit, b.result.cache_saved = EXPLICIT, 0.00123, "USD", 0.0004
    finish(m, b)
    finish(m, timed(exchange(status=429, usage=None, error=(429, "insufficient_quota", "m")), 0.05))
    d = timed(exchange(account="plan", retries=(retry(THROTTLED, wait_s=1.0),)), 700.0, ttfb=10.0)
    d.result.cost, d.result.cost_unit, d.result.cache_saved = 1, "requests", -0.0002
    finish(m, d)
    e = timed(exchange(stream=True, stream_error="Qwen ended the stream"), 2.0, ttfb=0.001)
    e.result.cuts = 1  # Qwen's stream broke, and the answer ended in its error
    m.stream_started(e, answered(e))
    finish(m, e)
    for ex in (refused(400, "context_length_exceeded", "too long", model="gpt-4o-mini"), local("models"),
               refused(404, "unknown_url", "Unknown", endpoint=None, route="unknown", path="/v2/x")):
        finish(m, ex)
    f = exchange(stream=True)
    m.stream_started(f, answered(f))  # still in flight


FAMILIES = [("qwen_requests", "counter"), ("qwen_tokens", "counter"), ("qwen_cost_usd", "counter"),
            ("qwen_cache_saved_usd", "gauge"), ("qwen_cache_read_share", "gauge"), ("qwen_cache_misses", "counter"),
            ("qwen_cache_miss_tokens", "counter"), ("qwen_unpriced_requests", "counter"), ("qwen_plan_units", "counter"),
            ("qwen_request_duration_seconds", "histogram"), ("qwen_time_to_first_byte_seconds", "histogram"),
            ("qwen_retries", "counter"), ("qwen_account_rotations", "counter"), ("qwen_stream_cuts", "counter"),
            ("qwen_errors", "counter"),
            ("qwen_native_requests", "counter"), ("qwen_cache_fixes", "counter"), ("qwen_streams_in_flight", "gauge"),
            ("qwen_account_cooldown_seconds", "gauge"), ("qwen_account_usable", "gauge"),
            ("qwen_account_requests_today", "gauge"), ("qwen_account_state", "gauge"), ("qwen_learned_fact", "gauge"),
            ("qwen_unknown_refusals", "counter")]
CREATED = {"qwen_requests", "qwen_tokens", "qwen_cost_usd", "qwen_plan_units", "qwen_request_duration_seconds",
           "qwen_time_to_first_byte_seconds", "qwen_retries", "qwen_account_rotations", "qwen_stream_cuts",
           "qwen_errors"}
LE_DURATION = ("0.05", "0.1", "0.25", "0.5", "1.0", "2.0", "5.0", "10.0", "20.0", "30.0", "60.0", "120.0", "300.0",
               "600.0", "+Inf")
LE_TTFB = ("0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.0", "5.0", "10.0", "30.0", "60.0", "120.0", "+Inf")


def series(name: str, labelnames: str, rows: list[tuple]) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} from rows of label values then the value."""
    names = labelnames.split()
    return {(name, tuple(sorted(zip(names, row[:-1])))): row[-1] for row in rows}


def histogram(name: str, les: tuple[str, ...], rows: list[tuple]) -> dict[tuple, float]:
    """The samples of histogram series from rows of (endpoint, model, cumulative bucket counts, sum)."""
    out = {}
    for endpoint, model, counts, total in rows:
        labels = (("endpoint", endpoint), ("model", model))
        out.update({(name + "_bucket", (*labels[:1], ("le", le), *labels[1:])): n for le, n in zip(les, counts)})
        out[(name + "_count", labels)], out[(name + "_sum", labels)] = counts[-1], total
    return out


CH = "chat.completions"
EXPECTED = {
    **series("qwen_requests_total", "endpoint model upstream_model account status key", [
        (CH, "gpt-4o", "coder-model", "default", "200", "team", 1),
        (CH, "gpt-4o", "qwen3-coder-plus", "ds", "200", "", 1),
        (CH, "gpt-4o", "coder-model", "default", "429", "", 1), (CH, "gpt-4o", "coder-model", "plan", "200", "", 1),
        (CH, "gpt-4o", "coder-model", "default", "200", "", 1), (CH, "gpt-4o-mini", "", "", "400", "", 1),
        ("models", "", "", "", "200", "", 1), ("unknown", "gpt-4o", "", "", "404", "", 1)]),
    **series("qwen_tokens_total", "kind model account key", [
        ("prompt", "coder-model", "default", "team", 1180), ("completion", "coder-model", "default", "team", 42),
        ("cached", "coder-model", "default", "team", 1024), ("prompt", "qwen3-coder-plus", "ds", "", 3000),
        ("completion", "qwen3-coder-plus", "ds", "", 100), ("cached", "qwen3-coder-plus", "ds", "", 1500),
        ("cache_write", "qwen3-coder-plus", "ds", "", 1000), ("prompt", "coder-model", "plan", "", 1180),
        ("completion", "coder-model", "plan", "", 42), ("cached", "coder-model", "plan", "", 1024),
        ("prompt", "coder-model", "default", "", 1180), ("completion", "coder-model", "default", "", 42),
        ("cached", "coder-model", "default", "", 1024)]),
    **series("qwen_cost_usd_total", "model account key", [("qwen3-coder-plus", "ds", "", 0.00123)]),
    **series("qwen_cache_saved_usd", "model account key", [("qwen3-coder-plus", "ds", "", 0.0004),
                                                           ("coder-model", "plan", "", -0.0002)]),
    **series("qwen_cache_read_share", "model account key", [  # cached / prompt tokens
        ("coder-model", "default", "team", 0.8678), ("qwen3-coder-plus", "ds", "", 0.5), ("coder-model", "plan", "", 0.8678),
        ("coder-model", "default", "", 0.8678)]),
    **series("qwen_plan_units_total", "account unit key", [("plan", "requests", "", 1)]),
    **histogram("qwen_request_duration_seconds", LE_DURATION, [
        (CH, "coder-model", (1, 1, 1, 1, 1, 3, 3, 3, 3, 3, 3, 3, 3, 3, 4), 703.36),  # 0.05 on its bound, 700 past all
        (CH, "qwen3-coder-plus", (0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1), 0.5),
        (CH, "gpt-4o-mini", (1,) * 15, 0.002)]),
    **histogram("qwen_time_to_first_byte_seconds", LE_TTFB, [
        (CH, "coder-model", (1, 1, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3), 10.051)]),
    **series("qwen_retries_total", "reason", [(r.value, 1 if r in (REFRESHED, ROTATED, THROTTLED) else 0)
                                              for r in RetryReason]),
    ("qwen_account_rotations_total", ()): 1,
    **series("qwen_stream_cuts_total", "endpoint ended", [(CH, "error", 1)]),
    **series("qwen_errors_total", "endpoint account code", [
        (CH, "default", "insufficient_quota", 1), (CH, "default", "stream_error", 1),
        (CH, "", "context_length_exceeded", 1), ("unknown", "", "unknown_url", 1)]),
    ("qwen_streams_in_flight", ()): 1,
}


def test_the_exposition_is_pinned_families_types_samples_and_created_times():
    import time

    before = time.time()
    m = Metrics()
    record_a_fixed_set(m)
    after = time.time()
    families = list(text_string_to_metric_families(m.exposition().decode()))
    assert [(f.name, f.type) for f in families if not f.name.endswith("_created")] == FAMILIES
    assert [f.name for f in families if f.name.endswith("_created")] == [n + "_created" for n, _ in FAMILIES
                                                                        if n in CREATED]
    samples = [(s.name, tuple(sorted(s.labels.items())), s.value) for f in families for s in f.samples]
    values = {(name, labels): v for name, labels, v in samples if not name.endswith("_created")}
    assert values.keys() == EXPECTED.keys()
    assert all(abs(values[k] - v) < 1e-9 for k, v in EXPECTED.items()), {k: v for k, v in values.items()
                                                                         if abs(EXPECTED[k] - v) >= 1e-9}
    assert len(samples) == len(values) + sum(name.endswith("_created") for name, _, _ in samples)  # no duplicates
    # one _created per counter and histogram series: when it was first seen (the retries' at the start)
    created = {(name.removesuffix("_created"), labels): v for name, labels, v in samples if name.endswith("_created")}
    series_of = {(name.removesuffix("_total").removesuffix("_count"), labels) for name, labels, _ in samples
                 if name.endswith(("_total", "_count"))}
    assert created.keys() == series_of
    assert all(before <= t <= after for t in created.values())


def test_recording_calls_no_prometheus_client_metric(monkeypatch):
    """The request path adds to plain numbers (no child lookup, no lock): prometheus_client's metrics are not
    used at all, the exposition still has every value."""
    import prometheus_client.metrics as pm
    import prometheus_client.values as pv

    def used(*args, **kwargs):
        raise AssertionError("a prometheus_client metric was used")

    m = Metrics()
    for cls, method in ((pm.Counter, "inc"), (pm.Gauge, "inc"), (pm.Gauge, "dec"), (pm.Gauge, "set"),
                        (pm.Histogram, "observe"), (pm.MetricWrapperBase, "labels"), (pv.MutexValue, "inc")):
        monkeypatch.setattr(cls, method, used)
    record_a_fixed_set(m)
    s = scrape(m)
    assert {k: v for k, v in s.items() if not k[0].endswith("_created")} == pytest.approx(EXPECTED)


def test_past_max_series_every_series_starts_over_and_memory_stays_bounded(monkeypatch):
    """Model names come from clients: their label sets must not grow without end. Past the bound every series
    starts over as after a restart (the retry reasons and rotations again at 0); streams in flight are kept."""
    import qwen_gateway.observe.metrics as metrics_mod

    BOUND = 60  # above the series every gateway starts with (a retry reason, a miss cause each), below 200
    monkeypatch.setattr(metrics_mod, "MAX_SERIES", BOUND)
    m = Metrics()
    m.configure(config())
    s = exchange(stream=True)
    m.stream_started(s, answered(s))
    for i in range(200):
        finish(m, exchange(model=f"junk-{i}", upstream_model=f"junk-{i}", retries=(retry(ROTATED),)))
        assert len(m._created) <= BOUND
    scraped = scrape(m)
    requests = [k for k in scraped if k[0] == "qwen_requests_total"]
    assert 0 < len(requests) < BOUND and req(scraped, "200", model="junk-199", upstream="junk-199") == 1
    assert req(scraped, "200", model="junk-0", upstream="junk-0") == 0  # gone with the first start-over
    assert all(("qwen_retries_total", (("reason", r.value),)) in scraped for r in RetryReason)
    assert 0 < scraped[("qwen_account_rotations_total", ())] < 200
    assert scraped[("qwen_streams_in_flight", ())] == 1


def test_cache_read_share_and_misses_by_cause():
    from qwen_gateway.cache_turn import CacheTurn
    m = Metrics()
    hit = exchange(usage={"prompt_tokens": 3000, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 2400}})
    hit.result.cache = CacheTurn("c", 2, 3000, 2400, 0)
    miss = exchange(usage={"prompt_tokens": 1000, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 0}})
    miss.result.cache = CacheTurn("c", 3, 1000, 0, 0, "tool_order", 900, 0.0009)
    other = exchange(account="b", usage={"prompt_tokens": 10, "completion_tokens": 1})
    for ex in (hit, miss, other):
        finish(m, ex)
    s = scrape(m)
    share = (("account", "default"), ("key", ""), ("model", "coder-model"))
    assert s[("qwen_cache_read_share", share)] == 0.6  # 2400 of 4000 prompt tokens
    assert s[("qwen_cache_read_share", (("account", "b"), ("key", ""), ("model", "coder-model")))] == 0.0
    labels = (("account", "default"), ("cause", "tool_order"), ("key", ""), ("model", "coder-model"))
    assert s[("qwen_cache_misses_total", labels)] == 1
    assert s[("qwen_cache_miss_tokens_total", labels)] == 900


def test_what_a_cost_option_did_is_counted():
    """qwen_responses_native's own API and qwen_cache_fixes' changes, by API and fix; a translated request, or
    embeddings (a pass-through no option chose), count in neither."""
    from qwen_gateway.providers import Leg

    m = Metrics()
    native = exchange(path="/v1/responses", endpoint="responses")
    native.attempt.leg = Leg("responses", passthrough=True, base=lambda cred: "https://x/compatible-mode/v1")
    fixed = exchange()
    fixed.fixed.append("tool-order")
    embeddings = exchange(path="/v1/embeddings", endpoint="embeddings")
    embeddings.attempt.leg = Leg("embeddings", passthrough=True)
    for ex in (native, fixed, embeddings, exchange()):
        m.finished(ex, answered(ex))
    s = scrape(m)
    assert {k[1]: v for k, v in s.items() if k[0] == "qwen_native_requests_total"} == {
        (("account", "default"), ("api", "responses")): 1.0}
    assert {k[1]: v for k, v in s.items() if k[0] == "qwen_cache_fixes_total"} == {
        (("account", "default"), ("fix", "tool-order")): 1.0}

"""The request line: format_line (pure, over an Exchange) and the RequestLine observer — one line for
every exchange, local answers and refusals included."""

from __future__ import annotations

import logging

from qwen_gateway.exchange import RetryReason
from qwen_gateway.observe.requestlog import RequestLine, compact, format_line
from helpers.observe_testlib import answered, exchange, local, refused, retry


def test_the_line_of_the_readme():
    ex = exchange(prompt_tokens_est=1234, ttfb_ms=85.2)
    assert format_line(ex) == (
        "POST /v1/chat/completions gpt-4o→coder-model acct=default 200 est=1.2k in=1180 out=42 cached=1024 "
        "ttfb=85ms total=1.31s")


def test_short_totals_in_milliseconds():
    line = format_line(exchange(usage=None, duration_ms=85.4, ttfb_ms=3.2))
    assert line.endswith(" 200 ttfb=3ms total=85ms")


def test_unknown_parts_are_left_out():
    assert format_line(exchange(usage=None, path="/v1/responses", endpoint="responses")) == \
        "POST /v1/responses gpt-4o→coder-model acct=default 200 total=1.31s"
    bare = exchange(model="", upstream=False, status=None, usage=None, duration_ms=0.2, path="/x")
    assert format_line(bare) == "POST /x ?→? acct=- ? total=0ms"


def test_no_cached_part_without_cached_tokens_and_top_level_cached():
    assert format_line(exchange(usage={"prompt_tokens": 5, "completion_tokens": 7})).endswith(
        "in=5 out=7 total=1.31s")
    assert "in=5 out=7 cached=3 " in format_line(exchange(usage={"prompt_tokens": 5, "completion_tokens": 7,
                                                                 "cached_tokens": 3}))


def test_what_a_cost_option_did_is_on_the_line():
    """qwen_responses_native's own API (a pass-through pair with a base of its own), qwen_cache_fixes' changes;
    embeddings always pass through (no option): nothing said."""
    from qwen_gateway.providers import Leg

    native = exchange(path="/v1/responses", endpoint="responses", usage=None)
    native.attempt.leg = Leg("responses", passthrough=True, base=lambda cred: "https://x/compatible-mode/v1")
    assert format_line(native) == "POST /v1/responses gpt-4o→coder-model acct=default via=responses 200 total=1.31s"
    fixed = exchange(usage=None)
    fixed.fixed.append("tool-order")
    assert " acct=default fixed=tool-order 200 " in format_line(fixed)
    embeddings = exchange(path="/v1/embeddings", endpoint="embeddings", usage=None)
    embeddings.attempt.leg = Leg("embeddings", passthrough=True)
    assert " via=" not in format_line(embeddings)


def test_retries_and_errors():
    ex = exchange(status=429, usage=None, retries=(retry(RetryReason.ROTATED), retry(RetryReason.THROTTLED)),
                  error=(429, "insufficient_quota", "Quota exceeded."))
    assert format_line(ex).endswith("acct=default 429 total=1.31s retries=2 error=insufficient_quota 'Quota exceeded.'")
    line = format_line(exchange(stream=True, stream_error="x" * 500))
    assert line.endswith("…'") and len(line) < 250 and "\n" not in line


def test_status_comes_from_the_error_when_missing():
    ex = exchange(status=None, usage=None, error=(502, "upstream_connection_error", "connection reset"))
    assert " 502 " in format_line(ex)


def test_local_refusals_have_status_code_and_endpoint_or_route():
    """Issue: refusals left no line, and mitmproxy's own line read as if the request had gone to Qwen."""
    cases = [
        (refused(503, "no_usable_account", "No Qwen account can answer now: default is cooling down."),
         "POST /v1/chat/completions gpt-4o→? acct=- 503 total=2ms error=no_usable_account 'No Qwen account"),
        (refused(400, "invalid_json", "We could not parse the JSON body of your request.", model="", body={}),
         "POST /v1/chat/completions ?→? acct=- 400 total=2ms error=invalid_json 'We could not parse"),
        (refused(401, "invalid_api_key", "Incorrect API key provided.", path="/v1/responses", endpoint="responses"),
         "POST /v1/responses gpt-4o→? acct=- 401 total=2ms error=invalid_api_key 'Incorrect API key"),
        (refused(413, "request_too_large", "Request body over 32 MiB."),
         "POST /v1/chat/completions gpt-4o→? acct=- 413 total=2ms error=request_too_large "),
        (refused(404, "unknown_url", "Unknown request URL: POST /v1/chat/completion.", endpoint=None, route="unknown",
                path="/v1/chat/completion", model=""),
         "POST /v1/chat/completion route=unknown 404 total=2ms error=unknown_url 'Unknown request URL"),
        (refused(401, "invalid_api_key", "Incorrect API key provided.", endpoint=None, route="models", method="GET",
                path="/v1/models", model=""),
         "GET /v1/models route=models 401 total=2ms error=invalid_api_key "),
        (local("models"), "GET /v1/models route=models 200 total=0ms"),
        (local("health", path="/health"), "GET /health route=health 200 total=0ms"),
    ]
    for ex, start in cases:
        assert format_line(ex).startswith(start), format_line(ex)


def test_compact_numbers():
    assert [compact(n) for n in (0, 999, 1000, 1234, 99_999, 1_234_567)] == \
        ["0", "999", "1.0k", "1.2k", "100.0k", "1.23M"]


def test_observer_logs_one_info_line_per_exchange(caplog):
    rl = RequestLine()
    exchanges = [exchange(prompt_tokens_est=9), exchange(status=None, usage=None, error=(502, "x", "gone")),
                 local("models"), refused(503, "no_usable_account", "none")]
    with caplog.at_level(logging.INFO, logger="qwen"):
        for ex in exchanges:
            rl.finished(ex, answered(ex))
    records = [r for r in caplog.records if r.name == "qwen"]
    assert [r.getMessage() for r in records] == [format_line(ex) for ex in exchanges]
    assert records[0].getMessage().startswith("POST /v1/chat/completions gpt-4o→coder-model acct=default 200 est=9 in=")
    assert all(r.levelno == logging.INFO for r in records)


def test_the_path_is_the_clients_without_the_query():
    ex = exchange()
    ex.client = type(ex.client)("POST", "/v1/chat/completions", "http://h/v1/chat/completions?api-key=secret",
                                size=ex.client.size)
    assert format_line(ex).startswith("POST /v1/chat/completions ") and "secret" not in format_line(ex)


def test_error_messages_are_redacted_before_they_are_logged():
    """An upstream or OAuth error may echo a token: the line never carries it, even across the cut."""
    leak = 'token refresh failed: {"access_token": "tok-AAAA1111", "x": 1} (sent Bearer abcdefgh12345678)'
    line = format_line(exchange(status=401, usage=None, error=(401, "qwen_login_required", leak)))
    assert "tok-AAAA1111" not in line and "abcdefgh12345678" not in line
    assert '"access_token": "<redacted>"' in line and "Bearer <redacted>" in line
    across = "x" * 90 + " Bearer " + "s" * 40  # the token starts before the cut and ends after it
    line = format_line(exchange(stream_error=across))
    assert "ssssssss" not in line and line.endswith("…'")


class _Loop:
    def __init__(self) -> None:
        self.calls: list = []

    def call_soon_threadsafe(self, *args) -> None:
        self.calls.append(args)


def test_the_line_skips_mitmproxys_add_log_bridge_and_other_lines_do_not(caplog):
    """mitmproxy turns every record into an `add_log` event (a thread-safe wake-up and a visit to every
    addon): for one line per request that cost more than the line. Other records still go there."""
    from mitmproxy.log import LegacyLogEvents

    caplog.set_level(logging.INFO, logger="qwen")  # mitmproxy sets the root logger to DEBUG
    master = type("Master", (), {"event_loop": _Loop(), "addons": type("Addons", (), {"trigger": None})()})()
    bridge = LegacyLogEvents(master)
    shown = logging.Handler(logging.INFO)
    shown.emit = lambda record: shown.records.append(record)  # type: ignore[method-assign]
    shown.records = []  # type: ignore[attr-defined]
    root = logging.getLogger()
    root.addHandler(bridge)
    root.addHandler(shown)
    try:
        rl = RequestLine()
        rl.running()
        ex = exchange()
        rl.finished(ex, answered(ex))
        assert [r.getMessage() for r in shown.records] == [format_line(ex)]
        assert master.event_loop.calls == []
        logging.getLogger("qwen").warning("qwen: something else")
        assert len(master.event_loop.calls) == 1
    finally:
        root.removeHandler(bridge)
        root.removeHandler(shown)


def test_a_line_no_handler_shows_is_not_even_formatted(monkeypatch):
    """`-q`: the terminal log takes warnings only; the line is not built."""
    from qwen_gateway.observe import requestlog

    monkeypatch.setattr(logging.getLogger(), "handlers", [logging.Handler(logging.WARNING)])
    built = []
    monkeypatch.setattr(requestlog, "format_line", lambda ex: built.append(ex) or "line")
    ex = exchange()
    RequestLine().finished(ex, answered(ex))
    assert built == []


def test_a_lone_surrogate_in_the_model_name_still_makes_a_printable_line():
    """A client's model name `"\\ud83d"` (issue 31's fuzzer: the line's print raised UnicodeEncodeError)."""
    line = format_line(exchange(model="gpt\ud83d"))
    assert "gpt\ufffd→coder-model" in line
    line.encode("utf-8")


def test_an_unpriced_answer_says_so_never_a_cost_of_nothing():
    """Issue 59: `cost=unpriced` where nothing prices the model; whose price counted it under qwen_unpriced_as."""
    ex = exchange(upstream_model="qwen3.7-flash")
    ex.result.cost_unit = "unpriced"
    assert " cost=unpriced " in format_line(ex) and "$0" not in format_line(ex)
    ex.result.cost, ex.result.cost_unit, ex.result.priced_as = 0.00126, "USD", "qwen3-max"
    assert " cost=$0.001260 priced_as=qwen3-max " in format_line(ex)

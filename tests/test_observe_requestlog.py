"""The request line: format_line (pure) and the RequestLog addon."""

from __future__ import annotations

import asyncio
import logging

from mitmproxy import http
from mitmproxy.test import taddons, tflow

from qwen_gateway.observe import tokens
from qwen_gateway.observe.requestlog import RequestLog, compact, format_line
from qwen_gateway.observe.tokens import TokenCounter, wait_for_estimate
from helpers.observe_testlib import chat_body, client_flow, record, rerouted


def test_the_line_of_the_issue():
    meta = record(prompt_tokens_est=1234, ttfb_ms=85.2)
    assert format_line(meta, "POST", "/v1/chat/completions") == (
        "POST /v1/chat/completions gpt-4o→coder-model acct=default 200 est=1.2k in=1180 out=42 cached=1024 "
        "ttfb=85ms total=1.31s")


def test_short_totals_in_milliseconds():
    line = format_line(record(usage=None, duration_ms=85.4, ttfb_ms=3.2), "POST", "/v1/chat/completions")
    assert line.endswith(" 200 ttfb=3ms total=85ms")


def test_unknown_parts_are_left_out():
    meta = record(usage=None, duration_ms=None)
    assert format_line(meta, "POST", "/v1/responses") == "POST /v1/responses gpt-4o→coder-model acct=default 200"
    assert format_line({"endpoint": "chat.completions"}, "POST", "/x") == "POST /x ?→? acct=- ?"


def test_no_cached_part_without_cached_tokens_and_top_level_cached():
    meta = record(usage={"prompt_tokens": 5, "completion_tokens": 7})
    assert format_line(meta, "POST", "/v1/chat/completions").endswith("in=5 out=7 total=1.31s")
    meta = record(usage={"prompt_tokens": 5, "completion_tokens": 7, "cached_tokens": 3})
    assert "in=5 out=7 cached=3 " in format_line(meta, "POST", "/p")


def test_retries_and_errors():
    meta = record(status=429, usage=None, retries=2, error={"status": 429, "code": "insufficient_quota",
                                                             "message": "Quota exceeded."})
    assert format_line(meta, "POST", "/v1/chat/completions").endswith(
        "acct=default 429 total=1.31s retries=2 error=insufficient_quota 'Quota exceeded.'")
    meta = record(stream=True, stream_error="x" * 500)
    line = format_line(meta, "POST", "/v1/chat/completions")
    assert line.endswith("…'") and len(line) < 250


def test_status_comes_from_the_error_when_missing():
    meta = record(status=None, usage=None, error={"status": 502, "code": "upstream_connection_error",
                                                  "message": "connection reset"})
    assert " 502 " in format_line(meta, "POST", "/v1/chat/completions")


def test_compact_numbers():
    assert [compact(n) for n in (0, 999, 1000, 1234, 99_999, 1_234_567)] == \
        ["0", "999", "1.0k", "1.2k", "100.0k", "1.23M"]


def finished(meta: dict, path="/v1/chat/completions") -> http.HTTPFlow:
    f = tflow.tflow(resp=True)
    f.request.path = "/compatible-mode/v1/chat/completions"  # rerouted
    meta["client"]["url"] = f"http://127.0.0.1:8080{path}?x=1"
    f.metadata["qwen"] = meta
    return f


async def test_addon_logs_one_line_at_info_in_response_and_error(caplog):
    rl = RequestLog()
    with taddons.context(rl), caplog.at_level(logging.INFO, logger="qwen"):
        rl.response(finished(record(prompt_tokens_est=9)))
        f = finished(record(status=None, usage=None, error={"status": 502, "code": "x", "message": "gone"}))
        f.response = None
        f.error = tflow.terr()
        rl.error(f)
        rl.response(tflow.tflow(resp=True))  # not a gateway flow: no line
        f = tflow.tflow(resp=True)
        f.metadata["qwen"] = {"client": {"method": "GET", "url": "http://h/v1/models"}}  # local answer
        rl.response(f)
    lines = [r.getMessage() for r in caplog.records if r.name == "qwen"]
    assert lines[0].startswith("POST /v1/chat/completions gpt-4o→coder-model acct=default 200 est=9 in=1180")
    assert lines[1].startswith("POST /v1/chat/completions gpt-4o→coder-model acct=default 502")
    assert len(lines) == 2
    assert all(r.levelno == logging.INFO for r in caplog.records if r.name == "qwen")


async def test_line_waits_for_an_estimate_still_being_counted(caplog):
    counter, rl = TokenCounter(), RequestLog()
    body = chat_body(("lorem ipsum " * 100_000))
    with taddons.context(counter, rl), caplog.at_level(logging.INFO, logger="qwen"):
        f = client_flow(body)
        rerouted(f, body)
        counter.request(f)
        assert tokens.pending(f.id)
        f.metadata["qwen"].update(record())  # the gateway finishes the record
        f.response = http.Response.make(200, b"{}")
        rl.response(f)
        assert not [r for r in caplog.records if r.name == "qwen"]  # not yet: the count is running
        await wait_for_estimate(f.id, timeout=30)
        for _ in range(10):
            if [r for r in caplog.records if r.name == "qwen"]:
                break
            await asyncio.sleep(0.01)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "qwen"]
    assert f" est={compact(f.metadata['qwen']['prompt_tokens_est'])} in=1180" in line

"""Debug logs: DebugCapture (before the gateway) + DebugLog (after it), redaction, rotation, file mode."""

from __future__ import annotations

import asyncio
import json
import stat

import pytest
from mitmproxy import http
from mitmproxy.test import taddons, tflow

from qwen_gateway.observe import debuglog
from qwen_gateway.observe.debuglog import (
    DebugCapture, DebugLog, redact_headers, redact_text, redact_url, write_rotated,
)
from helpers.observe_testlib import GatewayOptions, chat_body, client_flow, record, rerouted

CLIENT_KEY = "sk-client-secret-key"
TOKEN = "tok-injected-oauth-secret"


def test_redact_text():
    assert redact_text("Authorization: Bearer abcdefghijkl") == "Authorization: Bearer <redacted>"
    assert redact_text(f"key {CLIENT_KEY}!") == "key sk-<redacted>!"
    assert redact_text('{"api_key": "x1", "access_token":"t\\"2", "refresh_token": "r"}') == \
        '{"api_key": "<redacted>", "access_token":"<redacted>", "refresh_token": "<redacted>"}'
    assert redact_text("the bearer of bad news; risk-averse task-management") == \
        "the bearer of bad news; risk-averse task-management"  # prose is left alone


def test_redact_headers_and_url():
    h = http.Headers(authorization=f"Bearer {TOKEN}", x_api_key="k", api_key="k2", cookie="c=1",
                     x_custom=f"Bearer {TOKEN}", accept="*/*")  # underscores become dashes
    out = redact_headers(h)
    assert out["authorization"] == out["x-api-key"] == out["api-key"] == out["cookie"] == "<redacted>"
    assert out["x-custom"] == "Bearer <redacted>" and out["accept"] == "*/*"
    assert redact_url("https://h/p?key=abc&alt=sse&token=t") == "https://h/p?key=<redacted>&alt=sse&token=<redacted>"


def test_rotation_keeps_the_newest_and_files_are_private(tmp_path):
    for i in range(5):
        write_rotated(tmp_path / "logs", {"flow": f"{i:08d}", "i": i}, keep=3)
    files = sorted((tmp_path / "logs").glob("exchange-*.json"))
    assert [json.loads(f.read_text())["i"] for f in files] == [2, 3, 4]
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    assert stat.S_IMODE((tmp_path / "logs").stat().st_mode) == 0o700


@pytest.fixture
def debug_ctx(tmp_path):
    opts, cap, dl = GatewayOptions(), DebugCapture(), DebugLog()
    with taddons.context(opts, cap, dl) as tctx:
        tctx.configure(opts, qwen_state_dir=str(tmp_path / "state"))
        tctx.configure(cap, qwen_debug_log=True, qwen_debug_log_count=3)
        yield tctx, cap, dl, tmp_path / "state" / "logs"


async def files_in(folder, n: int) -> list[dict]:
    for _ in range(500):
        files = sorted(folder.glob("exchange-*.json")) if folder.exists() else []
        if len(files) >= n:
            return [json.loads(f.read_text()) for f in files]
        await asyncio.sleep(0.01)
    raise AssertionError(f"{n} debug log files did not appear")


def exchange(cap, dl, *, stream=False, body=None) -> http.HTTPFlow:
    """One exchange through both addons, the gateway's part played by hand."""
    f = client_flow(body or chat_body("hello"), headers={"authorization": f"Bearer {CLIENT_KEY}"})
    cap.request(f)  # before the gateway
    rerouted(f, {"model": "coder-model", "messages": [{"role": "user", "content": "hello"}]}, token=TOKEN)
    dl.request(f)  # after the gateway
    upstream = {"id": "q1", "model": "coder-model", "choices": [{"message": {"content": "hi"}}]}
    f.response = http.Response.make(200, json.dumps(upstream), {"content-type": "application/json",
                                                                  "set-cookie": "s=secret"})
    if stream:
        f.response.headers["content-type"] = "text/event-stream"
        f.response.stream = lambda chunk: chunk
        f.response.raw_content = None
    cap.response(f)  # before the gateway rewrites Qwen's answer
    if stream:
        f.response.raw_content = b'data: {"choices":[]}\n\ndata: [DONE]\n\n'  # the gateway keeps what it sent
    else:
        f.response = http.Response.make(200, json.dumps({"id": "chatcmpl-1", "object": "chat.completion"}),
                                        {"content-type": "application/json"})
    f.request.headers["authorization"] = "Bearer <redacted>"  # the gateway redacts after sending
    f.metadata["qwen"].update(record(stream=stream))
    dl.response(f)
    return f


async def test_whole_exchange_in_one_file_without_secrets(debug_ctx):
    _, cap, dl, logs = debug_ctx
    f = exchange(cap, dl)
    (rec,) = await files_in(logs, 1)
    assert rec["flow"] == f.id
    assert rec["client_request"]["method"] == "POST"
    assert rec["client_request"]["url"] == "http://api.openai.com/v1/chat/completions"
    assert rec["client_request"]["headers"]["authorization"] == "<redacted>"
    assert rec["client_request"]["body"]["json"]["model"] == "gpt-4o"
    up = rec["upstream_request"]
    assert up["url"] == "https://portal.qwen.ai/v1/chat/completions"
    assert up["headers"]["authorization"] == "<redacted>" and up["headers"]["x-dashscope-authtype"] == "qwen-oauth"
    assert up["body"]["json"]["model"] == "coder-model"
    assert rec["upstream_response"]["status"] == 200 and rec["upstream_response"]["body"]["json"]["id"] == "q1"
    assert rec["upstream_response"]["headers"]["set-cookie"] == "<redacted>"
    assert rec["client_response"]["body"]["json"]["id"] == "chatcmpl-1"
    assert rec["summary"]["upstream_model"] == "coder-model"
    text = next(logs.glob("*.json")).read_text()
    assert CLIENT_KEY not in text and TOKEN not in text and "secret" not in text.replace("sk-<redacted>", "")
    assert stat.S_IMODE(next(logs.glob("*.json")).stat().st_mode) == 0o600
    assert f.id not in debuglog._captures


async def test_streams_keep_what_the_client_got(debug_ctx):
    _, cap, dl, logs = debug_ctx
    exchange(cap, dl, stream=True)
    (rec,) = await files_in(logs, 1)
    assert rec["upstream_response"]["streamed"] is True and rec["upstream_response"]["body"] is None
    assert rec["client_response"]["body"]["text"].startswith("data: ")


async def test_rotation_through_the_addon(debug_ctx):
    _, cap, dl, logs = debug_ctx
    ids = [exchange(cap, dl).id for _ in range(5)]
    await files_in(logs, 3)
    for _ in range(100):  # the last writes may still be rotating
        recs = [json.loads(p.read_text()) for p in sorted(logs.glob("exchange-*.json"))]
        if len(recs) == 3 and {r["flow"] for r in recs} == set(ids[2:]):
            break
        await asyncio.sleep(0.01)
    assert {r["flow"] for r in recs} == set(ids[2:])


async def test_big_bodies_are_cut(debug_ctx):
    _, cap, dl, logs = debug_ctx
    exchange(cap, dl, body=chat_body("x" * (debuglog.BODY_CAP + 10)))
    (rec,) = await files_in(logs, 1)
    body = rec["client_request"]["body"]
    assert body["truncated"] is True and body["bytes"] > debuglog.BODY_CAP and len(body["text"]) == debuglog.BODY_CAP


async def test_gateway_errors_are_logged_local_answers_are_not(debug_ctx):
    _, cap, dl, logs = debug_ctx
    models = client_flow(None, method="GET", path="/v1/models")
    cap.request(models)
    models.metadata["qwen"] = {"client": {"method": "GET", "url": models.request.pretty_url}}
    models.response = http.Response.make(200, b"{}")  # the gateway answered it itself
    dl.request(models)
    dl.response(models)
    bad = client_flow(b"{not json")
    cap.request(bad)
    bad.metadata["qwen"] = {"client": {}, "error": {"status": 400, "code": "invalid_json", "message": "m"},
                            "status": 400}
    bad.response = http.Response.make(400, b"{}")
    dl.request(bad)
    dl.response(bad)
    failed = client_flow(chat_body())
    cap.request(failed)
    rerouted(failed, chat_body())
    dl.request(failed)
    failed.metadata["qwen"].update(record(status=None, error={"status": 502, "code": "x", "message": "reset"}))
    failed.error = tflow.terr()
    dl.error(failed)
    recs = await files_in(logs, 2)
    await asyncio.sleep(0.05)
    recs = [json.loads(p.read_text()) for p in sorted(logs.glob("exchange-*.json"))]
    assert {r["flow"] for r in recs} == {bad.id, failed.id}
    (b,) = [r for r in recs if r["flow"] == bad.id]
    assert b["upstream_request"] is None and b["client_request"]["body"]["text"] == "{not json"
    (e,) = [r for r in recs if r["flow"] == failed.id]
    assert e["error"] and e["client_response"] is None and e["upstream_request"]["url"].startswith("https://portal")


async def test_off_by_default_and_for_other_flows(tmp_path):
    opts, cap, dl = GatewayOptions(), DebugCapture(), DebugLog()
    with taddons.context(opts, cap, dl) as tctx:
        tctx.configure(opts, qwen_state_dir=str(tmp_path))
        exchange(cap, dl)
        tctx.configure(cap, qwen_debug_log=True)
        plain = tflow.tflow()
        cap.request(plain)
        plain.response = http.Response.make(200)
        dl.response(plain)  # not a gateway flow
        await asyncio.sleep(0.05)
    assert not (tmp_path / "logs").exists()
    assert plain.id not in debuglog._captures


async def test_count_must_be_positive():
    from mitmproxy import exceptions

    cap = DebugCapture()
    with taddons.context(cap) as tctx:
        with pytest.raises(exceptions.OptionsError):
            tctx.configure(cap, qwen_debug_log_count=0)

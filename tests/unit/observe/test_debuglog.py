"""Debug logs: the DebugLog observer (snapshots per exchange, one file from a thread), redaction,
rotation, file mode."""

from __future__ import annotations

import asyncio
import json
import stat

import pytest
from mitmproxy import exceptions, http
from mitmproxy.test import tflow

from qwen_gateway.observe import debuglog
from qwen_gateway.observe.debuglog import DebugLog, redact_headers, redact_text, redact_url, write_rotated
from helpers.observe_testlib import chat_body, client_flow, config, exchange, local, parsed_config, refused

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
    assert not list((tmp_path / "logs").glob(".*"))  # no temporary file left behind


def test_a_file_appears_whole_or_not_at_all(tmp_path, monkeypatch):
    """Written under a hidden name and renamed: a reader never parses half a file."""
    def broken(record, f, **kw):
        f.write('{"half": ')
        raise OSError("disk full")

    monkeypatch.setattr(debuglog.json, "dump", broken)
    with pytest.raises(OSError):
        write_rotated(tmp_path, {"flow": "x"}, keep=3)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def dl(tmp_path):
    obs = DebugLog()
    obs.configure(config(tmp_path / "state", debug_log=True, debug_log_count=3))
    return obs, tmp_path / "state" / "logs"


def records(folder) -> list[dict]:
    """The debug log's files as they are now (one rotated away between the listing and the read is skipped)."""
    out = []
    for f in sorted(folder.glob("exchange-*.json")) if folder.exists() else []:
        try:
            out.append(json.loads(f.read_text()))
        except FileNotFoundError:
            continue
    return out


async def files_in(folder, n: int) -> list[dict]:
    for _ in range(500):
        recs = records(folder)
        if len(recs) >= n:
            return recs
        await asyncio.sleep(0.01)
    raise AssertionError(f"{n} debug log files did not appear")


def run_exchange(obs: DebugLog, *, stream=False, body=None, upstream_body=None):
    """One forwarded exchange through the observer, in the gateway's order, the gateway's part by hand."""
    body = body or chat_body("hello")
    ex = exchange(body=body, stream=stream, upstream_body=upstream_body or {
        "model": "coder-model", "messages": [{"role": "user", "content": "hello"}]})
    ex.attempt.headers = {"Authorization": "Bearer <redacted>", "X-DashScope-AuthType": "qwen-oauth",
                           "X-Forwarded-Note": f"Bearer {TOKEN}"}  # as sent; anything else is redacted here
    f = client_flow(body, headers={"x-api-key": CLIENT_KEY, "x-trace": "t1"})
    obs.client_request(ex, f)
    obs.upstream_request(ex, f)
    ex.attempt.status = 200
    ex.attempt.response_headers = {"content-type": "text/event-stream" if stream else "application/json",
                                    "set-cookie": "s=secret"}
    if not stream:
        ex.attempt.response_body = json.dumps({"id": "q1", "model": "coder-model",
                                                "choices": [{"message": {"content": "hi"}}]}).encode()
    else:
        ex.turn.rewriter = object()
    if stream:
        f.response = http.Response.make(200, b'data: {"choices":[]}\n\ndata: [DONE]\n\n',
                                        {"content-type": "text/event-stream"})
        f.response.stream = True  # relayed; the gateway kept what it sent
    else:
        f.response = http.Response.make(200, json.dumps({"id": "chatcmpl-1", "object": "chat.completion"}),
                                        {"content-type": "application/json"})
    f.metadata["qwen"] = ex.to_meta()
    obs.finished(ex, f)
    return ex, f


async def test_whole_exchange_in_one_file_without_secrets(dl):
    obs, logs = dl
    ex, f = run_exchange(obs)
    (rec,) = await files_in(logs, 1)
    assert (rec["flow"], rec["exchange"]) == (f.id, ex.id)
    assert rec["client_request"]["method"] == "POST"
    assert rec["client_request"]["url"] == "http://127.0.0.1:8080/v1/chat/completions"
    assert rec["client_request"]["headers"]["x-api-key"] == "<redacted>"
    assert rec["client_request"]["headers"]["x-trace"] == "t1"
    assert rec["client_request"]["body"]["json"]["model"] == "gpt-4o"
    up = rec["upstream_request"]
    assert up["url"] == "https://portal.qwen.ai/v1/chat/completions" and up["method"] == "POST"
    assert up["headers"]["Authorization"] == "<redacted>" and up["headers"]["X-DashScope-AuthType"] == "qwen-oauth"
    assert up["headers"]["X-Forwarded-Note"] == "Bearer <redacted>"
    assert up["body"]["json"]["model"] == "coder-model" and up["body"]["bytes"] > 0
    assert rec["upstream_response"]["status"] == 200 and rec["upstream_response"]["body"]["json"]["id"] == "q1"
    assert rec["upstream_response"]["headers"]["set-cookie"] == "<redacted>"
    assert rec["client_response"]["body"]["json"]["id"] == "chatcmpl-1"
    assert rec["summary"]["upstream_model"] == "coder-model" and rec["summary"]["status"] == 200
    text = next(logs.glob("*.json")).read_text()
    assert CLIENT_KEY not in text and TOKEN not in text and "secret" not in text.replace("sk-<redacted>", "")
    assert stat.S_IMODE(next(logs.glob("*.json")).stat().st_mode) == 0o600
    assert obs._captures == {}


async def test_streams_keep_what_the_client_got(dl):
    obs, logs = dl
    run_exchange(obs, stream=True)
    (rec,) = await files_in(logs, 1)
    assert rec["upstream_response"]["streamed"] is True and rec["upstream_response"]["body"] is None
    assert rec["client_response"]["streamed"] is True
    assert rec["client_response"]["body"]["text"].startswith("data: ")


async def test_rotation_through_the_observer(dl):
    obs, logs = dl
    ids = [run_exchange(obs)[1].id for _ in range(5)]
    await files_in(logs, 3)
    for _ in range(100):  # the last writes may still be rotating
        recs = records(logs)
        if len(recs) == 3 and {r["flow"] for r in recs} == set(ids[2:]):
            break
        await asyncio.sleep(0.01)
    assert {r["flow"] for r in recs} == set(ids[2:])


async def test_big_bodies_are_cut(dl):
    obs, logs = dl
    big = chat_body("x" * (debuglog.BODY_CAP + 10))
    run_exchange(obs, body=big, upstream_body={**big, "model": "coder-model"})
    (rec,) = await files_in(logs, 1)
    for side in ("client_request", "upstream_request"):
        body = rec[side]["body"]
        assert body["truncated"] is True and body["bytes"] > debuglog.BODY_CAP, side
        assert len(body["text"]) == debuglog.BODY_CAP, side
    assert rec["upstream_request"]["body"]["bytes"] == len(json.dumps({**big, "model": "coder-model"},
                                                                      ensure_ascii=False).encode())


async def test_refusals_and_errors_are_logged_local_answers_are_not(dl):
    obs, logs = dl
    models = local("models")
    fm = client_flow(None, method="GET", path="/v1/models")
    obs.client_request(models, fm)
    fm.response = http.Response.make(200, b"{}")
    obs.finished(models, fm)
    bad = refused(400, "invalid_json", "We could not parse the JSON body.", model="")
    bad.body = None
    fb = client_flow(b"{not json")
    obs.client_request(bad, fb)
    fb.response = http.Response.make(400, b"{}")
    obs.finished(bad, fb)
    unknown = refused(404, "unknown_url", "Unknown request URL", endpoint=None, route="unknown", path="/v2/x")
    fu = client_flow(None, path="/v2/x")
    obs.client_request(unknown, fu)
    fu.response = http.Response.make(404, b"{}")
    obs.finished(unknown, fu)
    failed = exchange(status=None, usage=None, error=(502, "upstream_unreachable", "reset"))
    ff = client_flow(failed.body)
    obs.client_request(failed, ff)
    obs.upstream_request(failed, ff)
    ff.error = tflow.terr()
    obs.finished(failed, ff)
    recs = await files_in(logs, 3)
    await asyncio.sleep(0.05)
    recs = [json.loads(p.read_text()) for p in sorted(logs.glob("exchange-*.json"))]
    assert {r["flow"] for r in recs} == {fb.id, fu.id, ff.id}
    (b,) = [r for r in recs if r["flow"] == fb.id]
    assert b["upstream_request"] is None and b["upstream_response"] is None
    assert b["client_request"]["body"]["text"] == "{not json" and b["summary"]["error"]["code"] == "invalid_json"
    (e,) = [r for r in recs if r["flow"] == ff.id]
    assert e["error"] and e["client_response"] is None and e["upstream_request"]["url"].startswith("https://portal")
    assert e["upstream_response"] is None  # Qwen never answered


async def test_a_retry_replaces_the_upstream_request(dl):
    obs, logs = dl
    ex = exchange()
    f = client_flow(ex.body)
    obs.client_request(ex, f)
    obs.upstream_request(ex, f)
    ex.attempt.url = "https://dashscope.example/v1/chat/completions"  # rotated to another account
    obs.upstream_request(ex, f)
    f.response = http.Response.make(200, b"{}")
    obs.finished(ex, f)
    (rec,) = await files_in(logs, 1)
    assert rec["upstream_request"]["url"] == "https://dashscope.example/v1/chat/completions"


async def test_off_by_default_and_switching_off_drops_captures(tmp_path):
    obs = DebugLog()
    obs.configure(config(tmp_path))
    run_exchange(obs)
    obs.configure(config(tmp_path, debug_log=True))
    ex = exchange()
    obs.client_request(ex, client_flow(ex.body))
    assert ex.id in obs._captures
    obs.configure(config(tmp_path, debug_log=False))
    assert obs._captures == {}
    await asyncio.sleep(0.05)
    assert not (tmp_path / "logs").exists()


def test_captures_are_bounded_and_per_observer(monkeypatch):
    monkeypatch.setattr(debuglog, "MAX_CAPTURES", 3)
    a, b = DebugLog(), DebugLog()
    a.configure(config(debug_log=True))
    exchanges = [exchange() for _ in range(5)]
    for ex in exchanges:
        a.client_request(ex, client_flow(ex.body))
    assert list(a._captures) == [ex.id for ex in exchanges[2:]]  # the oldest unfinished are dropped
    assert b._captures == {} and not hasattr(debuglog, "_captures")


def test_without_an_event_loop_the_file_is_written_at_once(dl):
    obs, logs = dl
    run_exchange(obs)
    assert len(list(logs.glob("exchange-*.json"))) == 1


def test_count_must_be_positive():
    assert parsed_config(qwen_debug_log=True, qwen_debug_log_count=5).debug_log_count == 5
    with pytest.raises(exceptions.OptionsError):
        parsed_config(qwen_debug_log_count=0)

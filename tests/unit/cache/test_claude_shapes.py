"""The recorded Claude Code shapes the cache doctor's bench replays (issue 71): scripts/record_claude_shapes.py turns
a recorded session's requests into bodies of the same structure and sizes without their text, and
scripts/bench_doctor_shapes.py replays the committed ones (scripts/data/claude_code_shapes.json) through the
gateway's hooks and the doctor — here without valgrind, for what the doctor concludes."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[3]
SHAPES = ROOT / "scripts" / "data" / "claude_code_shapes.json"


def _script(name: str):
    path = sys.path[:]
    try:
        spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path[:] = path  # bench_doctor_shapes puts scripts/ first while it imports bench_hooks


BODY = {
    "model": "claude-opus-5-5", "max_tokens": 32000, "stream": True, "thinking": {"type": "adaptive"},
    "output_config": {"effort": "medium"},
    "metadata": {"user_id": json.dumps({"device_id": "d" * 64, "account_uuid": "", "session_id": "0f3c-77"})},
    "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.328;"},
               {"type": "text", "text": "You are Claude Code, \"Anthropic's\" CLI.\n\tBe brief — très — 代码 🙂",
                "cache_control": {"type": "ephemeral"}}],
    "tools": [{"name": "Read", "description": "Reads a file.", "input_schema": {
        "$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object", "required": ["file_path"],
        "properties": {"file_path": {"type": "string", "description": "The path"},
                       "mode": {"type": "string", "enum": ["lines", "bytes"]}}}}],
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "read hello.txt"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_01AbC", "name": "Read",
                                           "input": {"file_path": "/tmp/hello.txt"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01AbC", "content": "hello\n",
                                      "cache_control": {"type": "ephemeral"}}]}],
}


def strings(value: object) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return [value] if isinstance(value, str) else []


def keys(value: object) -> object:
    if isinstance(value, dict):
        return {k: keys(v) for k, v in value.items()}
    return [keys(v) for v in value] if isinstance(value, list) else type(value).__name__


def test_a_shape_keeps_structure_and_sizes_and_no_text():
    record = _script("record_claude_shapes")
    # a fixed key: random letters spelled one of the words looked for below once in 1,500 keys (a flaky test)
    shaped = record.Filler(b"a fixed key, so that the filler is the same every run").body(BODY)
    assert keys(shaped) == keys(BODY) and len(orjson.dumps(shaped)) == len(orjson.dumps(BODY))
    assert [(len(a), len(a.encode())) for a in strings(shaped)] == [(len(b), len(b.encode())) for b in strings(BODY)]
    text = orjson.dumps(shaped).decode()
    assert not any(w in text for w in ("Claude Code", "Reads a file", "hello", "read", "/tmp", "très", "代码", "0f3c"))
    kept = ("x-anthropic-billing-header:", '"name":"Read"', '"required":["file_path"]', '"enum":["lines","bytes"]',
            '"cache_control":{"type":"ephemeral"}', '"type":"tool_result"', '"model":"claude-opus-5-5"',
            '"output_config":{"effort":"medium"}')
    assert all(k in text for k in kept), text
    user_id = json.loads(shaped["metadata"]["user_id"])
    assert list(user_id) == ["device_id", "account_uuid", "session_id"] and len(user_id["session_id"]) == 7
    # the same text, the same filler: a tool_use's id and its result's, a turn and the next
    use, result = shaped["messages"][1]["content"][0], shaped["messages"][2]["content"][0]
    assert use["id"] == result["tool_use_id"] != "toolu_01AbC"


def test_the_shapes_of_a_flow_file(tmp_path):
    from mitmproxy import http, io
    from mitmproxy.test import tflow

    record = _script("record_claude_shapes")
    answer = ('event: message_start\ndata: {"type":"message_start","message":{"usage":{"input_tokens":3,'
              '"cache_read_input_tokens":900,"cache_creation_input_tokens":50,"output_tokens":1}}}\n\n'
              'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":12}}\n\n')
    flows = tmp_path / "session.mitm"
    with open(flows, "wb") as f:
        writer = io.FlowWriter(f)
        for path in ("/v1/messages?beta=true", "/api/hello"):
            fl = tflow.tflow(resp=True)
            fl.request = http.Request.make("POST", "http://127.0.0.1:8080" + path, json.dumps(BODY).encode())
            fl.response = http.Response.make(200, answer.encode())
            writer.add(fl)
    found = tmp_path / "shapes.json"
    found.write_text(json.dumps(record.shapes(flows)))
    (turn,) = _script("recorded_shapes").turns(found)
    assert turn["usage"] == {"input_tokens": 3, "cache_read_input_tokens": 900, "cache_creation_input_tokens": 50,
                             "output_tokens": 12}
    assert keys(turn["body"]) == keys(BODY)


@pytest.fixture
def bench(tmp_path, monkeypatch):
    for name in ("QWEN_DIR", "QWEN_GATEWAY_HOME"):  # set by bench_hooks.home: put back after
        monkeypatch.setenv(name, str(tmp_path / name))
    return _script("bench_doctor_shapes")


def test_the_recorded_session_as_the_doctor_judges_it(bench, tmp_path):
    """The committed shapes: a Claude Code session of 14 requests growing from 53 kB (each system, tool list and
    message once in the file), every turn read what the turn before left in Qwen's explicit cache (the usage it was
    answered with): the doctor follows one conversation and finds no miss."""
    turns = _script("recorded_shapes").turns(SHAPES)
    sizes = [len(orjson.dumps(t["body"])) for t in turns]
    assert len(turns) >= 8 and sizes == sorted(sizes) and sizes[0] > 50_000
    assert any(b.get("type") == "tool_use" for t in turns for m in t["body"]["messages"]
               for b in (m["content"] if isinstance(m["content"], list) else []))
    assert "Claude Code" not in SHAPES.read_text()
    verdicts = bench.replay(turns, home=tmp_path / "gw")
    assert [v.turn for v in verdicts] == list(range(1, len(turns) + 1))
    assert len({v.conversation for v in verdicts}) == 1
    assert [v.cause for v in verdicts] == [None] * len(turns)
    assert [v.read for v in verdicts[1:]] == [t["usage"]["cache_read_input_tokens"] for t in turns[1:]]


def test_the_recorded_codex_session_as_the_doctor_judges_it(bench, tmp_path):
    """The committed Codex shapes (scripts/record_codex_shapes.py): a session of Responses requests on a custom
    provider, its `exec_command` calls and their outputs, growing turn by turn: one conversation, no miss, every
    turn read what the turn before stored. Its JSON texts (a call's arguments) are still JSON, their values filler."""
    shapes = SHAPES.with_name("codex_shapes.json")
    turns = _script("recorded_shapes").turns(shapes)
    sizes = [len(orjson.dumps(t["body"])) for t in turns]
    assert len(turns) >= 8 and sizes == sorted(sizes) and turns[0]["dialect"] == "responses"
    calls = [i for t in turns for i in t["body"]["input"] if i.get("type") == "function_call"]
    assert calls and all(isinstance(json.loads(c["arguments"]), dict) for c in calls)
    assert "exec_command to" not in shapes.read_text() and "compare.py" not in shapes.read_text()
    verdicts = bench.replay(turns, home=tmp_path / "gw")
    assert [v.turn for v in verdicts] == list(range(1, len(turns) + 1))
    assert len({v.conversation for v in verdicts}) == 1
    assert [v.cause for v in verdicts] == [None] * len(turns)
    assert [v.read for v in verdicts[1:]] == [t["usage"]["input_tokens_details"]["cached_tokens"] for t in turns[1:]]


def test_a_responses_shape_keeps_its_enumerated_words_and_its_json_texts():
    """record_codex_shapes.py: a Responses body's `reasoning.effort`, `include` and item statuses are the gateway's
    to check and stay as sent; a function call's arguments are JSON whose values become filler, its size the same."""
    record = _script("record_codex_shapes")
    body = {"model": "coder-model", "store": False, "include": ["reasoning.encrypted_content"],
            "reasoning": {"effort": "medium", "summary": "auto"}, "text": {"verbosity": "low"},
            "prompt_cache_key": "0f3c-77", "input": [
                {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "be brief"}]},
                {"type": "function_call", "status": "completed", "name": "exec_command", "call_id": "call_1",
                 "arguments": '{"cmd": "cat compare.py"}'},
                {"type": "function_call_output", "call_id": "call_1", "output": "def compare(): …"}]}
    shaped = record.ResponsesFiller().body(body)
    assert len(orjson.dumps(shaped)) == len(orjson.dumps(body)) and keys(shaped) == keys(body)
    kept = {k: shaped[k] for k in ("store", "include", "reasoning", "text", "model")}
    assert kept == {k: body[k] for k in kept}
    call = shaped["input"][1]
    assert call["status"] == "completed" and call["name"] == "exec_command"
    assert list(json.loads(call["arguments"])) == ["cmd"] and "compare.py" not in call["arguments"]
    assert shaped["input"][2]["call_id"] == call["call_id"] != "call_1"  # the same text, the same filler
    assert "be brief" not in orjson.dumps(shaped).decode()


@pytest.mark.parametrize("shapes", ["claude_code_shapes.json", "codex_shapes.json"])
def test_the_recorded_sessions_prints_are_the_same_read_whole_or_grown(bench, tmp_path, shapes, monkeypatch):
    """Each turn of both recorded sessions as the engine sent it: its print made from the turn before (the turn
    before's last message found as it foresaw, on every turn that grew) is the print read whole, its reuse too."""
    from qwen_gateway.cache import prints_next, prints_sent
    from qwen_gateway.cache.prints_chat import of_chat

    fields = ("kinds", "raw", "first_message", "texts", "lifetime", "marks", "spans", "settings")
    reuse = ("messages", "lead", "head_len", "head_sum", "head_hour", "tools_len", "tools_sum", "last_len", "next_sum")
    foreseen: list[bool] = []
    real = prints_next.grown
    monkeypatch.setattr(prints_sent, "grown", lambda *a: foreseen.append(a[-1]) or real(*a))
    (session,) = bench.exchanges(_script("recorded_shapes").turns(SHAPES.with_name(shapes)), 1, tmp_path / "gw")
    before = None
    for i, (ex, _) in enumerate(session):
        now = prints_sent.of_sent(ex.attempt.body, ex.attempt.sent, before, settings=True)
        whole = of_chat(ex.attempt.body, settings=True)
        assert [getattr(now, f) for f in fields] == [getattr(whole, f) for f in fields], i
        assert list(now.sizes) == list(whole.sizes), i
        assert [getattr(now.reuse, f) for f in reuse] == [getattr(whole.reuse, f) for f in reuse], i
        before = now
    assert foreseen and all(foreseen) and len(foreseen) >= len(session) - 2

"""The emulator's vLLM mode over real HTTP (see test_emulator_vllm.py): streams as vLLM v0.11.0 writes them (role
chunk, reasoning and content deltas, the finish, the usage chunk, [DONE]), continuous usage, `n`, tool-call deltas,
the automatic prefix cache (cached_tokens in blocks of 16), and the emulator's faults — a `cut` at any byte of the
stream, resets, an error inside the stream."""

from __future__ import annotations

import json
import socket

import pytest

from emulation.test_emulator_vllm import FULL, KEY, TOOLS, bare, chat, vllm  # noqa: F401  (fixtures)

pytestmark = pytest.mark.e2e  # starts emulator processes

THINK_OFF = {"chat_template_kwargs": {"enable_thinking": False}}
DIGITS = bytes.maketrans(b"0123456789", b"0000000000")


@pytest.fixture(autouse=True)
def fresh(request):
    for name in ("vllm", "bare"):
        if name in request.fixturenames:
            request.getfixturevalue(name).reset()


def stream(emu, **body) -> tuple[str, list]:
    """The raw SSE body and its events (dicts, then the string "[DONE]")."""
    r = chat(emu, stream=True, **body)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/event-stream; charset=utf-8"
    events = []
    for block in r.text.split("\n\n"):
        if block:
            assert block.startswith("data: "), block
            events.append(block[6:] if block[6:] == "[DONE]" else json.loads(block[6:]))
    return r.text, events


def joined(events: list, key: str) -> str:
    return "".join(e["choices"][0]["delta"].get(key) or "" for e in events if isinstance(e, dict) and e["choices"])


def test_a_stream_as_vllm_writes_it(vllm):
    _, events = stream(vllm)
    assert events[-1] == "[DONE]"
    first = events[0]
    assert first["object"] == "chat.completion.chunk" and first["id"].startswith("chatcmpl-")
    assert first["choices"] == [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                                 "finish_reason": None}] and first["prompt_token_ids"] is None
    assert joined(events, "reasoning_content") == "\nThinking about it.\n"
    assert joined(events, "content") == "\n\nEcho: hello world"
    last = events[-2]["choices"][0]
    assert (last["delta"], last["finish_reason"], last["stop_reason"]) == ({"content": ""}, "stop", None)
    assert all("usage" not in e for e in events[:-1])  # no stream_options: no usage at all
    assert len({e["id"] for e in events[:-1]}) == 1
    _, plain = stream(vllm, **THINK_OFF)
    assert joined(plain, "reasoning_content") == "" and joined(plain, "content") == "Echo: hello world"
    r = vllm.http.post("/v1/chat/completions", json={"model": "qwen3-8b", "stream": True, "messages": [
        {"role": "user", "content": "hi"}]}, headers={"Authorization": f"Bearer {KEY}", "X-Request-Id": "abc123"})
    assert r.text.startswith('data: {"id":"chatcmpl-abc123"')  # the id: X-Request-Id, else request_id, else random


def test_usage_chunk_only_when_asked_and_continuous_stats(vllm):
    _, events = stream(vllm, stream_options={"include_usage": True})
    usage = events[-2]
    assert usage["choices"] == [] and set(usage) == {"id", "object", "created", "model", "choices", "usage"}
    assert list(usage["usage"]) == ["prompt_tokens", "total_tokens", "completion_tokens"]
    whole = chat(vllm).json()["usage"]
    assert {k: usage["usage"][k] for k in ("prompt_tokens", "completion_tokens")} == {
        k: whole[k] for k in ("prompt_tokens", "completion_tokens")}
    _, none = stream(vllm, stream_options={"include_usage": False})
    assert not any(isinstance(e, dict) and "usage" in e for e in none)
    _, default = stream(vllm, stream_options={})  # StreamOptions.include_usage defaults to true
    assert default[-2]["choices"] == [] and default[-2]["usage"]["completion_tokens"] == whole["completion_tokens"]
    _, steady = stream(vllm, stream_options={"include_usage": True, "continuous_usage_stats": True}, **THINK_OFF)
    counted = [e["usage"]["completion_tokens"] for e in steady[:-2]]
    assert counted[0] == 0 and counted == sorted(counted) and counted[-1] == steady[-2]["usage"]["completion_tokens"]


def test_n_choices(vllm):
    r = chat(vllm, n=2, **THINK_OFF)
    assert [c["index"] for c in r.json()["choices"]] == [0, 1]
    assert r.json()["usage"]["completion_tokens"] == 2 * chat(vllm, **THINK_OFF).json()["usage"]["completion_tokens"]
    _, events = stream(vllm, n=2, **THINK_OFF)
    for i in (0, 1):
        mine = [e for e in events[:-1] if e["choices"][0]["index"] == i]
        assert joined(mine, "content") == "Echo: hello world" and mine[-1]["choices"][0]["finish_reason"] == "stop"


def test_tool_call_deltas(vllm):
    _, events = stream(vllm, tools=TOOLS, text="call get_weather", **THINK_OFF)
    calls = [e["choices"][0]["delta"]["tool_calls"][0] for e in events[:-1] if e["choices"][0]["delta"].get(
        "tool_calls")]
    head = calls[0]
    assert head["id"].startswith("chatcmpl-tool-") and head["type"] == "function" and head["index"] == 0
    assert head["function"]["name"] == "get_weather"
    assert json.loads("".join(c["function"].get("arguments") or "" for c in calls)) == {"location": "Paris"}
    assert events[-2]["choices"][0]["finish_reason"] == "tool_calls"
    named = {"type": "function", "function": {"name": "get_weather"}}
    _, forced = stream(vllm, tools=TOOLS, tool_choice=named, **THINK_OFF)
    assert forced[-2]["choices"][0]["finish_reason"] == "tool_calls"  # "stop" in a whole answer, "tool_calls" here
    _, thinking = stream(vllm, tools=TOOLS, text="call get_weather")
    assert joined(thinking, "reasoning_content") == "\nThinking about it.\n"


def test_the_reasoning_field_switch_applies_to_deltas(vllm):
    vllm.switches(vllm_reasoning_field="reasoning")
    _, events = stream(vllm)
    assert joined(events, "reasoning") == "\nThinking about it.\n" and joined(events, "reasoning_content") == ""


def test_continuing_a_cut_answer_streamed(vllm):
    msgs = [{"role": "user", "content": "hello world"}, {"role": "assistant", "content": "Echo: hel"}]
    _, events = stream(vllm, messages=msgs, continue_final_message=True, add_generation_prompt=False,
                       stream_options={"include_usage": True})
    assert joined(events, "content") == "lo world" and joined(events, "reasoning_content") == ""
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"


def test_prefix_cache_reads_blocks_of_16(vllm, bare):
    text = "a fairly long question about the weather " * 10
    first = chat(vllm, text=text, **THINK_OFF).json()["usage"]
    assert first["prompt_tokens_details"] is None  # nothing cached yet: null
    again = chat(vllm, text=text, **THINK_OFF).json()["usage"]
    cached = again["prompt_tokens_details"]["cached_tokens"]
    assert cached == (again["prompt_tokens"] - 1) // 16 * 16 and cached > 0  # never the last token
    turn = [{"role": "user", "content": text}, {"role": "assistant", "content": "Echo: it"},
            {"role": "user", "content": "and tomorrow?"}]
    later = chat(vllm, messages=turn, **THINK_OFF).json()["usage"]
    assert 0 < later["prompt_tokens_details"]["cached_tokens"] < later["prompt_tokens"]
    assert later["prompt_tokens_details"]["cached_tokens"] % 16 == 0
    _, events = stream(vllm, text=text, stream_options={"include_usage": True}, **THINK_OFF)
    assert events[-2]["usage"]["prompt_tokens_details"] == {"cached_tokens": cached}
    salted = chat(vllm, text=text, cache_salt="tenant-b", **THINK_OFF).json()["usage"]
    assert salted["prompt_tokens_details"] is None  # another salt: another cache
    vllm.reset()
    assert chat(vllm, text=text, **THINK_OFF).json()["usage"]["prompt_tokens_details"] is None
    chat(bare, text=text)
    assert chat(bare, text=text).json()["usage"]["prompt_tokens_details"] is None  # without the flag: never


def raw_stream(port: int, body: dict) -> tuple[bytes, bytes]:
    """The stream's bytes as they came (chunked framing removed) and how it ended (b"" for FIN, b"rst")."""
    data = json.dumps(body).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"X-Request-Id: fixed\r\nConnection: close\r\n"
                  b"Authorization: Bearer " + KEY.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(data) + data)
        got, ended = b"", b""
        try:
            while chunk := s.recv(65536):
                got += chunk
        except ConnectionResetError:
            ended = b"rst"
    head, _, rest = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    body_bytes = b""
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line or b"0", 16)
        if size == 0:
            break
        body_bytes += rest[:size]
        rest = rest[size + 2:]
    return body_bytes, ended


def test_a_cut_fault_falls_mid_stream(vllm):
    body = {"model": "qwen3-8b", "stream": True, "messages": [{"role": "user", "content": "hello world"}],
            "stream_options": {"include_usage": True}}
    whole, _ = raw_stream(vllm.port, body)
    assert whole.endswith(b"data: [DONE]\n\n") and vllm.stats()["last_stream_bytes"] == len(whole)
    for at in (0, 1, len(whole) // 2, len(whole) - 3):
        vllm.fault("cut", at=at, how="fin")
        got, _ = raw_stream(vllm.port, body)
        assert got.translate(DIGITS) == whole[:at].translate(DIGITS)  # byte for byte (the clock aside)
    vllm.fault("cut", inside="world", how="rst")
    got, ended = raw_stream(vllm.port, body)
    assert b"wor" in got or b'" wo' in got
    assert not got.endswith(b"[DONE]\n\n") and b"[DONE]" not in got
    assert raw_stream(vllm.port, body)[0].endswith(b"data: [DONE]\n\n")  # the fault played once


def test_resets_and_an_error_inside_the_stream(vllm):
    body = {"model": "qwen3-8b", "stream": True, "messages": [{"role": "user", "content": "hello world"}]}
    vllm.fault("reset_midstream")
    got, ended = raw_stream(vllm.port, body)
    assert b"[DONE]" not in got
    vllm.fault("midstream504", message="engine died")
    got, _ = raw_stream(vllm.port, body)
    blocks = got.decode().split("\n\n")
    error = [json.loads(b[6:]) for b in blocks if b.startswith("data: {\"error\"")]
    assert error == [{"error": {"message": "engine died", "type": "BadRequestError", "param": None, "code": 400}}]
    assert blocks[-2] == "data: [DONE]"
    vllm.fault("server503")
    r = chat(vllm)
    assert (r.status_code, r.json()["error"]["type"], r.json()["error"]["code"]) == (503, "Service Unavailable", 503)
    vllm.fault("auth401")
    assert chat(vllm).json() == {"error": "Unauthorized"}
    vllm.fault("reset_before_headers")
    with pytest.raises(Exception):  # noqa: B017  (the connection reset before any answer)
        chat(vllm)
    assert chat(vllm).status_code == 200

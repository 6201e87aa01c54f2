"""A stream survives a cut at any byte (issue 67), through a real mitmdump and the emulator cutting its stream as a
network does (`cut` fault: at a byte of the body, with FIN, RST, a clean chunked end, or silence): inside a `data:`
line, inside a multibyte character, between an event's two newlines, after the last delta before the finish. For
chat completions, the Responses API over HTTP, over WebSocket and in the background, and the Messages API, every
byte offset of the answer's stream ends for the client as the whole answer, continued exactly, or with the
dialect's terminal error (tests/helpers/cuts.py says what each dialect's client must read) — never a stream that
just stops. The record says it: `cut=` and `continued=` on the request line only when they happened."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import httpx
import pytest
import websocket

from helpers import cuts
from helpers.home import Home
from helpers.ledger import ledger_rows
from helpers.plainhttp import Plain
from helpers.procs import Gateway, until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

ASK = "say héllo 🎉"
EXPECTED = "Echo: say héllo 🎉"
WAYS = ("fin", "rst", "end")  # taken in turn, offset by offset


def gateway(tmp_path: Path, emu, make_gateway, *args: str, base: str = "/v1") -> tuple[Gateway, str]:
    """A gateway with one key account on the emulator (qwen3-coder-plus: partial mode); the key."""
    home = Home(tmp_path, emu)
    key = home.key("a", path=base, key_env="KEY_A", default_model="qwen3-coder-plus")
    return make_gateway(env=home.env(), args=args), key


def sweep(emu, ask) -> Counter:
    """`ask()` once whole (the emulator says how long its upstream stream was: ids and times change between
    answers, their lengths do not), then once per byte offset of that stream with a cut there (the ways in
    turn); each answer checked by `ask` itself. The outcomes counted. Here and in the asks, plain HTTP clients
    (helpers/plainhttp.py): a sweep is thousands of requests, and httpx's CPU was a fifth of theirs. The
    answer is the shortest that has every kind of place a cut can fall (cuts.SHORTEST)."""
    emu.switches(**cuts.SHORTEST)  # "Thinking ", "ab"; "Echo: sa", "y héllo 🎉" (the multibyte ones in the second)
    assert ask() == cuts.WHOLE
    length = emu.stats()["last_stream_bytes"]
    assert length > 500, length
    outcomes: Counter = Counter()
    admin = Plain(emu.url)
    for at in range(length + 1):
        status, text = admin.post("/_emulator/fault", {"kind": "cut", "at": at, "how": WAYS[at % len(WAYS)]})
        assert status == 200, text
        try:
            outcomes[ask()] += 1
        except AssertionError as e:
            raise AssertionError(f"cut at byte {at} of {length} ({WAYS[at % len(WAYS)]}): {e}") from e
    assert emu.admin("GET", "faults") == [], "a cut was not played"
    return outcomes


def chat_call(gw: Gateway, **extra):
    http = Plain(gw.url)
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": ASK}], "stream": True,
            "stream_options": {"include_usage": True}, **extra}

    def ask() -> str:
        status, content = http.post("/v1/chat/completions", body)
        assert status == 200, content
        return cuts.chat(content, EXPECTED)
    return ask


def request_lines(gw: Gateway, path: str, count: int) -> list[str]:
    """The gateway's request lines for `path`, once there are `count` of them (each is written as its answer ends)."""
    lines = lambda: [ln for ln in gw.log().splitlines() if f"POST {path} " in ln]  # noqa: E731
    return until(lambda: len(lines()) >= count and lines(), f"{count} request lines")


def test_chat_cut_at_every_byte_is_continued_exactly(tmp_path, emu, make_gateway):
    gw, _ = gateway(tmp_path, emu, make_gateway)
    outcomes = sweep(emu, chat_call(gw))
    assert outcomes == Counter({cuts.WHOLE: sum(outcomes.values())}), outcomes
    lines = request_lines(gw, "/v1/chat/completions", sum(outcomes.values()) + 1)
    # every cut that broke the answer is on its line, continued; a cut past Qwen's [DONE] broke nothing
    broken = [ln for ln in lines if "cut=" in ln]
    assert broken and all(re.search(r" 200 .*cut=1 .*continued=1", ln) for ln in broken), broken[:3]
    assert not any("error=" in ln for ln in lines)


def test_chat_cut_where_it_cannot_be_continued_ends_in_the_error_and_says_so(tmp_path, emu, make_gateway):
    """A model without partial mode (qwen4-max): a cut after text went out ends with the error chunk and [DONE];
    before any text the request is sent again; the request line says `cut=1` and the error, never a bare 200."""
    gw, _ = gateway(tmp_path, emu, make_gateway)
    emu.switches(reasoning=False)
    outcomes = sweep(emu, chat_call(gw, model="qwen4-max"))
    assert outcomes[cuts.WHOLE] and outcomes["error:upstream_connection_error"] and \
        set(outcomes) <= {cuts.WHOLE, "error:upstream_connection_error", "error:upstream_error"}, outcomes
    lines = request_lines(gw, "/v1/chat/completions", sum(outcomes.values()) + 1)
    ended = [ln for ln in lines if "error=" in ln]
    errors = outcomes["error:upstream_connection_error"] + outcomes["error:upstream_error"]
    assert len(ended) == errors
    assert all("cut=1" in ln and "continued=" not in ln for ln in ended), ended[:3]
    # the ledger and /metrics say the same: each broken answer ended in its error, or was continued whole
    rows = until(lambda: (r := ledger_rows(gw.workdir.parent / "state")) and len(r) == len(lines) and r, "rows")
    assert sum(1 for r in rows if r["cuts"] and r["error"]) == errors
    continued = sum(1 for r in rows if r["cuts"] and not r["error"])
    assert continued and all(r["status"] == 200 for r in rows)
    metrics = httpx.get(gw.url + "/metrics", trust_env=False).text
    assert f'qwen_stream_cuts_total{{ended="error",endpoint="chat.completions"}} {errors}.0' in metrics
    assert f'qwen_stream_cuts_total{{ended="continued",endpoint="chat.completions"}} {continued}.0' in metrics


def test_responses_cut_at_every_byte_over_http(tmp_path, emu, make_gateway):
    gw, _ = gateway(tmp_path, emu, make_gateway)
    http = Plain(gw.url)

    def ask() -> str:
        status, content = http.post("/v1/responses", {"model": "gpt-4o", "input": ASK, "stream": True, "store": False})
        assert status == 200, content
        return cuts.responses_sse(content, EXPECTED)
    outcomes = sweep(emu, ask)
    assert outcomes == Counter({cuts.WHOLE: sum(outcomes.values())}), outcomes


def test_responses_cut_at_every_byte_over_websocket(tmp_path, emu, make_gateway):
    gw, _ = gateway(tmp_path, emu, make_gateway)
    ws = websocket.create_connection(gw.url.replace("http://", "ws://") + "/v1/responses", timeout=30)

    def ask() -> str:
        ws.send(json.dumps({"type": "response.create", "model": "gpt-4o", "input": ASK, "store": False}))
        events = []
        while not events or events[-1]["type"] not in (*cuts.TERMINAL, "error"):
            events.append(json.loads(ws.recv()))  # the turn always ends: recv's timeout fails the test
        return cuts.responses(events, EXPECTED)
    try:
        outcomes = sweep(emu, ask)
    finally:
        ws.close()
    assert outcomes == Counter({cuts.WHOLE: sum(outcomes.values())}), outcomes


def test_responses_cut_at_every_byte_in_the_background(tmp_path, emu, make_gateway):
    gw, _ = gateway(tmp_path, emu, make_gateway)
    http = Plain(gw.url)

    def ask() -> str:
        status, content = http.post("/v1/responses", {"model": "gpt-4o", "input": ASK, "background": True})
        assert status == 200, content
        rid = json.loads(content)["id"]
        status, raw = http.request("GET", f"/v1/responses/{rid}?stream=true")
        assert status == 200, raw
        outcome = cuts.responses_sse(raw, EXPECTED)
        stored = json.loads(http.request("GET", f"/v1/responses/{rid}")[1])
        assert stored["status"] == ("completed" if outcome == cuts.WHOLE else "failed"), stored
        return outcome
    outcomes = sweep(emu, ask)
    assert outcomes == Counter({cuts.WHOLE: sum(outcomes.values())}), outcomes


def test_messages_cut_at_every_byte(tmp_path, emu, make_gateway):
    gw, _ = gateway(tmp_path, emu, make_gateway)
    http = Plain(gw.url)

    def ask() -> str:
        status, content = http.post("/v1/messages", {"model": "claude-sonnet-4-6", "max_tokens": 256, "stream": True,
                                                     "messages": [{"role": "user", "content": ASK}]},
                                    headers={"anthropic-version": "2023-06-01", "x-api-key": "client-key"})
        assert status == 200, content
        return cuts.messages(content, EXPECTED)
    outcomes = sweep(emu, ask)
    assert outcomes == Counter({cuts.WHOLE: sum(outcomes.values())}), outcomes


def test_messages_passed_through_cut_at_every_byte(tmp_path, emu, make_gateway):
    """`qwen_messages_passthrough`: Anthropic's events as the plan's base sends them, never continued (a pass-through
    pair): each cut ends in an `error` event, or the message is whole — also cut after its `message_delta`, when
    the gateway ends it with the `message_stop` that did not come."""
    gw, _ = gateway(tmp_path, emu, make_gateway, "--set", "qwen_messages_passthrough=true",
                      base="/compatible-mode/v1")
    http = Plain(gw.url)

    def ask() -> str:
        status, content = http.post("/v1/messages", {"model": "claude-sonnet-4-6", "max_tokens": 256, "stream": True,
                                                     "messages": [{"role": "user", "content": ASK}]},
                                    headers={"anthropic-version": "2023-06-01", "x-api-key": "client-key"})
        assert status == 200, content
        return cuts.messages(content, EXPECTED)
    outcomes = sweep(emu, ask)
    assert outcomes[cuts.WHOLE] and set(outcomes) <= {cuts.WHOLE, "error:api_error"}, outcomes


def test_responses_on_qwens_own_api_cut_at_every_byte(tmp_path, emu, make_gateway):
    """`qwen_responses_native`: Qwen's own Responses stream read back into the chat form; never continued (a
    pass-through pair): each cut ends in `response.failed`, or the response is whole."""
    gw, _ = gateway(tmp_path, emu, make_gateway, "--set", "qwen_responses_native=true", base="/compatible-mode/v1")
    http = Plain(gw.url)

    def ask() -> str:
        status, content = http.post("/v1/responses", {"model": "qwen3-coder-plus", "input": ASK, "stream": True})
        assert status == 200, content  # (stored)
        return cuts.responses_sse(content, EXPECTED)
    outcomes = sweep(emu, ask)
    assert outcomes[cuts.WHOLE] and set(outcomes) <= {cuts.WHOLE, "error:server_error"}, outcomes


@pytest.mark.parametrize("at", ["in the first text", "inside the emoji", "before the finish"])
def test_a_stream_that_goes_silent_is_continued_after_the_idle_limit(tmp_path, emu, make_gateway, at):
    gw, key = gateway(tmp_path, emu, make_gateway, "--set", "qwen_stream_idle_timeout=1")
    ask = chat_call(gw)
    assert ask() == cuts.WHOLE
    body = emu.chat_requests()[-1]["body"]
    whole = httpx.post(emu.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"},
                       trust_env=False).content
    offset = {"in the first text": whole.index(b'"Echo: ') + 3, "inside the emoji": whole.index("🎉".encode()) + 2,
              "before the finish": whole.index(b'"finish_reason":"stop"') - 30}[at]
    emu.fault("cut", at=offset, how="stall", seconds=20)
    assert ask() == cuts.WHOLE
    line = request_lines(gw, "/v1/chat/completions", 2)[-1]
    assert "cut=1" in line and "continued=1" in line, line

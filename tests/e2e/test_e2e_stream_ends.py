"""An answer is whole only at Qwen's finish, and ends as soon as it is whole — through a real mitmdump, real clients
and the emulator's faults at a stream's end (docs/emulator.md): `done_without_finish` (part of the text, then
[DONE] with no finish), `open_after_done` (the whole answer, then Qwen's body kept open) and `stall_before_usage`
(the finish, then silence: no usage, no [DONE]).

For the openai SDK's chat stream, its Responses stream and whole answer, the Responses WebSocket, a background
response, and the anthropic SDK's stream and whole message: a partial answer is never reported complete (it is
continued to the whole answer, on a model partial mode serves, or ends in the dialect's error); an answer whole at
once reaches its client at once, however long Qwen's body stays open (the clients' own timeout is 30 s, the
emulator holds its body for 120 s, the gateway's idle limit is 300 s); a usage that never came is unknown in the
ledger (no tokens), never zero or a guess."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import websocket

from helpers.home import CODING_PLAN, Home
from helpers.ledger import ledger_rows
from helpers.procs import Gateway, until
from helpers.team import ANTHROPIC_PYTHON, NO_ANTHROPIC, anthropic_calls, openai_client

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

ASK = "say hello to the whole wide world"
EXPECTED = "Echo: " + ASK
HELD_S = 120  # how long the emulator keeps its body open or silent: far past any client's timeout here
FAULTS = ("done_without_finish", "open_after_done", "stall_before_usage")
STREAM_ONLY = "qwen3-coder-plus"  # the account's model; a stream-only one for the whole answers' tests


def gateway(tmp_path: Path, emu, make_gateway) -> Gateway:
    """A gateway with one key account on the emulator (qwen3-coder-plus: partial mode continues a break)."""
    home = Home(tmp_path, emu)
    home.key("a", path=CODING_PLAN, key_env="KEY_A", default_model="qwen3-coder-plus")
    return make_gateway(env=home.env())


def queue(emu, fault: str) -> None:
    emu.fault(fault, seconds=HELD_S)


def last_row(gw: Gateway, count: int) -> dict:
    """The ledger's row of the `count`th request (each is written as its answer ends)."""
    rows = until(lambda: (r := answers(gw)) and len(r) >= count and r, f"{count} ledger rows")
    assert len(rows) == count, rows
    return rows[-1]


def answers(gw: Gateway) -> list[dict]:
    """The ledger's rows of answers (a WebSocket's upgrade and a stored response read have rows of their own)."""
    return [r for r in ledger_rows(gw.workdir.parent / "state")
            if r["status"] != 101 and r["endpoint"] != "stored_response"]


def judged(fault: str, row: dict, outcome: str) -> None:
    """What the ledger says of each fault's answer, the client having read `outcome` ("whole" or "error")."""
    if fault == "done_without_finish":  # a break: continued (partial mode), never a clean end of a partial answer
        if outcome == "error" and row["status"] >= 500:  # a whole answer read from Qwen's stream: its 502
            assert row["error"] and not row["prompt_tokens"], row
            return
        assert row["cuts"] == 1, json.dumps(row)
        assert (outcome, row["error"]) == ("whole", None) or (outcome == "error" and row["error"]), (outcome, row)
        return
    assert outcome == "whole" and row["status"] == 200 and row["error"] is None and not row["cuts"], row
    if fault == "open_after_done":
        assert row["prompt_tokens"] and row["completion_tokens"], row  # Qwen's usage came before [DONE]
    else:  # usage never came: unknown, not zero
        assert row["prompt_tokens"] is None and row["completion_tokens"] is None and row["cost"] is None, row
        assert row["cost_unit"] == "usage_unknown", row  # recorded as unknown, never as nothing (issue 79)


def test_openai_chat_stream(tmp_path, emu, make_gateway):
    gw = gateway(tmp_path, emu, make_gateway)
    client = openai_client(gw.url, "client-key")
    import openai
    for n, fault in enumerate(FAULTS, 1):
        queue(emu, fault)
        text, finishes, usage = "", [], None
        try:
            for chunk in client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": ASK}],
                                                        stream=True, stream_options={"include_usage": True}):
                for c in chunk.choices:
                    text += c.delta.content or ""
                    finishes += [c.finish_reason] if c.finish_reason else []
                usage = chunk.usage or usage
            outcome = "whole"
        except openai.APIError:
            outcome = "error"
        if outcome == "whole":
            assert (text, finishes) == (EXPECTED, ["stop"]), (fault, text, finishes)
            assert (usage is None) == (fault == "stall_before_usage"), (fault, usage)
        judged(fault, last_row(gw, n), outcome)
    line = [ln for ln in gw.log().splitlines() if "POST /v1/chat/completions " in ln][0]
    assert "cut=1" in line and "continued=1" in line, line


def test_a_partial_answer_that_cannot_be_continued_ends_in_each_dialects_error(tmp_path, emu, make_gateway):
    """qwen4-max (no partial mode): [DONE] after part of the text is the chat stream's error event, the Responses
    stream's `response.failed`, the Messages stream's `error` — never their clean end."""
    gw = gateway(tmp_path, emu, make_gateway)
    emu.switches(reasoning=False)
    http = httpx.Client(base_url=gw.url, trust_env=False, timeout=30)
    queue(emu, "done_without_finish")
    chat = http.post("/v1/chat/completions", json={"model": "qwen4-max", "stream": True,
                                                   "messages": [{"role": "user", "content": ASK}]}).text
    assert '"error"' in chat and '"finish_reason":"stop"' not in chat and chat.endswith("data: [DONE]\n\n"), chat
    queue(emu, "done_without_finish")
    responses = http.post("/v1/responses", json={"model": "qwen4-max", "input": ASK, "stream": True}).text
    assert "event: response.failed" in responses and "response.completed" not in responses, responses
    queue(emu, "done_without_finish")
    messages = http.post("/v1/messages", json={"model": "qwen4-max", "max_tokens": 256, "stream": True,
                                               "messages": [{"role": "user", "content": ASK}]},
                         headers={"anthropic-version": "2023-06-01", "x-api-key": "client-key"}).text
    assert "event: error" in messages and "message_stop" not in messages, messages
    rows = until(lambda: len(r := ledger_rows(gw.workdir.parent / "state")) == 3 and r, "3 ledger rows")
    assert all(r["cuts"] == 1 and r["error"] for r in rows), rows


def responses_events(client, **extra) -> tuple[str, list]:
    events = list(client.responses.create(model="gpt-4o", input=ASK, stream=True, **extra))
    return events[-1].type, events


def test_openai_responses_stream_and_whole(tmp_path, emu, make_gateway):
    gw = gateway(tmp_path, emu, make_gateway)
    client = openai_client(gw.url, "client-key")
    n = 0
    for fault in FAULTS:
        queue(emu, fault)
        last, events = responses_events(client, store=False)
        n += 1
        outcome = "whole" if last == "response.completed" else "error"
        assert last in ("response.completed", "response.failed"), last
        if outcome == "whole":
            assert events[-1].response.output_text == EXPECTED
            assert (events[-1].response.usage is None) == (fault == "stall_before_usage"), events[-1].response.usage
        judged(fault, last_row(gw, n), outcome)
    # whole answers of a model that answers only streams (the gateway reads Qwen's stream and answers whole)
    emu.switches(stream_only_models=[STREAM_ONLY])
    assert client.responses.create(model="gpt-4o", input=ASK).output_text == EXPECTED  # learns it streams only
    n += 1
    import openai
    for fault in FAULTS:
        queue(emu, fault)
        try:
            whole = client.responses.create(model="gpt-4o", input=ASK)
            outcome = "whole"
            assert whole.status == "completed" and whole.output_text == EXPECTED, whole
        except openai.APIStatusError as e:
            assert e.status_code == 502, e
            outcome = "error"
        n += 1
        judged(fault, last_row(gw, n), outcome)


def test_responses_websocket(tmp_path, emu, make_gateway):
    gw = gateway(tmp_path, emu, make_gateway)
    ws = websocket.create_connection(gw.url.replace("http://", "ws://") + "/v1/responses", timeout=30)
    try:
        for n, fault in enumerate(FAULTS, 1):
            queue(emu, fault)
            ws.send(json.dumps({"type": "response.create", "model": "gpt-4o", "input": ASK, "store": False}))
            events = [json.loads(ws.recv())]  # recv's 30 s timeout fails a held turn
            while events[-1]["type"] not in ("response.completed", "response.failed", "response.incomplete",
                                             "error"):
                events.append(json.loads(ws.recv()))
            last = events[-1]
            assert last["type"] in ("response.completed", "response.failed"), last
            if last["type"] == "response.completed":
                text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
                assert text == EXPECTED
            judged(fault, last_row(gw, n), "whole" if last["type"] == "response.completed" else "error")
    finally:
        ws.close()


def test_background_response(tmp_path, emu, make_gateway):
    gw = gateway(tmp_path, emu, make_gateway)
    http = httpx.Client(base_url=gw.url, trust_env=False, timeout=30)
    for n, fault in enumerate(FAULTS, 1):
        queue(emu, fault)
        r = http.post("/v1/responses", json={"model": "gpt-4o", "input": ASK, "background": True})
        assert r.status_code == 200, r.text
        rid = r.json()["id"]
        stored = until(lambda rid=rid: (s := http.get(f"/v1/responses/{rid}").json())["status"] not in
                       ("queued", "in_progress") and s, "the run's end", limit=7.5)  # 30 s: far short of 120 s
        assert stored["status"] in ("completed", "failed"), stored
        if stored["status"] == "completed":
            assert stored["output"][-1]["content"][0]["text"] == EXPECTED
            assert (stored.get("usage") is None) == (fault == "stall_before_usage"), stored.get("usage")
        judged(fault, last_row(gw, n), "whole" if stored["status"] == "completed" else "error")


@pytest.mark.skipif(not ANTHROPIC_PYTHON.exists(), reason=NO_ANTHROPIC)
def test_anthropic_sdk_stream_and_whole(tmp_path, emu, make_gateway):
    gw = gateway(tmp_path, emu, make_gateway)
    params = {"model": "claude-sonnet-4-6", "max_tokens": 256, "messages": [{"role": "user", "content": ASK}]}
    n = 0
    for fault in FAULTS:
        queue(emu, fault)
        (out,) = anthropic_calls(gw.url, "client-key", [{"op": "stream", "params": params}])  # SDK timeout: 30 s
        n += 1
        if "answer" in out:
            message = out["answer"]["message"]
            assert message["content"][0]["text"] == EXPECTED and message["stop_reason"] == "end_turn", message
        judged(fault, last_row(gw, n), "whole" if "answer" in out else "error")
    emu.switches(stream_only_models=[STREAM_ONLY])
    (warm,) = anthropic_calls(gw.url, "client-key", [{"op": "create", "params": params}])
    assert warm["answer"]["content"][0]["text"] == EXPECTED, warm
    n += 1
    for fault in FAULTS:
        queue(emu, fault)
        (out,) = anthropic_calls(gw.url, "client-key", [{"op": "create", "params": params}])
        n += 1
        if "answer" in out:
            assert out["answer"]["content"][0]["text"] == EXPECTED and out["answer"]["stop_reason"] == "end_turn"
        else:
            assert out["raised"]["status"] >= 500, out
        judged(fault, last_row(gw, n), "whole" if "answer" in out else "error")

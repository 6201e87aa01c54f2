"""Responses on Model Studio's own Responses API (`qwen_responses_native`), through a real mitmdump and the
emulator (its Responses API and session cache, scripts/emulator/responses.py, cache.py), with openai-python:
whole and streamed answers, a previous_response_id chain continued there by Qwen's own id (only the new items
sent, the conversation read from the session cache; translated when Qwen no longer holds it), the
gateway's stored objects (GET /v1/responses/{id}), a background request and a WebSocket turn still on the
gateway's own translated path, and a real Codex turn (store false: translated, on purpose)."""

from __future__ import annotations

import json

import pytest

from helpers.home import Home
from helpers.procs import Gateway
from e2e.test_e2e_codex import Codex, custom_config

pytestmark = pytest.mark.e2e

MODEL = "qwen3-coder-plus"
INSTRUCTIONS = "You are a careful coding agent. " * 200  # ~1,600 emulator tokens: past the session cache's 1,024
NATIVE_PATH = "/compatible-mode/v1/responses"


def native_gateway(emu, home, *args: str) -> Gateway:
    """A gateway whose one account is a pay-as-you-go key on the emulator (its base `/compatible-mode/v1`)."""
    gateway_home = Home(home, emu)
    gateway_home.key("emu", default_model=MODEL)
    return Gateway(home / "gw", args=("--set", "qwen_responses_native=true", *args), env=gateway_home.env()).start()


@pytest.fixture(scope="module")
def gw(emulator, tmp_path_factory):
    g = native_gateway(emulator, tmp_path_factory.mktemp("native"))
    yield g
    g.stop()


def client(gw):
    import openai
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="client-key", max_retries=0, timeout=30)


def native_requests(emu) -> list[dict]:
    return [r for r in emu.requests() if r["path"] == NATIVE_PATH]


def test_a_whole_answer_comes_from_qwens_responses_api_and_is_stored_by_the_gateway(gw, emu):
    emu.switches(reply="native pong")
    c = client(gw)
    r = c.responses.create(model=MODEL, instructions=INSTRUCTIONS, input="ping")
    assert r.output_text == "native pong" and r.status == "completed" and r.model == MODEL
    sent = native_requests(emu)
    assert len(sent) == 1 and not emu.chat_requests()
    assert sent[0]["headers"]["x-dashscope-session-cache"] == "enable"
    assert sent[0]["body"]["instructions"] == INSTRUCTIONS and sent[0]["body"]["store"] is True
    kept = c.responses.retrieve(r.id)  # the gateway's own stored object, under its own id
    assert kept.id == r.id and kept.output_text == "native pong"
    assert [i.type for i in c.responses.input_items.list(r.id).data] == ["message"]


def test_a_chain_continues_on_qwens_own_id_and_reads_the_session_cache(gw, emu):
    c = client(gw)
    first = c.responses.create(model=MODEL, instructions=INSTRUCTIONS, input="turn one")
    second = c.responses.create(model=MODEL, instructions=INSTRUCTIONS, input="turn two",
                                previous_response_id=first.id)
    third = c.responses.create(model=MODEL, instructions=INSTRUCTIONS, input="turn three",
                               previous_response_id=second.id)
    one, two, three = (r["body"] for r in native_requests(emu))
    assert "previous_response_id" not in one
    assert two["previous_response_id"].startswith("resp_") and two["previous_response_id"] != first.id
    assert two["input"] == [{"type": "message", "role": "user", "content": "turn two"}]  # only the new item
    assert three["previous_response_id"] not in (first.id, second.id, two["previous_response_id"])
    assert second.usage.input_tokens_details.cached_tokens > 1000  # the session cache read the conversation
    assert third.usage.input_tokens_details.cached_tokens > second.usage.input_tokens_details.cached_tokens
    assert c.responses.retrieve(third.id).previous_response_id == second.id  # the client's ids, the gateway's


def test_a_stream_through_openai_pythons_accumulator(gw, emu):
    emu.switches(reply="streamed from qwen's own api", chunk_count=4)
    c = client(gw)
    with c.responses.stream(model=MODEL, instructions=INSTRUCTIONS, input="stream it") as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_response()
    assert final.output_text == "streamed from qwen's own api" and final.status == "completed"
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert kinds.count("response.output_text.delta") >= 2
    sent = native_requests(emu)
    assert sent[-1]["body"]["stream"] is True and not emu.chat_requests()
    assert c.responses.retrieve(final.id).output_text == final.output_text
    follow = c.responses.create(model=MODEL, instructions=INSTRUCTIONS, input="and then",
                                previous_response_id=final.id)
    assert native_requests(emu)[-1]["body"]["previous_response_id"].startswith("resp_")
    assert follow.usage.input_tokens_details.cached_tokens > 1000


def test_function_calls_and_their_outputs_round_trip(gw, emu):
    emu.switches(tool_calls="always", tool_arguments={"cmd": "ls"})
    c = client(gw)
    tools = [{"type": "function", "name": "shell", "description": "run a command",
              "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}}]
    r = c.responses.create(model=MODEL, instructions=INSTRUCTIONS, input="list files", tools=tools)
    call = next(o for o in r.output if o.type == "function_call")
    assert call.name == "shell" and json.loads(call.arguments) == {"cmd": "ls"}
    emu.switches(tool_calls="never")
    done = c.responses.create(model=MODEL, instructions=INSTRUCTIONS, tools=tools, previous_response_id=r.id,
                              input=[{"type": "function_call_output", "call_id": call.call_id, "output": "a b"}])
    assert done.output_text == "Tool said: a b"  # the emulator answers a tool output so
    last = native_requests(emu)[-1]["body"]
    assert last["input"] == [{"type": "function_call_output", "call_id": call.call_id, "output": "a b"}]
    assert last["tools"][0]["name"] == "shell"


def test_a_client_resending_its_whole_history_is_translated_after_its_first_turn(gw, emu):
    """openai-python with the history in `input` and no previous_response_id: the first turn starts a chain on
    Qwen's side; the next, which continues nothing Qwen holds, is translated (the cache markers read it)."""
    c = client(gw)
    first = c.responses.create(model=MODEL, instructions=INSTRUCTIONS, input=[{"role": "user", "content": "one"}])
    c.responses.create(model=MODEL, instructions=INSTRUCTIONS, input=[
        {"role": "user", "content": "one"}, {"role": "assistant", "content": first.output_text},
        {"role": "user", "content": "two"}])
    assert len(native_requests(emu)) == 1 and len(emu.chat_requests()) == 1


def test_a_background_request_stays_on_the_gateways_own_path(gw, emu):
    import time
    emu.switches(reply="pong from the background")
    c = client(gw)
    created = c.responses.create(model=MODEL, input="ping", background=True)
    for _ in range(100):
        done = c.responses.retrieve(created.id)
        if done.status == "completed":
            break
        time.sleep(0.1)
    assert done.output_text == "pong from the background" and done.background is True
    assert not native_requests(emu) and len(emu.chat_requests()) == 1  # translated, as without the option


def test_a_model_qwens_responses_api_does_not_serve_is_translated(gw, emu):
    r = client(gw).responses.create(model="qwen-max", input="hi")
    assert r.status == "completed" and not native_requests(emu) and len(emu.chat_requests()) == 1


def test_a_real_codex_turn_stays_translated_for_its_store_false(make_gateway, emu, tmp_path):
    """Codex on a custom provider (HTTP) sends `store: false` and its whole conversation every turn: Qwen would
    keep nothing for a later turn to continue, and its implicit cache costs more than the translation's cache
    markers (docs/performance.md), so with the option on Codex's turns are translated, and work as before."""
    gw = native_gateway(emu, tmp_path)
    try:
        emu.switches(reply="pong from qwen")
        codex = Codex(tmp_path, "native", custom_config(gw, "gpt-5.5"), QWENPROXY_API_KEY="client-key")
        log, _ = codex.run("say pong")
        assert "pong from qwen" in log, log
        assert not native_requests(emu) and len(emu.chat_requests()) == 1, gw.log()
        assert "POST /v1/responses gpt-5.5→qwen3-coder-plus acct=emu 200" in gw.log()
    finally:
        gw.stop()


def test_a_conversation_qwen_no_longer_holds_is_sent_again_translated(gw, emu):
    """Qwen's stored response gone (the emulator's clock past its 7 days): its 400 "Not found
    previous_response_id" is retried once, translated with the whole conversation; the client sees only the
    answer."""
    c = client(gw)
    first = c.responses.create(model=MODEL, instructions=INSTRUCTIONS, input="turn one")
    emu.admin("POST", "cache", {"advance": 8 * 86400})
    second = c.responses.create(model=MODEL, instructions=INSTRUCTIONS, input="turn two",
                                previous_response_id=first.id)
    assert second.status == "completed"
    assert native_requests(emu)[-1]["body"]["previous_response_id"]  # refused
    again = emu.chat_requests()[-1]["body"]
    assert [m["role"] for m in again["messages"]] == ["system", "user", "assistant", "user"]


def test_a_websocket_turn_stays_on_the_gateways_own_path(gw, emu):
    """Qwen has no Responses WebSocket: Codex's socket turns are translated, as without the option."""
    from e2e.test_e2e_responses_ws import connect, turn, user
    ws = connect(gw, Authorization="Bearer client-key")
    try:
        events = turn(ws, {"model": MODEL, "input": [user("over the socket")]})
    finally:
        ws.close()
    assert events[-1]["type"] == "response.completed"
    assert not native_requests(emu) and len(emu.chat_requests()) == 1


def test_thinking_follows_the_same_table_as_the_translation(gw, emu):
    """Issue 59: on Qwen's own Responses API, qwen3.5-plus (thinks by default) told nothing is switched off, as
    the translation switches it off (reasoning billed that nobody asked for otherwise); an effort the client asks
    goes in that API's own knob; a model that does not think gets no effort."""
    c = client(gw)
    c.responses.create(model="qwen3.5-plus", input="hi")
    assert native_requests(emu)[-1]["body"]["reasoning"] == {"effort": "none"}
    c.responses.create(model="qwen3.5-plus", input="hi", reasoning={"effort": "high"})
    assert native_requests(emu)[-1]["body"]["reasoning"] == {"effort": "high"}
    c.responses.create(model="qwen3-coder-plus", input="hi", reasoning={"effort": "high"})
    sent = native_requests(emu)[-1]["body"]
    assert sent["model"] == "qwen3-coder-plus" and "reasoning" not in sent and "enable_thinking" not in sent

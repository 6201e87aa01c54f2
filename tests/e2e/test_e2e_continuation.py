"""A stream that outlives its account (issue 63, item 4), through a real mitmdump and the emulator, read by real
clients: Qwen throttles inside the stream after the first text (R6, `error_finish`), cuts the stream, or reports a
504 inside it — and the client still reads one complete answer, on chat completions (openai-python), the Responses
API over SSE (openai-python) and the Messages API (the anthropic SDK). A throttled account is left for the other
account of the pool; a cut or a server error goes on on the same one. Each continuation is Model Studio's partial
mode (the emulator checks the request as the page describes it), on the flow, the request line and /metrics.
Where continuing is not safe the client gets the documented error inside the stream, as before."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import openai
import pytest

from helpers.home import CODING_PLAN, Home
from helpers.procs import Gateway, until
from helpers.team import ANTHROPIC_PYTHON, NO_ANTHROPIC, anthropic_calls

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

ASK = "say hello"
ANSWER = "Echo: say hello"


def gateway(tmp_path: Path, emu, make_gateway, accounts: int = 2) -> tuple[Gateway, Path, list[str]]:
    """A gateway with `accounts` key accounts on the emulator (a, b), its debug log on; their keys."""
    home = Home(tmp_path, emu)
    keys = [home.key(n, path=CODING_PLAN, key_env=f"KEY_{n.upper()}", default_model="qwen3-coder-plus")
            for n in ["a", "b"][:accounts]]
    return make_gateway(env=home.env(), args=("--set", "qwen_debug_log=true")), home.state, keys


def client(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="client-key", max_retries=0, timeout=60,
                         http_client=httpx.Client(trust_env=False))


def chats(emu) -> list[dict]:
    return emu.chat_requests()


def keys_used(emu) -> list[str]:
    return [r["headers"]["authorization"] for r in chats(emu)]


def record(state: Path) -> dict:
    """The last exchange's debug-log record, once written (just after its answer)."""
    files = until(lambda: sorted((state / "logs").glob("exchange-*.json")), "the debug log")
    return json.loads(files[-1].read_text())


def streamed_chat(gw: Gateway, **extra) -> tuple[str, list, dict | None]:
    """One streamed chat completion read by openai-python: its text, its chunks, its usage."""
    chunks = list(client(gw).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": ASK}],
                                                     stream=True, stream_options={"include_usage": True}, **extra))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks, chunks[-1].usage.model_dump() if chunks[-1].usage else None


def assert_continued(gw: Gateway, state: Path, emu, *, same_account: bool, why: str) -> dict:
    """The second request to Qwen went on from the first's text in partial mode, on the same account or the
    other; the flow says where and why; the request line and /metrics count it."""
    first, second = (r["body"] for r in chats(emu))
    assert second["messages"][:-1] == first["messages"]
    assert second["messages"][-1] == {"role": "assistant", "content": "Echo: ", "partial": True} or (
        second["messages"][-1]["partial"] is True and ANSWER.startswith(second["messages"][-1]["content"]))
    used = keys_used(emu)
    assert (used[0] == used[1]) is same_account, used
    summary = record(state)["summary"]
    assert summary["retry_reasons"] == ["continued"] and summary["status"] == 200 and "stream_error" not in summary
    notes = summary["notes"]
    assert any(re.search(rf"stream continued on \w after \d+ characters \(partial mode\): .*{why}", n) for n in notes), notes
    line = [ln for ln in gw.log().splitlines() if " 200 " in ln and "/v1/" in ln][-1]
    assert "continued=1" in line, line
    metrics = httpx.get(gw.url + "/metrics", trust_env=False).text
    assert re.search(r'qwen_retries_total\{reason="continued"\} 1(\.0)?\b', metrics), metrics[-3000:]
    return summary


def test_chat_stream_throttled_mid_answer_goes_on_on_the_other_account(tmp_path, emu, make_gateway):
    gw, state, _ = gateway(tmp_path, emu, make_gateway)
    emu.fault("error_finish")
    text, chunks, usage = streamed_chat(gw)
    assert text == ANSWER
    assert len({c.id for c in chunks}) == 1  # one completion's id throughout
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    summary = assert_continued(gw, state, emu, same_account=False, why="throttled")
    # both requests are billed: the continuation's as Qwen reported it, the broken one's estimated
    alone = continuation_usage(emu, keys_used(emu)[1])
    fields = ("prompt_tokens", "completion_tokens", "total_tokens")
    assert usage is not None and [summary["usage"][k] for k in fields] == [usage[k] for k in fields]
    assert usage["prompt_tokens"] > alone["prompt_tokens"] and usage["completion_tokens"] > alone["completion_tokens"]
    assert any("the gateway's estimate" in n for n in summary["notes"])


def continuation_usage(emu, authorization: str) -> dict:
    """What Qwen (the emulator, deterministic) reports for the continuation alone, asked again whole."""
    body = {**chats(emu)[1]["body"], "stream": False}
    body.pop("stream_options", None)
    r = httpx.post(emu.url + "/v1/chat/completions", json=body, headers={"Authorization": authorization},
                   trust_env=False)
    assert r.status_code == 200, r.text
    return r.json()["usage"]


@pytest.mark.parametrize("fault,why", [("reset_midstream", "broke off"), ("midstream504", "stream timeout")])
def test_chat_stream_cut_or_failed_mid_answer_goes_on_on_the_same_account(tmp_path, emu, make_gateway, fault, why):
    gw, state, _ = gateway(tmp_path, emu, make_gateway)
    emu.fault(fault)
    text, _, _ = streamed_chat(gw)
    assert text == ANSWER
    assert_continued(gw, state, emu, same_account=True, why=why)


def test_legacy_completions_stream_throttled_mid_answer_is_one_completion(tmp_path, emu, make_gateway):
    gw, state, _ = gateway(tmp_path, emu, make_gateway)
    emu.fault("error_finish")
    chunks = list(client(gw).completions.create(model="gpt-3.5-turbo-instruct", prompt=ASK, stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == ANSWER and len({c.id for c in chunks}) == 1
    assert_continued(gw, state, emu, same_account=False, why="throttled")


def test_responses_stream_throttled_mid_answer_is_one_response(tmp_path, emu, make_gateway):
    gw, state, _ = gateway(tmp_path, emu, make_gateway)
    emu.fault("error_finish")
    events = list(client(gw).responses.create(model="gpt-4o", input=ASK, stream=True))
    kinds = [e.type for e in events]
    assert kinds[-1] == "response.completed" and "response.failed" not in kinds and "error" not in kinds, kinds
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert "".join(e.delta for e in deltas) == ANSWER
    assert len({e.item_id for e in deltas}) == 1 and kinds.count("response.output_item.added") == 1
    assert [e.sequence_number for e in events] == list(range(len(events)))  # one numbering, no restart
    assert events[-1].response.output_text == ANSWER and events[-1].response.usage.output_tokens > 0
    assert_continued(gw, state, emu, same_account=False, why="throttled")


@pytest.mark.skipif(not ANTHROPIC_PYTHON.exists(), reason=NO_ANTHROPIC)
def test_messages_stream_throttled_mid_answer_is_one_message(tmp_path, emu, make_gateway):
    gw, state, _ = gateway(tmp_path, emu, make_gateway)
    emu.fault("error_finish")
    (outcome,) = anthropic_calls(gw.url, "client-key", [{"op": "stream", "params": {
        "model": "claude-sonnet-4-6", "max_tokens": 256, "messages": [{"role": "user", "content": ASK}]}}])
    assert "answer" in outcome, outcome
    streamed = outcome["answer"]
    assert streamed["text"] == ANSWER and streamed["message"]["stop_reason"] == "end_turn"
    assert [b["type"] for b in streamed["message"]["content"]] == ["text"]
    assert streamed["events"].count("message_start") == 1 and streamed["events"].count("content_block_start:text") == 1
    assert streamed["message"]["usage"]["output_tokens"] > 0
    assert_continued(gw, state, emu, same_account=False, why="throttled")


# ---- where continuing is not safe: the documented error, as before -----------------------------------------------


def chat_error(gw: Gateway) -> openai.APIError:
    with pytest.raises(openai.APIError) as e:
        streamed_chat(gw)
    return e.value


def test_one_account_throttled_mid_answer_is_the_documented_error(tmp_path, emu, make_gateway):
    """No other account serves the model: `rate_limit_exceeded` inside the stream (the table above)."""
    gw, state, _ = gateway(tmp_path, emu, make_gateway, accounts=1)
    emu.fault("error_finish")
    assert chat_error(gw).code == "rate_limit_exceeded"
    assert len(chats(emu)) == 1
    summary = record(state)["summary"]
    assert any(n.startswith("stream not continued after 6 characters") for n in summary["notes"])
    # not continued, so not counted as continued (it was, whatever the outcome: issue 67); a throttle is no cut
    line = until(lambda: [ln for ln in gw.log().splitlines() if "POST /v1/chat/completions" in ln], "the line")[-1]
    assert "error=rate_limit_exceeded" in line and "continued=" not in line and "cut=" not in line, line
    assert summary.get("retry_reasons") == [] and "cuts" not in summary, summary


def test_a_stream_that_keeps_breaking_ends_in_its_error_after_two_continuations(tmp_path, emu, make_gateway):
    gw, state, _ = gateway(tmp_path, emu, make_gateway)
    emu.fault("reset_midstream", count=3)
    assert chat_error(gw).code == "upstream_connection_error"
    assert len(chats(emu)) == 3
    assert record(state)["summary"]["retry_reasons"] == ["continued", "continued"]


def test_a_tool_call_half_sent_is_not_continued(tmp_path, emu, make_gateway):
    gw, state, _ = gateway(tmp_path, emu, make_gateway)
    emu.switches(tool_calls="always", tool_arguments={"location": "Paris"})
    emu.fault("error_finish")
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"location": {"type": "string"}}}}}]
    with pytest.raises(openai.APIError) as e:
        streamed_chat(gw, tools=tools)
    assert e.value.code == "rate_limit_exceeded" and len(chats(emu)) == 1
    assert "stream not continued: reasoning or a tool call was sent" in " ".join(record(state)["summary"]["notes"])


def test_thinking_mode_is_not_continued(tmp_path, emu, make_gateway):
    """Partial mode is non-thinking only: qwen3.6-plus asked to think streams its reasoning first."""
    gw, _, _ = gateway(tmp_path, emu, make_gateway)
    emu.fault("error_finish")
    with pytest.raises(openai.APIError) as e:
        list(client(gw).chat.completions.create(model="qwen3.6-plus", reasoning_effort="high", stream=True,
                                                messages=[{"role": "user", "content": ASK}]))
    assert e.value.code == "rate_limit_exceeded" and len(chats(emu)) == 1


def test_a_model_without_partial_mode_is_not_continued(tmp_path, emu, make_gateway):
    """qwen3.8-max is not on the page; told not to think (`reasoning_effort: none`), it answers text at once."""
    gw, _, _ = gateway(tmp_path, emu, make_gateway)
    emu.fault("error_finish")
    with pytest.raises(openai.APIError) as e:
        list(client(gw).chat.completions.create(model="qwen3.8-max", reasoning_effort="none", stream=True,
                                                messages=[{"role": "user", "content": ASK}]))
    assert e.value.code == "rate_limit_exceeded" and len(chats(emu)) == 1

"""Background responses through a real mitmdump with openai-python's `client.responses.*`: answered at once
(`queued`), retrievable while they run, their events streamable from `starting_after`, cancellable — and
the fields the gateway refuses or echoes, as a strict client reads them."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from helpers.openai_schema import validate, validate_stream_event

pytestmark = pytest.mark.e2e


def client(gw):
    import openai
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="client-key", max_retries=0, timeout=30)


def wait_for(c, rid: str, statuses: tuple[str, ...]):
    """Retrieve until the response's status is one of `statuses` (bounded: the emulator answers at once)."""
    for _ in range(200):
        r = c.responses.retrieve(rid)
        if r.status in statuses:
            return r
        time.sleep(0.05)
    raise AssertionError(f"{rid} stayed {r.status}")


def test_a_background_response_runs_on_and_is_retrieved(gw, emu):
    emu.switches(reply="pong from the background")
    c = client(gw)
    created = c.responses.create(model="qwen3-coder-plus", input="ping", background=True)
    assert created.status in ("queued", "in_progress") and created.background is True
    assert created.output == []
    validate("Response", created.model_dump(mode="json", exclude_unset=True))
    done = wait_for(c, created.id, ("completed", "failed"))
    assert done.status == "completed" and done.output_text == "pong from the background"
    assert done.background is True and done.usage is not None and done.usage.output_tokens > 0
    raw = httpx.get(gw.url + f"/v1/responses/{created.id}", trust_env=False).json()
    validate("Response", raw)
    items = c.responses.input_items.list(created.id)
    assert [i.type for i in items.data] == ["message"]
    follow = c.responses.create(model="qwen3-coder-plus", input="and again", previous_response_id=created.id)
    texts = json.dumps(emu.chat_requests()[-1]["body"]["messages"])
    assert follow.status == "completed" and "pong from the background" in texts


def test_its_events_stream_from_starting_after(gw, emu):
    emu.switches(reply="one two three")
    c = client(gw)
    created = c.responses.create(model="qwen3-coder-plus", input="count", background=True)
    all_events = list(c.responses.retrieve(created.id, stream=True))
    types = [e.type for e in all_events]
    assert types[:2] == ["response.created", "response.in_progress"] and types[-1] == "response.completed"
    assert [e.sequence_number for e in all_events] == list(range(len(all_events)))
    assert "".join(e.delta for e in all_events if e.type == "response.output_text.delta") == "one two three"
    for e in all_events:
        validate_stream_event(e.model_dump(mode="json", exclude_unset=True))
    later = list(c.responses.retrieve(created.id, stream=True, starting_after=2))
    assert [e.sequence_number for e in later] == list(range(3, len(all_events)))
    r = httpx.get(gw.url + f"/v1/responses/{created.id}", params={"stream": "true", "starting_after": "x"},
                  trust_env=False)
    assert r.status_code == 400 and r.json()["error"]["param"] == "starting_after"


def test_a_running_background_response_is_cancelled(gw, emu):
    emu.fault("stall", seconds=8)  # Qwen sends its first chunk, then nothing for a while
    c = client(gw)
    created = c.responses.create(model="qwen3-coder-plus", input="take your time", background=True)
    running = wait_for(c, created.id, ("in_progress", "completed", "failed"))
    assert running.status == "in_progress"
    cancelled = c.responses.cancel(created.id)
    assert cancelled.status == "cancelled"
    validate("Response", httpx.get(gw.url + f"/v1/responses/{created.id}", trust_env=False).json())
    assert c.responses.retrieve(created.id).status == "cancelled"
    assert c.responses.cancel(created.id).status == "cancelled"  # idempotent, as OpenAI's
    events = list(c.responses.retrieve(created.id, stream=True))
    assert events and all(e.type != "response.completed" for e in events)


def test_background_needs_store_and_no_stream(gw, emu):
    import openai
    c = client(gw)
    with pytest.raises(openai.BadRequestError) as e:
        c.responses.create(model="qwen3-coder-plus", input="x", background=True, store=False)
    assert e.value.body["param"] == "background" and e.value.body["code"] == "unsupported_value"
    with pytest.raises(openai.BadRequestError) as e:
        c.responses.create(model="qwen3-coder-plus", input="x", background=True, stream=True)
    assert e.value.body["param"] == "stream"
    plain = c.responses.create(model="qwen3-coder-plus", input="x")
    assert plain.background is False
    r = httpx.get(gw.url + f"/v1/responses/{plain.id}", params={"stream": "true"}, trust_env=False)
    assert r.status_code == 400 and r.json()["error"]["param"] == "stream"
    assert httpx.post(gw.url + f"/v1/responses/{plain.id}/cancel", trust_env=False).status_code == 400
    assert not emu.chat_requests()[1:]  # the refused requests never reached Qwen


@pytest.mark.parametrize("field, value", [("conversation", "conv_1"), ("prompt", {"id": "pmpt_1"}),
                                          ("top_logprobs", 3)])
def test_unhonoured_fields_are_refused_by_name(gw, emu, field, value):
    import openai
    with pytest.raises(openai.BadRequestError) as e:
        client(gw).responses.create(model="qwen3-coder-plus", input="x", **{field: value})
    assert e.value.body["param"] == field and e.value.body["code"] == "unsupported_value"
    assert not emu.chat_requests()


def test_allowed_tools_max_tool_calls_and_echoes_through_the_sdk(gw, emu):
    emu.switches(tool_calls_count=3, tool_arguments={"city": "Paris"})
    tools = [{"type": "function", "name": n, "parameters": {"type": "object", "properties": {}}}
             for n in ("get_weather", "get_time")]
    choice = {"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "get_weather"}]}
    c = client(gw)
    r = c.responses.create(model="qwen3-coder-plus", input="weather?", tools=tools, tool_choice=choice,
                           max_tool_calls=2, truncation="auto", service_tier="flex")
    sent = emu.chat_requests()[-1]["body"]
    assert [t["function"]["name"] for t in sent["tools"]] == ["get_weather"] and sent["tool_choice"] == "required"
    assert [i.type for i in r.output] == ["function_call", "function_call"]
    raw = httpx.get(gw.url + f"/v1/responses/{r.id}", trust_env=False).json()
    validate("Response", raw)
    assert raw["tool_choice"] == choice and raw["max_tool_calls"] == 2
    assert raw["truncation"] == "auto" and raw["service_tier"] == "default"
    with c.responses.stream(model="qwen3-coder-plus", input="weather?", tools=tools, max_tool_calls=1,
                            tool_choice={"type": "function", "name": "get_time"}) as stream:
        final = stream.get_final_response()
    assert len(final.output) == 1 and final.tool_choice.name == "get_time"


def test_a_cut_off_message_is_incomplete(gw, emu):
    emu.switches(reply="a long answer that gets cut", finish_reason="length")
    r = client(gw).responses.create(model="qwen3-coder-plus", input="x", max_output_tokens=16)
    assert r.status == "incomplete" and r.output[-1].status == "incomplete"


def test_a_background_response_is_billed_once(gw, emu):
    """One background run is one exchange: one ledger row with its tokens, whatever the POST's flow does after
    its `queued` answer (issue 62: a background POST was finished twice)."""
    from pathlib import Path

    from helpers.ledger import ledger_rows

    state = Path(gw.env["QWEN_GATEWAY_HOME"])
    emu.switches(reply="billed once")
    c = client(gw)
    time.sleep(1.0)  # the rows of earlier tests' requests written (the ledger writes every half second)
    before = len(ledger_rows(state))
    created = c.responses.create(model="qwen3-coder-plus", input="ping", background=True)
    assert wait_for(c, created.id, ("completed", "failed")).status == "completed"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the ledger writes its rows from a thread, every half second
        rows = [r for r in ledger_rows(state)[before:] if r["method"] == "POST" and r["path"] == "/v1/responses"]
        if rows and all(r["completion_tokens"] for r in rows):
            break
        time.sleep(0.2)
    time.sleep(1.0)  # a second row, if any, would be written in the next batch
    rows = [r for r in ledger_rows(state)[before:] if r["method"] == "POST" and r["path"] == "/v1/responses"]
    assert len(rows) == 1, [{k: r[k] for k in ("prompt_tokens", "xid", "account", "cost_unit", "cost", "error", "est_tokens")} for r in rows]
    assert rows[0]["status"] == 200 and rows[0]["completion_tokens"] > 0

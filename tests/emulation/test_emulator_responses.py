"""Model Studio's own OpenAI-compatible Responses API on the emulator (scripts/emulator/responses*.py), as its
pages document it ("OpenAI compatible - Responses", "Create a response", 2026) and as a third party probed it
(yobo2u/omugw docs/research/2026-09-27-dashscope-compatible-responses-endpoint.md): the pay-as-you-go paths, flat
DashScope error bodies, only the listed parameters processed, `previous_response_id` kept seven days, streams with
`:HTTP_STATUS/200` comments and no [DONE], a refused stream as HTTP 200 + `response.failed`."""

from __future__ import annotations

import json

import httpx
import pytest
from openai import OpenAI

from emulation.test_emulator import API_KEY, SEED, emulator_fixtures

pytestmark = pytest.mark.e2e  # starts emulator processes

OTHER_KEY = "sk-emulator-other-account"
NEW = "/compatible-mode/v1/responses"
LEGACY = "/api/v2/apps/protocols/compatible-mode/v1/responses"
MODEL = "qwen3-coder-plus"  # serves Responses, never thinks: plain answers
WEATHER = {"type": "function", "name": "get_weather", "description": "Weather of a city",
           "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}

proc, emu = emulator_fixtures("--quiet", "--api-key", API_KEY, "--api-key", OTHER_KEY, "--seed-token", SEED)


def tokens(text: str) -> int:
    return len(text) // 4 + 1  # the emulator's count (cache.tokens)


def post(emu, body: dict, path: str = NEW, key: str | None = API_KEY, **headers) -> httpx.Response:
    auth = {"Authorization": f"Bearer {key}"} if key else {}
    return emu.http.post(path, json={"model": MODEL, **body}, headers={**auth, **headers})


def ok(emu, body: dict, **kw) -> dict:
    r = post(emu, body, **kw)
    assert r.status_code == 200, r.text
    return r.json()


def flat(r: httpx.Response, status: int) -> dict:
    """A DashScope error body: flat {code, message, request_id}, never OpenAI's nested `error`."""
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"code", "message", "request_id"} and body["request_id"], body
    return {"code": body["code"], "message": body["message"]}


def sse(text: str) -> list[tuple[str, dict]]:
    """Model Studio's framing: `id:N`, `event:<type>`, the `:HTTP_STATUS/200` comment, `data:<json>`."""
    assert "[DONE]" not in text and text.endswith("\n\n")
    out = []
    for n, block in enumerate(text[:-2].split("\n\n"), 1):
        lines = block.split("\n")
        assert lines[0] == f"id:{n}" and lines[1].startswith("event:") and lines[2] == ":HTTP_STATUS/200", block
        assert lines[3].startswith("data:") and len(lines) == 4, block
        data = json.loads(lines[3][5:])
        assert data["type"] == lines[1][6:] and data["sequence_number"] == n - 1
        out.append((data["type"], data))
    return out


def client(emu, key: str = API_KEY) -> OpenAI:
    return OpenAI(base_url=emu.url + "/compatible-mode/v1", api_key=key, max_retries=0, http_client=emu.http)


def test_a_whole_answer_in_model_studios_shape(emu):
    r = client(emu).responses.create(model=MODEL, input="hello there")
    assert r.output_text == "Echo: hello there" and r.status == "completed" and r.id.startswith("resp_")
    body = ok(emu, {"input": "hello there"})
    assert body["object"] == "response" and body["model"] == MODEL and body["background"] is False
    assert body["store"] is True and body["error"] is None and body["tools"] == [] and body["tool_choice"] == "auto"
    [item] = body["output"]
    assert item["type"] == "message" and item["role"] == "assistant" and item["id"].startswith("msg_")
    assert item["content"] == [{"type": "output_text", "text": "Echo: hello there", "annotations": [], "logprobs": None}]
    usage = body["usage"]
    prompt, out = tokens("hello there"), tokens("Echo: hello there")
    assert usage["input_tokens"] == prompt and usage["output_tokens"] == out and usage["total_tokens"] == prompt + out
    assert usage["input_tokens_details"] == {"cached_tokens": 0}
    assert usage["output_tokens_details"] == {"reasoning_tokens": 0}
    assert usage["x_details"] == [{"input_tokens": prompt, "output_tokens": out, "total_tokens": prompt + out,
                                   "output_tokens_details": {"reasoning_tokens": 0},
                                   "prompt_tokens_details": {"cached_tokens": 0}, "x_billing_type": "response_api"}]


def test_the_new_and_the_legacy_path_serve_it_the_coding_plan_does_not(emu):
    assert ok(emu, {"input": "hi"}, path=LEGACY)["output"][0]["content"][0]["text"] == "Echo: hi"
    assert post(emu, {"input": "hi"}, path="/v1/responses").status_code == 404  # Coding Plan: chat only
    assert flat(emu.http.get(NEW, headers={"Authorization": f"Bearer {API_KEY}"}), 405) == {
        "code": "Method Not Allowed", "message": "Method 'GET' is not allowed for '/compatible-mode/v1/responses'."}
    assert flat(post(emu, {"input": "hi"}, path=NEW + "/bogus/sub"), 404) == {"code": "Not Found",
                                                                             "message": "Not support"}


def test_api_keys_only_refused_in_flat_bodies(emu):
    assert flat(post(emu, {"input": "x"}, key=None), 401) == {"code": "InvalidApiKey",
                                                              "message": "No API-key provided."}
    for key in ("sk-unknown", SEED):  # an OAuth token is no key of Model Studio's
        assert flat(post(emu, {"input": "x"}, key=key), 401) == {"code": "InvalidApiKey",
                                                                 "message": "Invalid API-key provided."}


@pytest.mark.parametrize(("body", "message"), [
    ({"model": "qwen-max"}, "Unsupported model: 'qwen-max'"),  # a chat model the Responses API does not serve
    ({"model": "__nope__"}, "Unsupported model: '__nope__'"),
    ({"temperature": 5}, "Invalid 'temperature': 5. Expected a value between [0,2), but got 5 instead."),
    ({"top_p": 9}, "Invalid 'top_p': 9. Expected a value between (0,1], but got 9 instead."),
    ({"max_output_tokens": 1}, "Invalid 'max_output_tokens': must be greater than or equal to 16, got 1."),
    ({"reasoning": {"effort": "bogus_level"}}, "Invalid 'reasoning.effort': bogus_level. Supported values are: "
                                               "('none','minimal','low','medium','high','xhigh','max')."),
    ({"store": "NOT_A_BOOL"}, "Invalid 'store': NOT_A_BOOL. Must be a boolean."),
    ({"previous_response_id": "resp_nope"}, "Not found previous_response_id: resp_nope"),
    ({"previous_response_id": "resp_nope", "conversation": "conv_1"},
     "Mutually exclusive parameters: Ensure you are only providing one of: previous_response_id or conversation."),
    ({"tools": [{"type": "function", "function": WEATHER}]},  # Chat's nested shape
     "<400> InternalError.Algo.InvalidParameter: The parameters, when provided as a dict, must confirm to a valid "
     "openai-compatible JSON schema."),
])
def test_refusals_in_model_studios_words(emu, body, message):
    assert flat(post(emu, {"input": "x", **body}), 400) == {"code": "InvalidParameter", "message": message}


def test_chat_rules_apply_to_what_reaches_the_model(emu):
    r = post(emu, {"model": "qwen3.5-plus", "input": [{"role": "user", "content": [
        {"type": "input_image", "image_url": "https://example.com/a.png"}, {"type": "input_text", "text": "x"}]}],
        "reasoning": {"effort": "none"}})
    assert r.status_code == 200, r.text  # a vision model sees images
    assert flat(post(emu, {"input": [{"role": "user", "content": [
        {"type": "input_image", "image_url": "https://example.com/a.png"}]}]}), 400)["message"].endswith(
        "[Unexpected item type in content.]")  # R10: qwen3-coder-plus cannot
    two = [WEATHER, {**WEATHER, "name": "get_time"}]
    assert flat(post(emu, {"input": "x", "tools": two, "tool_choice": "required"}), 400)["code"] == "InvalidParameter"


def test_parameters_it_does_not_list_are_ignored_and_echoed(emu):
    body = ok(emu, {"input": "reply in JSON", "background": True, "metadata": "NOT_AN_OBJECT",
                    "parallel_tool_calls": "NOT_A_BOOL", "totally_bogus_param": 123, "tools": [{"type": "computer"}],
                    "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}}}})
    assert body["status"] == "completed" and body["background"] is False  # answered at once: no background runs
    assert body["metadata"] == "NOT_AN_OBJECT" and body["parallel_tool_calls"] == "NOT_A_BOOL"
    assert body["tools"] == [{"type": "computer"}]
    assert body["output"][0]["content"][0]["text"] == "Echo: reply in JSON"  # text.format is not honoured


def test_previous_response_id_continues_the_conversation_server_side(emu):
    first = ok(emu, {"input": "My secret codeword is BANANA7.", "instructions": "Be brief."})
    said = first["output"][0]["content"][0]["text"]
    second = ok(emu, {"input": "What was my codeword?", "previous_response_id": first["id"]})
    assert second["previous_response_id"] == first["id"]
    # the history is the first turn's input and answer; its instructions are not carried over
    assert second["usage"]["input_tokens"] == tokens("My secret codeword is BANANA7." + said + "What was my codeword?")
    third = ok(emu, {"input": [{"role": "user", "content": "And now?"}], "previous_response_id": second["id"]})
    assert third["usage"]["input_tokens"] == tokens("My secret codeword is BANANA7." + said + "What was my codeword?"
                                                    + second["output"][0]["content"][0]["text"] + "And now?")
    unstored = ok(emu, {"input": "forget me", "store": False})
    assert unstored["store"] is False
    assert flat(post(emu, {"input": "x", "previous_response_id": unstored["id"]}), 400)["message"] == \
        f"Not found previous_response_id: {unstored['id']}"


def test_stored_responses_are_retrieved_deleted_and_kept_seven_days(emu):
    auth = {"Authorization": f"Bearer {API_KEY}"}
    first = ok(emu, {"input": "keep me"})
    got = emu.http.get(f"{NEW}/{first['id']}", headers=auth)
    assert got.status_code == 200 and got.json()["id"] == first["id"] and got.json()["output"] == first["output"]
    items = emu.http.get(f"{NEW}/{first['id']}/input_items", headers=auth).json()
    assert items["object"] == "list" and [i["content"][0]["text"] for i in items["data"]] == ["keep me"]
    other = emu.http.get(f"{NEW}/{first['id']}", headers={"Authorization": f"Bearer {OTHER_KEY}"})
    assert flat(other, 404)["message"] == f"Response with id '{first['id']}' not found."  # another account's
    emu.admin("POST", "cache", {"advance": 7 * 86400 - 60})
    assert ok(emu, {"input": "still there?", "previous_response_id": first["id"]})["status"] == "completed"
    emu.admin("POST", "cache", {"advance": 61})
    assert flat(post(emu, {"input": "x", "previous_response_id": first["id"]}), 400)["message"].startswith("Not found")
    kept = ok(emu, {"input": "delete me"})
    deleted = emu.http.delete(f"{NEW}/{kept['id']}", headers=auth)
    assert deleted.status_code == 200 and deleted.json() == {"id": kept["id"], "object": "response", "deleted": True}
    assert flat(emu.http.get(f"{NEW}/{kept['id']}", headers=auth), 404)["code"] == "NotFound"


def test_a_stream_in_model_studios_framing(emu):
    r = post(emu, {"input": "hello there", "stream": True})
    assert r.status_code == 200 and r.headers["content-type"] == "text/event-stream;charset=UTF-8"
    events = sse(r.text)
    types = [t for t, _ in events]
    deltas = [e["delta"] for t, e in events if t == "response.output_text.delta"]
    assert types == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.content_part.added", *["response.output_text.delta"] * len(deltas),
                     "response.output_text.done", "response.content_part.done", "response.output_item.done",
                     "response.completed"]
    assert events[0][1]["response"]["status"] == "queued" and events[1][1]["response"]["status"] == "in_progress"
    assert "".join(deltas) == "Echo: hello there" == events[-4][1]["text"]
    done = events[-1][1]["response"]
    assert done["status"] == "completed" and done["usage"]["input_tokens"] == tokens("hello there")
    assert [e.type for e in client(emu).responses.create(model=MODEL, input="hi", stream=True)][-1] == \
        "response.completed"


def test_a_refused_stream_is_http_200_with_response_failed(emu):
    r = post(emu, {"model": "__nope__", "input": "x", "stream": True})
    assert r.status_code == 200
    [(kind, event)] = sse(r.text)
    assert kind == "response.failed" and event["response"]["status"] == "failed"
    assert event["response"]["error"] == {"code": "InvalidParameter", "message": "Unsupported model: '__nope__'"}


def test_flat_function_tools_and_their_results(emu):
    body = ok(emu, {"input": "call get_weather for Paris", "tools": [WEATHER]})
    [call] = body["output"]
    assert call["type"] == "function_call" and call["name"] == "get_weather" and call["status"] == "completed"
    assert json.loads(call["arguments"])["location"] and call["call_id"]
    after = ok(emu, {"input": [{"role": "user", "content": "call get_weather for Paris"},
                               {"type": "function_call", "call_id": call["call_id"], "name": "get_weather",
                                "arguments": call["arguments"]},
                               {"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"}],
                     "tools": [WEATHER]})
    assert after["output"][0]["content"][0]["text"] == "Tool said: sunny"
    streamed = sse(post(emu, {"input": "call get_weather", "tools": [WEATHER], "stream": True}).text)
    kinds = [t for t, _ in streamed]
    assert "response.function_call_arguments.delta" not in kinds  # not among Model Studio's events (assumed)
    added = next(e for t, e in streamed if t == "response.output_item.added")["item"]
    done = next(e for t, e in streamed if t == "response.output_item.done")["item"]
    assert added["type"] == done["type"] == "function_call" and added["arguments"] == "" and done["arguments"]


def test_thinking_answers_with_a_reasoning_item(emu):
    thinks = ok(emu, {"model": "qwen3.5-plus", "input": "hi"})  # thinks by default
    reasoning, message = thinks["output"]
    assert reasoning["type"] == "reasoning" and reasoning["summary"] == [{"type": "summary_text",
                                                                         "text": "Thinking about it."}]
    assert message["type"] == "message" and thinks["usage"]["output_tokens_details"]["reasoning_tokens"] == 5
    for quiet in ({"reasoning": {"effort": "none"}}, {"enable_thinking": False}):
        assert [i["type"] for i in ok(emu, {"model": "qwen3.5-plus", "input": "hi", **quiet})["output"]] == ["message"]
    both = ok(emu, {"model": "qwen3.5-plus", "input": "hi", "reasoning": {"effort": "high"}, "enable_thinking": False})
    assert both["output"][0]["type"] == "reasoning"  # reasoning.effort wins over enable_thinking
    kinds = [t for t, _ in sse(post(emu, {"model": "qwen3.5-plus", "input": "hi", "stream": True}).text)]
    assert "response.reasoning_summary_text.delta" in kinds and "response.reasoning_summary_text.done" in kinds


def test_max_output_tokens_ends_the_answer_incomplete(emu):
    body = ok(emu, {"input": "word " * 200, "max_output_tokens": 16})
    assert body["status"] == "incomplete" and body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert body["usage"]["output_tokens"] == 16


def test_switched_off_faulted_and_logged(emu):
    emu.fault("quota429", path="/responses")
    assert flat(post(emu, {"input": "x"}), 429) == {"code": "insufficient_quota",
                                                    "message": "Free allocated quota exceeded."}
    emu.fault("reset_midstream", path="/responses")
    with pytest.raises(httpx.HTTPError):
        post(emu, {"input": "one two three four", "stream": True})
    post(emu, {"input": "logged"}, **{"x-dashscope-session-cache": "enable"})
    logged = [r for r in emu.admin("GET", "requests") if r["path"] == NEW][-1]
    assert logged["body"]["input"] == "logged" and logged["headers"]["x-dashscope-session-cache"] == "enable"
    assert emu.admin("GET", "stats")["responses_requests"] >= 3
    emu.switches(responses_api=False)  # a region or workspace that does not serve it
    for path in (NEW, LEGACY):
        assert post(emu, {"input": "x"}, path=path).status_code == 404


def test_an_effort_is_the_models_own_knob_never_a_chat_refusal(emu):
    # qwen3.5-27b refuses `enable_thinking: true` without a budget on chat (R9); an effort on Responses is no such ask
    for model in ("qwen3.5-27b", "qwen3.8-max"):  # a hybrid model bound to budgets; an effort-native one
        for effort, kinds in (("high", ["reasoning", "message"]), ("max", ["reasoning", "message"]),
                              ("none", ["message"])):
            body = ok(emu, {"model": model, "input": "hi", "reasoning": {"effort": effort}})
            assert [i["type"] for i in body["output"]] == kinds, (model, effort)

"""api/request_schema.py: chat and legacy-completions bodies checked against OpenAI's request schemas, each
refusal a 400 naming the field as OpenAI does (issue 31 item 4); what the gateway takes beyond the spec."""

from __future__ import annotations

import gc
import os
import re
import sys

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.schema_strategy import Schemas
from qwen_gateway.api import request_schema as rs
from qwen_gateway.errors import GatewayError

USER = [{"role": "user", "content": "x"}]
CHAT = {"model": "gpt-4o", "messages": USER}


def refused(schema, body) -> GatewayError:
    with pytest.raises(GatewayError) as e:
        rs.check(schema, body)
    assert e.value.status == 400 and e.value.type == "invalid_request_error"
    return e.value


@pytest.mark.parametrize("body, param, code, words", [
    ({"messages": USER}, "model", "missing_required_parameter", "Missing required parameter: 'model'"),
    ({"model": "gpt-4o", "messages": []}, "messages", "invalid_value", "1 to any number of items"),
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": 5}]}, "messages[0].content", "invalid_type",
     "expected an array or a string, but got an integer"),
    ({"model": "gpt-4o", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role", "invalid_value",
     "'developer', 'system', 'user', 'assistant', 'tool', 'function'"),
    ({"model": "gpt-4o", "messages": [{"content": "x"}]}, "messages[0].role", "missing_required_parameter", ""),
    ({"model": "gpt-4o", "messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id",
     "missing_required_parameter", ""),
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": [{"type": "txt", "text": "a"}]}]},
     "messages[0].content[0].type", "invalid_value", "'text', 'image_url'"),
    ({**CHAT, "stream_options": [{}]}, "stream_options", "invalid_type", "expected null or an object"),
    ({**CHAT, "stream_options": "x"}, "stream_options", "invalid_type", "but got a string"),
    ({**CHAT, "stream_options": 5}, "stream_options", "invalid_type", "but got an integer"),
    ({**CHAT, "temperature": 5}, "temperature", "invalid_value", "from 0 to 2, but got 5"),
    ({**CHAT, "max_completion_tokens": True}, "max_completion_tokens", "invalid_type", "got a boolean"),
    ({**CHAT, "tools": [{"type": "function", "function": {}}]}, "tools[0].function.name",
     "missing_required_parameter", ""),
    ({**CHAT, "stop": 5}, "stop", "invalid_type", ""),
])
def test_a_chat_body_the_spec_refuses_is_refused_naming_the_field(body, param, code, words):
    e = refused(rs.CHAT, body)
    assert (e.param, e.code) == (param, code) and words in e.message and f"'{param}'" in e.message


@pytest.mark.parametrize("body, param", [
    ({"prompt": "x"}, "model"),
    ({"model": "m", "prompt": "x", "best_of": True}, "best_of"),
    ({"model": "m", "prompt": "x", "stream_options": "x"}, "stream_options"),
    ({"model": "m", "prompt": 5}, "prompt"),
])
def test_a_completions_body_the_spec_refuses_is_refused_naming_the_field(body, param):
    assert refused(rs.COMPLETIONS, body).param == param


@pytest.mark.parametrize("body", [
    CHAT,
    {**CHAT, "tools": None, "stream_options": None, "function_call": None},  # top-level null: absent
    {**CHAT, "enable_thinking": True, "thinking_budget": 100},  # Qwen's extras: not the spec's, not refused
    {"model": "gpt-4o", "messages": [  # images in a tool message: the gateway moves them for the vision model
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c", "content": [
            {"type": "text", "text": "shot"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]},
    {"model": "gpt-4o", "messages": [{"role": "assistant", "content": "a", "reasoning_content": "r"}, *USER]},
])
def test_what_clients_send_is_taken(body):
    assert rs.check(rs.CHAT, body) is body


RESP = {"model": "gpt-4o", "input": "hi"}


@pytest.mark.parametrize("body, param, code, words", [
    ({**RESP, "temperature": 7}, "temperature", "invalid_value", "from 0 to 2, but got 7"),
    ({**RESP, "max_output_tokens": 0}, "max_output_tokens", "invalid_value", "at least 16, but got 0"),
    ({**RESP, "verbosity": "low"}, "verbosity", "unknown_parameter", "Unknown parameter: 'verbosity'."),
    ({**RESP, "metadata": {"run": 5}}, "metadata.run", "invalid_type", "expected a string"),
    ({**RESP, "input": [{"type": "bogus"}]}, "input[0].type", "invalid_value", "'message', 'file_search_call'"),
    ({**RESP, "input": [{"role": "wizard", "content": "x"}]}, "input[0].role", "invalid_value", "'user'"),
    ({**RESP, "input": [{"content": "x"}]}, "input[0].role", "missing_required_parameter", ""),
    ({**RESP, "input": [{"type": "function_call", "call_id": "c", "name": "f"}]}, "input[0].arguments",
     "missing_required_parameter", ""),
    ({**RESP, "input": [{"type": "item_reference"}]}, "input[0].id", "missing_required_parameter", ""),
    ({**RESP, "input": [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": 5}]}]},
     "input[0].content[0].text", "invalid_type", "expected a string"),  # the nearest option's error, not a tag's
    ({**RESP, "input": [{"type": ["message"]}]}, "input[0].type", "invalid_value", "not one of"),
])
def test_a_responses_body_the_spec_refuses_is_refused_naming_the_field(body, param, code, words):
    e = refused(rs.RESPONSES, body)
    assert (e.param, e.code) == (param, code) and words in e.message and f"'{param}'" in e.message


@pytest.mark.parametrize("body", [
    RESP,
    {**RESP, "client_metadata": {"x": "y"}, "tools": [{"type": "function", "name": "f"}]},  # Codex; OpenAI defaults
    {**RESP, "input": [  # items given back without their id or status, as Codex does
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "a"}]},
        {"role": "assistant", "content": [{"type": "output_text", "text": "b"}]},
        {"type": "reasoning", "summary": [], "content": None, "encrypted_content": "qgw1.x"},
        {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c", "output": "ok"},
        {"type": "message", "role": "user", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]},
        {"type": "configuration_update", "reasoning": {"effort": "low"}}, {"id": "msg_1"}]},
])
def test_what_responses_clients_send_is_taken(body):
    assert rs.check(rs.RESPONSES, body) is body


@pytest.mark.parametrize("schema, body, param", [
    (rs.CHAT, {**CHAT, "max_tokens": 0}, "max_tokens"), (rs.CHAT, {**CHAT, "max_completion_tokens": 0},
                                                         "max_completion_tokens"),
    (rs.COMPLETIONS, {"model": "m", "prompt": "x", "max_tokens": 0}, "max_tokens"),
])
def test_an_answer_length_below_qwens_range_is_refused_naming_the_field(schema, body, param):
    e = refused(schema, body)
    assert e.param == param and "expected a value of at least 1, but got 0" in e.message


EMBED = {"model": "text-embedding-3-small", "input": "hi"}


@pytest.mark.parametrize("body, param, code, words", [  # issue 51 item 2: each was answered, floats and all
    ({"input": "hi"}, "model", "missing_required_parameter", "Missing required parameter: 'model'"),
    ({**EMBED, "model": {"a": 1}}, "model", "invalid_type", "expected a string, but got an object"),
    ({**EMBED, "encoding_format": "bogus"}, "encoding_format", "invalid_value", "'float', 'base64'"),
    ({**EMBED, "user": 1.5}, "user", "invalid_type", "expected a string, but got a number"),
    ({**EMBED, "bogus": 1}, "bogus", "unknown_parameter", "Unknown parameter: 'bogus'"),
    ({**EMBED, "stream": True}, "stream", "unknown_parameter", "Unknown parameter: 'stream'"),
    ({**EMBED, "dimensions": 0}, "dimensions", "invalid_value", "at least 1"),
    ({**EMBED, "input": [1.5]}, "input[0]", "invalid_type", ""),
])
def test_an_embeddings_body_the_spec_refuses_is_refused_naming_the_field(body, param, code, words):
    e = refused(rs.EMBEDDINGS, body)
    assert (e.param, e.code) == (param, code) and words in e.message and f"'{param}'" in e.message


@pytest.mark.parametrize("body", [
    EMBED, {**EMBED, "input": ["a", "b"], "encoding_format": "base64", "dimensions": 512, "user": "u"},
    {**EMBED, "input": [[1, 2], [3]]}, {**EMBED, "input": [1, 2]}, {**EMBED, "encoding_format": None, "user": None},
])
def test_what_embeddings_clients_send_is_taken(body):
    assert rs.check(rs.EMBEDDINGS, body) is body


GATEWAY = Schemas("gateway")
# the gateway's schemas as a general validator reads them, `pattern` aside (the gateway does not check it)
UNPATTERNED = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": lambda *_: None})


def _roots(errors) -> set[str]:
    """The top-level fields a validator's errors are about ("" for the body itself)."""
    out: set[str] = set()
    for e in errors:
        out.update([str(e.path[0])] if e.path else
                   re.findall(r"'([^']+)' is a required property", e.message) if e.validator == "required" else [""])
    return out


@pytest.mark.parametrize("name, schema", [
    ("CreateChatCompletionRequest", rs.CHAT), ("CreateCompletionRequest", rs.COMPLETIONS),
    ("CreateResponseBody", rs.RESPONSES), ("CreateEmbeddingRequest", rs.EMBEDDINGS)],
    ids=["chat", "completions", "responses", "embeddings"])
@settings(max_examples=30, deadline=None, derandomize=bool(os.environ.get("CI")),
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(data=st.data())
def test_a_body_is_refused_exactly_when_a_general_validator_refuses_it(name, schema, data):
    """Bodies drawn from the gateway's schemas, valid ones and ones with a field broken: taken when a general
    JSON Schema validator takes them (a top-level null as absent), else refused naming a field it names."""
    body = data.draw(st.one_of(GATEWAY.valid(name), GATEWAY.broken(name)))
    validator = UNPATTERNED({"$ref": f"{GATEWAY.uri}#/components/schemas/{name}"}, registry=GATEWAY.registry)
    roots = _roots(validator.iter_errors({k: v for k, v in body.items() if v is not None}))
    if not roots:
        assert rs.check(schema, body) is body
        return
    e = refused(schema, body)
    assert re.split(r"[.\[]", e.param or "")[0] in roots or "" in roots, (e.param, roots)


def _calls(schema, body) -> int:
    """The Python function calls one check makes (the profiler's `call` events): the work, not a time. Only the
    check's own: no collection runs meanwhile (an earlier test's `gc.callbacks`, a finalizer of its garbage would
    be counted, as often as the process's allocations happen to set one off: issue 79 item 7)."""
    calls = 0

    def count(frame, event, arg):
        nonlocal calls
        calls += event == "call"
    collecting = gc.isenabled()
    gc.disable()
    sys.setprofile(count)
    try:
        rs.check(schema, body)
    finally:
        sys.setprofile(None)
        if collecting:
            gc.enable()
    return calls


TOOL_ROUND = [{"role": "user", "content": "q"},
              {"role": "assistant", "content": None, "tool_calls": [
                  {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
              {"role": "tool", "tool_call_id": "c", "content": "ok"}, {"role": "assistant", "content": "a"}]
ITEMS = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "q"}]},
         {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
         {"type": "function_call_output", "call_id": "c", "output": "ok"}, {"role": "assistant", "content": "a"}]


@pytest.mark.parametrize("schema, body, most", [
    # the body, `messages`, the message's union and its fields: one call each. Before: 27 (each allOf part of
    # the request its own pass over the body, a `type` step before every object, a call for every string...)
    (rs.CHAT, {"model": "gpt-4o", "messages": [{"role": "user", "content": "ping"}]}, 5),
    (rs.CHAT, {"model": "gpt-4o", "messages": TOOL_ROUND * 10,  # 3 calls a message (before: 13.5)
               "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]}, 127),
    (rs.RESPONSES, {"model": "gpt-4o", "input": ITEMS * 10}, 164),  # 4 calls an item (before: 21)
], ids=["smallest chat", "chat with tools", "responses items"])
def test_a_valid_body_is_checked_in_a_few_calls_a_value(schema, body, most):
    assert _calls(schema, body) <= most


@pytest.fixture
def collections_call_back():
    """What an earlier test may leave in the process (issue 79 item 7): hypothesis appends a `gc.callbacks`
    entry, and a collection that falls inside a count runs it twice (start, stop): 166 calls where 164 were the
    check's. Here a collection at every allocation, so one surely falls inside."""
    threshold = gc.get_threshold()
    heard = []
    gc.callbacks.append(hear := lambda phase, info: heard.append(phase))
    gc.set_threshold(1)
    try:
        yield heard
    finally:
        gc.set_threshold(*threshold)
        gc.callbacks.remove(hear)


def test_a_count_is_the_checks_own_work_whatever_ran_before(collections_call_back):
    body = {"model": "gpt-4o", "input": ITEMS * 10}
    assert _calls(rs.RESPONSES, body) == 164  # as the count in a fresh process
    assert collections_call_back  # the collector did run around it, callbacks and all

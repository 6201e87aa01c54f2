"""An Anthropic Messages request -> the chat request (api/messages/request.py): the system prompt, tools and
tool_choice, thinking and effort, sampling, Claude Code's extras, and Anthropic's 400 for a malformed body."""

from __future__ import annotations

import json

import pytest

from qwen_gateway.api.messages import request
from qwen_gateway.api.messages.request import to_chat
from qwen_gateway.api.messages.thinking import ALTERED, OURS
from qwen_gateway.errors import GatewayError


def body(**kw) -> dict:
    return {"model": "claude-sonnet-5-5", "max_tokens": 1000, "messages": [{"role": "user", "content": "hi"}], **kw}


def chat(b: dict, verify=lambda t, s: OURS if s == "ok" else ALTERED) -> tuple[dict, list[str]]:
    notes: list[str] = []
    return to_chat(b, notes, verify), notes


def refused(b: dict) -> GatewayError:
    with pytest.raises(GatewayError) as e:
        chat(b)
    assert e.value.status == 400 and e.value.type == "invalid_request_error"
    return e.value



def test_system_blocks_and_system_messages_fold_into_one_system_prompt_in_order():
    c, notes = chat(body(system=[{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.328;"},
                                 {"type": "text", "text": "You are a coder.", "cache_control": {"type": "ephemeral"}}],
                         messages=[{"role": "user", "content": [{"type": "text", "text": "q1"}]},
                                   {"role": "system", "content": [{"type": "text", "text": "# Environment"}]},
                                   {"role": "assistant", "content": "a1"},
                                   {"role": "system", "content": "later context"},
                                   {"role": "user", "content": "q2"}]))
    # the client's cache marker kept where it was (Qwen's cache reads it), the text the same as one string
    assert c["messages"][0] == {"role": "system", "content": [
        {"type": "text", "text": "You are a coder.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "\n\n# Environment"}, {"type": "text", "text": "\n\nlater context"}]}
    assert [m["role"] for m in c["messages"][1:]] == ["user", "assistant", "user"]
    assert any("billing header" in n for n in notes)


def test_tools_and_tool_choice():
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
              "properties": {"command": {"type": "string"}}, "additionalProperties": False}
    c, notes = chat(body(tools=[{"name": "Bash", "description": "run", "input_schema": schema},
                                {"name": "Later", "input_schema": {"type": "object"}, "defer_loading": True}],
                         tool_choice={"type": "any", "disable_parallel_tool_use": True}))
    assert c["tools"][0] == {"type": "function", "function": {
        "name": "Bash", "description": "run", "parameters": {k: v for k, v in schema.items() if k != "$schema"}}}
    assert c["tool_choice"] == "required" and c["parallel_tool_calls"] is False
    assert [t["function"]["name"] for t in c["tools"]] == ["Bash"]  # deferred: hidden until a tool search
    assert any("defer_loading" in n for n in notes)
    assert chat(body(tools=[{"name": "B", "input_schema": {"type": "object"}}],
                     tool_choice={"type": "tool", "name": "B"}))[0][
        "tool_choice"] == {"type": "function", "function": {"name": "B"}}
    assert chat(body(tool_choice={"type": "none"}))[0]["tool_choice"] == "none"


def test_server_tools_are_refused_not_dropped():
    e = refused(body(tools=[{"type": "bash_20250124", "name": "bash"}]))  # web_search: tests/unit/api/test_websearch.py
    assert "bash_20250124" in e.message


@pytest.mark.parametrize("thinking,config,expected", [
    ({"type": "enabled", "budget_tokens": 2048}, None, {"enable_thinking": True, "thinking_budget": 2048}),
    ({"type": "disabled"}, None, {"enable_thinking": False}),
    ({"type": "adaptive", "display": "omitted"}, {"effort": "medium"}, {"reasoning_effort": "medium"}),
    ({"type": "adaptive"}, {"effort": "max"}, {"reasoning_effort": "max"}),  # the upstream maps it per model
    ({"type": "adaptive"}, None, {"enable_thinking": True}),
    (None, {"effort": "low"}, {"enable_thinking": False}),  # an effort alone asks for no thinking (issue 51)
    (None, None, {"enable_thinking": False}),  # Anthropic's models think only when asked
])
def test_thinking_and_effort(thinking, config, expected):
    b = body(**({"thinking": thinking} if thinking else {}), **({"output_config": config} if config else {}),
             max_tokens=4096)
    c, _ = chat(b)
    assert {k: c[k] for k in ("enable_thinking", "thinking_budget", "reasoning_effort") if k in c} == expected


def test_structured_output_and_sampling():
    schema = {"type": "object", "properties": {"title": {"type": "string"}}}
    c, _ = chat(body(output_config={"format": {"type": "json_schema", "schema": schema}}, temperature=0.2,
                     top_p=0.9, top_k=20, stop_sequences=["END"]))
    assert c["response_format"] == {"type": "json_schema",
                                    "json_schema": {"name": "output", "schema": schema, "strict": True}}
    assert (c["temperature"], c["top_p"], c["top_k"]) == (0.2, 0.9, 20)
    assert "stop" not in c  # the gateway applies stop sequences itself (tests/unit/api/messages/test_fidelity.py)


def test_claude_codes_extras_are_accepted_and_noted():
    user = json.dumps({"device_id": "d" * 64, "account_uuid": "", "session_id": "s-1"})
    c, notes = chat(body(context_management={"edits": []}, safeguards=[{"type": "dangerous_tool_use"}],
                         metadata={"user_id": user}))
    assert c["prompt_cache_key"] == "s-1"
    assert any("context_management" in n for n in notes) and any("safeguards" in n for n in notes)


@pytest.mark.parametrize("bad", [
    {"max_tokens": None}, {"max_tokens": 0}, {"model": 3}, {"messages": []},
    {"messages": [{"role": "tool", "content": "x"}]}, {"stream": "yes"}, {"thinking": {"type": "sometimes"}},
    {"thinking": {"type": "enabled"}}, {"tool_choice": {"type": "maybe"}}, {"stop_sequences": "END"},
    {"messages": [{"role": "user", "content": [{"type": "tool_use", "id": "x", "name": "y", "input": {}}]}]},
    {"output_config": {"format": {"type": "regex"}}},
])
def test_malformed_requests_get_anthropics_400(bad):
    refused(body(**bad))


# ---- the system prompt ----------------------------------------------------------------------------------

def test_system_blocks_of_a_string_or_nothing():
    assert request.system_blocks(None, "system", []) == []
    assert request.system_blocks("", "system", []) == []
    assert request.system_blocks("be brief", "system", []) == [{"type": "text", "text": "be brief"}]


def test_empty_system_texts_are_left_out_unless_they_carry_a_marker():
    blocks = request.system_blocks([{"type": "text", "text": ""}, {"type": "text", "text": "", "cache_control": {
        "type": "ephemeral"}}], "system", [])
    assert blocks == [{"type": "text", "text": "", "cache_control": {"type": "ephemeral"}}]


def test_a_system_block_that_is_no_text_is_refused_naming_it():
    with pytest.raises(GatewayError) as e:
        request.system_blocks([{"type": "text", "text": "a"}, {"type": "image"}], "system", [])
    assert (e.value.status, e.value.param) == (400, "system.1")


def test_the_system_prompt_is_one_string_when_one_block_is_unmarked():
    assert request.system_content([{"type": "text", "text": "a"}]) == "a"


def test_several_system_blocks_are_the_same_parts_marked_or_not():
    """A client that stops sending `cache_control` (the gateway marks the prompt itself) sends Qwen the same parts:
    the cache doctor sees no change of the system prompt (issue 81)."""
    marker = {"type": "ephemeral"}
    plain = request.system_content([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}])
    marked = request.system_content([{"type": "text", "text": "a"}, {"type": "text", "text": "b",
                                                                     "cache_control": marker}])
    assert plain == [{"type": "text", "text": "a"}, {"type": "text", "text": "\n\nb"}]
    assert [{k: v for k, v in p.items() if k != "cache_control"} for p in marked] == plain


def test_a_marked_system_prompt_is_the_same_text_in_parts():
    marker = {"type": "ephemeral"}
    parts = request.system_content([{"type": "text", "text": "a"}, {"type": "text", "text": "b",
                                                                    "cache_control": marker}])
    assert parts == [{"type": "text", "text": "a"}, {"type": "text", "text": "\n\nb", "cache_control": marker}]
    assert "".join(p["text"] for p in parts) == "a\n\nb"


# ---- sampling, tools, thinking's limits -----------------------------------------------------------------

@pytest.mark.parametrize("fields, param, words", [
    ({"temperature": 1.5}, "temperature", "less than or equal to 1"),
    ({"temperature": -0.1}, "temperature", "greater than or equal to 0"),
    ({"temperature": True}, "temperature", "valid number"),
    ({"top_p": "0.5"}, "top_p", "valid number"),
    ({"top_k": 1.5}, "top_k", "valid integer"),
    ({"stop_sequences": ["a", 1]}, "stop_sequences", "list of strings"),
])
def test_sampling_out_of_anthropics_ranges_is_refused(fields, param, words):
    e = refused(body(**fields))
    assert e.param == param and words in e.message


def test_sampling_within_the_ranges_goes_to_qwen_as_it_is():
    c, _ = chat(body(temperature=0, top_p=1, top_k=0))
    assert (c["temperature"], c["top_p"], c["top_k"]) == (0, 1, 0)


SCHEMA = {"type": "object"}


@pytest.mark.parametrize("tools, param", [
    ([{"name": "A", "input_schema": SCHEMA}, {"name": "A", "input_schema": SCHEMA}], "tools"),
    ([{"name": "has space", "input_schema": SCHEMA}], "tools.0.name"),
    ([{"name": "A"}], "tools.0.input_schema"),
    ([{"name": "A", "input_schema": {"type": "array"}}], "tools.0.input_schema.type"),
    ([{"input_schema": SCHEMA}], "tools.0.name"),
    ({"name": "A"}, "tools"),
])
def test_tools_anthropic_refuses_are_refused_naming_the_field(tools, param):
    assert refused(body(tools=tools)).param == param


@pytest.mark.parametrize("choice, param", [
    ({"type": "tool", "name": "Other"}, "tool_choice.name"),
    ({"type": "tool"}, "tool_choice.name"),
    ("auto", "tool_choice"),
])
def test_a_tool_choice_anthropic_refuses_is_refused(choice, param):
    assert refused(body(tools=[{"name": "A", "input_schema": SCHEMA}], tool_choice=choice)).param == param


def test_forcing_a_tool_needs_tools():
    assert refused(body(tool_choice={"type": "any"})).param == "tool_choice"


def test_a_thinking_budget_must_be_below_max_tokens_but_not_for_a_count():
    b = body(thinking={"type": "enabled", "budget_tokens": 2000}, max_tokens=2000)
    assert refused(b).param == "thinking.budget_tokens"
    counted = to_chat(b, [], lambda t, s: OURS, counting=True)  # count_tokens: no answer, no budget to fit
    assert counted["thinking_budget"] == 2000


@pytest.mark.parametrize("fields, param", [
    ({"tool_choice": {"type": "any"}, "tools": [{"name": "A", "input_schema": SCHEMA}]}, "tool_choice"),
    ({"temperature": 0.5}, "temperature"),
    ({"top_k": 5}, "top_k"),
    ({"top_p": 0.9}, "top_p"),
])
def test_what_anthropic_refuses_alongside_thinking_is_refused(fields, param):
    assert refused(body(thinking={"type": "adaptive"}, **fields)).param == param


def test_what_thinking_allows_is_taken():
    c, _ = chat(body(thinking={"type": "adaptive"}, temperature=1, top_p=0.95))
    assert (c["temperature"], c["top_p"], c["enable_thinking"]) == (1, 0.95, True)


@pytest.mark.parametrize("thinking, asks", [({"type": "enabled", "budget_tokens": 1024}, True),
                                            ({"type": "adaptive"}, True), ({"type": "disabled"}, False),
                                            (None, False), ("on", False)])
def test_asks_thinking_only_when_thinking_turns_it_on(thinking, asks):
    assert request.asks_thinking({"thinking": thinking, "output_config": {"effort": "high"}}) is asks


# ---- metadata and the fields with no Qwen meaning --------------------------------------------------------

@pytest.mark.parametrize("user, key", [
    (json.dumps({"device_id": "d", "session_id": "s-9"}), "s-9"),
    (json.dumps({"device_id": "d"}), json.dumps({"device_id": "d"})),
    ("{not json", "{not json"),
    ("user_abc", "user_abc"),
])
def test_the_prompt_cache_key_is_claude_codes_session_else_the_user_id(user, key):
    assert chat(body(metadata={"user_id": user}))[0]["prompt_cache_key"] == key


def test_no_user_id_no_prompt_cache_key():
    assert "prompt_cache_key" not in chat(body(metadata={"user_id": None}))[0]
    assert "prompt_cache_key" not in chat(body())[0]


def test_fields_without_a_qwen_meaning_are_noted_not_sent():
    c, notes = chat(body(speed="fast", service_tier="auto"))
    assert "speed" not in c and "service_tier" not in c
    assert "speed: accepted, no Qwen equivalent" in notes and "service_tier: accepted, no Qwen equivalent" in notes


def test_a_top_level_cache_control_is_checked_then_noted():
    assert refused(body(cache_control={"type": "ephemeral", "ttl": "2h"})).param == "cache_control.ttl"
    _, notes = chat(body(cache_control={"type": "ephemeral", "ttl": "5m"}))
    assert any(n.startswith("cache_control:") for n in notes)


def test_the_chat_request_carries_model_max_tokens_and_stream():
    c, _ = chat(body(stream=True, max_tokens=77))
    assert (c["model"], c["max_completion_tokens"], c["stream"]) == ("claude-sonnet-5-5", 77, True)
    assert c["messages"] == [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("schema, problem", [
    ({"type": "object", "properties": 99}, "properties"),
    ({"type": "object", "properties": {"a": 5}}, "properties.a"),
    ({"type": "object", "required": "a"}, "required"),
    ({"type": "object", "properties": {"a": {"type": "strin"}}}, "properties.a.type"),
])
def test_a_tool_input_schema_that_is_no_json_schema_is_refused(schema, problem):
    e = refused(body(tools=[{"name": "f", "input_schema": schema}]))
    assert e.param == "tools.0.input_schema" and e.message.startswith("tools.0.input_schema: JSON schema is invalid")
    assert problem in e.message


def test_a_tool_name_with_a_final_newline_is_refused_as_anthropic_does():
    tool = {"name": "get_weather\n", "input_schema": {"type": "object"}}
    assert chat(body(tools=[{**tool, "name": "get_weather"}]))[0]["tools"][0]["function"]["name"] == "get_weather"
    with pytest.raises(GatewayError) as e:
        chat(body(tools=[tool]))
    assert e.value.status == 400 and e.value.param == "tools.0.name"

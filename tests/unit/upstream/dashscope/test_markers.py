"""Where the body Qwen gets carries its explicit-cache markers (upstream/dashscope/markers.py): the client's own
first, at most four, the gateway's own only where room is left and they help, a ttl Qwen does not take noted."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from qwen_gateway.upstream.dashscope import markers
from qwen_gateway.upstream.dashscope.request import chat_to_qwen

EPHEMERAL = {"type": "ephemeral"}
LONG = "x" * (markers.MIN_TOKENS * markers.CHARS_PER_TOKEN)  # the size where a prefix is worth a marker
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}


def place(body: dict) -> tuple[dict, list[str]]:
    notes: list[str] = []
    return markers.place(body, notes), notes


def where(body: dict) -> list[str]:
    out = [f"tools.{i}" for i, t in enumerate(body.get("tools") or []) if "cache_control" in t]
    for j, m in enumerate(body["messages"]):
        assert "cache_control" not in m
        out += [f"messages.{j}.{k}" for k, p in enumerate(m["content"] if isinstance(m["content"], list) else [])
                if "cache_control" in p]
    return out


def test_short_prompts_get_no_marker_of_the_gateways():
    """A prefix under 1,024 tokens is not cached, and any marker turns Qwen's implicit cache off."""
    body = {"messages": [{"role": "system", "content": "short"}, {"role": "user", "content": "x" * 4000}]}
    out, notes = place(body)
    assert out == body and notes == []


def test_long_prompts_get_the_whole_prompt_and_the_system_prompt_marked():
    body = {"messages": [{"role": "system", "content": LONG}, {"role": "user", "content": "q"}], "tools": [TOOL]}
    out, _ = place(body)
    assert where(out) == ["messages.0.0", "messages.1.0"]  # no tool marker: tools are cached with any marker
    assert out["messages"][1]["content"] == [{"type": "text", "text": "q", "cache_control": EPHEMERAL}]
    assert body["messages"][0]["content"] == LONG  # the client's body is never altered
    short_system = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": LONG}]}
    assert where(place(short_system)[0]) == ["messages.1.0"]


def test_a_marker_goes_on_the_first_block_after_the_tools():
    """Issue 61 item 4. Qwen renders the tools after the leading system message's text: a marker there caches
    the system prompt alone, one on the first content part after them caches tools, system prompt and that part
    — what an agent's next session shares (Claude Code's opening reminder) — so the next session reads them."""
    tools = [{"type": "function", "function": {"name": f"t{i}", "description": "d" * 500,
                                               "parameters": {"type": "object", "properties": {}}}} for i in range(9)]
    opening = {"role": "user", "content": [{"type": "text", "text": "<system-reminder>git</system-reminder>"},
                                           {"type": "text", "text": "fix the bug"}]}
    body = {"tools": tools, "messages": [{"role": "system", "content": "You are an agent."}, opening]}
    assert where(place(body)[0]) == ["messages.1.0", "messages.1.1"]  # after the tools; the whole prompt
    later = {**body, "messages": [*body["messages"], {"role": "assistant", "content": "done"},
                                  {"role": "user", "content": "thanks"}]}
    assert where(place(later)[0]) == ["messages.1.0", "messages.3.0"]
    assert where(place({**body, "tools": tools[:2]})[0]) == []  # under 1,024 tokens with them: nothing
    assert where(place({**body, "messages": body["messages"][:1] + [{"role": "user", "content": "q"}]})[0]) == \
        ["messages.1.0"]  # one block after the tools: the whole prompt's marker is that one
    assert "messages.0.0" not in where(place({**body, "messages": [
        {"role": "system", "content": "s" * 2000}, opening]})[0])  # the system prompt alone: under 1,024 tokens
    clients = {**later, "messages": [later["messages"][0], {"role": "user", "content": [
        {**opening["content"][0], "cache_control": EPHEMERAL}, opening["content"][1]]}, *later["messages"][2:]]}
    assert where(place(clients)[0]) == ["messages.1.0", "messages.3.0"]  # the client's there: not another


def test_the_clients_markers_are_kept_and_counted_first():
    body = {"tools": [{**TOOL, "cache_control": EPHEMERAL}], "messages": [
        {"role": "system", "content": [{"type": "text", "text": LONG, "cache_control": EPHEMERAL}]},
        {"role": "user", "content": [{"type": "text", "text": "doc", "prompt_cache_breakpoint": {"mode": "explicit"}}]},
        {"role": "assistant", "content": "a"}, {"role": "user", "content": "q"}]}
    out, notes = place(body)
    assert where(out) == ["tools.0", "messages.0.0", "messages.1.0", "messages.3.0"] and notes == []
    assert out["messages"][1]["content"] == [{"type": "text", "text": "doc", "cache_control": EPHEMERAL}]
    full = {**body, "messages": [*body["messages"][:3], {"role": "user", "content": [
        {"type": "text", "text": "q", "cache_control": EPHEMERAL}]}, {"role": "user", "content": "more"}]}
    assert where(place(full)[0]) == ["tools.0", "messages.0.0", "messages.1.0", "messages.3.0"]  # no room left


def test_past_four_the_earliest_go_with_a_note():
    parts = [{"type": "text", "text": f"part {i}", "cache_control": EPHEMERAL} for i in range(6)]
    out, notes = place({"messages": [{"role": "user", "content": parts}]})
    assert where(out) == ["messages.0.2", "messages.0.3", "messages.0.4", "messages.0.5"]
    assert notes == ["2 of the client's 6 cache_control markers dropped, the earliest: Qwen takes the last 4"]


def test_a_ttl_or_type_qwen_does_not_take_becomes_ephemeral_with_a_note():
    five = {"type": "ephemeral", "ttl": "5m"}
    out, notes = place({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "a", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
        {"type": "text", "text": "b", "cache_control": five}]}]})
    assert [p["cache_control"] for p in out["messages"][0]["content"]] == [EPHEMERAL, EPHEMERAL]
    assert notes == ["cache_control ttl 1h sent as Qwen's 5 minutes (reset on each hit): this model's explicit "
                     "cache takes no ttl (Qwen4 models' does)"]  # 5m is Qwen's own validity: nothing to say


def test_a_marker_on_a_message_moves_to_its_last_part():
    out, _ = place({"messages": [{"role": "user", "content": "q", "cache_control": EPHEMERAL}]})
    assert out["messages"] == [{"role": "user", "content": [{"type": "text", "text": "q", "cache_control": EPHEMERAL}]}]


def test_explicit_breakpoints_only_means_none_of_the_gateways():
    body = {"prompt_cache_options": {"mode": "explicit", "ttl": "30m"},
            "messages": [{"role": "system", "content": LONG}, {"role": "user", "content": "q"}]}
    out, _ = place(body)
    assert where(out) == [] and "prompt_cache_options" not in out


def test_nothing_to_mark_is_left_alone():
    body = {"messages": [{"role": "user", "content": LONG}, {"role": "assistant", "content": None, "tool_calls": []}]}
    assert where(place(body)[0]) == []


def test_whole_and_streamed_requests_are_marked_alike():
    chat = {"model": "gpt-4o", "messages": [{"role": "system", "content": LONG}, {"role": "user", "content": "q"}]}
    whole = chat_to_qwen(chat, model="qwen3-coder-plus", oauth=False)
    streamed = chat_to_qwen({**chat, "stream": True}, model="qwen3-coder-plus", oauth=False)
    assert where(whole) == where(streamed) == ["messages.0.0", "messages.1.0"]


def test_a_responses_breakpoint_and_explicit_mode_reach_the_markers():
    from qwen_gateway.api.responses.request import responses_to_chat
    chat = responses_to_chat({"model": "gpt-4o", "instructions": LONG, "prompt_cache_options": {"mode": "explicit"},
                              "input": [{"role": "user", "content": [
                                  {"type": "input_text", "text": "doc", "prompt_cache_breakpoint": {"mode": "explicit"}},
                                  {"type": "input_text", "text": " and a question"}]}]})
    out = chat_to_qwen(chat, model="qwen3-coder-plus", oauth=False)
    assert where(out) == ["messages.1.0"]  # the client's only: explicit breakpoints, none of the gateway's
    assert "prompt_cache_options" not in out


def test_the_pass_through_keeps_marked_system_blocks():
    from qwen_gateway.api.messages.passthrough import has_markers, own_body
    body = {"model": "m", "max_tokens": 9, "system": [{"type": "text", "text": "a", "cache_control": EPHEMERAL},
                                                       {"type": "text", "text": "b"}],
            "messages": [{"role": "user", "content": "q"}, {"role": "system", "content": "c"}]}
    out = own_body(body, [])
    assert out["system"] == [{"type": "text", "text": "a", "cache_control": EPHEMERAL}, {"type": "text", "text": "b"},
                             {"type": "text", "text": "c"}]
    assert has_markers(body) and not has_markers({**body, "system": "a"})
    assert own_body({**body, "system": "a"}, [])["system"] == "a\n\nc"  # unmarked: one text, as before


def _size(m: dict) -> int:
    """A message's characters as the markers count them: its text, its tool calls' arguments."""
    content = m.get("content")
    text = len(content) if isinstance(content, str) else sum(
        len(p["text"]) for p in content or [] if isinstance(p, dict) and isinstance(p.get("text"), str))
    calls = m.get("tool_calls")
    return text + sum(len(str((c.get("function") or {}).get("arguments") or "")) for c in calls
                      if isinstance(c, dict)) if isinstance(calls, list) else text


_call = st.fixed_dictionaries({"id": st.just("c"), "type": st.just("function"), "function": st.fixed_dictionaries(
    {"name": st.just("f"), "arguments": st.sampled_from(["", "{}", "x" * 1500])})})


@given(messages=st.lists(st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "assistant", "tool"]),
     "content": st.sampled_from(["", "q", "x" * 1000, "x" * 4095, LONG]) | st.none() | st.lists(
         st.fixed_dictionaries({"type": st.just("text"), "text": st.sampled_from(["a", "x" * 2000])}), max_size=2)},
    optional={"tool_calls": st.lists(_call, max_size=2) | st.none()}), min_size=1, max_size=6))
def test_the_gateways_markers_go_where_the_prompt_is_long_enough(messages):
    """Without the client's markers: the whole prompt marked once it reaches MIN_TOKENS (at four characters a
    token), the leading system prompt when it does alone — whatever mix of text, parts and tool calls."""
    out, _ = place({"messages": messages})
    size = markers.MIN_TOKENS * markers.CHARS_PER_TOKEN
    expected = []
    if messages[0]["role"] == "system" and _size(messages[0]) >= size and markers._parts(messages[0]["content"]):
        expected.append(f"messages.0.{len(markers._parts(messages[0]['content'])) - 1}")
    last = len(messages) - 1
    if sum(map(_size, messages)) >= size and markers._parts(messages[last]["content"]) and \
            f"messages.{last}.{len(markers._parts(messages[last]['content'])) - 1}" not in expected:
        expected.append(f"messages.{last}.{len(markers._parts(messages[last]['content'])) - 1}")
    assert sorted(where(out)) == sorted(expected)


# ---- Qwen4's explicit cache: a lifetime per request (the catalogue's `cache_ttls`) ------------------------------

HOUR = {"type": "ephemeral", "ttl": "1h"}


def test_a_qwen4_model_keeps_the_hour_the_client_asked_and_its_own_markers_take_it():
    body = {"model": "qwen4-max", "messages": [
        {"role": "system", "content": [{"type": "text", "text": LONG, "cache_control": HOUR}]},
        {"role": "user", "content": "q " + LONG}]}
    out, notes = place(body)
    assert out["messages"][0]["content"][0]["cache_control"] == HOUR
    assert out["messages"][1]["content"][-1]["cache_control"] == HOUR  # the gateway's whole-prompt marker
    assert notes == []


def test_five_minutes_on_a_qwen4_model_is_its_default_marker():
    out, notes = place({"model": "qwen4-max", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "a", "cache_control": {"type": "ephemeral", "ttl": "5m"}}]}]})
    assert out["messages"][0]["content"][0]["cache_control"] == EPHEMERAL and notes == []


def test_the_hour_on_a_model_without_it_is_five_minutes_and_says_which_have_it():
    out, notes = place({"model": "qwen3.6-plus", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "a", "cache_control": HOUR}]}]})
    assert out["messages"][0]["content"][0]["cache_control"] == EPHEMERAL
    assert notes == ["cache_control ttl 1h sent as Qwen's 5 minutes (reset on each hit): qwen3.6-plus's explicit "
                     "cache takes no ttl (Qwen4 models' does)"]


def test_retention_24h_is_qwen4s_hour_with_a_note():
    body = {"model": "qwen4-max", "prompt_cache_retention": "24h",
            "messages": [{"role": "system", "content": LONG}, {"role": "user", "content": "q"}]}
    out, notes = place(body)
    assert "prompt_cache_retention" not in out
    assert [p["cache_control"] for m in out["messages"] for p in m["content"]] == [HOUR, HOUR]
    assert notes == ["prompt_cache_retention 24h sent as Qwen's longest cache lifetime, 1 hour (ttl 1h on its "
                     "markers)"]


def test_retention_in_memory_is_five_minutes_and_said_on_every_model():
    body = {"prompt_cache_retention": "in_memory", "messages": [{"role": "user", "content": "q"}]}
    _, four = place({**body, "model": "qwen4-max"})
    _, other = place({**body, "model": "qwen3.6-plus"})
    assert four == ["prompt_cache_retention in_memory sent as Qwen's 5 minutes (reset on each hit)"]
    assert other == ["prompt_cache_retention in_memory not sent: qwen3.6-plus's explicit cache lasts 5 minutes "
                     "(reset on each hit), it takes no lifetime"]


def test_retention_24h_on_a_model_without_the_hour_is_said():
    _, notes = place({"model": "qwen3.6-plus", "prompt_cache_retention": "24h",
                      "messages": [{"role": "user", "content": "q"}]})
    assert notes == ["prompt_cache_retention 24h not sent: qwen3.6-plus's explicit cache lasts 5 minutes (reset "
                     "on each hit), it takes no lifetime"]


def test_anthropics_automatic_caching_with_an_hour_marks_the_whole_prompt_for_an_hour():
    body = {"model": "qwen4-max", "cache_control": HOUR, "messages": [{"role": "user", "content": LONG}]}
    out, _ = place(body)
    assert "cache_control" not in out and out["messages"][0]["content"][-1]["cache_control"] == HOUR


def test_the_lifetime_asked_is_read_from_the_body_qwen_gets():
    assert markers.lifetime_s({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "a", "cache_control": HOUR}]}]}) == 3600
    assert markers.lifetime_s({"messages": [{"role": "user", "content": "a"}]}) == 300


def test_a_new_message_past_qwens_lookback_gets_a_marker_where_the_turn_before_ended():
    """A new message of 25 parts: the whole prompt's marker looks back 20 content blocks and would not find the
    prefix the turn before stored where its prompt ended; the gateway's own marker on the assistant message after
    it keeps that prefix within reach (issue 81). 19 parts: no need."""
    def body(parts: int, answer: object = "done") -> dict:
        return {"messages": [{"role": "user", "content": LONG}, {"role": "assistant", "content": answer},
                             {"role": "user", "content": [{"type": "text", "text": f"part {k}"} for k in range(parts)]}]}

    assert where(place(body(25))[0]) == ["messages.1.0", "messages.2.24"]
    assert where(place(body(19))[0]) == ["messages.2.18"]
    calls = place({"messages": [*body(25, None)["messages"][:1], {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        *[{"role": "tool", "tool_call_id": "c", "content": f"result {k}"} for k in range(25)]]})[0]
    assert where(calls) == ["messages.2.0", "messages.26.0"]  # no text to mark: the first part after it

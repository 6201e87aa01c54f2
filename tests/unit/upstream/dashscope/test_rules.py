"""The translations that make OpenAI requests acceptable to DashScope (upstream/dashscope/rules.py, models.py tables)."""

from __future__ import annotations

import json
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qwen_gateway.upstream.dashscope import rules, thinking
from qwen_gateway.upstream.dashscope.request import chat_to_qwen
from qwen_gateway.models.learned import LearnedFacts
from qwen_gateway.models.catalogue import Thinking
from qwen_gateway.models.model_map import is_vision, output_cap, vision_model
from qwen_gateway.upstream.dashscope import ranges
from qwen_gateway.api.responses.request import responses_to_chat

TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
USER = {"role": "user", "content": "hi"}


def qwen(body: dict, model: str = "coder-model", oauth: bool = True, **kw) -> tuple[dict, list[str]]:
    notes: list[str] = []
    return chat_to_qwen({"model": "gpt-4o", "messages": [USER], **body}, model=model, oauth=oauth, notes=notes,
                        **kw), notes


# ---- R1 -------------------------------------------------------------------------------------------------


def test_developer_becomes_system_and_leading_system_prompts_merge():
    notes: list[str] = []
    out = rules.system_roles([{"role": "system", "content": "a"}, {"role": "developer", "content": "b"}, USER,
                              {"role": "developer", "content": "later"}], notes)
    assert out == [{"role": "system", "content": "a\n\nb"}, USER, {"role": "system", "content": "later"}]
    assert notes == ["developer messages sent as system (Qwen has no developer role)"]
    parts = [{"type": "text", "text": "x"}, {"type": "image_url", "image_url": {"url": "u"}}]
    kept = rules.system_roles([{"role": "system", "content": "a"}, {"role": "system", "content": parts}])
    assert len(kept) == 2  # not only text: not merged
    assert rules.system_roles([USER], notes := []) == [USER] and notes == []


def test_chat_to_qwen_never_sends_developer_and_leaves_the_input_alone():
    body = {"model": "gpt-5", "messages": [{"role": "developer", "content": "d"}, USER]}
    out = chat_to_qwen(body, model="coder-model", oauth=False)
    assert [m["role"] for m in out["messages"]] == ["system", "user"]
    assert body["messages"][0]["role"] == "developer"


@pytest.mark.parametrize("model,kind", [("coder-model", Thinking.HYBRID), ("qwen3.6-plus", Thinking.HYBRID),
                                        ("qwen3-30b-a3b-thinking-2507", Thinking.ONLY),
                                        ("qwen3-next-80b-a3b-thinking", Thinking.ONLY),
                                        ("qwen3.8-max", Thinking.EFFORT), ("qwen3.8-max-2026-09-01", Thinking.EFFORT)])
def test_thinking_kinds(model, kind):
    assert thinking.spec(model).kind is kind


# ---- R4 ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_the_cap_goes_as_max_completion_tokens_within_the_models_cap(field):
    """Model Studio deprecated `max_tokens` for `max_completion_tokens` (notice of 2026-04-20)."""
    out, notes = qwen({field: 128000}, model="qwen3-coder-plus")
    assert out["max_completion_tokens"] == 65536 and "max_tokens" not in out
    assert notes == ["max_completion_tokens 128000 lowered to 65536, qwen3-coder-plus's output cap (the catalogue's)"]
    out, notes = qwen({field: 1000}, model="qwen3-coder-plus")
    assert out["max_completion_tokens"] == 1000 and "max_tokens" not in out and notes == []


@pytest.mark.parametrize("model", ["qwen3.7-max", "qwen4-max", "qwen3.6-flash", "qwen3.5-flash", "qwen3.6-max-preview",
                                   "some-new-model"])
def test_a_model_without_a_known_cap_gets_the_clients_cap_unchanged(model):
    out, notes = qwen({"max_completion_tokens": 30000}, model=model, oauth=False)
    assert out["max_completion_tokens"] == 30000 and notes == []


def test_a_cap_qwen_named_holds_a_model_the_catalogue_has_no_cap_for():
    body = {"model": "m", "max_completion_tokens": 50000, "messages": [USER]}
    learned = LearnedFacts()
    learned.learn("qwen9-max", "output", 40000)
    notes: list[str] = []
    out = chat_to_qwen(body, model="qwen9-max", oauth=False, learned=learned, notes=notes)
    assert out["max_completion_tokens"] == 40000
    assert "max_completion_tokens 50000 lowered to 40000, qwen9-max's output cap (learned from Qwen's refusal at" \
        in notes[0]


def test_both_names_sent_keep_the_current_one():
    out, _ = qwen({"max_tokens": 10, "max_completion_tokens": 20})
    assert out["max_completion_tokens"] == 20 and "max_tokens" not in out


def test_output_caps_from_the_catalogue_and_snapshots_read_as_their_family():
    assert output_cap("qwen-max") == 8192 and output_cap("qwen-max-2025-01-25") == 8192
    assert output_cap("qwen3-max") == 65536 and output_cap("qwen3-coder-plus-2025-07-22") == 65536
    assert output_cap("qwen3.8-max") == 131072
    assert output_cap("nope") is None and output_cap("qwen3.7-max") is None


def test_responses_and_completions_limits_are_clamped_too():
    chat = responses_to_chat({"model": "gpt-5", "input": "x", "max_output_tokens": 128000})
    assert chat_to_qwen(chat, model="qwen-flash", oauth=False)["max_completion_tokens"] == 32768


# ---- R10 ----------------------------------------------------------------------------------------------------

IMAGE_MSG = {"role": "user", "content": [{"type": "text", "text": "what?"},
                                         {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}


def test_images_stay_on_the_model_their_route_chose():
    """Which model reads images is the request's route (qwen_routes: turn/model_route.py, the engine's
    `_routed`, tests/unit/turn/test_model_route.py); the body keeps it, with the high-resolution flag on a vision
    model."""
    out, notes = qwen({"messages": [IMAGE_MSG]}, model="qwen3-vl-plus", oauth=False)
    assert out["model"] == "qwen3-vl-plus" and out["vl_high_resolution_images"] is True and notes == []
    out, _ = qwen({"messages": [IMAGE_MSG]}, model="qwen3-coder-plus", oauth=False)  # images=off: as asked
    assert out["model"] == "qwen3-coder-plus" and "vl_high_resolution_images" not in out
    out, _ = qwen({}, model="qwen3-coder-plus", oauth=False)
    assert out["model"] == "qwen3-coder-plus" and "vl_high_resolution_images" not in out


def test_vision_list():
    for m in ("qwen3.6-plus", "qwen3.7-plus", "qwen3-vl-plus", "qwen3-vl-flash", "coder-model"):  # the last: a rule
        assert is_vision(m), m
    for m in ("qwen3-coder-plus", "qwen-max", "qwen3-235b-a22b-thinking-2507"):
        assert not is_vision(m), m
    assert vision_model("qwen-max", oauth=False, default_model="coder-model") == "qwen3.6-plus"  # OAuth-only


# ---- qwen-code's shape ------------------------------------------------------------------------------------


def test_qwen_codes_shape_with_its_markers_where_they_help():
    """A short prompt gets no marker (tests/unit/upstream/dashscope/test_markers.py has the rest); the session and thinking."""
    out, _ = qwen({"messages": [{"role": "system", "content": "s"}, USER], "tools": TOOLS, "stream": True})
    assert out["messages"] == [{"role": "system", "content": "s"}, USER] and out["tools"] == TOOLS
    assert out["preserve_thinking"] is True and set(out["metadata"]) == {"sessionId", "promptId"}  # OAuth: always


@pytest.mark.parametrize("model,kept", [("qwen3.6-plus", True), ("qwen4-max", True), ("qwen3-coder-plus", False),
                                        ("qwen3.5-plus", False), ("some-new-model", False)])
def test_preserve_thinking_goes_to_a_key_account_where_the_model_keeps_reasoning(model, kept):
    out, _ = qwen({}, model=model, oauth=False)
    assert ("preserve_thinking" in out) is kept


def _session_id_as_before(chat_body: dict) -> str:
    """rules.session_id as it was written before its speed-up (json.dumps per call, uuid.uuid5): session ids
    must not change, or every client's Qwen prompt cache starts over."""
    import hashlib
    import json
    key = chat_body.get("prompt_cache_key")
    if isinstance(key, str) and key:
        return str(uuid.uuid5(rules._SESSION_NS, ("key:" + key).encode("utf-8", "surrogatepass")))
    opening = []
    for m in chat_body.get("messages") or []:
        if not isinstance(m, dict):
            continue
        role = "system" if m.get("role") == "developer" else m.get("role")
        opening.append([role, rules._text(m.get("content")) or json.dumps(m.get("content"), sort_keys=True)])
        if role == "user":
            break
    text = json.dumps([chat_body.get("model"), opening], ensure_ascii=False)
    return str(uuid.uuid5(rules._SESSION_NS, "conv:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()))


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                     max_leaves=8)
_message = st.fixed_dictionaries({"role": st.sampled_from(["system", "developer", "user", "assistant", 7]),
                                  "content": st.text() | _json | st.lists(st.fixed_dictionaries(
                                      {"type": st.just("text"), "text": st.text()}), max_size=3)})


@settings(max_examples=300, deadline=None)
@given(model=st.text() | st.none() | st.integers(), messages=st.lists(_message | _json, max_size=4),
       cache_key=st.none() | st.text())
def test_session_ids_are_the_ones_they_always_were(model, messages, cache_key):
    body = {"model": model, "messages": messages, **({"prompt_cache_key": cache_key} if cache_key is not None else {})}
    assert rules.session_id(body) == _session_id_as_before(body)
    assert rules.session_id({"model": "m", "messages": [{"role": "user", "content": "\ud83d lone"}]}) == \
        _session_id_as_before({"model": "m", "messages": [{"role": "user", "content": "\ud83d lone"}]})


def _system_roles_as_before(messages: list[dict]) -> list[dict]:
    """R1 as it was first written (one pass, every message looked at): the reference the faster one keeps to."""
    out: list[dict] = []
    for m in messages:
        if m.get("role") == "developer":
            m = {**m, "role": "system"}
        prev = out[-1] if out else None
        if m.get("role") == "system" and prev is not None and all(x.get("role") == "system" for x in out):
            a, b = rules._text(prev.get("content")), rules._text(m.get("content"))
            if a is not None and b is not None:
                out[-1] = {**prev, "content": rules._joined(prev["content"], m["content"], a)}
                continue
        out.append(m)
    return out


_marked_text = st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=3)},
                                     optional={"cache_control": st.just({"type": "ephemeral"})})


@given(messages=st.lists(st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "developer", "user", "assistant", "tool", 7])},
    optional={"content": st.text(max_size=3) | st.none() | st.lists(_marked_text, max_size=2) | _json}), max_size=7))
def test_system_roles_are_what_they_always_were(messages):
    """Only the opening run of system prompts is walked now; a conversation without a developer message keeps
    the rest as it came (the same message objects)."""
    notes: list[str] = []
    out = rules.system_roles(messages, notes)
    assert out == _system_roles_as_before(messages)
    assert bool(notes) == any(m.get("role") == "developer" for m in messages)
    if not notes:
        opening = next((i for i, m in enumerate(messages) if m.get("role") != "system"), len(messages))
        assert all(a is b for a, b in zip(reversed(out), reversed(messages[opening:])))


def test_a_session_id_makes_no_json_encoder(monkeypatch):
    """The opening's JSON (and a non-text content's) is written by encoders made once, not one per request."""
    body = {"model": "m", "messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {}}]}, USER]}
    expected = _session_id_as_before(body)
    made = []
    real = json.encoder.c_make_encoder
    monkeypatch.setattr(json.encoder, "c_make_encoder", lambda *a: made.append(1) or real(*a))
    for _ in range(3):
        assert rules.session_id(body) == expected
    assert made == []


def test_a_conversations_opening_is_hashed_once(monkeypatch):
    """Every turn resends the opening: its id is hashed on the first turn, read back on the next ones."""
    turn1 = {"model": "m", "messages": [{"role": "system", "content": "s" * 100}, {"role": "user", "content": "once"}]}
    turn2 = {**turn1, "messages": [*turn1["messages"], {"role": "assistant", "content": "a"}, USER]}
    expected = _session_id_as_before(turn1)
    hashed = []
    real = rules.hashlib.sha256
    monkeypatch.setattr(rules.hashlib, "sha256", lambda data: hashed.append(1) or real(data))
    assert rules.session_id(turn1) == rules.session_id(turn2) == rules.session_id(turn1) == expected
    assert len(hashed) <= 1


def test_session_id_is_stable_per_conversation():
    turn1 = {"model": "gpt-4o", "messages": [{"role": "system", "content": "s"}, USER]}
    turn2 = {**turn1, "messages": turn1["messages"] + [{"role": "assistant", "content": "a"}, {"role": "user",
                                                                                             "content": "more"}]}
    other = {**turn1, "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "else"}]}
    assert rules.session_id(turn1) == rules.session_id(turn2) != rules.session_id(other)
    as_dev = {**turn1, "messages": [{"role": "developer", "content": "s"}, USER]}
    assert rules.session_id(as_dev) == rules.session_id(turn1)
    keyed = rules.session_id({**turn1, "prompt_cache_key": "k"})
    assert keyed == rules.session_id({**other, "prompt_cache_key": "k"}) != rules.session_id(turn1)
    out = chat_to_qwen(turn2, model="coder-model", oauth=False)
    assert out["metadata"]["sessionId"] == rules.session_id(turn1) and "prompt_cache_key" not in out
    assert chat_to_qwen(turn1, model="m", oauth=False, session_id="given")["metadata"]["sessionId"] == "given"


def test_notes_are_not_repeated_when_a_retry_translates_again():
    notes: list[str] = []
    body = {"model": "gpt-5", "messages": [USER], "max_completion_tokens": 10 ** 6}
    for _ in range(3):
        chat_to_qwen(body, model="qwen3-coder-plus", oauth=True, notes=notes)
    assert len(notes) == 1


def test_a_refusal_teaches_a_models_thinking_kind():
    def taught(message: str) -> Thinking | None:
        found = ranges.read(message)
        return found.thinking if found is not None else None
    assert taught("<400> InternalError.Algo.InvalidParameter: The value of the enable_thinking "
                  "parameter is restricted to True.") is Thinking.ONLY
    assert taught("'reasoning_effort' and 'thinking_budget' cannot be set simultaneously") is Thinking.EFFORT
    assert taught("Range of max_tokens should be [1, 8192]") is None
    learned = LearnedFacts()
    learned.thinking["new-thinker"] = Thinking.ONLY
    assert thinking.spec("new-thinker", learned.thinking).kind is Thinking.ONLY
    assert thinking.spec("new-thinker") == thinking.UNKNOWN
    out = chat_to_qwen({"model": "x", "messages": [USER], "reasoning_effort": "none"}, model="new-thinker",
                       oauth=False, learned=learned)
    assert "enable_thinking" not in out


def test_a_lone_surrogate_in_the_opening_names_a_session():
    """`"\\ud83d"` (JavaScript's JSON for a string cut inside an emoji) in the system prompt or first user
    message: hashed as it is (issue 31: a 500 UnicodeEncodeError), distinct from the same text without it."""
    cut = {"model": "gpt-4o", "messages": [{"role": "system", "content": "s\ud83d"}, {"role": "user", "content": "\ud83d"}]}
    whole = {"model": "gpt-4o", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": ""}]}
    assert rules.session_id(cut) == rules.session_id(cut) != rules.session_id(whole)
    assert chat_to_qwen(cut, model="coder-model", oauth=False)["metadata"]["sessionId"] == rules.session_id(cut)
    keyed = {**whole, "prompt_cache_key": "thread\ud83d"}  # the fuzzer's find: a 500 from uuid5
    assert rules.session_id(keyed) == rules.session_id({**cut, "prompt_cache_key": "thread\ud83d"})
    assert rules.session_id(keyed) == str(uuid.uuid5(rules._SESSION_NS, "key:thread".encode() + b"\xed\xa0\xbd"))
    assert rules.session_id({**whole, "prompt_cache_key": "k"}) == str(uuid.uuid5(rules._SESSION_NS, "key:k"))

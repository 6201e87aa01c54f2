"""Issue 31, OpenAI items, end to end: openai-python (raw HTTP where the exact shape is the point) -> a real
mitmdump -> the strict emulator.

Item 1: no 5xx from client input (embeddings past one batch when the first batch fails; `stream_options`
not an object; a lone surrogate escape in the opening of a conversation). Item 4: schema-invalid chat and
completions bodies refused 400 naming the field. The fuzzer over every API is tests/e2e/test_e2e_fuzz.py."""

from __future__ import annotations

import json

import httpx
import pytest

from e2e.test_e2e_fidelity_chat import fresh_gw  # noqa: F401 - the fixture: a key account that serves embeddings
from e2e.test_e2e_rules import client, sent

pytestmark = pytest.mark.e2e

USER = [{"role": "user", "content": "x"}]


def post(gw, path: str, raw: str | dict, **headers) -> httpx.Response:
    """A body sent as given (a str goes byte for byte: `"\\ud83d"` stays an escape, as JavaScript writes it)."""
    content = raw if isinstance(raw, str) else json.dumps(raw)
    return httpx.post(gw.url + path, content=content, trust_env=False, timeout=30,
                      headers={"content-type": "application/json", **headers})


def no_traceback(gw) -> None:
    assert "Traceback" not in gw.log(), gw.log()[-3000:]


# ---- item 1: embeddings past one batch ------------------------------------------------------------------------


@pytest.mark.parametrize("count", [5, 11, 25])
def test_embeddings_without_an_embeddings_account_are_refused_alike_whatever_their_count(gw, emu, count):
    import openai

    with pytest.raises(openai.BadRequestError) as e:
        client(gw).embeddings.create(model="text-embedding-3-small", input=[f"t{i}" for i in range(count)])
    assert e.value.status_code == 400 and e.value.code == "embeddings_unavailable", e.value
    no_traceback(gw)


@pytest.mark.parametrize("count", [5, 11, 25])
def test_embeddings_whose_first_batch_meets_a_spent_quota_get_the_429_whatever_their_count(fresh_gw, emu, count):
    import openai

    emu.fault("quota429", count=10, path="/embeddings")
    with pytest.raises(openai.RateLimitError) as e:
        client(fresh_gw).embeddings.create(model="text-embedding-3-small", input=[f"t{i}" for i in range(count)])
    assert e.value.status_code == 429 and e.value.code == "insufficient_quota", e.value
    no_traceback(fresh_gw)


# ---- item 1: stream_options not an object ---------------------------------------------------------------------


@pytest.mark.parametrize("path, body", [
    ("/v1/chat/completions", {"model": "gpt-4o", "messages": USER}),
    ("/v1/completions", {"model": "gpt-3.5-turbo-instruct", "prompt": "x"}),
    ("/v1/responses", {"model": "gpt-4o", "input": "x"}),
])
@pytest.mark.parametrize("value", [[{}], "x", 5, True])
@pytest.mark.parametrize("stream", [True, False])
def test_stream_options_that_is_not_an_object_is_refused_naming_it(gw, emu, path, body, value, stream):
    r = post(gw, path, {**body, "stream": stream, "stream_options": value})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == "stream_options" and err["type"] == "invalid_request_error", err
    assert "stream_options" in err["message"] and "object" in err["message"]
    assert emu.chat_requests() == []
    no_traceback(gw)


def test_stream_options_as_an_object_or_null_is_taken(gw, emu):
    c = client(gw)
    chunks = list(c.chat.completions.create(model="gpt-4o", messages=USER, stream=True,
                                            stream_options={"include_usage": True}))
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    r = post(gw, "/v1/chat/completions", {"model": "gpt-4o", "messages": USER, "stream_options": None})
    assert r.status_code == 200, r.text


# ---- item 1: a lone surrogate escape in the opening ------------------------------------------------------------

CUT = "cut inside an emoji: \\ud83d"  # JSON text: what JSON.stringify writes for "…😀".slice(0, -1)


@pytest.mark.parametrize("path, raw, headers", [
    ("/v1/chat/completions", '{"model":"gpt-4o","messages":[{"role":"user","content":"%s"}]}', {}),
    ("/v1/chat/completions", '{"model":"gpt-4o","messages":[{"role":"system","content":"%s"},'
                             '{"role":"user","content":"hi"}],"stream":true}', {}),
    ("/v1/responses", '{"model":"gpt-4o","input":"%s"}', {}),
    ("/v1/responses", '{"model":"gpt-4o","instructions":"%s","input":"hi","stream":true}', {}),
    ("/v1/completions", '{"model":"gpt-3.5-turbo-instruct","prompt":"%s"}', {}),
    ("/v1/messages", '{"model":"claude-sonnet-4-6","max_tokens":64,"messages":[{"role":"user","content":"%s"}]}',
     {"anthropic-version": "2023-06-01"}),
    ("/v1/messages", '{"model":"claude-sonnet-4-6","max_tokens":64,"system":"%s","messages":[{"role":"user",'
                     '"content":"hi"}],"stream":true}', {"anthropic-version": "2023-06-01"}),
])
def test_a_lone_surrogate_in_the_opening_is_answered_and_qwen_gets_valid_utf8(gw, emu, path, raw, headers):
    r = post(gw, path, raw % CUT, **headers)
    assert r.status_code == 200, r.text
    (req,) = emu.chat_requests()
    wire = json.dumps(req["body"], ensure_ascii=False)
    assert "\ufffd" in wire and "\\ud83d" not in wire  # the replacement character, no lone escape
    wire.encode("utf-8")  # strict: valid UTF-8
    no_traceback(gw)


# ---- item 5: Responses ------------------------------------------------------------------------------------------


def test_a_sealed_reasoning_item_sent_back_without_include_is_used(gw, emu):
    """`include` governs what the answer carries; the item the client sends back is Qwen's reasoning again."""
    emu.switches(reasoning=True)
    c = client(gw)
    first = c.responses.create(model="gpt-5.5", input="think", store=False, include=["reasoning.encrypted_content"],
                               reasoning={"summary": "auto"})
    rs = next(o for o in first.output if o.type == "reasoning")
    assert rs.encrypted_content and rs.summary[0].text
    items = [o.model_dump(exclude_none=True) for o in first.output]
    c.responses.create(model="gpt-5.5", store=False,  # no include on the follow-up
                       input=[{"role": "user", "content": "think"}, *items, {"role": "user", "content": "again"}])
    assistant = emu.chat_requests()[-1]["body"]["messages"][1]
    assert assistant["role"] == "assistant" and assistant["reasoning_content"] == rs.summary[0].text


@pytest.mark.parametrize("stream", [False, True])
def test_reasoning_shows_its_text_only_when_a_summary_is_asked(gw, emu, stream):
    """Codex sends `reasoning: {"effort": "low"}` (no summary): a reasoning item with `summary: []`, as OpenAI
    answers; `summary: "auto"` gets the text. Either way the next turn (previous_response_id) gives Qwen the
    reasoning back."""
    emu.switches(reasoning=True)
    c = client(gw)

    def ask(**kw):
        if not stream:
            return c.responses.create(model="gpt-5.5", **kw)
        with c.responses.stream(model="gpt-5.5", **kw) as s:
            kinds = [e.type for e in s]
            final = s.get_final_response()
        final.kinds = kinds  # type: ignore[attr-defined]
        return final

    plain = ask(input="think", reasoning={"effort": "low"})
    rs = next(o for o in plain.output if o.type == "reasoning")
    assert rs.summary == [] and rs.encrypted_content is None
    if stream:
        assert not any(k.startswith("response.reasoning_summary") for k in plain.kinds)
    shown = ask(input="think", reasoning={"effort": "low", "summary": "auto"})
    text = next(o for o in shown.output if o.type == "reasoning").summary[0].text
    assert text
    if stream:
        assert "response.reasoning_summary_text.delta" in shown.kinds
    ask(input="again", previous_response_id=plain.id, reasoning={"effort": "low"})
    assistant = emu.chat_requests()[-1]["body"]["messages"][1]
    assert assistant["role"] == "assistant" and assistant["reasoning_content"] == text


@pytest.mark.parametrize("stream", [False, True])
def test_truncation_auto_drops_the_oldest_items_to_fit(make_gateway, oauth_home, emu, stream):
    """The spec: `truncation: "auto"` drops items from the beginning of the conversation when the input exceeds
    the context window; `disabled` (the default) gets the 400. The window here: qwen_context_limits."""
    import openai

    gw = make_gateway("small", env=oauth_home["env"], args=("--set", "qwen_context_limits=gpt-5.5=400"))
    c = client(gw)
    old = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}: " + "word " * 60} for i in range(8)]
    body = dict(model="gpt-5.5", instructions="be brief", input=[*old, {"role": "user", "content": "the question"}])
    with pytest.raises(openai.BadRequestError) as e:
        c.responses.create(**body)
    assert e.value.code == "context_length_exceeded" and emu.chat_requests() == []
    if stream:
        with c.responses.stream(**body, truncation="auto") as s:
            r = s.get_final_response()
    else:
        r = c.responses.create(**body, truncation="auto")
    assert r.status == "completed" and r.truncation == "auto" and r.output_text == "Echo: the question"
    sent = emu.chat_requests()[-1]["body"]["messages"]
    assert sent[0]["role"] == "system" and "be brief" in json.dumps(sent[0])
    assert 2 <= len(sent) < 10 and sent[1]["role"] == "user" and "the question" in json.dumps(sent[-1])
    assert "turn 0:" not in json.dumps(sent)
    no_traceback(gw)


def test_verbosity_service_tier_and_safety_identifier_are_answered_not_dropped(gw, emu):
    """Codex sends `text.verbosity: "low"` on every turn: Qwen gets it as a system hint (DashScope has no such
    field, and the emulator refuses none of this); `service_tier` is answered with the tier used;
    `safety_identifier` and `prompt_cache_key` are echoed on the Response."""
    c = client(gw)
    r = c.responses.create(model="gpt-5.5", input="hi", instructions="you help", text={"verbosity": "low"},
                           service_tier="flex", safety_identifier="user-42", prompt_cache_key="thread-7")
    assert (r.service_tier, r.safety_identifier, r.prompt_cache_key) == ("default", "user-42", "thread-7")
    system = emu.chat_requests()[-1]["body"]["messages"][0]
    assert system["role"] == "system" and "you help" in json.dumps(system) and "Be concise" in json.dumps(system)
    for key in ("verbosity", "service_tier", "safety_identifier", "text"):
        assert key not in emu.chat_requests()[-1]["body"]
    chat = c.chat.completions.create(model="gpt-4o", messages=USER, verbosity="high", service_tier="priority",
                                     safety_identifier="user-42")
    assert chat.service_tier == "default"
    sent_body = sent(emu)
    assert sent_body["messages"][0]["role"] == "system" and "Be thorough" in json.dumps(sent_body["messages"][0])
    assert "verbosity" not in sent_body and "safety_identifier" not in sent_body
    c.chat.completions.create(model="gpt-4o", messages=USER, verbosity="medium")
    assert sent(emu)["messages"][0]["role"] == "user"  # the default: nothing added


def test_a_lone_surrogate_in_a_stored_ids_place_is_not_found(gw, emu):
    """The fuzzer's find: previous_response_id "\\ud83d" -> 500 UnicodeEncodeError from the store's lookup."""
    r = post(gw, "/v1/responses", '{"model":"gpt-4o","input":"x","previous_response_id":"\\ud83d"}')
    assert r.status_code == 400 and r.json()["error"]["code"] == "previous_response_not_found", r.text
    r = post(gw, "/v1/responses", '{"model":"gpt-4o","input":[{"type":"item_reference","id":"\\ud83d"},'
                                  '{"role":"user","content":"x"}]}')
    assert r.status_code == 200, r.text
    no_traceback(gw)


@pytest.mark.parametrize("stream", [False, True])
def test_truncation_auto_also_fits_qwens_own_context_limit(gw, emu, stream):
    """No limit configured in the gateway: Qwen's 400 "Range of input length should be [1, N]" names it; with
    truncation auto the oldest items are dropped to fit and the request is sent again (retry `truncated`)."""
    import openai

    emu.switches(context_limit=300)
    c = client(gw)
    old = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}: " + "word " * 60} for i in range(8)]
    body = dict(model="gpt-5.5", instructions="be brief", input=[*old, {"role": "user", "content": "the question"}])
    with pytest.raises(openai.BadRequestError) as e:
        c.responses.create(**body)
    assert e.value.code == "context_length_exceeded"
    if stream:
        with c.responses.stream(**body, truncation="auto") as s:
            r = s.get_final_response()
    else:
        r = c.responses.create(**body, truncation="auto")
    assert r.status == "completed" and r.output_text == "Echo: the question"
    first, second = emu.chat_requests()[-2:]
    assert len(second["body"]["messages"]) < len(first["body"]["messages"]) == 10
    assert "turn 0:" not in json.dumps(second["body"]) and "be brief" in json.dumps(second["body"]["messages"][0])
    no_traceback(gw)

"""Bodies the real APIs refuse are refused (issue 51, items 2 and 3), through a real mitmdump with the real SDKs:
openai-python (embeddings, chat) and the anthropic SDK (Messages, from .tools/anthropic-venv).

- Embeddings checked against OpenAI's `CreateEmbeddingRequest`: no `model`, a `model` that is an object,
  `encoding_format: "bogus"` (floats came back), `user: 1.5`, an unknown field → 400 `invalid_request_error`
  whose `param` names the field.
- A chat function whose `parameters` is no JSON Schema (`properties: 99`) → 400 `invalid_function_parameters`,
  "Invalid schema for function 'NAME': …", instead of going to Qwen.
- Messages checked against Anthropic's request shape (`MessageCreateParams`): an unknown top-level field, an
  unknown `metadata` key, `output_config.effort: 1.5`, `cache_control: {"type": 0}` → Anthropic's 400
  `invalid_request_error` in its pydantic words ("…: Extra inputs are not permitted", "…: Input should be …").
- `output_config.effort` without `thinking` asks for no thinking: Qwen is told thinking off and the answer has
  no thinking; with Claude Code's `thinking: {"type": "adaptive"}` the effort still sets the level.

For every refusal the emulator (Qwen) received nothing.
"""

from __future__ import annotations


import pytest

from helpers.home import Home
from helpers.procs import Gateway
from helpers.team import ANTHROPIC_PYTHON, NO_ANTHROPIC, anthropic_calls

pytestmark = pytest.mark.e2e

needs_anthropic = pytest.mark.skipif(not ANTHROPIC_PYTHON.exists(), reason=NO_ANTHROPIC)
MODEL_PATHS = ("/chat/completions", "/embeddings", "/messages")  # what reaching Qwen means
MESSAGE = {"model": "claude-sonnet-4-6", "max_tokens": 256, "messages": [{"role": "user", "content": "hi"}]}
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object",
                                                                                  "properties": 99}}}


def _gateway(emulator, home, args: tuple[str, ...] = ()) -> Gateway:
    """A gateway whose only account is a key on the emulator that serves embeddings too, its default model one
    that thinks by default (so that thinking asked for nothing shows)."""
    gateway_home = Home(home, emulator)
    gateway_home.key("ds", embeddings=True, default_model="qwen3.6-plus")
    return Gateway(home / "gw", args=args, env=gateway_home.env()).start()


@pytest.fixture(scope="module")
def sgw(emulator, tmp_path_factory):
    gw = _gateway(emulator, tmp_path_factory.mktemp("strict"))
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def pgw(emulator, tmp_path_factory):
    """The same, passing Messages requests through to the account's Anthropic-compatible base."""
    gw = _gateway(emulator, tmp_path_factory.mktemp("strict-pass"), ("--set", "qwen_messages_passthrough=true"))
    yield gw
    gw.stop()


def client(gw: Gateway):
    import openai
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="client-key", max_retries=0, timeout=30)


def upstream(emu) -> list[dict]:
    """The model requests Qwen (the emulator) received."""
    return [r for r in emu.requests() if r["path"].split("?")[0].endswith(MODEL_PATHS)]


def refused(call):
    import openai
    with pytest.raises(openai.BadRequestError) as e:
        call()
    return e.value


# ---- embeddings: OpenAI's CreateEmbeddingRequest ---------------------------------------------------------------

EMBEDDINGS_REFUSED = [  # (the body's fields beyond `input`, the param OpenAI names, words of its message)
    ({}, "model", "Missing required parameter: 'model'."),
    ({"model": {"a": 1}}, "model", "Invalid type for 'model'"),
    ({"model": "text-embedding-3-small", "encoding_format": "bogus"}, "encoding_format",
     "Invalid value for 'encoding_format'"),
    ({"model": "text-embedding-3-small", "user": 1.5}, "user", "Invalid type for 'user'"),
    ({"model": "text-embedding-3-small", "bogus": 1}, "bogus", "Unknown parameter: 'bogus'."),
]


@pytest.mark.parametrize("fields, param, words", EMBEDDINGS_REFUSED, ids=[p for _, p, _ in EMBEDDINGS_REFUSED])
def test_an_embeddings_body_openai_refuses_is_refused_naming_the_field(sgw, emu, fields, param, words):
    import httpx
    body = {"input": "hi", **fields}
    # the SDK, its own fields overridden by extra_body (a null model: the SDK's "no model"), and the raw body
    extra = fields if "model" in fields else {"model": None}
    e = refused(lambda: client(sgw).embeddings.create(model="text-embedding-3-small", input="hi", extra_body=extra))
    raw = httpx.post(sgw.url + "/v1/embeddings", json=body, trust_env=False, timeout=30)
    assert raw.status_code == 400, raw.text
    for err in (e.body, raw.json()["error"]):
        assert (err["type"], err["param"]) == ("invalid_request_error", param), err
        assert words in err["message"], err
    assert e.status_code == 400
    assert upstream(emu) == []


def test_a_good_embeddings_body_is_still_answered(sgw, emu):
    r = client(sgw).embeddings.create(model="text-embedding-3-small", input=["a", "b"], user="u-1")
    assert len(r.data) == 2 and len(r.data[0].embedding) == 1536
    assert [b["body"]["user"] for b in upstream(emu)] == ["u-1"]


# ---- chat: a function's parameters must be a JSON Schema -----------------------------------------------------


def test_a_chat_function_whose_parameters_are_no_json_schema_is_refused(sgw, emu):
    c = client(sgw)
    for stream in (False, True):
        e = refused(lambda s=stream: c.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], tools=[WEATHER], stream=s))
        assert (e.status_code, e.type, e.code, e.param) == (400, "invalid_request_error",
                                                            "invalid_function_parameters", "tools[0].function.parameters")
        assert e.body["message"].startswith("Invalid schema for function 'get_weather': "), e.body
        assert "99 is not of type 'object'" in e.body["message"]
    assert upstream(emu) == []
    ok = c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], tools=[
        {"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])
    assert ok.choices[0].message is not None and len(upstream(emu)) == 1


# ---- Messages: Anthropic's MessageCreateParams ---------------------------------------------------------------

MESSAGES_REFUSED = [  # (fields, Anthropic's message)
    ({"extra_body": {"bogus": 1}}, "bogus: Extra inputs are not permitted"),
    ({"metadata": {"user_id": "u", "session": "s"}}, "metadata.session: Extra inputs are not permitted"),
    ({"output_config": {"effort": 1.5}},
     "output_config.effort: Input should be 'low', 'medium', 'high', 'xhigh' or 'max'"),
    ({"cache_control": {"type": 0}}, "cache_control.type: Input should be 'ephemeral'"),
]


@needs_anthropic
@pytest.mark.parametrize("fields, message", MESSAGES_REFUSED, ids=[m.split(":")[0] for _, m in MESSAGES_REFUSED])
def test_a_messages_body_anthropic_refuses_is_refused_in_its_words(sgw, emu, fields, message):
    params = {**MESSAGE, **fields}
    out = anthropic_calls(sgw.url, "sk-ant-client", [{"op": "create", "params": params},
                                                     {"op": "stream", "params": params}])
    for o in out:
        raised = o.get("raised")
        assert raised, o
        assert (raised["class"], raised["status"], raised["type"]) == ("BadRequestError", 400,
                                                                      "invalid_request_error"), raised
        assert raised["message"] == message and raised["body"]["type"] == "error", raised
    assert upstream(emu) == []


@needs_anthropic
def test_a_passed_through_messages_body_is_checked_the_same_way(pgw, emu):
    out = anthropic_calls(pgw.url, "sk-ant-client", [{"op": "create", "params": {**MESSAGE, **fields}}
                                                     for fields, _ in MESSAGES_REFUSED])
    assert [o["raised"]["message"] for o in out] == [m for _, m in MESSAGES_REFUSED], out
    assert upstream(emu) == []


def _thinking_knobs(emu) -> dict:
    body = upstream(emu)[-1]["body"]
    return {k: body[k] for k in ("enable_thinking", "thinking_budget", "reasoning_effort") if k in body}


@needs_anthropic
def test_an_effort_without_thinking_turns_no_thinking_on(sgw, emu):
    """A client lowering effort to save tokens must not pay for hidden reasoning: Anthropic thinks only when
    `thinking` asks."""
    params = {**MESSAGE, "output_config": {"effort": "low"}}
    whole, streamed = (o["answer"] for o in anthropic_calls(sgw.url, "sk-ant-client", [
        {"op": "create", "params": params}, {"op": "stream", "params": params}]))
    assert _thinking_knobs(emu) == {"enable_thinking": False}
    assert [r["body"].get("enable_thinking") for r in upstream(emu)] == [False, False]
    streamed = streamed["message"]
    assert [b["type"] for b in whole["content"]] == [b["type"] for b in streamed["content"]] == ["text"]
    assert whole["usage"]["output_tokens"] == 3  # "Echo: hi": no reasoning paid


@needs_anthropic
def test_claude_codes_adaptive_thinking_at_an_effort_still_thinks(sgw, emu):
    params = {**MESSAGE, "max_tokens": 32000, "thinking": {"type": "adaptive", "display": "omitted"},
              "output_config": {"effort": "low"}}
    (out,) = anthropic_calls(sgw.url, "sk-ant-client", [{"op": "stream", "params": params}])
    assert _thinking_knobs(emu) == {"enable_thinking": True, "thinking_budget": 1024}  # low's budget
    assert [b["type"] for b in out["answer"]["message"]["content"]] == ["thinking", "text"]

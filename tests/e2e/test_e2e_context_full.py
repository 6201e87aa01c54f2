"""A prompt over its model's limit, in each client's own words (issue 37, item 4), through a real gateway: the
gateway's own guard (`qwen_context_limits`) and Qwen's refusal (the emulator's `context_limit`: DashScope's
`Range of input length should be [1, M]`).

- The anthropic SDK (Messages API): 400 `invalid_request_error` `prompt is too long: N tokens > M maximum`, the
  text Claude Code parses (tests/e2e/test_e2e_claude_code_context.py shows what it then does); whole and streamed.
- openai-python: 400 `context_length_exceeded` in OpenAI's words ("This model's maximum context length is M
  tokens. However, your messages resulted in N tokens…"), `param` naming the endpoint's prompt parameter.

N is the gateway's count of the prompt (tiktoken), the number a Messages stream reports as `input_tokens`; M the
limit (the option's, or the one Qwen named)."""

from __future__ import annotations

import re

import pytest

from helpers.home import CODING_PLAN, Home
from helpers.procs import Gateway
from e2e.test_e2e_chat import client
from e2e.test_e2e_messages import PYTHON, sdk

pytestmark = pytest.mark.e2e

GUARDED, LIMIT = "claude-haiku-4-5", 40  # the guard's limit is per client model name
OPENAI_GUARDED = "gpt-4o-mini"
QWEN_LIMIT = 30  # the emulator's input limit (its own tokens: characters / 4 of the messages)
LONG = "word " * 400
ANTHROPIC = re.compile(r"prompt is too long: (\d+) tokens > (\d+) maximum")
OPENAI = re.compile(r"This model's maximum context length is (\d+) tokens\. However, your messages resulted in "
                    r"(\d+) tokens\. Please reduce the length of the messages\.")
needs_sdk = pytest.mark.skipif(not PYTHON.exists(), reason="anthropic SDK not installed (scripts/install-test-tools.sh "
                                                           "installs it into .tools/anthropic-venv)")


def key_gateway(emulator, home, *args: str) -> Gateway:
    """A gateway whose one account is a key on the emulator."""
    gateway_home = Home(home, emulator)
    gateway_home.key("emu", path=CODING_PLAN, default_model="qwen3-coder-plus")
    return Gateway(home / "gw", args=args, env=gateway_home.env(), connlog=True).start()


@pytest.fixture(scope="module")
def ctx_gw(emulator, tmp_path_factory) -> Gateway:
    """The guard limits two client model names."""
    gw = key_gateway(emulator, tmp_path_factory.mktemp("context-full"), "--set",
                     f"qwen_context_limits={GUARDED}={LIMIT}", "--set", f"qwen_context_limits={OPENAI_GUARDED}={LIMIT}")
    yield gw
    gw.stop()


def refusals(gw: Gateway, model: str) -> list[dict]:
    """A long prompt to `model`, whole then streamed, through the anthropic SDK: what each raised."""
    params = {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": LONG}]}
    outcomes = sdk(gw, "calls", {"calls": [{"op": "create", "params": params}, {"op": "stream", "params": params}]})
    raised = [o.get("raised") for o in outcomes["result"]]
    assert all(raised), outcomes
    return raised


def anthropic_numbers(raised: dict) -> tuple[int, int]:
    assert (raised["status"], raised["class"], raised["type"]) == (400, "BadRequestError", "invalid_request_error")
    found = ANTHROPIC.fullmatch(raised["message"])
    assert found, raised["message"]
    return int(found.group(1)), int(found.group(2))


@needs_sdk
def test_messages_guard_says_prompt_is_too_long(ctx_gw, emu):
    """Was: "This model's maximum context length is 40 tokens. However, your messages resulted in …" (OpenAI's)."""
    numbers = [anthropic_numbers(r) for r in refusals(ctx_gw, GUARDED)]
    (tokens, limit), again = numbers
    assert limit == LIMIT and tokens > LIMIT and again == (tokens, limit)  # the same prompt, counted the same
    assert emu.chat_requests() == []  # refused before Qwen


@needs_sdk
def test_messages_qwen_refusal_says_prompt_is_too_long(ctx_gw, emu):
    """Was: Qwen's own "Range of input length should be [1, 30]"."""
    emu.switches(context_limit=QWEN_LIMIT)
    for raised in refusals(ctx_gw, "claude-sonnet-4-6"):
        tokens, limit = anthropic_numbers(raised)
        assert limit == QWEN_LIMIT and tokens > QWEN_LIMIT
    assert len(emu.chat_requests()) == 2  # Qwen refused both


def test_openai_dialects_keep_openais_words_for_qwens_refusal(ctx_gw, emu):
    """Qwen's refusal on chat, Responses and completions: OpenAI's words and code, the endpoint's parameter.
    Was: Qwen's "Range of input length should be [1, 30]" with `param: messages` on every endpoint."""
    import openai
    emu.switches(context_limit=QWEN_LIMIT)
    c = client(ctx_gw)
    calls = {"messages": lambda: c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": LONG}]),
             "input": lambda: c.responses.create(model="gpt-4o", input=LONG),
             "prompt": lambda: c.completions.create(model="gpt-4o", prompt=LONG)}
    for param, call in calls.items():
        with pytest.raises(openai.BadRequestError) as e:
            call()
        assert (e.value.code, e.value.param, e.value.type) == ("context_length_exceeded", param,
                                                               "invalid_request_error"), e.value.body
        found = OPENAI.fullmatch(e.value.body["message"])
        assert found and int(found.group(1)) == QWEN_LIMIT and int(found.group(2)) > QWEN_LIMIT, e.value.body
    with pytest.raises(openai.BadRequestError) as e:  # the guard's, for comparison: the same shape
        c.chat.completions.create(model=OPENAI_GUARDED, messages=[{"role": "user", "content": LONG}])
    assert e.value.code == "context_length_exceeded" and OPENAI.fullmatch(e.value.body["message"]).group(1) == str(LIMIT)


@needs_sdk
def test_messages_passed_through_say_prompt_is_too_long_too(emulator, emu, tmp_path):
    """With `qwen_messages_passthrough` the key account's Anthropic-compatible base refuses in its own shape, with
    Qwen's words (the emulator's context400 fault: `Range of input length should be [1, 983616]`); the gateway's
    count is far lower than Qwen's limit, so the prompt is said to be one token over it."""
    gw = key_gateway(emulator, tmp_path, "--set", "qwen_messages_passthrough=true")
    try:
        emu.fault("context400", count=2)
        for raised in refusals(gw, "claude-sonnet-4-6"):
            assert anthropic_numbers(raised) == (983617, 983616)
        assert [r["path"].split("?")[0] for r in emu.requests()][-2:] == ["/apps/anthropic/v1/messages"] * 2
    finally:
        gw.stop()

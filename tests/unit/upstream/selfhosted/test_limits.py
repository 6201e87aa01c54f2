"""A self-hosted server's window (upstream/selfhosted/limits.py): its refusals read in every release's words, the
output cap fitted to what the prompt leaves."""

from __future__ import annotations

import pytest

from qwen_gateway.errors import CLIENT, CONTEXT
from qwen_gateway.providers import Prompt
from qwen_gateway.upstream.selfhosted import answer, limits

V11_CAP = ("'max_tokens' or 'max_completion_tokens' is too large: 128000. This model's maximum context length is "
           "40960 tokens and your request has 9021 input tokens (128000 > 40960 - 9021). None")
V20_CAP = ("This model's maximum context length is 40960 tokens. However, you requested 128000 output tokens and "
           "your prompt contains at least 9021 input tokens, for a total of at least 137021 tokens. Please reduce "
           "the length of the input prompt or the number of requested output tokens.")
SGLANG_CAP = ("Requested token count exceeds the model's maximum context length of 40960 tokens. You requested a "
              "total of 137021 tokens: 9021 tokens from the input messages and 128000 tokens for the completion. "
              "Please reduce the number of tokens in the input messages or the completion to fit within the limit.")
V11_OVER = ("This model's maximum context length is 40960 tokens. However, your request has 41200 input tokens. "
            "Please reduce the length of the input messages. None")
V30_OVER = "Input length (41200) exceeds model's maximum context length (40960)."
SGLANG_OVER = "The input (41200 tokens) is longer than the model's context length (40960 tokens)."


@pytest.mark.parametrize("words", [V11_CAP, V20_CAP, SGLANG_CAP])
def test_a_refused_output_cap_is_never_a_prompt_too_long(words):
    assert limits.counted(words) == limits.Counted(9021, 40960, False)
    err = answer.classify(400, {"error": {"message": words, "type": "BadRequestError", "code": 400}})
    assert err.kind is CLIENT and err.counted == (9021, 40960) and err.param == "max_tokens"
    assert err.code != "context_length_exceeded"


@pytest.mark.parametrize("words", [V11_OVER, V30_OVER, SGLANG_OVER])
def test_a_prompt_over_the_window_is_an_overflow_with_the_servers_numbers(words):
    assert limits.counted(words) == limits.Counted(41200, 40960, True)
    flat = answer.classify(400, {"object": "error", "message": words, "type": "BadRequestError", "code": 400})
    assert flat.kind is CONTEXT and flat.counted == (41200, 40960) and flat.code == "context_length_exceeded"


def test_a_cap_refusal_whose_prompt_alone_fills_the_window_is_an_overflow():
    words = V20_CAP.replace("at least 9021", "at least 40960")
    assert limits.counted(words) == limits.Counted(40960, 40960, True)


def test_the_cap_is_what_the_prompt_leaves_of_the_window_and_said():
    notes: list[str] = []
    body = {"model": "Qwen/Qwen3-8B", "max_tokens": 128000, "max_completion_tokens": 64000}
    fitted = limits.fit(body, window=40960, prompt=Prompt(9000), notes=notes, source="the server's model list")
    left = 40960 - (round(9000 * limits.COUNT_SHARE) + limits.COUNT_EXTRA)
    assert fitted["max_tokens"] == fitted["max_completion_tokens"] == left and body["max_tokens"] == 128000
    assert "max_tokens 128000 lowered to" in notes[-1] and "40,960" in notes[-1]
    exact = limits.fit(body, window=None, prompt=Prompt(9021, exact=True, window=40960), notes=[], source="x")
    assert exact["max_tokens"] == 40960 - 9021  # the server's own count: no margin


def test_unknown_stays_unknown_and_a_cap_that_fits_is_kept():
    body = {"model": "m", "max_tokens": 128000}
    assert limits.fit(body, window=None, prompt=Prompt(10), notes=[], source="x") is body  # window unknown
    assert limits.fit(body, window=40960, prompt=None, notes=[], source="x") is body  # prompt not counted
    assert limits.fit(body, window=40960, prompt=Prompt(40000), notes=[], source="x") is body  # the server decides
    small = {"model": "m", "max_tokens": 100}
    assert limits.fit(small, window=40960, prompt=Prompt(9000), notes=[], source="x") is small

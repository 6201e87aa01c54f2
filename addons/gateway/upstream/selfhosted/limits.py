"""A self-hosted server's window: the prompt and the answer share `max_model_len` tokens (vLLM and SGLang refuse a
request whose prompt plus output cap is over it; neither lowers the cap — vllm #42474). The window is read from the
server's own list (models.py); the output cap sent is what the prompt leaves of it, and a refusal of the cap, in any
release's words, is read for the server's own count of the prompt — never taken for a prompt that is too long.

The wordings, from ../shared/docs/selfhosted-servers.md (vLLM's serving code and issues, SGLang's):
- vLLM up to 2025 (v0.11): `'max_tokens' or 'max_completion_tokens' is too large: M. This model's maximum context
  length is L tokens and your request has N input tokens (M > L - N).`; a prompt alone over it: `This model's maximum
  context length is L tokens. However, your request has N input tokens.`
- vLLM 2026 (v0.20, vllm #42474): `This model's maximum context length is L tokens. However, you requested M output
  tokens and your prompt contains at least N input tokens, …`; v0.30: `Input length (N) exceeds model's maximum
  context length (L).`
- SGLang: `Requested token count exceeds the model's maximum context length of L tokens. You requested a total of T
  tokens: N tokens from the input messages and M tokens for the completion.`; `The input (N tokens) is longer than
  the model's context length (L tokens).`"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

from ...exchange import note
from ...providers import Prompt

# (L, N) from a refusal of the output cap: the window and the server's count of the prompt
_CAP = (
    re.compile(r"is too large: \d+\. This model's maximum context length is (?P<L>\d+) tokens and your request has "
               r"(?P<N>\d+) input tokens", re.I),
    re.compile(r"maximum context length is (?P<L>\d+) tokens\. However, you requested \d+ output tokens and your "
               r"prompt contains at least (?P<N>\d+) input tokens", re.I),
    re.compile(r"maximum context length of (?P<L>\d+) tokens\. You requested a total of \d+ tokens: (?P<N>\d+) "
               r"tokens from the input messages", re.I),
)
# (L, N) from a refusal of the prompt itself
_OVERFLOW = (
    re.compile(r"maximum context length is (?P<L>\d+) tokens\. However, your request has (?P<N>\d+) input tokens",
               re.I),
    re.compile(r"Input length \((?P<N>\d+)\) exceeds model's maximum context length \((?P<L>\d+)\)", re.I),
    re.compile(r"The input \((?P<N>\d+) tokens\) is longer than the model's context length \((?P<L>\d+) tokens\)",
               re.I),
)
CAP_FIELDS = ("max_completion_tokens", "max_tokens")  # vLLM reads the first, else the second
# The gateway counts with tiktoken, the server with the model's tokenizer and its chat template (role markers, the
# tools' schemas in the system prompt): its count is aimed this far above the gateway's. A miss costs one refusal,
# which says the server's own count (sent again with it).
COUNT_SHARE, COUNT_EXTRA = 1.15, 256


class Counted(NamedTuple):
    """What a refusal said of this request: the server's count of its prompt, its window, whether the prompt alone
    is over it (a true overflow) or only the output cap was."""

    prompt: int
    window: int
    overflow: bool


def counted(message: str) -> Counted | None:
    """The server's numbers in a context refusal, in any known release's words; None: it names none."""
    for pattern in _CAP:
        if (m := pattern.search(message)) is not None:
            prompt, window = int(m["N"]), int(m["L"])
            return Counted(prompt, window, prompt >= window)
    for pattern in _OVERFLOW:
        if (m := pattern.search(message)) is not None:
            return Counted(int(m["N"]), int(m["L"]), True)
    return None


def room(window: int, prompt: Prompt) -> int:
    """The output tokens the window leaves the prompt: exact when the server counted it, else aimed above the
    gateway's count."""
    used = prompt.tokens if prompt.exact else math.ceil(prompt.tokens * COUNT_SHARE) + COUNT_EXTRA
    return window - used


def fit(body: dict, *, window: int | None, prompt: Prompt | None, notes: list[str], source: str) -> dict:
    """The body with its output cap within what the prompt leaves of the window (said on the flow); unchanged when
    the window or the prompt's count is unknown, or when the prompt seems to leave nothing (the server's count
    decides: its refusal says it)."""
    if prompt is not None and prompt.window is not None:
        window, source = prompt.window, "the server's refusal"
    if window is None or prompt is None:
        return body
    left = room(window, prompt)
    if left < 1:
        return body
    out = body
    for name in CAP_FIELDS:
        cap = body.get(name)
        if isinstance(cap, int) and not isinstance(cap, bool) and cap > left:
            counted_by = "the server counts" if prompt.exact else "the gateway counts about"
            note(notes, f"{name} {cap} lowered to {left}: {body.get('model')}'s window is {window:,} tokens "
                        f"({source}) and {counted_by} {prompt.tokens:,} in the prompt")
            out = {**out, name: left}
    return out

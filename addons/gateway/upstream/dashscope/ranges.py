"""The one reader of Qwen's refusals that teach something about a model: the ranges it names (an output cap, a
thinking budget, an input length, whatever parameter the request sent), the relation "X [a] must be greater
than Y [b]", a thinking switch the model refuses, a model that answers streams only.

Only Qwen's own words teach: a refusal's message (the `message` of its error object, never the whole body) must
be one of the wordings below from its first character to its last, and the text it names must not be text the
request itself carried, in its body, its URL or its headers — an upstream that checks a body's schema echoes what
a client wrote (an extra key named "Range of max_tokens should be [1, 1]"), one may echo a header (a client's
User-Agent), and no client may teach the gateway a fact for everyone.
`learnable` says whether a reading may be learned from the body that was sent. Every other refusal wording
Qwen is known to use is listed (`KNOWN`), so that a new one is counted and shown instead of passing unseen.
"""

from __future__ import annotations

import re
from typing import TypeGuard

from ... import jsonio
from ...models.catalogue import Thinking
from ...providers import Lesson
from ...models.learned import BUDGET, FLOORS, INPUT, OUTPUT

_ALGO = r"(?:<400> )?(?:InternalError\.Algo\.InvalidParameter: )?"
_CAP_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
_END = r"\.?\s*"

# (pattern, the fact it bounds): "Range of max_tokens should be [1, 65536]" (R4, every client repo that met it);
# Qwen names the parameter it received, max_completion_tokens too (OpenMinis #35); "The thinking_budget parameter
# must be a positive integer and not greater than 38912" (cherry-studio#7263); "Range of input length should be
# [1, 983616]" (the context refusal, dashscope-rules.md).
_RANGES = (
    (re.compile(_ALGO + r"Range of (max_tokens|max_completion_tokens|max_output_tokens) should be \[1, (\d+)\]" + _END),
     OUTPUT),
    (re.compile(_ALGO + r"Range of (thinking_budget) should be \[1, (\d+)\]" + _END), BUDGET),
    (re.compile(_ALGO + r"The (thinking_budget) parameter must be a positive integer and not greater than (\d+)" +
                _END), BUDGET),
    (re.compile(_ALGO + r"Range of (input length) should be \[1, (\d+)\]" + _END), INPUT),
)
# A plan's Anthropic-compatible base words an output cap as Anthropic does: "max_tokens: 40000 > 32768, which is
# the maximum allowed number of output tokens for MODEL" (the bound is the second number)
_ANTHROPIC_CAP = re.compile(r"(max_tokens): \d+ > (\d+), which is the maximum allowed number of output tokens for "
                            r"[\w.\-]+" + _END)
# "max_completion_tokens [64000] must be greater than thinking_budget [65536]" (DashScope, OpenMinis #35)
_RELATION = re.compile(_ALGO + r"(max_tokens|max_completion_tokens) \[(\d+)\] must be greater than (thinking_budget) "
                       r"\[(\d+)\]" + _END)
# R9: "The value of the enable_thinking parameter is restricted to True." (new-api#1519, opensquilla#794);
# "'reasoning_effort' and 'thinking_budget' cannot be set simultaneously" (opencode#41531)
_THINKING = (
    (re.compile(_ALGO + r"The value of the enable_thinking parameter is restricted to True" + _END, re.I), Thinking.ONLY),
    (re.compile(_ALGO + r"(?:The )?enable_thinking (?:must be set to true|is mandatory)[^\[\]]*", re.I), Thinking.ONLY),
    (re.compile(_ALGO + r"'?reasoning_effort'? and '?thinking_budget'? cannot be set simultaneously" + _END, re.I),
     Thinking.EFFORT),
)
# "This model only support stream mode, please enable the stream parameter to access the model." (public threads)
_STREAM = re.compile(_ALGO + r"This model only support stream mode, please enable the stream parameter to access the "
                     r"model" + _END, re.I)

# The other refusals Qwen is known to word (dashscope-rules.md R1-R10, the emulator's rules, the context and
# model-not-found answers): recognised, nothing to learn. A 400 matching none is a new wording: counted, shown.
KNOWN = re.compile("|".join((
    r"is not one of \[", r"Json mode response is not supported", r"tool_choice parameter does not support",
    r"batch size is invalid", r"Range of (?:temperature|top_p) should be", r"Unexpected item type",
    r"cache_control\.type", r"does not exist or you do not have access", r"must be one of:",
    r"thinking_budget parameter must be a positive integer", r"max_tokens is deprecated", r"dimension should be",
    r"contents should be a string", r"lone surrogate", r"input length", r"maximum context length",
    r"prompt is too long", r"Thinking may not be enabled", r"not_found_error",
    r"Extra inputs are not permitted", r"Field required", r"must be greater than", r"Range of",
)), re.I)


def read(message: str) -> Lesson | None:
    """The message's teaching, when all of it is one of Qwen's own wordings; None otherwise."""
    text = message.strip()
    for pattern, fact in _RANGES:
        if m := pattern.fullmatch(text):
            return Lesson(_own(m), m.group(1), fact, int(m.group(2)))
    if m := _ANTHROPIC_CAP.fullmatch(text):
        return Lesson(_own(m), m.group(1), OUTPUT, int(m.group(2)))
    if m := _RELATION.fullmatch(text):
        return Lesson(_own(m), m.group(1), bound=int(m.group(2)), below=m.group(3))
    for pattern, kind in _THINKING:
        if m := pattern.fullmatch(text):
            return Lesson(_own(m), thinking=kind)
    if m := _STREAM.fullmatch(text):
        return Lesson(_own(m), stream_only=True)
    return None


def _own(m: re.Match) -> str:
    """The words of a match past Qwen's error-class prefix: what a client would have had to write to forge it."""
    text = m.group(0)
    return re.sub("^" + _ALGO, "", text).rstrip(". \t\n")


def known(message: str) -> bool:
    return read(message) is not None or bool(KNOWN.search(message))


def learnable(reading: Lesson, sent: dict, model: str, carried: str = "") -> str | None:
    """Why this reading may not be learned from the request `sent` (None: it may): the words it was read from
    are in what the request carried — its body, or `carried`: its URL and headers (a client's User-Agent goes
    upstream as it came, and an upstream may echo it); the range names a parameter the request did not send, or
    a bound the value sent was within; the bound is under the smallest any catalogue model has."""
    words = reading.text.lower()
    if words in jsonio.dumps(sent).decode("utf-8", "replace").lower() or words in carried.lower():
        return "its words are in what the request sent (a client's text echoed, not Qwen's rule)"
    if reading.fact is None or reading.bound is None:
        return None
    if reading.fact == OUTPUT:
        value = sent.get(reading.param)
        if reading.param not in _CAP_FIELDS or not _int(value):
            return f"the request sent no {reading.param}"
        if value <= reading.bound:
            return f"the request's {reading.param} {value} is within [1, {reading.bound}]"
    if reading.fact == BUDGET and not _int(sent.get("thinking_budget")):
        return "the request sent no thinking_budget"
    if reading.bound < FLOORS[reading.fact]:
        return f"{reading.bound} is under {FLOORS[reading.fact]:,}, the smallest any model of the catalogue has"
    if not model:
        return "the request named no model"
    return None


def _int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)

"""DashScope's drift check, `qwen-auth check --deep` (drift.py): a few small requests of the account's own key, each on one model, that show what
Qwen does now against what the gateway assumes of it — one range refusal (the output cap), one stream's shape,
partial mode, and the explicit cache read on a repeated prefix — and the report every check fills: each
difference with what to do, what matched, the tokens spent (from Qwen's usage). Never the key.

Each probe is sent as the gateway sends a key account's request (upstream/dashscope/headers.py: its headers and
User-Agent) to `{base}/chat/completions`; the refusal is read by the gateway's own reader (dashscope/ranges.py)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ...accounts import Credential
from ...cache_usage import read as read_cache
from ...drift_report import Report, cleaned
from ...models.catalogue import CHAT, Model, Thinking
from ...models.learned import OUTPUT
from . import ranges
from .headers import GATEWAY_AGENT, target, upstream_headers

if TYPE_CHECKING:  # httpx is imported when a check runs, as auth_keys.py does
    import httpx

UNKNOWN_CAP = 10_000_000  # sent when no cap is known: beyond any model's
CACHE_RULES = 60  # numbered lines of the cache probe's system prompt: about 1,200 tokens
TIMEOUT_S = 60.0


def message(raw: bytes) -> str:
    """An error answer's message: OpenAI's `error.message`, DashScope's native `message`, else the text."""
    try:
        body = json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")
    error = body.get("error") if isinstance(body, dict) else None
    said = error.get("message") if isinstance(error, dict) else body.get("message") if isinstance(body, dict) else None
    return said if isinstance(said, str) else raw.decode("utf-8", "replace")


def events(raw: bytes) -> list[Any]:
    """A stream's `data:` payloads in order: JSON objects, "[DONE]", or the text of one that is not JSON."""
    out: list[Any] = []
    for line in raw.decode("utf-8", "replace").splitlines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        try:
            out.append(data if data == "[DONE]" else json.loads(data))
        except ValueError:
            out.append(data)
    return out


def shape(stream: list[Any]) -> list[tuple[str, str]]:
    """What a stream's end lacks of the shape the gateway reads — a chunk with finish_reason, then a usage chunk
    (no choices), then `data: [DONE]` — as (what is missing, what it means); empty: the shape is whole."""
    chunks = [e for e in stream if isinstance(e, dict)]
    finish = next((i for i, e in enumerate(chunks) if any(isinstance(c, dict) and c.get("finish_reason")
                                                          for c in e.get("choices") or [])), None)
    usage = next((i for i, e in enumerate(chunks) if not e.get("choices") and isinstance(e.get("usage"), dict)), None)
    out = []
    if finish is None:
        out.append(("no chunk with a finish_reason", "the gateway takes [DONE] alone as the answer's end; report it"))
    if usage is None or (finish is not None and usage < finish):
        out.append(("no usage chunk after the finish", "the gateway counts tokens itself for streams"))
    if not stream or stream[-1] != "[DONE]":
        out.append(("no data: [DONE] at the end", "the gateway takes an answer whose choices finished as whole, "
                                                  "and notes the missing [DONE]"))
    return out


def spent_of(usage: object) -> int:
    if not isinstance(usage, dict):
        return 0
    total = usage.get("total_tokens")
    if isinstance(total, int):
        return total
    return sum(v for v in (usage.get("prompt_tokens"), usage.get("completion_tokens")) if isinstance(v, int))


def cached_of(usage: object) -> int:
    """The prompt tokens Qwen's answer says it read from its cache (cache_usage.py; 0: none said)."""
    return read_cache(usage)[0] or 0


def cache_prompt() -> str:
    """The cache probe's system prompt: over 1,100 tokens, the same every time (a second run reads it too)."""
    return "\n".join(f"Rule {n}: when asked to say ok, answer with the single word ok and nothing else."
                     for n in range(1, CACHE_RULES + 1))


class Prober:
    """Sends the probes with one key account's credential and writes what they show into `report`."""

    def __init__(self, client: httpx.Client, cred: Credential, model: str, row: Model | None, report: Report) -> None:
        self.client, self.cred, self.model, self.row, self.report = client, cred, model, row, report

    def _body(self, messages: list[dict], tokens: int, **extra: Any) -> dict:
        body: dict = {"model": self.model, "messages": messages, "max_completion_tokens": tokens, **extra}
        if self.row is not None and self.row.thinking == Thinking.HYBRID:
            body["enable_thinking"] = False  # the cheapest answer: no reasoning
        return body

    def _send(self, body: dict, *, cut: bool = False) -> tuple[int, bytes]:
        """(status, body): a 200 stream is read to its end, or closed at once with `cut`."""
        stream = body.get("stream") is True
        url, host = target(self.cred.base_url, "chat/completions")
        headers = upstream_headers(self.cred, user_agent=GATEWAY_AGENT, stream=stream, host=host)
        self.report.requests += 1
        with self.client.stream("POST", url, headers=headers, content=json.dumps(body).encode()) as r:
            if r.status_code == 200 and cut:
                return 200, b""
            return r.status_code, r.read()

    def _said(self, status: int, raw: bytes) -> str:
        return f"HTTP {status}: {cleaned(message(raw), self.cred.token)}"

    def range_refusal(self, catalogue_cap: int | None, listed_cap: int | None) -> None:
        """One request over the cap the gateway assumes: Qwen's 400 names its own ([1, X])."""
        assumed = catalogue_cap or listed_cap
        sent = assumed + 1 if assumed else UNKNOWN_CAP
        status, raw = self._send(self._body([{"role": "user", "content": "hi"}], sent, stream=True), cut=True)
        what = f"{self.model} output cap"
        if status == 200:
            self.report.uncounted = True
            if assumed:
                self.report.diff(what, f"{assumed:,}", f"it took {sent:,}", "its cap is higher than the gateway "
                                 "assumes: larger requests are lowered needlessly; correct the catalogue's `output`")
            else:
                self.report.ok(f"{what}: none known, and Qwen took {sent:,}")
            return
        lesson = ranges.read(message(raw)) if status == 400 else None
        if lesson is None or lesson.fact != OUTPUT or lesson.bound is None:
            self.report.diff(f"{self.model} range refusal", f"a 400 naming the cap for {sent:,}", self._said(status, raw),
                             "the gateway cannot learn the cap from this answer; check --model names a model this "
                             "key can call, else report the wording")
        elif lesson.bound in (assumed, listed_cap):
            source = "its list" if lesson.bound != assumed else "the gateway"
            self.report.ok(f"{what}: Qwen refused {sent:,} with [1, {lesson.bound:,}], as {source} says")
        elif not assumed:
            self.report.ok(f"{what}: none known; Qwen refused {sent:,} with [1, {lesson.bound:,}] (the gateway "
                           "learns it from the first refused request)")
        else:
            self.report.diff(what, f"{assumed:,}", f"[1, {lesson.bound:,}] (its refusal)",
                             "the gateway learns it from the first refused request; correct the catalogue's `output`")

    def stream_shape(self) -> None:
        body = self._body([{"role": "user", "content": "say ok"}], 8, stream=True,
                          stream_options={"include_usage": True})
        status, raw = self._send(body)
        if status != 200:
            self.report.diff("stream", "HTTP 200", self._said(status, raw), "the stream's shape was not seen: check "
                             "--model names a model this key can call")
            return
        stream = events(raw)
        usage = [e.get("usage") for e in stream if isinstance(e, dict) and isinstance(e.get("usage"), dict)]
        self.report.spent += spent_of(usage[-1]) if usage else 0
        lacks = shape(stream)
        for missing, means in lacks:
            self.report.diff("stream shape", "a finish chunk, a usage chunk, then data: [DONE]", missing, means)
        if not lacks:
            self.report.ok("stream shape: a finish chunk, a usage chunk, then data: [DONE]")

    def partial_mode(self) -> None:
        """A last assistant message marked `partial`, thinking off: 200 is served, a 400 is not."""
        messages: list[dict] = [{"role": "user", "content": "Count from 1 to 5."},
                                {"role": "assistant", "content": "1, 2,", "partial": True}]
        status, raw = self._send(self._body(messages, 8))
        if status == 200:
            self.report.spent += spent_of(_json(raw).get("usage"))
        served = status == 200
        said = "served (HTTP 200)" if served else f"not served ({self._said(status, raw)})"
        what = f"{self.model} partial mode"
        if self.row is None:
            self.report.ok(f"{what}: {said}; the catalogue does not know {self.model}")
        elif served == self.row.partial:
            self.report.ok(f"{what}: {said}, as the catalogue says")
        elif served:
            self.report.diff(what, "not served", said, "the gateway does not continue a cut stream of this model "
                             "with it; the catalogue's `partial` can say it is served")
        else:
            self.report.diff(what, "served", said, "the gateway's continuation of a cut stream fails on this model; "
                             "drop `partial` from its catalogue row")

    def cache_read(self) -> None:
        """Two identical requests, a ~1,200-token system prompt marked for the explicit cache: the second reads it."""
        system: dict = {"role": "system", "content": [{"type": "text", "text": cache_prompt(),
                                                 "cache_control": {"type": "ephemeral"}}]}
        body = self._body([system, {"role": "user", "content": "say ok"}], 1)
        answers = []
        for _ in range(2):
            status, raw = self._send(body)
            if status != 200:
                self.report.diff("explicit cache probe", "HTTP 200", self._said(status, raw),
                                 "the cache's read was not seen: check --model names a model this key can call")
                return
            answers.append(_json(raw).get("usage"))
            self.report.spent += spent_of(answers[-1])
        read = cached_of(answers[1])
        what = f"{self.model} explicit cache"
        if self.row is None or self.row.kind != CHAT:
            self.report.ok(f"{what}: the second request read {read:,} cached tokens; the catalogue does not know it")
        elif read > 0:
            self.report.ok(f"{what}: the second request read {read:,} cached tokens")
        else:
            self.report.diff(what, "the second request reads the marked prefix", "cached_tokens 0",
                             "the gateway's cache markers buy nothing on this model and their writes cost 125 %; "
                             "report it")


def _json(raw: bytes) -> dict:
    try:
        body = json.loads(raw)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}

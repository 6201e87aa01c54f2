"""What mitmweb shows for each flow the gateway claims — a one-line summary (the Comment column) and a
marker — and what it keeps: at most `web_flow_limit` finished flows, and at most a prefix of a large
request body.

The Comment column is one table cell (newlines render as spaces), so the summary's sections are joined
on one line by " ┃ " — outcome first, then the cache doctor's verdict on the turn (observe/cache_doctor.py),
notes, the error, and the client's request last:

    gpt-4o → coder-model · acct default · 200 · in 12 / out 34 (cached 2) · ttfb 85 ms · 1.20 s
        ┃ client: POST /v1/chat/completions · key sk-… (20 chars)          (one line in mitmweb)

Markers: mitmweb shows `flow.marked` through mitmproxy's emoji table (an unknown value becomes 🔴), and
the usual ✅/❌/🔁 are emoji-only glyphs that render as empty boxes without an emoji font. These shortcodes
map to dingbats and arrows with a text presentation that common fonts (DejaVu, Liberation, Noto Sans) draw.
"""

from __future__ import annotations

import collections
import json
from typing import TYPE_CHECKING

from mitmproxy import ctx

from ..observer import Observer, cached_tokens, endpoint_name, error_code, error_text, status_of, usage_int
from ..pricing.prices import UNPRICED, USAGE_UNKNOWN, USD, usd
from ..jsonio import valid_text
from ..redact import safe_message

if TYPE_CHECKING:
    from mitmproxy import http

    from ..settings.config import Config
    from ..exchange import Exchange

MARK_OK, MARK_RETRIED, MARK_ERROR = ":heavy_check_mark:", ":arrow_right_hook:", ":heavy_multiplication_x:"
MARKERS = frozenset({MARK_OK, MARK_RETRIED, MARK_ERROR})
SEP = " ┃ "  # between the summary's sections (U+2503: in every common font, unlike emoji)
# mitmweb keeps each flow's request body: a bigger one is cut to this prefix (the gateway has sent it).
BODY_KEEP = 256 * 1024
# The upstream request body is put in flow.metadata (for the "Qwen upstream request" view) up to this size.
UPSTREAM_BODY_KEEP = 256 * 1024


def summary_line(ex: Exchange) -> str:
    """Outcome · usage · timing ┃ the cache doctor's verdict ┃ notes ┃ error ┃ client request. Parts with no
    value are left out."""
    status = status_of(ex)
    if endpoint_name(ex) is not None:
        routed = f" (route: {ex.attempt.route})" if ex.attempt.route else ""  # qwen_routes moved the model
        parts = [f"{ex.requested_model or '?'} → {ex.attempt.model or '?'}{routed}", f"acct {ex.account or '-'}"]
    else:
        parts = [f"{ex.route} (answered by the gateway)"]
    parts.append(str(status) if status is not None else "no status")
    usage = ex.result.usage if isinstance(ex.result.usage, dict) else None
    if usage:
        cached = cached_tokens(usage)
        parts.append(f"in {usage_int(usage, 'prompt_tokens')} / out {usage_int(usage, 'completion_tokens')}"
                     + (f" (cached {cached})" if cached else ""))
    elif ex.count.tokens is not None:  # Qwen's usage, when there is one, says it better
        parts.append(f"prompt ≈ {ex.count.tokens} tokens")
    if ex.result.cost is not None:
        parts.append((usd(ex.result.cost) if ex.result.cost_unit == USD else f"{ex.result.cost:g} plan {ex.result.cost_unit}")
                     + (f" (priced as {ex.result.priced_as})" if ex.result.priced_as else "")
                     + (f" (priced by {ex.result.priced_by})" if ex.result.priced_by else ""))
    elif ex.result.cost_unit == UNPRICED:  # nothing prices it: unknown, never $0
        parts.append(UNPRICED)
    elif ex.result.cost_unit == USAGE_UNKNOWN:  # Qwen said nothing of its usage: unknown, never 0
        parts.append("usage unknown, cost unknown")
    if ex.ttfb_ms is not None:
        parts.append(f"ttfb {ex.ttfb_ms:.0f} ms")
    parts.append(f"{ex.duration_ms / 1000:.2f} s")
    if ex.attempt.retries:
        parts.append("retries " + ", ".join(f"{r.reason.value} ({r.account})" for r in ex.attempt.retries))
    cache = ex.result.cache.line if ex.result.cache is not None else ""
    sections = [" · ".join(parts), *([cache] if cache else ()), *ex.notes]
    code, message = error_code(ex), safe_message(error_text(ex), 300)
    if code or message:
        sections.append("error: " + " ".join(x for x in (code, message and f"“{message}”") if x))
    client = f"client: {ex.client.method} {ex.client.path}"
    if ex.key.name:  # a named client key (qwen-keys): its name says who, the hint would not
        client += f" · key {ex.key.name}"
    elif ex.client.key_hint:
        client += f" · key {ex.client.key_hint}"
    sections.append(client)
    return SEP.join(sections)


def marker(ex: Exchange) -> str:
    status = status_of(ex)
    if ex.result.error is not None or ex.result.stream_error or status is None or status >= 400:
        return MARK_ERROR
    return MARK_RETRIED if ex.attempt.retries else MARK_OK


class FlowAnnotator(Observer):
    """In `finished`: the summary as the flow's comment, a marker (unless a person marked the flow), and
    the upstream request body in `flow.metadata["qwen"]["upstream"]["body"]` when it is small enough (the
    content view "Qwen upstream request" shows it)."""

    at_once = True

    def __init__(self) -> None:
        self.shown = True

    def running(self) -> None:
        # the summary is for mitmweb and for flow files; plain mitmdump shows neither, so it is not built
        self.shown = ctx.master.addons.get("view") is not None or bool(getattr(ctx.options, "save_stream_file", None))

    def finished(self, ex: Exchange, flow: http.HTTPFlow) -> None:
        if not self.shown:
            return
        flow.comment = valid_text(summary_line(ex))  # a path's undecodable bytes: no lone surrogate in a flow file
        if not flow.marked or flow.marked in MARKERS:
            flow.marked = marker(ex)
        meta = flow.metadata.get("qwen")
        upstream = meta.get("upstream") if isinstance(meta, dict) else None
        if (isinstance(upstream, dict) and "body" not in upstream and ex.attempt.body is not None
                and ex.client.size <= UPSTREAM_BODY_KEEP  # cheap first: the same prompt, reshaped
                and json_size_within(ex.attempt.body, UPSTREAM_BODY_KEEP)):
            upstream["body"] = ex.attempt.body  # a reference: the exchange is over, nothing changes it


class FlowCap(Observer):
    """mitmweb keeps every flow forever; this keeps the newest `web_flow_limit` finished ones, and cuts
    request bodies over BODY_KEEP to their first BODY_KEEP bytes with a visible marker (bodies below it
    are untouched, so those flows replay). Flows a person marked are kept; live flows are never removed.
    Inactive in mitmdump (no view). `track(flow)` also takes flows the gateway did not claim."""

    at_once = True

    def __init__(self, body_keep: int = BODY_KEEP) -> None:
        self.body_keep = body_keep
        self.limit = 500
        self.finished_flows: collections.deque = collections.deque()
        self.view = None

    def configure(self, config: Config) -> None:
        self.limit = config.web_flow_limit

    def running(self) -> None:
        self.view = ctx.master.addons.get("view")  # None in mitmdump: nothing to cap

    def finished(self, ex: Exchange, flow: http.HTTPFlow) -> None:
        if self.view is None:
            return
        if cut_body(flow.request, self.body_keep):
            flow.comment = (flow.comment + SEP if flow.comment else "") + \
                f"request body cut to its first {self.body_keep // 1024} KiB in mitmweb (not replayable)"
        self.track(flow)

    def track(self, flow: http.HTTPFlow) -> None:
        view = self.view
        if view is None or self.limit <= 0:
            return
        self.finished_flows.append(flow)
        if len(self.finished_flows) <= self.limit:
            return
        drop = []
        keep: collections.deque = collections.deque()
        while len(self.finished_flows) + len(keep) > self.limit and self.finished_flows:
            f = self.finished_flows.popleft()
            user_marked = f.marked and f.marked not in MARKERS
            if f.live or user_marked:
                keep.append(f)
            else:
                drop.append(f)
        self.finished_flows.extendleft(reversed(keep))
        drop = [f for f in drop if view.get_by_id(f.id) is not None]
        if drop:
            view.remove(drop)


def json_size_within(obj, limit: int) -> bool:
    """Whether an object's JSON is at most `limit` bytes; stops encoding as soon as it is over (a huge
    upstream body costs no more than `limit` bytes of encoding)."""
    size = 0
    for chunk in json.JSONEncoder(ensure_ascii=False, default=str).iterencode(obj):
        size += len(chunk.encode("utf-8", "replace"))
        if size > limit:
            return False
    return True


def cut_body(request: http.Request, keep: int) -> bool:
    """Cut a request body over `keep` bytes (decoded) to its first `keep` bytes plus a marker line.
    Returns whether it was cut."""
    raw = request.raw_content
    if raw is None or (len(raw) <= keep and "content-encoding" not in request.headers):
        return False
    body = request.get_content(strict=False) or b""
    if len(body) <= keep:
        return False
    request.headers.pop("content-encoding", None)  # the prefix is stored decoded
    request.content = body[:keep] + (f"\n\n[… qwen-gateway: {len(body):,} bytes, only the first {keep:,} "
                                      f"kept in mitmweb]").encode()
    return True

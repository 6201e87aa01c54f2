"""OpenTelemetry traces, opt-in (docs/observability.md#traces): a span per API request after the GenAI semantic
conventions, each upstream attempt a child span, sent in batches by otlp.py's thread.

On when `qwen_otel` is `on`, or `auto` (the default) with OTEL_EXPORTER_OTLP_ENDPOINT or
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT set — not with OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none. Off, the
observer is inactive (dispatch.py calls none of its points) and otlp.py is never imported.

    client_request    the trace: the client's W3C `traceparent` continued (read from the request; a client's
                      unsampled trace is not recorded), else a trace of its own; the server span's id
    upstream_request  each attempt a CLIENT span: the one before it ends, its error the retry's reason
    finished          the spans made (OTLP/JSON dicts) and queued for the exporter, off the request's path

What a span holds: the operation, the provider, the models asked and used, token usage, finish reasons, the
status codes and `error.type` (an error's code, never its text), the client's path and the upstream's host.
Never a prompt, an answer, a key or a credential. The traceparent is not sent on to Qwen: the upstream is
another company's service, and the ids would tell it how the client's own requests are linked.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..observer import Observer, endpoint_name, error_code, failed, status_of, usage_int
from ..turn import outcome

if TYPE_CHECKING:
    from mitmproxy import http

    from ..settings.config import Config
    from ..exchange import Exchange
    from .otlp import Exporter

log = logging.getLogger("qwen")

OPERATIONS = {"chat.completions": "chat", "responses": "chat", "messages": "chat", "completions": "text_completion",
              "embeddings": "embeddings"}
TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
SERVER, CLIENT = 2, 3  # OTLP's SpanKind
ERROR = 2  # OTLP's StatusCode
OPEN_LIMIT = 10_000  # traces begun and not finished kept at most (every exchange finishes: a bound all the same)


def wanted(mode: str, env: os._Environ | dict[str, str]) -> bool:
    if mode == "off" or env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if mode == "on":
        return True
    return env.get("OTEL_TRACES_EXPORTER", "").strip().lower() != "none" and bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip())


def continued(header: str | None) -> tuple[str, str] | None | bool:
    """The client's trace (trace id, parent span id) from a W3C traceparent; None without a valid one; False for
    a trace the client does not record (its sampled flag unset: neither does the gateway)."""
    m = TRACEPARENT.fullmatch(header.strip().lower()) if header else None
    if m is None or m.group(1) == "ff" or (m.group(1) == "00" and m.group(5)) \
            or not int(m.group(2), 16) or not int(m.group(3), 16):
        return None
    return (m.group(2), m.group(3)) if int(m.group(4), 16) & 1 else False


@dataclass
class Trace:
    trace_id: str
    parent: str  # the client's span, or ""
    span_id: str = field(default_factory=lambda: secrets.token_hex(8))
    attempts: list[dict] = field(default_factory=list)  # the upstream attempts' spans, the last one still open


class Tracing(Observer):
    active = False  # until `configure` finds traces wanted

    def __init__(self) -> None:
        self.exporter: Exporter | None = None
        self._open: OrderedDict[str, Trace | None] = OrderedDict()  # exchange id -> its trace (None: not recorded)

    def configure(self, config: Config) -> None:
        on = wanted(config.otel, os.environ)
        if on and self.exporter is None:
            from .otlp import JSON_PROTOCOL, Exporter, Settings  # loaded only now: nothing of it when off

            settings = Settings.from_env(os.environ)
            if settings.protocol != JSON_PROTOCOL:
                log.warning(f"qwen: traces: OTEL_EXPORTER_OTLP_PROTOCOL is {settings.protocol!r}; the gateway "
                            f"sends {JSON_PROTOCOL} (OTLP over HTTP, JSON), which collectors take on port 4318")
            self.exporter = Exporter(settings)
            log.info(f"qwen: traces: spans to {settings.shown} (OTLP/HTTP JSON)")
        elif not on and self.exporter is not None:
            self.exporter.close()
            self.exporter = None
        self.active = on

    def done(self) -> None:
        if self.exporter is not None:
            self.exporter.close()  # what is queued is sent first
            self.exporter = None

    # ---- the points ------------------------------------------------------------------------------------

    def client_request(self, ex: Exchange, flow: http.HTTPFlow) -> None:
        self._begin(ex, flow)

    def upstream_request(self, ex: Exchange, flow: http.HTTPFlow) -> None:
        trace = self._open.get(ex.id)
        if trace is None:
            return
        now = time.time_ns()
        if trace.attempts:  # the attempt before was not taken: the retry says why
            last = trace.attempts[-1]
            last["endTimeUnixNano"] = str(now)
            _ended(last, ex.attempt.retries[-1].reason.value if ex.attempt.retries else "retried", ex.attempt.status)
        host = urlsplit(ex.attempt.url)
        trace.attempts.append(_span(trace.trace_id, secrets.token_hex(8), trace.span_id,
                                    f"{OPERATIONS[endpoint_name(ex) or '']} {ex.attempt.model}", CLIENT, now, {
                                        "gen_ai.operation.name": OPERATIONS[endpoint_name(ex) or ""],
                                        **_provider(ex), "gen_ai.request.model": ex.attempt.model,
                                        "server.address": host.hostname, "server.port": host.port}))

    def finished(self, ex: Exchange, flow: http.HTTPFlow) -> None:
        trace = self._open.pop(ex.id, None) if ex.id in self._open else self._begin(ex, flow, keep=False)
        if trace is None or self.exporter is None:
            return
        start = int(ex.started_at * 1e9)
        end = start + int(((ex.result.ended or time.monotonic()) - ex.started) * 1e9)
        operation = OPERATIONS[endpoint_name(ex) or ""]
        answer = {"gen_ai.response.model": ex.attempt.model or None, **_usage(ex.result.usage),
                  "gen_ai.response.finish_reasons": _finish_reasons(ex)}
        error = (error_code(ex) or ("stream_error" if ex.result.stream_error else str(status_of(ex)))) if failed(ex) else None
        spans = trace.attempts
        if spans:
            last = spans[-1]
            last["endTimeUnixNano"] = str(max(end, int(last["startTimeUnixNano"])))
            last["attributes"] += _attributes(answer)
            _ended(last, error if ex.attempt.status is None or ex.attempt.status >= 400 or ex.result.stream_error else None,
                   ex.attempt.status)
        server = _span(trace.trace_id, trace.span_id, trace.parent, f"{operation} {ex.requested_model}".rstrip(),
                       SERVER, start, {"gen_ai.operation.name": operation, **_provider(ex),
                                       "gen_ai.request.model": ex.requested_model or None, **answer,
                                       "http.request.method": ex.client.method, "url.path": ex.client.path,
                                       "http.response.status_code": status_of(ex)})
        server["endTimeUnixNano"] = str(end)
        if error is not None:
            server["attributes"].append({"key": "error.type", "value": {"stringValue": error}})
            server["status"] = {"code": ERROR, "message": error}
        self.exporter.add([*spans, server])

    def _begin(self, ex: Exchange, flow: http.HTTPFlow, *, keep: bool = True) -> Trace | None:
        if ex.client.method != "POST" or endpoint_name(ex) not in OPERATIONS:
            return None  # a probe, a local answer, a WebSocket upgrade: no model call to trace
        client = continued(flow.request.headers.get("traceparent"))
        trace = Trace(*client) if isinstance(client, tuple) else None if client is False \
            else Trace(secrets.token_hex(16), "")
        if keep:
            self._open[ex.id] = trace
            if len(self._open) > OPEN_LIMIT:
                self._open.popitem(last=False)
        return trace


def _span(trace_id: str, span_id: str, parent: str, name: str, kind: int, start: int, attrs: dict) -> dict:
    span: dict[str, Any] = {"traceId": trace_id, "spanId": span_id, "name": name, "kind": kind,
                            "startTimeUnixNano": str(start), "endTimeUnixNano": str(start),
                            "attributes": _attributes(attrs)}
    if parent:
        span["parentSpanId"] = parent
    return span


def _attributes(attrs: dict) -> list[dict]:
    from .otlp import attribute  # loaded: spans are made only while traces are on

    return [attribute(k, v) for k, v in attrs.items() if v is not None and v != () and v != ""]


def _ended(span: dict, error: str | None, status: int | None) -> None:
    if status is not None:
        span["attributes"] += _attributes({"http.response.status_code": status})
    if error is not None:
        span["attributes"] += _attributes({"error.type": error})
        span["status"] = {"code": ERROR, "message": error}


def _provider(ex: Exchange) -> dict:
    name = ex.attempt.upstream.name if ex.attempt.upstream is not None else None
    return {"gen_ai.provider.name": name, "gen_ai.system": name}  # (gen_ai.system: the conventions' older name)


def _usage(usage: dict | None) -> dict:
    return {"gen_ai.usage.input_tokens": usage_int(usage, "prompt_tokens") or usage_int(usage, "input_tokens"),
            "gen_ai.usage.output_tokens": usage_int(usage, "completion_tokens") or usage_int(usage, "output_tokens")}


def _finish_reasons(ex: Exchange) -> tuple[str, ...]:
    """A stream's, as its chunk source saw them; a whole answer's, read from Qwen's body."""
    if (streamed := outcome.finish_reasons(ex)) is not None:
        return streamed
    try:
        body = json.loads(ex.attempt.response_body or b"null")
    except ValueError:  # an answer assembled from a stream, or none
        return ()
    if not isinstance(body, dict):
        return ()
    if isinstance(body.get("stop_reason"), str):  # an Anthropic Messages answer passed through
        return (body["stop_reason"],)
    return tuple(c["finish_reason"] for c in body.get("choices") or () if isinstance(c, dict)
                 and isinstance(c.get("finish_reason"), str))

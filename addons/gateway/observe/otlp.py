"""The traces' exporter: spans sent in batches as OTLP over HTTP, JSON encoded (`http/json`), from a thread of its
own, set up by OpenTelemetry's standard variables. Imported only when traces are on (tracing.py).

Why not the OpenTelemetry SDK (opentelemetry-sdk and its OTLP/HTTP exporter): measured on the 2-core machine the
tests run on, its two spans per request cost ~100 µs of CPU on the event loop (its span objects, locks and
attribute checks), and importing it added 68 ms and 17.5 MB of memory (protobuf, requests); the gateway's own
request path is about 1 ms. Here a request's spans are two small dicts handed to a deque; the thread encodes and
sends them.

    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT   the URL spans are posted to, as it is
    OTEL_EXPORTER_OTLP_ENDPOINT          else its base: <base>/v1/traces (default http://localhost:4318)
    OTEL_EXPORTER_OTLP_[TRACES_]HEADERS  k=v,k2=v2 (URL-encoded values): sent with each batch, never logged
    OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT  milliseconds per batch sent (10000)
    OTEL_BSP_SCHEDULE_DELAY, OTEL_BSP_MAX_EXPORT_BATCH_SIZE, OTEL_BSP_MAX_QUEUE_SIZE   5000 ms, 512, 2048
    OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES                                        the resource
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit, urlunsplit

log = logging.getLogger("qwen")

JSON_PROTOCOL = "http/json"


def _env(env: Mapping[str, str], name: str, default: str = "") -> str:
    """A traces-specific variable before the general one (OTEL_EXPORTER_OTLP_TRACES_X, then _X)."""
    return (env.get(f"OTEL_EXPORTER_OTLP_TRACES_{name}") or env.get(f"OTEL_EXPORTER_OTLP_{name}") or default).strip()


def _pairs(text: str) -> dict[str, str]:
    out = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            out[unquote(key.strip())] = unquote(value.strip())
    return out


def _number(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name, "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else default


@dataclass(frozen=True)
class Settings:
    endpoint: str
    headers: dict[str, str] = field(repr=False)  # may hold the backend's token
    resource: dict[str, str]
    timeout_s: float = 10.0
    delay_s: float = 5.0
    batch: int = 512
    queue: int = 2048
    protocol: str = JSON_PROTOCOL

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip() or (
            (env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or "http://localhost:4318").rstrip("/") + "/v1/traces")
        resource = _pairs(env.get("OTEL_RESOURCE_ATTRIBUTES", ""))
        resource["service.name"] = env.get("OTEL_SERVICE_NAME", "").strip() or resource.get("service.name") \
            or "qwen-gateway"
        return cls(endpoint=endpoint, headers=_pairs(_env(env, "HEADERS")), resource=resource,
                   timeout_s=_number(env, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
                                     _number(env, "OTEL_EXPORTER_OTLP_TIMEOUT", 10000)) / 1000,
                   delay_s=_number(env, "OTEL_BSP_SCHEDULE_DELAY", 5000) / 1000,
                   batch=_number(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512),
                   queue=_number(env, "OTEL_BSP_MAX_QUEUE_SIZE", 2048),
                   protocol=_env(env, "PROTOCOL", JSON_PROTOCOL).lower())

    @property
    def shown(self) -> str:
        """The endpoint for a log line: no user, password or query (a token may hide there)."""
        parts = urlsplit(self.endpoint)
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        return urlunsplit((parts.scheme, netloc + (f":{parts.port}" if parts.port else ""), parts.path, "", ""))


def attribute(key: str, value: object) -> dict:
    """One OTLP/JSON KeyValue (an int as a string, as OTLP/JSON has 64-bit integers)."""
    return {"key": key, "value": _value(value)}


def _value(value: object) -> dict:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, (list, tuple)):
        return {"arrayValue": {"values": [_value(v) for v in value]}}
    return {"stringValue": str(value)}


class Exporter:
    """Spans queued by the event loop (`add`: a deque append), sent by a thread every `delay_s` or once a batch is
    full; at shutdown (`close`) what is queued is sent before the thread ends. A backend that does not take a batch
    loses it (one log line per outage), as the SDK's exporter does after its retries."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._spans: collections.deque[dict] = collections.deque()
        self._wake = threading.Event()
        self._closing = False
        self._failing = False
        self._dropped = 0
        self._resource = [attribute(k, v) for k, v in settings.resource.items()]
        self._opener = urllib.request.build_opener()
        self._thread = threading.Thread(target=self._run, name="qwen: traces", daemon=True)
        self._thread.start()

    def add(self, spans: list[dict]) -> None:
        if len(self._spans) + len(spans) > self.settings.queue:
            self._dropped += len(spans)  # the backend is slower than the requests: the newest wait no more
            return
        self._spans.extend(spans)
        if len(self._spans) >= self.settings.batch:
            self._wake.set()

    def close(self) -> None:
        """Send what is queued (each batch within the timeout), then stop the thread."""
        self._closing = True
        self._wake.set()
        self._thread.join(self.settings.timeout_s + 1)

    def _run(self) -> None:
        while not self._closing:
            self._wake.wait(self.settings.delay_s)
            self._wake.clear()
            self._send_queued()
        self._send_queued()

    def _send_queued(self) -> None:
        if self._dropped:
            dropped, self._dropped = self._dropped, 0
            log.warning(f"qwen: traces: {dropped} spans dropped, more than OTEL_BSP_MAX_QUEUE_SIZE "
                        f"({self.settings.queue}) were waiting for {self.settings.shown}")
        while self._spans:
            batch = [self._spans.popleft() for _ in range(min(self.settings.batch, len(self._spans)))]
            self._send(batch)

    def _send(self, spans: list[dict]) -> None:
        body = json.dumps({"resourceSpans": [{"resource": {"attributes": self._resource}, "scopeSpans": [
            {"scope": {"name": "qwen_gateway"}, "spans": spans}]}]}, separators=(",", ":")).encode()
        request = urllib.request.Request(self.settings.endpoint, data=body, method="POST",
                                         headers={**self.settings.headers, "Content-Type": "application/json"})
        try:
            with self._opener.open(request, timeout=self.settings.timeout_s) as answer:
                answer.read()
        except (urllib.error.URLError, OSError, ValueError) as e:
            if not self._failing:
                self._failing = True
                reason = f"HTTP {e.code}" if isinstance(e, urllib.error.HTTPError) else str(getattr(e, "reason", e))
                log.warning(f"qwen: traces: {self.settings.shown} did not take {len(spans)} spans ({reason}): "
                            "dropped; the next batches are tried as they come")
            return
        if self._failing:
            self._failing = False
            log.info(f"qwen: traces: {self.settings.shown} takes spans again")

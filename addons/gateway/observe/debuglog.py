"""Debug logs (`--set qwen_debug_log=true`): each exchange as one JSON file under `<state_dir>/logs/` —
the client's request as it arrived, the upstream request as the gateway sent it, Qwen's response and the
response the client got, with the gateway's record — newest `qwen_debug_log_count` files kept, mode 0600,
secrets redacted, formatted and written in a thread.

Two addons share the captures: `DebugCapture` before the gateway (the client's request in `request`,
Qwen's response in `response` before the gateway rewrites it) and `DebugLog` after it (the upstream
request in `request`, the client's response in `response`/`error`, then the file).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import re
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from mitmproxy import ctx, exceptions, http
from mitmproxy.net import encoding
from mitmproxy.utils import asyncio_utils

from .common import gateway_record, option, state_dir

log = logging.getLogger("qwen")

REDACTED = "<redacted>"
SECRET_HEADERS = {"authorization", "proxy-authorization", "x-api-key", "api-key", "cookie", "set-cookie",
                  "x-goog-api-key"}
SECRET_PARAMS = {"key", "api_key", "api-key", "apikey", "token", "access_token", "refresh_token", "code"}
# "Bearer <anything>", and sk-… style keys anywhere in a header value or a body.
SECRET_VALUE = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=\-]{8,}|\b(sk-)[A-Za-z0-9_\-]{6,}")
SECRET_JSON = re.compile(r'(?i)("(?:api[_-]?key|access_token|refresh_token|id_token|authorization|password|'
                         r'client_secret|secret)"\s*:\s*")(?:[^"\\]|\\.)*(")')
BODY_CAP = 256 * 1024  # bytes of each body kept in a file
MAX_CAPTURES = 1000  # exchanges captured but not finished yet (bounded, in case a flow never ends)

_captures: collections.OrderedDict[str, dict] = collections.OrderedDict()


def redact_text(text: str) -> str:
    text = SECRET_VALUE.sub(lambda m: (m.group(1) or m.group(2)) + REDACTED, text)
    return SECRET_JSON.sub(lambda m: m.group(1) + REDACTED + m.group(2), text)


def redact_headers(headers) -> dict[str, str]:
    """Headers (a repeated header's values joined by ", ") with secret values replaced."""
    return {k: REDACTED if k.lower() in SECRET_HEADERS else redact_text(v) for k, v in headers.items()}


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    if not parts.query:
        return redact_text(url)
    query = [(k, REDACTED if k.lower() in SECRET_PARAMS else v) for k, v in parse_qsl(parts.query, True)]
    return redact_text(urlunsplit(parts._replace(query=urlencode(query, safe="<>"))))


def body_record(raw: bytes | None, content_type: str = "") -> dict | None:
    """A body for the file: JSON when it is JSON, else text; redacted; cut at BODY_CAP. Runs in a thread."""
    if raw is None:
        return None
    out: dict = {"bytes": len(raw)}
    text = redact_text(raw[:BODY_CAP].decode("utf-8", "replace"))
    if len(raw) > BODY_CAP:
        out["truncated"] = True
    elif "json" in content_type or (not content_type and text[:1] in "{["):
        try:
            out["json"] = json.loads(text)
            return out
        except ValueError:
            pass
    out["text"] = text
    return out


def _message(m: http.Message, *, body: bool = True) -> dict:
    """A cheap snapshot on the event loop: headers redacted, body kept as bytes (formatted later)."""
    snap: dict = {"headers": redact_headers(m.headers), "content_type": m.headers.get("content-type", "")}
    if isinstance(m, http.Request):
        snap.update(method=m.method, url=redact_url(m.pretty_url), http_version=m.http_version)
    else:
        snap.update(status=m.status_code, reason=m.reason, http_version=m.http_version)
    # streamed bodies are not kept by mitmproxy (raw_content is None)
    snap["raw"] = m.raw_content if body and not m.stream else None
    if m.stream:
        snap["streamed"] = True
    return snap


def _finish(snap: dict | None) -> dict | None:
    """Thread side: bytes -> body record."""
    if snap is None:
        return None
    out = {k: v for k, v in snap.items() if k not in ("raw", "content_type")}
    raw = snap.get("raw")
    if raw is not None:
        try:
            raw = encoding.decode(raw, next((v for k, v in snap["headers"].items() if k.lower() == "content-encoding"),
                                                 "identity"))
        except Exception:
            pass
    out["body"] = body_record(raw, snap.get("content_type", ""))
    return out


def write_rotated(folder: Path, record: dict, keep: int, when: float | None = None) -> Path:
    """Write one exchange file (0600) and delete all but the newest `keep`. Files are named by `when`,
    the moment the exchange ended, so that writes finishing out of order still rotate oldest first."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    now = time.time() if when is None else when
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"
    path = folder / f"exchange-{stamp}-{record.get('flow', 'x')[:8]}.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1, ensure_ascii=False)
    for old in sorted(folder.glob("exchange-*.json"))[:-keep]:
        old.unlink(missing_ok=True)
    return path


def build_record(flow_id: str, capture: dict, meta: dict | None, client_response: dict | None,
                 error: str | None) -> dict:
    """The file's content (thread side)."""
    record = {
        "flow": flow_id,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(capture.get("at", time.time()))),
        "summary": _summary(meta),
        "client_request": _finish(capture.get("client_request")),
        "upstream_request": _finish(capture.get("upstream_request")),
        "upstream_response": _finish(capture.get("upstream_response")),
        "client_response": _finish(client_response),
    }
    if error:
        record["error"] = error
    # the summary and anything else might still quote a secret: one last pass over the whole text
    return json.loads(redact_text(json.dumps(record, ensure_ascii=False, default=str)))


def _summary(meta: dict | None) -> dict | None:
    if not isinstance(meta, dict):
        return None
    out = dict(meta)
    if isinstance(out.get("client"), dict):
        out["client"] = {k: v for k, v in out["client"].items() if k != "body"}  # client_request has it
    return out


class DebugCapture:
    """Before the gateway: the client's request as it arrived; Qwen's response before it is rewritten."""

    def __init__(self) -> None:
        self.enabled = False

    def load(self, loader) -> None:
        loader.add_option("qwen_debug_log", bool, False,
                          "Write each exchange (client request, upstream request, upstream response, client "
                          "response) as a redacted JSON file under <state_dir>/logs/.")
        loader.add_option("qwen_debug_log_count", int, 20, "How many exchange files the debug log keeps (newest).")

    def configure(self, updated: set[str]) -> None:
        if "qwen_debug_log_count" in updated and ctx.options.qwen_debug_log_count < 1:
            raise exceptions.OptionsError("qwen_debug_log_count must be at least 1")
        if "qwen_debug_log" in updated:
            self.enabled = ctx.options.qwen_debug_log
            if not self.enabled:
                _captures.clear()

    def request(self, flow: http.HTTPFlow) -> None:
        if not self.enabled or flow.response or flow.error or not flow.live:
            return
        _captures[flow.id] = {"at": time.time(), "client_request": _message(flow.request)}
        while len(_captures) > MAX_CAPTURES:
            _captures.popitem(last=False)

    def response(self, flow: http.HTTPFlow) -> None:
        capture = _captures.get(flow.id)
        if capture is not None and "upstream_request" in capture and flow.response is not None:
            capture["upstream_response"] = _message(flow.response)


class DebugLog:
    """After the gateway: the upstream request as sent, the client's response, then the file."""

    def __init__(self, gateway=None) -> None:  # the gateway is not needed: the record is in the flow
        self.folder: Path | None = None
        self.keep = 20

    def configure(self, updated: set[str]) -> None:
        if self.folder is None or "qwen_state_dir" in updated:
            self.folder = state_dir() / "logs"
        if "qwen_debug_log_count" in updated:
            self.keep = max(1, option("qwen_debug_log_count", 20))

    def request(self, flow: http.HTTPFlow) -> None:
        capture = _captures.get(flow.id)
        if capture is not None and flow.response is None and not flow.error:
            # the gateway has rerouted it and injected the credential (redacted in the snapshot)
            capture["upstream_request"] = _message(flow.request)

    def response(self, flow: http.HTTPFlow) -> None:
        self._write(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._write(flow)

    def _write(self, flow: http.HTTPFlow) -> None:
        capture = _captures.pop(flow.id, None)
        if capture is None:
            return
        meta = flow.metadata.get("qwen")
        if gateway_record(flow) is None and not (isinstance(meta, dict) and meta.get("error")):
            return  # not a gateway exchange (or a plain local answer: /v1/models, /health)
        client_response = _message(flow.response) if flow.response is not None else None
        if client_response is not None and flow.response.stream and flow.response.raw_content is not None:
            client_response["raw"] = flow.response.raw_content  # a stream the gateway assembled for inspection
        error = flow.error.msg if flow.error else None
        folder = self.folder or state_dir() / "logs"
        asyncio_utils.create_task(self._write_file(folder, flow.id, capture, meta, client_response, error,
                                                   time.time()), name="qwen: debug log", keep_ref=True)

    async def _write_file(self, folder: Path, flow_id: str, capture: dict, meta: dict | None,
                          client_response: dict | None, error: str | None, ended: float) -> None:
        def work() -> Path:
            record = build_record(flow_id, capture, meta, client_response, error)
            return write_rotated(folder, record, self.keep, ended)

        try:
            await asyncio.to_thread(work)
        except Exception:
            log.exception("qwen: could not write a debug log file in %s", folder)

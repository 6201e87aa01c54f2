"""Debug logs (`--set qwen_debug_log=true`): each exchange as one JSON file under `<state_dir>/logs/` —
the client's request as it arrived, the upstream request as the gateway sent it, Qwen's response before
the gateway rewrote it and the response the client got, with the gateway's record — newest
`qwen_debug_log_count` files kept, mode 0600, secrets redacted, formatted and written in a thread.

`DebugLog` snapshots cheaply on the event loop (headers redacted, bodies kept by reference): the client's
request in `client_request`, the upstream request from `ex.upstream_*` in `upstream_request`, Qwen's
answer (`ex.attempt.status/_response_headers/_response_body`) and the client's response in `finished`;
then a thread decodes, redacts, formats and writes the file.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mitmproxy import http
from mitmproxy.net import encoding

from ..observer import Observer, endpoint_name
from ..redact import REDACTED, redact_headers, redact_text, redact_url  # noqa: F401  (REDACTED: re-exported)
from ..turn import outcome

if TYPE_CHECKING:
    from ..settings.config import Config
    from ..exchange import Exchange

log = logging.getLogger("qwen")

BODY_CAP = 256 * 1024  # bytes of each body kept in a file
MAX_CAPTURES = 1000  # exchanges captured but not finished yet (bounded, in case one never finishes)


def body_record(raw: bytes | None, content_type: str = "", size: int | None = None) -> dict | None:
    """A body for the file: JSON when it is JSON, else text; redacted; cut at BODY_CAP. Runs in a thread.
    `size`: the whole body's length when `raw` is only its beginning."""
    if raw is None:
        return None
    size = len(raw) if size is None else size
    out: dict = {"bytes": size}
    text = redact_text(raw[:BODY_CAP].decode("utf-8", "replace"))
    if size > BODY_CAP:
        out["truncated"] = True
    elif "json" in content_type or (not content_type and text[:1] in "{["):
        try:
            out["json"] = json.loads(text)
            return out
        except ValueError:
            pass
    out["text"] = text
    return out


def _message(m: http.Message) -> dict:
    """A cheap snapshot on the event loop: headers redacted, body kept as bytes (formatted later)."""
    snap: dict = {"headers": redact_headers(m.headers), "content_type": m.headers.get("content-type", "")}
    if isinstance(m, http.Request):
        snap.update(method=m.method, url=redact_url(m.pretty_url), http_version=m.http_version)
    elif isinstance(m, http.Response):
        snap.update(status=m.status_code, reason=m.reason, http_version=m.http_version)
    # a streamed body is not kept by mitmproxy (None) unless the gateway kept what it sent
    snap["raw"] = m.raw_content
    if m.stream:
        snap["streamed"] = True
    return snap


def _upstream_request(ex: Exchange) -> dict:
    """What went to Qwen, from the exchange (the credential is already redacted there; redacted again)."""
    return {"method": "POST", "url": redact_url(ex.attempt.url), "headers": redact_headers(ex.attempt.headers),
            "content_type": "application/json", "obj": ex.attempt.body}


def _upstream_response(ex: Exchange) -> dict | None:
    if ex.attempt.status is None:
        return None  # Qwen never answered (refused locally, or unreachable)
    headers = redact_headers(ex.attempt.response_headers)
    ctype = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    snap: dict = {"status": ex.attempt.status, "headers": headers, "content_type": ctype,
                  "raw": ex.attempt.response_body}
    if ex.attempt.response_body is None and (ex.stream or outcome.streamed(ex)):
        snap["streamed"] = True  # relayed as it came: only the client's side keeps the events
    return snap


def _json_prefix(obj) -> tuple[bytes, int]:
    """The first BODY_CAP + 1 bytes of an object's JSON, and its whole length (never held whole)."""
    kept, size = bytearray(), 0
    for chunk in json.JSONEncoder(ensure_ascii=False, default=str).iterencode(obj):
        data = chunk.encode("utf-8", "replace")
        size += len(data)
        if len(kept) <= BODY_CAP:
            kept += data[:BODY_CAP + 1 - len(kept)]
    return bytes(kept), size


def _finish(snap: dict | None) -> dict | None:
    """Thread side: bytes (or the upstream body object) -> body record."""
    if snap is None:
        return None
    out = {k: v for k, v in snap.items() if k not in ("raw", "obj", "content_type")}
    if "obj" in snap:
        if snap["obj"] is None:
            out["body"] = None
        else:
            prefix, size = _json_prefix(snap["obj"])
            out["body"] = body_record(prefix, "application/json", size)
        return out
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
    the moment the exchange ended, so that writes finishing out of order still rotate oldest first; each
    is written under a hidden name and renamed, so a reader never sees half a file."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    now = time.time() if when is None else when
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"
    path = folder / f"exchange-{stamp}-{str(record.get('flow', 'x'))[:8]}.json"
    tmp = folder / f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=1, ensure_ascii=False)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    for old in sorted(folder.glob("exchange-*.json"))[:-keep]:
        old.unlink(missing_ok=True)
    return path


def build_record(flow_id: str, ex_id: str, capture: dict, meta: dict | None, error: str | None) -> dict:
    """The file's content (thread side)."""
    record = {
        "flow": flow_id,
        "exchange": ex_id,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(capture.get("at", time.time()))),
        "summary": meta,
        "client_request": _finish(capture.get("client_request")),
        "upstream_request": _finish(capture.get("upstream_request")),
        "upstream_response": _finish(capture.get("upstream_response")),
        "client_response": _finish(capture.get("client_response")),
    }
    if error:
        record["error"] = error
    # the summary and anything else might still quote a secret: one last pass over the whole text
    return json.loads(redact_text(json.dumps(record, ensure_ascii=False, default=str)))


class DebugLog(Observer):
    """Captures per exchange, kept on the observer (at most MAX_CAPTURES unfinished), one file per
    exchange written from a thread. Successful local answers (/v1/models, /health, /metrics) are not
    logged; API requests and every error are."""

    def __init__(self) -> None:
        self.enabled = False
        self.folder: Path | None = None
        self.keep = 20
        self._captures: collections.OrderedDict[str, dict] = collections.OrderedDict()
        self._writes: set[asyncio.Task] = set()

    def configure(self, config: Config) -> None:
        self.enabled = self.active = config.debug_log  # off: none of its points is called (dispatch.py)
        self.folder = config.state_dir / "logs"
        self.keep = max(1, config.debug_log_count)
        if not self.enabled:
            self._captures.clear()

    def client_request(self, ex: Exchange, flow: http.HTTPFlow) -> None:
        if not self.enabled:
            return
        self._captures[ex.id] = {"at": time.time(), "client_request": _message(flow.request)}
        while len(self._captures) > MAX_CAPTURES:
            self._captures.popitem(last=False)

    def upstream_request(self, ex: Exchange, flow: http.HTTPFlow) -> None:
        capture = self._captures.get(ex.id)
        if capture is not None:  # a retry replaces the previous attempt: the file shows the one answered
            capture["upstream_request"] = _upstream_request(ex)

    def finished(self, ex: Exchange, flow: http.HTTPFlow) -> None:
        capture = self._captures.pop(ex.id, None)
        if capture is None or self.folder is None:
            return
        if endpoint_name(ex) is None and ex.result.error is None:
            return  # a successful local answer: nothing to debug
        capture["upstream_response"] = _upstream_response(ex)
        capture["client_response"] = _message(flow.response) if flow.response is not None else None
        error = flow.error.msg if flow.error else None
        meta = flow.metadata.get("qwen")
        args = (self.folder, self.keep, flow.id, ex.id, capture, meta if isinstance(meta, dict) else ex.to_meta(),
                error, time.time())
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (a script, a test): write now
            self._write_file(*args)
            return
        task = loop.create_task(asyncio.to_thread(self._write_file, *args), name="qwen: debug log")
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    @staticmethod
    def _write_file(folder: Path, keep: int, flow_id: str, ex_id: str, capture: dict, meta: dict | None,
                    error: str | None, ended: float) -> None:
        try:
            write_rotated(folder, build_record(flow_id, ex_id, capture, meta, error), keep, ended)
        except Exception:
            log.exception("qwen: could not write a debug log file in %s", folder)

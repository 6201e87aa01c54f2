"""Debug logs: each exchange (client request, upstream request, upstream/client response) as one JSON
file under <state_dir>/logs/, newest N kept, secrets redacted, written off the event loop."""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from pathlib import Path

from mitmproxy import ctx, http
from mitmproxy.utils import asyncio_utils

SECRET_HEADERS = {"authorization", "x-api-key", "api-key", "proxy-authorization", "cookie", "set-cookie"}
SECRET_VALUE = re.compile(r"(Bearer\s+)\S+|\b(sk-[A-Za-z0-9_-]{4})[A-Za-z0-9_-]+", re.I)
BODY_CAP = 256 * 1024


def redact_headers(headers) -> dict:
    out = {}
    for k, v in headers.items():
        out[k] = "<redacted>" if k.lower() in SECRET_HEADERS else SECRET_VALUE.sub(
            lambda m: (m.group(1) or m.group(2) or "") + "<redacted>", v)
    return out


def _body(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    text = raw[:BODY_CAP].decode("utf-8", "replace")
    return SECRET_VALUE.sub(lambda m: (m.group(1) or m.group(2) or "") + "<redacted>", text)


class DebugCapture:
    """Before the gateway: keeps the client's request as it arrived."""

    def load(self, loader) -> None:
        loader.add_option("qwen_debug_log", bool, False, "Write each exchange to <state_dir>/logs/ (redacted).")
        loader.add_option("qwen_debug_log_count", int, 20, "How many exchange files the debug log keeps.")

    def request(self, flow: http.HTTPFlow) -> None:
        if ctx.options.qwen_debug_log and not flow.response:
            flow.metadata["qwen_debug_client"] = {"method": flow.request.method, "url": flow.request.pretty_url,
                                                  "headers": redact_headers(flow.request.headers),
                                                  "body": _body(flow.request.raw_content)}


class DebugLog:
    """After the gateway: writes the whole exchange."""

    def __init__(self, gateway) -> None:
        self.gateway = gateway

    def response(self, flow: http.HTTPFlow) -> None:
        self._write(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._write(flow)

    def _write(self, flow: http.HTTPFlow) -> None:
        client = flow.metadata.pop("qwen_debug_client", None)
        if not ctx.options.qwen_debug_log or client is None or "qwen" not in flow.metadata:
            return
        record = {"time": time.time(), "client_request": client, "summary": flow.metadata.get("qwen"),
                  "upstream_request": {"method": flow.request.method, "url": flow.request.pretty_url,
                                       "headers": redact_headers(flow.request.headers),
                                       "body": _body(flow.request.raw_content)}}
        if flow.response is not None:
            record["response"] = {"status": flow.response.status_code, "headers": redact_headers(flow.response.headers),
                                  "body": _body(flow.response.raw_content)}
        if flow.error is not None:
            record["error"] = flow.error.msg
        folder = self.gateway.state_dir() / "logs"
        keep = max(1, ctx.options.qwen_debug_log_count)
        asyncio_utils.create_task(asyncio.to_thread(write_rotated, folder, record, keep), name="qwen debug log",
                                  keep_ref=True)


def write_rotated(folder: Path, record: dict, keep: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"exchange-{time.strftime('%Y%m%dT%H%M%S')}-{time.time_ns() % 10**9:09d}.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(record, f, indent=1, ensure_ascii=False)
    files = sorted(folder.glob("exchange-*.json"))
    for old in files[:-keep]:
        old.unlink(missing_ok=True)
    return path

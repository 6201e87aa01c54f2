"""The usage ledger: one SQLite row per gateway request, written off the event loop."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from pathlib import Path

from mitmproxy import http
from mitmproxy.utils import asyncio_utils

COLUMNS = ("ts", "day", "endpoint", "model", "upstream_model", "account", "status", "prompt_tokens",
           "completion_tokens", "cached_tokens", "est_tokens", "ttfb_ms", "duration_ms", "stream", "retries")
SCHEMA = f"CREATE TABLE IF NOT EXISTS usage ({', '.join(COLUMNS)})"


class Ledger:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=5)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(SCHEMA)

    def add(self, *rows: dict) -> None:
        with self._lock:
            self._db.executemany(f"INSERT INTO usage VALUES ({','.join('?' * len(COLUMNS))})",
                                 [tuple(row.get(c) for c in COLUMNS) for row in rows])

    def query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()


def row_from_meta(meta: dict) -> dict:
    usage = meta.get("usage") or {}
    started = meta.get("started_at") or time.time()
    return {
        "ts": started, "day": time.strftime("%Y-%m-%d", time.gmtime(started)), "endpoint": meta.get("endpoint"),
        "model": meta.get("model"), "upstream_model": meta.get("upstream_model"), "account": meta.get("account"),
        "status": meta.get("status") or (meta.get("error") or {}).get("status"),
        "prompt_tokens": usage.get("prompt_tokens"), "completion_tokens": usage.get("completion_tokens"),
        "cached_tokens": (usage.get("prompt_tokens_details") or {}).get("cached_tokens"),
        "est_tokens": meta.get("prompt_tokens_est"), "ttfb_ms": meta.get("ttfb_ms"),
        "duration_ms": meta.get("duration_ms"), "stream": int(bool(meta.get("stream"))),
        "retries": meta.get("retries") or 0,
    }


class UsageLedger:
    """Records every gateway exchange in `<state_dir>/usage.sqlite3` (read by `qwen-usage`)."""

    FLUSH_S = 0.5  # rows are written in batches, in a thread: never on the request path

    def __init__(self, gateway) -> None:
        self.gateway = gateway
        self._ledger: Ledger | None = None
        self._rows: list[dict] = []  # gateway records waiting to be written
        self._flush_scheduled = False

    def ledger(self) -> Ledger:
        path = self.gateway.state_dir() / "usage.sqlite3"
        if self._ledger is None or self._ledger.path != path:
            self._ledger = Ledger(path)
        return self._ledger

    def response(self, flow: http.HTTPFlow) -> None:
        self._record(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._record(flow)

    def _record(self, flow: http.HTTPFlow) -> None:
        meta = flow.metadata.get("qwen")
        if not (isinstance(meta, dict) and meta.get("endpoint")):
            return
        self._rows.append(meta)  # rows are built at flush time: the token estimate may land after the answer
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_later(self.FLUSH_S, self._flush_soon)

    def _flush_soon(self) -> None:
        self._flush_scheduled = False
        metas, self._rows = self._rows, []
        if metas:
            rows = [row_from_meta(m) for m in metas]
            asyncio_utils.create_task(asyncio.to_thread(self.ledger().add, *rows), name="qwen ledger", keep_ref=True)

    def done(self) -> None:
        metas, self._rows = self._rows, []
        if metas:
            self.ledger().add(*[row_from_meta(m) for m in metas])

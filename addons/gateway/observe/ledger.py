"""The usage ledger: one SQLite row per gateway request in `<state_dir>/usage.sqlite3` (mode 0600),
written in batches from a thread, never on the event loop. `qwen-usage` reads it."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path

from mitmproxy import http
from mitmproxy.utils import asyncio_utils

from qwen_gateway.auth.state import open_private_db

from .common import cached_tokens, gateway_record, state_dir, status_of
from .tokens import pending, wait_for_estimate

log = logging.getLogger("qwen")

FILENAME = "usage.sqlite3"
COLUMNS: dict[str, str] = {
    "ts": "REAL",  # epoch seconds, when the request arrived
    "day": "TEXT",  # local date of ts, YYYY-MM-DD
    "endpoint": "TEXT",
    "model": "TEXT",  # as the client asked
    "upstream_model": "TEXT",
    "account": "TEXT",
    "status": "INTEGER",  # what the client got
    "prompt_tokens": "INTEGER",  # usage reported by Qwen
    "completion_tokens": "INTEGER",
    "cached_tokens": "INTEGER",
    "est_tokens": "INTEGER",  # the gateway's own estimate (tiktoken)
    "ttfb_ms": "REAL",
    "duration_ms": "REAL",
    "stream": "INTEGER",
    "retries": "INTEGER",
    "error": "TEXT",  # error code, or the message that ended a stream early
    "token_method": "TEXT",
}


class Ledger:
    """The SQLite file; safe to use from several threads (one connection behind a lock)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = open_private_db(path, timeout=10)
        cols = ", ".join(f"{name} {kind}" for name, kind in COLUMNS.items())
        self._db.execute(f"CREATE TABLE IF NOT EXISTS usage ({cols})")
        have = {row[1] for row in self._db.execute("PRAGMA table_info(usage)")}
        for name, kind in COLUMNS.items():  # a ledger written by an older gateway
            if name not in have:
                self._db.execute(f"ALTER TABLE usage ADD COLUMN {name} {kind}")
        self._db.execute("CREATE INDEX IF NOT EXISTS usage_day ON usage (day)")

    def add(self, rows: list[dict]) -> None:
        names = list(COLUMNS)
        with self._lock:
            self._db.executemany(f"INSERT INTO usage ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                                 [tuple(row.get(c) for c in names) for row in rows])

    def query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _int(v) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _num(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def row_from_meta(meta: dict) -> dict:
    """One ledger row from the gateway's record of an exchange."""
    usage = meta.get("usage") if isinstance(meta.get("usage"), dict) else {}
    ts = _num(meta.get("started_at")) or time.time()
    error = meta.get("error") if isinstance(meta.get("error"), dict) else {}
    return {
        "ts": ts, "day": time.strftime("%Y-%m-%d", time.localtime(ts)),
        "endpoint": meta.get("endpoint"), "model": meta.get("model") or None,
        "upstream_model": meta.get("upstream_model") or None, "account": meta.get("account") or None,
        "status": status_of(meta),
        "prompt_tokens": _int(usage.get("prompt_tokens")), "completion_tokens": _int(usage.get("completion_tokens")),
        "cached_tokens": cached_tokens(usage),
        "est_tokens": _int(meta.get("prompt_tokens_est")),
        "ttfb_ms": _num(meta.get("ttfb_ms")), "duration_ms": _num(meta.get("duration_ms")),
        "stream": int(meta.get("stream") is True), "retries": _int(meta.get("retries")) or 0,
        "error": error.get("code") or error.get("message") or meta.get("stream_error") or None,
        "token_method": meta.get("token_method"),
    }


class UsageLedger:
    """After the gateway, in `response`/`error`: records each exchange. Rows wait for a prompt estimate
    still being computed (at most 5 s), are batched for FLUSH_S and written from a thread."""

    FLUSH_S = 0.5

    def __init__(self, gateway=None) -> None:  # the gateway is not needed: the record is in the flow
        self.path: Path | None = None
        self._ledger: Ledger | None = None
        self._open_lock = threading.Lock()
        self._rows: list[dict] = []
        self._waiting: dict[str, dict] = {}  # flow id -> record whose estimate is still being counted
        self._flush_handle: asyncio.TimerHandle | None = None

    def configure(self, updated: set[str]) -> None:
        if self.path is None or "qwen_state_dir" in updated:
            self.path = state_dir() / FILENAME

    def ledger(self) -> Ledger:
        """The open ledger (opened at first use; call from a thread)."""
        with self._open_lock:
            path = self.path or state_dir() / FILENAME
            if self._ledger is None or self._ledger.path != path:
                self._ledger = Ledger(path)
            return self._ledger

    def response(self, flow: http.HTTPFlow) -> None:
        self._record(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._record(flow)

    def _record(self, flow: http.HTTPFlow) -> None:
        meta = gateway_record(flow)
        if meta is None:
            return
        if pending(flow.id):
            self._waiting[flow.id] = meta
            asyncio_utils.create_task(self._after_estimate(flow.id), name="qwen: ledger row", keep_ref=True)
        else:
            self._add(row_from_meta(meta))

    async def _after_estimate(self, flow_id: str) -> None:
        await wait_for_estimate(flow_id)
        meta = self._waiting.pop(flow_id, None)
        if meta is not None:
            self._add(row_from_meta(meta))

    def _add(self, row: dict) -> None:
        self._rows.append(row)
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(self.FLUSH_S, self._flush_soon)

    def _flush_soon(self) -> None:
        self._flush_handle = None
        asyncio_utils.create_task(self.flush(), name="qwen: ledger flush", keep_ref=True)

    async def flush(self) -> None:
        """Write the batched rows (in a thread)."""
        rows, self._rows = self._rows, []
        if rows:
            try:
                await asyncio.to_thread(self._write, rows)
            except Exception:
                log.exception("qwen: could not write %d usage rows to %s", len(rows), self.path)

    def _write(self, rows: list[dict]) -> None:
        self.ledger().add(rows)

    def done(self) -> None:
        """Shutdown: whatever is still batched or waiting for an estimate is written now."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        rows, self._rows = self._rows, []
        rows += [row_from_meta(m) for m in self._waiting.values()]
        self._waiting.clear()
        if rows:
            try:
                self._write(rows)
            except Exception:
                log.exception("qwen: could not write %d usage rows to %s", len(rows), self.path)

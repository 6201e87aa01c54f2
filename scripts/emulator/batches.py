"""Model Studio's OpenAI-compatible Batch API on pay-as-you-go's base: `POST /compatible-mode/v1/batches`,
`GET …/batches` (list), `GET …/batches/{id}`, `POST …/batches/{id}/cancel`; the Files API beside it (files.py).

Its "OpenAI compatible - Batch (file input)" page (2026): results at 50% of the real-time price (the emulator
prices nothing: its usage is what the gateway's ledger bills); `completion_window` "24h" to "336h" in `h` or `d`;
statuses validating → in_progress → finalizing → completed, or failed, expired (not done within the window; its
unprocessed requests are not run), cancelling → cancelled (what was done before stays in the results file);
`metadata.ds_name` (≤ 100 characters) and `ds_description` (≤ 200); the list filtered by `ds_name` (fuzzy),
`input_file_ids`, `status`, `create_after`/`create_before` (yyyyMMddHHmmss), paged by `after` and `limit` (1–100,
default 20). The objects and their values are those cnblogs/dashscope-sdk recorded from the real service
(2026-04): `batch_<uuid>` ids, every `*_at` field present, `expires_at` null, `in_progress_at` set when validated,
`finalizing_at` = `completed_at`, `cancelling_at` null until the batch is `cancelled` (then both equal), a
cancelled batch's unfinished requests counted failed in an errors file, an empty list's `data` null. Cancelling a
settled batch is refused (qwen-code saw the real service refuse it; the 400's text is assumed). Pay-as-you-go's
base only; API keys only; a batch belongs to its key's account.

Batches never move on the wall clock: `POST /_emulator/batches {"id"?, "steps"?}` moves them (every batch, or one;
N steps, or to the end), switch `batch_steps_per_poll` moves a batch that many steps at each `GET` of it,
`batch_lines_per_step` runs that many requests a step (0: all), and the emulator's clock (`POST /_emulator/cache
{"advance": s}`) decides expiry. Switch `batch_failed_in_output` plays what qwen-code observed once: failed
requests written to the results file while `request_counts.failed` stays 0. Switch `batch_api` false: 404 on the
Files and Batch paths.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field

from . import batch_lines, faults, files
from .batch_lines import Line
from .files import error

BASE = "/compatible-mode/v1/batches"
TERMINAL = ("completed", "failed", "expired", "cancelled")
STAMPS = ("in_progress_at", "expires_at", "finalizing_at", "completed_at", "failed_at", "expired_at", "cancelling_at",
          "cancelled_at")


@dataclass
class Batch:
    id: str
    owner: str
    endpoint: str
    input_file_id: str
    window: str
    deadline: float  # on the emulator's clock
    metadata: dict | None
    created_at: int = field(default_factory=lambda: int(time.time()))
    status: str = "validating"
    errors: dict | None = None
    lines: list[Line] = field(default_factory=list)
    ran: int = 0
    done: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    output_file_id: str | None = None
    error_file_id: str | None = None
    stamps: dict = field(default_factory=lambda: dict.fromkeys(STAMPS))

    def public(self) -> dict:
        counts = {"total": len(self.lines), "completed": len(self.done), "failed": len(self.failed)}
        return {"id": self.id, "object": "batch", "endpoint": self.endpoint, "errors": self.errors,
                "input_file_id": self.input_file_id, "completion_window": self.window, "status": self.status,
                "output_file_id": self.output_file_id, "error_file_id": self.error_file_id,
                "created_at": self.created_at, **self.stamps, "request_counts": counts, "metadata": self.metadata}


@dataclass
class BatchStore:
    lock: threading.RLock = field(default_factory=threading.RLock)
    batches: dict[str, Batch] = field(default_factory=dict)


def owns(path: str) -> bool:
    return any(path == b or path.startswith(b + "/") for b in (BASE, files.BASE))


def serve(h, path: str, query: dict, raw: bytes, parsed) -> None:
    """The Files and Batch APIs: the switch, the key, a queued fault aimed at these paths, then the route."""
    sw = h.state.snapshot()
    if not sw["batch_api"]:
        return h.send_json(*error(404, "Not found", None, "NotFound"))
    key = h.bearer()
    with h.state.lock:
        known = h.state.tokens.get(key) if key else None
        # a fault reaches these paths only when aimed at them (`path`): a chat fault is never used up here
        f = faults.take(h.state.faults, lambda f: f["kind"] in faults.API_FAULTS and f.get("path") and f["path"] in
                        h.path and (not f.get("token") or f["token"] == key))
    if not known or known["kind"] != "key":
        return h.send_json(401, faults.auth_401())
    h.state.bump("batch_api_requests")
    if f and h.fault_answered(f, False):
        return
    owner = h.state.owner(key)
    if path.startswith(files.BASE):
        return files.route(h, path, query, raw, owner, sw)
    route(h, path, query, parsed, owner, sw)


def route(h, path: str, query: dict, parsed, owner: str, sw: dict) -> None:
    store: BatchStore = h.state.batches
    rest = [p for p in path[len(BASE):].split("/") if p]
    if not rest:
        methods = {"POST": lambda: create(h, parsed, owner), "GET": lambda: listing(store, owner, query)}
    elif len(rest) == 1:
        methods = {"GET": lambda: shown(h, rest[0], owner, int(sw["batch_steps_per_poll"]))}
    elif len(rest) == 2 and rest[1] == "cancel":
        methods = {"POST": lambda: cancel(store, rest[0], owner)}
    else:
        return h.send_json(*error(404, "Not found", None, "NotFound"))
    if h.command not in methods:
        return h.send_bytes(405, b"", None, {"Allow": ", ".join(methods)})
    h.send_json(*methods[h.command]())


def _window(value) -> int | None:
    """The completion window in hours: 24 to 336, in `h` or `d` (integers only)."""
    m = re.fullmatch(r"(\d+)([hd])", value) if isinstance(value, str) else None
    hours = int(m.group(1)) * (24 if m.group(2) == "d" else 1) if m else 0
    return hours if 24 <= hours <= 336 else None


def create(h, body, owner: str) -> tuple[int, dict]:
    body = body if isinstance(body, dict) else {}
    f = h.state.files.get(owner, body.get("input_file_id")) if isinstance(body.get("input_file_id"), str) else None
    meta = body.get("metadata")
    if f is None or f.purpose != "batch":
        return error(400, f"The input file '{body.get('input_file_id')}' was not found or is not a batch file.",
                     "input_file_id")
    if body.get("endpoint") not in batch_lines.URLS:
        return error(400, f"Invalid 'endpoint': '{body.get('endpoint')}'. Supported: "
                          f"{', '.join(batch_lines.URLS)}.", "endpoint")
    hours = _window(body.get("completion_window"))
    if hours is None:
        return error(400, f"Invalid 'completion_window': '{body.get('completion_window')}'. Range: 24h to 336h.",
                     "completion_window")
    if meta is not None and (not isinstance(meta, dict) or len(str(meta.get("ds_name", ""))) > 100
                             or len(str(meta.get("ds_description", ""))) > 200):
        return error(400, "Invalid 'metadata': ds_name holds at most 100 characters, ds_description 200.", "metadata")
    b = Batch(f"batch_{uuid.uuid4()}", owner, body["endpoint"], f.id, body["completion_window"],
              h.state.cache.now() + hours * 3600, meta)
    with h.state.batches.lock:
        h.state.batches.batches[b.id] = b
    return 200, b.public()


def _get(store: BatchStore, batch_id: str, owner: str) -> Batch | None:
    b = store.batches.get(batch_id)
    return b if b is not None and b.owner == owner else None


def _not_found(batch_id: str) -> tuple[int, dict]:
    return error(404, f"Batch with id '{batch_id}' not found.", "batch_id", "batch_not_found")  # assumed


def shown(h, batch_id: str, owner: str, steps: int) -> tuple[int, dict]:
    with h.state.batches.lock:
        b = _get(h.state.batches, batch_id, owner)
        for _ in range(steps if b else 0):
            step(h.state, b)
        return (200, b.public()) if b else _not_found(batch_id)


def cancel(store: BatchStore, batch_id: str, owner: str) -> tuple[int, dict]:
    with store.lock:
        b = _get(store, batch_id, owner)
        if b is None:
            return _not_found(batch_id)
        if b.status in TERMINAL or b.status == "cancelling":
            return error(400, f"Cannot cancel a batch with status '{b.status}'.", None, "invalid_batch_status")
        b.status = "cancelling"
        return 200, b.public()


def listing(store: BatchStore, owner: str, query: dict) -> tuple[int, dict]:
    try:
        limit = int(query.get("limit", 20))
    except ValueError:
        limit = 0
    after, before = files.when(query.get("create_after", "")), files.when(query.get("create_before", ""))
    if not 1 <= limit <= 100:
        return error(400, "Invalid 'limit': must be between 1 and 100.", "limit")
    statuses = [s for s in query.get("status", "").split(",") if s]
    inputs = [s for s in query.get("input_file_ids", "").split(",") if s][:20]
    with store.lock:
        found = [b for b in store.batches.values() if b.owner == owner][::-1]  # newest first
    found = [b for b in found if (not statuses or b.status in statuses) and (not inputs or b.input_file_id in inputs)
             and (after is None or b.created_at >= after) and (before is None or b.created_at <= before)
             and query.get("ds_name", "") in str((b.metadata or {}).get("ds_name", ""))]
    if query.get("after"):
        ids = [b.id for b in found]
        found = found[ids.index(query["after"]) + 1:] if query["after"] in ids else []
    page = [b.public() for b in found[:limit]]
    return 200, {"object": "list", "data": page or None, "first_id": page[0]["id"] if page else None,
                 "last_id": page[-1]["id"] if page else None, "has_more": len(found) > limit}


def _stop(state, b: Batch, status: str, code: str, message: str) -> None:
    """Expired or cancelled: what was not run is counted failed, in the errors file; both files written."""
    b.failed += [batch_lines.result(line.custom_id, 0, None, {"code": code, "message": message})
                 for line in b.lines[b.ran:]]
    b.ran = len(b.lines)
    now = int(time.time())
    b.stamps.update({f"{status}_at": now, **({"cancelling_at": now} if status == "cancelled" else {})})
    _write(state, b, status)


def _write(state, b: Batch, status: str) -> None:
    def dump(rows: list[dict]) -> bytes:
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()

    if b.done:
        b.output_file_id = files.output_file(state.files, b.owner, "result.jsonl", dump(b.done))
    if b.failed:
        b.error_file_id = files.output_file(state.files, b.owner, "error.jsonl", dump(b.failed))
    b.status = status


def step(state, b: Batch) -> None:
    """One step of a batch's life (the caller holds the batch store's lock)."""
    sw, now = state.snapshot(), int(time.time())
    if b.status in TERMINAL:
        return
    if b.status == "cancelling":
        return _stop(state, b, "cancelled", "batch_cancelled", "The batch was cancelled before this request ran.")
    if state.cache.now() >= b.deadline:
        return _stop(state, b, "expired", "batch_expired", "The batch expired before this request ran.")
    if b.status == "validating":
        f = state.files.get(b.owner, b.input_file_id)
        lines, problems = batch_lines.validate(f.data if f else b"", b.endpoint, sw)
        if problems:
            b.errors, b.status = {"object": "list", "data": problems}, "failed"
            b.stamps["failed_at"] = now
        else:
            b.lines, b.status = lines, "in_progress"
            b.stamps["in_progress_at"] = now
    elif b.status == "in_progress" and b.ran >= len(b.lines):
        b.status, b.stamps["finalizing_at"] = "finalizing", now
    elif b.status == "in_progress":
        count = int(sw["batch_lines_per_step"]) or len(b.lines)
        for line in b.lines[b.ran:b.ran + count]:
            status, body = batch_lines.run(line, sw)
            row = batch_lines.result(line.custom_id, status, body)
            (b.done if status == 200 or sw["batch_failed_in_output"] else b.failed).append(row)
            with state.lock:
                state.stats["batch_lines"]["completed" if status == 200 else "failed"] += 1
        b.ran += count
    elif b.status == "finalizing":
        b.stamps["completed_at"] = now
        _write(state, b, "completed")


def admin(h, body: dict) -> None:
    """`POST /_emulator/batches {"id"?, "steps"?}`: moves one batch or all, N steps or to the end; answers each
    batch's status. `GET`: the statuses."""
    store: BatchStore = h.state.batches
    steps = body.get("steps")
    if steps is not None and not (isinstance(steps, int) and steps >= 0):
        return h.send_json(400, {"error": "steps must be an integer ≥ 0"})
    with store.lock:
        chosen = [b for b in store.batches.values() if body.get("id") in (None, b.id)]
        for b in chosen if h.command == "POST" else ():
            for _ in range(steps if steps is not None else 1_000_000):  # bounded: every line runs once
                if b.status in TERMINAL:
                    break
                step(h.state, b)
        h.send_json(200, {"batches": {b.id: b.status for b in store.batches.values()}})

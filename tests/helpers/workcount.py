"""Test-only mitmproxy script: counts the work the gateway does, inside a real mitmdump process.

Loaded with `-s` next to addons/qwen.py; $QWEN_TEST_WORKCOUNT names a file where it writes the port of its
control socket (127.0.0.1, a thread of its own). A line sent there is a command, the answer one JSON line:

    reset   zero every counter
    flush   close the batches: wait until no exchange is open, write the batched ledger rows and
            per-account request counts (the gateway's own flush methods: their work is counted too),
            and wait for the gateway's tasks those flushes started (a shared database's writes)
    counts  the counters: {"json_decode": n, ...}
    sites   where they were counted: {"json_decode forward:upstream_json": n, ...} (the gateway's
            innermost frame: what a failing test prints)

What is counted is work *the gateway* does: a call counts when a frame of the `qwen_gateway` package is
on the calling stack (mitmproxy's own tasks, timers and hook calls are not the gateway's). Each counter
wraps the one function every caller goes through:

    json_decode / json_encode   json.loads / json.dumps / JSONEncoder.iterencode (outside json.dumps),
                                orjson.loads / orjson.dumps, jsonio.Encoder (json.dumps with its encoder made once)
    sql                         every statement SQLite runs (a trace callback on every connection, the
                                ones opened before this script too)
    pg_execute                  every psycopg execute (per row of an executemany); the statements the
                                PostgreSQL server runs, BEGIN and COMMIT included, are in its log
    thread_handoff              ThreadPoolExecutor.submit (asyncio.to_thread, run_in_executor), a new
                                Thread started (not the pool's own worker, started inside a submit when
                                none is idle yet: the machine's pace), queue.Queue.put
    thread_wakeup               loop.call_soon_threadsafe from any thread but the event loop's (a worker
                                thread handing a result back); not attributed: mitmdump has no threads
                                of its own on a request's path
    timer                       loop.call_at (call_later, asyncio.timeout, wait_for, sleep); the client
                                watch's timer (forward.ClientWatch: one for all waiting requests, armed
                                per 0.1 s of waiting, not per request), the recording observers' batch
                                window (dispatch.Observers: one per 50 ms) and the shared state listener's
                                (storage/pg.follow) are `per_process_timer`; psycopg's own (its pool's
                                waits, which vary with its connections' state) `library_timer`
    clock_work                  a hand-off to a thread made under a clock's loop (the named keys' spend written
                                once a second) and that thread's wake-up: a second's work, not a request's
    task                        loop.create_task (asyncio.create_task, ensure_future of a coroutine)
    log_record                  a record the gateway's loggers handle (a request line, a warning)
    hook_machinery              mitmproxy's `safecall` and `invoke_addon` entered by the gateway's event
                                dispatch (seams/hook_dispatch.py): a context manager and a coroutine around
                                a hook, which the dispatch does without

and one unit the counts are per: `upstream_events`, the JSON events the gateway's SSE decoder read.

The batch windows are held open (the ledger's FLUSH_S, the account counts' FLUSH_S): a batch is then
exactly the requests sent between two `flush` commands, whatever the machine's speed, and `flush`
closes it the way the window's end would.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import json
import logging
import os
import queue
import socketserver
import sqlite3
import sys
import threading

import orjson
from mitmproxy import addonmanager

from qwen_gateway import jsonio

PACKAGE = "qwen_gateway"
HOLD_S = 3600.0  # a batch window nobody waits out: `flush` ends it

_lock = threading.Lock()
counts: dict[str, int] = {}
sites: dict[str, int] = {}  # "counter module:function" -> n: where the gateway did it (the innermost frame)
_ignored_threads: set[int] = set()  # the control thread: its own calls are not the gateway's
_state = threading.local()  # depth inside a counted json.dumps (its iterencode is the same encode)


def _ours(depth: int = 2) -> str | None:
    """The gateway's innermost frame on the calling stack, as `module:function` (None: not the gateway's)."""
    try:
        f = sys._getframe(depth)
    except ValueError:  # called from the top of a thread
        return None
    while f is not None:
        module = f.f_globals.get("__name__", "")
        if module.startswith(PACKAGE):
            return f"{module.removeprefix(PACKAGE + '.')}:{f.f_code.co_name}"
        f = f.f_back
    return None


def _count(name: str, n: int = 1, site: str | None = None) -> None:
    if threading.get_ident() in _ignored_threads:
        return
    with _lock:
        counts[name] = counts.get(name, 0) + n
        if site is not None:
            key = f"{name} {site}"
            sites[key] = sites.get(key, 0) + n


def _wrap(owner, attr: str, counter: str, *, rows=None) -> None:
    real = getattr(owner, attr)

    def counted(*args, **kwargs):
        if site := _ours():  # under a clock's loop (a tick's outage said over, its write): the clock's work
            _count("clock_work" if _clock() else counter, rows(args) if rows else 1, site)
        return real(*args, **kwargs)

    counted.__wrapped__ = real  # type: ignore[attr-defined]
    setattr(owner, attr, counted)


# ---- JSON ------------------------------------------------------------------------------------------

_wrap(json, "loads", "json_decode")
_wrap(orjson, "loads", "json_decode")
_wrap(orjson, "dumps", "json_encode")
_real_dumps = json.dumps
_real_iterencode = json.JSONEncoder.iterencode


def _dumps(*args, **kwargs):
    if site := _ours():  # a clock's tick (the heartbeat's peers' quiet, tenancy/holds.py): not a request's work
        _count("clock_work" if _clock() else "json_encode", 1, site)
    _state.depth = getattr(_state, "depth", 0) + 1
    try:
        return _real_dumps(*args, **kwargs)
    finally:
        _state.depth -= 1


def _iterencode(self, *args, **kwargs):
    if not getattr(_state, "depth", 0) and (site := _ours()):
        _count("json_encode", 1, site)
    return _real_iterencode(self, *args, **kwargs)


json.dumps = _dumps
json.JSONEncoder.iterencode = _iterencode  # type: ignore[method-assign]
_wrap(jsonio.Encoder, "__call__", "json_encode")  # json.dumps with its encoder made once (the session id)

# ---- SQL -------------------------------------------------------------------------------------------


def _trace(_statement: str) -> None:
    if site := _ours(2):
        _count("sql", 1, site)


_real_connect = sqlite3.connect


def _connect(*args, **kwargs):
    db = _real_connect(*args, **kwargs)
    db.set_trace_callback(_trace)
    return db


sqlite3.connect = _connect
for _obj in gc.get_objects():  # connections the gateway opened before this script was loaded
    if isinstance(_obj, sqlite3.Connection):
        try:
            _obj.set_trace_callback(_trace)
        except sqlite3.ProgrammingError:  # closed
            pass

try:
    import psycopg
except ImportError:  # pragma: no cover - psycopg is a dependency of the shared state
    psycopg = None
if psycopg is not None:  # the calls; what the server runs (BEGIN and COMMIT too) its log says (the test)
    for _cls in (psycopg.Cursor, psycopg.AsyncCursor, psycopg.ClientCursor, psycopg.AsyncClientCursor):
        if "execute" in vars(_cls):
            _wrap(_cls, "execute", "pg_execute")
        if "executemany" in vars(_cls):
            _wrap(_cls, "executemany", "pg_execute", rows=lambda a: len(list(a[2])) if len(a) > 2 else 1)

# ---- threads, timers, tasks, log records -----------------------------------------------------------

_real_submit = concurrent.futures.ThreadPoolExecutor.submit


def _submit(self, fn, /, *args, **kwargs):
    clock = False
    if site := _ours():
        clock = _clock()
        _count("clock_work" if clock else "thread_handoff", 1, site)

    def run(*a, **kw):
        _state.clock = clock  # still set when the thread hands the result back (_call_soon_threadsafe)
        return fn(*a, **kw)

    _state.submitting = True  # a worker thread the pool starts for this job is the pool's housekeeping (it starts
    try:  # one when none is idle yet, which depends on the machine's pace): the submit is the hand-off counted
        future = _real_submit(self, run, *args, **kwargs)
    finally:
        _state.submitting = False
    if site:  # its result's way back to the loop is counted as the hand-off's (_call_soon_threadsafe)
        future._qwen_handoff = (clock, site)  # type: ignore[attr-defined]
    return future


concurrent.futures.ThreadPoolExecutor.submit = _submit  # type: ignore[method-assign]
for _owner, _attr in ((threading.Thread, "start"), (queue.Queue, "put")):
    def _handoff(*args, _real=getattr(_owner, _attr), **kwargs):
        if getattr(_state, "submitting", False):  # the pool's own worker, started inside a counted submit
            return _real(*args, **kwargs)
        if site := _ours():
            _count("clock_work" if _clock() else "thread_handoff", 1, site)
        return _real(*args, **kwargs)
    setattr(_owner, _attr, _handoff)
_real_call_at = asyncio.BaseEventLoop.call_at
# A clock's timers, not a request's: the client watch (one timer for every waiting whole answer, per 0.1 s)
# and the shared state's listener (its wait for notifications, a full reload every few seconds), and the named
# keys' clock (tenancy/source.py: leases swept and spend written once a second, whatever the traffic), and the
# recording observers' batch window (dispatch.py: at most one per BATCH_S, however many requests it holds)
PER_PROCESS_TIMERS = ("ClientWatch._look", "Observers.flush")
PER_PROCESS_SITES = ("storage.pg:follow", "tenancy.source:_ticks", "tenancy.freeze:watch")
# The work a clock does beyond its timer (the named keys' spend handed to a thread and that thread's wake-up,
# when the second ends within a measurement): `clock_work`, whatever its kind.


def _sites_exist() -> None:
    """A site renamed away would count its clock's work as a request's again (as `door.keysource` did once)."""
    import importlib

    for site in PER_PROCESS_SITES:
        module, function = site.split(":")
        found = importlib.import_module(f"{PACKAGE}.{module}")
        if not any(function in vars(o) for o in (found, *vars(found).values()) if hasattr(o, "__dict__")):
            raise RuntimeError(f"workcount: no {site} in the gateway (renamed? update PER_PROCESS_SITES)")


def _clock(depth: int = 2) -> bool:
    """Whether a clock's loop (PER_PROCESS_SITES) is on the calling stack."""
    f = sys._getframe(depth)
    while f is not None:
        module = f.f_globals.get("__name__", "")
        if module.startswith(PACKAGE) and f"{module.removeprefix(PACKAGE + '.')}:{f.f_code.co_name}" in PER_PROCESS_SITES:
            return True
        f = f.f_back
    return False


LIBRARIES = ("psycopg",)  # a database driver's own timers (its pool's waits): its business, not counted as ours


def _library(depth: int = 2) -> bool:
    """Whether a library's frame comes before the gateway's on the calling stack."""
    f = sys._getframe(depth)
    while f is not None:
        module = f.f_globals.get("__name__", "")
        if module.startswith(PACKAGE):
            return False
        if module.startswith(LIBRARIES):
            return True
        f = f.f_back
    return False


def _call_at(self, when, callback, *args, **kwargs):
    if site := _ours():
        per_process = getattr(callback, "__qualname__", "") in PER_PROCESS_TIMERS or site in PER_PROCESS_SITES
        kind = "per_process_timer" if per_process else "library_timer" if _library() else "timer"
        _count(kind, 1, site)
    return _real_call_at(self, when, callback, *args, **kwargs)


asyncio.BaseEventLoop.call_at = _call_at  # type: ignore[method-assign]
_recent: set[asyncio.Task] = set()  # the gateway's tasks started by `flush`: it waits for them to end
# The gateway's hand-offs to the loop's executor, until their result is back on the loop: a stored Response's
# write may outlive the answer's bounded wait for it under load, and `flush` waits for its wake-up to be counted
_executor_futures: set[asyncio.Future] = set()
_real_run_in_executor = asyncio.BaseEventLoop.run_in_executor


def _run_in_executor(self, *args, **kwargs):
    future = _real_run_in_executor(self, *args, **kwargs)
    if _ours():
        _executor_futures.add(future)
        future.add_done_callback(_executor_futures.discard)
    return future


asyncio.BaseEventLoop.run_in_executor = _run_in_executor  # type: ignore[method-assign]
_flushing = threading.Event()
_real_create_task = asyncio.BaseEventLoop.create_task


def _create_task(self, *args, **kwargs):
    task = _real_create_task(self, *args, **kwargs)
    if site := _ours():
        _count("clock_work" if site in PER_PROCESS_SITES or _clock() else "task", 1, site)  # (a tick's writes)
        if _flushing.is_set():
            _recent.add(task)
            task.add_done_callback(_recent.discard)
    return task


asyncio.BaseEventLoop.create_task = _create_task  # type: ignore[method-assign]
_wrap(logging.Logger, "handle", "log_record")
_loop_thread: int | None = None
_real_threadsafe = asyncio.BaseEventLoop.call_soon_threadsafe


def _call_soon_threadsafe(self, *args, **kwargs):
    handoff = _handed_back(args)
    if handoff is not None:  # a hand-off's result back to the loop, counted once whichever thread sends it: the
        # worker, or the loop itself when the job ended before asyncio chained its future (wrap_future then
        # calls back at once, in the loop's thread: the same call, the same wake-up of the loop)
        clock, site = handoff
        _count("clock_work" if clock else "thread_wakeup", 1, site)
    elif threading.get_ident() != _loop_thread:
        kind = "clock_work" if getattr(_state, "clock", False) else "thread_wakeup"
        _count(kind, 1, _ours() or threading.current_thread().name)
    return _real_threadsafe(self, *args, **kwargs)


def _handed_back(args: tuple) -> tuple[bool, str] | None:
    """(a clock's?, the site) of a counted hand-off whose result asyncio's future chain sets on the loop."""
    if len(args) == 3 and getattr(args[0], "__qualname__", "") == "_chain_future.<locals>._set_state":
        return getattr(args[2], "_qwen_handoff", None)
    return None


asyncio.BaseEventLoop.call_soon_threadsafe = _call_soon_threadsafe  # type: ignore[method-assign]

# ---- mitmproxy's machinery around a hook --------------------------------------------------------------

_wrap(addonmanager, "safecall", "hook_machinery")
_wrap(addonmanager.AddonManager, "invoke_addon", "hook_machinery")

# ---- units: what a count is per ----------------------------------------------------------------------

from qwen_gateway.sse import SSEDecoder  # noqa: E402

for _name in ("feed", "flush"):
    def _events(self, *args, _real=getattr(SSEDecoder, _name)):
        events = _real(self, *args)
        _count("upstream_events", sum(1 for e in events if e.data.strip() not in ("", "[DONE]")))
        return events
    setattr(SSEDecoder, _name, _events)

# ---- the batch windows, held open ------------------------------------------------------------------

from qwen_gateway.auth.state import AccountState  # noqa: E402
from qwen_gateway.observe.ledger import UsageLedger  # noqa: E402

UsageLedger.FLUSH_S = HOLD_S
AccountState.FLUSH_S = HOLD_S


def _gateways(task: asyncio.Task) -> bool:
    frame = getattr(task.get_coro(), "cr_frame", None)
    return frame is not None and frame.f_globals.get("__name__", "").startswith(PACKAGE)


class WorkCount:
    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.server: socketserver.TCPServer | None = None

    def running(self) -> None:
        global _loop_thread
        from mitmproxy import ctx

        _sites_exist()
        self.loop = asyncio.get_running_loop()
        _loop_thread = threading.get_ident()
        self.gateway = ctx.master.addons.get("qwengateway")
        self.server = socketserver.TCPServer(("127.0.0.1", 0), self._handler())
        thread = threading.Thread(target=self._serve, name="workcount control", daemon=True)
        thread.start()
        path = os.environ["QWEN_TEST_WORKCOUNT"]
        with open(path + ".tmp", "w") as f:
            f.write(str(self.server.server_address[1]))
        os.replace(path + ".tmp", path)

    def _serve(self) -> None:
        _ignored_threads.add(threading.get_ident())
        assert self.server is not None
        self.server.serve_forever(poll_interval=0.2)

    def done(self) -> None:
        if self.server is not None:
            self.server.shutdown()

    async def _flush(self) -> None:
        gw = self.gateway
        for _ in range(1000):  # the exchanges end (a stream's settle comes after its last byte)
            if not gw._live:
                gw.observers.flush()  # the recording observers told now, as the end of their batch window does
                if not gw.observers.held:
                    break
            await asyncio.sleep(0.01)
        else:
            raise RuntimeError("exchanges still open")
        if _executor_futures:  # done only once the worker's wake-up reached the loop (and was counted)
            await asyncio.wait(list(_executor_futures), timeout=30)
        _flushing.set()
        try:
            await self._close_batches(gw)
        finally:
            _flushing.clear()

    async def _close_batches(self, gw) -> None:
        ledger = next(o for o in gw.observers.all if isinstance(o, UsageLedger))
        if ledger._rows:
            ledger._flush_soon()  # what the end of the window does
        if ledger._writes:
            await asyncio.gather(*ledger._writes)
        if gw.pool is not None:
            gw.pool.flush()
        for _ in range(1000):  # what the flushes started (a shared database's writes run as tasks); a
            # library's long-lived tasks started meanwhile (a connection pool's workers) are not waited for
            pending = [t for t in _recent if not t.done() and _gateways(t)]
            if not pending:
                break
            await asyncio.wait(pending, timeout=0.05)
        else:
            raise RuntimeError(f"tasks still running: {pending}")

    def _handler(self):
        owner = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                for line in self.rfile:
                    command = line.strip().decode()
                    if command == "reset":
                        with _lock:
                            counts.clear()
                            sites.clear()
                        answer: object = "ok"
                    elif command == "flush":
                        assert owner.loop is not None
                        asyncio.run_coroutine_threadsafe(owner._flush(), owner.loop).result(60)
                        answer = "ok"
                    elif command == "counts":
                        with _lock:
                            answer = dict(counts)
                    elif command == "sites":
                        with _lock:
                            answer = dict(sites)
                    else:
                        answer = f"unknown command {command!r}"
                    self.wfile.write(_real_dumps(answer).encode() + b"\n")
                    self.wfile.flush()

        return Handler


addons = [WorkCount()]

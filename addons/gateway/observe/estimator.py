"""The token estimator: the observer that counts each prompt off the request path (tokens.py counts; looked
up there at each call, so a test can stand in for it).

tiktoken is loaded only when a count must be exact (its encoding is ~25 MB of the process's memory, and a
small prompt's count ran on the event loop): for an endpoint whose answer reports the prompt's tokens
(`counted_first`: the Messages API's first event), or every prompt with `qwen_token_count_exact`. Other
prompts get characters / 4 (method `estimate`) for the request line, the ledger and mitmweb; the context
guard counts exactly itself when the byte bound cannot decide (turn/context_guard.py)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from typing import TYPE_CHECKING

from ..observer import PROMPT_ENDPOINTS, Observer, endpoint_name
from .. import tokens
from ..tokens import SKIPPED

if TYPE_CHECKING:
    from mitmproxy import http

    from ..settings.config import Config
    from ..exchange import Exchange

log = logging.getLogger("qwen")


def _load_apart() -> None:
    """tiktoken's encoding loaded on a thread of its own that a stopping gateway does not wait for: the load takes
    seconds on a busy machine, and the interpreter joins a pool's worker threads at exit (nothing is lost: it is
    a cache). At the process's own priority, as every thread here: a thread the kernel lets wait while it holds
    the GIL holds the event loop with it (a nice 19 one held it up to 1.8 s beside CPU hogs)."""
    threading.Thread(target=tokens.encoding, name="qwen-tokens-load", daemon=True).start()


class TokenEstimator(Observer):
    """Starts the prompt estimate when the client's request is classified and returns at once: the count
    runs in one worker thread, and `ex.count.task` (a task) completes when `ex.count.tokens`
    and `ex.count.method` are set. The gateway waits for it (bounded) before `finished`; the context guard
    awaits it instead of counting again. The request itself never waits for it."""

    MAX_PENDING = 32  # counts queued or running; beyond this a prompt is not counted (method "skipped")
    # A prompt this small is counted on the spot (tens of microseconds): handing it to the thread and
    # waiting for it would cost more than the count.
    INLINE_BYTES = 2048
    # Before tiktoken's encoding is loaded, a prompt that needs an exact count gets characters / 4 at once and
    # the encoding loads this long after: its ~0.3 s hold the GIL, and the first stream should not wait for them.
    WARM_AFTER_S = 2.0

    def __init__(self) -> None:
        self.enabled = True
        self.exact = False  # every prompt counted with tiktoken (qwen_token_count_exact)
        # One worker: counts never pile onto the default executor (ledger, debug log) and use one core at most.
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._pending: set[asyncio.Task] = set()  # also keeps the tasks referenced until they end
        self._warming: asyncio.TimerHandle | None = None
        self._stop = threading.Event()  # set when the gateway stops: a count under way gives up (tokens.Prompt)

    def configure(self, config: Config) -> None:
        self.enabled = config.token_count
        self.exact = config.token_count_exact

    def running(self) -> None:
        self._stop.clear()
        if self.enabled and self.exact:  # load the encoding now rather than on the first request (~0.5 s)
            _load_apart()

    def client_request(self, ex: Exchange, flow: http.HTTPFlow) -> None:
        if not self.enabled or ex.count.task is not None or ex.count.tokens is not None:
            return
        if ex.result.error is not None or ex.result.status is not None:
            return  # refused already (bad key, bad JSON…): no CPU for a prompt nobody will answer
        if endpoint_name(ex) not in PROMPT_ENDPOINTS or not isinstance(ex.body, dict):
            return
        exact = self.exact or bool(getattr(ex.endpoint, "counted_first", False))
        if exact and not self.exact and not tokens.encoding.cache_info().currsize:
            self._warm()
            exact = False
        if ex.client.size <= self.INLINE_BYTES and (not exact or tokens.encoding.cache_info().currsize):
            try:  # characters / 4, or tiktoken once its encoding is loaded
                ex.count.tokens, ex.count.method = tokens.estimate_request_tokens(ex.body, exact)
            except Exception:
                log.debug("qwen: token count failed", exc_info=True)
            return
        if len(self._pending) >= self.MAX_PENDING:
            ex.count.method = SKIPPED
            log.debug("qwen: %d prompt counts pending: not counting this one", len(self._pending))
            return
        task = asyncio.get_running_loop().create_task(self._count(ex, ex.body, exact), name="qwen: count prompt tokens")
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        ex.count.task = task

    def _warm(self) -> None:
        """tiktoken's encoding loaded on its own thread (_load_apart), once, WARM_AFTER_S from now."""
        if self._warming is None:
            loop = asyncio.get_running_loop()
            self._warming = loop.call_later(self.WARM_AFTER_S, _load_apart)

    async def _count(self, ex: Exchange, body: dict, exact: bool) -> tuple[int, str] | None:
        try:
            result = await asyncio.get_running_loop().run_in_executor(self._pool(), tokens.estimate_request_tokens, body,
                                                                      exact, self._stop)
        except tokens.Stopped:
            return None
        except Exception:
            log.debug("qwen: token count failed", exc_info=True)
            return None
        if ex.count.tokens is None:  # the context guard may have counted it meanwhile
            ex.count.tokens, ex.count.method = result
        return result

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="qwen-tokens")
        return self._executor

    def done(self) -> None:
        self._stop.set()  # the interpreter joins the counting thread at exit: a long walk must not hold it there
        if self._warming is not None:
            self._warming.cancel()
            self._warming = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

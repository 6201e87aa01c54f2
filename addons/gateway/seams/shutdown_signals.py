"""SIGTERM handed to the gateway's graceful drain (turn/drain.py) instead of stopping mitmproxy at once.

Why: mitmproxy's `run` (mitmproxy/tools/main.py), which mitmdump, mitmweb and mitmproxy start with, gives the
event loop a SIGTERM handler that calls `master.shutdown()`: the addons' `done` runs and the process ends, with
every answer still streaming cut. An orchestrator stops a container, a rolling update a replica, systemd a
service, all with SIGTERM, so that is when the gateway must stop taking new work and let the work in progress
finish. No hook runs on a signal, so once mitmproxy runs (the `running` hook, after `run` installed its
handlers) the loop's SIGTERM handler is replaced, with the same call mitmproxy made (`loop.add_signal_handler`),
by one that calls the drain. SIGINT keeps mitmproxy's handler (Ctrl-C stops at once); the drain calls
`master.shutdown()` itself when it is over. Installed only in a process mitmproxy's `run` started (its master a
`mitmproxy.tools` one) and only over the `run` it was written against: one that installed its handlers
otherwise, or not at all, would leave this handler in the wrong place.

What mitmproxy change would remove it: a hook on SIGTERM (or a `shutdown` that asks the addons first, as
`prompt_for_exit` does for the console on SIGINT).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

from .fingerprint import WrittenAgainst

WRITTEN = WrittenAgainst(
    seam="SIGTERM drains the gateway",
    loses="SIGTERM stops the gateway at once, as in mitmproxy: answers in progress end with an error, and "
          "readiness never says `draining` (qwen_drain_s has no effect)",
    code=(("mitmproxy.tools.main:run", "bea9540bf91c354a"),))


def install_early(master: object, on_sigterm: Callable[[], None]) -> bool:
    """From the addon's `load`, before `run` has set mitmproxy's handler: `on_sigterm` set in its place at the event
    loop's next turn (after `run` set its own, before its servers listen), a SIGTERM that came meanwhile handed to it
    then. A start-up is no longer a window in which SIGTERM stops at once (issue 68). False: not installed (as
    `install`)."""
    if not type(master).__module__.startswith("mitmproxy.tools.") or not WRITTEN.fits():
        return False
    loop = getattr(master, "event_loop", None)
    if not isinstance(loop, asyncio.AbstractEventLoop):
        return False
    early: list[bool] = []
    try:  # until `run` sets its handler (loading the scripts comes first): the signal kept, not the default death
        signal.signal(signal.SIGTERM, lambda *_: early.append(True))
    except ValueError:  # not the main thread
        return False

    def then() -> None:
        if install(master, on_sigterm) and early:
            on_sigterm()
    loop.call_soon(then)
    return True


def install(master: object, on_sigterm: Callable[[], None]) -> bool:
    """`on_sigterm` handles SIGTERM in place of mitmproxy's `master.shutdown`; False (nothing changed) for a
    master mitmproxy's `run` did not start, on a mitmproxy this was not written against, or off the main
    thread (no signal handler can be set there)."""
    if not type(master).__module__.startswith("mitmproxy.tools.") or not WRITTEN.fits():
        return False
    loop = getattr(master, "event_loop", None)
    if not isinstance(loop, asyncio.AbstractEventLoop):
        return False
    try:
        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    except (NotImplementedError, RuntimeError, ValueError):  # Windows' loop, another thread
        return False
    return True

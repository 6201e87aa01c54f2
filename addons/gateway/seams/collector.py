"""The process's garbage collector: what was loaded by the time mitmproxy runs is frozen out of its passes.

Why: a full pass of CPython's collector walks every object the process holds. Once mitmproxy and the gateway
have started, that is ~110,000 objects (the modules, the request schemas' compiled checks, the price table,
mitmproxy's addons and options) that live as long as the process, and each full pass walked them all: 59 ms
with the event loop stopped, twice in 5,400 requests at 16 connections (22 µs a request, all of it in the
requests that waited behind it). `gc.freeze()` moves them to the permanent generation, which no pass visits:
the same passes took 2.9 ms (docs/performance.md). Objects made later are collected as before.

A script reloaded (mitmproxy runs `running` again for it) leaves the old one's modules as garbage among the
frozen objects: a later `settle` thaws them first, collects once, and freezes what is left. The first one does not
thaw: what was frozen before it is a heap a parent froze before forking this process (the tests' fork server),
whose pages a walk would copy into this one.

While the gateway starts (its script loaded, options configured, the seams checked), no pass runs at all
(`pause`): the start-up heap only grows then, and each full pass an allocation count set off walked all of it,
to free little; `settle` makes the one pass. A fresh mitmdump made three full passes after loading the script
(~50 ms each on a 2-core machine), the tests' forked gateways two (docs/performance.md#the-test-suite).

Not a change to mitmproxy's code, so no digest guards it; what would remove it: mitmproxy freezing its own
start-up heap (as servers that fork workers do before the fork).
"""

from __future__ import annotations

import gc

_paused = False  # the collector was turned off by `pause` (not by whoever runs the process): `settle` turns it on
_settled = False  # `settle` ran once in this process: a later one is a reload's


def _started_by_run(master: object) -> bool:
    """A master of mitmproxy's `run` (mitmdump, mitmweb), not a test's: its heap is a start-up heap."""
    return type(master).__module__.startswith("mitmproxy.tools.")


def pause(master: object) -> bool:
    """No collection from now until `settle` (the gateway's script loads, before its imports); whether it paused."""
    global _paused
    if not _started_by_run(master) or not gc.isenabled():
        return False
    gc.disable()
    _paused = True
    return True


def settle(master: object) -> int:
    """Collect once and freeze everything alive, in a process mitmproxy's `run` started (not a test's master,
    whose objects are no start-up heap), the collector on again if `pause` stopped it; the count of objects
    frozen."""
    global _paused, _settled
    if not _started_by_run(master):
        return 0
    if _settled:
        gc.unfreeze()  # a reload's garbage among the frozen objects is collected too
    _settled = True
    gc.collect()
    gc.freeze()
    if _paused:
        _paused = False
        gc.enable()
    return gc.get_freeze_count()

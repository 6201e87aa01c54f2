"""seams/collector.py: the start-up heap frozen out of the collector's passes, a reload's garbage still freed."""

from __future__ import annotations

import gc
import weakref

from qwen_gateway.seams import collector


class Master:
    """What mitmdump and mitmweb run: a master of mitmproxy.tools."""


Master.__module__ = "mitmproxy.tools.dump"


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


def test_settle_freezes_what_is_alive_and_frees_earlier_garbage():
    try:
        gc.disable()  # no pass of its own between the steps of the test
        kept = Node()
        frozen = gc.get_freeze_count()  # conftest.py froze the test process's start-up heap
        assert collector.settle(object()) == 0 and gc.get_freeze_count() == frozen  # no mitmproxy process
        collector.settle(Master())
        assert gc.get_freeze_count() > 0
        assert not gc.is_tracked(kept) or all(kept is not o for o in gc.get_objects(generation=2))
        # a reloaded script: what it held is garbage now, among the frozen objects
        dropped = weakref.ref(kept)
        del kept
        gc.collect()
        assert dropped() is not None  # frozen: no pass frees it
        collector.settle(Master())
        assert dropped() is None  # thawed, collected, the rest frozen again
        assert gc.get_freeze_count() > 0
    finally:
        gc.enable()  # what is alive stays frozen, as conftest.py leaves the process

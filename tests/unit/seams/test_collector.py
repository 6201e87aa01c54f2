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


def test_no_pass_runs_while_the_gateway_starts_and_settle_turns_the_collector_back_on():
    try:
        assert gc.isenabled()
        assert not collector.pause(object()) and gc.isenabled()  # a test's master: no start-up heap, untouched
        assert collector.pause(Master()) and not gc.isenabled()  # the script loads: no pass until `running`
        collector.settle(Master())
        assert gc.isenabled()
        gc.disable()  # whoever runs the process turned it off: neither pause nor settle turns it on
        assert not collector.pause(Master())
        collector.settle(Master())
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_the_first_settle_leaves_a_heap_frozen_before_it_unwalked(monkeypatch):
    """A process forked from one that froze its heap (tests/helpers/forkserver.py, or a server that forks workers)
    shares those pages: thawing and walking them at the start copied each one into the child (~0.15 s of CPU per
    forked gateway). Only a reload's `settle` thaws what is frozen."""
    monkeypatch.setattr(collector, "_settled", False)
    try:
        gc.disable()
        held = Node()
        dropped = weakref.ref(held)
        gc.freeze()  # as the fork server freezes what it imported, before it forks
        del held
        collector.settle(Master())
        assert dropped() is not None  # not thawed: its pages untouched
        collector.settle(Master())  # a reload
        assert dropped() is None
    finally:
        gc.enable()

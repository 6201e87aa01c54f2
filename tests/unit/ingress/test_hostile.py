"""The hostile-client parts wired for the addon (ingress/hostile.py): the descriptor limit raised at load, the
HTTP/1 head bound installed (and changed with `qwen_max_header_kb`) with answers in the client's format, the
public-API fallback only where the seam does not fit, head deadlines started and restarted with
`qwen_head_timeout` while running, accept() storms tallied from `running` to `done`. The parts are stand-ins
here, their own tests are tests/unit/ingress/test_deadlines.py, test_oversized_head.py and tests/unit/seams/."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from types import SimpleNamespace

import pytest

from qwen_gateway.ingress import hostile, oversized_head
from qwen_gateway.settings.config import Config


class Heads:
    """seams/http1_heads.py: what was installed and bounded."""

    def __init__(self, fits: bool = True) -> None:
        self.fits = fits
        self.limits: list = []
        self.bounded: list = []
        self.Limit = hostile.http1_heads.Limit

    def installed(self) -> bool:
        return self.fits and bool(self.limits)

    def install(self, limit) -> bool:
        self.limits.append(limit)
        return self.fits

    def bound_layer(self, nextlayer, decide) -> None:
        self.bounded.append((nextlayer, decide))


class Deadlines:
    def __init__(self) -> None:
        self.events: list = []

    def start(self, timeout: float) -> None:
        self.events.append(("start", timeout))

    def stop(self) -> None:
        self.events.append(("stop",))

    def closed(self, client) -> None:
        self.events.append(("closed", client))


@pytest.fixture
def parts(monkeypatch):
    asyncio_log = logging.getLogger("asyncio")
    monkeypatch.setattr(asyncio_log, "filters", list(asyncio_log.filters))  # `done` adds one: dropped after
    heads = Heads()
    raised: list = []
    monkeypatch.setattr(hostile, "http1_heads", heads)
    monkeypatch.setattr(hostile, "descriptors", SimpleNamespace(raise_soft_limit=lambda: raised.append(True)))
    hc = hostile.HostileClients(logging.getLogger("qwen"), endpoints={"e": 1}, formats="formats")
    hc.deadlines = Deadlines()  # type: ignore[assignment]
    return SimpleNamespace(hc=hc, heads=heads, raised=raised)


def test_load_raises_the_descriptor_limit(parts):
    parts.hc.load()
    assert parts.raised == [True]


def test_the_head_bound_is_installed_once_and_changed_with_the_option(parts):
    hc, heads = parts.hc, parts.heads
    config = Config()
    hc.configure(config, config)  # the first configure: not installed yet
    (limit,) = heads.limits
    assert (limit.size, limit.tally) == (64 << 10, hc.tally)
    assert limit.answer.func is oversized_head.answer
    assert limit.answer.keywords == {"endpoints": {"e": 1}, "formats": "formats"}  # in the client's format
    hc.configure(config, dataclasses.replace(config, head_timeout=5))
    assert len(heads.limits) == 1  # unchanged size: nothing to do
    bigger = dataclasses.replace(config, max_head=128 << 10)
    hc.configure(config, bigger)
    assert [lim.size for lim in heads.limits] == [64 << 10, 128 << 10]


def test_the_public_api_fallback_only_where_the_seam_does_not_fit(parts):
    hc, heads = parts.hc, parts.heads
    hc.configure(Config(), Config())
    hc.next_layer("layer")
    assert heads.bounded == []  # the seam bounds every head
    heads.fits = False
    hc.configure(Config(), Config())
    hc.next_layer("layer")
    assert heads.bounded == [("layer", None)]


async def test_running_starts_deadlines_and_hands_mitmproxys_layer_choice_to_the_fallback(parts):
    hc, heads = parts.hc, parts.heads
    heads.fits = False
    choose = object()
    master = SimpleNamespace(addons=SimpleNamespace(get=lambda name: SimpleNamespace(next_layer=choose)
                                                    if name == "nextlayer" else None))
    loop = asyncio.get_running_loop()
    before = loop.get_exception_handler()
    try:
        hc.running(Config(head_timeout=30), master)
        assert hc.deadlines.events == [("start", 30)]
        hc.next_layer("layer")
        assert heads.bounded == [("layer", choose)]
        hc.configure(Config(head_timeout=30), Config(head_timeout=10))  # restarted while running
        assert hc.deadlines.events == [("start", 30), ("start", 10)]
    finally:
        hc.done()
        loop.set_exception_handler(before)
    assert hc.deadlines.events[-1] == ("stop",) and hc.accept_storms.exiting
    hc.configure(Config(head_timeout=10), Config(head_timeout=20))  # done: not restarted
    assert hc.deadlines.events[-1] == ("stop",)


async def test_running_without_a_master_has_no_layer_choice(parts):
    loop = asyncio.get_running_loop()
    before = loop.get_exception_handler()
    try:
        parts.hc.running(Config(head_timeout=0))
    finally:
        parts.hc.done()
        loop.set_exception_handler(before)
    assert parts.hc._decide is None and parts.hc.deadlines.events == [("start", 0), ("stop",)]


def test_a_disconnected_client_owes_no_head_and_its_socket_is_not_left_open(parts, monkeypatch):
    closed: list = []
    monkeypatch.setattr(hostile.listeners, "close_left_open", closed.append)
    parts.hc.disconnected("client")
    assert parts.hc.deadlines.events == [("closed", "client")] and closed == ["client"]

"""Hostile or sloppy clients, wired in one place for the addon (docs/reliability.md#hostile-clients):
request heads bounded inside mitmproxy's HTTP/1 reader (seams/http1_heads.py; the answer in the client's
format: oversized_head.py), mitmproxy's 413 past body_size_limit in JSON (seams/body_limit.py), connections that owe a head closed when late (deadlines.py; the addon's hooks
tell it when a head arrives and an exchange ends), sockets mitmproxy leaves open (listeners.py), the
file-descriptor limit (descriptors.py) and accept() storms (seams/loop_reports.py). Their log lines go through
one LogTally: one line per kind per 10 s, with a count."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial

from ..settings.config import Config
from ..local_answers import Formats
from ..log_tally import LogTally
from ..seams import body_limit, http1_heads, loop_reports
from . import access, descriptors, listeners, oversized_head
from .deadlines import HeadDeadlines


class HostileClients:
    def __init__(self, log: logging.Logger, endpoints: dict, formats: Formats) -> None:
        self.tally = LogTally(log)
        self.deadlines = HeadDeadlines(self.tally)
        self.accept_storms = loop_reports.AcceptStorms(self.tally)
        self._answer = partial(oversized_head.answer, endpoints=endpoints, formats=formats)  # in the client's format
        self._running = False
        self._decide: Callable | None = None

    def load(self) -> None:
        descriptors.raise_soft_limit()

    def configure(self, old: Config, new: Config) -> None:
        if new.max_head != old.max_head or not http1_heads.installed():
            http1_heads.install(http1_heads.Limit(new.max_head, self._answer, self.tally))
        if new.max_body != old.max_body or not body_limit.installed():
            body_limit.install(access.too_large_answer(new.max_body))  # mitmproxy's 413 past body_size_limit
        if new.head_timeout != old.head_timeout and self._running:
            self.deadlines.start(new.head_timeout)

    def next_layer(self, nextlayer) -> None:
        """Where the seam does not fit this mitmproxy, heads are bounded through its public API instead."""
        if not http1_heads.installed():
            http1_heads.bound_layer(nextlayer, self._decide)

    def disconnected(self, client) -> None:
        """A client connection has ended: it owes no head, and a socket mitmproxy left open (its 413 past
        body_size_limit) is closed (listeners.close_left_open)."""
        self.deadlines.closed(client)
        listeners.close_left_open(client)

    def running(self, config: Config, master=None) -> None:
        # mitmproxy's own choice of layer (its NextLayer addon's hook), which the head bound's fallback wraps
        self._decide = getattr(master.addons.get("nextlayer"), "next_layer", None) if master is not None else None
        self.accept_storms.install(asyncio.get_running_loop())
        self.deadlines.start(config.head_timeout)
        self._running = True

    def done(self) -> None:
        self._running = False
        self.deadlines.stop()
        self.tally.close()
        self.accept_storms.at_exit(asyncio.get_running_loop())  # stays: asyncio cancels handlers after `done`

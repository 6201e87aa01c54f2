"""SIGTERM handed to the gateway's drain (seams/shutdown_signals.py): only where mitmproxy's `run` installed its
handler, and only over the `run` it was written against. Through real mitmdump: tests/e2e/test_e2e_drain.py."""

from __future__ import annotations

import asyncio
import logging
import signal

from helpers import another_mitmproxy
from mitmproxy.tools import main

from qwen_gateway.seams import fingerprint, shutdown_signals


class DumpMaster:  # a master of mitmproxy's own tools (what `run` starts), on this test's loop
    __module__ = "mitmproxy.tools.dump"

    def __init__(self, loop) -> None:
        self.event_loop = loop


def test_sigterm_is_the_drains_only_where_mitmproxys_run_installed_its_handler(tmp_path, monkeypatch, caplog):
    loop = asyncio.new_event_loop()
    try:
        def drain() -> None:
            return None

        assert not shutdown_signals.install(object(), drain)  # not a master of mitmproxy's tools (a test's)
        assert shutdown_signals.install(DumpMaster(loop), drain)
        assert loop._signal_handlers[signal.SIGTERM]._callback is drain  # type: ignore[attr-defined]
        loop.remove_signal_handler(signal.SIGTERM)
        monkeypatch.setattr(fingerprint, "_told", set())
        monkeypatch.setattr(fingerprint, "decided", {})  # this test decides anew
        monkeypatch.setattr(main, "run", another_mitmproxy.release("mitmproxy.tools.main", tmp_path, monkeypatch).run)
        with caplog.at_level(logging.WARNING, logger="qwen"):
            assert not shutdown_signals.install(DumpMaster(loop), drain)
        assert signal.SIGTERM not in loop._signal_handlers  # type: ignore[attr-defined]
    finally:
        loop.close()
    [line] = caplog.messages
    assert "SIGTERM drains the gateway: left out" in line and "changed: run" in line
    assert "SIGTERM stops the gateway at once" in line


def test_no_handler_without_the_masters_event_loop():
    class NoLoop:
        __module__ = "mitmproxy.tools.dump"
        event_loop = None

    assert not shutdown_signals.install(NoLoop(), lambda: None)

"""mitmproxy's terminal log with the gateway's output (seams/terminal_log.py): a line it cannot write is dropped and
counted, never `sys.exit(1)`; the count is said once a line goes out again. The descriptor is made to fail for
real: /dev/full (ENOSPC) put in its place with dup2. Through real mitmdump on a full tmpfs:
tests/e2e/test_e2e_log_faults.py."""

from __future__ import annotations

import contextlib
import io
import logging
import os
from pathlib import Path

import pytest

from helpers import another_mitmproxy
from mitmproxy.addons import termlog

from qwen_gateway.seams import fingerprint, terminal_log


class Master:  # what `install` asks of a master: its addons by name
    def __init__(self, *addons) -> None:
        self._addons = {type(a).__name__.lower(): a for a in addons}

    @property
    def addons(self):
        return self

    def get(self, name: str):
        return self._addons.get(name)


@contextlib.contextmanager
def terminal(path: Path):
    """mitmproxy's TermLog printing to a file of the test's own (on the root logger, as mitmdump's is). Made in
    the test itself: mitmproxy's handler takes only the records of the test phase it was made in."""
    stream = open(path, "w")
    t = termlog.TermLog(out=stream)
    t.logger.setLevel(logging.INFO)
    try:
        yield t, stream
    finally:
        t.uninstall()
        stream.close()




def _say(handler: logging.Handler, text: str) -> None:
    handler.handle(logging.LogRecord("qwen", logging.INFO, __file__, 1, text, None, None))


def test_a_line_that_cannot_be_written_is_dropped_counted_and_said_once_writing_works(tmp_path):
    with terminal(tmp_path / "log") as (t, stream):
        _drop_three(t, stream)
    lines = [line.split("] ", 1)[-1] for line in (tmp_path / "log").read_text().splitlines()]
    assert lines == ["before", "after", "qwen: 3 log lines could not be written (No space left on device) and were "
                     "dropped", "and on"]


def _drop_three(t: termlog.TermLog, stream) -> None:
    assert terminal_log.install(Master(t))
    assert not terminal_log.install(Master(t))  # once
    _say(t.logger, "before")
    saved = os.dup(stream.fileno())
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        os.dup2(full, stream.fileno())  # every write now fails with ENOSPC
        for n in range(3):
            _say(t.logger, f"lost {n}")  # mitmproxy's own output would sys.exit(1) here
    finally:
        os.dup2(saved, stream.fileno())
        os.close(saved)
        os.close(full)
    _say(t.logger, "after")
    _say(t.logger, "and on")


def test_mitmproxys_own_output_exits_where_the_gateways_drops(tmp_path):
    """The failure the seam stands in front of, as mitmproxy ships it."""
    with terminal(tmp_path / "log") as (t, stream):
        _exits(t, stream)


def _exits(t: termlog.TermLog, stream) -> None:
    full = os.open("/dev/full", os.O_WRONLY)
    saved = os.dup(stream.fileno())
    try:
        os.dup2(full, stream.fileno())
        with pytest.raises(SystemExit):
            _say(t.logger, "x" * 10_000)  # past the stream's buffer: written at once, and failing
    finally:
        os.dup2(saved, stream.fileno())
        os.close(saved)
        os.close(full)


def test_a_stream_that_is_no_file_is_written_as_it_is():
    out = io.StringIO()
    t = termlog.TermLog(out=out)
    try:
        t.logger.setLevel(logging.INFO)
        assert terminal_log.install(Master(t))
        _say(t.logger, "one")
        _say(t.logger, "two\nlines")
    finally:
        t.uninstall()
    assert [line.split("] ", 1)[-1] for line in out.getvalue().splitlines()] == ["one", "two", "lines"]


def test_nothing_without_mitmproxys_terminal_log():
    assert not terminal_log.install(Master())
    assert not terminal_log.install(object())


def test_on_another_mitmproxy_it_stays_out_with_one_line(tmp_path: Path, monkeypatch, caplog):
    with terminal(tmp_path / "log") as (t, _stream):
        _stays_out(t, tmp_path, monkeypatch, caplog)


def _stays_out(t: termlog.TermLog, tmp_path: Path, monkeypatch, caplog) -> None:
    monkeypatch.setattr(fingerprint, "_told", set())
    monkeypatch.setattr(fingerprint, "decided", {})  # this test decides anew
    other = another_mitmproxy.release("mitmproxy.addons.termlog", tmp_path, monkeypatch)
    monkeypatch.setattr(termlog, "TermLogHandler", other.TermLogHandler)
    with caplog.at_level(logging.WARNING, logger="qwen"):
        assert not terminal_log.install(Master(t))
    assert not isinstance(t.logger.file, terminal_log.DroppingOutput)
    [line] = caplog.messages
    assert "log lines that cannot be written dropped: left out" in line and "changed: TermLogHandler" in line
    assert "stops the gateway at once (exit 1)" in line


def test_the_addons_load_gives_mitmproxys_terminal_log_this_output(tmp_path):
    """seams/at_load.py, as the addon's `load` calls it, with mitmproxy's master of a test (its addons, the
    TermLog among them)."""
    from mitmproxy.test import taddons

    from qwen_gateway.seams import at_load

    with terminal(tmp_path / "log") as (t, _stream), taddons.context(t) as tctx:
        at_load.install(tctx.master)
        assert isinstance(t.logger.file, terminal_log.DroppingOutput)

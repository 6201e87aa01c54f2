"""The event loop's exception reports the gateway takes from mitmproxy (seams/loop_reports.py): accept() out of
descriptors tallied, everything else passed on; the report of a connection handler asyncio cancels at exit
dropped, before and after mitmproxy puts the loop's handler back; and on another mitmproxy, nothing taken."""

from __future__ import annotations

import asyncio
import errno
import logging

from helpers import another_mitmproxy
from mitmproxy import master

from qwen_gateway.log_tally import LogTally
from qwen_gateway.seams import fingerprint, loop_reports


def test_accept_out_of_descriptors_is_tallied_and_everything_else_passed_on(caplog):
    seen = []
    loop = asyncio.new_event_loop()
    try:
        loop.set_exception_handler(lambda lp, ctx: seen.append(ctx["message"]))
        storms = loop_reports.AcceptStorms(LogTally(logging.getLogger("qwen.test")))
        storms.install(loop)
        storms.install(loop)  # a script reload: still one handler, the same one before it
        assert storms.previous is not None and not isinstance(storms.previous, loop_reports.AcceptStorms)
        emfile = OSError(errno.EMFILE, "Too many open files")
        with caplog.at_level(logging.INFO, logger="qwen.test"):
            for _ in range(1000):
                loop.call_exception_handler({"message": "socket.accept() out of system resource",
                                             "exception": emfile})
            loop.call_exception_handler({"message": "something else", "exception": ValueError("x")})
        storms.uninstall(loop)
        assert loop.get_exception_handler() is not storms
    finally:
        loop.close()
    assert seen == ["something else"]
    assert len(caplog.messages) == 1 and "accept() failed 1 time with 'Too many open files'" in caplog.messages[0]
    assert "ulimit -n" in caplog.messages[0] and "LimitNOFILE" in caplog.messages[0]


async def _a_connection_handler_cancelled() -> None:
    """A real asyncio server's connection handler, cancelled as asyncio.run cancels what is left at exit (its
    StreamReaderProtocol then reports the cancelled task), then one unrelated report that must still go through."""
    async def handler(reader, writer):
        await asyncio.sleep(3600)

    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    _, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    for _ in range(100):  # bounded: until the server has a handler task
        handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if handlers:
            break
        await asyncio.sleep(0.01)
    for t in handlers:
        t.cancel()
    await asyncio.sleep(0.05)
    asyncio.get_running_loop().call_exception_handler({"message": "something else", "exception": ValueError("x")})
    writer.close()
    server.close()


def test_a_connection_handler_cancelled_at_exit_leaves_no_traceback(caplog):
    """Python 3.12.1's StreamReaderProtocol asks a cancelled handler task for its exception, and the loop's
    exception handler prints a CancelledError traceback: at exit, a connection accepted after the gateway
    closed the others (a storm in the listen queue) had its handler cancelled that way (CI: "Traceback" in
    test_stopping_during_a_descriptor_storm_is_quiet). After `done`, that one is dropped; the rest passed on."""
    seen = []

    async def main():
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda lp, ctx: seen.append(ctx["message"]))
        storms = loop_reports.AcceptStorms(LogTally(logging.getLogger("qwen.test")))
        storms.install(loop)
        storms.at_exit(loop)  # the gateway's `done`
        await _a_connection_handler_cancelled()

    asyncio.run(main())
    assert seen == ["something else"]


def test_a_handler_cancelled_after_mitmproxy_put_the_loops_handler_back_is_not_logged(caplog):
    """mitmproxy's run puts the loop's exception handler back as it was when it ends, before asyncio cancels
    the handlers left: asyncio's default handler logs the report (CI, under load: a CancelledError traceback per
    connection accepted at the last moment). After `done`, its logger drops exactly that report."""
    loop_reports.AcceptStorms(LogTally(logging.getLogger("qwen.test"))).at_exit(None)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        asyncio.run(_a_connection_handler_cancelled())
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == ["something else"]


def test_on_another_mitmproxys_master_the_loops_reports_are_left_to_it_with_one_line(tmp_path, monkeypatch, caplog):
    """Written against mitmproxy 12.2.3's Master (which installs its handler for its run and puts the one before
    back when the run ends): on another, the handler stays mitmproxy's and asyncio's logger keeps every line."""
    monkeypatch.setattr(fingerprint, "_told", set())
    monkeypatch.setattr(fingerprint, "decided", {})  # this test decides anew
    other = another_mitmproxy.release("mitmproxy.master", tmp_path, monkeypatch)
    monkeypatch.setattr(master.Master, "_asyncio_exception_handler", other.Master._asyncio_exception_handler)
    monkeypatch.setattr(logging.getLogger("asyncio"), "filters", [])  # an earlier test's `done` added its own
    loop = asyncio.new_event_loop()
    try:
        def mitmproxys(lp, ctx):
            return None
        loop.set_exception_handler(mitmproxys)
        storms = loop_reports.AcceptStorms(LogTally(logging.getLogger("qwen.test")))
        with caplog.at_level(logging.WARNING, logger="qwen"):
            assert not storms.install(loop)
            storms.at_exit(loop)
        assert loop.get_exception_handler() is mitmproxys
    finally:
        loop.close()
    assert logging.getLogger("asyncio").filters == []
    [line] = [r.getMessage() for r in caplog.records if r.name == "qwen"]
    assert "(mitmproxy 12.2.3; changed: Master._asyncio_exception_handler)" in line
    assert "mitmproxy logs each accept() failing for want of descriptors as a traceback" in line

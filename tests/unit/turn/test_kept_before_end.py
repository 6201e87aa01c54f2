"""What an endpoint keeps of a streamed answer before the stream's end goes out (turn/kept_before_end.py): the end is
parked, the endpoint's write starts, the gate opens when it is done; a write that fails, or one that takes
longer than KEEP_WAIT_S, takes the end back (the client hears it was not kept, never that it is done)."""

from __future__ import annotations

import asyncio

from qwen_gateway.exchange import ClientRequest, Exchange
from qwen_gateway.interfaces import Endpoint
from qwen_gateway.storage.health import StateUnavailable
from qwen_gateway.turn.stream_rewriter import StreamRewriter
from qwen_gateway.turn import kept_before_end


class Translator:
    """A stream translator that builds a final object (as the Responses API's does) and can take its end back."""

    def feed(self, chunk):
        return []

    def finish(self):
        return [b"data: done\n\n"]

    def fail(self, error):
        return [b"data: failed\n\n"]

    def response(self):
        return {"id": "resp_1", "status": "completed"}

    def unkept(self, held, error):
        return [b"data: not kept\n\n"]


def exchange(write_result) -> tuple[Exchange, list[dict]]:
    kept: list[dict] = []

    def finished(ex, final):
        kept.append(final)
        if isinstance(write_result, Exception) and not isinstance(write_result, StateUnavailable):
            raise write_result
        ex.turn.write = write_result

    ex = Exchange(ClientRequest("POST", "/v1/responses", "http://x/v1/responses"),
                  endpoint=Endpoint("responses", to_chat=lambda b, e: b, from_chat=lambda d, e: d,
                                    stream_translator=lambda e: None, finished=finished))
    ex.turn.rewriter = StreamRewriter(None, Translator())  # type: ignore[arg-type]
    ex.turn.keep_before_end = True
    return ex, kept


async def test_the_end_waits_for_the_write_then_goes_out():
    loop = asyncio.get_running_loop()
    write = loop.create_future()
    ex, kept = exchange(write)
    kept_before_end.hold_end_until_kept(ex, ex.turn.rewriter)
    assert ex.turn.gate is not None and ex.turn.rewriter.park is not None
    ex.turn.rewriter.park()  # the stream's final events arrived
    assert kept == [{"id": "resp_1", "status": "completed"}] and ex.turn.kept and not ex.turn.gate.done()
    write.set_result(None)
    await kept_before_end.until_kept(ex, "a stream")
    assert ex.turn.gate.done() and not ex.turn.unkept


async def test_a_failed_write_takes_the_end_back():
    write = asyncio.get_running_loop().create_future()
    ex, _ = exchange(write)
    kept_before_end.hold_end_until_kept(ex, ex.turn.rewriter)
    ex.turn.rewriter.held = [b"data: done\n\n"]
    ex.turn.rewriter.park()
    write.set_exception(StateUnavailable("The shared database is unavailable."))
    await kept_before_end.until_kept(ex, "a stream")
    assert ex.turn.unkept and ex.result.stream_error and ex.turn.rewriter.held == [b"data: not kept\n\n"]


async def test_a_write_that_takes_too_long_is_not_reported_done(monkeypatch):
    monkeypatch.setattr(kept_before_end, "KEEP_WAIT_S", 0.05)
    ex, _ = exchange(asyncio.get_running_loop().create_future())  # never done
    kept_before_end.hold_end_until_kept(ex, ex.turn.rewriter)
    ex.turn.rewriter.held = [b"data: done\n\n"]
    ex.turn.rewriter.park()
    await kept_before_end.until_kept(ex, "a stream")
    assert ex.turn.unkept and ex.turn.rewriter.held == [b"data: not kept\n\n"]


def test_nothing_is_parked_when_the_endpoint_keeps_nothing_early():
    ex, _ = exchange(None)
    ex.turn.keep_before_end = False
    kept_before_end.hold_end_until_kept(ex, ex.turn.rewriter)
    assert ex.turn.gate is None and ex.turn.rewriter.park is None

"""All observers together, driven in the gateway's order by a stand-in for the gateway: what one observer
leaves (the estimate, the record, the comment) is what the next one reads. A reference for wiring them."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3

from mitmproxy import http
from mitmproxy.addons.view import View
from mitmproxy.test import taddons

from qwen_gateway.mitmweb.flowview import MARK_ERROR, MARK_OK, FlowAnnotator, FlowCap
from qwen_gateway.observer import POINTS, Observer, overrides
from qwen_gateway.observe.debuglog import DebugLog
from qwen_gateway.turn.context_guard import context_check
from qwen_gateway.observe.ledger import UsageLedger
from qwen_gateway.observe.metrics import Metrics
from qwen_gateway.observe.requestlog import RequestLine
from qwen_gateway.observe.estimator import TokenEstimator
from qwen_gateway.tokens import count_request_tokens, estimate_request_tokens
from helpers.observe_testlib import chat_body, client_flow, config, exchange


class Broken(Observer):
    def client_request(self, ex, flow):
        raise RuntimeError("boom")

    def finished(self, ex, flow):
        raise RuntimeError("boom")


async def call(observers, point: str, ex, flow) -> None:
    """As the gateway does: only overridden methods, each isolated."""
    for obs in observers:
        if overrides(obs, point):
            try:
                getattr(obs, point)(ex, flow)
            except Exception:
                logging.getLogger("qwen").exception("observer %s failed in %s", type(obs).__name__, point)


async def drive(observers, cfg, ex, *, stream: bool = False) -> http.HTTPFlow:
    flow = client_flow(ex.body)
    await call(observers, "client_request", ex, flow)
    error = await context_check(ex, cfg)
    if error is not None:
        ex.fail(error.status, error.code, error.message)
        flow.response = http.Response.make(error.status, error.to_bytes(), {"content-type": "application/json"})
    else:
        await call(observers, "upstream_request", ex, flow)
        if stream:
            await call(observers, "stream_started", ex, flow)
        ex.attempt.status = 200
        ex.attempt.response_headers = {"content-type": "application/json"}
        ex.attempt.response_body = b'{"id": "q1"}'
        flow.response = http.Response.make(200, b'{"id": "chatcmpl-1"}', {"content-type": "application/json"})
        ex.result.status = 200
    if ex.count.task is not None:
        await asyncio.wait_for(asyncio.shield(ex.count.task), 120)  # a busy machine is slow, not wrong
    flow.metadata["qwen"] = ex.to_meta()
    await call(observers, "finished", ex, flow)
    return flow


async def test_observers_in_the_gateways_order(tmp_path, caplog):
    assert POINTS == ("client_request", "upstream_request", "stream_started", "finished")
    cfg = config(tmp_path, debug_log=True, context_limits={"gpt-4o-mini": 50}, web_flow_limit=10)
    est, metrics, line, ledger, debug = TokenEstimator(), Metrics(), RequestLine(), UsageLedger(), DebugLog()
    annotate, cap = FlowAnnotator(), FlowCap()
    observers = [est, Broken(), metrics, line, ledger, debug, annotate, cap]  # annotator before the cap
    view = View()
    with taddons.context(view), caplog.at_level(logging.INFO, logger="qwen"):
        for obs in observers:
            obs.configure(cfg)
            obs.running()
        ok = exchange(body=chat_body("hello there"), status=None, usage=None, stream=True)
        ok_flow = await drive(observers, cfg, ok, stream=True)
        too_long = exchange(body=chat_body("word " * 200, model="gpt-4o-mini"), model="gpt-4o-mini", status=None,
                            usage=None, upstream=False)
        refused_flow = await drive(observers, cfg, too_long)
        await ledger.flush()
        for obs in observers:
            obs.done()
    tokens = count_request_tokens(chat_body("word " * 200, model="gpt-4o-mini"))
    # the estimate reached every reader: characters / 4 for a chat prompt; the guard counted the long one with
    # tiktoken (it never judges on characters / 4: tests/unit/test_tokens_lazy.py)
    assert (ok.count.tokens, ok.count.method) == estimate_request_tokens(chat_body("hello there"), exact=False)
    assert too_long.count.tokens == tokens and too_long.result.status == 400
    lines = [r.getMessage() for r in caplog.records if r.name == "qwen" and r.levelno == logging.INFO]
    assert len(lines) == 2 and f" est={ok.count.tokens} " in lines[0]
    assert lines[1].startswith(f"POST /v1/chat/completions gpt-4o-mini→? acct=- 400 est={tokens} ")
    assert caplog.text.count("observer Broken failed") == 4  # logged; nobody else stopped
    assert caplog.text.count("failed in") == 4
    # one ledger row each, one debug file each, one count each
    db = sqlite3.connect(tmp_path / "usage.sqlite3")
    assert db.execute("SELECT status, est_tokens, error FROM usage ORDER BY ts").fetchall() == [
        (200, ok.count.tokens, None), (400, tokens, "context_length_exceeded")]
    db.close()
    for _ in range(300):
        files = list((tmp_path / "logs").glob("exchange-*.json"))
        if len(files) == 2:
            break
        await asyncio.sleep(0.01)
    recs = {json.loads(p.read_text())["exchange"]: json.loads(p.read_text()) for p in files}
    assert recs[ok.id]["upstream_request"]["url"] == ok.attempt.url and recs[too_long.id]["upstream_request"] is None
    assert metrics.streams == 0
    assert b'status="400"' in metrics.exposition()
    # mitmweb: annotated, marked
    assert ok_flow.marked == MARK_OK and refused_flow.marked == MARK_ERROR
    assert "context_length_exceeded" in refused_flow.comment


async def test_at_shutdown_an_exchange_still_waiting_for_its_estimate_is_recorded():
    import asyncio

    from mitmproxy.test import tflow

    from qwen_gateway.exchange import ClientRequest, Exchange
    from qwen_gateway.observer import Observer
    from qwen_gateway.dispatch import Observers

    seen = []

    class Line(Observer):
        waits_for_estimate = True

        def finished(self, ex, flow):
            seen.append(ex.id)

    obs = Observers([Line()])
    ex = Exchange(ClientRequest("POST", "/v1/chat/completions", "http://x/v1/chat/completions"))
    ex.count.task = asyncio.get_running_loop().create_future()  # never completes
    obs.finished(ex, tflow.tflow())
    assert seen == []
    obs.done()
    assert seen == [ex.id]
    ex.count.task.set_result(None)
    await asyncio.sleep(0.05)
    assert seen == [ex.id]  # told once


async def test_recording_observers_are_told_in_batches_after_the_answer_and_at_shutdown_at_the_latest():
    """The `response` hook returns before mitmproxy writes the answer: observers that only record (the
    request line, the ledger, metrics) are told after it, in a batch of every exchange finished within
    BATCH_S, observer by observer (their code stays in the CPU's caches over the batch); those told
    `at_once` (mitmweb's comment and cap, a key's spend) are told before the answer is shown or sent."""
    from qwen_gateway.dispatch import BATCH_S, Observers

    seen: list[str] = []

    class Recorder(Observer):
        def __init__(self, name):
            self.name = name

        def finished(self, ex, flow):
            seen.append(f"{self.name} {ex.id}")

    class Annotator(Observer):
        at_once = True

        def finished(self, ex, flow):
            seen.append("annotated " + ex.id)

    observers = Observers([Recorder("line"), Recorder("row"), Annotator()])
    first, second, third = exchange(), exchange(), exchange()
    loop = asyncio.get_running_loop()
    opened = loop.time()
    observers.finished(first, client_flow())
    await asyncio.sleep(0)
    observers.finished(second, client_flow())
    for _ in range(3):
        await asyncio.sleep(0)  # the next turns of the loop tell nobody: the batch is still open
    assert seen == ["annotated " + first.id, "annotated " + second.id]
    await asyncio.sleep(BATCH_S / 5)
    if loop.time() - opened < BATCH_S:  # (a machine that stalled past the window has told them: checked below)
        assert len(seen) == 2  # not yet: the batch is still open
    await asyncio.sleep(BATCH_S * 2)
    assert seen[2:] == [f"line {first.id}", f"line {second.id}", f"row {first.id}", f"row {second.id}"]
    observers.finished(third, client_flow())
    observers.done()  # shutting down before the batch's end: told now, once
    await asyncio.sleep(BATCH_S * 2)
    assert seen[6:] == ["annotated " + third.id, f"line {third.id}", f"row {third.id}"]


async def test_a_full_batch_is_told_on_the_next_turn_and_a_scrape_counts_every_exchange_finished():
    from qwen_gateway.dispatch import BATCH_MOST, Observers

    class Counted(Observer):
        def __init__(self):
            self.told = 0

        def finished(self, ex, flow):
            self.told += 1

        def exposition(self, pool=None, learned=None):
            return b"told %d" % self.told

    counted = Counted()
    observers = Observers([counted])
    flow = client_flow()
    for _ in range(BATCH_MOST - 1):
        observers.finished(exchange(), flow)
    assert observers.scrape(None) == b"told %d" % (BATCH_MOST - 1)  # a scrape tells the open batch first
    for _ in range(BATCH_MOST):
        observers.finished(exchange(), flow)
    await asyncio.sleep(0)
    assert counted.told == 2 * BATCH_MOST - 1  # the full batch at once, on the next turn
    assert Observers([]).scrape(None) is None


async def test_a_late_estimate_keeps_what_the_flow_annotator_stored_on_the_record():
    """The record is written again once a slow prompt estimate arrives: the upstream body the annotator kept
    on it for mitmweb's upstream view must survive that (it was dropped: "body not kept")."""
    from mitmproxy.test import tflow

    from qwen_gateway.dispatch import Observers
    from qwen_gateway.exchange import ClientRequest, Exchange

    class Line(Observer):
        waits_for_estimate = True

        def finished(self, ex, flow):
            pass

    annotator = FlowAnnotator()
    obs = Observers([annotator, Line()])
    obs.configure(config())
    ex = Exchange(ClientRequest("POST", "/v1/chat/completions", "http://x/v1/chat/completions"))
    ex.attempt.url, ex.attempt.body, ex.result.status = "https://q/v1/chat/completions", {"model": "m"}, 200
    ex.count.task = asyncio.get_running_loop().create_future()
    flow = tflow.tflow(resp=True)
    flow.metadata["qwen"] = ex.to_meta()
    obs.finished(ex, flow)
    assert flow.metadata["qwen"]["upstream"]["body"] == {"model": "m"}
    obs.flush()  # the recording observers' batch: they wait for the estimate
    ex.count.tokens = 7
    ex.count.task.set_result((7, "estimate"))
    for _ in range(50):
        await asyncio.sleep(0.01)
        if flow.metadata["qwen"].get("prompt_tokens_est") == 7:
            break
    assert flow.metadata["qwen"]["prompt_tokens_est"] == 7
    assert flow.metadata["qwen"]["upstream"]["body"] == {"model": "m"}


async def test_an_exchange_whose_cache_print_is_being_made_is_told_when_it_is_made():
    """A long turn's cache print is made by a worker thread (cache/diagnosis.py): the recording observers — the
    doctor first, then the ledger and metrics that read its verdict — are told of that exchange once the print is
    made; the others of its batch are not held; at shutdown it is told at once."""
    from qwen_gateway.dispatch import BATCH_S, Observers

    seen: list[str] = []

    class Recorder(Observer):
        def finished(self, ex, flow):
            seen.append(ex.id)

    observers = Observers([Recorder()])
    loop = asyncio.get_running_loop()
    long, short, last = exchange(), exchange(), exchange()
    long.cache_print = loop.create_future()
    observers.finished(long, client_flow())
    observers.finished(short, client_flow())
    await asyncio.sleep(BATCH_S * 3)
    assert seen == [short.id]  # the long one waits for its print
    long.cache_print.set_result(None)
    await asyncio.sleep(0.01)
    assert seen == [short.id, long.id]
    await asyncio.sleep(BATCH_S * 2)
    assert seen == [short.id, long.id]  # told once

    last.cache_print = loop.create_future()
    observers.finished(last, client_flow())
    observers.done()
    assert seen[2:] == [last.id]  # shutting down: told without its print (the doctor leaves it unjudged)
    last.cache_print.set_result(None)
    await asyncio.sleep(BATCH_S * 2)
    assert seen[2:] == [last.id]


async def test_one_hold_waits_for_the_print_then_for_the_estimate_and_shutdown_releases_both():
    """An exchange whose cache print a worker thread is making and whose prompt estimate is still counting: the
    observers that record it are told once the print is made, those that show the estimate once it is counted —
    one mechanism (`Observers.held`), the print's step holding the exchange again for the estimate. At shutdown
    every hold is released at once, in order, each observer told once."""
    from mitmproxy.test import tflow

    from qwen_gateway.dispatch import Observers
    from qwen_gateway.exchange import ClientRequest, Exchange

    seen = []

    class Row(Observer):
        def finished(self, ex, flow):
            seen.append(("row", ex.id))

    class Line(Observer):
        waits_for_estimate = True

        def finished(self, ex, flow):
            seen.append(("line", ex.id))

    loop = asyncio.get_running_loop()
    for shutdown in (False, True):
        seen.clear()
        obs = Observers([Row(), Line()])
        ex = Exchange(ClientRequest("POST", "/v1/chat/completions", "http://x/v1/chat/completions"))
        ex.cache_print, ex.count.task = loop.create_future(), loop.create_future()
        obs.finished(ex, tflow.tflow())
        obs.flush()
        assert seen == [] and list(obs.held) == [ex.id]  # held for its print
        if shutdown:
            obs.done()
            assert seen == [("row", ex.id), ("line", ex.id)] and obs.held == {}
        else:
            ex.cache_print.set_result(None)
            for _ in range(100):
                await asyncio.sleep(0.01)
                if seen:
                    break
            assert seen == [("row", ex.id)] and list(obs.held) == [ex.id]  # held again, for its estimate
            ex.count.task.set_result(None)
            for _ in range(100):
                await asyncio.sleep(0.01)
                if len(seen) == 2:
                    break
            assert seen == [("row", ex.id), ("line", ex.id)] and obs.held == {}
        for work in (ex.cache_print, ex.count.task):
            if not work.done():
                work.cancel()  # a late end tells nobody again
        await asyncio.sleep(0.05)
        assert len(seen) == 2  # told once

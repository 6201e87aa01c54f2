"""How an exchange ends: its outcome (a stream's usage and errors), the pool told how the account did, the
endpoint's keepsake stored (Responses) — `served`, called by the turn —, the record written to the flow and the
observers' `finished` called — `finish`, called by mitmproxy's `response` and `error` hooks for HTTP answers
and by the turn itself for the other transports (runner.Turns.run).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from mitmproxy import http

from ..accounts import Outcome, Pool
from ..dispatch import Observers, call_safely
from ..errors import gateway_error
from ..exchange import Exchange, note
from ..local_answers import Formats
from ..models.model_map import LiveModels
from ..pricing.prices import UNPRICED, PriceTable
from ..pricing.unpriced import UnpricedSeen
from ..storage.health import StateUnavailable
from .kept_before_end import KEEP_WAIT_S, final_object

log = logging.getLogger("qwen")
CLIENT_LEFT = "Client disconnected"  # how mitmproxy's HTTP/1 layer names a client gone before the answer's end


class Settlement:
    def __init__(self, *, pool: Callable[[], Pool | None], observers: Observers,
                 flows: dict[str, http.HTTPFlow], formats: Formats,
                 prices: Callable[[], PriceTable] = PriceTable,
                 lists: Callable[[], LiveModels | None] = lambda: None) -> None:
        self.pool = pool
        self.prices = prices
        self.lists = lists  # each account's own model list from Qwen (models/listed.py): its prices first
        self.formats = formats
        self.observers = observers
        self.flows = flows  # exchange id -> flow, while the exchange runs (the engine's callback finds it)
        self.unpriced = UnpricedSeen()  # the unpriced models that carried traffic, for /health

    def answered(self, flow: http.HTTPFlow, ex: Exchange) -> None:
        """mitmproxy's `response`: the client has (or is about to have) the answer the turn made: a stream's bytes
        kept on the flow, the dialect's headers on a whole answer, the record written."""
        assert flow.response is not None
        if ex.turn.rewriter is not None:
            self.stream_sent(ex, flow.response)
        else:  # a stream's headers went out with its first bytes
            self.formats.stamp(ex, flow.response)
        self.finish(flow, ex)

    def broken(self, flow: http.HTTPFlow, ex: Exchange) -> None:
        """mitmproxy's `error`: the connection to the client or to the relay broke."""
        rw = ex.turn.rewriter
        if rw is not None and rw.finished and not rw.error and flow.response is not None:
            # The client read the whole answer ([DONE] included) and closed its connection before mitmproxy
            # saw the relay's end of the stream: served, not an error.
            try:
                final = self.stream_sent(ex, flow.response)
                if not ex.turn.served:
                    self.served(ex, final)
                ex.notes.append("the client closed its connection after the whole answer")
            except Exception:
                log.exception("qwen: could not finish a stream the client had read")
            self.finish(flow, ex)
            return
        message = flow.error.msg if flow.error else "connection error"
        self.report(ex, Outcome.ERROR)
        ex.result.stream_error = ex.result.stream_error or message
        if ex.result.error is None:
            if message.startswith(CLIENT_LEFT):  # the client went away mid-answer: not Qwen's doing
                ex.fail(499, "client_disconnected", message)
            else:
                ex.fail(502, "upstream_connection_error", message)
        self.finish(flow, ex)

    def served(self, ex: Exchange, final: dict | None) -> None:
        """Qwen answered: the pool hears how, the endpoint keeps what it must (stored Responses)."""
        if ex.attempt.cred is None or ex.result.error is not None:
            return
        ex.turn.served = True
        rw = ex.turn.rewriter
        outcome = Outcome.OK if rw is None or not rw.error else \
            Outcome.THROTTLE if rw.throttled else Outcome.ERROR  # error_finish: throttled mid-stream
        self.report(ex, outcome)
        if ex.endpoint is not None and ex.endpoint.finished is not None and final is not None \
                and not ex.turn.kept:  # a parked stream's answer was kept before its end
            ex.endpoint.finished(ex, final)

    @classmethod
    def stream_sent(cls, ex: Exchange, resp: http.Response) -> dict | None:
        """The stream has been sent: the client's bytes kept on the flow, its outcome recorded."""
        assert ex.turn.rewriter is not None
        if ex.turn.rewriter.capture_limit:  # else nothing reads it (relay.stream_capture): mitmproxy's None kept
            resp.raw_content = bytes(ex.turn.rewriter.captured)
        return cls.stream_outcome(ex)

    @staticmethod
    def stream_outcome(ex: Exchange) -> dict | None:
        """A stream's usage and errors on the exchange; the final object for endpoints that keep it (stored
        Responses)."""
        rw = ex.turn.rewriter
        assert rw is not None
        ex.result.usage = rw.normalizer.usage
        ex.result.first_byte_at = rw.first_byte_at
        ex.result.cuts = rw.cuts
        if rw.error:
            ex.result.stream_error = str(rw.error.get("message"))
            code = rw.error.get("code")
            ex.result.stream_error_code = str(code) if code else None
        if rw.dropped:
            note(ex.notes, f"{rw.dropped} bytes of Qwen's stream were cut inside an event: dropped, never sent")
        # a finish said in the client's words, and Qwen's; a continued answer's usage the gateway estimated
        for said in getattr(rw.normalizer, "notes", None) or ():
            note(ex.notes, said)
        if rw.unfinished_end:
            note(ex.notes, "Qwen's stream ended after the answer's finish, before its [DONE]: the answer is whole"
                 + ("" if rw.normalizer.usage else "; Qwen's usage for it did not arrive (unknown)"))
        return final_object(rw)

    def report(self, ex: Exchange, outcome: Outcome) -> None:
        pool = self.pool()
        if pool is not None and ex.attempt.cred is not None:
            call_safely(pool.report, ex.attempt.cred.account, outcome)

    def finish(self, flow: http.HTTPFlow, ex: Exchange) -> None:
        """The record on the flow (`flow.metadata["qwen"]`), and the observers told."""
        self.flows.pop(ex.id, None)
        ex.result.ended = time.monotonic()
        if flow.response is not None and ex.result.status is None:
            ex.result.status = flow.response.status_code
        if ex.result.usage and "completion_tokens_details" in ex.result.usage and (
                why := reasoning_took_the_cap(ex.result.usage, ex.attempt.body)):
            ex.notes.append(why)
        # what Qwen reported, priced once for every observer (unless the answer priced itself: a batch's results);
        # an answer without Qwen's usage (missing, cut) is counted as unknown, never as nothing
        if ex.attempt.cred is not None and ex.result.cost is None and not ex.result.cost_unit and (
                ex.result.usage or unreported(ex)):
            self.charge(ex, ex.attempt.cred.billing)
        flow.metadata["qwen"] = ex.to_meta()
        if ex.turn.handed_on:  # the run's exchange ends this request (one line, one ledger row, one bill)
            return
        self.observers.finished(ex, flow)

    def charge(self, ex: Exchange, billing: str) -> None:
        """Its price, a plan's unit, or unpriced (unknown, never $0): what every observer reads."""
        lists, cred = self.lists(), ex.attempt.cred
        listed = lists.model_list(cred.account) if lists is not None and cred is not None else None
        charged = self.prices().charge(billing, ex.attempt.model, ex.result.usage,
                                       listed=listed.tiers(ex.attempt.model) if listed is not None else None) \
            if ex.result.usage else self.prices().unreported(billing, ex.attempt.model)
        if charged is None:
            return
        r = ex.result
        r.cost, r.cost_unit, r.cache_saved, r.priced_as = charged.amount, charged.unit, charged.saved, charged.priced_as
        if charged.tier is not None and listed is not None:
            r.priced_by = f"{listed.said()}: {charged.tier or 'one price'}"
            if bands := listed.bands_said(ex.attempt.model):
                ex.notes.append(bands)
        if charged.unit == UNPRICED:
            self.unpriced.count(billing, ex.attempt.model)

    async def durable(self, flow: http.HTTPFlow, ex: Exchange) -> None:
        """A write the endpoint started (a stored Response) is committed before mitmproxy sends the answer:
        a gateway killed right after answering loses nothing the client was told exists. A whole answer
        whose write failed becomes a 503 `state_unavailable` (the storage's outage is logged once by it)."""
        write, ex.turn.write = ex.turn.write, None
        if write is None:
            return
        try:
            if not write.done():  # a stream's write was already awaited before its end went out: no timer again
                await asyncio.wait_for(asyncio.shield(write), KEEP_WAIT_S)
            write.result()
        except Exception as e:
            if not isinstance(e, StateUnavailable):
                log.error("qwen: could not store the answer of exchange %s: %s", ex.id, type(e).__name__)
                e = StateUnavailable("The gateway could not store the response in time; try again later.")
            if ex.turn.rewriter is None:
                err = gateway_error(e)
                flow.response = self.formats.error(err, ex)
                ex.fail(err.status, err.code, err.message)

    def passed(self, flow: http.HTTPFlow) -> None:
        """Flows the gateway passes through (other hosts, explicit proxy) count for mitmweb's cap too."""
        if self.observers.track is not None:
            call_safely(self.observers.track, flow)


def unreported(ex: Exchange) -> bool:
    """Qwen answered a dialect's request for a model's answer (a stream's text included) and said nothing of its
    usage: its tokens and cost are unknown. Not a refusal, nor a read (GET), nor the gateway's own routes (files,
    batches: their bills price themselves), nor a queued Response's POST (the turn that runs on counts it)."""
    status = ex.result.status
    return ex.endpoint is not None and ex.client.method == "POST" and bool(ex.attempt.model) \
        and ex.result.error is None and (status is None or status < 400) and not ex.turn.handed_on


def reasoning_took_the_cap(usage: dict, upstream_body: dict | None) -> str | None:
    """Why an answer is empty when the reasoning used the whole output cap (Model Studio, 2026-11-02: from
    qwen4-max-preview on the cap covers reasoning and answer together), for the flow; None otherwise."""
    cap = (upstream_body or {}).get("max_completion_tokens")
    details = usage.get("completion_tokens_details")
    reasoning = details.get("reasoning_tokens") if isinstance(details, dict) else None
    out = usage.get("completion_tokens")
    if not (isinstance(cap, int) and isinstance(reasoning, int) and isinstance(out, int)):
        return None
    if reasoning and reasoning >= out >= cap:
        return f"the reasoning used all {cap} output tokens: no answer (raise the output cap)"
    return None

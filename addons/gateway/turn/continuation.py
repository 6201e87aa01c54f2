"""A stream that outlives its account: an answer that breaks after the client received part of it is continued
from that part, and the client reads one answer.

Qwen goes on from a prefix (Model Studio's partial mode: the upstream's `continued` body). When Qwen throttles
or runs out of quota inside the stream, the account is told to the pool as the retry policy tells it and another
account goes on; when the stream is cut, or Qwen reports a server error inside it, the same account goes on. The
continuation's chunks go through the same rewriter and translator (answer_so_far.py keeps the ids and sums the
usage), at most MAX_CONTINUATIONS times per answer, each a `continued` retry on the record with a note saying
where and why.

A break before anything but the answer's opening went out is the request sent again as it was, on any model (the
client reads the second answer as the first). Not continued, the client getting the stream's error: a request
partial mode cannot serve once text went out (a model the catalogue does not give it, thinking mode, a search,
several choices), a pass-through pair, an upstream that can do neither (Qwen Chat web), anything but text sent
(reasoning, a tool call which may be half sent, a second choice, log probabilities), an error that is not Qwen's
server's (a refusal of the content)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection

from ..accounts import Outcome, Pool
from ..cache_markers import marked_to_end
from ..dispatch import call_safely
from ..errors import ErrorKind, GatewayError
from ..exchange import Exchange
from ..interfaces import ChunkSource, UpstreamAnswer
from . import Send
from .answer_so_far import AnswerSoFar
from .stream_rewriter import StreamRewriter
from ..tokens import encoding

log = logging.getLogger("qwen")

# The engine's `resume`: the exchange's request sent again going on from a prefix, on its account or (excluding
# some) another; the answer's head read.
Resume = Callable[[Exchange, str, Collection[str]], Awaitable[UpstreamAnswer]]
# The cache doctor's estimate of what of the exchange's prompt Qwen's explicit cache held before it was sent (None:
# nothing to go by): a broken request's read, the rest of what it stored its write (answer_so_far.py)
ReadBefore = Callable[[Exchange], "int | None"]

MAX_CONTINUATIONS = 2  # per answer: a stream that keeps breaking ends in its error
ELSEWHERE = {ErrorKind.THROTTLE: Outcome.THROTTLE, ErrorKind.QUOTA: Outcome.QUOTA}  # the account's limit
ON_THE_SAME = (ErrorKind.SERVER, ErrorKind.TIMEOUT)  # Qwen's server failed: the account is fine


def going_on(ex: Exchange, resume: Resume | None, pool: Callable[[], Pool | None],
             read_before: ReadBefore | None = None) -> Continuation | None:
    """The continuation of `ex`'s stream, when its upstream can send it again (a break before anything but the
    answer's opening went out); the answer is followed from the start (`source`: what the client is sent is kept)
    when partial mode can go on from a prefix too. None: a break ends the stream in its error."""
    upstream, body = ex.attempt.upstream, ex.attempt.body
    if resume is None or upstream is None or body is None or ex.attempt.leg.passthrough or not upstream.resendable:
        return None
    return Continuation(ex, resume, pool, follow=upstream.continued(body, "") is not None, read_before=read_before)


class Continuation:
    """The break, the decision, the request going on and the splice, for one streamed answer: the rewriter holds a
    break (`holds_breaks`) and the turn's pump asks `next`, which decides, sends the continuation and puts its
    chunks in place, or gives up and sends the break's error."""

    def __init__(self, ex: Exchange, resume: Resume, pool: Callable[[], Pool | None], *, follow: bool,
                 read_before: ReadBefore | None = None) -> None:
        self.ex = ex
        self.read_before = read_before
        self.follow = follow  # partial mode can go on from a prefix: what is sent is kept from the start
        self.answer: AnswerSoFar | None = None  # what the client was sent (None: not followed)
        self.resume, self.pool = resume, pool
        self.count = 0
        self.away: list[str] = []  # accounts left out: throttled or out of quota during this answer
        self.current: UpstreamAnswer | None = None  # the continuation streaming now (the first is the turn's)

    def source(self, chunks: ChunkSource) -> ChunkSource:
        """The chunk source the answer is read through: followed from the start when partial mode can go on."""
        if not self.follow:
            return chunks
        self.answer = AnswerSoFar(chunks)
        return self.answer

    def will(self, rw: StreamRewriter, error: dict) -> bool:
        """Whether the break the rewriter holds (`error`, the client's words for it) is continued; why not, noted."""
        answer = self.answer
        opened_only = not answer.pieces and not answer.more_than_text if answer is not None else \
            getattr(rw.normalizer, "opened_only", False)  # the upstream's own chunk source says
        why = f"at most {MAX_CONTINUATIONS} continuations per answer" if self.count >= MAX_CONTINUATIONS else \
            None if opened_only else \
            "reasoning or a tool call was sent (or a second choice, or log probabilities), which partial mode " \
            "cannot go on from" if answer is not None and answer.more_than_text else \
            "partial mode cannot go on with this request (its model, thinking, a search or several choices)" \
            if answer is None or not self._partial() else None
        err = rw.upstream_error
        if why is None and not (err is not None and err.kind in ELSEWHERE) and (
                error.get("type") != "server_error" or err is not None and err.kind not in ON_THE_SAME):
            why = "the error is not one a continuation mends"
        if why is not None:
            self.ex.notes.append(f"stream not continued: {why}")
        return why is None

    def _partial(self) -> bool:
        upstream, body = self.ex.attempt.upstream, self.ex.attempt.body
        return upstream is not None and body is not None and upstream.continued(body, "") is not None

    async def next(self, rw: StreamRewriter, send: Send) -> UpstreamAnswer | None:
        """The break `rw` holds, continued when it will be: the continuation's answer, its chunk source in place;
        None when it is not, or could not be opened (the break's error then goes to the client, with `send`)."""
        ex = self.ex
        assert rw.broken is not None
        if not self.will(rw, rw.broken):
            await send(rw.give_up())
            return None
        if self.answer is None:  # nothing but the opening went out: followed from now on
            self.answer = AnswerSoFar.after(rw.normalizer)
            rw.read_through(self.answer)
        answer = self.answer
        err, prefix, account = rw.upstream_error, answer.text, ex.account
        said = err.message if err is not None else str((rw.broken or {}).get("message"))
        why = f"Qwen broke off the answer on {account} (“{said}”)"
        elsewhere = err is not None and err.kind in ELSEWHERE  # the account's limit: another account goes on
        if err is not None and elsewhere:
            self.away.append(account)
            why = f"{account} {'throttled' if err.kind is ErrorKind.THROTTLE else 'ran out of quota'} (“{said}”)"
        self.count += 1
        upstream, body = ex.attempt.upstream, ex.attempt.body
        hour = upstream is not None and body is not None and upstream.cache_lifetime_s(body) >= 3600
        marked = marked_to_end(body)  # the broken request's markers: its whole prompt in the cache, or not
        read_before = self._read_before() if not answer.parts else None  # a later one read what the last stored
        await self.close()
        try:
            resp = await self.resume(ex, prefix, tuple(self.away))
        except Exception as e:  # no account, a refusal, a transport failure: the answer ends as it broke
            if not isinstance(e, GatewayError):
                log.exception("qwen: a stream could not be continued")
            if elsewhere and ex.account != account:  # the settlement tells the pool of the account asked last
                self._told(rw, account)
            await self._given_up(rw, send, f"{why}: {getattr(e, 'message', type(e).__name__)}")
            return None
        if elsewhere:
            self._told(rw, account)
        if resp.status_code != 200 or "event-stream" not in resp.headers.get("content-type", ""):
            await resp.aclose()
            await self._given_up(rw, send, f"{why}: Qwen answered {resp.status_code} without a stream")
            return None
        self.current = resp
        ex.notes.append(f"stream continued on {ex.account} after {len(prefix)} characters (partial mode): {why} (the "
                        f"prefix, {encoding().count(prefix)} tokens, is billed again as input)" if prefix else
                        f"stream sent again on {ex.account}, nothing of the answer having gone out: {why}")
        assert ex.attempt.upstream is not None
        answer.continued(ex.attempt.upstream.chunks(ex.answered_as),
                         same_account=ex.account == account, read_before=read_before, hour=hour,
                         marked_to_end=marked)
        rw.resume()
        return resp

    def _read_before(self) -> int | None:
        """The cache doctor's estimate for the request that broke; a failure of it costs the estimate only."""
        try:
            return self.read_before(self.ex) if self.read_before is not None else None
        except Exception:
            log.exception("qwen: the cache's share of a broken request could not be estimated")
            return None

    def _told(self, rw: StreamRewriter, account: str) -> None:
        """The pool told of the account's limit inside the stream, as the retry policy tells it, once (the
        settlement does not tell it again)."""
        err = rw.told()
        pool = self.pool()
        if err is not None and pool is not None:
            outcome = ELSEWHERE[err.kind]
            call_safely(lambda: pool.report(account, outcome, retry_after=err.retry_after, detail=err.message,
                                            window=err.window))

    async def _given_up(self, rw: StreamRewriter, send: Send, why: str) -> None:
        sent = len(self.answer.text) if self.answer is not None else 0
        self.ex.notes.append(f"stream not continued after {sent} characters: {why}")
        await send(rw.give_up())

    async def close(self) -> None:
        """The continuation streaming now is done with (the first answer is the turn's to close)."""
        current, self.current = self.current, None
        if current is not None:
            await current.aclose()

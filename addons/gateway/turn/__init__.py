"""The turn: one client request run from its body to the settled outcome, for every transport (runner.py).
What the outer packages see of it: `TurnRunner` (the turn a transport hands an exchange to) and `Transport` (what a
transport is to the turn: it moves bytes and reports facts — the client left, the run was cancelled, an error went
out as the dialect's events —, never writing an outcome)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, NamedTuple, Protocol

if TYPE_CHECKING:
    from mitmproxy import connection, http

    from ..errors import GatewayError
    from ..exchange import Exchange
    from ..interfaces import StreamTranslator

class Cancelled(NamedTuple):
    """What a cancelled turn was, as its transport knows it: its client left (499) or its run was cancelled (the
    stream ended broken), in `why`'s words."""

    client_left: bool
    why: str


# Where a stream's client bytes go, as they are made (a list of events, maybe several at once).
Send = Callable[[list[bytes]], Awaitable[None]]


class Transport(Protocol):
    """How one turn's answer reaches its client: mitmproxy's flow (a whole HTTP answer), the relay (an HTTP
    stream), a WebSocket's frames, a background run's recorded events."""

    capture: int  # bytes of a translated stream kept for the flow (mitmweb, -w)
    keeps: bool  # it keeps the final object itself (a background run stores it at its end)
    ends_record: bool  # the turn writes the record when it ends (else mitmproxy's response/error hooks do)

    @property
    def client(self) -> connection.Client | None:
        """A client whose leaving gives up a whole answer (None: none watched)."""
        ...

    def translator(self, ex: Exchange) -> StreamTranslator | None:
        """Its own encoding of a stream's events (None: the endpoint's SSE)."""
        ...

    async def begin(self, ex: Exchange) -> None:
        """A stream starts: its head, before the first events."""
        ...

    async def send(self, outs: list[bytes]) -> None: ...

    async def whole(self, ex: Exchange, answer: http.Response) -> bool:
        """A whole answer, translated for the client: whether it carried it (False: a stream's transport that
        cannot, and the turn ends the exchange 502 "Qwen answered with no stream.")."""
        ...

    async def refuse(self, ex: Exchange, err: GatewayError) -> bool:
        """The turn failed before its answer began: `err` is the client's error. True: it was carried as the
        dialect's stream events (a Responses `response.failed`), which the turn records as a broken stream."""
        ...

    def cancelled(self, ex: Exchange) -> Cancelled | None:
        """The turn's task was cancelled (its client left, or it was stopped): what that means here, a fact the
        turn records (None: mitmproxy's own hooks say it)."""
        ...

    def ended(self, ex: Exchange, final: dict | None) -> None:
        """The turn is over; `final`: the endpoint's final object (None when it failed)."""
        ...


class TurnRunner(Protocol):
    """runner.Turns, as a transport other than mitmproxy's HTTP flow drives it."""

    def received(self, ex: Exchange, body: dict, flow: http.HTTPFlow) -> None: ...

    async def run(self, ex: Exchange, transport: Transport) -> None: ...

    def refusal(self, ex: Exchange, err: GatewayError) -> http.Response:
        """An HTTP client's answer to a failed turn: the error in its dialect (or the stream failure it acts on)."""
        ...

    def follow(self, ex: Exchange, flow: http.HTTPFlow) -> None: ...

    def flow_of(self, ex: Exchange) -> http.HTTPFlow | None: ...

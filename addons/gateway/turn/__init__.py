"""The turn: one client request run from its body to the settled outcome, for every transport (runner.py).
What the api wing sees of it is `TurnRunner`: the WebSocket turns and background runs of the Responses API
drive their turns through it, never through the addon."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from mitmproxy import http

    from ..exchange import Exchange
    from ..pivot import StreamTranslator, UpstreamAnswer
    from .runner import Send


class TurnRunner(Protocol):
    """runner.Turns, as a transport other than mitmproxy's HTTP flow drives it."""

    def received(self, ex: Exchange, body: dict, flow: http.HTTPFlow) -> None: ...

    async def translate(self, ex: Exchange) -> None: ...

    async def open(self, ex: Exchange) -> UpstreamAnswer: ...

    async def pump(self, ex: Exchange, resp: UpstreamAnswer, send: Send, *, capture: int = 0,
                   translator: StreamTranslator | None = None) -> None: ...

    def follow(self, ex: Exchange, flow: http.HTTPFlow) -> None: ...

    def flow_of(self, ex: Exchange) -> http.HTTPFlow | None: ...

    def streamed(self, ex: Exchange, *, keep: bool = True) -> dict | None: ...

    def finish(self, flow: http.HTTPFlow, ex: Exchange) -> None: ...

"""A whole HTTP answer's transport (turn.Transport): the turn runs inside mitmproxy's `request` hook and its
answer, or its refusal in the client's format, becomes the flow's response, which mitmproxy sends; its
`response` hook then writes the record (turn/settlement.py). The client is watched while Qwen answers: a client that
leaves gives the answer up (turn/client_watch.py)."""

from __future__ import annotations

from collections.abc import Callable

from mitmproxy import connection, http

from ..errors import GatewayError
from ..exchange import Exchange


class FlowAnswer:
    capture = 0
    keeps = False
    ends_record = False  # mitmproxy's response hook settles the flow

    def __init__(self, flow: http.HTTPFlow, refusal: Callable[[Exchange, GatewayError], http.Response]) -> None:
        self.flow = flow
        self.refusal = refusal  # the error as the client's dialect says it (runner.Turns.refusal)
        self.client: connection.Client | None = flow.client_conn

    def translator(self, ex: Exchange) -> None:
        return None

    async def begin(self, ex: Exchange) -> None:
        raise AssertionError("a whole answer does not stream")

    async def send(self, outs: list[bytes]) -> None:
        raise AssertionError("a whole answer does not stream")

    async def whole(self, ex: Exchange, answer: http.Response) -> bool:
        self.flow.response = answer
        return True

    async def refuse(self, ex: Exchange, err: GatewayError) -> bool:
        self.flow.response = self.refusal(ex, err)
        return False

    def cancelled(self, ex: Exchange) -> None:
        return None  # mitmproxy's `error` hook records the client gone

    def ended(self, ex: Exchange, final: dict | None) -> None:
        pass

"""One budget for the bytes of Responses WebSocket messages the gateway holds ahead of their turns' end: per
connection, and for every connection together (socket.py).

Why: a connection's lanes each read 8 messages ahead of their running turn (socket_lanes.py), so one connection
held 8 × 9 messages of up to qwen_max_body_mb — 2,034 MB for messages of 30 MiB — and connections were not counted
together. A message counts from its first byte read by mitmproxy until its turn has ended: while mitmproxy gathers
it (`gathering`: seams/websocket_messages.py, the gateway's own WebSockets), once mitmproxy has relayed it to the
gateway's server until the server has it whole (`transit`: mitmproxy's `websocket_message` hook, in order), then
while it waits on its lane and its turn runs (`held`), until the turn ends or the message is answered without one
(`Account.release`). A connection that closes gives back all it held.

Past a budget, the message being gathered is refused before more of it is read: the client reads the Responses
WebSocket's `error` event and a close — 429 `websocket_read_ahead_limit_reached` and 1008 (policy violation) for a
connection over its own, 503 `server_overloaded` and 1013 (try again later) when all together are over the
gateway's (`qwen_websocket_read_ahead_mb`)."""

from __future__ import annotations

from collections import deque

from ..errors import GatewayError

MiB = 1 << 20
POLICY, TRY_AGAIN = 1008, 1013  # RFC 6455's close codes: policy violation; try again later (overloaded)


class Account:
    """One connection's share: what mitmproxy gathers, what it relayed that the server has not read whole yet (in
    order), and what the server holds."""

    __slots__ = ("budget", "gathering", "transit", "held", "open")

    def __init__(self, budget: ReadAhead) -> None:
        self.budget = budget
        self.gathering = 0
        self.transit: deque[int] = deque()
        self.held = 0
        self.open = True

    @property
    def total(self) -> int:
        return self.gathering + sum(self.transit) + self.held

    def release(self, size: int) -> None:
        """A message's turn has ended (or it was answered without one): its bytes given back."""
        if self.open:
            size = min(size, self.held)
            self.held -= size
            self.budget.total -= size


class ReadAhead:
    def __init__(self, per_connection: int = 64 * MiB, limit: int = 256 * MiB) -> None:
        self.per_connection, self.limit = per_connection, limit
        self.total = 0  # every open connection's `total`
        self._accounts: dict[str, Account] = {}  # by the WebSocket's flow id

    def configure(self, max_message: int, limit: int) -> None:
        """A connection may hold two of the largest messages (one running, one waiting), and never more than all
        together may (`limit`)."""
        self.limit = limit
        self.per_connection = min(2 * max_message, limit)

    def account(self, flow_id: str) -> Account:
        acct = self._accounts.get(flow_id)
        if acct is None:
            acct = self._accounts[flow_id] = Account(self)
        return acct

    def gathering(self, flow_id: str, size: int) -> GatewayError | None:
        """mitmproxy holds `size` bytes of the connection's next message so far: None while within both budgets,
        else the refusal."""
        acct = self.account(flow_id)
        self.total += size - acct.gathering
        acct.gathering = size
        return self.over(acct)

    def relayed(self, flow_id: str, size: int) -> None:
        """mitmproxy relays a whole message of `size` bytes to the gateway's server (its gathering ends)."""
        acct = self.account(flow_id)
        self.total += size - acct.gathering
        acct.gathering = 0
        acct.transit.append(size)

    def received(self, flow_id: str) -> tuple[Account, int, GatewayError | None]:
        """The server has the oldest message in transit whole: it is held (`Account.release` gives it back). The
        refusal when the budgets are over (mitmproxy gathered it unbounded: a mitmproxy the seam does not fit)."""
        acct = self.account(flow_id)
        size = acct.transit.popleft() if acct.transit else 0
        acct.held += size
        return acct, size, self.over(acct)

    def over(self, acct: Account) -> GatewayError | None:
        if acct.total > self.per_connection:
            return GatewayError(429, f"This WebSocket connection holds more than {self.per_connection // MiB} MiB of "
                                     "messages waiting for their turns, its limit (twice qwen_max_body_mb): send the "
                                     "next once a turn has ended.", code="websocket_read_ahead_limit_reached")
        if self.total > self.limit:
            return GatewayError(503, f"The gateway holds more than {self.limit // MiB} MiB of WebSocket messages "
                                     "waiting for their turns, its limit for all connections together "
                                     "(qwen_websocket_read_ahead_mb): try again shortly.", code="server_overloaded")
        return None

    def close(self, flow_id: str) -> None:
        """The connection ended: all it held given back (its turns were cancelled with it)."""
        acct = self._accounts.pop(flow_id, None)
        if acct is not None:
            self.total -= acct.total
            acct.open = False


def close_code(refusal: GatewayError) -> int:
    return POLICY if refusal.status == 429 else TRY_AGAIN

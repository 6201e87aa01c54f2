"""A connection inside the process: two asyncio stream pairs joined back to back, with the asyncio streams'
interface (`read`/`readuntil`/`readexactly` on the reader; `write`/`drain`/`close`/`write_eof`/
`get_extra_info` on the writer), so code written for a socket runs over it unchanged.

Why: a streamed answer travels from the turn (through the relay) to mitmproxy. Over a loopback socket every
event cost a write, a wake-up of the event loop's selector and a read, and every stream a TCP connect and an
accept (at hundreds of streams opened together the listener's backlog overflowed and the kernel retried the
connect a second later). In the process, a write hands the bytes to the peer's reader at once.

Backpressure is kept: `drain` waits while the peer holds more than HIGH_WATER unread bytes (mitmproxy stops
reading while its client is slow, as it stops reading a socket), so a slow client still slows the upstream
read instead of filling memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any, SupportsIndex

HIGH_WATER = 256 * 1024
LIMIT = 64 * 1024  # a line (a request head) longer than this is refused, as the loopback server did


class PipeReader(asyncio.StreamReader):
    """An asyncio StreamReader that tells its writer when its unread bytes fall below HIGH_WATER."""

    def __init__(self) -> None:
        super().__init__(limit=LIMIT)
        self.unread = 0
        self.closed = False  # its own side closed the connection: writes to it fail
        self.room = asyncio.Event()
        self.room.set()
        # Called once when the peer closes the connection (the relay's watch for a client gone mid-answer:
        # a callback, where a socket's server would keep a read pending in a task of its own)
        self.on_eof: Callable[[], None] | None = None
        self.dropping = 0  # bytes still to come that `discard` drops as they arrive

    def feed_data(self, data: Iterable[SupportsIndex]) -> None:
        data = bytes(data)
        if self.dropping:
            drop = min(self.dropping, len(data))
            self.dropping -= drop
            data = data[drop:]
            if not data:
                return
        super().feed_data(data)
        self.unread += len(data)
        if self.unread > HIGH_WATER:
            self.room.clear()

    def feed_eof(self) -> None:
        super().feed_eof()
        if self.closed:
            self.room.set()  # nobody will read: a writer waiting for room learns it is closed instead
        told, self.on_eof = self.on_eof, None
        if told is not None:
            told()

    def discard(self, n: int) -> None:
        """Drop the next `n` bytes unread: those buffered at once (from the front: no copy), those still to come
        as they arrive (never buffered). The relay's copy of the client's body, which the flow keeps: read
        out and thrown away, a long conversation's 60 kB cost ~60k instructions a copy."""
        buffered: bytearray = self._buffer  # type: ignore[attr-defined]  # asyncio's own, every Python since 3.4
        here = min(n, len(buffered))
        del buffered[:here]
        self.dropping = n - here
        self.unread -= here
        if self.unread <= HIGH_WATER:
            self.room.set()

    def _consumed(self, data: bytes) -> bytes:
        self.unread -= len(data)
        if self.unread <= HIGH_WATER:
            self.room.set()
        return data

    async def read(self, n: int = -1) -> bytes:
        return self._consumed(await super().read(n))

    async def readuntil(self, separator: bytes = b"\n") -> bytes:  # type: ignore[override]
        return self._consumed(await super().readuntil(separator))

    async def readexactly(self, n: int) -> bytes:
        return self._consumed(await super().readexactly(n))


class PipeWriter:
    """The writing half: what it writes, the peer's PipeReader reads."""

    def __init__(self, peer: PipeReader, own: PipeReader, extra: dict[str, Any]) -> None:
        self.peer = peer
        self.own = own  # this side's reader: closing the connection ends it too
        self.extra = extra
        self.closed = False
        self.eof_sent = False

    def write(self, data: bytes) -> None:
        """As a socket's transport: after write_eof an error; to a connection either side closed, dropped (the
        next `drain` says so) — mitmproxy's server loop does not expect `write` itself to raise."""
        if self.eof_sent and not self.closed:
            raise ConnectionResetError("the in-process connection's writing half is closed")
        if data and not (self.closed or self.peer.closed):
            self.peer.feed_data(data)

    def writelines(self, data) -> None:
        for part in data:
            self.write(part)

    async def drain(self) -> None:
        if not self.peer.room.is_set() and not self.closed:
            await self.peer.room.wait()
        if self.closed or self.peer.closed:
            raise ConnectionResetError("the in-process connection is closed")

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if not self.eof_sent and not self.closed:
            self.eof_sent = True
            self.peer.feed_eof()

    def close(self) -> None:
        """Both directions end: the peer reads EOF; so does this side (its peer's writes then fail)."""
        if not self.closed:
            self.closed = True
            if not self.eof_sent:
                self.peer.feed_eof()
            self.own.closed = True
            self.own.feed_eof()

    def is_closing(self) -> bool:
        return self.closed

    async def wait_closed(self) -> None:
        return None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.extra.get(name, default)


def pipe(address: tuple[str, int]) -> tuple[tuple[PipeReader, PipeWriter], tuple[PipeReader, PipeWriter]]:
    """Two ends of one in-process connection: (the connecting side's reader and writer, the serving side's).
    Each writer reports `address` as its peer and its own name, as a socket to that address would."""
    a, b = PipeReader(), PipeReader()
    info = {"peername": address, "sockname": address, "transport_protocol": "tcp"}
    return (a, PipeWriter(b, a, info)), (b, PipeWriter(a, b, info))

"""A TCP forwarder that puts a far network between two local programs: every byte is delivered
`--delay-ms` later in each direction (a round trip costs twice that), order kept, and a new connection
costs the handshake's round trip before its first bytes travel. It logs each connection it accepts, so
tests can count how often a client opened a new upstream connection.

    python scripts/delay_proxy.py --target 127.0.0.1:9999 --delay-ms 50 --port 9998

Used by scripts/bench.py (an emulated far upstream) and tests/e2e/test_e2e_engine.py.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float,
                not_before: float = 0.0) -> None:
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            at, data = await queue.get()
            if not data:
                break
            wait = max(at + delay, not_before) - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    task = asyncio.ensure_future(deliver())
    try:
        while True:
            data = await reader.read(65536)
            await queue.put((time.monotonic(), data))
            if not data:
                break
        await task
    except (ConnectionError, asyncio.CancelledError):
        task.cancel()
    finally:
        writer.close()


def serve(target: tuple[str, int], delay: float, conn_log: str | None):
    async def handle(creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        # The local accept is instant; a real connection first costs a round trip (SYN, SYN-ACK) before the
        # client's first bytes travel one way: they arrive no earlier than three one-way delays from now.
        first_data = time.monotonic() + 3 * delay
        if conn_log:
            with open(conn_log, "a") as f:
                f.write(f"{time.time():.3f}\n")
        try:
            ureader, uwriter = await asyncio.open_connection(*target)
        except OSError:
            cwriter.close()
            return
        await asyncio.gather(_pipe(creader, uwriter, delay, first_data), _pipe(ureader, cwriter, delay),
                             return_exceptions=True)
    return handle


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", required=True, help="host:port to forward to")
    ap.add_argument("--delay-ms", type=float, default=50.0, help="one-way delay in each direction")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", help="write the listening port here once ready")
    ap.add_argument("--conn-log", help="append one line per accepted connection")
    ap.add_argument("--lifetime", type=float, default=3600, help="exit after this many seconds")
    a = ap.parse_args()
    host, _, port = a.target.rpartition(":")
    server = await asyncio.start_server(serve((host, int(port)), a.delay_ms / 1000, a.conn_log), a.host, a.port)
    if a.port_file:
        with open(a.port_file + ".tmp", "w") as f:
            f.write(str(server.sockets[0].getsockname()[1]))
        os.replace(a.port_file + ".tmp", a.port_file)
    async with server:
        await asyncio.sleep(a.lifetime)


if __name__ == "__main__":
    asyncio.run(main())

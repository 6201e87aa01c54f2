"""Where mitmproxy listens, and the client connections it holds when it stops.

Start-up. mitmproxy listens on every interface unless told; the gateway spends the user's Qwen quota, so
it moves listeners nobody placed to 127.0.0.1. mitmdump loads `-s` scripts only once it has begun binding
its listeners (`Master.run` starts `setup_servers` before the script watcher's first turn), so the README's
bare command always binds `*:PORT` first and the gateway starts the listeners again on loopback. Reverse
mode to an `https://` target also listens on UDP (HTTP/3), and mitmproxy closes a UDP listener without
waiting for its socket to go (`AsyncioServerInstance._stop`): binding `127.0.0.1:PORT` at once then failed
about one start in seven ("[Errno 98] … Failed to bind UDP socket"). So the move is two steps: stop the
listeners on every interface, wait until their sockets are closed, then start the loopback ones. mitmproxy
logs each listener it starts and stops: the lines for the moved ones (`listening at *:8080`, `at *:8080
stopped`) are left out while the move runs (`QuietMove`), so the terminal shows one listening line, the
loopback one, and not a start, a stop and a restart that read like a crash.

Shutdown. At exit, asyncio cancels the connection handlers still running, and Python 3.12.1's
`StreamReaderProtocol` then prints a `CancelledError` traceback for each (its done-callback asks a
cancelled task for its exception). mitmproxy leaves its client connections open when it stops, so the
gateway closes them itself, the way mitmproxy closes an idle one (`close_connection`): each handler ends
normally, its flows end with an error the gateway records, the client reads a clean end of stream.

Connections mitmproxy forgets. Past `body_size_limit` mitmproxy answers 413 and closes the client
connection by cancelling its handler; the handler is cancelled again while it reports the close, and ends
before it closes its socket. The socket, its reading paused on a full buffer, then stayed open for as long
as the client kept it: a connection and a descriptor for ever per refused upload (a client writing its
whole body first waited for its own timeout). mitmproxy's `client_disconnected` comes once the handler has
ended, so whatever socket it left open then is closed there (`close_left_open`).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import select
import socket
from collections.abc import Awaitable, Iterable
from typing import Protocol

from mitmproxy import ctx
from mitmproxy.proxy import mode_specs
from mitmproxy.utils import asyncio_utils


log = logging.getLogger("qwen")

CLOSE_WAIT_S = 5.0  # a listener's socket is normally gone within milliseconds
QUEUE_WAIT_S = 1.0  # the drain: how long asyncio may take to accept what the kernel queued (none, out of descriptors)
HANDOFF_TURNS = 8  # turns of the loop from asyncio's accept to mitmproxy's handler (task, transport, protocol, handler)
POLL_S = 0.01


def bind_loopback_by_default(opts) -> bool:
    """mitmproxy listens on every interface unless told; the gateway listens on loopback unless
    --listen-host or a mode's @host says otherwise. True when every listener is then on 127.0.0.1."""
    if opts.listen_host != "":
        return False
    modes = []
    for spec in opts.mode:
        mode = mode_specs.ProxyMode.parse(spec)
        port = mode.listen_port(opts.listen_port)
        if mode.custom_listen_host is None and port is not None and not isinstance(mode, mode_specs.LocalMode):
            spec = f"{spec.split('@', 1)[0]}@127.0.0.1:{port}"
        modes.append(spec)
    if modes != list(opts.mode):
        opts_before = list(opts.mode)
        opts.update(mode=modes)
        # Scripts load after mitmproxy has begun starting its listeners: start them again on loopback.
        # Once mitmproxy is running, its own `configure` restarts them for the mode just set.
        ps = ctx.master.addons.get("proxyserver")
        if ps is not None and not ps.is_running:
            wanted = [mode_specs.ProxyMode.parse(m) for m in modes]
            quiet = QuietMove([m for m in map(mode_specs.ProxyMode.parse, opts_before) if m not in wanted])
            try:
                asyncio_utils.create_task(quiet.during(move(ps.servers, wanted)), name="qwen: listen on loopback",
                                          keep_ref=True)
            except RuntimeError:  # no event loop (unit tests): listeners start later with the new modes
                quiet.remove()
    listeners = [m for m in map(mode_specs.ProxyMode.parse, modes) if not isinstance(m, mode_specs.LocalMode)]
    return bool(listeners) and all(m.custom_listen_host == "127.0.0.1" for m in listeners)


class QuietMove(logging.Filter):
    """Leaves out mitmproxy's lines about the listeners being moved to loopback (`… listening at *:8080.`,
    `… at *:8080 stopped.`: mode_servers.ServerInstance.start/stop), from when the move is decided until
    it has ended. Any other line of that logger (an error binding the loopback port) still shows."""

    LOGGER = "mitmproxy.proxy.mode_servers"

    def __init__(self, moved: list[mode_specs.ProxyMode]) -> None:
        super().__init__()
        self.moved = {m.description for m in moved}
        logging.getLogger(self.LOGGER).addFilter(self)

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        for description in self.moved:
            rest = text.removeprefix(description + " ")
            if rest != text and _on_every_interface(rest):
                return False
        return True

    async def during(self, work: Awaitable[bool]) -> bool:
        try:
            return await work
        finally:
            self.remove()

    def remove(self) -> None:
        logging.getLogger(self.LOGGER).removeFilter(self)


class QuietStop(QuietMove):
    """Leaves out mitmproxy's line for each listener the drain closes (`… at 127.0.0.1:8080 stopped.`)."""

    def __init__(self) -> None:
        super().__init__([])

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().endswith(" stopped.")


def _on_every_interface(rest: str) -> bool:
    """`listening at *:8080.` or `at *:8080 and *:8080 stopped.` (mitmproxy's words after the mode)."""
    addresses = rest.removeprefix("listening at ").removeprefix("at ").removesuffix(".").removesuffix(" stopped")
    if addresses == rest or not addresses:
        return False
    return all(a.startswith("*:") for a in addresses.split(" and "))


async def move(servers, wanted: list[mode_specs.ProxyMode]) -> bool:
    """Run exactly the `wanted` listeners (mitmproxy's `Servers`): those not wanted are stopped and their
    sockets closed before any new one binds the port they held."""
    # mitmproxy's own first start may still be binding (it holds the servers' lock): an update that
    # changes nothing waits for it, and then every listener it started has its sockets
    await servers.update([s.mode for s in servers])
    stale = [s for s in servers if s.mode not in wanted]
    if stale:
        closing = [sock for s in stale for sock in _closed_later(s)]
        await servers.update([s.mode for s in servers if s.mode in wanted])
        await _wait_closed(closing)
    return await servers.update(wanted)


def _closed_later(instance) -> list:
    """An instance's listening sockets that close after `close()` returns: mitmproxy_rs's UDP servers.
    (asyncio's TCP servers close their sockets at once; their `wait_closed` waits for every connection.)
    Private to mitmproxy: without it the move is as before, not broken."""
    return [s for s in getattr(instance, "_servers", ()) if not isinstance(s, asyncio.Server)
            and callable(getattr(s, "wait_closed", None))]


async def _wait_closed(sockets: Iterable) -> None:
    for sock in sockets:
        try:
            await asyncio.wait_for(sock.wait_closed(), CLOSE_WAIT_S)
        except Exception as e:  # the new bind then says what is wrong
            log.debug(f"qwen: a listener did not close: {e!r}")


async def stop_listening() -> None:
    """The drain's end: no new connection is taken, none accepted and then cut; those mitmproxy holds go on.
    The kernel drops what reaches the listening sockets from now on (a client's SYN is sent again a second later,
    and meets the port closed with the process), and what it had queued is accepted, then answered. Closing the
    sockets instead would reset the queued connections (their clients have sent their request), and, after an
    accept() storm, trip asyncio's paused accept over a closed socket. Where the kernel cannot (not Linux), the
    listeners are closed (their `Servers` told to run none)."""
    ps = ctx.master.addons.get("proxyserver")
    if ps is None:
        return
    listening = [sock for instance in ps.servers for server in getattr(instance, "_servers", ())
                 if isinstance(server, asyncio.Server) for sock in server.sockets]
    taken = [sock for sock in listening if _take_no_more(sock)]
    if listening and len(taken) == len(listening):
        for _ in range(int(QUEUE_WAIT_S / POLL_S)):  # asyncio accepts what is queued at its next turns
            if not select.select(taken, [], [], 0)[0]:
                break
            await asyncio.sleep(POLL_S)
        for _ in range(HANDOFF_TURNS):  # what it accepted reaches mitmproxy's handler (client_ids) in a few turns
            await asyncio.sleep(0)
        return
    quiet = QuietStop()  # the drain's lines say it: mitmproxy's `… at 127.0.0.1:8080 stopped.` would read as a crash
    await quiet.during(ps.servers.update([]))


class _Filter(ctypes.Structure):  # struct sock_filter: one classic BPF instruction
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _Program(ctypes.Structure):  # struct sock_fprog
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_Filter))]


_DROP = (_Filter * 1)(_Filter(0x06, 0, 0, 0))  # BPF_RET | BPF_K, 0: every packet dropped
SO_ATTACH_FILTER = 26  # Linux; elsewhere the close resets what is queued, as it always did


def _take_no_more(sock) -> bool:
    """The kernel drops what reaches a listening socket (a SYN, a handshake's last ACK): no connection is
    queued from now on. Linux only."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(_Program(1, _DROP)))
    except OSError:
        return False
    return True


class Ends(Protocol):
    """One of the gateway's own servers (the relay): until its connections in progress have ended."""

    async def ended(self) -> None: ...


async def close_clients(*own: Ends) -> int:
    """At shutdown (the gateway's `done`, before anything else stops): close every client connection
    mitmproxy holds and wait until their handlers have ended (at most CLOSE_WAIT_S), then until the
    connections mitmproxy had opened to the gateway's `own` loopback servers (the relay) have ended too.
    Their flows end while the gateway still runs (a stream cut short is recorded as such). Returns how
    many client connections were open."""
    ps = ctx.master.addons.get("proxyserver")
    connections: dict = ps.connections if ps is not None else {}
    handlers = list(connections.values())
    for handler in handlers:
        try:
            if handler.client in handler.transports:
                handler.close_connection(handler.client)
        except Exception as e:
            log.debug(f"qwen: could not close a client connection: {e!r}")
    # a handler leaves `connections` as its task ends; mitmproxy has no event for that moment (its
    # client_disconnected hook comes before the handler has closed the server side)
    for _ in range(int(CLOSE_WAIT_S / POLL_S)):
        if not connections:
            break
        await asyncio.sleep(POLL_S)
    for server in own:
        await server.ended()
    return len(handlers)


def client_ids() -> list[str]:
    """The TCP client connections mitmproxy holds: registered as their handler starts, before any hook."""
    master = getattr(ctx, "master", None)
    ps = master.addons.get("proxyserver") if master is not None else None
    return [cid for cid in ps.connections if isinstance(cid, str)] if ps is not None else []


def client_io(client_id: str):
    """mitmproxy's handler of a client connection and the connection's transport, while mitmproxy holds it."""
    ps = ctx.master.addons.get("proxyserver")
    handler = ps.connections.get(client_id) if ps is not None else None
    io = handler.transports.get(handler.client) if handler is not None else None
    return (handler, io) if io is not None else (None, None)


def close_left_open(client) -> bool:
    """From `client_disconnected`: close the client's socket if mitmproxy's ended handler left it open (a
    no-op for every connection mitmproxy closed itself). True if it was open."""
    _, io = client_io(client.id)
    writer = io.writer if io is not None else None
    if writer is None or writer.is_closing():
        return False
    writer.close()
    return True

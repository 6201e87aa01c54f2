"""Where mitmproxy listens (ingress/listeners.py): listeners nobody placed moved to loopback, with a model of
mitmproxy's UDP listener whose socket closes after `close()` returns; mitmproxy's lines about the move left
out; client connections closed at shutdown. The real processes: tests/e2e/test_e2e_terminal.py."""

from __future__ import annotations

import asyncio
import errno
import logging

import pytest
from mitmproxy.proxy import mode_specs
from mitmproxy.test import taddons

from qwen_gateway.ingress import listeners


PORT = 48080


STAR = mode_specs.ProxyMode.parse(f"reverse:https://portal.qwen.ai@{PORT}")


LOOPBACK = mode_specs.ProxyMode.parse(f"reverse:https://portal.qwen.ai@127.0.0.1:{PORT}")


class Udp:
    """Like mitmproxy_rs's UdpServer: `close()` asks; the socket goes a few turns of the loop later."""

    bound: set[int] = set()

    def __init__(self, port: int) -> None:
        if port in Udp.bound:
            raise OSError(errno.EADDRINUSE, f"Failed to bind UDP socket to 127.0.0.1:{port}")
        Udp.bound.add(port)
        self.port = port
        self._gone = asyncio.Event()

    def close(self) -> None:
        asyncio.get_running_loop().create_task(self._release())

    async def _release(self) -> None:
        for _ in range(3):
            await asyncio.sleep(0)
        Udp.bound.discard(self.port)
        self._gone.set()

    async def wait_closed(self) -> None:
        await self._gone.wait()


class Instance:
    def __init__(self, mode: mode_specs.ProxyMode) -> None:
        self.mode = mode
        self._servers: list = []


class Servers:
    """mitmproxy's `Servers.update` in brief: under one lock, stop the instances not wanted (closing
    without waiting, as `AsyncioServerInstance._stop` does), then start the new ones."""

    def __init__(self) -> None:
        self._instances: dict[mode_specs.ProxyMode, Instance] = {}
        self._lock = asyncio.Lock()
        self.errors: list[str] = []

    @property
    def is_updating(self) -> bool:
        return self._lock.locked()

    def __iter__(self):
        return iter(list(self._instances.values()))

    async def update(self, modes) -> bool:
        async with self._lock:
            new = {m: self._instances.get(m) or Instance(m) for m in modes}
            old, self._instances = self._instances, new  # before any await, as mitmproxy does
            for mode, inst in old.items():
                if mode not in new:
                    for s in inst._servers:
                        s.close()
                    inst._servers = []
            for inst in new.values():
                if not inst._servers:
                    await asyncio.sleep(0)  # binding takes a moment
                    try:
                        inst._servers = [Udp(PORT)]
                    except OSError as e:
                        self.errors.append(str(e))
            return not self.errors


@pytest.fixture
def servers():
    Udp.bound.clear()
    yield Servers()
    Udp.bound.clear()


async def test_restarting_at_once_fails_while_the_old_udp_socket_is_still_open(servers):
    """What mitmproxy's own restart did about one start in seven (the model makes it every time)."""
    await servers.update([STAR])
    assert not await servers.update([LOOPBACK])
    assert "Failed to bind UDP socket" in servers.errors[0]


async def test_the_move_waits_for_the_old_sockets_before_binding(servers):
    await servers.update([STAR])
    assert await listeners.move(servers, [LOOPBACK])
    assert servers.errors == [] and [i.mode for i in servers] == [LOOPBACK]


async def test_the_move_waits_for_mitmproxys_own_first_start(servers):
    first = asyncio.ensure_future(servers.update([STAR]))  # still binding when the gateway loads
    await asyncio.sleep(0)
    assert servers.is_updating
    assert await listeners.move(servers, [LOOPBACK])
    assert await first and servers.errors == [] and [i.mode for i in servers] == [LOOPBACK]


async def test_nothing_moves_when_the_listeners_are_already_wanted(servers):
    await servers.update([LOOPBACK])
    (before,) = list(servers)
    assert await listeners.move(servers, [LOOPBACK])
    assert list(servers) == [before] and servers.errors == []


# ---- which listeners move ----------------------------------------------------------------------------


def test_listeners_nobody_placed_move_to_loopback_and_placed_ones_stay():
    with taddons.context() as tctx:
        tctx.options.update(mode=["reverse:https://portal.qwen.ai", "regular@8081", "reverse:http://x@0.0.0.0:9000",
                                  "local"])
        assert not listeners.bind_loopback_by_default(tctx.options)  # one listener is on every interface, as asked
        assert tctx.options.mode == ["reverse:https://portal.qwen.ai@127.0.0.1:8080", "regular@127.0.0.1:8081",
                                     "reverse:http://x@0.0.0.0:9000", "local"]


def test_the_default_listener_ends_on_loopback_only():
    with taddons.context() as tctx:
        assert listeners.bind_loopback_by_default(tctx.options)
        assert tctx.options.mode == ["regular@127.0.0.1:8080"]


def test_listen_host_is_the_users_choice():
    with taddons.context() as tctx:
        tctx.options.update(listen_host="0.0.0.0")
        assert not listeners.bind_loopback_by_default(tctx.options)
        assert tctx.options.mode == ["regular"]


def test_local_mode_alone_listens_nowhere():
    with taddons.context() as tctx:
        tctx.options.update(mode=["local"])
        assert not listeners.bind_loopback_by_default(tctx.options) and tctx.options.mode == ["local"]


# ---- mitmproxy's lines about the move ------------------------------------------------------------------


def record(message: str) -> logging.LogRecord:
    return logging.LogRecord(listeners.QuietMove.LOGGER, logging.INFO, __file__, 1, message, None, None)


def test_the_moved_listeners_lines_are_left_out_while_the_move_runs():
    quiet = listeners.QuietMove([STAR])
    try:
        d = STAR.description
        assert not quiet.filter(record(f"{d} listening at *:{PORT}."))
        assert not quiet.filter(record(f"{d} at *:{PORT} and *:{PORT} stopped."))
        assert quiet.filter(record(f"{d} listening at 127.0.0.1:{PORT}."))  # the loopback one shows
        assert quiet.filter(record(f"{d} failed to listen at 127.0.0.1:{PORT}: in use"))  # errors show
        assert quiet.filter(record(f"other mode listening at *:{PORT}."))
        assert quiet in logging.getLogger(listeners.QuietMove.LOGGER).filters
    finally:
        quiet.remove()
    assert quiet not in logging.getLogger(listeners.QuietMove.LOGGER).filters


async def test_the_filter_goes_when_the_move_ends_even_if_it_fails():
    quiet = listeners.QuietMove([STAR])

    async def failing() -> bool:
        raise OSError("bind failed")

    with pytest.raises(OSError):
        await quiet.during(failing())
    assert quiet not in logging.getLogger(listeners.QuietMove.LOGGER).filters


# ---- shutdown ---------------------------------------------------------------------------------------


class Handler:
    """mitmproxy's connection handler in brief: `close_connection` ends it, it leaves `connections`."""

    def __init__(self, connections: dict, cid: str, *, fails: bool = False) -> None:
        self.client = object()
        self.transports = {self.client: object()}
        self.connections, self.cid, self.fails = connections, cid, fails
        connections[cid] = self

    def close_connection(self, client) -> None:
        if self.fails:
            raise ConnectionError("gone meanwhile")
        asyncio.get_running_loop().call_soon(self.connections.pop, self.cid)


class Relay:
    def __init__(self) -> None:
        self.waited = 0

    async def ended(self) -> None:
        self.waited += 1


async def test_close_clients_closes_every_connection_and_waits_for_its_own_servers():
    with taddons.context() as tctx:
        connections: dict = {}
        proxyserver = type("ProxyServer", (), {"connections": connections})()
        tctx.master.addons.get = lambda name: proxyserver if name == "proxyserver" else None  # type: ignore[method-assign]
        Handler(connections, "a")
        Handler(connections, "b")
        relay = Relay()
        assert await listeners.close_clients(relay) == 2
        assert connections == {} and relay.waited == 1


async def test_close_clients_goes_on_past_a_connection_that_cannot_be_closed(monkeypatch):
    monkeypatch.setattr(listeners, "CLOSE_WAIT_S", 0.05)
    with taddons.context() as tctx:
        connections: dict = {}
        proxyserver = type("ProxyServer", (), {"connections": connections})()
        tctx.master.addons.get = lambda name: proxyserver if name == "proxyserver" else None  # type: ignore[method-assign]
        Handler(connections, "stuck", fails=True)
        Handler(connections, "ok")
        assert await listeners.close_clients() == 2
        assert list(connections) == ["stuck"]  # waited a bounded time for it, not for ever


class _Client:
    id = "c1"


async def _left_open(tctx, *, closed_before: bool) -> tuple[bool, bytes]:
    """A client connection whose ended handler left its socket open (or closed it): what `close_left_open`
    says, and what the client's end reads then (b"" is the end of the connection)."""
    import socket
    ours, theirs = socket.socketpair()
    _, writer = await asyncio.open_connection(sock=ours)
    client = _Client()
    handler = type("Handler", (), {"client": client, "transports": {client: type("IO", (), {"writer": writer})()}})()
    proxyserver = type("ProxyServer", (), {"connections": {client.id: handler}})()
    tctx.master.addons.get = lambda name: proxyserver if name == "proxyserver" else None  # type: ignore[method-assign]
    if closed_before:
        writer.close()
    said = listeners.close_left_open(client)
    await asyncio.sleep(0)  # the transport closes its socket on the next turn
    await asyncio.sleep(0)
    theirs.settimeout(2)
    try:
        return said, theirs.recv(10)
    finally:
        theirs.close()


async def test_a_socket_an_ended_handler_left_open_is_closed():
    with taddons.context() as tctx:
        assert await _left_open(tctx, closed_before=False) == (True, b"")


async def test_a_socket_mitmproxy_closed_is_left_alone():
    with taddons.context() as tctx:
        assert await _left_open(tctx, closed_before=True) == (False, b"")


def test_a_client_mitmproxy_no_longer_holds_is_left_alone():
    with taddons.context() as tctx:
        proxyserver = type("ProxyServer", (), {"connections": {}})()
        tctx.master.addons.get = lambda name: proxyserver if name == "proxyserver" else None  # type: ignore[method-assign]
        assert listeners.close_left_open(_Client()) is False

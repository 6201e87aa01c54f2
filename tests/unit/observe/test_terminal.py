"""What the terminal shows, in unit tests: the listeners' move to loopback (a model of mitmproxy's UDP
listener, whose socket closes after `close()` returns), credentials out of every log record (mitmproxy's
protocol debug prints raw bytes as their repr), and the line of a flow the gateway lets pass. The real
processes: tests/e2e/test_e2e_terminal.py."""

from __future__ import annotations

import asyncio
import errno
import logging
import time

import pytest
from mitmproxy import flow as mflow
from mitmproxy.proxy import mode_specs
from mitmproxy.test import tflow

from qwen_gateway.ingress import listeners
from qwen_gateway.observe import terminal
from qwen_gateway.observe.requestlog import format_passed
from qwen_gateway.redact import redact_log

# ---- the listeners' move ------------------------------------------------------------------------------

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


# ---- credentials out of every log line ------------------------------------------------------------------

RAW = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer sk-unique-0123456789\r\n"
       b"Cookie: session=sess-abcdef\r\nx-api-key: ak-zyxwvu\r\nProxy-Authorization: Basic dXNlcjpwdw==\r\n"
       b"api-key: azure-key-1\r\nContent-Length: 2\r\n\r\n{}")
SECRETS = ("sk-unique-0123456789", "sess-abcdef", "ak-zyxwvu", "dXNlcjpwdw==", "azure-key-1")


@pytest.mark.parametrize("text", [
    f"[127.0.0.1:5000]   >> DataReceived(client, {RAW!r})",  # mitmproxy's proxy_debug: the bytes' repr
    RAW.decode(),  # raw text
    "headers=[(b':method', b'POST'), (b'authorization', b'Bearer sk-unique-0123456789'), (b'cookie', "
    "b'session=sess-abcdef'), (b'x-api-key', b'ak-zyxwvu'), (b'proxy-authorization', b'Basic dXNlcjpwdw=='), "
    "(b'api-key', b'azure-key-1')]",  # HTTP/2 header pairs
], ids=["repr", "raw", "h2-pairs"])
def test_secret_headers_are_redacted_in_every_form(text):
    clean = redact_log(text)
    assert not [s for s in SECRETS if s in clean], clean
    assert "Host: 127.0.0.1" in clean or ":method" in clean  # the rest is left as it was
    assert "Content-Length: 2" in clean or ":method" in clean


def test_lines_without_secrets_are_unchanged():
    for line in ("GET /v1/models route=models 200 total=0ms", "no authorization header was sent",
                 "reverse proxy to https://portal.qwen.ai listening at 127.0.0.1:8080.",
                 "401 error=invalid_api_key 'This gateway requires one of its client keys (Authorization: Bearer KEY…'"):
        assert redact_log(line) == line


def test_the_filter_redacts_each_record_once_and_keeps_clean_ones_as_they_are():
    calls = []

    class Counting(logging.Handler):
        def emit(self, record):
            calls.append(self.format(record))

    logger = logging.getLogger("test.terminal")
    logger.propagate = False
    handlers = [Counting(), Counting()]
    for h in handlers:
        h.addFilter(terminal.REDACTING)
        logger.addHandler(h)
    try:
        logger.warning("%s sent %r", "client", RAW)
        logger.warning("plain %s", "line")
    finally:
        for h in handlers:
            logger.removeHandler(h)
    assert len(calls) == 4 and calls[0] == calls[1] and calls[2] == calls[3] == "plain line"
    assert "<redacted>" in calls[0] and not [s for s in SECRETS if s in calls[0]]


def test_the_filter_goes_on_every_handler_of_the_root_logger_once():
    h = logging.NullHandler()
    root = logging.getLogger()
    root.addHandler(h)
    try:
        terminal.keep_secrets_out_of_logs()
        terminal.keep_secrets_out_of_logs()
        assert h.filters.count(terminal.REDACTING) == 1
    finally:
        root.removeHandler(h)


# ---- the line of a flow the gateway lets pass -------------------------------------------------------------

def _passed(url: str, status: int | None = 200, error: str | None = None, connected: bool = True):
    f = tflow.tflow(resp=status is not None)
    f.request.url = url
    f.request.timestamp_start = time.time() - 0.042
    if status is not None:
        f.response.status_code = status
        f.response.timestamp_end = f.request.timestamp_start + 0.042
    if error is not None:
        f.error = mflow.Error(error)
        f.error.timestamp = f.request.timestamp_start + 0.003
    f.server_conn.timestamp_start = f.server_conn.timestamp_tcp_setup = time.time() if connected else None
    if error is not None and not connected:
        f.server_conn.timestamp_start = time.time()  # tried
    return f


def test_a_passed_flow_shows_method_url_without_query_status_and_time():
    f = _passed("http://example.com/page?api_key=query-secret")
    f.request.headers["authorization"] = "Bearer header-secret-1234"
    assert format_passed(f) == "GET http://example.com/page passed 200 total=42ms"
    assert format_passed(_passed("https://[::1]:8443/x", 204)) == "GET https://[::1]:8443/x passed 204 total=42ms"


def test_a_passed_flow_that_failed_shows_the_error():
    refused = _passed("http://127.0.0.1:9/x?token=t", None, "[Errno 111] Connect call failed", connected=False)
    assert format_passed(refused) == ("GET http://127.0.0.1:9/x passed 502 total=3ms "
                                      "error='[Errno 111] Connect call failed'")
    cut = _passed("http://example.com/big", None, "Client disconnected.")
    assert format_passed(cut) == "GET http://example.com/big passed ? total=3ms error='Client disconnected.'"


def test_a_flow_the_gateway_refused_to_pass_says_so():
    refused = _passed("http://example.com/x", 403, connected=False)
    assert format_passed(refused) == "GET http://example.com/x refused 403 total=42ms"


def test_a_flow_the_fence_killed_gets_no_pass_line():
    assert format_passed(_passed("http://example.com/", None, mflow.Error.KILLED_MESSAGE)) is None

"""What the terminal shows (observe/terminal.py), in unit tests: credentials out of every log record (mitmproxy's
protocol debug prints raw bytes as their repr), and the line of a flow the gateway lets pass. The listeners' move
to loopback: tests/unit/ingress/test_listeners.py; redact_log itself: tests/unit/test_redact.py. The real
processes: tests/e2e/test_e2e_terminal.py."""

from __future__ import annotations

import logging
import time

from mitmproxy import flow as mflow
from mitmproxy.test import tflow

from qwen_gateway.observe import terminal
from qwen_gateway.observe.requestlog import format_passed

# ---- credentials out of every log line ------------------------------------------------------------------

RAW = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer sk-unique-0123456789\r\n"
       b"Cookie: session=sess-abcdef\r\nx-api-key: ak-zyxwvu\r\nProxy-Authorization: Basic dXNlcjpwdw==\r\n"
       b"api-key: azure-key-1\r\nContent-Length: 2\r\n\r\n{}")
SECRETS = ("sk-unique-0123456789", "sess-abcdef", "ak-zyxwvu", "dXNlcjpwdw==", "azure-key-1")


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

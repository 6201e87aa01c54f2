"""A pytest plugin that runs mitmproxy's own tests over the installed mitmproxy with every seam of the gateway
installed on it (tests/repo/test_seams_upstream.py): `-p mitmproxy_with_seams`, this folder on PYTHONPATH.

With QWEN_SEAMS_INSTALL=1 each seam is installed where the gateway installs it, for every master a test makes:
the hook dispatch on every AddonManager (every addon counted as mitmproxy's, so that the gateway's dispatch, not
mitmproxy's, runs each test's own addons: seams/addon_chain.py), the message checks, the HTTP/1 head bound
(at its default limit), mitmproxy's 413 past body_size_limit (with no answer of the
gateway's: mitmproxy's own passes through), the server connect (asyncio's own `open_connection` behind it), the WebSocket
message bound (every WebSocket counted as the gateway's, at the default limit), the terminal log's output (every
TermLogHandler's), and — when a master
runs — the loop's exception handler (loop_reports) and, for mitmdump's and mitmweb's masters, the SIGTERM
handler (shutdown_signals, calling `master.shutdown` as the drain does at its end). Without it nothing is
installed: the baseline run. Either way mitmproxy is imported from where it is installed before pytest puts a
checkout's root on sys.path (a checkout has mitmproxy's source beside its tests), and QWEN_SEAMS_REPORT names
a file that receives which mitmproxy ran and what was installed."""

from __future__ import annotations

import asyncio
import json
import logging
import os

import mitmproxy
from mitmproxy import addonmanager, http, master, version

INSTALL = os.environ.get("QWEN_SEAMS_INSTALL") == "1"
installed: list[str] = []


def _install() -> None:
    from qwen_gateway.log_tally import LogTally
    from mitmproxy.addons import termlog

    from qwen_gateway.seams import (addon_chain, body_limit, hook_dispatch, http1_heads, loop_reports,
                                    message_checks, server_connect, shutdown_signals, terminal_log,
                                    websocket_messages)

    addon_chain.others = lambda addons: []  # type: ignore[assignment]
    init = addonmanager.AddonManager.__init__

    def with_dispatch(self, m) -> None:
        init(self, m)
        if not hook_dispatch.install(self):
            raise RuntimeError("the hook dispatch did not install")
    addonmanager.AddonManager.__init__ = with_dispatch  # type: ignore[method-assign]
    installed.append("hook_dispatch")

    if not message_checks.WRITTEN.fits():
        raise RuntimeError("the message checks do not fit this mitmproxy")
    http.MessageData.__post_init__ = message_checks._post_init  # type: ignore[method-assign]
    installed.append("message_checks")

    if not http1_heads.install(http1_heads.Limit()):
        raise RuntimeError("the head bound does not fit this mitmproxy")
    installed.append("http1_heads")
    # installed with no answer of the gateway's: mitmproxy's own error responses pass through the seam unchanged
    if not body_limit.install(b""):
        raise RuntimeError("the 413 past body_size_limit does not fit this mitmproxy")
    installed.append("body_limit")

    if not server_connect.install(lambda *a, **kw: asyncio.open_connection(*a, **kw)):
        raise RuntimeError("the server connect does not fit this mitmproxy")
    installed.append("server_connect")

    # every WebSocket counted as the gateway's, so that each test's messages go through the seam's relay
    if not websocket_messages.install(websocket_messages.Bound(owns=lambda flow: True)):
        raise RuntimeError("the WebSocket message bound does not fit this mitmproxy")
    installed.append("websocket_messages")

    # every terminal log's output the gateway's (as the addon's load gives mitmdump's and mitmweb's)
    if not terminal_log.WRITTEN.fits():
        raise RuntimeError("the terminal log's output does not fit this mitmproxy")
    handler_init = termlog.TermLogHandler.__init__

    def with_output(self, out=None) -> None:
        handler_init(self, out)
        self.file = terminal_log.DroppingOutput(self.file)
    termlog.TermLogHandler.__init__ = with_output  # type: ignore[method-assign]
    installed.append("terminal_log")

    running, done = master.Master.running, master.Master.done
    storms: dict[int, loop_reports.AcceptStorms] = {}

    async def with_handlers(self) -> None:
        await running(self)
        loop = asyncio.get_running_loop()
        storms[id(self)] = loop_reports.AcceptStorms(LogTally(logging.getLogger("qwen")))
        if not storms[id(self)].install(loop):
            raise RuntimeError("the loop's reports do not fit this mitmproxy")
        shutdown_signals.install(self, self.shutdown)  # mitmdump's and mitmweb's masters only

    async def at_exit(self) -> None:
        await done(self)
        if id(self) in storms:
            storms.pop(id(self)).at_exit(asyncio.get_running_loop())
    master.Master.running, master.Master.done = with_handlers, at_exit  # type: ignore[method-assign]
    if not (loop_reports.WRITTEN.fits() and shutdown_signals.WRITTEN.fits()):
        raise RuntimeError("the loop's reports or the SIGTERM handler do not fit this mitmproxy")
    installed.extend(["loop_reports", "shutdown_signals"])


if INSTALL:
    _install()


def pytest_configure(config) -> None:
    report = os.environ.get("QWEN_SEAMS_REPORT")
    if report:
        with open(report, "w") as f:
            json.dump({"mitmproxy": version.VERSION, "from": os.path.dirname(mitmproxy.__file__ or ""),
                       "installed": installed}, f)

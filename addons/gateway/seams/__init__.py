"""Every place the gateway changes how mitmproxy or asyncio behave, in one folder (docs/architecture.md#seams).

Each seam replaces or stands in front of one piece of mitmproxy's code, so each is right only for the code it
was read against: it names that code with a digest of its source (fingerprint.py) and installs only over that
code. On any other — a newer or older mitmproxy, a patched one, another addon's replacement — it refuses with
one log line saying what the gateway does without it, and the gateway goes on.

- `hook_dispatch.py`: an event enters only the addons that have its hook, each hook called without mitmproxy's
  machinery around it (the gateway's own AddonManager).
- `server_connect.py`: mitmproxy's server connect reaches the gateway's in-process servers (the relay).
- `http1_heads.py`: request heads bounded inside mitmproxy's HTTP/1 server layer (qwen_max_header_kb).
- `body_limit.py`: mitmproxy's own 413 past body_size_limit answered in JSON, not its HTML page.
- `websocket_messages.py`: the Responses WebSocket's messages bounded inside mitmproxy's WebSocket layer
  (qwen_max_body_mb), refused as they are read.
- `loop_reports.py`: the event loop's reports of accept() storms tallied, and of connection handlers
  cancelled at exit dropped.
- `shutdown_signals.py`: SIGTERM handed to the drain.
- `terminal_log.py`: a log line mitmproxy's terminal log cannot write dropped and counted, never an exit.
- `message_checks.py`: a message's fields type-checked without an exception for each one that is None.
- `collector.py`: the process's start-up heap frozen out of the garbage collector's passes (not mitmproxy's
  code: no digest).

Each module's docstring says why the seam exists and which change to mitmproxy would remove it. The seams are
part of the core: any outer package may call them (ingress/hostile.py, turn/in_process.py, the addon's `load`); they
import nothing but the core.
"""

from __future__ import annotations

import importlib

SEAMS = ("hook_dispatch", "server_connect", "http1_heads", "body_limit", "loop_reports", "shutdown_signals",
         "message_checks", "websocket_messages", "terminal_log")  # those with mitmproxy code named (collector.py has none)


def software() -> dict:
    """The gateway's version, mitmproxy's, and the seams this process left out (`/health`'s `software`, and
    `qwen-gateway --version`, in a process where none was asked to install: as the code is)."""
    from importlib.metadata import PackageNotFoundError, version

    from mitmproxy import version as mitmproxy_version

    from .fingerprint import WRITTEN_AGAINST

    try:
        gateway = version("qwen-gateway")
    except PackageNotFoundError:  # run from a checkout that was never installed
        gateway = "unknown"
    return {"gateway": gateway, "mitmproxy": mitmproxy_version.VERSION,
            "seams": {"written_against": WRITTEN_AGAINST, "left_out": left_out()}}


def left_out() -> dict[str, list[str]]:
    """The seams this process left out, each with the named code that differed when it decided (one not yet asked
    to install: as its code is now)."""
    from . import fingerprint

    out = {}
    for name in SEAMS:
        written = importlib.import_module(f"{__name__}.{name}").WRITTEN
        found = fingerprint.decided.get(written.seam)
        names = found if found is not None else [code.partition(":")[2] for code in written.differing()]
        if names:
            out[name] = names
    return out


def differing() -> dict[str, list[str]]:
    """Each seam's named mitmproxy code that differs from what it was written against (empty: it fits)."""
    out = {}
    for name in SEAMS:
        written = importlib.import_module(f"{__name__}.{name}").WRITTEN
        out[name] = [code.partition(":")[2] for code in written.differing()]
    return out

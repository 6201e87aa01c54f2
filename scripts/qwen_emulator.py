"""Qwen emulator: a real HTTP server speaking Qwen's OAuth device flow and chat API, offline.

Try the whole product without a Qwen account:

    .venv/bin/python scripts/qwen_emulator.py --port 9999 --api-key sk-demo
    .venv/bin/qwen-auth add-key demo --base-url http://127.0.0.1:9999/v1 --key-env DEMO_KEY
    DEMO_KEY=sk-demo .venv/bin/mitmdump -s addons/qwen.py --mode reverse:https://portal.qwen.ai -p 8080

Chat answers are deterministic ("Echo: <your last message>", tool calls when tools are given).
Admin API under /_emulator/ (switches, fault, requests, stats, tokens, approve/deny/expire, reset):
see scripts/emulator/server.py and docs/emulator.md.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import emulator  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port")
    ap.add_argument("--port-file", help="write the port number here once listening")
    ap.add_argument("--api-key", action="append", default=[], help="an API key the chat API accepts (repeatable)")
    ap.add_argument("--seed-token", action="append", default=[], help="an OAuth access token it accepts")
    ap.add_argument("--quiet", action="store_true", help="no per-request log lines")
    a = ap.parse_args(argv)
    handle = emulator.start(a.host, a.port, quiet=a.quiet, api_keys=a.api_key, seed_tokens=a.seed_token)
    print(f"Qwen emulator listening on {handle.url}", flush=True)
    if a.port_file:
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(handle.port))
        os.replace(tmp, a.port_file)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    handle.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

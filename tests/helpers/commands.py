"""The gateway's commands (`qwen-keys`, `qwen-auth`, `qwen-usage`) run as a user runs them, forked by the fork
server that has imported the command's module when it can (tests/helpers/forkclient.py): a new process spends
0.3–0.9 s of CPU importing, and a run of the suite starts ~500 of them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers import forkclient

MODULES = {"qwen-keys": "qwen_gateway.cli.keys", "qwen-auth": "qwen_gateway.cli.auth",
           "qwen-usage": "qwen_gateway.cli.usage"}  # what each console script imports first


def run(argv: list, *, env: dict[str, str] | None = None, timeout: float = 60,
        cwd: str | Path | None = None) -> subprocess.CompletedProcess:
    """`subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd,
    stdin=DEVNULL)`, argv[0] one of the commands (its path in the venv's bin/)."""
    program = Path(argv[0])
    return forkclient.run([sys.executable, str(program), *map(str, argv[1:])], modules=(MODULES[program.name],),
                          env=dict(os.environ) if env is None else env, timeout=timeout,
                          cwd=None if cwd is None else str(cwd))

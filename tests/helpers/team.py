"""The team gateway's tests: a key account on the emulator, `qwen-keys` run as the real command, clients."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from helpers import commands, forkclient
from helpers.home import CODING_PLAN, Home
from helpers.procs import BIN, ROOT, until  # noqa: F401  (the tests take it from here)

QWEN_KEYS = BIN / "qwen-keys"
QWEN_USAGE = BIN / "qwen-usage"


def team_env(tmp_path: Path, emu, name: str = "team") -> dict[str, str]:
    """A state folder with one key account on the emulator (as `qwen-auth add-key` writes it)."""
    home = Home(tmp_path / name, emu)
    home.key("emu", path=CODING_PLAN, default_model="qwen3-coder-plus")
    return home.env()


def qwen_keys(env: dict[str, str], *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    r = commands.run([QWEN_KEYS, *args], env={**os.environ, **env})
    if ok:
        assert r.returncode == 0, r.stdout + r.stderr
    return r


def add_key(env: dict[str, str], name: str, *limits: str) -> str:
    """A new key: the last line `qwen-keys add` prints."""
    out = qwen_keys(env, "add", name, *limits).stdout
    key = out.strip().splitlines()[-1]
    assert key.startswith("sk-qg-") and len(key) > 40, out
    return key


def openai_client(url: str, key: str):
    import openai
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=30)


ANTHROPIC_PYTHON = ROOT / ".tools" / "anthropic-venv" / "bin" / "python"
ANTHROPIC_DRIVER = ROOT / "tests" / "clients" / "anthropic_python.py"
ANTHROPIC_IMPORTS = ("base64", "json", "struct", "zlib", "anthropic")  # the driver's first lines, in order
NO_ANTHROPIC = "anthropic SDK not installed (scripts/install-test-tools.sh installs it into .tools/anthropic-venv)"
MESSAGE = {"model": "claude-sonnet-4-6", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}


def anthropic_calls(url: str, key: str, calls: list[dict]) -> list[dict]:
    """The anthropic SDK (tests/clients/anthropic_python.py `calls`): each call's answer or the error it raised."""
    return anthropic_run(url, key, calls)["result"]


def anthropic_run(url: str, key: str, calls: list[dict], max_retries: int = 0) -> dict:
    """`anthropic_calls` with the SDK's own retries, and every HTTP exchange it made ("http": status and the
    rate-limit headers of each answer)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_") and "PROXY" not in k.upper()}
    env.update(ANTHROPIC_BASE_URL=url, ANTHROPIC_API_KEY=key)
    args = json.dumps({"calls": calls, "max_retries": max_retries})
    r = anthropic_driver(["calls", args], env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def anthropic_driver(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """`python anthropic_python.py ARGS` (stdin empty, output captured as text, 120 s at most): forked by a fork
    server that has imported the SDK (~2.5 s of each run) when it can (tests/helpers/forkclient.py)."""
    return forkclient.run([str(ANTHROPIC_PYTHON), str(ANTHROPIC_DRIVER), *args], modules=ANTHROPIC_IMPORTS, env=env,
                          timeout=120)

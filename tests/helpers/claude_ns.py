"""A network namespace for Claude Code: tests/helpers/netns.py's World, where api.anthropic.com also resolves
to a loopback address (127.0.0.4) on which a fake origin counts every connection that reaches it, and gateways
that record every request they receive (tests/helpers/flowlog.py) and every exchange (the debug log).

`ClaudeWorld.claude(...)` runs the real `claude` binary (npm @anthropic-ai/claude-code, installed into .tools/
by scripts/install-test-tools.sh) inside the namespace with a throwaway HOME and working folder, stdin from
/dev/null, a minimal environment, and a time limit.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from helpers.netns import ROOT, NsGateway, World, namespace_unavailable

ANTHROPIC_ADDRESS = "127.0.0.4"  # what api.anthropic.com resolves to inside the namespace
CLAUDE_VERSION = "2.1.328"
CLAUDE = ROOT / ".tools" / "node_modules" / ".bin" / "claude"
FLOWLOG_ADDON = ROOT / "tests" / "helpers" / "flowlog.py"
INSTALL = f"scripts/install-test-tools.sh installs @anthropic-ai/claude-code@{CLAUDE_VERSION} into .tools/"


@functools.cache
def claude_unavailable() -> str | None:
    """Why the pinned Claude Code cannot run here (None: it can)."""
    if not CLAUDE.exists():
        return f"Claude Code not installed ({INSTALL})"
    try:
        with tempfile.TemporaryDirectory() as home:
            r = subprocess.run([str(CLAUDE), "--version"], capture_output=True, text=True, timeout=60,
                               stdin=subprocess.DEVNULL, env={"PATH": os.environ.get("PATH", ""), "HOME": home,
                                                              "DISABLE_AUTOUPDATER": "1"})
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"Claude Code does not run here: {e}"
    if r.returncode != 0 or not r.stdout.startswith(CLAUDE_VERSION):
        return f"Claude Code {CLAUDE_VERSION} expected, `claude --version` said {(r.stdout + r.stderr).strip()!r}"
    return None


class ClaudeWorld(World):
    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.ns.hosts["api.anthropic.com"] = ANTHROPIC_ADDRESS
        self.anthropic_log = workdir / "anthropic-origin.log"
        self.runs = 0

    def start(self) -> "ClaudeWorld":
        super().start()
        try:
            self._origin(self.anthropic_log, f"{ANTHROPIC_ADDRESS}:443", f"{ANTHROPIC_ADDRESS}:80")
        except BaseException:
            self.stop()
            raise
        return self

    # ---- gateways that record what they receive ----

    def recording_gateway(self, name: str, mode: str, *args: str) -> NsGateway:
        flowlog = self.workdir / name / "flows.jsonl"
        return self.gateway(name, mode, args=["-s", FLOWLOG_ADDON, "--set", f"test_flowlog={flowlog}",
                                              "--set", "qwen_debug_log=true", "--set", "qwen_debug_log_count=1000",
                                              *args])

    def anthropic_connections(self) -> list[str]:
        """Every connection the fake api.anthropic.com accepted so far."""
        return self.anthropic_log.read_text().splitlines() if self.anthropic_log.exists() else []

    def mark_all(self, gw: NsGateway) -> dict:
        return {"openai": len(self.origin_connections()), "anthropic": len(self.anthropic_connections()),
                "conn": len(gw.connections()), "flows": len(flows(gw)), "logs": set(debug_files(self))}

    def leaks_since(self, gw: NsGateway, mark: dict) -> list[str]:
        """Since `mark`: connections either fake origin accepted, and upstream connections mitmproxy opened
        to anything but the gateway's own relay (the engine talks to Qwen itself, never through mitmproxy)."""
        time.sleep(0.5)  # the fake origins log from their own process
        return (self.origin_connections()[mark["openai"]:] + self.anthropic_connections()[mark["anthropic"]:]
                + [f"mitmproxy -> {c}" for c in gw.connections()[mark["conn"]:] if c != "relay"])

    def exchanges(self, mark: dict, count: int, path: str = "/v1/messages", timeout: float = 15) -> list[dict]:
        """The debug-log records of the exchanges since `mark` whose request URL contains `path`, oldest
        first, once there are at least `count` (the debug log writes each one from a thread after it ended)."""
        deadline = time.monotonic() + timeout
        while True:
            records = [json.loads((self.state / "logs" / n).read_text())
                       for n in sorted(set(debug_files(self)) - mark["logs"])]
            found = [r for r in records if path in (r.get("client_request") or {}).get("url", "")]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.1)

    # ---- Claude Code ----

    def claude(self, prompt: str, *flags: str, env: dict[str, str], timeout: int = 120, again: Path | None = None
               ) -> tuple[subprocess.CompletedProcess, float, Path]:
        """One `claude -p PROMPT FLAGS…` in a fresh HOME and working folder (or those of the run whose working
        folder is `again`: `--continue` goes on with its session): (process, seconds, working folder)."""
        self.runs += 1
        run = again.parent if again is not None else self.workdir / f"claude-{self.runs}"
        (run / "home").mkdir(parents=True, exist_ok=again is not None)
        (run / "work").mkdir(exist_ok=again is not None)
        base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "HOME": str(run / "home"),
                "CI": "1", "DISABLE_AUTOUPDATER": "1"}
        start = time.monotonic()
        r = self.ns.run([CLAUDE, "-p", prompt, *flags], timeout=timeout, env={**base, **env}, cwd=str(run / "work"))
        return r, time.monotonic() - start, run / "work"


def flows(gw: NsGateway) -> list[dict]:
    """Every request the gateway received so far (tests/helpers/flowlog.py), in the order they ended."""
    path = gw.workdir / "flows.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def debug_files(world: World) -> list[str]:
    logs = world.state / "logs"
    return [p.name for p in logs.glob("exchange-*.json")] if logs.exists() else []


def stream_json(r: subprocess.CompletedProcess) -> list[dict]:
    """The events of `--output-format stream-json` (one JSON object a line)."""
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]


def model_calls(events: list[dict]) -> list[str]:
    """The ids of the distinct assistant messages Claude Code received (one per model call), in order."""
    ids: list[str] = []
    for e in events:
        if e.get("type") == "assistant" and e["message"]["id"] not in ids:
            ids.append(e["message"]["id"])
    return ids


def answered_ids(exchange: dict) -> list[str]:
    """The message id(s) the gateway answered an exchange with (whole or in its stream's message_start)."""
    body = (exchange.get("client_response") or {}).get("body") or {}
    if "json" in body:
        return [body["json"].get("id")]
    ids = []
    for line in body.get("text", "").splitlines():
        if line.startswith("data: ") and '"message_start"' in line:
            ids.append(json.loads(line[6:])["message"]["id"])
    return ids


def _world(tmp_path_factory):
    reason = namespace_unavailable() or claude_unavailable()
    if reason:
        pytest.skip(reason)
    w = ClaudeWorld(tmp_path_factory.mktemp("claude-world")).start()
    yield w
    w.stop()


@pytest.fixture(scope="module")
def claude_world(tmp_path_factory):
    yield from _world(tmp_path_factory)


@pytest.fixture(scope="module")
def reverse_gw(claude_world):
    """The recommended mode: Claude Code's ANTHROPIC_BASE_URL points at it."""
    gw = claude_world.recording_gateway("reverse", "reverse:https://portal.qwen.ai")
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def proxy_gw(claude_world):
    """The explicit proxy (mitmdump's regular mode): an unchanged Claude Code reaches it through HTTPS_PROXY."""
    gw = claude_world.recording_gateway("explicit", "regular")
    yield gw
    gw.stop()

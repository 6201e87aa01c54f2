"""Every shell block of README.md and docs/*.md runs exactly as printed, and the sample outputs shown next to
them are what the commands really print.

How commands run (tests/helpers/sandbox.py): in a private network namespace — its own loopback, so the
ports the docs print (8080, 8081, 9999) are used as printed, meet no other program, and nothing reaches
the network — with a fresh HOME, the repository as working folder and .venv/bin on PATH (as after
`source .venv/bin/activate`). One bash per test keeps variables and background jobs between the blocks of
a walk-through, as a terminal does. Each command is run on its own (so a failure names it) and must exit
0; every command has a time bound. The project's Python programs in .venv/bin (mitmdump, qwen-auth...) are
forked by the session's fork servers, the same processes without ~2 s of imports each
(tests/helpers/forkshim.py says how, and what differs).

- A server shown in the foreground (mitmdump, mitmweb, qwen-gateway, scripts/gateway.sh, the emulator)
  runs until Ctrl-C: the test starts it in the background instead, waits until its ports answer, runs the
  checks, then sends SIGINT (Ctrl-C) and expects it to exit 0.
- Commands that cannot run here are listed in NOT_RUN with the reason and reported as skipped tests, one
  per command (`test_not_run`). Nothing is left out silently.
- A value the docs leave to you is given by the test and listed in GIVEN (e.g. `$KEY`).

How outputs are compared (`expect`): line by line, after the test's temporary HOME is written as
`/home/you` and the repository's folder as `/home/you/qwen-gateway` (the docs' imaginary user). These vary
and match any value of their kind: clock times (12:34, 12:34:56, 12:34:56.789), dates (2026-11-22),
durations (4ms, 1.20s, 0.01 s), the device login's user code (8 letters and digits) and the gateway's and
mitmproxy's versions in `/health`'s `software`. Runs of spaces
match runs of spaces and runs of dashes match runs of dashes, so a table may be wider or narrower when a
varying value is. Everything else must be equal: ports (the docs' own, see above), token counts (the
emulator's usage and the tiktoken estimate are deterministic), request counts, states, messages. When
background processes share the terminal, each one's lines are compared in their own order (`sources`):
how they interleave with the foreground's depends on timing.

Every non-shell block in the docs is either a sample checked by a test here (SAMPLES) or listed in
NOT_OUTPUT with the reason it is not a command's output.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from helpers import forkshim, sandbox
from helpers.docker import docker_daemon, gateway_image, postgres_image  # noqa: F401  (fixtures: deploy.md)
from helpers.sandbox import ROOT, Shell

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]  # a walk-through starts several processes

DOC_FILES = ["README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))]
SHELL_LANGS = {"bash", "sh", "shell"}  # `console` blocks are transcripts ($ command, then its output)

# ---- the docs' blocks ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    file: str
    line: int  # of the opening fence
    lang: str
    text: str

    @property
    def is_shell(self) -> bool:
        return self.lang in SHELL_LANGS

    @property
    def commands(self) -> list[str]:
        """Logical commands: backslash continuations, quotes spanning lines and here-documents (`<<'EOF'` …
        `EOF`) joined; comment-only lines dropped."""
        out, cur, heredoc = [], "", None
        for line in self.text.splitlines():
            cur = f"{cur}\n{line}" if cur else line
            if heredoc is not None:
                if line.strip() != heredoc:
                    continue
                out.append(cur)
                cur, heredoc = "", None
                continue
            if cur.rstrip().endswith("\\"):
                continue
            opened = re.search(r"<<-?\s*(['\"]?)(\w+)\1", without_comment(line))
            if opened:
                heredoc = opened.group(2)
                continue
            try:
                words = shlex.split(cur, comments=True)
            except ValueError:  # a quote still open: the command goes on
                continue
            if words:
                out.append(cur)
            cur = ""
        assert not cur and heredoc is None, f"{self.file}:{self.line}: unfinished command {cur!r}"
        return out

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}"


def read_blocks(file: str) -> list[Block]:
    lines = (ROOT / file).read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = re.match(r"^(\s*)```(\S*)\s*$", lines[i])
        if m:
            indent, lang, start = m.group(1), m.group(2), i
            body = []
            i += 1
            while i < len(lines) and lines[i].strip() != "```":
                body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
                i += 1
            blocks.append(Block(file, start + 1, lang, "\n".join(body)))
        i += 1
    return blocks


ALL_BLOCKS = [b for f in DOC_FILES for b in read_blocks(f)]


class Exact(str):
    """An anchor that is a block's whole text (a plain string anchor is a piece of it)."""


def matches(b: Block, anchor: str) -> bool:
    return b.text == anchor if isinstance(anchor, Exact) else anchor in b.text


def block(file: str, anchor: str) -> Block:
    """The one block of `file` that the anchor names."""
    found = [b for b in ALL_BLOCKS if b.file == file and matches(b, anchor)]
    assert len(found) == 1, f"{file}: {len(found)} blocks contain {anchor!r}"
    return found[0]


# ---- what does not run, and what the test gives ------------------------------------------------------

NOT_RUN: list[tuple[str, str, str]] = [  # (file pattern, command pattern, reason)
    (r"README\.md|docs/deploy\.md", r"^docker build -t qwen-gateway \.$", "its base, python:3.13-slim, comes from Docker Hub, "
     "which is unreachable here; docs/deploy.md's next block builds the same Dockerfile on the local Debian base, "
     "and test_deploy_container runs it"),
    (r"docs/deploy\.md", r"^sudo bash scripts/docker-base\.sh$", "makes the Debian base image as root: the docker "
     "tests' session runs the same script when the image is missing (tests/helpers/docker.py), CI in "
     "scripts/install-test-tools.sh"),
    (r"docs/deploy\.md", r"^kubectl ", "needs a Kubernetes cluster, and there is none here (`kubectl apply "
     "--dry-run=client` needs one too); tests/repo/test_deploy_manifest.py validates the manifest against Kubernetes' "
     "schemas and the gateway"),
    (r"docs/observability\.md", r"^sudo\b", "installs the dashboard into a Grafana, which cannot be installed here "
     "(not in Debian, no internet); tests/e2e/test_e2e_dashboard.py runs every panel's query in a real Prometheus"),
    (r".*", r"^sudo\b", "runs as root through sudo and changes this machine (firewall rules, groups)"),
    (r".*", r"^iptables\b", "changes this machine's firewall rules (needs root)"),
    (r".*", r"^(systemctl|journalctl|loginctl) ",
     "talks to your real systemd user manager (it would start or change a service on this machine); the unit "
     "itself is verified by tests/unit/cli/test_service.py"),
    (r"README\.md|docs/accounts\.md", r"(^|/)qwen-auth (login|add (?!-))",
     "a device login at the real chat.qwen.ai needs a person and the Qwen service (docs/emulator.md's login "
     "against the emulator runs here)"),
    (r"README\.md", r"^bash scripts/test\.sh", "the test suite itself (this test is part of it)"),
    (r"docs/clients\.md", r"\b(node app\.mjs|python app\.py)\b",
     "app.mjs / app.py stand for the reader's own program; these recipes run with real openai-node, "
     "openai-python and Agents SDK clients in tests/e2e/test_e2e_node.py, test_e2e_agents.py, test_e2e_transparent.py"),
    (r"docs/clients\.md", r"^sg qwen-gateway\b",
     "runs in the qwen-gateway group, which only the `sudo groupadd` line above (not run) creates; "
     "tests/e2e/test_e2e_transparent.py runs mitmdump in that group inside its own namespace"),
    (r"docs/deploy\.md", r"(qwen-gateway|qwen-usage) .*--?(set qwen_)?state.url",
     "needs the PostgreSQL server the section sets up (db.internal); tests/e2e/test_e2e_shared_state.py starts two "
     "gateways with this option and runs qwen-usage --state-url against a real PostgreSQL"),
    (r"docs/keys\.md", r"(qwen-keys migrate|qwen-gateway) .*postgresql://qwen@db\.internal",
     "needs the PostgreSQL server of docs/deploy.md (db.internal); tests/e2e/test_e2e_keys_move.py moves keys to a "
     "real PostgreSQL and back with `qwen-keys migrate` and starts gateways on it"),
    (r"docs/deploy\.md", r"mitmdump -s addons/qwen\.py --mode reverse:https://portal\.qwen\.ai@127\.0\.0\.1:808[12]",
     "a gateway in the background on the PostgreSQL server the section sets up (db.internal); "
     "tests/e2e/test_e2e_deploy.py starts two this way (on free ports) behind Debian's nginx with the page's nginx block"),
    (r"docs/accounts\.md", r"^(vllm serve|python -m sglang\.launch_server) ",
     "starts a real inference server on a GPU, and there is neither here; the emulator plays both servers' 2026 "
     "releases with these flags (docs/emulator.md) and tests/e2e/test_e2e_selfhosted_2026.py drives them"),
    (r".*", r"scripts/bench(_tokens)?\.py",
     "a benchmark: minutes of CPU on the shared cores, and its figures are measurements, not fixed output"),
    (r"docs/performance\.md", r"scripts/bench_doctor_shapes\.py",
     "a benchmark under valgrind: minutes of CPU on the shared cores, and its figures are measurements, not fixed "
     "output; tests/unit/cache/test_claude_shapes.py replays the same shapes through the gateway and the doctor"),
    (r"docs/performance\.md", r"scripts/record_claude_shapes\.py",
     "records a real Claude Code session in a network namespace (root, Claude Code in .tools/) and writes the shape "
     "file anew; tests/unit/cache/test_claude_shapes.py checks the shaping and the committed file"),
    (r"docs/performance\.md", r"scripts/record_codex_shapes\.py",
     "records a real Codex session through a real gateway (minutes, Codex in .tools/) and writes the shape file anew; "
     "tests/unit/cache/test_claude_shapes.py replays the committed one through the gateway and the doctor"),
]

CURL = shutil.which("curl")
if CURL is None:  # a fresh machine may lack it; the docs use it for one-off HTTP calls
    NOT_RUN.append((r".*", r"\bcurl\b", "curl is not installed here (Debian package `curl`)"))


def need_curl() -> None:
    if CURL is None:
        pytest.skip("curl is not installed here (Debian package `curl`): this walk-through uses it")


GIVEN = {  # values the docs leave to the reader, as the test sets them
    "KEY": "sk-sp-docs-test-key",  # docs/accounts.md: echo "$KEY" | qwen-auth add-key cp --preset coding-plan
}


def not_run_reason(b: Block, cmd: str) -> str | None:
    for file_pat, cmd_pat, reason in NOT_RUN:
        if re.fullmatch(file_pat, b.file) and re.search(cmd_pat, cmd.strip()):
            return reason
    return None


SERVER = re.compile(r"^((\S*/)?(mitmdump|mitmweb|qwen-gateway)(\s|$)|bash scripts/gateway\.sh(\s|$)|"
                    r"(\S*/)?python3? scripts/qwen_emulator\.py\s)")


def server_ports(cmd: str) -> list[int] | None:
    """The ports a server command (in the foreground or with `&`) listens on, or None when it is not one."""
    line = cmd.strip().removesuffix("&").strip()
    line = re.sub(r"\s+#.*$", "", line) if "#" in line else line
    if not SERVER.match(line) or re.search(r"install-service|--help|--version|exit status", line):  # (ends at once)
        return None
    words = shlex.split(line, comments=True)
    if "scripts/qwen_emulator.py" in line:
        return [int(words[words.index("--port") + 1])]
    ports = [int(words[words.index("-p") + 1])] if "-p" in words else [8080]
    if "mitmweb" in words[0] or (len(words) > 1 and words[1] == "mitmweb"):
        ports.append(8081)
    return ports


def without_comment(cmd: str) -> str:
    """The command without a trailing `# comment` (a `#` outside quotes that starts a word)."""
    quote, prev = "", " "
    for i, ch in enumerate(cmd):
        if quote:
            if ch == quote and (quote == "'" or cmd[i - 1] != "\\"):
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and prev.isspace():
            return cmd[:i].rstrip()
        prev = ch
    return cmd.rstrip()


def in_background(cmd: str) -> bool:
    return bool(re.search(r"&\s*(#.*)?$", cmd.strip()))


# ---- running -----------------------------------------------------------------------------------------


QUIET = re.compile(r"(^|\s)(-q|--quiet)(\s|$)")  # mitmdump's and mitmweb's: no start-up lines on the terminal


class Session:
    """A sandboxed shell for one test, with the servers it started in the foreground's place."""

    def __init__(self, tmp_path: Path, path: list[Path] = (), netns: bool = True,  # type: ignore[assignment]
                 **extra: str) -> None:
        problem = sandbox.namespace_problem() if netns else None
        if problem:
            pytest.skip(f"commands are run with the docs' own ports in a private network namespace: {problem}")
        self.home = tmp_path / "home"
        self.home.mkdir()
        env = sandbox.sandbox_env(self.home, **GIVEN, **extra)
        if path:  # programs the reader installed (clients): found before the project's .venv/bin
            env["PATH"] = ":".join([*map(str, path), env["PATH"]])
        # .venv/bin's Python programs forked, not exec'd (tests/helpers/forkshim.py): ~2 s less CPU per gateway
        shims = forkshim.shims(sandbox.VENV_BIN, sandbox.sandbox_env(Path(tempfile.gettempdir())))
        self.shell = Shell(self.home, env, netns=netns, shims=shims)
        self.servers: list[tuple[str, int]] = []  # (command, shell variable index)
        self.not_run: list[tuple[str, str]] = []

    def run(self, b: Block, *, stdin: dict[str, str] | None = None, timeout: float = 120,
            only: str | None = None) -> str:
        """Run a block command by command (or only its one command containing `only`); return everything the
        terminal showed meanwhile."""
        out, started = [], []
        announced: list[tuple[re.Pattern, int]] = []
        cmds = b.commands if only is None else [c for c in b.commands if only in c]
        assert cmds and (only is None or len(cmds) == 1), f"{b.id}: {only!r} names {len(cmds)} commands"
        for cmd in cmds:
            reason = not_run_reason(b, cmd)
            if reason:
                self.not_run.append((cmd, reason))
                continue
            given = next((v for k, v in (stdin or {}).items() if k in cmd), "")
            ports = server_ports(cmd)
            if ports is not None:
                announced += self._announces(cmd, ports)
            if ports is not None and in_background(cmd):
                started += ports  # as printed; the test waits for it at the end of the block
                ports = None
            if ports is None:
                text, failures = self.shell.run(cmd, stdin=given, timeout=timeout)
                out.append(text)
                assert not failures, f"{b.id}: {failures}\n--- output:\n{''.join(out)}"
                continue
            n = len(self.servers)
            # the one change to a printed command: a foreground server goes to the background (ended by Ctrl-C)
            text, failures = self.shell.run(f"{without_comment(cmd)} &\n__qwen_docs_server{n}=$!", stdin=given,
                                            settle=0.1)
            out.append(text)
            self.servers.append((cmd, n))
            for port in ports:
                out.append(sandbox.wait_port(self.shell, port))
            self._wait_announced(announced)
            text, failures = self.shell.run(":", settle=0.8)  # its start-up lines
            out.append(text)
        if started:  # servers the block started in the background: up before the next block, as a reader waits
            for port in started:
                out.append(sandbox.wait_port(self.shell, port))
            self._wait_announced(announced)
            out.append(self.shell.run(":", settle=0.8)[0])
        return "".join(out)

    def _announces(self, cmd: str, ports: list[int]) -> list[tuple[re.Pattern, int]]:
        """The line a gateway prints on the terminal once it listens (none when its output goes to a file, or
        for the emulator), with how many the terminal showed before: its start-up lines are the block's, even
        when a loaded machine prints them more than a settle's quiet after the port opened."""
        command = without_comment(cmd)
        if "scripts/qwen_emulator.py" in cmd or ">" in command or QUIET.search(command):
            return []
        line = re.compile(rf"listening at \S*:{ports[0]}\b")
        return [(line, len(line.findall(self.shell.text())))]

    def _wait_announced(self, announced: list[tuple[re.Pattern, int]]) -> None:
        end = time.monotonic() + 30
        while announced and time.monotonic() < end:
            text = self.shell.text()
            if all(len(line.findall(text)) > before for line, before in announced):
                break
            time.sleep(0.05)
        else:  # a line that never comes cost every run of the block 30 s (`mitmdump -q` prints none)
            assert not announced, f"no {[line.pattern for line, _ in announced]} on the terminal within 30 s"
        announced.clear()

    def expect(self, sample: Block, out: str, *, sources: tuple[str, ...] = (), wait: float = 15) -> None:
        """`expect(sample, out)`, once background processes have printed as many lines as the sample shows
        for them (they may come after the foreground is done: the request line waits for the estimate)."""
        deadline = time.monotonic() + wait
        want = _groups(sample.text.splitlines(), list(sources))
        while time.monotonic() < deadline:
            got = _groups(as_shown(out, self.home).splitlines(), list(sources))
            if all(len(got[i]) >= len(want[i]) for i in range(len(sources))):
                break
            out += self.shell.more()
        expect(sample, out, self.home, sources=sources)

    def stop_servers(self) -> str:
        """Ctrl-C for every server the test started in the foreground's place; each must exit 0."""
        out = []
        for cmd, n in reversed(self.servers):
            text, failures = self.shell.run(
                f'kill -INT "$__qwen_docs_server{n}"; wait "$__qwen_docs_server{n}"', timeout=30)
            out.append(text)
            assert not failures, f"{cmd!r} did not exit cleanly on Ctrl-C: {failures}\n{text}"
        self.servers.clear()
        return "".join(out)

    def sh(self, script: str, timeout: float = 60) -> str:
        """The test's own command (not from the docs), in the same shell."""
        text, failures = self.shell.run(script, timeout=timeout)
        assert not failures, f"{script!r}: {failures}\n{text}"
        return text

    def close(self) -> None:
        self.shell.close()


def _sessions(tmp_path, **kw):
    # set up .venv outside the namespace (it has no network), as the README's first commands do (setup.sh
    # keeps a stamp per variant: scripts/gateway.sh runs it without --test)
    for args in (["--test"], []):
        r = subprocess.run(["bash", "scripts/setup.sh", *args], cwd=ROOT, capture_output=True, text=True,
                           timeout=600)
        assert r.returncode == 0, r.stderr
    before = _repo_state()
    s = Session(tmp_path, **kw)
    yield s
    s.close()
    assert _repo_state() == before, "the documented commands changed files in the repository"


@pytest.fixture
def session(tmp_path):
    yield from _sessions(tmp_path)


def _repo_state() -> str:
    r = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    return r.stdout


# ---- comparing ---------------------------------------------------------------------------------------

VARYING = [  # what may differ between the docs and a run: (what, pattern in the sample, pattern it matches)
    ("clock time with ms", r"\d\d:\d\d:\d\d\.\d{3}", r"\d\d:\d\d:\d\d\.\d{3}"),
    ("date", r"\d{4}-\d\d-\d\d", r"\d{4}-\d\d-\d\d"),
    ("clock time", r"\d\d:\d\d(?::\d\d)?", r"\d\d:\d\d(?::\d\d)?"),
    ("duration", r"(?<![\w.])\d+(?:\.\d+)?(?:ms|s)(?![\w])", r"\d+(?:\.\d+)?(?:ms|s)"),
    ("duration", r"(?<![\w.])\d+\.\d\d s(?![\w])", r"\d+\.\d\d s"),
    ("device user code", r"(?<=user_code=)[A-Z0-9]{8}|(?<=User code: )[A-Z0-9]{8}", r"[A-Z0-9]{8}"),
    ("minutes left", r"(?<=expires in )\d+ min\b", r"\d+ min"),
    ("table rule", r"-{3,}", r"-+"),
    ("time left", r"(?<=in )(?:\d+ d )?(?:\d+ h )?\d+ min", r"(?:\d+ d )?(?:\d+ h )?\d+ min"),
    ("the gateway's and mitmproxy's versions in /health", r'(?<="gateway":")[^"]+|(?<="mitmproxy":")[^"]+',
     r"[0-9][\w.+-]*"),
]
_VARYING_RE = re.compile("|".join(f"(?P<v{i}>{p})" for i, (_, p, _) in enumerate(VARYING)))


def line_regex(sample: str) -> re.Pattern:
    parts, pos = [], 0

    def literal(text: str) -> str:
        return r"\s+".join(re.escape(w) for w in re.split(r"\s+", text)) if text.strip() else (
            r"\s+" if text else "")

    for m in _VARYING_RE.finditer(sample):
        parts.append(literal(sample[pos:m.start()]))
        parts.append("(?:" + VARYING[int(m.lastgroup[1:])][2] + ")")
        pos = m.end()
    parts.append(literal(sample[pos:]))
    return re.compile("".join(parts))


def as_shown(text: str, home: Path) -> str:
    """A run's output as the docs show it: the imaginary user's folders, no trailing spaces."""
    text = text.replace(str(ROOT), "/home/you/qwen-gateway").replace(str(home), "/home/you")
    return "\n".join(ln.rstrip() for ln in text.splitlines())


def _groups(lines: list[str], sources: list[str]) -> dict[int, list[str]]:
    groups: dict[int, list[str]] = {i: [] for i in range(len(sources) + 1)}
    for ln in lines:
        i = next((i for i, s in enumerate(sources) if re.match(s, ln)), len(sources))
        groups[i].append(ln)
    return groups


def expect(sample: Block | str, actual: str, home: Path, *, sources: tuple[str, ...] = ()) -> None:
    """The sample, line for line (see the module docstring for what may vary)."""
    want = (sample.text if isinstance(sample, Block) else sample).splitlines()
    got = as_shown(actual, home).splitlines()
    while got and not got[-1].strip():
        got.pop()
    where = sample.id if isinstance(sample, Block) else "sample"
    wg, gg = _groups([w.rstrip() for w in want], list(sources)), _groups(got, list(sources))
    for i in wg:
        w, g = wg[i], gg[i]
        source = sources[i] if i < len(sources) else "foreground"
        assert len(w) == len(g), (f"{where}: {len(w)} lines from {source} in the docs, {len(g)} in the run:\n"
                                  + "\n".join(g) + "\n--- docs:\n" + "\n".join(w))
        for wl, gl in zip(w, g, strict=True):
            assert line_regex(wl).fullmatch(gl), f"{where}: the docs show\n  {wl}\nthe run printed\n  {gl}"


GATEWAY = r"(\[\d\d:\d\d:\d\d\.\d{3}\]|qwen-gateway: )"
EMULATOR = r"Qwen emulator listening"


def test_the_comparison_can_fail(tmp_path):
    """`expect` is tolerant only of what it says: a count, a state or a port that differs is a failure."""
    sample = "demo     key   ok     -        -               1      http://127.0.0.1:9999/v1"
    expect(sample, "demo  key  ok  -  -  1  http://127.0.0.1:9999/v1", tmp_path)
    for wrong in ("demo  key  missing  -  -  1  http://127.0.0.1:9999/v1",
                  "demo  key  ok  -  -  0  http://127.0.0.1:9999/v1",
                  "demo  key  ok  -  -  1  http://127.0.0.1:9998/v1"):
        with pytest.raises(AssertionError):
            expect(sample, wrong, tmp_path)
    expect("[14:02:11.602] POST /v1/x 200 total=4ms", "[09:00:00.001] POST /v1/x 200 total=17ms", tmp_path)
    with pytest.raises(AssertionError):
        expect("[14:02:11.602] POST /v1/x 200 in=2 total=4ms", "[09:00:00.001] POST /v1/x 200 in=3 total=4ms",
               tmp_path)


# ---- README.md ---------------------------------------------------------------------------------------


def test_readme_gateway_command(session):
    cmd = block("README.md", "bash scripts/gateway.sh")
    assert cmd.commands == ["bash scripts/gateway.sh"]
    out = session.run(cmd)
    out += session.stop_servers()
    expect(block("README.md", "qwen: WARNING: no Qwen account is configured"), out, session.home,
           sources=(GATEWAY,))
    readme = (ROOT / "README.md").read_text()
    assert "mitmdump\nwith the addon in reverse mode on 127.0.0.1:8080" in readme


def test_readme_offline_walkthrough(session):
    need_curl()
    home = session.home
    out = session.run(block("README.md", "export DEMO_KEY=sk-demo"))
    session.expect(block("README.md", "Added key account demo"), out, sources=(GATEWAY, EMULATOR))
    out = session.run(block("README.md", "curl -s -w '\\n' http://127.0.0.1:8080/v1/embeddings"))
    session.expect(block("README.md", '{"error": {"message": "None of your usable Qwen accounts (demo)'), out,
                   sources=(GATEWAY,))
    out = session.run(block("README.md", "kill %1 %2; wait"))
    expect(block("README.md", "demo     key   dashscope  ok"), out, home)


def test_readme_service(session):
    out = session.run(block("README.md", "qwen-gateway install-service"))
    expect(block("README.md", "Wrote /home/you/.config/systemd/user/qwen-gateway.service."), out, session.home)


# ---- docs/service.md ---------------------------------------------------------------------------------


def test_service_dry_run(session):
    out = session.run(block("docs/service.md", "install-service --dry-run"))
    expect(block("docs/service.md", "# would write /home/you/.config/systemd/user/qwen-gateway.service:"), out,
           session.home)
    assert not (session.home / ".config" / "systemd").exists()


# ---- docs/emulator.md --------------------------------------------------------------------------------


def test_emulator_start(session):
    out = session.run(block("docs/emulator.md", "scripts/qwen_emulator.py --port 9999 --api-key sk-demo"))
    out += session.stop_servers()
    expect(block("docs/emulator.md", Exact("Qwen emulator listening on http://127.0.0.1:9999")), out, session.home)


def test_emulator_login_recipe(session):
    need_curl()
    home = session.home
    out = session.run(block("docs/emulator.md", "export QWEN_OAUTH_BASE_URL=http://127.0.0.1:9999"))
    session.expect(block("docs/emulator.md", "=== Qwen OAuth Device Authorization ==="), out,
                   sources=(GATEWAY, EMULATOR))
    out = session.run(block("docs/emulator.md", "\"content\": \"ping\"}]}'"))
    session.expect(block("docs/emulator.md", "gpt-4o→coder-model acct=default 200"), out, sources=(GATEWAY,))
    out = session.run(block("docs/emulator.md", "kill %1 %2; wait\n.venv/bin/qwen-auth status"))
    expect(block("docs/emulator.md", "default  oauth  dashscope  ok"), out, home)
    creds = json.loads((home / ".qwen" / "oauth_creds.json").read_text())
    assert creds["resource_url"] == "http://127.0.0.1:9999"


def test_emulator_web_account_recipe(session):
    """A Qwen Chat web account against the emulator, as printed: the session's cookies imported with
    `qwen-auth add-web`, one request through the gateway, and `qwen-auth status` in a shell without the
    variables still naming the emulator as the account's upstream (issue 32: it showed https://chat.qwen.ai)."""
    need_curl()
    out = session.run(block("docs/emulator.md", "export QWEN_WEB_BASE_URL=http://127.0.0.1:9999"))
    assert "Added web account chat: 9 qwen.ai cookies from the Netscape cookies.txt" in out, out
    assert "upstream http://127.0.0.1:9999." in out, out
    out = session.run(block("docs/emulator.md", "\"content\": \"hi\"}]}'"))
    session.expect(block("docs/emulator.md", "gpt-4o→qwen3.8-max acct=chat 200"), out, sources=(GATEWAY,))
    out = session.run(block("docs/emulator.md", "unset QWEN_WEB_BASE_URL QWEN_WEB_AUTH_BASE_URL"))
    expect(block("docs/emulator.md", "chat     web   qwenweb   disabled"), out, session.home)


# ---- docs/troubleshooting.md -------------------------------------------------------------------------


def test_troubleshooting_health(session):
    need_curl()
    session.sh(".venv/bin/qwen-gateway > /dev/null 2>&1 &")  # the section's precondition: a gateway, no account
    sandbox.wait_port(session.shell, 8080)
    out = session.run(block("docs/troubleshooting.md", "curl -s http://127.0.0.1:8080/health"))
    expect(block("docs/troubleshooting.md", '{"status":"degraded","accounts":[],"upstream":null,'), out,
           session.home)


# ---- docs/mitmweb.md ---------------------------------------------------------------------------------

MITMWEB_CHECK = r"""
import json, urllib.request, urllib.error
def get(path, password):
    req = urllib.request.Request('http://127.0.0.1:8081' + path, headers={'Authorization': 'Bearer ' + password})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, None
status, options = get('/options', 'docs-web-pass')
wrong = get('/options', 'wrong')[0]
with open(__file__ + '.out', 'w') as f:  # not the terminal: mitmweb writes its log lines there meanwhile
    f.write(f"right password: {status} columns: {','.join(options['web_columns']['value'])}\n")
    f.write(f"wrong password: {wrong}\n")
"""


def test_mitmweb_with_a_hashed_password(session):
    out = session.run(block("docs/mitmweb.md", "argon2.PasswordHasher().hash"),
                      stdin={"getpass": "docs-web-pass\n"})
    (session.home / "check.py").write_text(MITMWEB_CHECK)
    out += session.sh(f"{sys.executable} {session.home / 'check.py'}")
    out += session.stop_servers()
    checked = (session.home / "check.py.out").read_text().splitlines()
    assert checked == ["right password: 200 columns: tls,icon,path,method,status,size,time,comment",
                                    "wrong password: 403"], checked
    assert "web password: " in out  # the prompt (on stderr), then nothing about a plaintext password
    assert "plaintext password" not in out and "docs-web-pass" not in out, out


# ---- docs/accounts.md ---------------------------------------------------------------------------------

EMULATOR_UP = (".venv/bin/python scripts/qwen_emulator.py --port 9999 --quiet > /dev/null 2>&1 &\n"
               "export QWEN_OAUTH_BASE_URL=http://127.0.0.1:9999\n")


def _admin(path: str, body: dict) -> str:
    return (f"curl -s -o /dev/null -f -H 'Content-Type: application/json' -d '{json.dumps(body)}' "
            f"http://127.0.0.1:9999/_emulator/{path}")


def test_accounts_status_sample(session):
    """The situation the sample's caption describes, built with the documented commands against the emulator:
    two OAuth logins (`work` then runs out of quota), a stored DashScope key, a Coding Plan key whose
    variable is not set; four conversations through the gateway."""
    need_curl()
    home = session.home
    session.sh(EMULATOR_UP)
    sandbox.wait_port(session.shell, 9999)
    session.sh(_admin("switches", {"auto_approve": True}) + "\n"
               "qwen-auth login --no-qr > /dev/null 2>&1\n"
               "qwen-auth add work --no-qr > /dev/null 2>&1\n"
               "echo sk-docs-stored-key | qwen-auth add-key ds --base-url http://127.0.0.1:9999/compatible-mode/v1 "
               "--key-stdin > /dev/null\n"
               "qwen-auth add-key cp --preset coding-plan --key-env CODING_PLAN_KEY > /dev/null 2>&1\n"
               + _admin("tokens", {"access_token": "sk-docs-stored-key", "kind": "key"}))
    work = json.loads((home / ".qwen" / "oauth_creds_work.json").read_text())["access_token"]
    session.sh(_admin("fault", {"kind": "quota429", "token": work}) + "\n"
               "qwen-gateway > ~/gateway.log 2>&1 & gw=$!")
    sandbox.wait_port(session.shell, 8080)
    session.sh("for i in 1 2 3 4; do curl -s -o /dev/null http://127.0.0.1:8080/v1/chat/completions "
               "-d '{\"model\": \"gpt-4o\", \"messages\": [{\"role\": \"user\", \"content\": \"task '$i'\"}]}'; done\n"
               "kill $gw; wait $gw")  # four conversations (one conversation's turns would all go to its account)
    out = session.run(block("docs/accounts.md", "qwen-auth status "), only="qwen-auth status ")
    expect(block("docs/accounts.md", "ACCOUNT  KIND   PROVIDER   STATE         EXPIRES"), out, home)


def test_accounts_startup_sample(session):
    """A login whose refresh token the OAuth server refuses (so: needs_login, kept across restarts) and a key
    account whose variable is not set; the sample shows the gateway's start-up lines after "qwen: "."""
    need_curl()
    home = session.home
    session.sh(EMULATOR_UP)
    sandbox.wait_port(session.shell, 9999)
    creds = {"access_token": "at-expired", "refresh_token": "rt-unknown-to-the-server", "token_type": "Bearer",
             "resource_url": "portal.qwen.ai", "expiry_date": 1000}
    (home / ".qwen").mkdir(mode=0o700)
    (home / ".qwen" / "oauth_creds.json").write_text(json.dumps(creds, indent=2))
    session.sh("qwen-auth add-key ds --preset dashscope-intl --key-env DASHSCOPE_API_KEY > /dev/null 2>&1\n"
               "qwen-gateway > ~/first.log 2>&1 & gw=$!")
    sandbox.wait_port(session.shell, 8080)
    session.sh("curl -s -o /dev/null http://127.0.0.1:8080/v1/models\n"
               "curl -s -o /dev/null http://127.0.0.1:8080/v1/chat/completions "
               "-d '{\"model\": \"gpt-4o\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}'\n"
               "kill $gw; wait $gw\n"
               "qwen-gateway > ~/second.log 2>&1 & gw=$!")
    sandbox.wait_port(session.shell, 8080)
    # its port can open before mitmdump has loaded the addon (scripts load as the listeners start): the
    # start-up lines are waited for (at most 30 s), then Ctrl-C
    session.sh("for i in $(seq 300); do grep -q 'qwen: WARNING' ~/second.log && break; sleep 0.1; done\n"
               "kill $gw; wait $gw")
    stop = ("qwen: gateway stopped", "qwen: SIGTERM: draining", "qwen: drain: ")  # the `kill`'s lines
    lines = [ln.split("] qwen: ", 1)[1] for ln in (home / "second.log").read_text().splitlines()
             if "] qwen: " in ln and not any(s in ln for s in stop)]  # start-up lines only
    expect(block("docs/accounts.md", "account default (oauth): needs_login"), "\n".join(lines), home)


def test_accounts_remote_login(session):
    """The remote-login calls against a gateway started with --set qwen_remote_login=loopback, the emulator as
    OAuth server. `<device_code_id>` is the value the first call printed (the test puts it in)."""
    need_curl()
    session.sh(EMULATOR_UP + "qwen-gateway --set qwen_remote_login=loopback > ~/gateway.log 2>&1 &")
    sandbox.wait_port(session.shell, 9999)
    sandbox.wait_port(session.shell, 8080)
    b = block("docs/accounts.md", "/auth/initiate")
    first, second = b.commands
    assert "<device_code_id>" in second
    started = json.loads(session.sh(first))
    shown = json.loads(re.search(r"# -> (\{.*\})", b.text).group(1).replace(", ...}", "}").replace('"..."', '""'))
    assert set(shown) <= set(started), (shown, started)
    assert started["verification_uri_complete"].startswith("http://127.0.0.1:9999/authorize?")
    polled = json.loads(session.sh(second.replace("<device_code_id>", started["device_code_id"])))
    assert polled["status"] in ("pending", "success", "error") and polled["status"] == "pending", polled


# ---- docs/observability.md ----------------------------------------------------------------------------

OBSERVABILITY_CLIENT = r"""
import json, sys, time, urllib.request, urllib.error
import openai
log = sys.argv[1]
KEY = "sk-client-demo"
c = openai.OpenAI(base_url="http://127.0.0.1:8080/v1", api_key=KEY, max_retries=0)
seen = 0
def settle():  # the next request only once the gateway has logged this one: the lines keep their order
    global seen
    seen += 1
    end = time.monotonic() + 20
    while sum(" /v1/" in ln for ln in open(log).read().splitlines()) < seen and time.monotonic() < end:
        time.sleep(0.05)
def admin(path, body):
    urllib.request.urlopen(urllib.request.Request("http://127.0.0.1:9999/_emulator/" + path,
        data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}), timeout=10).read()
def raw(method, path, body=None, key=KEY):
    req = urllib.request.Request("http://127.0.0.1:8080" + path, data=body, method=method,
                                 headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.reason, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.reason, e.read().decode()
admin("switches", {"usage_cached_tokens": 1024})
system = {"role": "system", "content": "You answer questions about the Qwen gateway. " * 120}
ping = {"role": "user", "content": "ping"}
c.chat.completions.create(model="gpt-4o", messages=[system, ping]); settle()
list(c.chat.completions.create(model="gpt-4o", messages=[system, ping], stream=True,
                               stream_options={"include_usage": True})); settle()
admin("switches", {"usage_cached_tokens": 0})
c.responses.create(model="gpt-4o", input="ping"); settle()
status, reason, body = raw("POST", "/v1/chat/completions", json.dumps(
    {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "word " * 2000}]}).encode()); settle()
with open(log + ".guard", "w") as f:
    f.write(f"HTTP/1.1 {status} {reason}\n{body}\n")
admin("fault", {"kind": "context400"})
raw("POST", "/v1/chat/completions", json.dumps({"model": "gpt-4o", "messages": [ping]}).encode()); settle()
raw("POST", "/v1/chat/completions", b"{not json"); settle()
raw("POST", "/v1/chat/completions", json.dumps({"model": "gpt-4o", "messages": [ping]}).encode(),
    key="sk-wrong"); settle()
raw("POST", "/v1/chat/completion", b"{}"); settle()
raw("GET", "/v1/models"); settle()
with open(log + ".metrics", "w") as f:
    f.write(raw("GET", "/metrics")[2])
"""


def _transcript(b: Block) -> list[tuple[str, str]]:
    """An output block written as a session: `$ command` lines, each followed by what it printed."""
    parts: list[tuple[str, list[str]]] = []
    for ln in b.text.splitlines():
        if ln.startswith("$ "):
            parts.append((ln[2:], []))
        else:
            assert parts, f"{b.id}: output before the first `$ command`"
            parts[-1][1].append(ln)
    return [(cmd, "\n".join(lines).strip("\n")) for cmd, lines in parts]


def test_observability_samples(session):
    """docs/observability.md's samples, from one run: the emulator, a key account, a gateway with client keys
    and a context limit for gpt-4o-mini, and the requests the page names (OBSERVABILITY_CLIENT)."""
    home = session.home
    (home / "client.py").write_text(OBSERVABILITY_CLIENT)
    session.sh("export DEMO_KEY=sk-demo QWEN_GATEWAY_KEYS=sk-client-demo\n"
               ".venv/bin/python scripts/qwen_emulator.py --port 9999 --api-key \"$DEMO_KEY\" --quiet "
               "> /dev/null 2>&1 &\n"
               "qwen-auth add-key demo --base-url http://127.0.0.1:9999/v1 --key-env DEMO_KEY > /dev/null\n"
               "PYTHONUNBUFFERED=1 qwen-gateway --set qwen_context_limits=gpt-4o-mini=1000 > ~/gateway.log 2>&1 & gw=$!")
    sandbox.wait_port(session.shell, 9999)
    sandbox.wait_port(session.shell, 8080)
    session.sh(f"{sys.executable} ~/client.py ~/gateway.log")
    session.sh("kill $gw; wait $gw")
    lines = [ln for ln in (home / "gateway.log").read_text().splitlines() if " /v1/" in ln]
    forwarded, local = "\n".join(lines[:5]), "\n".join(lines[5:])
    expect(block("docs/observability.md", "gpt-4o→qwen3-coder-plus acct=demo 200 est=1.4k"), forwarded, home)
    expect(block("docs/observability.md", "route=unknown 404"), local, home)
    guard = (home / "gateway.log.guard").read_text()
    expect(block("docs/observability.md", "HTTP/1.1 400 Bad Request"), guard, home)
    scrape = (home / "gateway.log.metrics").read_text().splitlines()
    for ln in block("docs/observability.md", "qwen_requests_total{account=").text.splitlines():
        assert ln in scrape, f"docs/observability.md: {ln!r} is not in the scrape:\n" + "\n".join(
            x for x in scrape if not x.startswith("#"))
    for anchor in ("$ .venv/bin/qwen-usage\n", "$ .venv/bin/qwen-usage requests"):
        b = block("docs/observability.md", anchor)
        for cmd, shown in _transcript(b):
            expect(shown, session.sh(cmd), home)
    out = session.run(block("docs/observability.md", "qwen-usage report --since 7d"))  # the page of this run
    assert as_shown(out, home).strip() == "/home/you/usage-report.html", out
    assert "qwen3-coder-plus" in (home / "usage-report.html").read_text(encoding="utf-8")


# ---- docs/clients.md: every client's recipe, as printed ------------------------------------------------

TOOLS = ROOT / ".tools"
CLIENT_PATH = [TOOLS / "agents-venv" / "bin", TOOLS / "node_modules" / ".bin", TOOLS / "continue" / "node_modules" / ".bin"]
CLIENT_ENV = {  # the reader's machine, as far as the clients are concerned (GIVEN, for the client recipes)
    "NODE_PATH": str(TOOLS / "node_modules"),  # `npm install openai` in the reader's project
    "DISABLE_AUTOUPDATER": "1",  # Claude Code checks for a newer version at start; there is no network here
}
INSTALL = "scripts/install-test-tools.sh installs it"
# (anchor of a block in docs/clients.md, what it needs here: (path that must exist, why it is missing))
CLIENT_RECIPES = [
    ("require('openai')", [(TOOLS / "node_modules" / "openai" / "package.json", f"openai-node is not installed ({INSTALL})")]),
    ("from agents import Agent", [(TOOLS / "agents-venv" / "bin" / "python", f"the OpenAI Agents SDK is not installed ({INSTALL})")]),
    ("llm openai endpoint", [(ROOT / ".venv" / "bin" / "llm", "llm is not installed (bash scripts/setup.sh --test)")]),
    ('openai_base_url = "http://127.0.0.1:8080/v1"', [(TOOLS / "node_modules" / ".bin" / "codex", f"Codex CLI is not installed ({INSTALL})")]),
    ("[model_providers.qwen]", [(TOOLS / "node_modules" / ".bin" / "codex", f"Codex CLI is not installed ({INSTALL})")]),
    ("CODEX_CA_CERTIFICATE=", [(TOOLS / "node_modules" / ".bin" / "codex", f"Codex CLI is not installed ({INSTALL})")]),
    ("ANTHROPIC_BASE_URL=http://127.0.0.1:8080 ANTHROPIC_API_KEY=anything",
     [(TOOLS / "node_modules" / ".bin" / "claude", f"Claude Code is not installed ({INSTALL})")]),
    ("NODE_EXTRA_CA_CERTS=~/.mitmproxy/mitmproxy-ca-cert.pem ANTHROPIC_API_KEY=anything claude",
     [(TOOLS / "node_modules" / ".bin" / "claude", f"Claude Code is not installed ({INSTALL})")]),
    ("cn --config ~/.continue/qwen.yaml", [(TOOLS / "continue" / "node_modules" / ".bin" / "cn",
                                            f"Continue's CLI (@continuedev/cli) is not installed ({INSTALL})")]),
    ("SSL_CERT_FILE=~/.mitmproxy/mitmproxy-ca-cert.pem OPENAI_API_KEY=anything python", []),
]
CLIENTS = re.compile(r"(^|\s)(python|node|llm|codex|claude|cn|curl)\s")  # a block's commands that ask a client
# What a client prints when it did not get a plain answer: an error line, a tool the model called that failed.
CLIENT_TROUBLE = re.compile(r"ERROR|Traceback|Error:|error:|InputValidationError|failed to parse|Not logged in|"
                            r"Reconnecting|Tracing request failed|tool_use|tool call")
GATEWAY_LINE = re.compile(r"\[\d\d:\d\d:\d\d\.\d{3}\] [^\n]*\n?")


def client_lines(shown: str) -> str:
    """What the clients printed, the gateway's log lines taken out. A streaming client and the gateway share the
    terminal, so a line of the gateway's may be written anywhere in an answer: after `Echo: `, before its newline."""
    return GATEWAY_LINE.sub("", shown)


def test_a_gateway_line_written_inside_an_answer_leaves_the_answer_whole():
    line = "[01:34:40.518] POST /v1/chat/completions gpt-4o→qwen3-coder-plus acct=demo 200\n"
    for shown in (f"Echo: {line}say hello\n", f"Echo: say hello{line}\n", f"{line}Echo: say hello\n"):
        assert "Echo: say hello" in client_lines(shown).splitlines(), shown
    assert "Echo: say hello" not in client_lines(f"Echo: {line}say goodbye\n").splitlines()


DEMO_ACCOUNT = (".venv/bin/python scripts/qwen_emulator.py --port 9999 --api-key sk-demo --quiet > /dev/null 2>&1 &\n"
                "export DEMO_KEY=sk-demo\n"
                ".venv/bin/qwen-auth add-key demo --base-url http://127.0.0.1:9999/v1 --key-env DEMO_KEY > /dev/null\n")


@pytest.mark.parametrize(("anchor", "needs"), CLIENT_RECIPES, ids=[a[:40] for a, _ in CLIENT_RECIPES])
def test_client_recipe_runs_as_printed(tmp_path, anchor, needs):
    """One client recipe of docs/clients.md, every command as printed, against the README's offline emulator
    (its account added first, as the page says): each client prints the emulator's plain answer (`Echo: say
    hello`), and nothing of an error, a failed tool call or a retry."""
    missing = [why for path, why in needs if not path.exists()]
    if missing:
        pytest.skip("; ".join(missing))
    b = block("docs/clients.md", anchor)
    for s in _sessions(tmp_path, path=CLIENT_PATH, **CLIENT_ENV):
        s.sh(DEMO_ACCOUNT)
        sandbox.wait_port(s.shell, 9999)
        out = s.run(b, timeout=180)
        asked = [c for c in b.commands if CLIENTS.search(without_comment(c)) and "<<" not in c
                 and not re.search(r"\bcurl\b", c) and not_run_reason(b, c) is None]
        out += s.stop_servers()
        shown = as_shown(out, s.home)
        print(f"\n--- {b.id}:\n{shown}")
        answers = [ln for ln in client_lines(shown).splitlines() if ln.strip() == "Echo: say hello"]
        assert asked and len(answers) >= len(asked), f"{b.id}: a client printed no answer:\n{shown}"
        trouble = CLIENT_TROUBLE.search(shown)
        assert trouble is None, f"{b.id}: {trouble.group(0)!r}:\n{shown}"


CODEX_RECIPES = [a for a, needs in CLIENT_RECIPES if any("codex" in str(path) for path, _ in needs)]
NAMED_KEY = "$READER_KEY"  # what the reader of a team gateway puts where the recipe says `anything`


@pytest.mark.parametrize("anchor", CODEX_RECIPES, ids=[a[:40] for a in CODEX_RECIPES])
def test_codex_recipe_runs_with_a_named_key(tmp_path, anchor):
    """The Codex recipes on a team gateway (docs/keys.md): a named key made with `qwen-keys add`, given where the
    recipe says `anything`, as the page tells its reader. Codex must send it: every request then needs one.
    (Issue 51: `OPENAI_API_KEY=… codex exec --profile qwen` sent none, and Codex retried the 401 until it gave up.)"""
    codex = TOOLS / "node_modules" / ".bin" / "codex"
    if not codex.exists():
        pytest.skip(f"Codex CLI is not installed ({INSTALL})")
    b = block("docs/clients.md", anchor)
    assert "=anything " in b.text, f"{b.id}: the recipe no longer says where the key goes"
    given = Block(b.file, b.line, b.lang, b.text.replace("=anything ", f"={NAMED_KEY} "))
    for s in _sessions(tmp_path, path=CLIENT_PATH, **CLIENT_ENV):
        s.sh(DEMO_ACCOUNT)
        sandbox.wait_port(s.shell, 9999)
        s.sh("READER_KEY=$(.venv/bin/qwen-keys add reader | tail -n 1)")
        out = s.run(given, timeout=180)
        out += s.stop_servers()
        shown = as_shown(out, s.home)
        print(f"\n--- {b.id} with a named key:\n{shown}")
        assert any(ln.strip() == "Echo: say hello" for ln in client_lines(shown).splitlines()), \
            f"{b.id}: no answer:\n{shown}"
        trouble = CLIENT_TROUBLE.search(shown)
        assert trouble is None, f"{b.id}: {trouble.group(0)!r}:\n{shown}"


# ---- docs/keys.md -------------------------------------------------------------------------------------


def test_keys_walkthrough(session):
    """The team setup end to end, as printed: named keys made with qwen-keys, a gateway refusing a fourth
    request in a minute, an unknown key, a spent budget and a revoked key; then what each key spent."""
    need_curl()
    home = session.home
    out = session.run(block("docs/keys.md", "qwen-keys add alice --rpm 3"))
    session.expect(block("docs/keys.md", "Added key account demo: http://127.0.0.1:9999/v1"), out,
                   sources=(EMULATOR,))
    out = session.run(block("docs/keys.md", "for i in 1 2 3 4;"))
    expect(block("docs/keys.md", "200 200 200 429"), out, home)
    out = session.run(block("docs/keys.md", "qwen-keys revoke ci"))
    expect(block("docs/keys.md", "has used its daily budget"), out, home)
    out = session.run(block("docs/keys.md", "qwen-keys list\n.venv/bin/qwen-usage --by key"))
    expect(block("docs/keys.md", "NAME   STATE    TODAY"), out, home)
    # the gateway's log, whole once it stopped (the last block's `kill`)
    said = [ln[ln.index("qwen: named client keys:"):] for ln in (home / "gateway.log").read_text().splitlines()
            if "qwen: named client keys:" in ln]
    expect(block("docs/keys.md", "qwen: named client keys: 2 active"), "\n".join(said), home)


def test_keys_price_file_example(tmp_path):
    """The price file docs/keys.md shows is one the gateway reads, and prices what it says."""
    from qwen_gateway.pricing import prices

    f = tmp_path / "prices.json"
    f.write_text(block("docs/keys.md", '"coding": {"unit": "requests"}').text)
    table = prices.load(str(f))
    assert table.cost("payg:intl", "qwen3-coder-plus", {"prompt_tokens": 40_000, "completion_tokens": 0})[0] == \
        pytest.approx(40_000 * 1.8 / 1e6)
    assert table.cost("", "my-finetune", {"prompt_tokens": 1_000_000, "completion_tokens": 0}) == (0.5, "USD")
    assert table.cost("coding", "qwen3-coder-plus", {"prompt_tokens": 1, "completion_tokens": 1}) == (1.0, "requests")


# ---- docs/deploy.md: the container image and compose ------------------------------------------------------

DOCKER_GIVEN = {"DASHSCOPE_API_KEY": "sk-docs-test-dashscope"}  # the reader's key: no request is sent with it


def _docker_preconditions(ports: tuple[int, ...], names: dict[str, list[str]]) -> None:
    """Docker's daemon publishes ports on this machine's network, not a namespace of the test's: the docs'
    ports must be free here, and nothing of the docs' names may exist already (it would be the reader's)."""
    import socket

    from helpers.docker import docker

    for port in ports:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                pytest.skip(f"port {port} is in use on this machine: the documented commands publish the gateway there")
    for kind, found in names.items():
        for name in found:
            if docker(kind, "inspect", name, check=False).returncode == 0:
                pytest.skip(f"a Docker {kind} named {name} exists on this machine: the documented commands would use it")


def _ready(url: str) -> None:
    """The test's own wait between the docs' `docker run` and their readiness call ("once it has started")."""
    from helpers.procs import until

    def ready() -> bool:
        try:
            return httpx.get(url + "/health/readiness", trust_env=False, timeout=5).status_code == 200
        except httpx.TransportError:
            return False
    until(ready, f"{url} ready", limit=60, every=0.2)


@pytest.mark.timeout(1200)  # a bound: the images may be built first (40-80 s each, from nothing)
def test_deploy_container(tmp_path, docker_daemon, gateway_image):
    """The page's image build on the local base (behind this machine's TLS-inspecting proxy, as printed), a named
    key and an account in the state volume, the gateway in a container on 127.0.0.1:8080, its readiness, and a new
    container reading the key back after `docker rm`. On this machine's network (see `_docker_preconditions`);
    everything the commands made is removed after. (The session's image is built first: the page's build then
    finds every layer in Docker's cache, and leaves no build stage of its own behind.)"""
    need_curl()
    from helpers.docker import docker

    volumes = ["qwen-state", "qwen-logins", "qwen-certs"]
    _docker_preconditions((8080,), {"container": ["qwen-gateway"], "volume": volumes, "image": ["qwen-gateway"]})
    try:
        for s in _sessions(tmp_path, netns=False, **DOCKER_GIVEN):
            s.run(block("docs/deploy.md", "cp /etc/ssl/certs/ca-certificates.crt build-ca.pem"), timeout=900)
            s.run(block("docs/deploy.md", "docker run -d --name qwen-gateway"), timeout=120)
            _ready("http://127.0.0.1:8080")
            out = s.run(block("docs/deploy.md", "curl -s -w '\\n' http://127.0.0.1:8080/health/readiness"))
            expect(block("docs/deploy.md", Exact('{"status":"ready"}')), out, s.home)
            out = s.run(block("docs/deploy.md", "docker stop qwen-gateway && docker rm qwen-gateway"), timeout=120)
            expect(block("docs/deploy.md", "alice  active"), out, s.home)
    finally:
        docker("rm", "-f", "-v", "qwen-gateway", check=False)
        docker("volume", "rm", *volumes, check=False)
        docker("image", "rm", "qwen-gateway", check=False)  # the tag: its layers are the session's test image's
        for left in ("qwen-gateway.env", "build-ca.pem"):
            (ROOT / left).unlink(missing_ok=True)


@pytest.mark.timeout(1200)  # a bound: the images may be built first (40-80 s each, from nothing)
def test_deploy_compose(tmp_path, docker_daemon, gateway_image, postgres_image):
    """The page's compose walk-through as printed, without a registry: the environment files, PostgreSQL's image
    built from docker/postgres on the local base (the session's build of the same recipe makes it a cached one),
    the account, `up`, both gateways ready, `down`. The test gives the gateway's image by QWEN_GATEWAY_IMAGE (the
    session's: test_deploy_container builds the Dockerfile as printed) and a DASHSCOPE_API_KEY. On this
    machine's network; the project's containers, volumes, the image and the environment files are removed after."""
    need_curl()
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed (Debian package docker-compose: scripts/install-test-tools.sh)")
    from helpers.docker import docker

    project = re.sub(r"[^-_a-z0-9]", "", ROOT.name.lower())  # Compose v1's name for the checkout's folder
    _docker_preconditions((8081, 8082), {"container": [f"{project}_postgres_1", f"{project}_gateway-1_1",
                                                        f"{project}_gateway-2_1"],
                                         "volume": [f"{project}_{v}" for v in ("db", "state", "logins", "certs-1", "certs-2")],
                                         "image": ["qwen-gateway-postgres"]})
    images = {"QWEN_GATEWAY_IMAGE": gateway_image}
    try:
        for s in _sessions(tmp_path, netns=False, **DOCKER_GIVEN, **images):
            s.run(block("docs/deploy.md", 'echo "POSTGRES_PASSWORD=$password" > postgres.env'))
            s.run(block("docs/deploy.md", "-t qwen-gateway-postgres docker/postgres"), timeout=900)
            s.run(block("docs/deploy.md", "docker-compose up -d"), timeout=300)
            for port in (8081, 8082):
                _ready(f"http://127.0.0.1:{port}")
            out = s.run(block("docs/deploy.md", "curl -s -w '\\n' http://127.0.0.1:8081/health/readiness"))
            expect(block("docs/deploy.md", Exact('{"status":"ready"}\n{"status":"ready"}')), out, s.home)
            s.run(block("docs/deploy.md", Exact("docker-compose down")), timeout=120)
            assert docker("volume", "inspect", f"{project}_state", check=False).returncode == 0  # kept, as the page says
    finally:
        subprocess.run(["docker-compose", "down", "--volumes", "--remove-orphans"], cwd=ROOT, capture_output=True,
                       timeout=180, env={**os.environ, **images, "QWEN_POSTGRES_IMAGE": "qwen-gateway-postgres"})
        docker("image", "rm", "qwen-gateway-postgres", check=False)  # the tag: its layers are the session's image's
        for left in ("qwen-gateway.env", "postgres.env"):
            (ROOT / left).unlink(missing_ok=True)


# ---- docs/configuration.md ---------------------------------------------------------------------------


def test_configuration_fail_closed_sample(session):
    """A bad value and a misspelt name stop the gateway before it listens, one line each (ingress/startup.py)."""
    out = session.run(block("docs/configuration.md", "qwen-gateway --set qwen_upstream_keepalive=ten"))
    expect(block("docs/configuration.md", "qwen: the gateway cannot start: option qwen_upstream_keepalive"), out,
           session.home, sources=(GATEWAY,))


def test_configuration_routes_walkthrough(session):
    """qwen_routes as printed: a fast tier, an image and a long prompt routed, each on its request line; a rule
    the gateway cannot follow stops it (models/routes.py)."""
    need_curl()
    home = session.home
    out = session.run(block("docs/configuration.md", "--set qwen_routes=fast=qwen3.6-flash"))
    session.expect(block("docs/configuration.md", "Added key account demo: http://127.0.0.1:9999/v1"), out,
                   sources=(EMULATOR,))
    out = session.run(block("docs/configuration.md", "grep -o 'POST .*(route: [a-z-]*)' ~/gateway.log"),
                      timeout=120)
    expect(block("docs/configuration.md", "gpt-4o-mini→qwen3.6-flash (route: fast)\n"), out, home)
    out = session.run(block("docs/configuration.md", "qwen-gateway --set qwen_routes=long-context=qwen3-coder-plus"))
    expect(block("docs/configuration.md", "qwen: the gateway cannot start: qwen_routes:"), out, home,
           sources=(GATEWAY,))


def test_configuration_fallbacks_walkthrough(session):
    """qwen_fallbacks as printed: a model the emulator's key may not call answered by its group's next model, the
    model outside the catalogue named at start, the fallback on the request line (upstream/fallback.py)."""
    need_curl()
    out = session.run(block("docs/configuration.md", "--set qwen_fallbacks=qwen3-max=qwen4-max,Qwen/Qwen3-8B"))
    session.expect(block("docs/configuration.md", "Added key account ms: http://127.0.0.1:9999/v1"), out,
                   sources=(EMULATOR,))
    out = session.run(block("docs/configuration.md", "grep -o 'POST .*(fallback: [^)]*)' ~/gateway.log"), timeout=120)
    expect(block("docs/configuration.md", "qwen4-max\nqwen_fallbacks: "), out, session.home)


def test_the_prose_counts_what_the_request_line_above_it_shows():
    """A sentence that reads a request line ("counted 2 in and 3 out") says the line's own numbers (issue 82:
    the README said 8 out beside `out=3`)."""
    for doc in DOC_FILES:
        text = (ROOT / doc).read_text()
        for said in re.finditer(r"counted (\d+) in and (\d+) out", text):
            shown = re.findall(r" in=(\d+) out=(\d+) ", text[:said.start()])
            assert shown and shown[-1] == said.groups(), (doc, said.group(0), shown[-1:])


def test_configuration_lists_every_option_with_its_default():
    from qwen_gateway.settings import config

    declared: dict[str, object] = {}

    class Loader:
        def add_option(self, name, typespec, default, help, choices=None):  # noqa: A002 (mitmproxy's name)
            declared[name] = default

    config.declare(Loader())
    text = (ROOT / "docs" / "configuration.md").read_text()
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `(qwen_\w+)` \| [^|]+ \| ([^|]+) \|", text, re.M)}
    assert set(rows) == set(declared), (set(rows) ^ set(declared))
    for name, default in declared.items():
        shown = rows[name].strip()
        if isinstance(default, str) and default == "":
            continue  # the docs name the fallback (an environment variable or a path)
        if isinstance(default, list):
            want = ", ".join(f"`{d}`" for d in default) if default else "–"
        else:
            want = f"`{str(default).lower() if isinstance(default, bool) else default}`"
        assert shown == want, f"{name}: docs {shown!r}, code {want!r}"


def test_configuration_names_only_variables_the_code_reads():
    text = (ROOT / "docs" / "configuration.md").read_text()
    code = "\n".join(p.read_text() for d in ("addons", "scripts") for p in (ROOT / d).rglob("*.py"))
    for var in sorted(set(re.findall(r"`((?:QWEN|TIKTOKEN)_[A-Z_]+)`", text))):
        assert var in code, f"docs/configuration.md names {var}, which no code reads"


# ---- every other shell block, and what does not run ----------------------------------------------------

CHECKED_BY_SCENARIOS = {  # shell blocks the tests above run (with their samples)
    *(("docs/clients.md", anchor) for anchor, _ in CLIENT_RECIPES),
    ("README.md", "bash scripts/gateway.sh"), ("README.md", "export DEMO_KEY=sk-demo"),
    ("README.md", "curl -s -w '\\n' http://127.0.0.1:8080/v1/embeddings"), ("README.md", "kill %1 %2; wait"),
    ("README.md", "qwen-gateway install-service"),
    ("docs/service.md", "install-service --dry-run"),
    ("docs/emulator.md", "scripts/qwen_emulator.py --port 9999 --api-key sk-demo"),
    ("docs/emulator.md", "export QWEN_OAUTH_BASE_URL=http://127.0.0.1:9999"),
    ("docs/emulator.md", "\"content\": \"ping\"}]}'"),
    ("docs/emulator.md", "kill %1 %2; wait\n.venv/bin/qwen-auth status"),
    ("docs/emulator.md", "export QWEN_WEB_BASE_URL=http://127.0.0.1:9999"),
    ("docs/emulator.md", "unset QWEN_WEB_BASE_URL QWEN_WEB_AUTH_BASE_URL"),
    ("docs/emulator.md", "\"content\": \"hi\"}]}'"),
    ("docs/troubleshooting.md", "curl -s http://127.0.0.1:8080/health"),
    ("docs/mitmweb.md", "argon2.PasswordHasher().hash"),
    ("docs/accounts.md", "/auth/initiate"),
    ("docs/configuration.md", "--set qwen_routes=fast=qwen3.6-flash"),
    ("docs/configuration.md", "grep -o 'POST .*(route: [a-z-]*)' ~/gateway.log"),
    ("docs/configuration.md", "qwen-gateway --set qwen_routes=long-context=qwen3-coder-plus"),
    ("docs/configuration.md", "--set qwen_fallbacks=qwen3-max=qwen4-max,Qwen/Qwen3-8B"),
    ("docs/configuration.md", "grep -o 'POST .*(fallback: [^)]*)' ~/gateway.log"),
    ("docs/keys.md", "qwen-keys add alice --rpm 3"), ("docs/keys.md", "for i in 1 2 3 4;"),
    ("docs/keys.md", "qwen-keys revoke ci"), ("docs/keys.md", "qwen-keys list\n.venv/bin/qwen-usage --by key"),
    ("docs/observability.md", "qwen-usage report --since 7d"),
    ("docs/deploy.md", "cp /etc/ssl/certs/ca-certificates.crt build-ca.pem"),
    ("docs/deploy.md", "docker run -d --name qwen-gateway"),
    ("docs/deploy.md", "curl -s -w '\\n' http://127.0.0.1:8080/health/readiness"),
    ("docs/deploy.md", "docker stop qwen-gateway && docker rm qwen-gateway"),
    ("docs/deploy.md", 'echo "POSTGRES_PASSWORD=$password" > postgres.env'),
    ("docs/deploy.md", "-t qwen-gateway-postgres docker/postgres"), ("docs/deploy.md", "docker-compose up -d"),
    ("docs/deploy.md", "curl -s -w '\\n' http://127.0.0.1:8081/health/readiness"),
    ("docs/deploy.md", Exact("docker-compose down")),
}

SAMPLES = {  # non-shell blocks checked above: (file, anchor) -> the test that compares them
    ("docs/configuration.md", "qwen: the gateway cannot start: option qwen_upstream_keepalive"):
        "test_configuration_fail_closed_sample",
    ("docs/configuration.md", "Added key account demo: http://127.0.0.1:9999/v1"): "test_configuration_routes_walkthrough",
    ("docs/configuration.md", "gpt-4o-mini→qwen3.6-flash (route: fast)\n"): "test_configuration_routes_walkthrough",
    ("docs/configuration.md", "qwen: the gateway cannot start: qwen_routes:"): "test_configuration_routes_walkthrough",
    ("docs/configuration.md", "Added key account ms: http://127.0.0.1:9999/v1"): "test_configuration_fallbacks_walkthrough",
    ("docs/configuration.md", "qwen4-max\nqwen_fallbacks: "): "test_configuration_fallbacks_walkthrough",
    ("README.md", "qwen: WARNING: no Qwen account is configured"): "test_readme_gateway_command",
    ("README.md", "Added key account demo"): "test_readme_offline_walkthrough",
    ("README.md", '{"error": {"message": "None of your usable Qwen accounts (demo)'): "test_readme_offline_walkthrough",
    ("README.md", "demo     key   dashscope  ok"): "test_readme_offline_walkthrough",
    ("README.md", "Wrote /home/you/.config/systemd/user/qwen-gateway.service."): "test_readme_service",
    ("docs/service.md", "# would write /home/you/.config/systemd/user/qwen-gateway.service:"): "test_service_dry_run",
    ("docs/emulator.md", Exact("Qwen emulator listening on http://127.0.0.1:9999")): "test_emulator_start",
    ("docs/emulator.md", "=== Qwen OAuth Device Authorization ==="): "test_emulator_login_recipe",
    ("docs/emulator.md", "gpt-4o→coder-model acct=default 200"): "test_emulator_login_recipe",
    ("docs/emulator.md", "default  oauth  dashscope  ok"): "test_emulator_login_recipe",
    ("docs/emulator.md", "gpt-4o→qwen3.8-max acct=chat 200"): "test_emulator_web_account_recipe",
    ("docs/emulator.md", "chat     web   qwenweb   disabled"): "test_emulator_web_account_recipe",
    ("docs/troubleshooting.md", '{"status":"degraded","accounts":[]'): "test_troubleshooting_health",
    ("docs/accounts.md", "ACCOUNT  KIND   PROVIDER   STATE         EXPIRES"): "test_accounts_status_sample",
    ("docs/accounts.md", "account default (oauth): needs_login"): "test_accounts_startup_sample",
    ("docs/observability.md", "gpt-4o→qwen3-coder-plus acct=demo 200 est=1.4k"): "test_observability_samples",
    ("docs/observability.md", "route=unknown 404"): "test_observability_samples",
    ("docs/observability.md", "HTTP/1.1 400 Bad Request"): "test_observability_samples",
    ("docs/observability.md", "qwen_requests_total{account="): "test_observability_samples",
    ("docs/observability.md", "$ .venv/bin/qwen-usage\n"): "test_observability_samples",
    ("docs/observability.md", "$ .venv/bin/qwen-usage requests"): "test_observability_samples",
    ("docs/keys.md", "Added key account demo: http://127.0.0.1:9999/v1"): "test_keys_walkthrough",
    ("docs/keys.md", "200 200 200 429"): "test_keys_walkthrough",
    ("docs/keys.md", "has used its daily budget"): "test_keys_walkthrough",
    ("docs/keys.md", "NAME   STATE    TODAY"): "test_keys_walkthrough",
    ("docs/keys.md", "qwen: named client keys: 2 active"): "test_keys_walkthrough",
    ("docs/keys.md", '"coding": {"unit": "requests"}'): "test_keys_price_file_example",
    ("docs/deploy.md", Exact('{"status":"ready"}')): "test_deploy_container",
    ("docs/deploy.md", "alice  active"): "test_deploy_container",
    ("docs/deploy.md", Exact('{"status":"ready"}\n{"status":"ready"}')): "test_deploy_compose",
}

NOT_OUTPUT: dict[tuple[str, str], str] = {  # non-shell blocks that are no command's output: (file, anchor) -> why
    ("docs/admin-api.md", '"command": "add"'):
        "an add's answer abridged (the key and its record elided); tests/unit/cli/test_admin_api.py checks these "
        "fields of a real add, tests/e2e/test_e2e_admin_api.py on two gateways",
    ("docs/keys.md", '"code": "model_unpriced"'):
        "the refusal of an unpriced model to a key with a USD budget; tests/e2e/test_e2e_unpriced.py compares a real "
        "refusal's body with this block (the key's name and the model aside)",
    ("docs/keys.md", "qwen: the gateway cannot start: its state folder"):
        "a gateway's refusal on a database without the folder's keys; tests/e2e/test_e2e_keys_move.py finds its "
        "parts (the keys, qwen-keys migrate, the database) in a real gateway's log",
    ("docs/architecture.md", "client dialect (api/)"): "a diagram of the chat form between the outer packages",
    ("docs/observability.md", "qwen-usage [today|days|accounts|models|requests|conversations]"): "the command's synopsis",
    ("docs/observability.md", "cache: turn 3 read 0 of 5,249"):
        "a Codex session's third turn in mitmweb; tests/e2e/test_e2e_cache_doctor_codex.py compares its real output "
        "with this block (hashes, digests, counts and times aside)",
    ("docs/observability.md", "$ .venv/bin/qwen-usage conversations"):
        "qwen-usage conversations after that Codex session; tests/e2e/test_e2e_cache_doctor_codex.py compares its "
        "real output with this block (digests, counts and times aside)",
    ("docs/deploy.md", "kind: Deployment"):
        "a Kubernetes manifest; tests/repo/test_deploy_manifest.py validates it as printed against Kubernetes' schemas "
        "(strict) and the gateway's routes, image and account registry",
    ("docs/deploy.md", "upstream qwen_gateways {"):
        "nginx's configuration; tests/e2e/test_e2e_deploy.py runs this block as printed (its ports and host name "
        "changed) with Debian's nginx in front of two gateways",
    ("docs/keys.md", "qwen-keys: Applied on 1 running gateway. Not confirmed"):
        "qwen-keys' word when a gateway did not confirm a change; tests/e2e/test_e2e_keys_revoke.py compares it with "
        "the real command's stderr (host, pid and wait aside)",
    ("docs/deploy.md", "qwen: SIGTERM: draining"):
        "the drain's log lines; tests/e2e/test_e2e_drain.py finds each in a real gateway's log",
    ("docs/keys.md", "qwen-keys: another qwen-keys command changed key"):
        "qwen-keys' word when another command changed the key while it waited; tests/e2e/test_e2e_keys_admins.py "
        "compares it with the real command's stderr",
    ("docs/deploy.md", "qwen: WARNING: qwen_state_url"):
        "a gateway's warning behind PgBouncer in session mode; tests/e2e/test_e2e_pooler_mode.py compares it with a "
        "real gateway's log line (the URL aside)",
    ("docs/deploy.md", "# postgresql.conf: a session whose client vanished"):
        "settings for postgresql.conf (the server's own side of what the gateway bounds), not a command",
    ("docs/deploy.md", "; /etc/pgbouncer/pgbouncer.ini: the gateways' pool"):
        "a pgbouncer.ini, not a command; tests/e2e/test_e2e_pooler_mode.py starts a real PgBouncer with it",
    ("docs/deploy.md", '"qwen" "SCRAM-SHA-256$4096:…"'):
        "a userlist.txt line's shape (the secret is the database's); tests/e2e/test_e2e_pooler_mode.py writes one so",
    ("docs/clients.md", "$ .venv/bin/qwen-redirect install --port 8080 --dry-run"):
        "qwen-redirect's dry run with documentation addresses (192.0.2.10, 2001:db8::10) from a stub resolver; "
        "tests/unit/cli/test_redirect.py compares this block with the real command's output under that resolver",
}


def _claimed(b: Block, keys) -> list:
    return [k for k in keys if k[0] == b.file and matches(b, k[1])]


OTHER_SHELL_BLOCKS = [b for b in ALL_BLOCKS if b.is_shell and not _claimed(b, CHECKED_BY_SCENARIOS)]
NOT_RUN_COMMANDS = [(b, c, r) for b in ALL_BLOCKS if b.is_shell for c in b.commands if (r := not_run_reason(b, c))]


@pytest.mark.parametrize("b", OTHER_SHELL_BLOCKS, ids=lambda b: b.id)
def test_other_shell_blocks_run(session, b):
    """Blocks without a sample: each command runs and exits 0 (servers start, listen and stop cleanly)."""
    if all(not_run_reason(b, c) for c in b.commands):
        pytest.skip("no command of this block runs here (see test_not_run)")
    session.run(b)
    session.stop_servers()


@pytest.mark.parametrize(("b", "cmd", "reason"), NOT_RUN_COMMANDS,
                         ids=[f"{b.id}:{c.split()[0] if c.split() else c}" for b, c, _ in NOT_RUN_COMMANDS])
def test_not_run(b, cmd, reason):
    pytest.skip(f"not run: {cmd.strip()!r}: {reason}")


def test_every_sample_is_checked_or_explained():
    unexplained = []
    for b in ALL_BLOCKS:
        if b.is_shell:
            continue
        keys = _claimed(b, SAMPLES) + _claimed(b, NOT_OUTPUT)
        if len(keys) != 1:
            unexplained.append(f"{b.id} ({len(keys)} entries): {b.text[:80]!r}")
    assert not unexplained, "blocks that are neither a checked sample nor explained:\n" + "\n".join(unexplained)
    for (file, anchor) in [*SAMPLES, *NOT_OUTPUT, *CHECKED_BY_SCENARIOS]:
        assert any(b.file == file and matches(b, anchor) for b in ALL_BLOCKS), f"stale entry: {file}: {anchor!r}"


# ---- a newcomer's shell: the project's commands are in .venv/bin, not on PATH ----------------------------

VENV_PROGRAMS = ("mitmdump", "mitmweb", "mitmproxy", "qwen-auth", "qwen-usage", "qwen-gateway", "qwen-redirect")
_SEGMENT = re.compile(r"\|\||&&|[|;&]|\$\(|`|\(")


def programs_run(cmd: str) -> list[str]:
    """The programs a shell command runs as typed: the first word of each pipeline part, after variable
    assignments and `sudo`/`exec`/`time`/`env`; the command string of `sg GROUP -c "…"` too."""
    out = []
    for part in _SEGMENT.split(without_comment(cmd).replace("\\\n", " ")):
        try:
            words = shlex.split(part)
        except ValueError:
            words = part.split()
        while words and (re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]) or words[0] in ("sudo", "exec",
                                                                                              "time", "env")):
            words = words[1:]
        if words:
            out.append(words[0])
        if len(words) > 3 and words[0] == "sg" and words[2] == "-c":
            out += programs_run(words[3])
    return out


def bare_venv_commands(file: str) -> list[str]:
    """Commands a newcomer types from `file` that name a program of .venv/bin without its path (`command not
    found` in a fresh terminal): shell blocks, `$ …` transcripts and the README's Run-modes table."""
    found = []
    for b in ALL_BLOCKS:
        if b.file != file:
            continue
        cmds = b.commands if b.is_shell else [ln[2:] for ln in b.text.splitlines() if ln.startswith("$ ")]
        found += [f"{b.id}: {c.strip()}" for c in cmds if any(p in VENV_PROGRAMS for p in programs_run(c))]
    if file == "README.md":
        section = (ROOT / file).read_text().split("## Run modes", 1)[1].split("\n## ", 1)[0]
        table = "\n".join(ln for ln in section.splitlines() if ln.startswith("|"))
        for cell in re.findall(r"`([^`]+)`", table):
            if any(p in VENV_PROGRAMS for p in programs_run(cell)):
                found.append(f"README.md Run modes: {cell}")
    return found


def test_the_programs_in_venv_are_typed_with_their_path():
    """Issue 32: `mitmdump` as printed was `command not found`: the package installs it in .venv/bin, which a
    fresh terminal does not have on PATH (this test's sandbox has it, as after `source .venv/bin/activate`,
    so the runs alone could not tell)."""
    assert programs_run("sudo .venv/bin/qwen-redirect run -- .venv/bin/mitmdump -s x") == [".venv/bin/qwen-redirect"]
    assert programs_run('echo "$KEY" | qwen-auth add-key cp') == ["echo", "qwen-auth"]
    assert programs_run('sg qwen-gateway -c "mitmdump -s addons/qwen.py"') == ["sg", "mitmdump"]
    assert programs_run("systemctl --user enable --now qwen-gateway") == ["systemctl"]
    bare = [c for f in DOC_FILES for c in bare_venv_commands(f)]
    assert bare == [], "type these as .venv/bin/NAME:\n" + "\n".join(bare)

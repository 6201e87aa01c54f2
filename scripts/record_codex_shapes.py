"""Records a real Codex session through a real gateway and writes its requests' *shapes*
(scripts/data/codex_shapes.json), as scripts/record_claude_shapes.py does for Claude Code: each `POST /v1/responses`
body as Codex sent it, every text replaced by filler of the same length and UTF-8 size (the same text the same
filler in every request: a keyed hash whose key is never written), structure, roles, item and schema types, tool
names, `required` and `enum` lists and each answer's usage kept. Read by scripts/bench_doctor_shapes.py and
`bench_hooks.py --shapes`.

    .venv/bin/python scripts/record_codex_shapes.py [OUT]                  # record a session, write its shapes
    .venv/bin/python scripts/record_codex_shapes.py --from FLOWS.mitm [OUT]   # shapes of a recorded flow file

Recording needs Codex in .tools/ (scripts/install-test-tools.sh): the real `codex` binary on a custom provider
(`wire_api = "responses"`, over HTTP: what docs/clients.md sets up), one `codex exec` and six `exec resume --last`
runs of one session, five of them running its `exec_command` tool on two source files copied into its working
folder (each tool run two model calls): 13 requests, the conversation growing as a real session's does. Qwen is the
emulator on loopback (its answers are short; a real model's would be longer). `--keep DIR` keeps the flow file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "scripts" / "data" / "codex_shapes.json"
sys.path[:0] = [str(ROOT / "scripts")]

from record_claude_shapes import Filler, main as claude_main, pooled, recorded  # noqa: E402  (scripts/ on the path first)

# Responses' own words kept as sent, beside Claude Code's (record_claude_shapes.KEPT): what the gateway validates
KEPT = frozenset(("verbosity", "effort", "summary", "status", "detail", "include"))
KEPT_TOP = frozenset(("store", "parallel_tool_calls", "include", "reasoning", "text", "tool_choice", "service_tier"))


class ResponsesFiller(Filler):
    """Filler for a Responses body: its enumerated words kept as well (a filler `effort` would be refused)."""

    kept = Filler.kept | KEPT
    kept_top = Filler.kept_top | KEPT_TOP

    def value(self, v: object, key: str | None = None) -> object:
        if isinstance(v, str) and v.startswith("{") and key not in self.kept:
            return self.json_text(v)  # a call's arguments, Codex's turn metadata: JSON, its structure kept
        return super().value(v, key)


def usage_of(response: str) -> dict:
    """OpenAI's usage in a streamed (or whole) Responses answer: `response.completed`'s response's."""
    usage: dict = {}
    for line in response.splitlines():
        if line.startswith(("data: ", "{")):
            event = json.loads(line.removeprefix("data: "))
            usage = (event.get("response") or {}).get("usage") or event.get("usage") or usage
    return usage


def shapes(flowfile: Path, filler: Filler | None = None) -> dict:
    """The shapes of the Responses requests of a mitmdump flow file, in order, with their answers' usage."""
    turns = recorded(flowfile, "/v1/responses", filler or ResponsesFiller(), usage_of)
    return {"source": "recorded: scripts/record_codex_shapes.py", "dialect": "responses",
            **pooled(turns, items="input")}


def session() -> list[tuple[str, dict | None]]:
    """Each run's prompt and the arguments the emulator calls `exec_command` with (None: answered in words)."""
    return [
        ("say hello", None),
        ("use exec_command to show compare.py", {"cmd": "cat compare.py"}),
        ("use exec_command to find the functions", {"cmd": "grep -n '^def ' compare.py memory.py"}),
        ("use exec_command to list the folder", {"cmd": "ls -la && wc -l *.py"}),
        ("use exec_command to show memory.py", {"cmd": "cat memory.py"}),
        ("use exec_command to raise the bound", {"cmd": "sed -i s/CONVERSATIONS\\ =\\ 4096/CONVERSATIONS\\ =\\ 8192/ "
                                                        "memory.py && grep -n CONVERSATIONS memory.py"}),
        ("thanks", None),
    ]


def record(workdir: Path) -> Path:
    """A Codex session through a recording gateway (`-w`): its flow file."""
    sys.path[:0] = [str(ROOT / "tests")]
    from helpers.home import CODING_PLAN, Home
    from helpers.procs import Gateway, start_emulator

    codex = ROOT / ".tools" / "node_modules" / ".bin" / "codex"
    if not codex.exists():
        raise SystemExit("cannot record here: Codex CLI not installed (scripts/install-test-tools.sh)")
    flowfile = workdir / "codex-session.mitm"
    (workdir / "emu").mkdir()
    emu = start_emulator(workdir / "emu")
    try:
        home = Home(workdir, emu)
        home.key("emu", path=CODING_PLAN, default_model="qwen3-coder-plus")
        gw = Gateway(workdir / "gw", args=("-w", str(flowfile)), env=home.env()).start()
        try:
            codex_home, work = workdir / "codex", workdir / "work"
            codex_home.mkdir()
            work.mkdir()
            for name in ("compare.py", "memory.py"):
                shutil.copy(ROOT / "addons" / "gateway" / "cache" / name, work / name)
            (codex_home / "config.toml").write_text(
                'model = "coder-model"\nmodel_provider = "qwenproxy"\napproval_policy = "never"\n'
                'sandbox_mode = "workspace-write"\n[model_providers.qwenproxy]\nname = "Qwen gateway"\n'
                f'base_url = "{gw.url}/v1"\nenv_key = "QWENPROXY_API_KEY"\nwire_api = "responses"\n')
            env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CODEX_"))
                   and k.lower() not in ("https_proxy", "http_proxy")}
            env.update(CODEX_HOME=str(codex_home), HOME=str(workdir), QWENPROXY_API_KEY="client-key")
            for i, (prompt, arguments) in enumerate(session()):
                emu.switches(tool_arguments=arguments)
                args = [str(codex), "exec", "--skip-git-repo-check", *(("resume", "--last") if i else ()), prompt]
                r = subprocess.run(args, cwd=work, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                   timeout=180)
                if r.returncode != 0:
                    raise SystemExit(f"run {i + 1} ({prompt!r}) failed: {r.returncode}\n{r.stdout[-2000:]}\n"
                                     f"{r.stderr[-2000:]}\n{gw.log()[-2000:]}")
                print(f"run {i + 1}: {prompt!r}: {r.stdout.strip()[-100:]!r}")
        finally:
            gw.stop()
    finally:
        emu.stop()
    return flowfile


def main(argv: list[str]) -> int:
    return claude_main(argv, OUT, record, shapes, prefix="codex-shapes-")


if __name__ == "__main__":
    os.umask(0o022)
    raise SystemExit(main(sys.argv[1:]))

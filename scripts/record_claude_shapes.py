"""Records a real Claude Code session through a real gateway and writes its requests' *shapes*
(scripts/data/claude_code_shapes.json): each `POST /v1/messages` body as Claude Code sent it, with every text
replaced by filler of the same length and the same UTF-8 size, so no prompt text, file or answer is kept while
the work the gateway and its cache doctor do on it (they encode and hash blocks: their cost follows sizes and
structure) stays the same. Read by scripts/bench_doctor_shapes.py and `bench_hooks.py --shapes`.

    sudo .venv/bin/python scripts/record_claude_shapes.py [OUT]            # record a session, write its shapes
    .venv/bin/python scripts/record_claude_shapes.py --from FLOWS.mitm [OUT]   # shapes of a recorded flow file

Recording needs what tests/e2e/test_e2e_claude_code.py needs (root for a network namespace, Claude Code in .tools/
from scripts/install-test-tools.sh): the real `claude` binary, eight `claude -p` runs of one session
(`--continue`), six of them running a tool (Read, Grep, Bash, Edit) on two source files copied into its working
folder, each tool run two model calls: 14 requests, the conversation growing as a real session's does. Qwen is the
emulator (its answers are short; a real model's would be longer). The mitmdump flow file is kept with `--keep DIR`.

What is kept as sent: every key, the JSON's structure, roles, block and schema types, tool names, `required` and
`enum` lists, `cache_control` markers, the model and the top-level settings (`thinking`, `output_config`,
`context_management`…), the billing line's prefix (the gateway drops that line) and the keys of `metadata.user_id`
(its session keeps the conversation). Every other string (texts, descriptions, ids, tool input values) becomes
filler: ASCII letters and digits by random ones of the same case, other characters by random ones of the same
UTF-8 size, ASCII punctuation, spaces and control characters kept (JSON escapes them: the encoded size is the
same). The filler of a string is a keyed hash of it (HMAC with a key drawn for the run and never kept): the same
text is the same filler in every request, as the doctor needs (a turn repeats the previous one), and cannot be
guessed back. Headers are not kept. Each turn's usage (Anthropic's counts, as the gateway answered) is kept."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import os
import random
import secrets
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "scripts" / "data" / "claude_code_shapes.json"
KEPT = frozenset(("type", "role", "model", "name", "ttl", "$schema", "format", "media_type", "stop_reason"))
KEPT_LISTS = frozenset(("required", "enum"))
KEPT_TOP = frozenset(("model", "thinking", "output_config", "context_management", "tool_choice", "stream",
                      "max_tokens", "temperature", "top_p", "top_k", "stop_sequences", "service_tier"))
BILLING_PREFIX = "x-anthropic-billing-header:"  # api/messages/request.py: the gateway drops this system line
WIDE = {2: (0xE0, 0xFF), 3: (0x4E00, 0x9FFF), 4: (0x1F600, 0x1F64F)}  # a filler character of each UTF-8 size
TOOLS = "Bash,Read,Grep,Edit,Glob"


class Filler:
    """Strings to filler, the same string to the same filler (a keyed hash: the key is never written)."""

    kept, kept_lists, kept_top = KEPT, KEPT_LISTS, KEPT_TOP  # the keys whose values stay as sent (a subclass adds)

    def __init__(self, key: bytes | None = None) -> None:
        self.key = key if key is not None else secrets.token_bytes(32)

    def text(self, s: str) -> str:
        rnd = random.Random(hmac.new(self.key, s.encode("utf-8", "surrogatepass"), hashlib.sha256).digest())
        out = []
        for c in s:
            if c.isascii():
                if "a" <= c <= "z":
                    c = chr(rnd.randint(97, 122))
                elif "A" <= c <= "Z":
                    c = chr(rnd.randint(65, 90))
                elif "0" <= c <= "9":
                    c = chr(rnd.randint(48, 57))
                out.append(c)  # punctuation, spaces, control characters: kept (JSON escapes some)
                continue
            lo, hi = WIDE.get(len(c.encode("utf-8", "surrogatepass")), (ord(c), ord(c)))
            pick = rnd.randint(lo, hi)
            out.append(chr(pick if pick != 0xF7 else 0xF8))  # no ÷: a letter of the same size
        return "".join(out)

    def value(self, v: object, key: str | None = None) -> object:
        """A JSON value with its texts replaced (see the module for what is kept)."""
        if isinstance(v, dict):
            return {k: (x if k == "cache_control" else self.value(x, k)) for k, x in v.items()}
        if isinstance(v, list):
            if key in self.kept_lists and all(isinstance(x, str) for x in v):
                return list(v)
            return [self.value(x) for x in v]
        if isinstance(v, str):
            if key in self.kept:
                return v
            if v.startswith(BILLING_PREFIX):
                return BILLING_PREFIX + self.text(v[len(BILLING_PREFIX):])
            return self.text(v)
        return v

    def body(self, body: dict) -> dict:
        """A Messages request body's shape."""
        out = {}
        for k, v in body.items():
            if k in self.kept_top:
                out[k] = v
            elif k == "metadata" and isinstance(v, dict):
                out[k] = {m: self.json_text(x) if m == "user_id" else self.value(x, m) for m, x in v.items()}
            else:
                out[k] = self.value(v, k)
        return out

    def json_text(self, v: object) -> object:
        """A string holding JSON, its structure kept (Claude Code's `metadata.user_id`, a JSON string of ids: its
        session the conversation's key), written as it was (its size the same); else filler as any string."""
        if isinstance(v, str) and v.startswith("{"):
            try:
                parsed = json.loads(v)
            except ValueError:
                parsed = None
            for seps, ascii_ in itertools.product(((",", ":"), (", ", ": ")), (False, True)):  # as written: its size
                if json.dumps(parsed, separators=seps, ensure_ascii=ascii_) == v:
                    return json.dumps(self.value(parsed), separators=seps, ensure_ascii=ascii_)
        return Filler.value(self, v)


def usage_of(response: str) -> dict:
    """Anthropic's usage in a streamed (or whole) Messages answer: message_start's, updated by message_delta's."""
    usage: dict = {}
    for line in response.splitlines():
        if line.startswith("data: "):
            event = json.loads(line[6:])
            usage.update((event.get("message") or {}).get("usage") or event.get("usage") or {})
        elif line.startswith("{"):
            usage.update(json.loads(line).get("usage") or {})
    return {k: v for k, v in usage.items() if isinstance(v, int) and not isinstance(v, bool)}


def shapes(flowfile: Path, filler: Filler | None = None) -> dict:
    """The shapes of the Messages requests of a mitmdump flow file, in order, with their answers' usage."""
    turns = recorded(flowfile, "/v1/messages", filler or Filler(), usage_of)
    return {"source": "recorded: scripts/record_claude_shapes.py", **pooled(turns)}


def recorded(flowfile: Path, path: str, filler: Filler, usage: Callable[[str], dict]) -> list[dict]:
    """Each `POST path` of a mitmdump flow file, in order: its body's shape and its answer's usage (`usage` reads
    it from the answer's text)."""
    from mitmproxy import io

    turns = []
    with open(flowfile, "rb") as f:
        for fl in io.FlowReader(f).stream():
            if fl.request.method != "POST" or fl.request.path.split("?")[0] != path:
                continue
            body = json.loads(fl.request.get_text())
            turns.append({"body": filler.body(body),
                          "usage": usage(fl.response.get_text()) if fl.response is not None else {}})
    return turns


def pooled(turns: list[dict], items: str = "messages") -> dict:
    """The turns with their system (or instructions), tools and `items` (messages, a Responses body's input) in a
    pool, each once (`{"$pool": i}` in its place): a turn repeats the turn before (recorded_shapes.turns puts them
    back)."""
    pool: list = []
    index: dict[str, int] = {}

    def ref(value: object) -> dict:
        key = json.dumps(value, ensure_ascii=False)
        if key not in index:
            index[key] = len(pool)
            pool.append(value)
        return {"$pool": index[key]}

    out = []
    for turn in turns:
        body = {k: ref(v) if k in ("system", "tools", "instructions") else v for k, v in turn["body"].items()}
        body[items] = [ref(m) for m in turn["body"][items]]
        out.append({"body": body, "usage": turn["usage"]})
    return {"pool": pool, "turns": out}


# ---- recording ------------------------------------------------------------------------------------------------


def session(work: Path) -> list[tuple[str, dict | None]]:
    """Each run's prompt and the tool arguments the emulator calls the tool it names with (None: answered in words)."""
    return [
        ("say hello", None),
        ("use Read to read compare.py", {"file_path": str(work / "compare.py")}),
        ("use Grep to find the functions", {"pattern": "^def ", "path": str(work), "output_mode": "content",
                                            "-n": True}),
        ("use Bash to list the folder", {"command": f"ls -la {work} && wc -l {work}/*.py",
                                         "description": "List the files"}),
        ("use Read to read memory.py", {"file_path": str(work / "memory.py")}),
        ("use Edit to raise the bound", {"file_path": str(work / "memory.py"), "old_string": "CONVERSATIONS = 4096",
                                         "new_string": "CONVERSATIONS = 8192"}),
        ("use Bash to show the change", {"command": f"grep -n CONVERSATIONS {work}/memory.py",
                                         "description": "Show it"}),
        ("thanks", None),
    ]


def record(workdir: Path) -> Path:
    """A Claude Code session through a recording gateway (`-w`): its flow file."""
    sys.path[:0] = [str(ROOT / "tests")]
    from helpers.claude_ns import ClaudeWorld, claude_unavailable, stream_json
    from helpers.netns import namespace_unavailable

    reason = namespace_unavailable() or claude_unavailable()
    if reason:
        raise SystemExit(f"cannot record here: {reason}")
    world = ClaudeWorld(workdir).start()
    flowfile = workdir / "claude-session.mitm"
    try:
        gw = world.recording_gateway("record", "reverse:https://portal.qwen.ai", "-w", str(flowfile))
        env = {"ANTHROPIC_BASE_URL": gw.proxy_url, "ANTHROPIC_API_KEY": "sk-ant-recording-key",
               "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
        work = None
        try:
            for i, (prompt, arguments) in enumerate(session(workdir / "claude-1" / "work")):
                if arguments is not None:
                    world.switches(tool_arguments=arguments)
                r, took, folder = world.claude(prompt, *(("--continue",) if work else ()), "--allowedTools", TOOLS,
                                               "--output-format", "stream-json", "--verbose", env=env, again=work,
                                               timeout=240)
                events = stream_json(r)
                if r.returncode != 0 or not events or events[-1].get("subtype") != "success":
                    raise SystemExit(f"run {i + 1} ({prompt!r}) failed: {r.returncode}\n{r.stdout[-2000:]}\n"
                                     f"{r.stderr[-2000:]}\n{gw.log()[-2000:]}")
                print(f"run {i + 1}: {prompt!r} in {took:.1f} s: {events[-1].get('result')!r}"[:160])
                if work is None:  # the files the tools read, in the session's working folder
                    work = folder
                    for name in ("compare.py", "memory.py"):
                        shutil.copy(ROOT / "addons" / "gateway" / "cache" / name, folder / name)
        finally:
            gw.stop()
    finally:
        world.stop()
    return flowfile


def main(argv: list[str], out: Path = OUT, record: Callable[[Path], Path] = record,
         shapes: Callable[[Path], dict] = shapes, prefix: str = "claude-shapes-") -> int:
    """The command line (record_codex_shapes.py's too, with its own recording and reader): record a session, or read
    a flow file (`--from`), and write its shapes to OUT (a `.json` argument)."""
    out = Path(next((a for a in argv if a.endswith(".json")), out))
    if "--from" in argv:
        found = shapes(Path(argv[argv.index("--from") + 1]))
    else:
        keep = Path(argv[argv.index("--keep") + 1]) if "--keep" in argv else None
        workdir = Path(tempfile.mkdtemp(prefix=prefix))
        try:
            flowfile = record(workdir)
            found = shapes(flowfile)
            if keep is not None:
                keep.mkdir(parents=True, exist_ok=True)
                shutil.copy(flowfile, keep / flowfile.name)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(found, indent=1, ensure_ascii=False) + "\n")
    import recorded_shapes  # (scripts/ is this script's folder)

    sizes = [len(recorded_shapes.request(t)) for t in recorded_shapes.turns(out)]
    print(f"{out}: {len(sizes)} requests, {min(sizes, default=0):,} to {max(sizes, default=0):,} bytes")
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    raise SystemExit(main(sys.argv[1:]))

"""The cache doctor's confusion table (issue 61 item 2): real client sessions recorded at test time, every cause
injected, the doctor's verdict read back. Nothing of a client's prompts or tools is kept in the repo: the
sessions are recorded by the test itself.

- Claude Code: three `claude -p` turns of one session (`--continue`) through a real mitmdump (`-w`, debug log)
  in the network namespace of tests/helpers/claude_ns.py, against the emulator (whose prompt cache follows
  Model Studio's).
- Codex: three `codex exec` turns (`resume --last`) on a custom provider through a real mitmdump (skipped, with
  the reason, where the Codex CLI is not installed).

Then the last turn, as the client sent it (its body and headers from the debug log), is sent again through the
SAME gateway once per injected change, each after the turn unchanged (so the doctor compares it with a turn that
read the whole cache): nothing changed, the model, the system text, a tool's description, the tools' order, an
earlier message, a system message inserted mid-conversation, an image added to an earlier message (the route
moves it to the vision model), a side call on a flash model in the same session, and Qwen's own misses (the
emulator's cache clock moved past the lifetime; its cache cleared). Each flow's `metadata.qwen.cache.cause` is
the doctor's answer; the table injected × named is printed and asserted (docs/performance.md holds a run's)."""

from __future__ import annotations

import copy
import json
from collections import Counter
from pathlib import Path

import httpx
import pytest
from mitmproxy import io

from helpers.claude_ns import claude_world  # noqa: F401  (fixtures)
from helpers.netns import PY
from helpers.procs import until
from e2e.test_e2e_claude_code import CLIENT_KEY, session
from e2e.test_e2e_codex import Codex, assert_clean, custom_config

pytestmark = pytest.mark.e2e

VARIANT = "x-test-variant"  # the header that names the injected change on each re-sent request
ADDED = " The user prefers answers in French."
# the second turn's prompt, long enough that an edit at its start loses more than the doctor's slack (32 tokens)
SECOND = "say hello again, after reading these notes: " + ", ".join(f"note {i} is fine" for i in range(60))
OTHER_MODEL = "qwen3-coder-flash"  # the sessions run on the account's qwen3-coder-plus
PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
DROPPED = {"host", "content-length", "authorization", "x-api-key", "connection", "accept-encoding", "transfer-encoding"}
# what the doctor must name for each injected change (None: no miss named); docs/observability.md's names
EXPECTED = {"none": None, "model": "model", "system": "system", "tool": "tool", "tool_order": "tool_order",
            "edited": "edited", "mid_system": "mid_system", "image": "image", "side_call": None,
            "expired": "unexplained", "evicted": "unexplained"}
# Claude Code's role:"system" messages are folded into the system prompt (docs/compatibility.md): what Qwen is
# shown, and the doctor reads, is a changed system text
CLAUDE_EXPECTED = {**EXPECTED, "mid_system": "system"}
SEND = """import json, sys, httpx
r = json.load(open(sys.argv[1]))
with httpx.stream("POST", r["url"], json=r["body"], headers=r["headers"], timeout=90, trust_env=False) as a:
    text = a.read().decode()
print(a.status_code)
print(text[-500:])
"""


def user_texts(messages: list[dict], role: str = "user") -> list[int]:
    """The places of the messages of `role` between the first and the last (an earlier message to change)."""
    return [i for i, m in enumerate(messages) if m.get("role") == role and 0 < i < len(messages) - 1]


def claude_variants(turn: dict) -> dict[str, dict]:
    """The Messages body `turn` with each change injected (Claude Code's shapes: docs/claude-code.md)."""
    out: dict[str, dict] = {"none": turn}
    v = copy.deepcopy(turn)
    v["model"] = OTHER_MODEL
    out["model"] = v
    v = copy.deepcopy(turn)
    v["system"][-1]["text"] += ADDED
    out["system"] = v
    v = copy.deepcopy(turn)
    v["tools"][0]["description"] += ADDED
    out["tool"] = v
    out["tool_order"] = {**turn, "tools": turn["tools"][::-1]}
    earlier = user_texts(turn["messages"])[-1]
    v = copy.deepcopy(turn)
    v["messages"][earlier]["content"] = _edited(v["messages"][earlier]["content"])
    out["edited"] = v
    v = copy.deepcopy(turn)
    v["messages"].insert(len(v["messages"]) - 1, {"role": "system", "content": ADDED.strip()})
    out["mid_system"] = v
    v = copy.deepcopy(turn)
    content = v["messages"][earlier]["content"]
    v["messages"][earlier]["content"] = ([{"type": "text", "text": content}] if isinstance(content, str) else content) + [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]
    out["image"] = v
    # the shape of Claude Code's session-title call: its own system text, no tools, one user message
    out["side_call"] = {"model": OTHER_MODEL, "max_tokens": 512, "stream": True, "metadata": turn.get("metadata", {}),
                        "system": [turn["system"][0], {"type": "text", "text": "Name this session in a few words."}],
                        "messages": [{"role": "user", "content": "<session>say hello</session>"}]}
    out["expired"] = out["evicted"] = turn
    return out


def codex_variants(turn: dict) -> dict[str, dict]:
    """The Responses body `turn` with each change injected (Codex's input items)."""
    out: dict[str, dict] = {"none": turn}
    out["model"] = {**turn, "model": OTHER_MODEL}
    v = copy.deepcopy(turn)  # Codex sends its system prompt as the leading developer message, not `instructions`
    lead = v["instructions"] if "instructions" in v else v["input"][0]["content"][0]["text"]
    if "instructions" in v:
        v["instructions"] = lead + ADDED
    else:
        v["input"][0]["content"][0]["text"] = lead + ADDED
    out["system"] = v
    v = copy.deepcopy(turn)
    v["tools"][0]["description"] += ADDED
    out["tool"] = v
    out["tool_order"] = {**turn, "tools": turn["tools"][::-1]}
    items = turn["input"]
    earlier = [i for i in user_texts(items) if items[i].get("type", "message") == "message"][-1]
    v = copy.deepcopy(turn)
    v["input"][earlier]["content"] = _edited(v["input"][earlier]["content"])
    out["edited"] = v
    v = copy.deepcopy(turn)
    v["input"].insert(len(items) - 1, {"type": "message", "role": "developer",
                                       "content": [{"type": "input_text", "text": ADDED.strip()}]})
    out["mid_system"] = v
    v = copy.deepcopy(turn)
    v["input"][earlier]["content"].append({"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"})
    out["image"] = v
    out["side_call"] = {"model": OTHER_MODEL, "stream": True, "prompt_cache_key": turn.get("prompt_cache_key"),
                        "instructions": "Name this session in a few words.", "input": "say pong"}
    out["expired"] = out["evicted"] = turn
    return out


def _edited(content):
    """The message's text with a word changed at its start: what follows it in the prompt is no longer cached."""
    if isinstance(content, str):
        return "Now " + content
    content = copy.deepcopy(content)
    text = [p for p in content if p.get("type") in ("text", "input_text")][0]
    text["text"] = "Now " + text["text"]
    return content


def replay(send, emulator_cache, turn: dict, variants: dict[str, dict]) -> None:
    """Each variant through the gateway after the turn unchanged; Qwen's own misses made on the emulator first."""
    for name, body in variants.items():
        send("baseline", turn)
        if name == "expired":
            emulator_cache("advance")
        elif name == "evicted":
            emulator_cache("clear")
        send(name, body)


def verdicts(flowfile: Path, path: str) -> list[tuple[str, str | None]]:
    """(injected change, the cause the doctor named) for each re-sent variant, in order."""
    with open(flowfile, "rb") as f:
        flows = [fl for fl in io.FlowReader(f).stream() if fl.request.path.startswith(path)]
    out = []
    for fl in flows:
        name = fl.request.headers.get(VARIANT)
        if name and name != "baseline":
            cache = fl.metadata.get("qwen", {}).get("cache") or {}
            out.append((name, cache.get("cause")))
    return out


def table(rows: list[tuple[str, str | None]], expected: dict) -> str:
    named = sorted({n or "—" for _, n in rows} | {e or "—" for e in expected.values()})
    counts = Counter((i, n or "—") for i, n in rows)
    lines = ["| injected \\ named | " + " | ".join(f"`{n}`" if n != "—" else n for n in named) + " |",
             "|---|" + "---|" * len(named)]
    for injected in expected:
        lines.append(f"| {injected} | " + " | ".join(str(counts[injected, n] or "") for n in named) + " |")
    right = sum(1 for i, n in rows if n == expected[i])
    return "\n".join(lines) + f"\n\n{right} of {len(rows)} named as injected"


def check(rows: list[tuple[str, str | None]], expected: dict, client: str) -> None:
    print(f"\n{client}:\n{table(rows, expected)}")
    assert [i for i, _ in rows] == list(expected), rows  # every variant answered and diagnosed once
    assert {i: n for i, n in rows} == expected, rows


def test_claude_code_session_every_cause_injected(claude_world):
    world = claude_world
    world.reset_emulator()
    flowfile = world.workdir / "confusion.mitm"
    gw = world.recording_gateway("confusion", "reverse:https://portal.qwen.ai", "-w", str(flowfile))
    try:
        mark = world.mark_all(gw)
        session(world, gw, ("say hello",), (SECOND,), ("and once more",))
        last = world.exchanges(mark, 3)[-1]["client_request"]
        headers = {k: v for k, v in last["headers"].items() if k.lower() not in DROPPED}
        job = world.workdir / "confusion-request.json"

        def send(name: str, body: dict) -> None:
            job.write_text(json.dumps({"url": gw.proxy_url + "/v1/messages?beta=true", "body": body, "headers": {
                **headers, "x-api-key": CLIENT_KEY, VARIANT: name}}))
            r = world.ns.run([PY, "-c", SEND, str(job)], timeout=120)
            assert r.returncode == 0 and r.stdout.startswith("200"), (name, r.stdout[-1500:], r.stderr[-1500:])

        def emulator_cache(what: str) -> None:
            world._admin("cache", {"advance": 301}) if what == "advance" else world.reset_emulator()

        replay(send, emulator_cache, last["body"]["json"], claude_variants(last["body"]["json"]))
    finally:
        assert gw.stop() == 0, "the gateway did not stop by itself on SIGTERM (killed)"
    check(verdicts(flowfile, "/v1/messages"), CLAUDE_EXPECTED, "Claude Code 3 turns")


def _responses_requests(logs: Path, count: int) -> list[dict] | None:
    """The Responses requests the debug log holds (written from a thread once each exchange ended), oldest first."""
    records = [json.loads(p.read_text()) for p in sorted(logs.glob("exchange-*.json"))]
    found = [r["client_request"] for r in records if "/v1/responses" in (r.get("client_request") or {}).get("url", "")
             and ((r["client_request"].get("body") or {}).get("json") or {}).get("input")]
    return found if len(found) >= count else None


def test_codex_session_every_cause_injected(make_gateway, emu, key_home, tmp_path):
    flowfile = tmp_path / "confusion.mitm"
    gw = make_gateway("confusion", env=key_home, args=("-w", str(flowfile), "--set", "qwen_debug_log=true"))
    codex = Codex(tmp_path, "confusion", custom_config(gw), QWENPROXY_API_KEY="client-key")
    for i, prompt in enumerate(("say pong", SECOND, "and once more")):
        log, _ = codex.run(prompt, resume=i > 0)
        assert_clean(log)
    last = until(lambda: _responses_requests(Path(key_home["QWEN_GATEWAY_HOME"]) / "logs", 3), "Codex's turns logged")[-1]
    headers = {k: v for k, v in last["headers"].items() if k.lower() not in DROPPED}

    def send(name: str, body: dict) -> None:
        r = httpx.post(gw.url + "/v1/responses", json=body, timeout=90, trust_env=False,
                       headers={**headers, "authorization": "Bearer client-key", VARIANT: name})
        assert r.status_code == 200 and "response.completed" in r.text, (name, r.text[-1500:])

    def emulator_cache(what: str) -> None:
        emu.admin("POST", "cache", {"advance": 301}) if what == "advance" else emu.reset()

    replay(send, emulator_cache, last["body"]["json"], codex_variants(last["body"]["json"]))
    gw.stop()
    check(verdicts(flowfile, "/v1/responses"), EXPECTED, "Codex 3 turns")

"""Instructions per whole chat request of the gateway's own work, in one process: its hooks (requestheaders,
request, responseheaders, response) and the observers that run after the answer, with the real pool, observers
and upstream client, Qwen's answer canned on an in-memory connection. No proxy, no sockets: what is counted is
the gateway's alone (`bench.py instructions` counts the whole mitmdump process against the floor).

    .venv/bin/python scripts/bench_hooks.py [N]            # instructions per request (N: 500)
    .venv/bin/python scripts/bench_hooks.py [N] --python   # and the Python functions by inclusive instructions
    .venv/bin/python scripts/bench_hooks.py [N] --long     # an agent's long conversation instead of "ping"
    .venv/bin/python scripts/bench_hooks.py [N] --set qwen_routes=fast=qwen3.6-flash   # with a list option set
    .venv/bin/python scripts/bench_hooks.py [N] --responses  # a Responses request ("ping", stored), translated
    .venv/bin/python scripts/bench_hooks.py [N] --native     # the same on Qwen's own Responses API (a key account)
    .venv/bin/python scripts/bench_hooks.py [N] --no-doctor  # the same without the cache doctor (its cost: the difference)
    .venv/bin/python scripts/bench_hooks.py [N] --shapes [FILE] [--turn K|all] [--estimate]  # a recorded request

`--long` sends what a coding agent sends on a late turn of a session (bench_http.long_conversation: 202
messages, 60 kB). Every turn of a session resends the whole conversation, so the gateway's work per message
is what such clients pay on each request. Its answer counts the prompt as Qwen would (15,000 tokens, 14,000 read
from the cache): the cache doctor diagnoses every such turn, as it does a real agent's (a 2-token "ping" is too short
for Qwen's cache, and for the doctor).

`--shapes` sends turn K (from 0; the last by default) of a recorded client session (recorded_shapes.py; FILE:
scripts/data/claude_code_shapes.json, Claude Code's to `/v1/messages`, or codex_shapes.json, Codex's to
`/v1/responses`), whole, answered with the usage it was answered with; `--turn all`: each turn of the session in
turn, whole sessions of N requests (N rounded down to them), the figure a request's mean over the session. The
gateway counts a Messages prompt with tiktoken in its estimator's thread once the encoding is loaded (2 s after the
first): how many of those counts fell between the marks followed the machine's load (11.2 and 16.8 million a
request, one tree). So the encoding is loaded first and each request waits for its count (`--estimate`: never
loaded, characters / 4, as before the encoding is).

It runs itself under valgrind's callgrind once: WARM requests, then N more between two marks (a call of
os.getppid, which callgrind dumps its counters before: `--dump-before=getppid`). What lies between the marks, over N,
is one request: its hooks, the observers after the answer, its ledger row written and the collector's pass over its
garbage (each done once for the warm requests before the first mark), nothing of start-up or exit. (Until
2026-11-26 it ran twice, WARM and WARM + N requests, and took the difference: start-up differed by ~1.7 M
instructions between runs of the same code, ±8k a request at N = 200.) PYTHONHASHSEED=0. `--python` runs Python
with its perf trampolines (`-X perf`: each Python function gets its own address, named in /tmp/perf-PID.map), which
inflate every figure by their own calls: for finding, not for figures. Needs valgrind (apt: valgrind)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import recorded_shapes
from bench_http import CHAT, long_conversation
from callgrind_report import instructions, python_functions

WARM = int(os.environ.get("QWEN_BENCH_HOOKS_WARM", "200"))  # requests before the first mark
LONG = os.environ.get("QWEN_BENCH_HOOKS_LONG") == "1"  # --long, handed to the runs under valgrind
# --set NAME=VALUE (repeatable; each a list option's entry), handed to the runs under valgrind as JSON
SET: dict[str, list[str]] = json.loads(os.environ.get("QWEN_BENCH_HOOKS_SET") or "{}")
# --responses: a Responses request ("ping", stored), translated to chat; --native: the same through Qwen's own Responses
# API (qwen_responses_native, a pay-as-you-go key account), its answer a Responses object
KIND = os.environ.get("QWEN_BENCH_HOOKS_KIND", "chat")
NO_DOCTOR = os.environ.get("QWEN_BENCH_HOOKS_NO_DOCTOR") == "1"  # --no-doctor: the cache doctor taken out
RESPONSES = {"model": "qwen3-coder-plus", "input": "ping"}  # stored, as Qwen's own API takes it
BODY = json.dumps(long_conversation() if LONG else RESPONSES if KIND != "chat" else CHAT).encode()
PATH = "/v1/responses" if KIND != "chat" else "/v1/chat/completions"
ANSWER = (b'{"id":"chatcmpl-1","object":"chat.completion","created":1795503429,"model":"coder-model","choices":[{'
          b'"index":0,"message":{"role":"assistant","content":"Echo: ping","reasoning_content":"Thinking."},'
          b'"finish_reason":"stop","logprobs":null}],"usage":{"prompt_tokens":2,"completion_tokens":8,'
          b'"total_tokens":10,"prompt_tokens_details":{"cached_tokens":0}},"system_fingerprint":null}')
if LONG:  # what Qwen counts for 60 kB of conversation, most of it read from the cache
    ANSWER = ANSWER.replace(b'"prompt_tokens":2,', b'"prompt_tokens":15000,').replace(
        b'"total_tokens":10,"prompt_tokens_details":{"cached_tokens":0}',
        b'"total_tokens":15008,"prompt_tokens_details":{"cached_tokens":14000}')
if KIND == "native":
    ANSWER = (b'{"id":"resp_q1","object":"response","created_at":1795503429,"status":"completed","model":'
              b'"qwen3-coder-plus","output":[{"id":"msg_1","type":"message","role":"assistant","status":"completed",'
              b'"content":[{"type":"output_text","text":"Echo: ping","annotations":[]}]}],"usage":{"input_tokens":2,'
              b'"input_tokens_details":{"cached_tokens":0},"output_tokens":3,"output_tokens_details":'
              b'{"reasoning_tokens":0},"total_tokens":5}}')
SHAPES = os.environ.get("QWEN_BENCH_HOOKS_SHAPES")  # --shapes FILE: a recorded Claude Code request, whole
# --shapes: each Messages prompt counted with tiktoken (its encoding loaded first, as a gateway up for more than
# TokenEstimator.WARM_AFTER_S has it), or with --estimate characters / 4 (never loaded); each request's count awaited
COUNT = os.environ.get("QWEN_BENCH_HOOKS_COUNT", "exact")
PENDING: set = set()  # --shapes: the prompt counts the estimator's thread runs (awaited after each request)
# --turn all: every turn of the recorded session in its order, again and again (each request the next turn's body and
# answer): the figure is a request's mean over the whole session, opening turns included
SESSION: list[tuple[str, bytes, bytes]] = []
if SHAPES:
    _turns = recorded_shapes.turns(SHAPES)
    _which = os.environ.get("QWEN_BENCH_HOOKS_TURN", "-1")
    _turn = _turns[-1 if _which == "all" else int(_which)]
    KIND, PATH, BODY, ANSWER = _turn["dialect"], recorded_shapes.path(_turn), recorded_shapes.request(_turn), \
        recorded_shapes.answer(_turn["usage"])
    if _which == "all":
        SESSION = [(recorded_shapes.path(t), recorded_shapes.request(t), recorded_shapes.answer(t["usage"]))
                   for t in _turns]


def canned(answer: bytes) -> bytes:  # Qwen's whole answer on the wire
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(answer)) + answer


QWEN = canned(ANSWER)


def home(base: Path | None = None) -> None:
    """A state folder and Qwen account for the run (`--native`: a key account) in `base` (else a new temporary one)."""
    home = base if base is not None else Path(tempfile.mkdtemp(prefix="qwen-bench-hooks-"))
    (home / "qwen").mkdir(mode=0o700, parents=True)
    creds = {"access_token": "tok", "refresh_token": "r", "token_type": "Bearer", "resource_url": "http://127.0.0.1:9",
             "expiry_date": int((time.time() + 86400) * 1000)}
    if KIND != "native":  # native: the key account below is the only one
        (home / "qwen" / "oauth_creds.json").write_text(json.dumps(creds))
        os.chmod(home / "qwen" / "oauth_creds.json", 0o600)
    os.environ.update(QWEN_DIR=str(home / "qwen"), QWEN_GATEWAY_HOME=str(home / "state"))
    if KIND == "native":  # a pay-as-you-go key account (its base's path): the pair Qwen's Responses API serves
        (home / "state").mkdir()
        (home / "state" / "accounts.json").write_text(json.dumps({"accounts": [
            {"name": "payg", "kind": "key", "base_url": "http://127.0.0.1:9/compatible-mode/v1", "key_env": "BENCH_K",
             "default_model": "qwen3-coder-plus"}]}))
        os.environ["BENCH_K"] = "sk-bench"


@contextlib.asynccontextmanager
async def serving(no_doctor: bool = NO_DOCTOR) -> AsyncIterator[tuple[Any, asyncio.StreamReader, list[bytes]]]:
    """A QwenGateway with its options, its pool's one upstream connection canned: (the gateway, the reader Qwen's
    answers are fed to, the head of the first request it sent)."""
    from mitmproxy.test import taddons

    global PENDING
    from qwen_gateway import tokens
    from qwen_gateway.addon import QwenGateway
    from qwen_gateway.auth.state import AccountState
    from qwen_gateway.observe.ledger import UsageLedger
    from qwen_gateway.upstream import client as upstream_client

    was = UsageLedger.FLUSH_S, AccountState.FLUSH_S, UsageLedger.MAX_BATCH  # (put back after: a test runs this too)
    UsageLedger.FLUSH_S = AccountState.FLUSH_S = 3600.0  # batches held open: their work is per batch
    UsageLedger.MAX_BATCH = 10**6  # the ledger's rows written once, after the requests (below): one row each

    sent: list[bytes] = []

    class Sink:  # the upstream connection's writer: the request goes nowhere (its first head kept)
        def write(self, data: bytes) -> None:
            if not sent:
                sent.append(data[:200])
        async def drain(self) -> None: ...
        def is_closing(self) -> bool: return False
        def close(self) -> None: ...

    gw = QwenGateway()
    try:
        with taddons.context(gw) as tctx:
            tctx.options.update(mode=["reverse:https://portal.qwen.ai"], **SET)
            if KIND == "native":
                tctx.options.update(qwen_responses_native=True)
            gw.configure(set(tctx.options.keys()))
            gw.running()
            if no_doctor:
                gw.observers.all = [o for o in gw.observers.all if type(o).__name__ != "CacheDoctor"]
                gw.observers._index()
            if SHAPES:  # the prompt counts: the same work in every request, whenever the thread runs
                estimator = next(o for o in gw.observers.all if type(o).__name__ == "TokenEstimator")
                if COUNT == "exact":
                    tokens.encoding()
                else:  # its loading held off for good
                    estimator._warming = asyncio.get_running_loop().call_later(10**7, lambda: None)
                PENDING = estimator._pending
            reader = asyncio.StreamReader(limit=upstream_client.MAX_HEAD)
            origin = ("http", "127.0.0.1", 9)
            gw.engine.client._idle[origin] = [upstream_client._Conn(origin, reader, Sink())]
            yield gw, reader, sent
    finally:
        UsageLedger.FLUSH_S, AccountState.FLUSH_S, UsageLedger.MAX_BATCH = was


def flow(body: bytes = BODY, path: str = PATH) -> Any:
    """A client's request as mitmproxy hands it to the gateway (reverse mode)."""
    from mitmproxy import http
    from mitmproxy.proxy import mode_specs
    from mitmproxy.test import tflow

    f = tflow.tflow()
    f.request = http.Request.make("POST", "https://portal.qwen.ai" + path, body)
    f.request.headers.fields = ((b"host", b"127.0.0.1:8080"), (b"authorization", b"Bearer client-key"),
                                (b"content-type", b"application/json"), (b"content-length", b"%d" % len(body)))
    f.client_conn.proxy_mode = mode_specs.ProxyMode.parse("reverse:https://portal.qwen.ai")
    f.client_conn.sockname, f.client_conn.peername = ("127.0.0.1", 8080), ("127.0.0.1", 50000)
    return f


async def request(gw: Any, reader: asyncio.StreamReader, f: Any, answer: bytes = QWEN) -> None:
    """One request through the gateway's hooks, Qwen answering `answer`, and the observers after the answer."""
    reader.feed_data(answer)
    gw.requestheaders(f)
    await gw.request(f)
    gw.responseheaders(f)
    if (waiting := gw.response(f)) is not None:
        await waiting
    await asyncio.sleep(0)  # the observers that run after the answer
    if PENDING:
        await asyncio.gather(*PENDING)
    assert f.response is not None and f.response.status_code == 200, f.response.content


def run(n: int) -> None:
    """WARM + n whole chat requests through a QwenGateway's hooks, their flows made first (before the marks: the
    flows are the harness's work, not the gateway's)."""
    home()
    from qwen_gateway.observe.ledger import UsageLedger

    async def main() -> None:
        async with serving() as (gw, reader, sent):
            session = [(path, body, canned(answer)) for path, body, answer in SESSION] or [(PATH, BODY, QWEN)]
            flows = [(flow(body, path), answer) for path, body, answer in
                     (session[i % len(session)] for i in range(WARM + n))]
            # the ledger's INSERTs of every size it uses, prepared now, before the marks: a statement is prepared
            # once per process (observe/ledger_rows.batches), not per request
            ledger_observer = next(o for o in gw.observers.all if isinstance(o, UsageLedger))
            ledger = ledger_observer.ledger()
            for k in range(10):
                ledger.add([{"xid": f"warm-{k}-{i}"} for i in range(1 << k)])
            gc.collect()
            gc.freeze()  # the flows made are no work of the collector's during the requests
            # No collection while the requests run, one after them: whether the collector's full pass over the
            # heap (~45 M instructions) falls within the counted requests or not moved the figure by 150k a
            # request between runs of the same code. Their garbage is still collected, and counted, at the end.
            gc.disable()

            async def settle() -> None:
                gw.observers.flush()  # the observers after the answer told of every request (their batch's timer aside)
                # every request's ledger row written, in one batch: a row's work for each request, as the thread
                # does it (a batch of MAX_BATCH had been written within some runs: 500 rows for 300 requests)
                await ledger_observer.flush()
                gc.collect()

            for i, (f, answer) in enumerate(flows):
                if i == WARM:
                    await settle()
                    os.getppid()  # the first mark: callgrind's counters dumped (--dump-before=getppid)
                await request(gw, reader, f, answer)
                assert KIND in ("chat", "messages") or b'"object":"response"' in f.response.content, f.response.content
            assert (b"/compatible-mode/v1/responses " in sent[0]) == (KIND == "native"), sent
            await settle()
            os.getppid()  # the second mark

    asyncio.run(main())


def callgrind(n: int, python: bool, out: Path) -> Path:
    """One run under callgrind: WARM + n requests; the profile of the n between the marks (its file)."""
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-before=getppid", sys.executable,
           *(["-X", "perf"] if python else []), __file__, "--run", str(n)]
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    dumps = sorted(out.parent.glob(out.name + ".*"), key=lambda f: int(f.suffix[1:]))
    assert len(dumps) == 2, f"two marks expected, callgrind dumped {len(dumps)} times: {dumps}"
    return dumps[1]  # .1: start-up and the warm requests; .2: the n requests; `out`: exit


def main(argv: list[str]) -> int:
    if argv[:1] == ["--run"]:
        run(int(argv[1]))
        return 0
    n = int(next((a for i, a in enumerate(argv) if a.isdigit() and argv[i - 1:i] != ["--turn"]), "500"))
    if "--long" in argv:
        os.environ["QWEN_BENCH_HOOKS_LONG"] = "1"
    if "--no-doctor" in argv:
        os.environ["QWEN_BENCH_HOOKS_NO_DOCTOR"] = "1"
    kind = "native" if "--native" in argv else "responses" if "--responses" in argv else "chat"
    os.environ["QWEN_BENCH_HOOKS_KIND"] = kind
    what = "request with an agent's long conversation" if "--long" in argv else {
        "chat": "whole chat request", "responses": "whole Responses request (translated)",
        "native": "whole Responses request (Qwen's own Responses API)"}[kind]
    if "--shapes" in argv:
        shapes = next((a for a in argv if a.endswith(".json")), str(recorded_shapes.FILE))
        turn = argv[argv.index("--turn") + 1] if "--turn" in argv else "-1"
        count = "estimate" if "--estimate" in argv else "exact"
        os.environ.update(QWEN_BENCH_HOOKS_SHAPES=shapes, QWEN_BENCH_HOOKS_TURN=turn, QWEN_BENCH_HOOKS_COUNT=count)
        recorded = recorded_shapes.turns(shapes)
        client = "Codex" if recorded[0]["dialect"] == "responses" else "Claude Code"
        counted = f"its prompt counted {'with tiktoken' if count == 'exact' else 'as characters / 4'}"
        if turn == "all":
            n -= n % len(recorded)  # whole sessions
            assert n, f"N: at least one session's {len(recorded)} turns"
            what = f"recorded {client} request, the mean of the {len(recorded)} turns of {Path(shapes).name} " \
                   f"(whole, {counted})"
        else:
            body = recorded_shapes.request(recorded[int(turn)])
            what = f"recorded {client} request (turn {turn} of {Path(shapes).name}, {len(body):,} bytes, whole, " \
                   f"{counted})"
    options: dict[str, list[str]] = {}
    for i, a in enumerate(argv[:-1]):
        if a == "--set":
            name, _, value = argv[i + 1].partition("=")
            options.setdefault(name, []).append(value)
    if options:
        os.environ["QWEN_BENCH_HOOKS_SET"] = json.dumps(options)
        what += " with " + ", ".join(f"{k}={v}" for k, vs in options.items() for v in vs)
    if "--no-doctor" in argv:
        what += " without the cache doctor"
    with tempfile.TemporaryDirectory() as tmp:
        total = instructions(callgrind(n, False, Path(tmp) / "all.out"))
        print(f"{total / n:,.0f} instructions per {what} (the gateway's hooks, {n} requests)")
        if "--python" in argv:
            python_functions(callgrind(n, True, Path(tmp) / "perf.out"), n)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

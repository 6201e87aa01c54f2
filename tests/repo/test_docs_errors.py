"""docs/compatibility.md's error tables are what a real mitmdump answers: every row's condition is caused for
real (an emulator fault, a switch, the gateway's own refusal), every dialect asked, whole and streamed, with
raw HTTP (what a client library sees: status, headers, body, events), and the answer compared with the row.
A row this test cannot cause, or a condition it causes that has no row, fails: the tables cannot drift.

- "Each error in each dialect": the HTTP answer on OpenAI's dialects (chat, legacy completions, embeddings,
  Responses: status, `type`, `code`), on the Messages API (status, Anthropic's `type`), and the retry headers
  both carry (a retry header the row does not name must be absent; a named key's rate-limit headers, the
  dialect's family). A streamed request gets the same answer before its first byte, unless the second table
  says otherwise for its dialect.
- "Errors inside a stream": once a stream has begun, the event that ends it in each dialect.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from helpers.home import CODING_PLAN, Home
from helpers.procs import ROOT, Emulator, Gateway
from helpers.team import add_key

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

DOC = ROOT / "docs" / "compatibility.md"
OPENAI_DIALECTS = ("chat", "completions", "embeddings", "responses")
STREAMING = ("chat", "completions", "responses", "messages")
KEY = "sk-client-key"
RETRY_HEADERS = ("x-should-retry", "retry-after")


# ---- the tables ---------------------------------------------------------------------------------------------


def table(heading: str) -> list[list[str]]:
    """The rows (cells, stripped) of the first table after `heading` in compatibility.md."""
    text = DOC.read_text()
    start = text.index(f"\n{heading}\n")
    rows, seen = [], False
    for line in text[start:].splitlines()[1:]:
        if line.startswith("|"):
            seen = True
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not set("".join(cells)) <= set("-: "):
                rows.append(cells)
        elif seen:
            break
    return rows[1:]  # without the header


def ticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]*)`", cell)


def status_and_words(cell: str) -> tuple[int, list[str]]:
    m = re.match(r"(\d{3})\b", cell)
    assert m, f"no status in {cell!r}"
    return int(m.group(1)), ticked(cell)


def only(cell: str) -> tuple[str, ...]:
    """The OpenAI dialects a cell is about: those its "(only …)" names, else all."""
    m = re.search(r"\(only ([^:)]*)", cell)
    return tuple(d for d in OPENAI_DIALECTS if d in m.group(1).lower()) if m else OPENAI_DIALECTS


# a family of headers a cell names (`x-ratelimit-*`) is the dialect's that sends it
FAMILY_OF = {"x-ratelimit-": OPENAI_DIALECTS, "anthropic-ratelimit-": ("messages",)}


def header_problems(cell: str, dialect: str, headers: dict[str, str]) -> list[str]:
    """What the answer's headers lack of a cell's: `name: value` (a value `a–b`: a number within), `family-*`
    (some header of the family, for the dialect that sends it). Retry headers the cell does not name: absent."""
    problems, named = [], set()
    for h in ticked(cell) if cell not in ("–", "-") else []:
        if h.endswith("-*"):
            family = h[:-1]
            if dialect in FAMILY_OF[family] and not any(k.startswith(family) for k in headers):
                problems.append(f"no {h}")
            continue
        name, value = h.split(": ", 1)
        named.add(name)
        low, _, high = value.partition("–")
        got = headers.get(name)
        if got is None or (got != value if not high else not (low.isdigit() and int(low) <= int(got) <= int(high))):
            problems.append(f"{name}: {got} (not {value})")
    problems += [f"{name}: {headers[name]} (the table: none)" for name in RETRY_HEADERS
                 if name in headers and name not in named]
    return problems


# ---- what a client sees -------------------------------------------------------------------------------------


@dataclass
class Seen:
    status: int
    words: list[str]  # OpenAI: type, code; Anthropic: type; in a stream: the event's type (and code)
    headers: dict[str, str]
    in_stream: bool = False


REQUESTS = {
    "chat": ("/v1/chat/completions", {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}),
    "completions": ("/v1/completions", {"model": "gpt-3.5-turbo-instruct", "prompt": "hi"}),
    "embeddings": ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "hi"}),
    "responses": ("/v1/responses", {"model": "gpt-4o", "input": "hi"}),
    "messages": ("/v1/messages", {"model": "claude-sonnet-4-6", "max_tokens": 64,
                                  "messages": [{"role": "user", "content": "hi"}]}),
}


def ask(gw: Gateway, dialect: str, stream: bool, key: str = KEY, model: str | None = None) -> Seen:
    path, body = REQUESTS[dialect]
    body = {**body, "model": model or body["model"]}
    headers = {"authorization": f"Bearer {key}"}
    if dialect == "messages":
        headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
    r = httpx.post(gw.url + path, json={**body, **({"stream": True} if stream else {})}, headers=headers,
                   trust_env=False, timeout=60)
    kept = {h: v for h, v in r.headers.items() if h in RETRY_HEADERS or "ratelimit" in h}
    if r.status_code != 200:
        err = r.json()["error"]
        return Seen(r.status_code, [err["type"]] if dialect == "messages" else [err["type"], err["code"]], kept)
    assert stream, f"{dialect}: answered 200 whole: {r.text[:300]}"
    return Seen(200, stream_error(dialect, r.text), kept, in_stream=True)


def stream_error(dialect: str, text: str) -> list[str]:
    events = [(m.group(1), json.loads(m.group(2))) for m in
              re.finditer(r"(?:event: (\S+)\n)?data: (\{.*\})", text)]
    if dialect == "messages":
        found = [d["error"]["type"] for e, d in events if e == "error"]
    elif dialect == "responses":
        found = [d["response"]["error"]["code"] for _, d in events if d.get("type") == "response.failed"]
    else:
        found = [f"{d['error']['type']} {d['error']['code']}" for _, d in events if "error" in d]
    assert len(found) == 1, f"{dialect}: no single error in the stream:\n{text[-1500:]}"
    return found[0].split()


# ---- the conditions -----------------------------------------------------------------------------------------


@dataclass
class World:
    emu: Emulator
    tmp: Path
    made: list[Gateway]
    named_key: str = ""  # the named key of the last gateway made with one

    def gateway(self, *args: str, accounts: bool = True, named: tuple[str, ...] = ()) -> Gateway:
        """A fresh gateway (its own state: a refused key or a spent quota stays with an account) whose one account
        is a key on the emulator's /v1 (the Coding Plan's path, where its refusal plays), serving embeddings."""
        home = Home(self.tmp / f"gw{len(self.made)}", self.emu)
        if accounts:
            home.key("emu", path=CODING_PLAN, embeddings=True, default_model="qwen3-coder-plus")
        env = home.env()
        if named:  # a named key with these limits (qwen-keys add), which then sends one request that is answered
            self.named_key = add_key(env, "reader", *named)
        gw = Gateway(home.root / "gw", args=args, env=env)
        self.made.append(gw.start())
        if named:
            first = ask_ok(gw, self.named_key)
            assert first.status_code == 200, first.text
        return gw


def ask_ok(gw: Gateway, key: str) -> httpx.Response:
    path, body = REQUESTS["chat"]
    return httpx.post(gw.url + path, json={**body, "messages": [{"role": "user", "content": "spend the budget " * 8}]},
                      headers={"authorization": f"Bearer {key}"}, trust_env=False, timeout=60)


@dataclass(frozen=True)
class Cause:
    """How the test causes a condition: the gateway it needs, and what is done before each request (a fault
    queued, a switch set). `fresh`: a new gateway for each request (what the condition leaves behind — a key
    Qwen refused stays refused — would change the next answer)."""

    before: Callable[[Emulator], None] = lambda emu: None
    gateway: Callable[[World], Gateway] = lambda world: world.gateway()
    fresh: bool = False
    key: str = KEY  # NAMED: the gateway's named key
    model: str | None = None  # the model every dialect asks for (None: its usual one)


NAMED = "the named key"


def faulted(kind: str, **kw) -> Cause:
    return Cause(before=lambda emu: emu.fault(kind, **kw))


def with_keys_file(world: World) -> Gateway:
    keys = world.tmp / f"keys{len(world.made)}.txt"
    keys.write_text("sk-the-only-key-taken\n")
    keys.chmod(0o600)
    return world.gateway("--set", f"qwen_client_keys_file={keys}")


def usd_budget(world: World) -> Gateway:
    """A named key with a USD budget on a gateway pricing the default model only (its first request is answered):
    the emulator's account has no known billing, so every other model is unpriced there."""
    prices = world.tmp / f"prices{len(world.made)}.json"
    prices.write_text(json.dumps({"*": {"qwen3-coder-plus": {"input": 1.0, "output": 5.0}}}))
    return world.gateway("--set", f"qwen_prices_file={prices}", named=("--monthly-usd", "5"))


CAUSES: dict[str, Cause] = {  # the tables' conditions, as this test causes them
    "Qwen answers 500 (`server500`)": faulted("server500"),
    "Qwen is overloaded: 503 (`server503`)": faulted("server503"),
    "Qwen times out: 504 `stream timeout` (`timeout504`)": faulted("timeout504"),
    "Qwen cannot be reached: the connection is reset (`reset_before_headers`)": faulted("reset_before_headers",
                                                                                         count=2),
    "Qwen's quota is spent (`quota429`)": faulted("quota429"),
    "Qwen throttles, still after the gateway's two waits (`throttle429`, `Retry-After: 1`)":
        faulted("throttle429", count=3, retry_after=1),
    "Qwen refuses the account's key: 401 (`auth401`)": Cause(before=lambda emu: emu.fault("auth401"), fresh=True),
    "Qwen denies access to the model: 403 (`denied403`)": faulted("denied403"),
    "A Coding Plan refuses the client: 405 (`coding_plan_agents_only`)":
        Cause(before=lambda emu: emu.switches(coding_plan_agents_only=True)),  # httpx is no coding agent
    "The prompt is over the model's limit: Qwen's 400 (`context400`)": faulted("context400"),
    "A model nobody serves: `qwen3-coder-pluss` (Qwen's 400 `model_not_found`), answered with the nearest served "
    "names: \"Did you mean …?\"":
        Cause(model="qwen3-coder-pluss"),
    "A named key over its requests per minute: its second request (`qwen-keys add NAME --rpm 1`)":
        Cause(gateway=lambda world: world.gateway(named=("--rpm", "1")), key=NAMED),
    "A named key's daily budget spent: the request after (`qwen-keys add NAME --daily-tokens 1`)":
        Cause(gateway=lambda world: world.gateway(named=("--daily-tokens", "1")), key=NAMED),
    "A named key with a USD budget asks a model without a price on its account: `qwen3.7-flash` (`qwen-keys add "
    "NAME --monthly-usd 5`; the gateway's own, before anything is sent)":
        Cause(gateway=usd_budget, key=NAMED, model="qwen3.7-flash"),
    "No account is configured (the gateway's own)": Cause(gateway=lambda world: world.gateway(accounts=False)),
    "A wrong client key (the gateway's own)": Cause(gateway=with_keys_file, key="sk-not-the-one"),
    # inside a stream that has begun: a break the gateway continues (partial mode) only ends it when it cannot
    "Qwen's stream times out, and each of its two continuations too (`midstream504` ×3)": faulted("midstream504",
                                                                                                  count=3),
    # the account cools down for seconds after it: the next request would meet the cooldown, not Qwen's stream
    "Qwen throttles inside the stream, and no other account serves the model (`error_finish`)":
        Cause(before=lambda emu: emu.fault("error_finish"), fresh=True),
    "Qwen cuts the stream, and each of its two continuations too (`reset_midstream` ×3)": faulted("reset_midstream",
                                                                                                 count=3),
}


@pytest.fixture
def world(emu, tmp_path):  # emu: reset as the test begins (a gateway made with a named key asks at once)
    w = World(emu, tmp_path, [])
    yield w
    for gw in w.made:
        gw.stop()


def answers(world: World, condition: str) -> Callable[[str, bool], Seen]:
    """What a client asking in `dialect` (streamed or not) sees under `condition`."""
    cause = CAUSES[condition]
    kept: list[Gateway] = []

    def one(dialect: str, stream: bool) -> Seen:
        if cause.fresh or not kept:
            if kept:
                kept.pop().stop()
            kept.append(cause.gateway(world))
        world.emu.reset()
        cause.before(world.emu)
        return ask(kept[0], dialect, stream, world.named_key if cause.key == NAMED else cause.key, cause.model)
    return one


HTTP_TABLE = table("### Each error in each dialect")
STREAM_TABLE = table("### Errors inside a stream")


def test_every_condition_has_its_row_and_every_row_its_cause():
    documented = [r[0] for r in HTTP_TABLE] + [r[0] for r in STREAM_TABLE]
    assert sorted(set(documented)) == sorted(CAUSES), (sorted(set(documented) ^ set(CAUSES)))


def _in_stream(condition: str) -> dict[str, list[str]]:
    """The stream table's cells of a condition: dialect -> its event's words ("–": the HTTP answer stands)."""
    for cells in STREAM_TABLE:
        if cells[0] == condition:
            chat, responses, messages = cells[1:4]
            return {d: ticked(c) for d, c in (("chat", chat), ("completions", chat), ("responses", responses),
                                               ("messages", messages)) if ticked(c)}
    return {}


@pytest.mark.parametrize("cells", HTTP_TABLE, ids=[r[0][:50] for r in HTTP_TABLE])
def test_each_error_in_each_dialect_is_as_the_table_says(world, cells):
    condition, openai_cell, messages_cell, retry_cell = cells
    in_stream = _in_stream(condition)
    answer = answers(world, condition)
    problems = []
    for dialect in (*only(openai_cell), "messages"):
        status, words = status_and_words(messages_cell if dialect == "messages" else openai_cell)
        for stream in (False, True) if dialect in STREAMING else (False,):
            seen = answer(dialect, stream)
            said = f"{dialect}{' streamed' if stream else ''}: {seen}"
            if stream and dialect in in_stream:
                if (seen.status, seen.words, seen.in_stream) != (200, in_stream[dialect], True):
                    problems.append(f"{said} (the table: in the stream, {in_stream[dialect]})")
                continue
            if (seen.status, seen.words, seen.in_stream) != (status, words, False):
                problems.append(f"{said} (the table: {status} {words})")
            problems += [f"{said}: {p}" for p in header_problems(retry_cell, dialect, seen.headers)]
    assert problems == [], f"{condition}:\n" + "\n".join(problems)


@pytest.mark.parametrize("cells", STREAM_TABLE, ids=[r[0][:50] for r in STREAM_TABLE])
def test_each_error_inside_a_stream_is_as_the_table_says(world, cells):
    condition = cells[0]
    answer = answers(world, condition)
    problems = []
    for dialect, words in _in_stream(condition).items():
        seen = answer(dialect, True)
        if (seen.status, seen.words, seen.in_stream) != (200, words, True):
            problems.append(f"{dialect}: {seen} (the table: {words})")
    assert problems == [], f"{condition}:\n" + "\n".join(problems)

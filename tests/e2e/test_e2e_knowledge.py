"""What the gateway knows of Qwen, through real mitmdump against the strict emulator (issue 59): a cap from a
source older than the model is not applied, and Qwen's refusal naming `max_completion_tokens` teaches the real
one, used at once on the next request; the thinking budgets it derives never cause a refusal (chat, Responses,
Messages translated and passed through); a retired model and an over-long qwen4-max prompt are answered locally;
a refusal in a new wording is counted and shown; a damaged learned row is skipped; and no request of one key,
however built, changes what another key's request sends (two gateways on PostgreSQL)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import httpx
import openai
import pytest

from helpers import commands
from helpers.home import Home
from helpers.pgserver import pg_server, pg_url  # noqa: F401  (fixtures)
from helpers.procs import BIN, Gateway, until
from helpers.team import add_key, team_env

pytestmark = pytest.mark.e2e

HI = [{"role": "user", "content": "hi"}]
ANTHROPIC = {"anthropic-version": "2023-06-01"}


def key_gateway(tmp_path: Path, emu, make_gateway, *args: str) -> tuple[Gateway, Path]:
    """A gateway whose only account is a pay-as-you-go key on the emulator, writing its debug log."""
    home = Home(tmp_path, emu)
    home.key("ds", default_model="qwen3-coder-plus")
    return make_gateway(env=home.env(), args=("--set", "qwen_debug_log=true", *args)), home.state


def list_without_cap(emu, model: str = "qwen3.8-flash") -> None:
    """Model Studio's own list (read once the gateway runs) publishes the model's cap too, and the server's word
    outranks the table: whether it or the first request came first was a race. Without it, the table's cap from an
    older source is the only one the gateway has."""
    emu.switches(model_list={"override": {model: {"model_info": {"max_output_tokens": None}}}})


def client(gw: Gateway, key: str = "client-key") -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, timeout=60,
                         http_client=httpx.Client(trust_env=False))


def messages(gw: Gateway, body: dict, key: str = "client-key") -> httpx.Response:
    return httpx.post(gw.url + "/v1/messages", json=body, headers={**ANTHROPIC, "x-api-key": key}, timeout=60,
                      trust_env=False)


def sent(emu) -> list[dict]:
    """The bodies Qwen (the emulator) received: its chat API's and its Anthropic base's, in order."""
    return [r["body"] for r in emu.requests() if r["path"].endswith(("/chat/completions", "/v1/messages"))]


def notes(state: Path, exchanges: int) -> list[str]:
    files = until(lambda: (found := sorted((state / "logs").glob("exchange-*.json"))) and len(found) >= exchanges
                  and found, f"{exchanges} exchanges in the debug log")
    return [n for f in files[:exchanges] for n in json.loads(f.read_text())["summary"]["notes"]]


def usage(*args: str, env: dict[str, str]) -> str:
    r = commands.run([BIN / "qwen-usage", "learned", *args], timeout=60,
                       env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


# ---- item 3 and 4: learned from Qwen's own words, never from a source older than the model --------------------


def test_a_refusal_naming_max_completion_tokens_is_learned_and_used_next(tmp_path, emu, make_gateway):
    """qwen3.8-flash (2026-08) carries 32,768 from the table as carried since 2026-02: not applied, the client's
    60,000 goes as asked; the emulator refuses naming `max_completion_tokens` (as DashScope names the parameter
    it received); the gateway learns 32,768, sends again within it, says so, and the next request goes within it
    at once. /health, /metrics and `qwen-usage learned` show it."""
    list_without_cap(emu)
    gw, state = key_gateway(tmp_path, emu, make_gateway)
    c = client(gw)
    answer = c.chat.completions.create(model="qwen3.8-flash", max_completion_tokens=60000, messages=HI)
    assert answer.choices[0].message.content == "Echo: hi"
    assert [b["max_completion_tokens"] for b in sent(emu)] == [60000, 32768]
    said = notes(state, 1)
    assert any(n.startswith("qwen3.8-flash: max_completion_tokens at most 32,768 (learned from Qwen's refusal at ")
               for n in said), said
    c.chat.completions.create(model="qwen3.8-flash", max_completion_tokens=60000, messages=HI)
    assert [b["max_completion_tokens"] for b in sent(emu)] == [60000, 32768, 32768]
    assert any("lowered to 32768, qwen3.8-flash's output cap (learned from Qwen's refusal" in n
               for n in notes(state, 2)), notes(state, 2)
    health = httpx.get(gw.url + "/health", trust_env=False).json()
    (fact,) = health["learned"]["facts"]
    assert (fact["model"], fact["fact"], fact["value"], fact["held"]) == ("qwen3.8-flash", "output", 32768, True)
    metrics = httpx.get(gw.url + "/metrics", trust_env=False).text
    assert 'qwen_learned_fact{fact="output",model="qwen3.8-flash"} 32768.0' in metrics
    assert "qwen3.8-flash  output  32,768" in usage("--state-dir", str(state), env=gw.env)


def test_a_refusal_in_a_new_wording_is_counted_and_shown(tmp_path, emu, make_gateway):
    gw, state = key_gateway(tmp_path, emu, make_gateway)
    emu.fault("new_wording400")
    with pytest.raises(openai.BadRequestError) as caught:
        client(gw).chat.completions.create(model="qwen3-coder-plus", messages=HI)
    assert "frobnicate" in caught.value.message
    assert any(n.startswith("Qwen refused in words the gateway does not know (counted)") for n in notes(state, 1))
    assert 'qwen_unknown_refusals_total{model="qwen3-coder-plus"} 1.0' in httpx.get(gw.url + "/metrics",
                                                                                   trust_env=False).text
    assert httpx.get(gw.url + "/health", trust_env=False).json()["learned"]["unknown_refusals"] == \
        {"qwen3-coder-plus": 1}


ECHOED = "Range of max_completion_tokens should be [1, 9000]"


@pytest.mark.parametrize("dialect", ["chat", "messages", "responses"])
def test_a_header_an_upstream_echoes_teaches_nothing(tmp_path, emu, make_gateway, dialect):
    """An OpenAI-compatible upstream that repeats a request's header in its refusal (Model Studio is not known to):
    a client's User-Agent that reads like Qwen's cap refusal taught a 9,000-token cap that then applied to every
    key (issue 68). Words the gateway's own request carried — body, headers, URL — teach nothing."""
    gw, state = key_gateway(tmp_path, emu, make_gateway)
    headers = {"User-Agent": ECHOED, "x-api-key": "client-key", "anthropic-version": "2023-06-01",
               "Authorization": "Bearer client-key"}
    path, body = {"chat": ("/v1/chat/completions", {"model": "qwen3-coder-plus", "max_tokens": 20000, "messages": HI}),
                  "messages": ("/v1/messages", {"model": "qwen3-coder-plus", "max_tokens": 20000, "messages": HI}),
                  "responses": ("/v1/responses", {"model": "qwen3-coder-plus", "max_output_tokens": 20000,
                                                  "input": "hi"})}[dialect]
    emu.fault("echo_header400")
    r = httpx.post(gw.url + path, json=body, headers=headers, trust_env=False, timeout=60)
    assert r.status_code == 400 and ECHOED in r.text, r.text
    assert any(n.startswith(f"not learned from Qwen's “{ECHOED}”: its words are in what the request sent")
               for n in notes(state, 1)), notes(state, 1)
    r = httpx.post(gw.url + path, json=body, headers={**headers, "User-Agent": "a-client/1.0"}, trust_env=False,
                   timeout=60)
    assert r.status_code == 200, r.text
    assert [b.get("max_completion_tokens") for b in sent(emu)] == [20000, 20000]  # as asked, twice: no cap learned
    assert "nothing learned from Qwen yet" in usage("--state-dir", str(state), env=gw.env)


def test_a_damaged_learned_row_is_skipped_with_one_line_never_a_failed_start(tmp_path, emu, make_gateway):
    state = tmp_path / "state"
    state.mkdir()
    with sqlite3.connect(state / "learned.sqlite3") as db:
        db.execute("CREATE TABLE facts (model TEXT NOT NULL, fact TEXT NOT NULL, value INTEGER NOT NULL, "
                   "learned REAL NOT NULL, PRIMARY KEY (model, fact))")
        db.execute("INSERT INTO facts VALUES ('qwen3-coder-plus', 'output', 'a lot', 1e12)")
    with sqlite3.connect(state / "learned_caps.sqlite3") as db:  # a gateway of before, taught a 1-token cap
        db.execute("CREATE TABLE caps (model TEXT PRIMARY KEY, cap INTEGER NOT NULL, learned REAL)")
        db.execute("INSERT INTO caps VALUES ('qwen3-coder-plus', 1, 1.0)")
    gw, _ = key_gateway(tmp_path, emu, make_gateway)
    client(gw).chat.completions.create(model="qwen3-coder-plus", max_completion_tokens=8000, messages=HI)
    assert sent(emu)[-1]["max_completion_tokens"] == 8000
    log = gw.log()
    assert log.count("is not valid and is skipped") == 2 and "Traceback" not in log


def test_the_anthropic_bases_cap_refusal_teaches_the_same_fact(tmp_path, emu, make_gateway):
    """Passed through to the plan's Anthropic base (item 5: every path the same), qwen3.8-flash's cap is learned
    from the base's own words and the request sent again within it; the next goes within it at once."""
    list_without_cap(emu)
    gw, _ = key_gateway(tmp_path, emu, make_gateway, "--set", "qwen_messages_passthrough=true")
    ask = {"model": "qwen3.8-flash", "max_tokens": 40000, "messages": HI}
    assert messages(gw, ask).status_code == 200
    assert [b["max_tokens"] for b in sent(emu)] == [40000, 32768]
    assert messages(gw, ask).status_code == 200 and sent(emu)[-1]["max_tokens"] == 32768


# ---- item 2: no refusal the gateway causes -------------------------------------------------------------------


def test_efforts_and_budgets_with_small_caps_are_answered_on_chat_and_responses(tmp_path, emu, make_gateway):
    gw, _ = key_gateway(tmp_path, emu, make_gateway)
    c = client(gw)
    answer = c.chat.completions.create(model="qwen-plus", reasoning_effort="medium", max_completion_tokens=1000,
                                       messages=HI)
    assert answer.choices[0].message.content == "Echo: hi"
    assert (sent(emu)[-1]["thinking_budget"], sent(emu)[-1]["max_completion_tokens"]) == (500, 1000)
    r = c.responses.create(model="qwen-plus", input="hi", reasoning={"effort": "medium"}, max_output_tokens=1000)
    assert r.output_text == "Echo: hi" and sent(emu)[-1]["thinking_budget"] == 500
    answer = c.chat.completions.create(model="qwen-plus", max_completion_tokens=60000, messages=HI,
                                       extra_body={"enable_thinking": True, "thinking_budget": 59999})
    assert answer.choices[0].message.content == "Echo: hi"  # qwen-plus: a 32,768 cap, an 81,920 budget
    assert (sent(emu)[-1]["max_completion_tokens"], sent(emu)[-1]["thinking_budget"]) == (32768, 32767)


@pytest.mark.parametrize("passthrough", [False, True], ids=["translated", "passthrough"])
def test_claude_codes_budget_on_a_model_capped_below_it_is_answered(tmp_path, emu, make_gateway, passthrough):
    """Claude Code's max_tokens with budget_tokens one below (64,000 and 63,999 with CLAUDE_CODE_MAX_OUTPUT_TOKENS;
    32,000 and 31,999 by default, above qwen-turbo's 16,384 before it retired) on qwen-plus (32,768): the cap and
    the budget are lowered together, on the translation and on the plan's Anthropic base."""
    gw, _ = key_gateway(tmp_path, emu, make_gateway, *(("--set", "qwen_messages_passthrough=true")
                                                      if passthrough else ()))
    r = messages(gw, {"model": "qwen-plus", "max_tokens": 64000, "messages": HI,
                      "thinking": {"type": "enabled", "budget_tokens": 63999}})
    assert r.status_code == 200, r.text
    upstream = sent(emu)[-1]
    if passthrough:
        assert (upstream["max_tokens"], upstream["thinking"]["budget_tokens"]) == (32768, 32767)
    else:
        assert (upstream["max_completion_tokens"], upstream["thinking_budget"]) == (32768, 32767)


# ---- item 4: the catalogue's dates and limits answered locally -------------------------------------------------


def test_a_retired_model_is_answered_locally_naming_its_successor(tmp_path, emu, make_gateway):
    emu.switches(model_list={"unreadable": 404}, listed_models=[])  # no list from the host: the catalogue's knowledge
    gw, _ = key_gateway(tmp_path, emu, make_gateway)
    with pytest.raises(openai.NotFoundError) as caught:
        client(gw).chat.completions.create(model="qwen4-max-preview", messages=HI)
    assert caught.value.code == "model_not_found" and "Use `qwen4-max` instead" in caught.value.message
    r = messages(gw, {"model": "qwen4-max-preview", "max_tokens": 100, "messages": HI})
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
    assert sent(emu) == []  # nothing went to Qwen
    listed = {m.id: m for m in client(gw).models.list()}
    assert str(listed["qwen4-max-preview"].shutdown_date) == "2026-11-25"  # the SDK's own field
    assert listed["qwen4-max"].shutdown_date is None


def test_an_over_long_qwen4_max_prompt_is_refused_locally(tmp_path, emu, make_gateway):
    """qwen4-max takes at most 991,808 prompt tokens (source K): a prompt over it (about 6 MB) gets the context
    error at once, in the client's API, instead of an upload Qwen refuses."""
    gw, _ = key_gateway(tmp_path, emu, make_gateway)
    words = " ".join(f"w{i % 9973}x{i % 7}" for i in range(1_300_000))
    with pytest.raises(openai.BadRequestError) as caught:
        client(gw).chat.completions.create(model="qwen4-max", messages=[{"role": "user", "content": words}])
    assert caught.value.code == "context_length_exceeded" and "991808" in caught.value.message
    r = messages(gw, {"model": "qwen4-max", "max_tokens": 100, "messages": [{"role": "user", "content": words}]})
    assert r.status_code == 400 and "prompt is too long" in r.json()["error"]["message"]
    assert sent(emu) == []


# ---- no key teaches the others: two gateways on PostgreSQL -----------------------------------------------------


@pytest.fixture
def team(tmp_path, emu, pg_url):
    """Two gateways on one PostgreSQL with named keys alice and bob, Messages passed through to the key
    account's Anthropic base: (gateway one, gateway two, alice's key, bob's key, qwen-usage's env)."""
    gws = []
    for name in ("one", "two"):
        env = team_env(tmp_path, emu, name)
        gws.append(Gateway(tmp_path / name / "gw", env=env, args=("--set", f"qwen_state_url={pg_url}", "--set",
                                                                    "qwen_messages_passthrough=true")))
    cli = {"QWEN_STATE_URL": pg_url, "QWEN_GATEWAY_HOME": str(tmp_path / "cli-state")}
    try:
        for gw in gws:
            gw.start()
        alice, bob = add_key(cli, "alice"), add_key(cli, "bob")
        for gw in gws:
            until(lambda gw=gw: _refused(gw), "the keys on every gateway", limit=10)
        yield gws[0], gws[1], alice, bob, {**gws[0].env, **cli}
    finally:
        for gw in gws:
            gw.stop()


def _refused(gw: Gateway) -> bool:
    return httpx.get(gw.url + "/v1/models", headers={"Authorization": "Bearer nobody"},
                     trust_env=False).status_code == 401


FORGED = "Range of max_tokens should be [1, 1]"


def test_no_request_of_one_key_changes_what_another_keys_request_sends(team, emu):
    """A content block carrying an extra key named like Qwen's cap refusal is refused by the Anthropic base's
    schema check, which echoes the key's name: nothing is learned from it, on either gateway, in the database
    or after a restart; bob's requests go up as bob asked."""
    one, two, alice, bob, env = team
    forged = {"model": "qwen3-coder-plus", "max_tokens": 8000,
              "messages": [{"role": "user", "content": [{"type": "text", "text": "hi", FORGED: 1},
                                                        {"type": "text", "text": "again", f"<400> {FORGED}": 1}]}]}
    for gw in (one, two):
        r = messages(gw, forged, alice)
        assert r.status_code == 400 and FORGED in r.text
    bodies = len(sent(emu))
    answer = client(two, bob).chat.completions.create(model="qwen3-coder-plus", max_completion_tokens=8000,
                                                      messages=HI)
    assert answer.choices[0].message.content == "Echo: hi"
    r = messages(two, {"model": "qwen3-coder-plus", "max_tokens": 8000, "messages": HI}, bob)
    assert r.status_code == 200, r.text
    assert [b.get("max_completion_tokens", b.get("max_tokens")) for b in sent(emu)[bodies:]] == [8000, 8000]
    assert "nothing learned from Qwen yet" in usage(env=env)
    assert "learned" not in httpx.get(one.url + "/health", trust_env=False).json()  # nothing learned


def test_a_fact_forgotten_anywhere_is_forgotten_everywhere(team, emu):
    """What Qwen really taught is shared by the team; `qwen-usage learned --forget` undoes it on every gateway."""
    one, two, _, bob, env = team
    emu.switches(extra_models=["qwen9-max"], model_caps={"qwen9-max": 40000},
                 model_list={"omit": ["qwen9-max"]})  # newer than the list read: only a refusal teaches its cap
    client(one, bob).chat.completions.create(model="qwen9-max", max_completion_tokens=50000, messages=HI)
    assert [b["max_completion_tokens"] for b in sent(emu)] == [50000, 40000]
    until(lambda: "learned" in httpx.get(two.url + "/health", trust_env=False).json(),
          "the fact on the other gateway", limit=5)
    client(two, bob).chat.completions.create(model="qwen9-max", max_completion_tokens=50000, messages=HI)
    assert sent(emu)[-1]["max_completion_tokens"] == 40000  # paid once by the team
    out = usage("--forget", "qwen9-max", env=env)
    assert out.startswith("forgot 1 fact of qwen9-max in the shared database")
    for gw in (one, two):
        until(lambda gw=gw: "learned" not in httpx.get(gw.url + "/health", trust_env=False).json(),
              "the fact forgotten on every gateway", limit=5)
    client(two, bob).chat.completions.create(model="qwen9-max", max_completion_tokens=50000, messages=HI)
    assert [b["max_completion_tokens"] for b in sent(emu)][-2:] == [50000, 40000]  # asked of Qwen again

"""Cache diagnostics in the clients' own API (issue 61, item 1), through a real mitmdump to the emulator: the
real `anthropic` SDK's `diagnostics.previous_message_id` and openai-python's
`prompt_cache_options.comparison_response_id`, each injected change named in the SDK's own types, a grown
conversation naming nothing, and another key's response never found."""

from __future__ import annotations

import pytest
from openai.types.responses.response import PromptCacheDiagnosticsCacheMiss

from helpers.home import CODING_PLAN, Home
from helpers.procs import Gateway
from helpers.team import ANTHROPIC_PYTHON, NO_ANTHROPIC, add_key, anthropic_calls, openai_client, team_env

pytestmark = pytest.mark.e2e

SYSTEM = "You are a careful coding agent. Read every file before you change it. " * 40
TOOL = {"name": "Read", "description": "Read a file.", "input_schema": {"type": "object", "properties": {
    "path": {"type": "string"}}}}
BASH = {"name": "Bash", "description": "Run a command.", "input_schema": {"type": "object", "properties": {
    "command": {"type": "string"}}}}
needs_sdk = pytest.mark.skipif(not ANTHROPIC_PYTHON.exists(), reason=NO_ANTHROPIC)


@pytest.fixture(scope="module")
def team(tmp_path_factory, emulator):
    """One gateway, two named keys (a key never compares with another key's response)."""
    tmp = tmp_path_factory.mktemp("diagnostics")
    env = team_env(tmp, emulator)
    keys = {name: add_key(env, name) for name in ("alice", "bob")}
    gw = Gateway(tmp / "team" / "gw", env=env).start()
    yield gw, keys
    gw.stop()


def params(turns: int, *, system: str = SYSTEM, tools=(TOOL,), model: str = "claude-sonnet-4-6") -> dict:
    messages = []
    for i in range(turns):
        messages += [{"role": "user", "content": f"Fix the bug in file {i}. " * 20},
                     {"role": "assistant", "content": f"Fixed file {i}."}]
    return {"model": model, "max_tokens": 32, "system": system, "tools": list(tools), "messages": messages[:-1]}


CHANGES = {
    "system_changed": params(3, system=SYSTEM + " Today is Friday."),
    "tools_changed": params(3, tools=(TOOL, BASH)),
    "model_changed": params(3, model="qwen3-coder-flash"),
    "messages_changed": {**params(3), "messages": [{"role": "user", "content": "An edited first request."},
                                                   *params(3)["messages"][1:]]},
}


@needs_sdk
@pytest.mark.parametrize("op", ["create", "stream"])
def test_the_anthropic_sdk_reads_each_injected_change_in_its_own_types(team, op):
    gw, keys = team
    calls = [{"op": op, "params": params(2), "diagnose": True, "previous": None},  # a first turn
             {"op": op, "params": params(3), "diagnose": True}]  # grown: nothing to say
    calls += [{"op": op, "params": changed, "diagnose": True, "against": 1} for changed in CHANGES.values()]
    calls.append({"op": op, "params": params(4), "diagnose": True, "previous": "msg_011CZnotOneOfOurs"})
    for c in calls:  # each op's own prefixes: Qwen's cache holds nothing the other op stored
        c["params"] = {**c["params"], "system": c["params"]["system"] + f" [{op}]"}
    out = [o["answer"] for o in anthropic_calls(gw.url, keys["alice"], calls)]
    messages = [o["message"] if op == "stream" else o for o in out]
    assert "diagnostics" not in messages[0] and "diagnostics" not in messages[1]  # null: the SDK's None
    said = [m["diagnostics"]["cache_miss_reason"] for m in messages[2:]]
    assert [r["type"] for r in said] == [*CHANGES, "previous_message_not_found"]
    assert all(r["cache_missed_input_tokens"] > 0 for r in said[:-1])
    # the estimate against what Qwen (the emulator) then did not read: within 10 % (issue 71: it assumed Qwen
    # could go on right before the change; Qwen goes on only from a prefix it stored, at a marker)
    for m, r in zip(messages[2:-1], said[:-1]):
        u = m["usage"]
        unread = u["input_tokens"] + (u.get("cache_creation_input_tokens") or 0)
        assert abs(r["cache_missed_input_tokens"] - unread) <= 0.1 * unread, (r, u)
    assert [m["reason_class"] for m in messages[2:]] == [
        "CacheMissSystemChanged", "CacheMissToolsChanged", "CacheMissModelChanged", "CacheMissMessagesChanged",
        "CacheMissPreviousMessageNotFound"]  # the SDK's own classes
    if op == "stream":  # said on message_start, as the answer begins
        assert [o["start_diagnostics"].get("diagnostics") for o in out[2:]] == [m["diagnostics"] for m in messages[2:]]


@needs_sdk
@pytest.mark.parametrize("op", ["create", "stream"])
def test_a_qwen_side_miss_is_said_in_a_value_the_sdk_defines(team, emulator, op):
    """The same prefix, and Qwen read none of it (the emulator's cache clock moved past the lifetime, the gateway's
    did not: for the gateway Qwen dropped it, an eviction): never `cache_miss_reason: null`,
    which the SDK reads as "still pending", but Anthropic's `unavailable`, with what Qwen did beside it; on a
    stream, on `message_delta`, since `message_start` goes out before Qwen's usage exists (issue 71)."""
    gw, keys = team
    (first,) = anthropic_calls(gw.url, keys["bob"], [{"op": op, "params": params(5), "diagnose": True,
                                                       "previous": None}])
    first_id = first["answer"]["message"]["id"] if op == "stream" else first["answer"]["id"]
    emulator.admin("POST", "cache", {"advance": 301})  # past Qwen's five minutes
    (out,) = anthropic_calls(gw.url, keys["bob"], [{"op": op, "params": params(6), "diagnose": True,
                                                     "previous": first_id}])
    said = out["answer"]["delta_diagnostics"] if op == "stream" else out["answer"]["diagnostics"]
    assert said["cache_miss_reason"] == {"type": "unavailable"}, said
    assert said["qwen_cache_miss"]["type"] == "evicted" and said["qwen_cache_miss"]["cache_missed_input_tokens"] > 0
    if op == "stream":
        assert out["answer"]["start_diagnostics"] == {}  # nothing known as the answer began
    else:
        assert out["answer"]["reason_class"] == "CacheMissUnavailable"  # the SDK's own class, not None


@needs_sdk
def test_a_failover_mid_conversation_is_said_on_the_streams_message_delta(tmp_path, emu, make_gateway):
    """The account that served a streamed conversation's first turn runs out of quota: the second turn goes to the
    other account, whose cache holds nothing of it — the same prefix, nothing read: `message_start` cannot know it
    (Qwen's usage comes at the end), `message_delta` says it, Anthropic's `unavailable` with `other_account`."""
    home = Home(tmp_path, emu)
    for n in ("a", "b"):
        home.key(n, path=CODING_PLAN, key_env=f"KEY_{n.upper()}", default_model="qwen3-coder-plus")
    gw = make_gateway(env=home.env())
    turn = [{"op": "stream", "params": {**params(5), "system": SYSTEM + " [failover]"}, "diagnose": True,
             "previous": None}]
    (first,) = anthropic_calls(gw.url, "client-key", turn)
    served = emu.chat_requests()[-1]["headers"]["authorization"].removeprefix("Bearer ")
    emu.fault("quota429", token=served)  # its next request: out of quota, the other account goes on
    then = [{"op": "stream", "params": {**params(6), "system": SYSTEM + " [failover]"}, "diagnose": True,
             "previous": first["answer"]["message"]["id"]}]
    (second,) = anthropic_calls(gw.url, "client-key", then)
    assert emu.chat_requests()[-1]["headers"]["authorization"] != f"Bearer {served}"  # the other account
    said = second["answer"]["delta_diagnostics"]
    assert second["answer"]["start_diagnostics"] == {} and said["cache_miss_reason"] == {"type": "unavailable"}, said
    assert said["qwen_cache_miss"]["type"] == "other_account" and said["qwen_cache_miss"]["cache_missed_input_tokens"]


@needs_sdk
def test_the_missed_tokens_of_a_tool_added_count_from_where_qwen_stored_a_prefix(team):
    """Claude Code's shape: its system prompt marked, many tools, its newest message marked. A tool added at the end
    changes the prefix after every other tool, but Qwen goes on only from a prefix it stored — the system
    prompt's — so every tool is read again: the estimate counts from there, within 10 % of what Qwen (the
    emulator) then did not read (issue 71: it counted from the new tool, several times too low)."""
    gw, keys = team
    tools = [{"name": f"Tool{i}", "description": f"Tool {i} does its one thing carefully. " * 12,
              "input_schema": {"type": "object", "properties": {"arg": {"type": "string"}}}} for i in range(12)]
    system = [{"type": "text", "text": SYSTEM * 2 + " [tools]", "cache_control": {"type": "ephemeral"}}]  # stored

    def turn(n: int, extra: tuple = ()) -> dict:
        body = params(n, tools=(*tools, *extra))
        last = body["messages"][-1]
        body["messages"][-1] = {"role": "user", "content": [{"type": "text", "text": last["content"],
                                                             "cache_control": {"type": "ephemeral"}}]}
        return {**body, "system": system}

    calls = [{"op": "create", "params": turn(2), "diagnose": True, "previous": None},
             {"op": "create", "params": turn(3), "diagnose": True},
             {"op": "create", "params": turn(3, (BASH,)), "diagnose": True, "against": 1}]
    out = [o["answer"] for o in anthropic_calls(gw.url, keys["alice"], calls)]
    said, u = out[2]["diagnostics"]["cache_miss_reason"], out[2]["usage"]
    unread = u["input_tokens"] + (u.get("cache_creation_input_tokens") or 0)
    assert said["type"] == "tools_changed" and u["cache_read_input_tokens"] > 0, (said, u)  # the system's prefix read
    assert abs(said["cache_missed_input_tokens"] - unread) <= 0.1 * unread, (said, u)


@needs_sdk
def test_another_keys_message_is_never_found(team):
    gw, keys = team
    (first,) = anthropic_calls(gw.url, keys["alice"], [{"op": "create", "params": params(2), "diagnose": True,
                                                        "previous": None}])
    mine = first["answer"]["id"]
    (theirs,) = anthropic_calls(gw.url, keys["bob"], [{"op": "create", "params": params(3), "diagnose": True,
                                                       "previous": mine}])
    (own,) = anthropic_calls(gw.url, keys["alice"], [{"op": "create", "params": params(3), "diagnose": True,
                                                      "previous": mine}])
    assert theirs["answer"]["diagnostics"]["cache_miss_reason"]["type"] == "previous_message_not_found"
    assert "diagnostics" not in own["answer"]  # her own, the conversation grown: nothing to say


@pytest.mark.parametrize("stream", [False, True])
def test_the_openai_sdk_reads_prompt_cache_diagnostics(team, stream):
    gw, keys = team
    alice, bob = openai_client(gw.url, keys["alice"]), openai_client(gw.url, keys["bob"])
    opening = [{"role": "developer", "content": SYSTEM}, {"role": "user", "content": "Fix file 0. " * 20}]

    def ask(client, model="gpt-4o", compare=None, extra=()):
        kwargs = {"prompt_cache_options": {"comparison_response_id": compare}} if compare else {}
        items = [*opening, *extra]
        if not stream:
            return client.responses.create(model=model, input=items, **kwargs)
        with client.responses.stream(model=model, input=items, **kwargs) as s:
            created = next(e for e in s if e.type == "response.created").response.prompt_cache_diagnostics
            final = s.get_final_response().prompt_cache_diagnostics
            # the same outcome; the tokens missed an estimate as the stream begins, the doctor's figure at its end
            assert [(getattr(d, "type", None), getattr(d, "reason", None)) for d in (created, final)] == 2 * [
                (getattr(final, "type", None), getattr(final, "reason", None))]
            return s.get_final_response()

    first = ask(alice)
    grown = ask(alice, compare=first.id, extra=[{"role": "user", "content": "And file 1."}])
    assert grown.prompt_cache_diagnostics.type == "cache_hit"
    other = ask(alice, model="qwen3-coder-flash", compare=first.id)
    assert isinstance(other.prompt_cache_diagnostics, PromptCacheDiagnosticsCacheMiss)
    assert (other.prompt_cache_diagnostics.reason, other.prompt_cache_diagnostics.cache_missed_tokens > 0) == (
        "model_changed", True)
    assert ask(bob, compare=first.id).prompt_cache_diagnostics.type == "comparison_response_not_found"


def test_a_background_run_answers_prompt_cache_diagnostics(team):
    """`background: true`: the run's stored Response carries the comparison, as the SDK retrieves it once the run
    completed; a background response is itself kept under its id for a later request to name."""
    import time

    gw, keys = team
    alice = openai_client(gw.url, keys["alice"])
    opening = [{"role": "developer", "content": SYSTEM}, {"role": "user", "content": "Fix file 7. " * 20}]

    def run(model="gpt-4o", compare=None, extra=()):
        kwargs = {"prompt_cache_options": {"comparison_response_id": compare}} if compare else {}
        queued = alice.responses.create(model=model, input=[*opening, *extra], background=True, **kwargs)
        deadline = time.monotonic() + 30
        while (got := alice.responses.retrieve(queued.id)).status in ("queued", "in_progress"):
            assert time.monotonic() < deadline, got.status
            time.sleep(0.2)
        assert got.status == "completed", got
        return got

    first = run()
    assert first.prompt_cache_diagnostics is None  # it named none
    grown = run(compare=first.id, extra=[{"role": "user", "content": "And file 8."}])
    assert grown.prompt_cache_diagnostics is not None and grown.prompt_cache_diagnostics.type == "cache_hit"
    other = run(model="qwen3-coder-flash", compare=grown.id)
    assert isinstance(other.prompt_cache_diagnostics, PromptCacheDiagnosticsCacheMiss), other.prompt_cache_diagnostics
    assert (other.prompt_cache_diagnostics.reason, other.prompt_cache_diagnostics.cache_missed_tokens > 0) == (
        "model_changed", True)

"""A conversation stays on its account (upstream/pool/affinity.py, the pool), a group of keys cools down together, and the
windows DashScope names keep an account away for as long as the plan defines them (upstream/pool/windows.py). The
conversation a request continues, per dialect (api/conversation.py). No process: the pool over fake accounts."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from qwen_gateway.api import conversation
from qwen_gateway.upstream.pool.affinity import Affinity
from qwen_gateway.accounts import KEY, Conversation, Credential, Window
from qwen_gateway.auth.account import Account
from qwen_gateway.auth.key_account import KeyAccount
from qwen_gateway.upstream.pool.pool import AccountPool, PoolExhausted

UTC8 = 8 * 3600


class Fake(Account):
    kind = KEY

    def __init__(self, name: str, group: str | None = None, month_day: int | None = None) -> None:
        self.name, self.group, self.month_day = name, group, month_day

    def ready(self) -> Credential:
        return Credential(self.name, KEY, f"http://{self.name}.test/v1", f"secret-{self.name}")

    async def credential(self, *, force_refresh=False, refused=None) -> Credential:
        return self.ready()

    def status(self) -> dict:
        return {"name": self.name, "kind": self.kind, "state": "ok", "base_url": f"http://{self.name}.test/v1"}


def conv(n: int) -> Conversation:
    return Conversation(f"conversation-{n}", "opening")


# ---- affinity in the pool ------------------------------------------------------------------------------


async def test_each_conversation_stays_on_one_account_and_new_ones_spread(state):
    """3 accounts, 12 conversations of 6 turns, their turns interleaved: round-robin put a conversation's turns
    on three accounts; each now has one, and the 12 are spread 4, 4, 4."""
    pool = AccountPool([Fake("a"), Fake("b"), Fake("c")], state)
    served: dict[int, list[str]] = {n: [] for n in range(12)}
    for _turn in range(6):
        for n in range(12):
            served[n].append((await pool.acquire(conversation=conv(n))).account)
    assert all(len(set(accounts)) == 1 for accounts in served.values()), served
    assert Counter(accounts[0] for accounts in served.values()) == {"a": 4, "b": 4, "c": 4}


async def test_the_entry_lasts_as_long_as_the_cache_the_conversation_asked(state):
    """Five minutes, Qwen's explicit cache; an hour once the body Qwen got asked Qwen4's hour (`hold`)."""
    pool = AccountPool([Fake("a"), Fake("b")], state)
    c = conv(1)
    await pool.acquire(conversation=c)
    until = pool.affinity._entries[c.key][1]
    assert time.time() + 290 <= until <= time.time() + 300
    c.lifetime_s = 3600
    pool.hold(c, "a")
    assert pool.affinity._entries[c.key][1] >= time.time() + 3590
    assert (await pool.acquire(conversation=conv(1))).account == "a"
    assert pool.affinity._entries[c.key][1] >= time.time() + 3590  # a later turn without its body keeps the hour


async def test_requests_without_a_conversation_keep_the_round_robin(state):
    pool = AccountPool([Fake("a"), Fake("b"), Fake("c")], state)
    assert (await pool.acquire(conversation=conv(1))).account == "a"
    assert [(await pool.acquire()).account for _ in range(3)] == ["b", "c", "a"]
    assert (await pool.acquire(conversation=conv(1))).account == "a"  # its account, the turn taking no turn
    assert (await pool.acquire()).account == "b"


async def test_a_failover_moves_the_conversation_and_it_stays_moved(state):
    pool = AccountPool([Fake("a"), Fake("b"), Fake("c")], state)
    assert (await pool.acquire(conversation=conv(1))).account == "a"
    pool.report("a", "quota", retry_after=60)
    moved = (await pool.acquire(exclude=["a"], conversation=conv(1))).account
    assert moved in ("b", "c")
    state.set("a", cooldown_until=0, last_error=None)  # a is usable again
    assert [(await pool.acquire(conversation=conv(1))).account for _ in range(3)] == [moved] * 3
    assert (await pool.acquire(exclude=[moved], conversation=conv(1))).account not in (moved,)


async def test_a_throttled_account_keeps_its_conversation_once_back(state):
    pool = AccountPool([Fake("a"), Fake("b")], state)
    assert (await pool.acquire(conversation=conv(1))).account == "a"
    pool.report("a", "throttle", retry_after=0)  # back at once: the retry policy waited already
    assert (await pool.acquire(conversation=conv(1))).account == "a"


async def test_an_unreachable_server_cools_briefly_and_its_conversations_move_on(state):
    pool = AccountPool([Fake("a"), Fake("b")], state)
    assert (await pool.acquire(conversation=conv(1))).account == "a"
    pool.report("a", "unreachable", detail="cannot connect to 10.0.0.9:8000: Connection refused")
    assert state.get("a")["last_error"].startswith("unreachable: cannot connect")
    assert 0 < state.get("a")["cooldown_until"] - time.time() <= 1.5  # 1 s, doubling while it stays down
    assert (await pool.acquire(conversation=conv(1))).account == "b"  # not sent to a server that is down
    pool.report("a", "unreachable")
    assert 1.5 < state.get("a")["cooldown_until"] - time.time() <= 2.5


async def test_a_new_conversation_goes_to_the_shortest_queue_and_an_old_one_stays(state):
    pool = AccountPool([Fake("a"), Fake("b"), Fake("c")], state)
    assert (await pool.acquire(conversation=conv(1))).account == "a"
    pool.load("a", 6)
    pool.load("b", 0)
    pool.load("c", 2)
    assert (await pool.acquire(conversation=conv(1))).account == "a"  # its prefix is there: slow is not dead
    assert [(await pool.acquire(conversation=conv(n))).account for n in (2, 3)] == ["b", "b"]
    pool.load("b", 9)
    assert (await pool.acquire(conversation=conv(4))).account == "c"
    pool.load("a", None)  # not known: counted as none queued
    assert (await pool.acquire(conversation=conv(5))).account == "a"


async def test_a_bound_request_gets_only_its_accounts_and_names_no_other(state):
    pool = AccountPool([Fake("ms"), Fake("gpu1"), Fake("gpu2")], state)
    only = {"gpu1", "gpu2"}.__contains__
    got = [(await pool.acquire(conversation=conv(n), only=lambda name, provider: only(name))).account
           for n in range(4)]
    assert set(got) == {"gpu1", "gpu2"}
    pool.report("gpu1", "quota", retry_after=60)
    pool.report("gpu2", "quota", retry_after=60)
    with pytest.raises(PoolExhausted) as e:
        await pool.acquire(only=lambda name, provider: only(name))
    assert "gpu1:" in str(e.value) and "ms:" not in str(e.value)  # the others never named
    with pytest.raises(PoolExhausted, match="bound to"):
        await pool.acquire(only=lambda name, provider: False)


def test_affinity_is_bounded_and_lapses():
    aff = Affinity(ttl_s=60, max_entries=3)
    for n in range(5):
        aff.keep(f"k{n}", "a")
    assert len(aff) == 3 and aff.get("k0") is None and aff.get("k4") == "a"
    aff.keep("k2", "b")  # used again: the most recent, moved to b
    aff.keep("k5", "a")
    assert aff.get("k3") is None and aff.get("k2") == "b"
    aff._entries["k2"] = ("b", time.time() - 1, 0.0)
    assert aff.get("k2") is None and len(aff) == 2


# ---- groups and windows ---------------------------------------------------------------------------------


async def test_a_quota_window_cools_the_whole_group_until_it_ends(state):
    pool = AccountPool([Fake("a1", "acme"), Fake("a2", "acme"), Fake("b")], state)
    before = time.time()
    pool.report("a1", "quota", detail="hour allocated quota exceeded", window=Window.FIVE_HOURS)
    rows = {r["name"]: r for r in pool.status()}
    for name in ("a1", "a2"):
        until = state.get(name)["cooldown_until"]
        assert before + 5 * 3600 <= until <= time.time() + 5 * 3600
        assert rows[name]["state"] == "cooling_down" and rows[name]["window"] == "5h"
    assert rows["a1"]["last_error"].startswith('quota exhausted: Coding Plan 5-hour quota, back at ')
    assert rows["a1"]["last_error"].endswith('(Qwen said: "hour allocated quota exceeded")')
    assert "through a1, a key of the same Alibaba Cloud account (group)" in rows["a2"]["last_error"]
    assert rows["b"]["state"] == "ok" and "window" not in rows["b"]
    assert [(await pool.acquire()).account for _ in range(2)] == ["b", "b"]


async def test_a_throttle_cools_the_group_for_seconds_and_names_what_ran_out(state):
    pool = AccountPool([Fake("a1", "acme"), Fake("a2", "acme")], state)
    pool.report("a1", "throttle", detail="You exceeded your current quota, please check your plan and billing "
                "details.", window=Window.TPM)
    with pytest.raises(PoolExhausted) as e:
        await pool.acquire()
    assert e.value.throttled and e.value.retry_at <= time.time() + 1.5  # seconds: a rate limit, not a quota
    assert "a2: throttled: tokens per minute (TPM)" in str(e.value)
    assert {r["window"] for r in pool.status()} == {"tpm"}


async def test_weekly_and_monthly_windows_end_as_the_coding_plan_defines(state):
    pool = AccountPool([Fake("w"), Fake("m", month_day=15), Fake("d")], state)
    pool.report("w", "quota", window=Window.WEEK)
    pool.report("m", "quota", window=Window.MONTH)
    pool.report("d", "quota", window=Window.MONTH)  # no subscription day known: tried again at the next 00:00 UTC+8
    week, month, day = (time.gmtime(state.get(n)["cooldown_until"] + UTC8) for n in ("w", "m", "d"))
    assert (week.tm_wday, week.tm_hour, week.tm_min) == (0, 0, 0)
    assert (month.tm_mday, month.tm_hour) == (15, 0)
    assert day.tm_hour == 0 and state.get("d")["cooldown_until"] - time.time() <= 86400
    assert {r["name"]: r["window"] for r in pool.status()} == {"w": "week", "m": "month", "d": "month"}


def test_a_key_account_reads_its_group_and_subscription_day():
    acct = KeyAccount({"name": "k", "base_url": "http://x/v1", "key": "sk-1", "group": "acme", "month_day": 9})
    assert (acct.group, acct.month_day) == ("acme", 9) and acct.status()["group"] == "acme"
    plain = KeyAccount({"name": "p", "base_url": "http://x/v1", "key": "sk-1"})
    assert plain.group is None and "group" not in plain.status()


# ---- which conversation a request continues (api/conversation.py) -------------------------------------


CLAUDE_USER = json.dumps({"device_id": "d" * 64, "account_uuid": "", "session_id": "5d0c1a4e-0000-4000-8000-0000000000aa"})


def chat(*messages) -> dict:
    return {"messages": list(messages)}


SYSTEM = {"role": "system", "content": "You are a coding agent."}
FIRST = {"role": "user", "content": "fix the bug"}


def test_claude_code_session_id_names_the_conversation():
    c = conversation.of({"metadata": {"user_id": CLAUDE_USER}}, chat(SYSTEM, FIRST))
    assert c is not None and c.source == "session"
    other_turn = conversation.of({"metadata": {"user_id": CLAUDE_USER}}, chat(SYSTEM, {"role": "user", "content": "x"}))
    assert other_turn == c
    old = conversation.of({"metadata": {"user_id": "user_ab_account__session_5d0c1a4e-0000-4000-8000-0000000000aa"}},
                          chat(FIRST))
    assert old == c  # the older user_id format, the same session
    assert "5d0c1a4e" not in c.key  # a digest, never the id


def test_prompt_cache_key_then_user_then_the_opening():
    codex = conversation.of({"prompt_cache_key": "019a-codex-thread", "user": "bob"}, chat(FIRST))
    assert codex.source == "prompt_cache_key"
    assert conversation.of({"user": "bob"}, chat(FIRST)).source == "user"
    assert conversation.of({"metadata": {"user_id": "bob"}}, chat(FIRST)) == conversation.of({"user": "bob"}, chat(FIRST))
    turn1 = conversation.of({}, chat(SYSTEM, FIRST))
    turn3 = conversation.of({}, chat(SYSTEM, FIRST, {"role": "assistant", "content": "done"},
                                     {"role": "user", "content": "thanks"}))
    parts = conversation.of({}, chat({"role": "system", "content": [{"type": "text", "text": "You are a coding agent."}]},
                                     FIRST))
    assert turn1 == turn3 == parts and turn1.source == "opening"
    assert conversation.of({}, chat(SYSTEM, {"role": "user", "content": "another task"})) != turn1
    assert conversation.of({}, chat()) is None and conversation.of({}, {}) is None


# ---- a new conversation where its shared prefix is cached (issue 61 item 4) ----------------------------------

TOOLS = [{"type": "function", "function": {"name": f"tool_{i}", "description": "Reads a file. " * 40,
                                           "parameters": {"type": "object", "properties": {}}}} for i in range(12)]
AGENT = {"role": "system", "content": [{"type": "text", "text": "x-billing: cc_version=2.1"},
                                       {"type": "text", "text": "You are Claude Code."}]}


def session(n: int, *, tools=TOOLS, system=AGENT, model="qwen3-coder-plus") -> Conversation:
    user_id = json.dumps({"device_id": "d" * 64, "account_uuid": "", "session_id": f"session-{n}"})
    c = conversation.of({"metadata": {"user_id": user_id}},
                        {"model": model, "tools": tools, "messages": [system, {"role": "user", "content": f"task {n}"}]})
    assert c is not None
    return c


def test_sessions_that_share_tools_and_system_share_a_prefix():
    first, second = session(1), session(2)
    assert first.key != second.key  # two conversations
    assert first.prefix is not None and first.prefix() == second.prefix()  # one prefix Qwen caches for both
    plain = {"role": "system", "content": "x-billing: cc_version=2.1You are Claude Code."}
    assert session(3, system=plain).prefix() == first.prefix()  # a string and its text parts: the same prompt
    assert session(4, tools=TOOLS[:-1]).prefix() != first.prefix()
    assert session(5, model="qwen3-coder-flash").prefix() != first.prefix()  # each model its own cache
    assert session(6, tools=TOOLS[:1]).prefix() is None  # under Qwen's 1,024 tokens: nothing cached, no place


async def test_a_new_conversation_goes_to_the_account_that_holds_its_prefix(state):
    """Round-robin would put session 2 on b; a holds the tools and system prompt session 1 wrote minutes ago."""
    pool = AccountPool([Fake("a"), Fake("b"), Fake("c")], state)
    assert (await pool.acquire(conversation=session(1))).account == "a"
    assert [(await pool.acquire(conversation=session(n))).account for n in (2, 3)] == ["a", "a"]
    other = await pool.acquire(conversation=session(4, tools=TOOLS[:-1]))  # another prefix: the round-robin
    assert other.account == "b"
    pool.report("a", "quota", retry_after=60)  # a cools down: the next new session goes elsewhere, and there
    moved = (await pool.acquire(conversation=session(5))).account  # the prefix now lives
    assert moved != "a"
    assert (await pool.acquire(conversation=session(6))).account == moved
    assert (await pool.acquire(conversation=session(1))).account != "a"  # session 1 fails over (its a cools)

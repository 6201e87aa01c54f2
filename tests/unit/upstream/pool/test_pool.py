"""The account pool with in-memory accounts: rotation, cooldowns, exhaustion, refreshes, start-up lines."""

from __future__ import annotations

import asyncio
import inspect
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qwen_gateway.accounts import KEY, OAUTH, AccountUnavailable, Credential, Outcome, Pool
from qwen_gateway.auth.account import Account
from qwen_gateway.auth.key_account import KeyAccount
from qwen_gateway.upstream.pool.pool import AccountPool, PoolExhausted, next_reset
from qwen_gateway.auth.registry import Registry
from qwen_gateway.auth.state import AccountState


class FakeAccount(Account):
    def __init__(self, name: str, *, fail: AccountUnavailable | None = None, kind: str = KEY) -> None:
        self.name = name
        self.kind = kind
        self.fail = fail
        self.forced = 0

    async def credential(self, *, force_refresh: bool = False, refused: str | None = None) -> Credential:
        self.forced += force_refresh
        if self.fail:
            raise self.fail
        return Credential(self.name, self.kind, f"http://{self.name}.test/v1", f"secret-{self.name}")

    def status(self) -> dict:
        return {"name": self.name, "kind": self.kind, "state": "ok" if not self.fail else "missing",
                "base_url": f"http://{self.name}.test/v1"}


async def test_round_robin_and_exclude(state):
    pool = AccountPool([FakeAccount("a"), FakeAccount("b"), FakeAccount("c")], state)
    assert [(await pool.acquire()).account for _ in range(4)] == ["a", "b", "c", "a"]
    assert (await pool.acquire(exclude={"b"})).account == "c"
    assert (await pool.acquire(exclude=["a", "c"])).account == "b"


async def test_quota_rotates_and_exhaustion_names_every_account(state):
    pool = AccountPool([FakeAccount("a"), FakeAccount("b")], state)
    first = await pool.acquire()
    pool.report(first.account, "quota")
    assert (await pool.acquire()).account == "b"
    assert (await pool.acquire()).account == "b"
    pool.report("b", "quota", retry_after=60)
    with pytest.raises(PoolExhausted) as e:
        await pool.acquire()
    assert isinstance(e.value, AccountUnavailable) and not e.value.needs_login
    assert time.time() + 55 < e.value.retry_at <= time.time() + 61  # b comes back first (a: next reset)
    assert "a: quota exhausted, cooling down until" in str(e.value) and "b: quota exhausted" in str(e.value)
    states = {r["name"]: (r["state"], r["cooldown_until"]) for r in pool.status()}
    assert states["a"][0] == states["b"][0] == "cooling_down" and states["a"][1].endswith("Z")


async def test_quota_default_cooldown_is_the_next_reset(state):
    pool = AccountPool([FakeAccount("a")], state, reset_hour_utc=16)
    pool.report("a", "quota")
    until = state.get("a")["cooldown_until"]
    assert until == next_reset(time.time(), 16) and time.gmtime(until).tm_hour == 16


async def test_throttle_backs_off_and_ok_resets(state):
    pool = AccountPool([FakeAccount("a")], state)
    waits = []
    for _ in range(7):
        now = time.time()
        pool.report("a", "throttle")
        waits.append(round(state.get("a")["cooldown_until"] - now))
    assert waits == [1, 2, 4, 8, 16, 30, 30]
    pool.report("a", "ok")
    now = time.time()
    pool.report("a", "throttle", retry_after=3)
    assert round(state.get("a")["cooldown_until"] - now) == 3
    pool.report("a", "throttle", retry_after=0)
    assert (await pool.acquire()).account == "a"


async def test_ok_counts_and_other_outcomes_change_nothing(state, tmp_path):
    pool = AccountPool([FakeAccount("a")], state)
    for _ in range(3):
        pool.report("a", "ok")
    pool.report("a", Outcome.ERROR)
    pool.report("a", "auth")  # the string value is accepted too
    assert pool.status()[0]["requests_today"] == 3 and pool.status()[0]["state"] == "ok"
    with pytest.raises(ValueError, match="unknown outcome"):
        pool.report("a", "bogus")
    state.flush()
    other = AccountState(tmp_path / "state.sqlite3")  # persisted
    assert other.requests_today("a") == 3
    other.close()


async def test_needs_login_everywhere_is_a_login_error(state):
    dead = AccountUnavailable("a: Refresh token expired or invalid; run `qwen-auth login`", needs_login=True)
    pool = AccountPool([FakeAccount("a", fail=dead, kind=OAUTH)], state)
    with pytest.raises(PoolExhausted) as e:
        await pool.acquire()
    assert e.value.needs_login and e.value.retry_at is None and "qwen-auth login" in str(e.value)


async def test_no_accounts_tells_how_to_add_one(state):
    with pytest.raises(AccountUnavailable) as e:
        await AccountPool([], state).acquire()
    assert "qwen-auth login" in str(e.value) and "qwen-auth add-key" in str(e.value)


async def test_refreshed_forces_a_refresh(state):
    a = FakeAccount("a")
    pool = AccountPool([a], state)
    assert (await pool.refreshed("a")).token == "secret-a" and a.forced == 1
    with pytest.raises(AccountUnavailable):
        await pool.refreshed("nope")


@given(st.floats(min_value=0, max_value=4e9), st.integers(min_value=0, max_value=23))
def test_next_reset_is_the_next_reset_hour(now, hour):
    r = next_reset(now, hour)
    assert now < r <= now + 86400 and r % 86400 == hour * 3600


async def test_unreadable_accounts_json_keeps_the_pool_alive(settings):
    settings.state_dir.mkdir(parents=True)
    settings.accounts_path.write_text("{broken")
    pool = AccountPool.from_settings(settings)
    with pytest.raises(AccountUnavailable, match="accounts.json is unreadable"):
        await pool.acquire()
    assert pool.status()[-1]["state"] == "error"
    pool.close()


async def test_exhaustion_no_wait_can_end_is_not_transient(state):
    """No account, or every one needing a login or a key: nothing a client's retry can change."""
    dead = AccountUnavailable("a: Refresh token expired or invalid; run `qwen-auth login`", needs_login=True)
    for pool in (AccountPool([], state), AccountPool([FakeAccount("a", fail=dead, kind=OAUTH)], state),
                 AccountPool([FakeAccount("a", fail=AccountUnavailable("a: env var K is not set"))], state)):
        with pytest.raises(AccountUnavailable) as e:
            await pool.acquire()
        assert not e.value.transient, str(e.value)


async def test_the_pool_rereads_accounts_json_every_accounts_check_s(settings):
    settings.accounts_check_s = 3600
    settings.file_check_s = 0  # not the interval that governs the account list
    pool = AccountPool.from_settings(settings)
    Registry(settings).put({"name": "k", "kind": "key", "base_url": "http://127.0.0.1:9/v1", "key": "sk-1"})
    with pytest.raises(AccountUnavailable, match="No Qwen account is configured"):
        await pool.acquire()
    pool.check_every_s = 0
    assert (await pool.acquire()).account == "k"
    pool.close()
    settings.accounts_check_s = 0
    pool = AccountPool.from_settings(settings)
    Registry(settings).put({"name": "j", "kind": "key", "base_url": "http://127.0.0.1:9/v1", "key": "sk-2"})
    assert {(await pool.acquire()).account for _ in range(2)} == {"j", "k"}
    pool.close()


def test_account_pool_is_the_pool_protocol():
    assert Pool in AccountPool.__mro__  # declared, not just duck-typed
    methods = [n for n, _ in inspect.getmembers(Pool, inspect.isfunction) if not n.startswith("_")]
    assert set(methods) == {"acquire", "refreshed", "report", "status", "reload", "flush", "close"}
    for name in methods:
        want = inspect.signature(getattr(Pool, name)).parameters
        have = inspect.signature(getattr(AccountPool, name)).parameters
        assert [(p.name, p.kind) for p in want.values()] == [(p.name, p.kind) for p in have.values()], name
        assert getattr(AccountPool, name) is not getattr(Pool, name), name  # implemented, not inherited


class SlowRefresh(FakeAccount):
    """An account whose refresh takes `delay` seconds (e.g. waiting for another process's lock)."""

    def __init__(self, name: str, delay: float, *, fail: AccountUnavailable | None = None) -> None:
        super().__init__(name)
        self.delay = delay
        self.refresh_fail = fail
        self.started = 0
        self.done = False

    def ready(self):
        return Credential(self.name, KEY, "http://x/v1", "t") if self.done else None

    @property
    def refreshing(self) -> bool:
        return self.started > 0 and not self.done

    async def credential(self, *, force_refresh: bool = False, refused: str | None = None) -> Credential:
        self.started += 1
        await asyncio.sleep(self.delay)
        if self.refresh_fail:
            raise self.refresh_fail
        self.done = True
        return Credential(self.name, KEY, "http://x/v1", "t")


async def test_a_slow_refresh_does_not_hold_up_a_usable_account(state):
    slow = SlowRefresh("a", 0.5)
    pool = AccountPool([slow, FakeAccount("b")], state, refresh_wait_s=0.15)
    t0 = time.monotonic()
    assert (await pool.acquire()).account == "b"
    first = time.monotonic() - t0
    t0 = time.monotonic()
    assert [(await pool.acquire()).account for _ in range(3)] == ["b", "b", "b"]  # no wait while it refreshes
    later = time.monotonic() - t0
    assert 0.15 <= first < 0.45 and later < 0.1, (first, later)
    await asyncio.sleep(0.5)  # the refresh finished alone
    assert slow.done and {(await pool.acquire()).account for _ in range(2)} == {"a", "b"}


async def test_with_nothing_else_usable_the_refresh_is_awaited(state):
    pool = AccountPool([SlowRefresh("a", 0.15)], state, refresh_wait_s=0.05)
    assert (await pool.acquire()).account == "a"
    dead = AccountUnavailable("c: Refresh token expired or invalid; run `qwen-auth add c`", needs_login=True)
    pool = AccountPool([SlowRefresh("c", 0.1, fail=dead), FakeAccount("d", fail=AccountUnavailable("d: gone"))],
                       state, refresh_wait_s=0.01)
    with pytest.raises(PoolExhausted, match="qwen-auth add c") as e:
        await pool.acquire()
    assert "d: gone" in str(e.value)


async def test_describe_gives_one_line_per_account_and_warns_when_none_is_usable(state, monkeypatch):
    monkeypatch.setenv("PLAN_KEY", "sk-sp-0123456789abcdef")
    key = KeyAccount({"name": "k", "base_url": "https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
                      "key_env": "PLAN_KEY"})
    pool = AccountPool([FakeAccount("a"), key], state)
    lines = pool.describe()
    assert lines[:2] == ["account a (key): ok, upstream http://a.test/v1",
                         "account k (key): ok, upstream https://dashscope-intl.aliyuncs.com/compatible-mode/v1"]
    assert lines[2].startswith("warning: account k: this looks like a Coding Plan or Token Plan key")
    assert len(lines) == 3 and "sk-sp-0123456789abcdef" not in "\n".join(lines)
    pool.report("a", Outcome.QUOTA, retry_after=60)
    monkeypatch.delenv("PLAN_KEY")
    lines = pool.describe()
    assert "account a (key): cooling_down" in lines[0] and "cooling down until 20" in lines[0]
    assert lines[1] == "account k (key): missing, upstream https://dashscope-intl.aliyuncs.com/compatible-mode/v1" \
                       " - env var PLAN_KEY is not set"
    assert lines[-1].startswith("WARNING: no Qwen account is usable now")
    empty = AccountPool([], state).describe()
    assert len(empty) == 1 and empty[0].startswith("WARNING: no Qwen account is configured")
    assert "qwen-auth login" in empty[0] and "qwen-auth add-key" in empty[0]


async def test_exhaustion_says_whether_only_rate_limits_hold_the_accounts(state):
    pool = AccountPool([FakeAccount("a"), FakeAccount("b")], state)
    pool.report("a", "throttle", retry_after=5)
    pool.report("b", "throttle", retry_after=5)
    with pytest.raises(PoolExhausted) as e:
        await pool.acquire()
    assert e.value.throttled and e.value.retry_at is not None
    pool.report("b", "quota")
    with pytest.raises(PoolExhausted) as e:
        await pool.acquire()
    assert not e.value.throttled  # one account is out of quota: not a plain rate limit


async def test_a_plans_refusals_of_clients_are_counted_in_its_row_and_change_nothing_else(monkeypatch, tmp_path):
    """The Coding Plan's 405 (upstream/engine.py reports it): the account stays `ok` and keeps serving; its row
    says how many clients were refused, when the last was, and which."""
    from qwen_gateway.auth.key_account import KeyAccount

    monkeypatch.setenv("TEST_CP_KEY", "sk-sp-plan-key")
    state = AccountState(tmp_path / "state.sqlite3")
    pool = AccountPool([KeyAccount({"name": "cp", "kind": "key", "key_env": "TEST_CP_KEY",
                                    "base_url": "https://coding-intl.dashscope.aliyuncs.com/v1"}, state)], state)
    assert "plan_refusals" not in pool.status()[0]
    for agent in ("OpenAI/Python 2.8.0", ""):
        pool.report("cp", Outcome.PLAN_REFUSED, detail=agent)
    (row,) = pool.status()
    assert row["state"] == "ok" and row["cooldown_until"] is None and row["last_error"] is None
    assert row["plan_refusals"]["count"] == 2 and row["plan_refusals"]["last_client"] == "(no User-Agent)"
    assert row["plan_refusals"]["last"].endswith("Z")
    assert (await pool.acquire()).account == "cp"  # it serves the clients its plan takes
    state.close()

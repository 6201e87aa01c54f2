"""What the account pool says about its accounts (upstream/pool/status.py): the rows of /health and `qwen-auth status`,
and the start-up lines. Never a token or key. Through the pool: tests/unit/upstream/pool/test_pool.py."""

from __future__ import annotations

import time


from qwen_gateway.accounts import KEY, OAUTH, WEB, Credential
from qwen_gateway.auth.account import Account
from qwen_gateway.upstream.pool.status import NO_ACCOUNTS, describe_rows, status_rows, unserved
from qwen_gateway.auth.web_account import NOT_SERVED


class Fixed(Account):
    def __init__(self, name: str, kind: str = KEY, state: str = "ok", error: str | None = None,
                 broken: bool = False) -> None:
        self.name, self.kind, self._state, self._error, self.broken = name, kind, state, error, broken

    async def credential(self, *, force_refresh: bool = False, refused: str | None = None) -> Credential:
        return Credential(self.name, self.kind, "http://x/v1", "secret")

    def status(self) -> dict:
        if self.broken:
            raise RuntimeError("status failed")
        return {"name": self.name, "kind": self.kind, "state": self._state, "base_url": "http://x/v1",
                "last_error": self._error}


def test_a_row_per_account_with_todays_requests(state):
    for _ in range(2):
        state.count_request("a")
    rows = status_rows([Fixed("a")], state, None)
    assert rows == [{"name": "a", "kind": KEY, "state": "ok", "base_url": "http://x/v1", "last_error": None,
                     "expires_at": None, "cooldown_until": None, "requests_today": 2}]


def test_a_cooling_account_says_until_when_and_which_window(state):
    state.set("a", cooldown_until=time.time() + 600,
              last_error="throttled: tokens per minute (TPM) (Qwen said: \"slow\")")
    (row,) = status_rows([Fixed("a")], state, None)
    assert row["state"] == "cooling_down" and row["window"] == "tpm" and row["cooldown_until"].endswith("Z")
    assert row["last_error"].startswith("throttled: tokens per minute")
    state.set("a", cooldown_until=time.time() - 1)  # over: as it was
    assert status_rows([Fixed("a")], state, None)[0]["state"] == "ok"


def test_a_status_that_fails_is_an_error_row_not_a_broken_health_page(state):
    (row,) = status_rows([Fixed("a", broken=True)], state, None)
    assert (row["state"], row["last_error"]) == ("error", "RuntimeError")


def test_an_unreadable_accounts_json_is_a_row_of_its_own(state):
    rows = status_rows([], state, "accounts.json is unreadable: Expecting value")
    assert rows == [{"name": "accounts.json", "kind": "config", "state": "error", "base_url": None,
                     "expires_at": None, "cooldown_until": None, "requests_today": 0,
                     "last_error": "accounts.json is unreadable: Expecting value"}]


def test_a_provider_the_pool_does_not_serve_is_unserved(state):
    rows = status_rows([Fixed("w", kind=WEB), Fixed("o", kind=OAUTH), Fixed("x", kind=WEB, state="missing")],
                       state, None, providers={"dashscope"})
    assert [(r["name"], r["state"]) for r in rows] == [("w", "unserved"), ("o", "ok"), ("x", "missing")]
    assert rows[0]["last_error"] == NOT_SERVED
    assert unserved("carrier", {"dashscope"}) == "the gateway has no upstream for carrier accounts"
    assert unserved("qwenweb", {"dashscope"}, WEB) == NOT_SERVED
    assert unserved("qwenweb", None) is None and unserved(None, {"dashscope"}) is None


def test_start_up_lines_one_per_account_and_a_warning_when_none_works():
    rows = [{"name": "a", "kind": KEY, "state": "missing", "base_url": "http://x/v1",
             "last_error": "a: env var K is not set"},
            {"name": "b", "kind": OAUTH, "state": "cooling_down", "base_url": None,
             "cooldown_until": "2026-06-01T16:00:00Z", "last_error": "quota exhausted"}]
    assert describe_rows(rows, []) == [
        "account a (key): missing, upstream http://x/v1 - env var K is not set",  # the name said once
        "account b (oauth): cooling_down, upstream -, cooling down until 2026-06-01T16:00:00Z - quota exhausted",
        "WARNING: no Qwen account is usable now, so requests will fail until one is (see the states above; "
        "`qwen-auth status` shows details)."]


def test_an_ok_account_shows_no_error_and_no_warning():
    rows = [{"name": "a", "kind": KEY, "state": "expired", "base_url": "u", "last_error": "old news"}]
    assert describe_rows(rows, []) == ["account a (key): expired, upstream u"]


def test_no_account_at_all_says_how_to_add_one():
    (line,) = describe_rows([], [])
    assert line == "WARNING: no Qwen account is configured, so every request will fail: " + NO_ACCOUNTS.removeprefix(
        "No Qwen account is configured: ")

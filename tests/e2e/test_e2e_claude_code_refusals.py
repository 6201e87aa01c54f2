"""Claude Code 2.1.328 (the real `claude` binary) refused by the gateway for a reason no retry can fix: it must
show the gateway's message after ONE request (issue 51, item 5). Before, the 503 of a gateway with no account
and the 401 of a wrong key carried no `x-should-retry: false`, and Claude Code retried them silently for about
three minutes (173 s, 188 s) before it printed anything. A spent budget's 400 (Anthropic's spend-limit answer)
is shown within seconds: Claude Code re-sends any 400 at once with fewer features (five more, whatever
`x-should-retry` says), each refused at the entrance, none reaching Qwen.

What is counted is requests, not seconds: every `/v1/messages` the gateway received (tests/helpers/flowlog.py).
The seconds are printed, for the report.
"""

from __future__ import annotations

import pytest

import json

from e2e.test_e2e_claude_code import CLIENT_KEY, base_url_env
from helpers.claude_ns import claude_world, flows  # noqa: F401  (fixtures)
from helpers.home import Home, accounts_in
from helpers.team import add_key

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

RUN_S = 300  # above the three minutes it took before: a run that retries is seen retrying, not cut short


def _messages(gw, since: int) -> list[dict]:
    return [f for f in flows(gw)[since:] if f["path"].startswith("/v1/messages")]


def _refused_once(world, gw, words: str, status: int) -> float:
    mark = len(flows(gw))
    r, took, _ = world.claude("say hello", env=base_url_env(gw), timeout=RUN_S)
    printed = r.stdout + r.stderr
    asked = _messages(gw, mark)
    print(f"\nClaude Code gave up after {took:.1f} s and {len(asked)} request(s), printing: {printed.strip()}")
    assert r.returncode == 1, printed
    assert words in printed, printed
    assert [f["status"] for f in asked] == [status], asked  # one request, answered as the gateway answers it
    return took


def test_no_account_configured_is_shown_after_one_request(claude_world, tmp_path_factory):
    """A gateway whose state folder has no account: its 503 `no_usable_account` names the command to add one."""
    world = claude_world
    empty = tmp_path_factory.mktemp("no-accounts")
    gw = world.recording_gateway("no-accounts", "reverse:https://portal.qwen.ai", "--set", f"qwen_state_dir={empty}")
    try:
        _refused_once(world, gw, "No Qwen account is configured", 503)
    finally:
        gw.stop()


def test_a_wrong_key_is_shown_after_one_request(claude_world, tmp_path_factory):
    """A gateway with client keys, and Claude Code sending another: the 401 says how to get one."""
    world = claude_world
    keys = tmp_path_factory.mktemp("keys") / "keys.txt"
    keys.write_text("sk-the-only-key-this-gateway-takes\n")
    keys.chmod(0o600)
    gw = world.recording_gateway("wrong-key", "reverse:https://portal.qwen.ai", "--set",
                                 f"qwen_client_keys_file={keys}")
    try:
        assert CLIENT_KEY not in keys.read_text()
        _refused_once(world, gw, "Invalid API key", 401)  # Claude Code's own words for a 401
    finally:
        gw.stop()


def test_a_spent_budget_is_shown_within_seconds_and_nothing_reaches_qwen(claude_world, tmp_path_factory):
    """A named key with a daily budget of one token: the first turn spends it, the next is refused with Anthropic's
    spend-limit 400, which Claude Code shows as it comes (a 429 it would retry for minutes)."""
    world = claude_world
    state = tmp_path_factory.mktemp("budget-state")
    Home(state, state=state).account(*accounts_in(world.state)).write()
    key = add_key({"QWEN_GATEWAY_HOME": str(state), "HOME": str(state)}, "claude", "--daily-tokens", "1")
    gw = world.recording_gateway("budget", "reverse:https://portal.qwen.ai", "--set", f"qwen_state_dir={state}")
    try:
        world.reset_emulator()
        env = {**base_url_env(gw), "ANTHROPIC_API_KEY": key}
        r, _, _ = world.claude("say hello", env=env, timeout=RUN_S)
        assert r.returncode == 0 and "Echo: say hello" in r.stdout, r.stdout + r.stderr  # spends the budget
        mark, qwen_asked = len(flows(gw)), len(world.chat_requests())
        r, took, _ = world.claude("say hello", env=env, timeout=RUN_S)
        printed = r.stdout + r.stderr
        asked = _messages(gw, mark)
        print(f"\nClaude Code gave up after {took:.1f} s and {len(asked)} request(s), printing: {printed.strip()}")
        assert r.returncode == 1 and "You have reached your specified API usage limits" in printed, printed
        assert asked and {f["status"] for f in asked} == {400} and len(asked) <= 6, asked  # its 400 re-sends only
        assert took < 30 and len(world.chat_requests()) == qwen_asked  # refused at the entrance, every time
        assert json.dumps(asked).count(key) == 0  # the flow log never holds the key
    finally:
        gw.stop()

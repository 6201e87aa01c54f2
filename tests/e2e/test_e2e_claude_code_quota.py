"""Claude Code 2.1.328 (the real `claude` binary) when the only Qwen account's quota is spent: it prints the
error's message as it is, so that message must say the quota is spent, on which account, in Qwen's own words
(issue #31, item 6) — not "No Qwen account can take this request. emu: already tried…".

A world of its own (tests/helpers/claude_ns.py): the account's cooldown would outlive the test and refuse every
later turn of a shared one.
"""

from __future__ import annotations

import pytest

from helpers.claude_ns import claude_world, reverse_gw  # noqa: F401  (fixtures)
from e2e.test_e2e_claude_code import base_url_env

pytestmark = pytest.mark.e2e

QWEN_SAID = "Free allocated quota exceeded."  # the emulator's quota429 body, as Qwen's portal words it


def test_claude_code_prints_that_the_quota_is_spent_in_qwens_words(claude_world, reverse_gw):
    world = claude_world
    world.reset_emulator()
    world.fault("quota429", count=50)
    r, _, _ = world.claude("say hello", env=base_url_env(reverse_gw), timeout=240)
    printed = r.stdout + r.stderr
    print(f"\nClaude Code printed: {printed.strip()}")
    assert r.returncode == 1, printed
    assert QWEN_SAID in printed and "quota" in printed.lower() and "emu" in printed, printed
    assert "already tried" not in printed, printed
    # 429 with `x-should-retry: false`: a quota back in hours is not retried for minutes
    assert len(world.chat_requests()) == 1
    asked = world.exchanges({"logs": set()}, 1)
    assert all(e["client_response"]["status"] == 429 for e in asked), [e["client_response"]["status"] for e in asked]
    # the next turn is refused at once, still in Qwen's words, without asking Qwen again
    r, _, _ = world.claude("again", env=base_url_env(reverse_gw), timeout=240)
    assert r.returncode == 1 and QWEN_SAID in r.stdout + r.stderr, r.stdout + r.stderr
    assert len(world.chat_requests()) == 1

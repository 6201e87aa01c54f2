"""qwen-usage conversations (cli/usage_conversations.py): per conversation the cache's hit share, the turns that
missed, the tokens and money lost, the causes with their turns."""

from __future__ import annotations

import json
import time

from qwen_gateway.cache_turn import CacheTurn
from qwen_gateway.cli import usage as usage_cli
from qwen_gateway.cli.usage_conversations import causes
from qwen_gateway.observe.ledger import Ledger, row_of
from helpers.observe_testlib import exchange


def turn(conversation, n, prompt, read, cause=None, lost=0, usd=None, at=0.0, lifetime=None):
    ex = exchange(started_at=time.time() - 100 + at, usage={"prompt_tokens": prompt, "completion_tokens": 3,
                                                             "prompt_tokens_details": {"cached_tokens": read}})
    ex.result.cache = CacheTurn(conversation, n, prompt, read, 0, cause, lost, usd, lifetime=lifetime)
    return row_of(ex)


def ledger(tmp_path):
    led = Ledger(tmp_path / "usage.sqlite3")
    led.add([turn("aaaa1111bbbb2222cccc3333dddd4444", 1, 3000, 0, at=1),
             turn("aaaa1111bbbb2222cccc3333dddd4444", 2, 3200, 2900, at=2),
             turn("aaaa1111bbbb2222cccc3333dddd4444", 3, 3400, 0, "tool_order", 3200, 0.00256, at=3),
             turn("aaaa1111bbbb2222cccc3333dddd4444", 4, 3600, 3300, at=4, lifetime=3600),
             turn("ffff0000ffff0000ffff0000ffff0000", 1, 5000, 0, at=5, lifetime=300),
             turn("ffff0000ffff0000ffff0000ffff0000", 2, 5100, 0, "system", 5000, 0.004, at=6),
             turn("ffff0000ffff0000ffff0000ffff0000", 3, 5200, 0, "system", 5100, 0.00408, at=7),
             row_of(exchange(started_at=time.time()))])  # no conversation: not listed
    led.close()


def test_conversations_as_json(tmp_path, capsys):
    ledger(tmp_path)
    assert usage_cli.main(["conversations", "--json", "--state-dir", str(tmp_path)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["conversation"] for r in rows] == ["aaaa1111bbbb", "ffff0000ffff"]  # the newest last
    a, f = rows
    assert (a["turns"], a["prompt_tokens"], a["cached_tokens"], a["hit_share"], a["missed_turns"], a["lost_tokens"]) \
        == (4, 13200, 6200, 0.47, 1, 3200)
    assert a["lost_usd"] == 0.00256 and a["causes"] == "tool_order (turn 3)"
    assert (a["hour_turns"], f["hour_turns"]) == (1, 0)  # the turns whose markers asked Qwen's hour
    assert f["causes"] == "system ×2 (turns 2, 3)" and f["missed_turns"] == 2 and f["lost_usd"] == 0.00808


def test_conversations_as_a_table(tmp_path, capsys):
    ledger(tmp_path)
    assert usage_cli.main(["conversations", "--state-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["conversation", "first", "seen", "turns", "1h", "prompt", "cached", "hit", "missed",
                                "lost", "lost", "USD", "causes"]
    assert lines[2].split()[0] == "aaaa1111bbbb" and lines[2].split()[3:] == [
        "4", "1", "13,200", "6,200", "47%", "1", "3,200", "$0.002560", "tool_order", "(turn", "3)"]
    assert lines[3].split()[-4:] == ["system", "×2", "(turns", "2,", "3)"][-4:]


def test_limit_keeps_the_newest(tmp_path, capsys):
    ledger(tmp_path)
    assert usage_cli.main(["conversations", "--json", "--limit", "1", "--state-dir", str(tmp_path)]) == 0
    assert [r["conversation"] for r in json.loads(capsys.readouterr().out)] == ["ffff0000ffff"]


def test_causes_most_frequent_first_with_their_turns():
    assert causes({"system": [5, 2], "tool_order": [7]}) == "system ×2 (turns 2, 5), tool_order (turn 7)"
    assert causes({}) == ""


def test_a_miss_whose_price_is_unknown_makes_the_lost_usd_unknown_never_0(tmp_path, capsys):
    """Issue 81, item 3: a priced request whose miss has no price (the read's price not given) lost an unknown
    amount: `unknown`, never $0."""
    led = Ledger(tmp_path / "usage.sqlite3")
    led.add([turn("abab1111bbbb2222cccc3333dddd4444", 1, 9000, 0, at=1),
             turn("abab1111bbbb2222cccc3333dddd4444", 2, 9100, 0, "expiry", 7932, None, at=2),  # priced in USD, miss not
             turn("cdcd1111bbbb2222cccc3333dddd4444", 1, 9000, 0, at=3),
             turn("cdcd1111bbbb2222cccc3333dddd4444", 2, 9100, 0, "expiry", 0, None, at=4)])  # nothing lost: $0
    led.close()
    assert usage_cli.main(["conversations", "--json", "--state-dir", str(tmp_path)]) == 0
    unknown, nothing = json.loads(capsys.readouterr().out)
    assert (unknown["lost_tokens"], unknown["lost_usd"]) == (7932, None) and nothing["lost_usd"] == 0.0
    assert usage_cli.main(["conversations", "--state-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines()[2].split()[-5:] == ["7,932", "unknown", "expiry", "(turn", "2)"]

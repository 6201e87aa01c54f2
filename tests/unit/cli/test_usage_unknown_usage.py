"""qwen-usage never shows 0 or nothing for an answer Qwen reported no usage for (issue 79, item 5): the ledger's
`usage_unknown` rows make a view's token and USD sums `unknown` (null in JSON), each view counts them, the text says
on which models, and `requests` shows their tokens as unknown."""

from __future__ import annotations

import json
import time

from qwen_gateway.cli import usage as usage_cli
from qwen_gateway.observe.ledger import Ledger, row_of
from qwen_gateway.pricing.prices import USAGE_UNKNOWN

from helpers.observe_testlib import exchange


def answer(model: str, usage: dict | None, unit: str, cost: float | None, key: str = "alice"):
    ex = exchange(started_at=time.time() - 1, account="emu", upstream_model=model, usage=usage)
    ex.key.name = key
    ex.result.cost, ex.result.cost_unit = cost, unit
    return row_of(ex)


def ledger(tmp_path) -> None:
    led = Ledger(tmp_path / "usage.sqlite3")
    led.add([answer("qwen3-coder-plus", {"prompt_tokens": 100, "completion_tokens": 10}, "USD", 0.00015),
             answer("qwen3-coder-plus", None, USAGE_UNKNOWN, None),
             answer("qwen3.6-plus", {"prompt_tokens": 50, "completion_tokens": 5}, "USD", 0.00004, key="bob")])
    led.close()


def test_a_views_sums_with_an_answer_of_unknown_usage_are_unknown(tmp_path, capsys):
    ledger(tmp_path)
    assert usage_cli.main(["models", "--json", "--state-dir", str(tmp_path)]) == 0
    coder, plus = json.loads(capsys.readouterr().out)
    assert coder["usage_unknown"] == 1 and coder["requests"] == 2
    assert [coder[k] for k in ("prompt_tokens", "completion_tokens", "cached_tokens", "cache_saved_usd")] == \
        [None] * 4  # never the 100 / 10 of the one answer whose usage came, never 0
    assert (plus["usage_unknown"], plus["prompt_tokens"], plus["completion_tokens"]) == (0, 50, 5)
    assert usage_cli.main(["models", "--state-dir", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    (row,) = [ln for ln in text.splitlines() if ln.startswith("qwen3-coder-plus")]
    assert row.split()[2:4] == ["unknown", "unknown"], text
    assert "usage unknown: 1 request on qwen3-coder-plus" in text


def test_by_key_and_requests_say_unknown(tmp_path, capsys):
    ledger(tmp_path)
    assert usage_cli.main(["--by", "key", "--json", "--state-dir", str(tmp_path)]) == 0
    alice, bob = json.loads(capsys.readouterr().out)
    assert (alice["usage_unknown"], alice["prompt_tokens"], alice["cost_usd"]) == (1, None, None)
    assert (bob["usage_unknown"], bob["prompt_tokens"], bob["cost_usd"]) == (0, 50, 0.00004)
    assert usage_cli.main(["requests", "--state-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[3].split()[-3:-1] == ["unknown", "unknown"], lines  # the answer without usage: in, out
    assert usage_cli.main(["requests", "--json", "--state-dir", str(tmp_path)]) == 0
    assert [r["cost_unit"] for r in json.loads(capsys.readouterr().out)] == ["USD", USAGE_UNKNOWN, "USD"]

"""qwen-usage never shows $0 for what has no price (issue 59): each view counts the unpriced requests, a USD sum
that would include them (cost, cache saved, lost USD) is `unknown` (null in JSON), and the text says on which
models ("unpriced: 2 requests on qwen3.7-flash"); a key's `model_unpriced` refusals are its refusals."""

from __future__ import annotations

import json
import time

import pytest

from qwen_gateway.cache_turn import CacheTurn
from qwen_gateway.cli import usage as usage_cli
from qwen_gateway.observe.ledger import Ledger, row_of

from helpers.observe_testlib import exchange


def charged(model: str, unit: str, cost: float | None = None, saved: float | None = None, key: str = "alice",
            miss: CacheTurn | None = None, priced_as: str = ""):
    ex = exchange(started_at=time.time() - 1, account="emu", upstream_model=model,
                  usage={"prompt_tokens": 100, "completion_tokens": 10})
    ex.key.name = key
    ex.result.cost, ex.result.cost_unit, ex.result.cache_saved, ex.result.priced_as = cost, unit, saved, priced_as
    ex.result.cache = miss
    return ex


@pytest.fixture
def state(tmp_path):
    led = Ledger(tmp_path / "usage.sqlite3")
    refusal = exchange(started_at=time.time() - 1, account="emu", upstream_model="qwen3.6-plus", status=400,
                       usage=None, error=(400, "model_unpriced", "no price"))
    refusal.key.name = "alice"
    led.add([row_of(ex) for ex in (
        charged("qwen3-coder-plus", "USD", 0.002, 0.0005, miss=CacheTurn("c1", 2, 100, 0, 0, "system", 80, 0.00008)),
        charged("qwen3.7-flash", "unpriced", miss=CacheTurn("c2", 2, 100, 0, 0, "system", 80, None)),
        charged("qwen3.7-flash", "unpriced", miss=CacheTurn("c2", 3, 100, 80, 0)),
        charged("qwen3.6-plus", "unpriced", key="bob"),
        charged("qwen3.7-flash", "USD", 0.001, 0.0001, key="carol", priced_as="qwen3-max"),
        refusal)])
    led.close()
    return tmp_path


def run_cli(capsys, *args) -> str:
    assert usage_cli.main(list(args)) == 0
    return capsys.readouterr().out


def test_models_count_their_unpriced_requests_and_what_they_saved_is_unknown(state, capsys):
    rows = {r["model"]: r for r in json.loads(run_cli(capsys, "models", "--json", "--state-dir", str(state)))}
    assert rows["qwen3.7-flash"]["unpriced"] == 2 and rows["qwen3.7-flash"]["cache_saved_usd"] is None
    assert rows["qwen3-coder-plus"]["unpriced"] == 0 and rows["qwen3-coder-plus"]["cache_saved_usd"] == 0.0005
    out = run_cli(capsys, "models", "--state-dir", str(state))
    flash = next(ln for ln in out.splitlines() if ln.startswith("qwen3.7-flash"))
    assert "unknown" in flash and "$0 " not in flash + " "
    total = next(ln for ln in out.splitlines() if ln.startswith("total"))
    assert "unknown" in total  # a sum that includes them
    assert "unpriced: 2 requests on qwen3.7-flash, 1 on qwen3.6-plus" in out
    assert "docs/keys.md#unpriced-models" in out


def test_a_view_without_unpriced_requests_says_nothing_of_them(state, capsys):
    out = run_cli(capsys, "models", "--model", "qwen3-coder-plus", "--state-dir", str(state))
    assert "unpriced:" not in out and "unknown" not in out and "$0.0005" in out


def test_by_key_its_cost_is_unknown_with_unpriced_requests_and_the_refusal_is_counted(state, capsys):
    rows = {r["key"]: r for r in json.loads(run_cli(capsys, "--by", "key", "--json", "--state-dir", str(state)))}
    assert (rows["alice"]["unpriced"], rows["alice"]["cost_usd"], rows["alice"]["refused"]) == (2, None, 1)
    assert (rows["bob"]["unpriced"], rows["bob"]["cost_usd"]) == (1, None)
    assert (rows["carol"]["unpriced"], rows["carol"]["cost_usd"]) == (0, 0.001)  # priced as qwen3-max: a cost
    out = run_cli(capsys, "--by", "key", "--state-dir", str(state))
    assert "unknown" in next(ln for ln in out.splitlines() if ln.startswith("alice"))
    assert "unpriced: 3 requests on qwen3.7-flash, qwen3.6-plus" not in out  # per model, each its count
    assert "unpriced: 2 requests on qwen3.7-flash, 1 on qwen3.6-plus" in out


def test_a_conversation_with_an_unpriced_miss_lost_an_unknown_amount(state, capsys):
    rows = {r["conversation"]: r for r in
            json.loads(run_cli(capsys, "conversations", "--json", "--state-dir", str(state)))}
    assert rows["c2"]["lost_usd"] is None and rows["c1"]["lost_usd"] == 0.00008
    out = run_cli(capsys, "conversations", "--state-dir", str(state))
    assert "unknown" in next(ln for ln in out.splitlines() if ln.startswith("c2"))


def test_the_line_names_each_model_with_its_count_and_a_sum_with_an_unpriced_part_is_unknown():
    from qwen_gateway.cli import usage_unpriced

    assert usage_unpriced.line([]) == ""
    assert usage_unpriced.line([("qwen3.7-flash", 1)]) == \
        "unpriced: 1 request on qwen3.7-flash (no price in USD: docs/keys.md#unpriced-models)"
    assert usage_unpriced.line([("a", 1200), ("b", 1)]).startswith("unpriced: 1,200 requests on a, 1 on b (")
    assert usage_unpriced.unknown({"cost_usd": 0.0, "unpriced": 1}, ("cost_usd",)) == {"cost_usd": None, "unpriced": 1}
    assert usage_unpriced.unknown({"cost_usd": 0.5, "unpriced": 0}, ("cost_usd",)) == {"cost_usd": 0.5, "unpriced": 0}

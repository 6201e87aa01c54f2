"""qwen-usage batches (cli/usage_batches.py): each batch the gateway made, newest first, with the advice its
creation gave (api/batches/advice.py), read from the state folder's batch store after the gateway is gone."""

from __future__ import annotations

import asyncio
import json

from qwen_gateway.api.batches.advice import Prefixes
from qwen_gateway.stores.batches import BATCH, BatchStore, Record
from qwen_gateway.cli import usage, usage_batches
from qwen_gateway.pricing.prices import builtin

SYSTEM = "Grade the answer against the rubric. " * 400


def advice(system: str, n: int) -> str:
    shared = Prefixes()
    for i in range(n):
        shared.add({"model": "qwen-plus", "messages": [{"role": "system", "content": system},
                                                       {"role": "user", "content": f"{i} + {i}?"}]})
    prices = builtin()
    return shared.advice(lambda m, u, b: prices.charge("payg:intl", m, u, batch=b)).dumps()


def stored(folder) -> None:
    async def put() -> None:
        store = BatchStore(folder)
        await store.put(Record("batch_old", BATCH, "bob", "ds", "gpt-4o", "qwen-plus"))  # before advice existed
        await store.put(Record("batch_few", BATCH, "bob", "ds", "gpt-4o", "qwen-plus", advice=advice("Be brief.", 9)))
        await store.put(Record("batch_long", BATCH, "alice", "ds", "gpt-4o", "qwen-plus", advice=advice(SYSTEM, 50)))
        await store.aclose()
    asyncio.run(put())


def test_the_view_is_found_among_qwen_usages_options():
    assert usage_batches.asked(["batches"]) == []
    assert usage_batches.asked(["--state-dir", "x", "batches", "--json"]) == ["--state-dir", "x", "--json"]
    assert usage_batches.asked(["--model", "batches"]) is None and usage_batches.asked(["today"]) is None


def test_batches_are_listed_newest_first_with_their_advice(tmp_path, capsys):
    stored(tmp_path)
    assert usage.main(["batches", "--state-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["batch", "created", "key", "model", "advice"]
    long, few, old = out[2:5]
    assert long.startswith("batch_long") and "qwen-plus: 50 lines share a ~3,700-token prefix" in long
    assert "as a batch $" in long and "in real time $" in long and "real time estimated cheaper" in long
    assert few.startswith("batch_few") and "no advice (under the 1,024 tokens Qwen caches)" in few
    assert old.startswith("batch_old") and old.rstrip().endswith("none read")
    assert usage.main(["batches", "--state-dir", str(tmp_path), "--key", "alice", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    (model,) = row["advice"]
    assert row["batch"] == "batch_long" and row["key"] == "alice" and model["advised"]
    assert model["batch"] > model["realtime"] > 0 and model["unit"] == "USD"


def test_no_store_yet_says_so(tmp_path, capsys):
    assert usage.main(["batches", "--state-dir", str(tmp_path)]) == 0
    assert "no batches" in capsys.readouterr().out

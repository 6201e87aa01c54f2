"""Batches at half price (issue 53, item 4), through a real mitmdump and the emulator's Files and Batch APIs, with
openai-python's `client.files` and `client.batches` unchanged: a JSONL of 1,000 OpenAI chat lines is uploaded,
batched, polled to completion and its results read back; the usage ledger bills the batch at half of what the
same 1,000 requests cost sent one by one through /v1/chat/completions (Model Studio's Batch page: 50%). A batch
belongs to the named key that created it (another key: 404), and a Coding Plan key account is refused, saying
why."""

from __future__ import annotations

import json
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest

from helpers.home import PAYG, Home
from helpers.pgserver import pg_server, pg_url  # noqa: F401  (fixtures)
from helpers.team import add_key, openai_client, until

pytestmark = pytest.mark.e2e

LINES = 1000
INPUT, OUTPUT = 2.0, 10.0  # USD per million tokens, the user's price file
MODEL = "qwen-plus"  # served by Model Studio's Batch API (the catalogue's `batch`)


def payg_env(tmp_path: Path, emu, base: str | None = None) -> dict[str, str]:
    """One key account on pay-as-you-go's base (`/compatible-mode/v1`, where Model Studio serves Files and Batch);
    `base`: another base (a plan's)."""
    home = Home(tmp_path, emu)
    home.key("ds", base_url=base or emu.url + PAYG, default_model=MODEL)
    return home.env()


def request(i: int) -> dict:
    return {"model": MODEL, "max_completion_tokens": 40,
            "messages": [{"role": "system", "content": "Answer in one short sentence."},
                         {"role": "user", "content": f"Question {i}: what is {i} plus {i}?"}]}


def jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def ledger(env: dict[str, str], sql: str) -> list[tuple]:
    db = sqlite3.connect(Path(env["QWEN_GATEWAY_HOME"]) / "usage.sqlite3")
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def test_a_batch_of_a_thousand_lines_costs_half_of_the_same_requests_one_by_one(tmp_path, emu, make_gateway):
    env = payg_env(tmp_path, emu)
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"*": {MODEL: {"input": INPUT, "output": OUTPUT}}}))
    alice, bob = add_key(env, "alice"), add_key(env, "bob")
    emu.switches(batch_steps_per_poll=1)  # each GET of a batch moves it one step
    gw = make_gateway(env=env, args=("--set", f"qwen_prices_file={prices}"))
    c = openai_client(gw.url, alice)

    rows = [{"custom_id": f"q{i}", "method": "POST", "url": "/v1/chat/completions", "body": request(i)}
            for i in range(LINES)]
    uploaded = c.files.create(file=("eval.jsonl", jsonl(rows)), purpose="batch")
    assert uploaded.purpose == "batch" and uploaded.object == "file"
    assert c.files.retrieve(uploaded.id).id == uploaded.id
    batch = c.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    for _ in range(20):  # bounded: validating, in progress, finalizing, completed
        batch = c.batches.retrieve(batch.id)
        if batch.status in ("completed", "failed", "expired", "cancelled"):
            break
        time.sleep(0.2)
    assert batch.status == "completed", batch
    assert batch.request_counts.completed == LINES and batch.request_counts.failed == 0
    assert batch.id in [b.id for b in c.batches.list()]
    out = [json.loads(x) for x in c.files.content(batch.output_file_id).text.splitlines()]
    assert sorted(r["custom_id"] for r in out) == sorted(r["custom_id"] for r in rows)
    answer = out[0]["response"]["body"]
    assert out[0]["response"]["status_code"] == 200 and answer["object"] == "chat.completion"
    assert answer["model"] == MODEL and answer["choices"][0]["message"]["content"]

    # another named key sees nothing of it
    other = openai_client(gw.url, bob)
    with pytest.raises(openai.NotFoundError):
        other.batches.retrieve(batch.id)
    with pytest.raises(openai.NotFoundError):
        other.files.content(batch.output_file_id)
    assert batch.id not in [b.id for b in other.batches.list()]

    # the same requests one by one
    def one(i: int):
        return c.chat.completions.create(**request(i)).usage

    with ThreadPoolExecutor(8) as pool:
        usages = list(pool.map(one, range(LINES)))
    by_id = {r["custom_id"]: r["response"]["body"]["usage"] for r in out}
    assert all(by_id[f"q{i}"]["prompt_tokens"] == u.prompt_tokens and
               by_id[f"q{i}"]["completion_tokens"] == u.completion_tokens for i, u in enumerate(usages))

    until(lambda: ledger(env, "SELECT COUNT(*) FROM usage WHERE endpoint = 'chat.completions'")[0][0] == LINES,
          "the one-by-one rows", limit=20)
    ((one_by_one,),) = ledger(env, "SELECT SUM(cost) FROM usage WHERE endpoint = 'chat.completions'")
    (batch_row,) = until(lambda: ledger(env, "SELECT cost, cost_unit, prompt_tokens, completion_tokens, key_name, "
                                             "model, account FROM usage WHERE endpoint = 'batches' AND cost > 0"),
                         "the batch's row")
    expected = sum(u.prompt_tokens * INPUT + u.completion_tokens * OUTPUT for u in usages) / 1e6
    assert one_by_one == pytest.approx(expected, rel=1e-9)
    assert batch_row[0] == pytest.approx(one_by_one / 2, rel=1e-9) and batch_row[1] == "USD"
    assert batch_row[2:] == (sum(u.prompt_tokens for u in usages), sum(u.completion_tokens for u in usages),
                             "alice", MODEL, "ds")
    c.batches.retrieve(batch.id)  # billed once, however often it is read
    time.sleep(1)
    assert len(ledger(env, "SELECT cost FROM usage WHERE endpoint = 'batches' AND cost > 0")) == 1
    assert alice not in gw.log() and env["DS_KEY"] not in gw.log()


def test_openai_model_names_map_as_on_chat_and_a_cancelled_batch_costs_nothing(tmp_path, emu, make_gateway):
    env = payg_env(tmp_path, emu)
    emu.switches(batch_steps_per_poll=1)
    gw = make_gateway(env=env)
    c = openai_client(gw.url, "client-key")
    rows = [{"custom_id": f"g{i}", "method": "POST", "url": "/v1/chat/completions",
             "body": {"model": "gpt-4o", "max_completion_tokens": 20, "stream": True, "messages": [
                 {"role": "developer", "content": "Be brief."}, {"role": "user", "content": f"hello {i}"}]}}
            for i in range(2)]
    mapped = c.batches.create(input_file_id=c.files.create(file=("g.jsonl", jsonl(rows)), purpose="batch").id,
                              endpoint="/v1/chat/completions", completion_window="24h")
    stopped = c.batches.create(input_file_id=c.files.create(file=("s.jsonl", jsonl(rows)), purpose="batch").id,
                               endpoint="/v1/chat/completions", completion_window="24h")
    assert c.batches.cancel(stopped.id).status == "cancelling"
    for _ in range(20):
        mapped, stopped = c.batches.retrieve(mapped.id), c.batches.retrieve(stopped.id)
        if mapped.status == "completed" and stopped.status == "cancelled":
            break
        time.sleep(0.2)
    assert (mapped.status, stopped.status) == ("completed", "cancelled"), (mapped, stopped)
    out = [json.loads(x) for x in c.files.content(mapped.output_file_id).text.splitlines()]
    assert {r["response"]["body"]["model"] for r in out} == {"gpt-4o"}  # Qwen's qwen-plus, named as asked
    assert stopped.output_file_id is None  # cancelled while validating: no line ran, nothing to bill
    rows_billed = until(lambda: ledger(env, "SELECT model, upstream_model, cost FROM usage WHERE endpoint = 'batches' "
                                            "AND prompt_tokens > 0"), "the mapped batch's row")
    assert [r[:2] for r in rows_billed] == [("gpt-4o", MODEL)]


def test_a_line_naming_a_retired_model_refuses_the_upload_and_nothing_reaches_qwen(tmp_path, emu, make_gateway):
    """qwen4-max-preview (the catalogue: served until 2026-11-25, then qwen4-max): a live request is answered 404
    locally; a batch line naming it was translated as it stood and uploaded, to fail on Qwen's side (issue 69,
    item 3; issue 70, item 3). Now the upload is refused naming the line, and no file reaches Qwen."""
    env = payg_env(tmp_path, emu)
    gw = make_gateway(env=env)
    c = openai_client(gw.url, "client-key")
    rows = [{"custom_id": "ok", "method": "POST", "url": "/v1/chat/completions",
             "body": {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}},
            {"custom_id": "old", "method": "POST", "url": "/v1/chat/completions",
             "body": {"model": "qwen4-max-preview", "messages": [{"role": "user", "content": "hi"}]}}]
    with pytest.raises(openai.NotFoundError) as e:
        c.files.create(file=("r.jsonl", jsonl(rows)), purpose="batch")
    error = e.value.body
    assert error["code"] == "model_not_found" and error["param"] == "line 2: model", error
    assert error["message"].startswith("Line 2 (custom_id 'old'): The model `qwen4-max-preview` was retired"), error
    assert "Use `qwen4-max` instead." in error["message"]
    assert not [r for r in emu.requests() if r["path"].endswith("/files")]  # nothing uploaded to Qwen


def test_a_coding_plan_key_account_is_refused_saying_why(tmp_path, emu, make_gateway):
    env = payg_env(tmp_path, emu, base="https://coding-intl.dashscope.aliyuncs.com/v1")
    gw = make_gateway(env=env)
    c = openai_client(gw.url, "client-key")
    with pytest.raises(openai.PermissionDeniedError) as e:
        c.files.create(file=("in.jsonl", jsonl([{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
                                                  "body": request(0)}])), purpose="batch")
    assert "Coding Plan" in e.value.message and "pay-as-you-go" in e.value.message
    assert e.value.code == "batch_not_allowed"
    with pytest.raises(openai.PermissionDeniedError):
        c.batches.list()


def test_two_gateways_on_one_database_share_a_batch_and_bill_it_once(tmp_path, emu, pg_url):
    """With `qwen_state_url`, a batch made through one gateway is found (and billed once) through another."""
    import psycopg

    from helpers.procs import Gateway

    emu.switches(batch_steps_per_poll=1)
    key = emu.seed_token(kind="key")
    gws = []
    for name in ("one", "two"):
        env = payg_env(tmp_path / name, emu)
        env["DS_KEY"] = key  # one Model Studio account behind both gateways
        gws.append(Gateway(tmp_path / name / "gw", env=env, args=("--set", f"qwen_state_url={pg_url}")))
    try:
        for gw in gws:
            gw.start()
        one, two = (openai_client(gw.url, "client-key") for gw in gws)
        rows = [{"custom_id": f"q{i}", "method": "POST", "url": "/v1/chat/completions", "body": request(i)}
                for i in range(3)]
        made = one.batches.create(input_file_id=one.files.create(file=("in.jsonl", jsonl(rows)), purpose="batch").id,
                                  endpoint="/v1/chat/completions", completion_window="24h")
        for _ in range(20):
            seen = [c.batches.retrieve(made.id) for c in (two, one)]
            if seen[0].status == "completed":
                break
            time.sleep(0.2)
        assert seen[0].status == "completed" and len(two.files.content(seen[0].output_file_id).text.splitlines()) == 3
        for c in (one, two):
            c.batches.retrieve(made.id)

        def billed() -> list:
            with psycopg.connect(pg_url) as conn:
                try:
                    return conn.execute(
                        "SELECT cost FROM usage WHERE endpoint = 'batches' AND prompt_tokens > 0").fetchall()
                except psycopg.errors.UndefinedTable:  # the ledger makes its table at its first write
                    return []

        assert len(until(billed, "the batch's row in the shared ledger")) == 1
        time.sleep(1)
        assert len(billed()) == 1
    finally:
        for gw in gws:
            gw.stop()

"""Every batch billed exactly once, whatever crashes (issue 60, item 4), through real mitmdump processes, the
emulator's Files and Batch APIs and openai-python: a gateway SIGKILLed right after the look that finds its batch
`completed` (the bill's moment), on SQLite and on a real PostgreSQL; batches only listed, or never looked at,
billed by the gateway that holds them; `POST /v1/batches` bodies checked as OpenAI's Batch API checks them; and
a named key with a USD budget refused a batch no price counts, as the chat path refuses it."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from pathlib import Path

import openai
import pytest

from e2e.test_e2e_batches import INPUT, MODEL, OUTPUT, jsonl, payg_env, request
from helpers.pgserver import pg_server, pg_url  # noqa: F401  (fixtures)
from helpers.procs import Gateway
from helpers.team import add_key, openai_client, until

pytestmark = pytest.mark.e2e

BILLS = "SELECT cost, cost_unit, prompt_tokens, completion_tokens, key_name FROM usage WHERE endpoint = 'batches' " \
        "AND prompt_tokens > 0"


def bills(env: dict[str, str], url: str = "") -> list[tuple]:
    """The batch bills in the gateway's ledger: its state folder's, or the shared database's."""
    if url:
        import psycopg

        with psycopg.connect(url) as conn:
            try:
                return conn.execute(BILLS).fetchall()
            except psycopg.errors.UndefinedTable:
                return []
    path = Path(env["QWEN_GATEWAY_HOME"]) / "usage.sqlite3"
    if not path.exists():
        return []
    db = sqlite3.connect(path)
    try:
        return db.execute(BILLS).fetchall()
    except sqlite3.OperationalError:  # no table yet
        return []
    finally:
        db.close()


def priced_env(tmp_path: Path, emu) -> tuple[dict[str, str], tuple[str, ...]]:
    env = payg_env(tmp_path, emu)
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"*": {MODEL: {"input": INPUT, "output": OUTPUT}}}))
    return env, ("--set", f"qwen_prices_file={prices}")


def made_batch(c, lines: int = 3, tag: str = "q") -> str:
    rows = [{"custom_id": f"{tag}{i}", "method": "POST", "url": "/v1/chat/completions", "body": request(i)}
            for i in range(lines)]
    fid = c.files.create(file=("in.jsonl", jsonl(rows)), purpose="batch").id
    return c.batches.create(input_file_id=fid, endpoint="/v1/chat/completions", completion_window="24h").id


def finish(emu, batch_id: str | None = None) -> None:
    """Qwen runs the batch (one, or all) to its end: no gateway asked."""
    emu.admin("POST", "batches", {"id": batch_id} if batch_id else {})


@pytest.mark.parametrize("storage", ["sqlite", "postgresql"])
def test_a_gateway_killed_right_after_the_look_that_finds_its_batch_completed_bills_it_once(
        tmp_path, emu, storage, request):
    url = request.getfixturevalue("pg_url") if storage == "postgresql" else ""
    env, args = priced_env(tmp_path, emu)
    args += ("--set", f"qwen_state_url={url}") if url else ()
    gw = Gateway(tmp_path / "gw", env=env, args=args).start()
    try:
        c = openai_client(gw.url, "client-key")
        bid = made_batch(c)
        finish(emu, bid)
        assert c.batches.retrieve(bid).status == "completed"  # the look that bills it
        gw.proc.send_signal(signal.SIGKILL)  # at once: no shutdown, no flush
        gw.proc.wait(10)
        gw.start()  # the same state
        c = openai_client(gw.url, "client-key")
        assert c.batches.retrieve(bid).status == "completed"  # looked at again: no second bill
        rows = until(lambda: bills(env, url), "the batch's bill", limit=10)
        time.sleep(1.5)  # a second bill would have come by now (the ledger writes within 0.5 s)
        rows = bills(env, url)
        print(f"\n{storage}: the batch's bills after a SIGKILL at its billing moment and a restart: {rows}")
        assert len(rows) == 1, rows
        assert rows[0][0] > 0 and rows[0][1] == "USD" and rows[0][2] > 0
    finally:
        gw.stop()


def test_batches_only_listed_or_never_looked_at_are_billed_by_the_gateway(tmp_path, emu):
    env, args = priced_env(tmp_path, emu)
    alice = add_key(env, "alice")
    gw = Gateway(tmp_path / "gw", env=env, args=(*args, "--set", "qwen_batch_poll=1")).start()
    try:
        c = openai_client(gw.url, alice)
        listed, unseen = made_batch(c, 2, "l"), made_batch(c, 3, "u")
        finish(emu)
        assert {b.id: b.status for b in c.batches.list()} == {listed: "completed", unseen: "completed"}
        rows = until(lambda: (lambda r: r if len(r) == 2 else None)(bills(env)), "both batches' bills", limit=15)
        time.sleep(2.5)  # two more rounds of the gateway's own looks: nothing billed twice
        rows = bills(env)
        print(f"\nbatches billed by the gateway's own looks: {rows}")
        assert len(rows) == 2 and {r[4] for r in rows} == {"alice"} and all(r[0] > 0 for r in rows)
        log = gw.log()
        for bid in (listed, unseen):  # each bill's request line, once
            assert len([x for x in log.splitlines() if f"GET /v1/batches/{bid} " in x and "cost=$" in x]) == 1, log
        assert alice not in log and env["DS_KEY"] not in log
    finally:
        gw.stop()


def test_a_batch_body_is_checked_as_openai_checks_it_before_qwen_sees_it(tmp_path, emu, make_gateway):
    gw = make_gateway(env=payg_env(tmp_path, emu))
    c = openai_client(gw.url, "client-key")
    rows = [{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": request(0)}]
    fid = c.files.create(file=("in.jsonl", jsonl(rows)), purpose="batch").id
    asked = {"input_file_id": fid, "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    with pytest.raises(openai.BadRequestError) as e:
        c.batches.create(**asked, extra_body={"priority": "high"})
    assert e.value.body["code"] == "unknown_parameter" and e.value.body["param"] == "priority"
    assert e.value.body["message"] == "Unknown parameter: 'priority'."
    with pytest.raises(openai.BadRequestError) as e:
        c.batches.create(**asked, metadata={"run": 7})
    assert e.value.body["code"] == "invalid_type" and e.value.body["param"] == "metadata.run", e.value.body
    assert [r for r in emu.requests() if r["path"].endswith("/batches")] == []  # neither reached Qwen
    made = c.batches.create(**asked, metadata={"run": "7"})
    assert made.metadata == {"run": "7"}


def test_uploads_without_their_own_custom_ids_are_refused(tmp_path, emu, make_gateway):
    gw = make_gateway(env=payg_env(tmp_path, emu))
    c = openai_client(gw.url, "client-key")
    line = {"method": "POST", "url": "/v1/chat/completions", "body": request(0)}
    for rows, code in (([{"custom_id": "a", **line}, line], "missing_custom_id"),
                       ([{"custom_id": "a", **line}, {"custom_id": "a", **line}], "duplicate_custom_id")):
        with pytest.raises(openai.BadRequestError) as e:
            c.files.create(file=("in.jsonl", jsonl(rows)), purpose="batch")
        assert e.value.body["code"] == code and e.value.body["param"] == "line 2: custom_id", e.value.body
        assert "Line 2 of the batch file" in e.value.body["message"]
    assert [r for r in emu.requests() if r["path"].endswith("/files")] == []


def test_a_key_with_a_usd_budget_is_refused_a_batch_no_price_counts(tmp_path, emu, make_gateway):
    env = payg_env(tmp_path, emu)
    frugal = add_key(env, "frugal", "--monthly-usd", "5")
    emu.switches(model_list={"unreadable": 404})  # no list from Qwen prices it either (it would: test_e2e_model_list)
    gw = make_gateway(env=env)
    c = openai_client(gw.url, frugal)
    with pytest.raises(openai.BadRequestError) as chat:  # the chat path's own refusal, for comparison
        c.chat.completions.create(**request(0))
    rows = [{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": request(0)}]
    fid = c.files.create(file=("in.jsonl", jsonl(rows)), purpose="batch").id
    with pytest.raises(openai.BadRequestError) as e:
        c.batches.create(input_file_id=fid, endpoint="/v1/chat/completions", completion_window="24h")
    print(f"\na USD-budget key's batch of an unpriced model: {e.value.status_code} {e.value.body['code']}")
    assert e.value.body["code"] == chat.value.body["code"] == "model_unpriced"
    assert e.value.body["message"] == chat.value.body["message"]
    assert [r for r in emu.requests() if r["path"].endswith("/batches")] == []

"""A batch billed exactly once whatever crashes (api/batches/bills.py), billed by the gateway's own looks when no
client looks (watch.py), and `POST /v1/batches` checked as OpenAI's Batch API checks it (create.py), against the
stand-in for Model Studio of test_routes.py."""

from __future__ import annotations

import asyncio
import json

import pytest
from mitmproxy.test import tflow, tutils

from qwen_gateway.api.batches import create
from qwen_gateway.stores.batches import BATCH, FILE, Record
from qwen_gateway.api.batches.watch import BatchWatch
from qwen_gateway.errors import GatewayError
from qwen_gateway.exchange import ClientRequest, Exchange
from unit.api.batches.test_routes import PAYG, Ledger, Qwen, call, config, created, routes_for, upload


def finished_batch(tmp_path, ledger: Ledger):
    qwen, conf = Qwen(), config(tmp_path)
    routes = routes_for(tmp_path, qwen, ledger=ledger)
    bid = created(routes, conf, json.loads(upload(routes, conf)[0].content)["id"])
    qwen.batches[bid].update(status="completed", output_file_id="file-batch_output-1")
    return qwen, conf, routes, bid


def test_a_gateway_stopped_between_the_bill_and_the_mark_writes_the_same_bill_again_taken_once(tmp_path):
    ledger = Ledger()
    qwen, conf, routes, bid = finished_batch(tmp_path, ledger)
    store = routes.store(conf)
    marking = store.settled

    async def killed(oid):  # the process ends here: the bill is in the ledger, the batch not marked
        store.settled = marking
        raise OSError("killed")

    store.settled = killed
    call(routes, "GET", f"/v1/batches/{bid}", "alice", conf)
    assert (ledger.writes, len(ledger.rows), ledger.told) == (1, 1, [])
    call(routes, "GET", f"/v1/batches/{bid}", "alice", conf)  # the next look (after the restart)
    assert (ledger.writes, len(ledger.rows), len(ledger.told)) == (2, 1, 1)  # written again, kept once, told once
    call(routes, "GET", f"/v1/batches/{bid}", "alice", conf)
    assert ledger.writes == 2


def test_a_bill_the_ledger_cannot_take_now_is_written_at_a_later_look(tmp_path):
    ledger = Ledger()
    qwen, conf, routes, bid = finished_batch(tmp_path, ledger)
    ledger.away = True
    resp, _ = call(routes, "GET", f"/v1/batches/{bid}", "alice", conf)
    assert resp.status_code == 200 and ledger.rows == {}  # the client is answered; the bill waits
    assert not asyncio.run(routes.store(conf).get(bid, "alice", BATCH)).billed
    ledger.away = False
    call(routes, "GET", f"/v1/batches/{bid}", "alice", conf)
    assert len(ledger.rows) == 1 and len(ledger.told) == 1


def test_batches_no_client_looks_at_are_billed_by_the_gateways_own_looks(tmp_path):
    ledger = Ledger()
    qwen, conf, routes, bid = finished_batch(tmp_path, ledger)
    running = created(routes, conf, json.loads(upload(routes, conf)[0].content)["id"])
    cancelled = created(routes, conf, json.loads(upload(routes, conf)[0].content)["id"])
    qwen.batches[cancelled]["status"] = "cancelled"  # ended before any line ran: nothing to bill
    store = routes.store(conf)
    asyncio.run(store.put(Record("batch_elsewhere", BATCH, "alice", "gone", "gpt-4o", "qwen-plus")))
    asyncio.run(store.put(Record("batch_forgotten", BATCH, "alice", "ds", "gpt-4o", "qwen-plus")))
    watch = BatchWatch(routes, lambda: conf)
    qwen.calls.clear()
    assert asyncio.run(watch.round()) == 4  # the account this gateway lacks is not asked about
    assert [b.id for b in ledger.rows.values()] == [f"batch-{bid}"] and len(ledger.told) == 1
    assert {c[2] for c in qwen.calls} >= {f"batches/{bid}", f"batches/{running}", "files/file-batch_output-1/content"}
    assert [r.id for r in asyncio.run(store.unsettled(10))] == [running, "batch_elsewhere"]  # 404: nothing to bill
    qwen.batches[running].update(status="completed", output_file_id="file-batch_output-2")
    assert asyncio.run(watch.round()) == 1 and len(ledger.rows) == 2
    assert asyncio.run(watch.round()) == 0


def test_a_batch_billed_by_its_results_file_before_is_not_billed_again(tmp_path):
    """Gateways before issue 60 marked a batch's results file billed: such a batch is settled without a bill."""
    ledger = Ledger()
    qwen, conf, routes, bid = finished_batch(tmp_path, ledger)
    store = routes.store(conf)
    asyncio.run(store.put(Record("file-batch_output-1", FILE, "alice", "ds", "gpt-4o", "qwen-plus", billed=True)))
    call(routes, "GET", f"/v1/batches/{bid}", "alice", conf)
    assert ledger.rows == {} and asyncio.run(store.get(bid, "alice", BATCH)).billed


def test_a_batch_whose_results_are_gone_is_said_once_and_not_asked_about_again(tmp_path, caplog):
    ledger = Ledger()
    qwen, conf, routes, bid = finished_batch(tmp_path, ledger)
    qwen.batches[bid]["output_file_id"] = "file-deleted"
    answers = routes.calls.send

    async def deleted(cred, method, suffix, *rest):
        if suffix == "files/file-deleted/content":
            return 404, "application/json", b'{"error": {"message": "not found"}}'
        return await answers(cred, method, suffix, *rest)

    routes.calls.send = deleted
    call(routes, "GET", f"/v1/batches/{bid}", "alice", conf)
    assert ledger.rows == {} and asyncio.run(routes.store(conf).get(bid, "alice", BATCH)).billed
    assert [m for m in caplog.messages if "is gone" in m] == [f"qwen: batch {bid} ended, but its results file "
                                                              "file-deleted is gone: its cost is not in the ledger"]


@pytest.mark.parametrize("extra, code, param", [
    ({"priority": "high"}, "unknown_parameter", "priority"),
    ({"metadata": {"run": 7}}, "invalid_type", "metadata.run"),
    ({"metadata": "run 7"}, "invalid_type", "metadata"),
    ({"completion_window": None}, "missing_required_parameter", "completion_window"),
])
def test_a_batch_body_openais_batch_api_would_refuse_never_reaches_qwen(tmp_path, extra, code, param):
    qwen, conf = Qwen(), config(tmp_path)
    routes = routes_for(tmp_path, qwen)
    fid = json.loads(upload(routes, conf)[0].content)["id"]
    body = {k: v for k, v in {"input_file_id": fid, "endpoint": "/v1/chat/completions", "completion_window": "24h",
                              **extra}.items() if v is not None}
    with pytest.raises(GatewayError) as e:
        call(routes, "POST", "/v1/batches", "alice", conf, json.dumps(body).encode())
    assert (e.value.status, e.value.code, e.value.param) == (400, code, param)
    assert [c for c in qwen.calls if c[2] == "batches"] == []


def test_a_key_with_a_usd_budget_meets_the_chat_paths_check_with_the_model_as_sent(tmp_path):
    seen = []

    def priced_only(ex):
        seen.append((ex.account, ex.attempt.model))
        raise GatewayError(400, "unpriced", code="model_unpriced")

    qwen, conf = Qwen(), config(tmp_path)
    routes = routes_for(tmp_path, qwen, priced_only=priced_only)
    fid = json.loads(upload(routes, conf)[0].content)["id"]
    created(routes, conf, fid)  # a key without a USD budget: never asked
    assert seen == []
    ex = Exchange(ClientRequest("POST", "/v1/batches", "http://gw/v1/batches"))
    ex.route, ex.key.name, ex.key.usd_budget = "batches", "alice", True
    flow = tflow.tflow(req=tutils.treq(method=b"POST", path=b"/v1/batches", content=json.dumps(
        {"input_file_id": fid, "endpoint": "/v1/chat/completions", "completion_window": "24h"}).encode()))
    with pytest.raises(GatewayError) as e:
        asyncio.run(routes(ex, flow, conf))
    assert e.value.code == "model_unpriced" and seen == [(PAYG.account, "qwen-plus")]
    assert len([c for c in qwen.calls if c[2] == "batches"]) == 1  # the first batch only


def test_openais_batch_body_is_taken_as_it_is():
    body = {"input_file_id": "file-1", "endpoint": "/v1/chat/ds-test", "completion_window": "336h",
            "metadata": {"ds_name": "nightly"}, "output_expires_after": {"anchor": "created_at", "seconds": 3600}}
    assert create.checked(body) is body  # Model Studio's endpoints and windows are its own to judge
    with pytest.raises(GatewayError) as e:
        create.checked([body])
    assert e.value.status == 400 and e.value.code == "invalid_request_body"

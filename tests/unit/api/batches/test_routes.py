"""/v1/files and /v1/batches on a key account (api/batches/routes.py), against a small stand-in for Model Studio's
APIs: an upload's chat lines translated, objects owned by their named key (another key: 404, lists filtered), a
finished batch billed once at the batch rate, its results read back, the plans refused."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from mitmproxy.test import tflow, tutils

from qwen_gateway.accounts import KEY, Credential
from qwen_gateway.api.batches.bills import BatchBills
from qwen_gateway.api.batches.routes import BatchRoutes
from qwen_gateway.stores.batches import BatchStore
from qwen_gateway.errors import GatewayError
from qwen_gateway.exchange import ClientRequest, Exchange
from qwen_gateway.pricing.prices import PriceTable, Tier
from qwen_gateway.settings.config import Config
from qwen_gateway.upstream.dashscope.batch_calls import BatchCalls
from unit.upstream.dashscope.test_batch_accounts import Pool  # a pool that hands out its accounts in order

PAYG = Credential("ds", KEY, "http://127.0.0.1:9/compatible-mode/v1", "sk-account-key")
CODING = Credential("cp", KEY, "https://coding-intl.dashscope.aliyuncs.com/v1", "sk-sp-1", billing="coding")
USAGE = {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100}



class Qwen:
    """Model Studio's Files and Batch APIs, as far as these tests need them."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.calls: list[tuple] = []

    async def __call__(self, cred, method, suffix, body, content_type, query, agent, config):
        self.calls.append((cred.account, method, suffix, query, agent))
        parts = suffix.split("/")
        if (method, parts[0], len(parts)) == ("POST", "files", 1):
            fid = f"file-batch-{len(self.files)}"
            self.files[fid] = httpx.Request("POST", "http://x", content=body,
                                            headers={"content-type": content_type}).read()
            return 200, "application/json", json.dumps({"id": fid, "object": "file", "purpose": "batch"}).encode()
        if (method, parts[0], len(parts)) == ("POST", "batches", 1):
            bid = f"batch_{len(self.batches)}"
            self.batches[bid] = {"id": bid, "object": "batch", "status": "validating", **json.loads(body)}
            return 200, "application/json", json.dumps(self.batches[bid]).encode()
        if method == "GET" and len(parts) == 1:
            found = [{"id": i} for i in self.files] if parts[0] == "files" else list(self.batches.values())
            return 200, "application/json", json.dumps({"object": "list", "data": found, "has_more": False}).encode()
        if parts[0] == "batches" and parts[1] in self.batches:
            return 200, "application/json", json.dumps(self.batches[parts[1]]).encode()
        if parts[:1] == ["files"] and parts[-1] == "content":
            line = {"custom_id": "a", "response": {"status_code": 200, "body": {
                "object": "chat.completion", "model": "qwen-plus", "usage": USAGE, "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "2"}, "finish_reason": "stop"}]}}}
            return 200, "application/octet-stream", (json.dumps(line) + "\n").encode()
        return 404, "application/json", b'{"error": {"message": "not found"}}'


def config(tmp_path) -> Config:
    prices = PriceTable({"": {"qwen-plus": (Tier(None, 2.0, 10.0),)}})
    return Config(prices=prices)


def call(routes, method: str, path: str, key: str, conf: Config, body: bytes = b"", ctype: str = "") -> tuple:
    flow = tflow.tflow(req=tutils.treq(method=method.encode(), path=path.encode(), content=body,
                                       headers=((b"content-type", ctype.encode()),) if ctype else ()))
    ex = Exchange(ClientRequest(method, path.partition("?")[0], "http://gw" + path, user_agent="OpenAI/Python 2.0"))
    ex.route, ex.key.name = "batches", key
    resp = asyncio.run(routes(ex, flow, conf))
    return resp, ex


def upload(routes, conf, key="alice"):
    line = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "gpt-4o", "messages": [{"role": "user", "content": "1+1?"}]}}
    sent = httpx.Request("POST", "http://x", data={"purpose": "batch"},
                         files={"file": ("in.jsonl", json.dumps(line).encode() + b"\n")})
    return call(routes, "POST", "/v1/files", key, conf, sent.read(), sent.headers["content-type"])


class Ledger:
    """The usage ledger as far as bills go: rows by their key (`xid`), each taken once; and what was told."""

    def __init__(self):
        self.rows: dict[str, Exchange] = {}
        self.writes = 0
        self.told: list[Exchange] = []
        self.away = False  # the ledger's storage cannot be written

    async def write(self, bill: Exchange) -> None:
        if self.away:
            raise OSError("disk full")
        self.writes += 1
        self.rows.setdefault(bill.id, bill)

    def bills(self) -> BatchBills:
        return BatchBills(self.write, self.told.append)


def routes_for(tmp_path, qwen, *creds, ledger: Ledger | None = None, priced_only=lambda ex: None):
    store = BatchStore(tmp_path)
    translate = lambda ex, body, cred, conf: {**body, "model": "qwen-plus"}  # noqa: E731
    back = lambda ex, answer, model: {**answer, "model": model}  # noqa: E731
    pool = Pool(*(creds or (PAYG,)))
    return BatchRoutes(BatchCalls(lambda: pool, qwen, priced_only), lambda conf: store, translate, back,
                       (ledger or Ledger()).bills())


def test_an_upload_is_translated_owned_by_its_key_and_hidden_from_others(tmp_path):
    qwen, conf = Qwen(), config(tmp_path)
    routes = routes_for(tmp_path, qwen, CODING, PAYG)
    resp, ex = upload(routes, conf)
    fid = json.loads(resp.content)["id"]
    assert resp.status_code == 200 and ex.account == "ds" and ex.requested_model == "gpt-4o"  # the ledger's row
    assert b'"model":"qwen-plus"' in qwen.files[fid] and b"gpt-4o" not in qwen.files[fid]
    assert qwen.calls[0] == ("ds", "POST", "files", "", "OpenAI/Python 2.0")  # the client's own User-Agent
    assert call(routes, "GET", f"/v1/files/{fid}", "alice", conf)[0].status_code == 404  # Qwen's own 404 passes
    with pytest.raises(GatewayError) as e:
        call(routes, "GET", f"/v1/files/{fid}", "bob", conf)
    assert e.value.status == 404 and e.value.message == f"No such File object: {fid}"
    upload(routes, conf, "bob")
    listed = json.loads(call(routes, "GET", "/v1/files?limit=5", "alice", conf)[0].content)
    assert [f["id"] for f in listed["data"]] == [fid] and qwen.calls[-1][3] == "limit=5"
    with pytest.raises(GatewayError) as e:
        created(routes, conf, fid, "bob")
    assert e.value.status == 404


def created(routes, conf, fid: str, key: str = "alice") -> str:
    made, _ = call(routes, "POST", "/v1/batches", key, conf, json.dumps(
        {"input_file_id": fid, "endpoint": "/v1/chat/completions", "completion_window": "24h"}).encode())
    return json.loads(made.content)["id"]


def test_a_finished_batch_is_billed_once_at_the_batch_rate_and_its_results_read_back(tmp_path):
    qwen, conf, ledger = Qwen(), config(tmp_path), Ledger()
    routes = routes_for(tmp_path, qwen, ledger=ledger)
    bid = created(routes, conf, json.loads(upload(routes, conf)[0].content)["id"])
    resp, ex = call(routes, "GET", f"/v1/batches/{bid}", "alice", conf)
    assert json.loads(resp.content)["status"] == "validating" and ledger.rows == {}
    qwen.batches[bid].update(status="completed", output_file_id="file-batch_output-1")
    _, ex = call(routes, "GET", f"/v1/batches/{bid}", "alice", conf)
    (bill,) = ledger.rows.values()
    assert ledger.told == [bill] and bill.id == f"batch-{bid}" and ex.result.cost is None  # a row of its own
    assert bill.result.cost == pytest.approx((1000 * 2.0 + 100 * 10.0) / 1e6 / 2) and bill.result.cost_unit == "USD"
    assert bill.result.usage == USAGE and bill.requested_model == "gpt-4o" and bill.attempt.model == "qwen-plus"
    assert bill.key.name == "alice" and bill.account == "ds" and bill.route == "batches"
    assert any("batch billed" in n for n in ex.notes)
    call(routes, "GET", f"/v1/batches/{bid}", "alice", conf)
    assert ledger.writes == 1 and len(ledger.told) == 1  # once
    out, _ = call(routes, "GET", "/v1/files/file-batch_output-1/content", "alice", conf)
    assert json.loads(out.content)["response"]["body"]["model"] == "gpt-4o"
    with pytest.raises(GatewayError):
        call(routes, "GET", "/v1/files/file-batch_output-1/content", "bob", conf)
    assert [b["id"] for b in json.loads(call(routes, "GET", "/v1/batches", "alice", conf)[0].content)["data"]] == [bid]
    assert json.loads(call(routes, "GET", "/v1/batches", "bob", conf)[0].content)["data"] == []


def test_plans_are_refused_and_wrong_methods_named(tmp_path):
    qwen, conf = Qwen(), config(tmp_path)
    routes = routes_for(tmp_path, qwen, CODING)
    for method, path in (("POST", "/v1/files"), ("GET", "/v1/batches")):
        with pytest.raises(GatewayError) as e:
            call(routes, method, path, "", conf, b"--x--", "multipart/form-data; boundary=x")
        assert e.value.status == 403 and "Coding Plan" in e.value.message
    with pytest.raises(GatewayError) as e:
        call(routes, "DELETE", "/v1/batches/batch_1", "", conf)
    assert e.value.status == 405
    assert qwen.calls == []


def test_qwen_out_of_reach_is_a_bad_gateway_naming_the_account(tmp_path):
    from qwen_gateway.errors import ConnectionFailed, UpstreamTimeout

    for raised, status in ((ConnectionFailed("cannot connect to q:443: refused"), 502),
                           (UpstreamTimeout("no answer within 120 s"), 504)):
        async def send(*args, raised=raised):
            raise raised

        with pytest.raises(GatewayError) as e:
            upload(routes_for(tmp_path, send), config(tmp_path))
        assert e.value.status == status and "account ds" in e.value.message and str(raised) in e.value.message


def test_nothing_is_made_on_qwen_while_the_owners_cannot_be_written(tmp_path):
    from qwen_gateway.storage.health import StateUnavailable

    (tmp_path / "file").write_text("not a folder")
    qwen, store = Qwen(), BatchStore(tmp_path / "file" / "state")
    routes = BatchRoutes(BatchCalls(lambda: Pool(PAYG), qwen), lambda conf: store, lambda ex, b, c, conf: b,
                         lambda ex, a, m: a, Ledger().bills())
    with pytest.raises(StateUnavailable):
        upload(routes, config(tmp_path))
    assert qwen.calls == []


def test_a_batch_watched_by_its_list_has_its_results_readable(tmp_path):
    qwen, conf = Qwen(), config(tmp_path)
    routes = routes_for(tmp_path, qwen)
    bid = created(routes, conf, json.loads(upload(routes, conf)[0].content)["id"])
    qwen.batches[bid].update(status="completed", output_file_id="file-batch_output-9")
    listed = json.loads(call(routes, "GET", "/v1/batches", "alice", conf)[0].content)["data"]
    assert [b["output_file_id"] for b in listed] == ["file-batch_output-9"]
    out, ex = call(routes, "GET", "/v1/files/file-batch_output-9/content", "alice", conf)
    assert out.status_code == 200 and ex.result.cost is None  # a download bills nothing: the batch's look does


def upload_lines(routes, conf, system: str, n: int, key: str = "alice") -> str:
    rows = [{"custom_id": f"q{i}", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "gpt-4o",
             "messages": [{"role": "system", "content": system}, {"role": "user", "content": f"{i} + {i}?"}]}}
            for i in range(n)]
    sent = httpx.Request("POST", "http://x", data={"purpose": "batch"},
                         files={"file": ("in.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())})
    resp, _ = call(routes, "POST", "/v1/files", key, conf, sent.read(), sent.headers["content-type"])
    return json.loads(resp.content)["id"]


def test_a_batch_whose_lines_share_a_long_prefix_is_advised_on_at_creation(tmp_path, caplog):
    qwen, conf = Qwen(), config(tmp_path)
    routes = routes_for(tmp_path, qwen)
    fid = upload_lines(routes, conf, "Grade the answer against the rubric. " * 400, 30)
    sent_before = dict(qwen.files)
    with caplog.at_level("INFO", logger="qwen"):
        made, ex = call(routes, "POST", "/v1/batches", "alice", conf, json.dumps(
            {"input_file_id": fid, "endpoint": "/v1/chat/completions", "completion_window": "24h"}).encode())
    bid = json.loads(made.content)["id"]
    (note,) = [n for n in ex.notes if n.startswith("batch advice")]
    assert "qwen-plus: 30 lines share a ~3,700-token prefix" in note and "as a batch $" in note and "in real time $" in note, note
    assert any(r.levelname == "INFO" and bid in r.getMessage() and "batch advice" in r.getMessage()
               for r in caplog.records)
    record = asyncio.run(routes.store(conf).get(bid, "alice", "batch"))
    assert '"advised":true' in record.advice and '"batch":' in record.advice  # kept for qwen-usage
    assert qwen.batches[bid]["input_file_id"] == fid and qwen.files == sent_before  # advice only: nothing changed


def test_a_batch_of_unrelated_lines_is_not_advised_on(tmp_path):
    qwen, conf = Qwen(), config(tmp_path)
    routes = routes_for(tmp_path, qwen)
    fid = upload_lines(routes, conf, "Be brief.", 30)
    _, ex = call(routes, "POST", "/v1/batches", "alice", conf, json.dumps(
        {"input_file_id": fid, "endpoint": "/v1/chat/completions", "completion_window": "24h"}).encode())
    assert not any(n.startswith("batch advice") for n in ex.notes), ex.notes

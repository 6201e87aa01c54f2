"""The local route of `/v1/files…` and `/v1/batches…`: each request made again to Model Studio's own API through
the retry policy and the pool (`Calls`: upstream/dashscope/batch_calls.py, handed in by components.py), on the account that
holds the object (a new upload: the next pay-as-you-go key account the pool hands out), its answer handed back,
the object owned by the named key that made it (store.py), and a finished batch billed once at the batch rate, at
the first look that finds it ended — a client's, or the gateway's own (watch.py) — as a ledger row of its own
(bills.py). A refusal (a key refused, a quota, a throttle) is the pool's to hear and the retry policy's to mend:
an upload may move to another account, a call on an object stays where the object lives.

Qwen's answers are OpenAI's shapes already (its Files and Batch APIs are OpenAI-compatible): they pass as they
are, but for a results file's lines (lines.results_back) and the owner's filter on lists. A batch's body is checked
as OpenAI's Batch API checks it (create.py), and a named key with a USD budget is refused a batch no price counts,
by the same check as on chat (the engine's `usd_budget_check`, before the batch is created). When a batch's lines
share a long prefix, its creation says what it costs against the same lines one by one (advice.py): a note on the
flow, a log line at info, and the batch's record (qwen-usage batches); the batch itself goes as asked."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol
from urllib.parse import urlencode

from mitmproxy import http

from ...accounts import Credential
from ...errors import GatewayError
from ...exchange import ClientRequest, Exchange
from ...local_answers import answer, json_response
from ...settings.config import Config
from . import create, lines, multipart
from .advice import Advice, Prefixes
from .bills import BatchBills
from .pieces import off_loop
from ...stores.batches import BATCH, FILE, BatchStore, Record

Build = Callable[[Credential], Awaitable[tuple[str, bytes]]]  # an upload's (content type, body) for an account
Translate = Callable[[Exchange, dict, Credential, Config], dict]  # a chat line's body -> Qwen's
Back = Callable[[Exchange, dict, str], dict]  # Qwen's chat answer, the client's model -> the client's answer
WHAT = {"files": "File", "batches": "Batch"}
log = logging.getLogger("qwen")


class Calls(Protocol):
    """Model Studio's Files and Batch APIs through the retry policy and the pool (upstream/dashscope/batch_calls.py)."""

    async def call(self, ex: Exchange, config: Config, method: str, suffix: str, *, holder: str | None = None,
                   body: bytes | Build = b"", content_type: str = "", query: str = "",
                   model: str = "") -> tuple[int, str, bytes]: ...

    async def holder(self, ex: Exchange, account: str) -> Credential: ...

    async def usable(self) -> None: ...


def not_found(kind: str, oid: str) -> GatewayError:
    return GatewayError(404, f"No such {WHAT[kind]} object: {oid}", param="id", code=None)


class BatchRoutes:
    def __init__(self, calls: Calls, store: Callable[[Config], BatchStore], translate: Translate, back: Back,
                 bills: BatchBills) -> None:
        self.calls, self.store, self.translate, self.back = calls, store, translate, back
        self.bills = bills

    async def __call__(self, ex: Exchange, flow: http.HTTPFlow, config: Config) -> http.Response:
        path = ex.client.path
        parts = [p for p in (path[3:] if path.startswith("/v1/") else path).split("/") if p]
        kind, rest, method = parts[0], parts[1:], ex.client.method
        store = self.store(config)
        if not rest:
            if method == "GET":
                return await self._list(ex, store, kind, dict(flow.request.query), config)
            if method == "POST":
                return await (self._upload(ex, flow, store, config) if kind == "files"
                              else self._create(ex, flow, store, config))
        elif len(rest) == 1 and method in ("GET", "DELETE") and (method == "GET" or kind == "files"):
            return await self._one(ex, store, kind, rest[0], method, config)
        elif len(rest) == 2 and (kind, rest[1], method) in (("files", "content", "GET"), ("batches", "cancel", "POST")):
            return await self._one(ex, store, kind, rest[0], method, config, rest[1])
        raise GatewayError(405 if len(rest) <= 2 else 404, f"Method {method} is not allowed for {path}.",
                           code="method_not_allowed")

    async def _upload(self, ex: Exchange, flow: http.HTTPFlow, store: BatchStore, config: Config) -> http.Response:
        await store.ready()  # the owner's row can be written: nothing is made on Qwen that nobody would own
        form = await off_loop(multipart.parse, flow.request.headers.get("content-type", ""),
                              flow.request.get_content() or b"")
        # the lines' model as asked and as sent, and their batch advice, once translated for the account that takes them
        models = ["", "", ""]

        async def build(cred: Credential) -> tuple[str, bytes]:
            """The form for `cred`'s account: a batch file's lines translated for it (the model map is per account)."""
            sent = dict(form)
            if multipart.text(form, "purpose") == "batch" and "file" in form:
                name, data = form["file"]
                shared = Prefixes()
                data, models[0], models[1] = await lines.translate_file(
                    data, lambda body: self.translate(ex, body, cred, config), shared)
                models[2] = (await off_loop(shared.advice, lambda model, usage, batch: config.prices.charge(
                    cred.billing, model, usage, batch=batch))).dumps() if shared.groups else ""
                sent["file"] = (name, data)
                ex.requested_model = models[0]
            return await off_loop(multipart.build, sent)

        status, rtype, data = await self.calls.call(ex, config, "POST", "files", body=build)
        made = json_object(data)
        if status == 200 and isinstance(made.get("id"), str):
            await store.put(Record(made["id"], FILE, ex.key.name, ex.account, models[0], models[1], advice=models[2]))
        return answer(status, data, rtype.encode() or b"application/json")

    async def _create(self, ex: Exchange, flow: http.HTTPFlow, store: BatchStore, config: Config) -> http.Response:
        asked = create.checked(_parsed(flow.request.get_content() or b""))
        fid = asked["input_file_id"]
        source = await store.get(fid, ex.key.name, FILE)
        if source is None:
            raise not_found("files", fid)
        await store.ready()
        ex.requested_model = source.model
        # on the account that holds the file; sent again only where Qwen refused it before taking it
        status, rtype, data = await self.calls.call(ex, config, "POST", "batches", holder=source.account,
                                                    body=json.dumps(asked).encode(), content_type="application/json",
                                                    model=source.upstream_model)
        made = json_object(data)
        if status == 200 and isinstance(made.get("id"), str):
            await store.put(Record(made["id"], BATCH, ex.key.name, source.account, source.model,
                                   source.upstream_model, advice=source.advice))
            _advise(ex, made["id"], Advice.loads(source.advice))
        return answer(status, data, rtype.encode() or b"application/json")

    async def _one(self, ex: Exchange, store: BatchStore, kind: str, oid: str, method: str, config: Config,
                   action: str = "") -> http.Response:
        record = await store.get(oid, ex.key.name, FILE if kind == "files" else BATCH)
        if record is None:
            raise not_found(kind, oid)
        ex.requested_model = record.model
        status, rtype, data = await self.calls.call(ex, config, method, "/".join((kind, oid, action)).rstrip("/"),
                                                    holder=record.account)
        if status != 200:
            return answer(status, data, rtype.encode() or b"application/json")
        if method == "DELETE":
            await store.forget(oid)
        if action == "content":
            if record.model:
                data = await lines.results_back(data, lambda body: self.back(ex, body, record.model))
            return answer(200, data, rtype.encode() or b"application/octet-stream")
        if kind == "batches":
            assert ex.attempt.cred is not None  # the holder's, which answered
            await self.look(store, record, json_object(data), ex.attempt.cred, config, ex)
        return answer(status, data, rtype.encode() or b"application/json")

    async def look(self, store: BatchStore, record: Record, batch: dict, cred: Credential, config: Config,
                   ex: Exchange | None = None) -> None:
        """What a look at a batch (Qwen's object) finds: its files readable by its owner, and once it has
        ended, its bill (bills.py)."""
        await self._files_of(store, record, batch)
        bill = await self.bills.settle(store, record, batch, cred, config, self._results)
        if bill is not None and ex is not None:
            usage = bill.result.usage or {}
            ex.notes.append(f"batch billed: {usage.get('prompt_tokens')} prompt and {usage.get('completion_tokens')} "
                            "completion tokens (its own ledger row)")

    async def _results(self, cred: Credential, file_id: str, config: Config) -> tuple[int, bytes]:
        suffix = f"files/{file_id}/content"
        status, _, data = await self.calls.call(own_look(suffix), config, "GET", suffix, holder=cred.account)
        return status, data

    @staticmethod
    async def _files_of(store: BatchStore, record: Record, batch: dict) -> None:
        """A batch's results and errors files are its owner's."""
        for key in ("output_file_id", "error_file_id"):
            if isinstance(batch.get(key), str) and batch[key]:
                await store.put(Record(batch[key], FILE, record.owner, record.account, record.model,
                                       record.upstream_model))

    async def _list(self, ex: Exchange, store: BatchStore, kind: str, query: dict, config: Config) -> http.Response:
        """The owner's objects, from each account that holds some (Qwen lists an account's, of every owner)."""
        holders = await store.accounts(ex.key.name, FILE if kind == "files" else BATCH)
        if not holders:
            await self.calls.usable()  # no account may run batches: say why, as an upload would
            return json_response(200, {"object": "list", "data": [], "has_more": False})
        data: list[dict] = []
        more = False
        for account in holders:
            status, rtype, raw = await self.calls.call(ex, config, "GET", kind, holder=account, query=urlencode(query))
            if status != 200:
                return answer(status, raw, rtype.encode() or b"application/json")
            page = json_object(raw)
            rows = [r for r in page.get("data") or [] if isinstance(r, dict) and isinstance(r.get("id"), str)]
            mine = await store.owned(ex.key.name, [r["id"] for r in rows])
            data += [r for r in rows if r["id"] in mine]
            for row in (r for r in rows if r["id"] in mine and kind == "batches"):
                if (record := await store.get(row["id"], ex.key.name, BATCH)) is not None:
                    await self._files_of(store, record, row)  # a batch watched by its list: its files readable
            more = more or bool(page.get("has_more"))
        shown: dict = {"object": "list", "data": data, "has_more": more}
        if kind == "batches":
            shown.update(first_id=data[0]["id"] if data else None, last_id=data[-1]["id"] if data else None)
        return json_response(200, shown)


def _advise(ex: Exchange, batch_id: str, advice: Advice | None) -> None:
    """A new batch's advice, when its lines share a prefix worth reading from the cache: on its flow and in the log."""
    if advice is not None and advice.advised:
        ex.notes.append(f"batch advice: {advice.text()}")
        log.info("qwen: batch advice for %s: %s", batch_id, advice.text())


def own_look(suffix: str) -> Exchange:
    """The exchange of a request the gateway makes on its own (a poll, a results file read for a bill): what the
    retry policy writes its attempts on; no client, no record."""
    path = f"/v1/{suffix}"
    return Exchange(ClientRequest("GET", path, path), route="batches")


def _parsed(data: bytes) -> object:
    try:
        return json.loads(data)
    except ValueError:
        raise GatewayError(400, "We could not parse the JSON body of your request.",
                           code="invalid_request_body") from None


def json_object(data: bytes) -> dict:
    """Qwen's answer as an object ({} when it is none): what the routes and the watcher read."""
    try:
        value = json.loads(data)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}

"""The local route of `/v1/files…` and `/v1/batches…`: each request made again to Model Studio's own API on the
account that holds the object (a new upload or batch: the next pay-as-you-go key account), its answer handed back,
the object owned by the named key that made it (store.py), and a finished batch billed once at the batch rate, at
the first look that finds it ended — a client's, or the gateway's own (watch.py) — as a ledger row of its own
(bills.py).

Qwen's answers are OpenAI's shapes already (its Files and Batch APIs are OpenAI-compatible): they pass as they
are, but for a results file's lines (lines.results_back) and the owner's filter on lists. A batch's body is checked
as OpenAI's Batch API checks it (create.py), and a named key with a USD budget is refused a batch no price counts,
by the same check as on chat (`priced_only`)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

from mitmproxy import http

from ...accounts import Credential, Pool
from ...errors import ConnectionFailed, GatewayError, UpstreamTimeout
from ...exchange import Exchange
from ...local_answers import answer, json_response
from ...settings.config import Config
from . import create, lines, multipart
from .accounts import batch_account, credential_of
from .bills import BatchBills
from .pieces import off_loop
from .store import BATCH, FILE, BatchStore, Record

# (credential, method, suffix under the account's base, body, content type, query, client's User-Agent, options)
Send = Callable[[Credential, str, str, bytes, str, str, str, Config], Awaitable[tuple[int, str, bytes]]]
Translate = Callable[[Exchange, dict, Credential, Config], dict]  # a chat line's body -> Qwen's
Back = Callable[[Exchange, dict, str], dict]  # Qwen's chat answer, the client's model -> the client's answer
WHAT = {"files": "File", "batches": "Batch"}


def not_found(kind: str, oid: str) -> GatewayError:
    return GatewayError(404, f"No such {WHAT[kind]} object: {oid}", param="id", code=None)


class BatchRoutes:
    def __init__(self, pool: Callable[[], Pool | None], store: Callable[[Config], BatchStore], send: Send,
                 translate: Translate, back: Back, bills: BatchBills,
                 priced_only: Callable[[Exchange], None] = lambda ex: None) -> None:
        self.pool, self.store, self.send, self.translate, self.back = pool, store, send, translate, back
        self.bills = bills
        self.priced_only = priced_only  # a named key's USD budget: nothing unpriced (the team's check, as on chat)

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

    async def _call(self, ex: Exchange, cred: Credential, method: str, suffix: str, config: Config,
                    body: bytes = b"", content_type: str = "", query: str = "") -> tuple[int, str, bytes]:
        ex.attempt.cred = cred  # the account on the ledger's row and the flow
        try:
            status, ctype, data = await self.send(cred, method, suffix, body, content_type, query,
                                                  ex.client.user_agent, config)
        except ConnectionFailed as e:
            raise GatewayError(504 if isinstance(e, UpstreamTimeout) else 502,
                               f"Qwen's Files and Batch APIs could not be reached with account {cred.account}: {e}",
                               code="upstream_unreachable") from None
        if status == 401:
            raise GatewayError(502, f"Qwen refused the key of account {cred.account} for its Files and Batch APIs "
                                    f"(401).", code="upstream_refused")
        return status, ctype, data

    async def _upload(self, ex: Exchange, flow: http.HTTPFlow, store: BatchStore, config: Config) -> http.Response:
        cred = await batch_account(self.pool())
        await store.ready()  # the owner's row can be written: nothing is made on Qwen that nobody would own
        form = await off_loop(multipart.parse, flow.request.headers.get("content-type", ""),
                              flow.request.get_content() or b"")
        model = upstream = ""
        if multipart.text(form, "purpose") == "batch" and "file" in form:
            name, data = form["file"]
            data, model, upstream = await lines.translate_file(data, lambda body: self.translate(ex, body, cred,
                                                                                                 config))
            form["file"] = (name, data)
            ex.requested_model = model
        ctype, body = await off_loop(multipart.build, form)
        status, rtype, data = await self._call(ex, cred, "POST", "files", config, body, ctype)
        made = _json(data)
        if status == 200 and isinstance(made.get("id"), str):
            await store.put(Record(made["id"], FILE, ex.key.name, cred.account, model, upstream))
        return answer(status, data, rtype.encode() or b"application/json")

    async def _create(self, ex: Exchange, flow: http.HTTPFlow, store: BatchStore, config: Config) -> http.Response:
        asked = create.checked(_parsed(flow.request.get_content() or b""))
        fid = asked["input_file_id"]
        source = await store.get(fid, ex.key.name, FILE)
        if source is None:
            raise not_found("files", fid)
        cred = await credential_of(self.pool(), source.account)
        ex.attempt.cred, ex.attempt.model = cred, source.upstream_model
        if ex.key.usd_budget:  # the model as its lines were sent, on the account that runs them
            self.priced_only(ex)
        await store.ready()
        status, rtype, data = await self._call(ex, cred, "POST", "batches", config, json.dumps(asked).encode(),
                                               "application/json")
        made = _json(data)
        if status == 200 and isinstance(made.get("id"), str):
            await store.put(Record(made["id"], BATCH, ex.key.name, cred.account, source.model, source.upstream_model))
        ex.requested_model = source.model
        return answer(status, data, rtype.encode() or b"application/json")

    async def _one(self, ex: Exchange, store: BatchStore, kind: str, oid: str, method: str, config: Config,
                   action: str = "") -> http.Response:
        record = await store.get(oid, ex.key.name, FILE if kind == "files" else BATCH)
        if record is None:
            raise not_found(kind, oid)
        cred = await credential_of(self.pool(), record.account)
        ex.requested_model = record.model
        status, rtype, data = await self._call(ex, cred, method, "/".join((kind, oid, action)).rstrip("/"), config)
        if status != 200:
            return answer(status, data, rtype.encode() or b"application/json")
        if method == "DELETE":
            await store.forget(oid)
        if action == "content":
            if record.model:
                data = await lines.results_back(data, lambda body: self.back(ex, body, record.model))
            return answer(200, data, rtype.encode() or b"application/octet-stream")
        if kind == "batches":
            await self.look(store, record, _json(data), cred, config, ex)
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
        status, _, data = await self.send(cred, "GET", f"files/{file_id}/content", b"", "", "", "", config)
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
            await batch_account(self.pool())  # no account may run batches: say why, as an upload would
            return json_response(200, {"object": "list", "data": [], "has_more": False})
        data: list[dict] = []
        more = False
        for account in holders:
            cred = await credential_of(self.pool(), account)
            status, rtype, raw = await self._call(ex, cred, "GET", kind, config, query=urlencode(query))
            if status != 200:
                return answer(status, raw, rtype.encode() or b"application/json")
            page = _json(raw)
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


def _parsed(data: bytes) -> object:
    try:
        return json.loads(data)
    except ValueError:
        raise GatewayError(400, "We could not parse the JSON body of your request.",
                           code="invalid_request_body") from None


def _json(data: bytes) -> dict:
    try:
        value = json.loads(data)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}

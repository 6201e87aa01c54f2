"""The stored Responses, answered locally: GET/DELETE /v1/responses/{id}, its input items, cancel, and
POST /v1/responses/input_tokens (the gateway's own count of the prompt a request would send)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from mitmproxy import http

from ...settings.config import Config
from ...errors import GatewayError
from ...exchange import Exchange
from ...local_answers import LocalRoute, json_response, unknown_url
from ...local_answers import answer as raw_answer
from ...tokens import estimate_request_tokens
from ...turn.background import BackgroundRuns, Run
from .output import upgraded
from .request import translate
from ...stores.responses import ResponseStore, wanted_ids


def stored_response(store: Callable[[], ResponseStore],
                    runs: Callable[[], BackgroundRuns] | None = None) -> LocalRoute:
    async def answer(ex: Exchange, flow: http.HTTPFlow, config: Config) -> http.Response:
        sub = ex.client.path[3:] if ex.client.path.startswith("/v1/") else ex.client.path
        return await stored(store(), ex.client.method, sub[len("/responses/"):], flow.request.query, ex.key.name,
                            runs() if runs is not None else None)
    return answer


def input_tokens(store: Callable[[], ResponseStore]) -> LocalRoute:
    async def answer(ex: Exchange, flow: http.HTTPFlow, config: Config) -> http.Response:
        return json_response(200, await count_input_tokens(store(), _body(flow), ex.key.name))
    return answer


def _body(flow: http.HTTPFlow) -> dict:
    try:
        body = json.loads(flow.request.content or b"{}")
    except (ValueError, UnicodeDecodeError, RecursionError):
        body = None
    if not isinstance(body, dict):
        raise GatewayError(400, "The request body must be a JSON object.", code="invalid_request_body")
    return body


async def stored(store: ResponseStore, method: str, rest: str, query, owner: str,
                 runs: BackgroundRuns | None = None) -> http.Response:
    """GET/DELETE /v1/responses/{id} (GET with `stream=true`: a background response's events),
    GET /v1/responses/{id}/input_items, POST /v1/responses/{id}/cancel: of a response `owner` stored
    (another key's is not found, as an id never stored)."""
    rid, _, action = rest.partition("/")
    if (method, action) not in (("GET", ""), ("DELETE", ""), ("GET", "input_items"), ("POST", "cancel")):
        raise unknown_url(method, f"/v1/responses/{rest}")
    await store.load([rid], owner)  # a shared store: one another gateway stored
    run = runs.get(rid, owner) if runs is not None else None
    if method == "DELETE":
        if run is not None and runs is not None:
            await runs.cancel(run)
        if await store.delete(rid, owner):
            return json_response(200, {"id": rid, "object": "response", "deleted": True})
    stored = store.get(rid, owner) if method != "DELETE" else None
    if stored is None:
        raise GatewayError(404, f"Response with id '{rid}' not found.", code="not_found", param="response_id")
    if action == "input_items":  # read by a worker thread: a response's input may hold 10,000 items
        return json_response(200, await asyncio.to_thread(lambda: item_page(store.inputs(rid, owner) or [], query)))
    if not stored.get("background"):
        if action == "cancel":  # every other answer is finished before it is stored
            raise GatewayError(400, "Only responses created with background=true can be cancelled.",
                               code="invalid_request", param="response_id")
        if query.get("stream") == "true":
            raise GatewayError(400, "Only responses created with background=true can be streamed.",
                               code="invalid_request", param="stream")
        return json_response(200, upgraded(stored))
    return await _background(run, upgraded(stored), action, query, runs)


async def _background(run: Run | None, stored: dict, action: str, query,
                      runs: BackgroundRuns | None) -> http.Response:
    """A background response: cancelled, streamed (its events after `starting_after`, once it has ended) or
    shown as it stands."""
    if run is None:  # not run by this gateway process: it ended, or the gateway stopped while it ran
        if stored.get("status") in ("queued", "in_progress"):
            stored = {**stored, "status": "failed", "error": {
                "code": "server_error", "message": "The gateway stopped while this response was running."}}
        if query.get("stream") == "true":
            raise GatewayError(400, "This response's events are no longer held by the gateway.",
                               code="invalid_request", param="stream")
        return json_response(200, stored)
    if action == "cancel" and runs is not None:
        return json_response(200, await runs.cancel(run))
    if query.get("stream") == "true":
        after = query.get("starting_after")
        try:
            start = int(after) if after is not None else -1
        except ValueError:
            start = -2
        if start < -1:
            raise GatewayError(400, "starting_after must be a sequence number (an integer, 0 or more).",
                               param="starting_after", code="invalid_value")
        await run.done.wait()  # the gateway's own answers go out whole: the events once the run has ended
        return raw_answer(200, run.since(start), b"text/event-stream; charset=utf-8")
    return json_response(200, run.response())


def item_page(items: list[dict], query, default_order: str = "desc") -> dict:
    """One page of a list of items, as OpenAI pages them (`limit` 1–100, default 20; `order` desc by
    default, asc for stored chat completions; `after` an item id)."""
    order = query.get("order", default_order)
    if order not in ("asc", "desc"):
        raise GatewayError(400, "order must be asc or desc.", param="order", code="invalid_value")
    try:
        limit = int(query.get("limit", 20))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 100:
        raise GatewayError(400, "limit must be an integer from 1 to 100.", param="limit", code="invalid_value")
    ordered = items if order == "asc" else items[::-1]
    after = query.get("after")
    if after:
        ids = [i.get("id") for i in ordered]
        ordered = ordered[ids.index(after) + 1:] if after in ids else []
    page = ordered[:limit]
    return {"object": "list", "data": page, "has_more": len(ordered) > limit,
            "first_id": page[0]["id"] if page else "", "last_id": page[-1]["id"] if page else ""}


async def count_input_tokens(store: ResponseStore, body: dict, owner: str) -> dict:
    """POST /v1/responses/input_tokens: the gateway's own estimate of the prompt the request would send
    (previous_response_id, `owner`'s, included), counted like the request line's estimate (tokens.py)."""
    await store.load(wanted_ids(body), owner)
    chat = translate({**body, "input": body.get("input") if body.get("input") is not None else []},
                     **store.continuation(body, owner), open_sealed=store.sealer.open,
                     lookup=lambda i: store.item(i, owner)).chat
    tokens, _method = await asyncio.to_thread(estimate_request_tokens, chat)
    return {"object": "response.input_tokens", "input_tokens": tokens}

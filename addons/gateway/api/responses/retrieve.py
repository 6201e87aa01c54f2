"""The stored Responses, answered locally: GET/DELETE /v1/responses/{id}, its input items, cancel, and
POST /v1/responses/input_tokens (the gateway's own count of the prompt a request would send)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from mitmproxy import http

from ...config import Config
from ...errors import GatewayError
from ...exchange import Exchange
from ...local import LocalRoute, json_response, unknown_url
from ...tokens import estimate_request_tokens
from .request import translate
from .store import ResponseStore


def stored_response(store: Callable[[], ResponseStore]) -> LocalRoute:
    async def answer(ex: Exchange, flow: http.HTTPFlow, config: Config) -> http.Response:
        sub = ex.client.path[3:] if ex.client.path.startswith("/v1/") else ex.client.path
        return stored(store(), ex.client.method, sub[len("/responses/"):], flow.request.query)
    return answer


def input_tokens(store: Callable[[], ResponseStore]) -> LocalRoute:
    async def answer(ex: Exchange, flow: http.HTTPFlow, config: Config) -> http.Response:
        return json_response(200, await count_input_tokens(store(), _body(flow)))
    return answer


def _body(flow: http.HTTPFlow) -> dict:
    try:
        body = json.loads(flow.request.content or b"{}")
    except (ValueError, UnicodeDecodeError, RecursionError):
        body = None
    if not isinstance(body, dict):
        raise GatewayError(400, "The request body must be a JSON object.", code="invalid_request_body")
    return body


def stored(store: ResponseStore, method: str, rest: str, query) -> http.Response:
    """GET/DELETE /v1/responses/{id}, GET /v1/responses/{id}/input_items, POST /v1/responses/{id}/cancel."""
    rid, _, action = rest.partition("/")
    if (method, action) not in (("GET", ""), ("DELETE", ""), ("GET", "input_items"), ("POST", "cancel")):
        raise unknown_url(method, f"/v1/responses/{rest}")
    if method == "DELETE" and store.delete(rid):
        return json_response(200, {"id": rid, "object": "response", "deleted": True})
    stored = store.get(rid) if method != "DELETE" else None
    if stored is None:
        raise GatewayError(404, f"Response with id '{rid}' not found.", code="not_found", param="response_id")
    if action == "cancel":  # every answer is finished before it is stored: nothing runs in the background
        raise GatewayError(400, "Only responses created with background=true can be cancelled.",
                           code="invalid_request", param="response_id")
    if action == "input_items":
        return json_response(200, item_page(store.inputs(rid) or [], query))
    return json_response(200, stored)


def item_page(items: list[dict], query) -> dict:
    """One page of a list of items, as OpenAI pages them (`limit` 1–100, default 20; `order` desc by
    default; `after` an item id)."""
    order = query.get("order", "desc")
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


async def count_input_tokens(store: ResponseStore, body: dict) -> dict:
    """POST /v1/responses/input_tokens: the gateway's own estimate of the prompt the request would send
    (previous_response_id included), counted like the request line's estimate (tokens.py)."""
    chat = translate({**body, "input": body.get("input") if body.get("input") is not None else []},
                     **store.continuation(body), open_sealed=store.sealer.open, lookup=store.item).chat
    tokens, _method = await asyncio.to_thread(estimate_request_tokens, chat)
    return {"object": "response.input_tokens", "input_tokens": tokens}

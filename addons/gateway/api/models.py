"""GET /v1/models and /v1/models/{id}, answered locally from the model map (models.py): the static list and the
live catalogues of the account kinds in use (models.LiveModels), as cached."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from mitmproxy import http

from .. import dialects
from ..settings.config import Config
from ..errors import GatewayError
from ..exchange import Exchange
from ..local_answers import json_response
from ..models import catalogue
from ..models.model_map import Offers, offers_of, tier_alias
from ..models.suggestions import NOT_FOUND, message

if TYPE_CHECKING:
    from ..accounts import Pool
    from ..local_answers import LocalRoute


def answer(pool: Callable[[], Pool | None],
           refresh: Callable[[Config, Pool, list[dict]], None] = lambda config, pool, rows: None) -> LocalRoute:
    """The route, listing what the pool's accounts can serve (model_map.ModelMap.list); `refresh` starts the
    due fetches of the key accounts' own lists (in the background: this answer is the cache)."""

    async def models(ex: Exchange, flow: http.HTTPFlow, config: Config) -> http.Response:
        current = pool()
        offers = None
        if current is not None:
            rows = current.status()
            refresh(config, current, rows)
            offers = offers_of(rows)
        return await _answer(ex, flow, config, offers)

    return models


async def _answer(ex: Exchange, flow: http.HTTPFlow, config: Config, offers: Offers | None) -> http.Response:
    config.models.live.wanted()  # the live catalogues refresh in the background: this answer is the cache
    path = ex.client.path
    sub = path[3:] if path.startswith("/v1/") else path
    dialect = dialects.of(ex.dialect)
    if sub == "/models":
        listed = config.models.list(offers)
        if dialect.models_shape == dialects.ANTHROPIC_SHAPE:  # an Anthropic SDK's models.list()
            return json_response(200, anthropic_page(_for_messages(listed), flow.request.query))
        return json_response(200, {"object": "list", "data": listed})
    name = sub[len("/models/"):]
    model = config.models.get(name, offers)
    if model is None and dialect.tier_ids and tier_alias(name):  # any Claude id the map answers
        model = {"id": name, "created": 0}
    if model is None and (row := catalogue.retired(name)) is not None:  # gone from Qwen's lists too: said so
        raise GatewayError(404, catalogue.retirement_message(name, row), code=NOT_FOUND, param="model")
    if model is None:
        raise GatewayError(404, message(name, [m["id"] for m in config.models.list(offers)]), code=NOT_FOUND,
                           param="model")
    if dialect.models_shape == dialects.ANTHROPIC_SHAPE:
        return json_response(200, anthropic_list([model])["data"][0])
    return json_response(200, model)


async def codex_catalog(ex: Exchange, flow: http.HTTPFlow, config: Config) -> http.Response:
    """Codex's model-list refresh (GET chatgpt.com/backend-api/codex/models, built-in provider): an empty
    catalog. Codex 0.169 takes a non-empty answer as its whole catalog, the instructions it sends each model
    included (`base_instructions`), so listing Qwen models would replace Codex's own prompt with one the
    gateway wrote; an empty one keeps Codex's bundled catalog and prompts, and the gateway answers whichever
    model Codex then asks for (models.ModelMap). Answered here, the user's key never reaches chatgpt.com and
    Codex does not retry the refresh (docs/clients.md)."""
    resp = json_response(200, {"models": []})
    resp.headers["etag"] = '"qwen-gateway-empty"'  # Codex keeps the ETag and refreshes when it changes
    return resp


def anthropic_list(models: list[dict]) -> dict:
    """Anthropic's list shape (`type: model`, an RFC 3339 `created_at`, cursor ids)."""
    data = [{"type": "model", "id": m["id"], "display_name": m["id"], "created_at": _created(m),
             "lifecycle": _lifecycle(m.get("shutdown_date"))} for m in models]
    return {"data": data, "has_more": False, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None}


def _lifecycle(last_day: str | None) -> str:
    """Anthropic's terms (its "Model deprecations" page): a retirement announced is `deprecated` until its last day
    served, `retired` after it; else `active`."""
    if not last_day:
        return "active"
    return "retired" if catalogue.today() > last_day else "deprecated"


def _for_messages(models: list[dict]) -> list[dict]:
    """What a Messages client can ask for: the Claude names first, then Qwen's chat models (not OpenAI's
    aliases, nor embedding models)."""
    claude = [m for m in models if m["id"].startswith("claude-")]
    qwen = [m for m in models if str(m.get("owned_by")).startswith("qwen") and m.get("owned_by") != "qwen-gateway"
            and not m["id"].startswith("text-embedding")]
    return claude + qwen


def anthropic_page(models: list[dict], query) -> dict:
    """One page, as Anthropic pages the list: `limit` (1–1000, default 20), `after_id`, `before_id`."""
    try:
        limit = int(query.get("limit", 20))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 1000:
        raise GatewayError(400, "limit: Input should be an integer from 1 to 1000", param="limit")
    ids = [m["id"] for m in models]
    after, before = query.get("after_id"), query.get("before_id")
    if after in ids:
        models = models[ids.index(after) + 1:]
    elif before in ids:
        models = models[:ids.index(before)][-limit:]
    page = anthropic_list(models[:limit])
    page["has_more"] = len(models) > limit and before not in ids
    return page


def _created(model: dict) -> str:
    return datetime.fromtimestamp(model.get("created") or 0, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

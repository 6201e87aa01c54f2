"""GET /v1/models and /v1/models/{id}, answered locally from the model map (models.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from mitmproxy import http

from ..config import Config
from ..errors import GatewayError
from ..exchange import Exchange
from ..local import json_response


async def answer(ex: Exchange, flow: http.HTTPFlow, config: Config) -> http.Response:
    path = ex.client.path
    sub = path[3:] if path.startswith("/v1/") else path
    if sub == "/models":
        if ex.dialect == "anthropic":  # an Anthropic SDK's models.list()
            return json_response(200, anthropic_list(config.models.list()))
        return json_response(200, {"object": "list", "data": config.models.list()})
    name = sub[len("/models/"):]
    model = config.models.get(name)
    if model is None:
        raise GatewayError(404, f"The model '{name}' does not exist.", code="model_not_found", param="model")
    if ex.dialect == "anthropic":
        return json_response(200, anthropic_list([model])["data"][0])
    return json_response(200, model)


def anthropic_list(models: list[dict]) -> dict:
    """Anthropic's list shape (`type: model`, an RFC 3339 `created_at`, cursor ids)."""
    data = [{"type": "model", "id": m["id"], "display_name": m["id"], "created_at": _created(m)} for m in models]
    return {"data": data, "has_more": False, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None}


def _created(model: dict) -> str:
    return datetime.fromtimestamp(model.get("created") or 0, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

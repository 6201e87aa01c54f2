"""GET /v1/models and /v1/models/{id}, answered locally from the model map (models.py)."""

from __future__ import annotations

from mitmproxy import http

from ..config import Config
from ..errors import GatewayError
from ..exchange import Exchange
from ..local import json_response


async def answer(ex: Exchange, flow: http.HTTPFlow, config: Config) -> http.Response:
    path = ex.client.path
    sub = path[3:] if path.startswith("/v1/") else path
    if sub == "/models":
        return json_response(200, {"object": "list", "data": config.models.list()})
    name = sub[len("/models/"):]
    model = config.models.get(name)
    if model is None:
        raise GatewayError(404, f"The model '{name}' does not exist.", code="model_not_found", param="model")
    return json_response(200, model)

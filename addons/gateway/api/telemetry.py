"""Telemetry an unchanged Codex sends OpenAI, answered by the gateway (docs/clients.md#codex-telemetry).

Through the explicit proxy Codex posts its OTLP metrics to `ab.chatgpt.com/otlp/v1/metrics` (model names,
auth mode, OS; about 700 KB a session). The user chose Qwen, and nothing of theirs goes to OpenAI: the
gateway claims the OTLP paths of that host with api.openai.com (config.CODEX_TELEMETRY; `qwen_codex_telemetry
=pass` lets them through instead) and answers OTLP/HTTP's full success, an empty Export…ServiceResponse in the
request's own encoding (protobuf: no bytes; JSON: `{}`). Nothing of the request is kept: its body is dropped
from the flow (mitmweb, `-w` files, the debug log), and only its size is noted.
"""

from __future__ import annotations

from mitmproxy import http

from ..settings.config import Config
from ..exchange import Exchange
from ..local_answers import answer as whole

PROTOBUF = b"application/x-protobuf"


async def answer(ex: Exchange, flow: http.HTTPFlow, config: Config) -> http.Response:
    size = len(flow.request.raw_content or b"")
    json_body = "json" in flow.request.headers.get("content-type", "")
    flow.request.content = b""  # the metrics themselves: not kept anywhere
    ex.notes.append(f"Codex telemetry ({size} bytes) answered locally and dropped: nothing went to OpenAI")
    return whole(200, b"{}", b"application/json") if json_body else whole(200, b"", PROTOBUF)

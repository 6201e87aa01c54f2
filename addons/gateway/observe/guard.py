"""The context guard: a prompt over its model's token limit gets OpenAI's `context_length_exceeded` at once,
instead of a slow 400 (or a 504 after minutes) from Qwen.

Cheap for ordinary requests: a body no longer than the limit in bytes cannot exceed it (a cl100k token is
at least one UTF-8 byte, and JSON spells text in at least as many bytes; images, which count a fixed
amount, are added to the bound), so only bodies longer than the limit are parsed and counted — in a
thread, awaited.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence

from mitmproxy import ctx, exceptions, http

from ..errors import GatewayError
from .common import claims, prompt_endpoint
from .tokens import IMAGE_TOKENS, estimate_request_tokens

_PARAM = {"chat.completions": "messages", "responses": "input", "completions": "prompt"}
_JSON = {"content-type": "application/json"}


def parse_limits(entries: Sequence[str]) -> dict[str, int]:
    limits: dict[str, int] = {}
    for item in entries:
        model, sep, n = item.rpartition("=")
        model, n = model.strip(), n.strip()
        if not sep or not model or not n.isdigit() or int(n) <= 0:
            raise exceptions.OptionsError(f"qwen_context_limits: {item!r} is not model=tokens (a positive integer)")
        limits[model] = int(n)
    return limits


def byte_bound(content: bytes) -> int:
    """An upper bound of the tokens a body can count: its bytes, plus the fixed amount per image
    (every image part spells `"image…` or `…_image"` at least once)."""
    images = content.count(b'"image') + content.count(b'_image"')
    return len(content) + images * IMAGE_TOKENS


def context_error(limit: int, tokens: int, param: str = "messages") -> GatewayError:
    return GatewayError(400, f"This model's maximum context length is {limit} tokens. However, your messages "
                             f"resulted in {tokens} tokens. Please reduce the length of the messages.",
                        type="invalid_request_error", code="context_length_exceeded", param=param)


class ContextGuard:
    """Before the gateway, in `request`."""

    def __init__(self, gateway=None) -> None:
        self.gateway = gateway
        self.limits: dict[str, int] = {}
        self.default = 0

    def load(self, loader) -> None:
        loader.add_option("qwen_context_limits", Sequence[str], [],
                          "Prompt token limits per model, model=tokens (the model name the client asks for), "
                          "e.g. coder-model=1000000; repeat for more. Over the limit: a local 400 "
                          "context_length_exceeded.")
        loader.add_option("qwen_context_limit_default", int, 0,
                          "Prompt token limit for models not in qwen_context_limits (0: no limit).")

    def configure(self, updated: set[str]) -> None:
        if "qwen_context_limits" in updated:
            self.limits = parse_limits(ctx.options.qwen_context_limits)
        if "qwen_context_limit_default" in updated:
            if ctx.options.qwen_context_limit_default < 0:
                raise exceptions.OptionsError("qwen_context_limit_default must be 0 (off) or a token count")
            self.default = ctx.options.qwen_context_limit_default

    def limit_for(self, model: object) -> int:
        return self.limits.get(model, self.default) if isinstance(model, str) else self.default

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live or not (self.limits or self.default):
            return
        endpoint = prompt_endpoint(flow)
        if endpoint is None or not claims(flow, self.gateway):
            return
        try:
            content = flow.request.content or b""
        except ValueError:  # undecodable content-encoding: the gateway answers that itself
            return
        bound = byte_bound(content)
        if bound <= min([*self.limits.values(), *([self.default] if self.default else [])]):
            return  # cannot exceed any limit: not even parsed
        started = time.time()
        checked = await asyncio.to_thread(self._check, content, bound)
        if checked is None:
            return
        model, limit, tokens, method, stream = checked
        if tokens <= limit:
            # the TokenCounter (after the gateway) takes this count instead of counting again
            flow.metadata["qwen_tokens"] = {"prompt_tokens_est": tokens, "token_method": method}
            return
        e = context_error(limit, tokens, _PARAM[endpoint])
        flow.response = http.Response.make(e.status, e.to_bytes(), _JSON)
        flow.metadata["qwen"] = {
            "client": {"method": flow.request.method, "url": flow.request.pretty_url},
            "endpoint": endpoint, "model": model if isinstance(model, str) else "", "upstream_model": "",
            "account": "", "retries": 0, "stream": stream,
            "notes": [f"context guard: {tokens} tokens > {limit}"], "started_at": started,
            "duration_ms": round((time.time() - started) * 1000, 1), "status": e.status,
            "error": {"status": e.status, "code": e.code, "message": e.message},
            "prompt_tokens_est": tokens, "token_method": method,
        }

    def _check(self, content: bytes, bound: int) -> tuple[object, int, int, str, bool] | None:
        """In a thread: (model, limit, tokens, method, stream), or None when there is nothing to check."""
        try:
            body = json.loads(content)
        except (ValueError, UnicodeDecodeError):
            return None  # the gateway answers malformed JSON itself
        if not isinstance(body, dict):
            return None
        model = body.get("model")
        limit = self.limit_for(model)
        if not limit or bound <= limit:
            return None
        try:
            tokens, method = estimate_request_tokens(body)
        except Exception:  # never let the guard break a request: Qwen has its own limit
            return None
        return model, limit, tokens, method, body.get("stream") is True


async def context_check(ex, config) -> GatewayError | None:
    """The context guard as a step of the gateway: the client's error when the prompt is over the limit."""
    limit = config.context_limit(ex.requested_model)
    if not limit or ex.endpoint is None or ex.endpoint.name not in _PARAM or ex.client.size <= limit:
        return None
    try:
        tokens, method = await asyncio.to_thread(estimate_request_tokens, ex.body or {})
    except Exception:
        return None
    ex.prompt_tokens_est, ex.token_method = tokens, method
    if tokens <= limit:
        return None
    ex.notes.append(f"context guard: {tokens} tokens > {limit}")
    return context_error(limit, tokens, _PARAM[ex.endpoint.name])

"""Token estimates off the critical path, and the context guard that needs one before sending."""

from __future__ import annotations

import asyncio
import json

from mitmproxy import ctx, exceptions, http
from mitmproxy.utils import asyncio_utils

from ..errors import GatewayError
from .tokens import count_request_tokens

COUNTED_PATHS = ("/chat/completions", "/responses", "/completions")


def _body(flow: http.HTTPFlow) -> dict | None:
    try:
        data = json.loads(flow.request.content or b"")
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


class TokenCounter:
    """After the gateway: counts the upstream prompt in a thread; the request does not wait for it."""

    def load(self, loader) -> None:
        loader.add_option("qwen_token_count", bool, True, "Estimate each prompt's tokens (tiktoken, off the "
                                                          "request path).")

    def request(self, flow: http.HTTPFlow) -> None:
        meta = flow.metadata.get("qwen")
        if flow.response or not ctx.options.qwen_token_count or not (isinstance(meta, dict) and meta.get("endpoint")):
            return
        if "prompt_tokens_est" in meta:  # the guard already counted it
            return
        content = flow.request.content
        asyncio_utils.create_task(self._count(meta, content), name="qwen token count", keep_ref=True)

    @staticmethod
    async def _count(meta: dict, content: bytes | None) -> None:
        def work():
            try:
                body = json.loads(content or b"")
            except ValueError:
                return None
            return count_request_tokens(body) if isinstance(body, dict) else None

        result = await asyncio.to_thread(work)
        if result is not None:
            meta["prompt_tokens_est"], meta["token_method"] = result


class ContextGuard:
    """Before the gateway: a prompt over the model's limit is answered locally with OpenAI's
    context_length_exceeded instead of waiting for Qwen's 400 or 504."""

    def __init__(self, gateway) -> None:
        self.gateway = gateway
        self.limits: dict[str, int] = {}
        self.default = 0

    def load(self, loader) -> None:
        from collections.abc import Sequence

        loader.add_option("qwen_context_limits", Sequence[str], [],
                          "Per-model prompt token limits, model=tokens (the client's model name).")
        loader.add_option("qwen_context_limit_default", int, 0, "Prompt token limit for other models (0: off).")

    def configure(self, updated: set[str]) -> None:
        if "qwen_context_limits" in updated:
            limits = {}
            for item in ctx.options.qwen_context_limits:
                model, _, n = item.partition("=")
                if not n.strip().isdigit():
                    raise exceptions.OptionsError(f"qwen_context_limits entry {item!r} is not model=tokens")
                limits[model.strip()] = int(n)
            self.limits = limits
        if "qwen_context_limit_default" in updated:
            self.default = ctx.options.qwen_context_limit_default

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live or not (self.limits or self.default):
            return
        if flow.request.method != "POST" or not flow.request.path.split("?")[0].endswith(COUNTED_PATHS):
            return
        if not self.gateway.claims(flow):
            return
        content = flow.request.content or b""
        body = _body(flow)
        if body is None:
            return  # the gateway answers malformed JSON itself
        limit = self.limits.get(str(body.get("model")), self.default)
        # A token is at least one byte of UTF-8 text: a body no longer than the limit cannot exceed it.
        if not limit or len(content) <= limit:
            return
        tokens, method = await asyncio.to_thread(lambda: count_request_tokens(body, exact=True))
        flow.metadata.setdefault("qwen", {})["prompt_tokens_est"] = tokens
        if tokens > limit:
            e = GatewayError(400, f"This model's maximum context length is {limit} tokens. However, your messages "
                                  f"resulted in {tokens} tokens ({method}). Please reduce the length of the messages.",
                             param="messages", code="context_length_exceeded")
            flow.response = http.Response.make(400, e.to_bytes(), {"content-type": "application/json"})
            flow.metadata["qwen"]["error"] = {"status": 400, "code": e.code, "message": e.message}

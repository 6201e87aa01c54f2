"""Test support for tests/test_observe_*.py: flows as the gateway leaves them, and the gateway's options
(so the observability addons can be tested without the gateway)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from mitmproxy import http
from mitmproxy.proxy import mode_specs
from mitmproxy.test import tflow


class GatewayOptions:
    """Registers the gateway options the observability addons read."""

    def load(self, loader) -> None:
        loader.add_option("qwen_state_dir", str, "", "state folder")
        loader.add_option("qwen_intercept_hosts", Sequence[str], ["api.openai.com"], "intercepted hosts")


def record(**overrides) -> dict:
    """A finished exchange record, as QwenGateway._summary leaves it in flow.metadata["qwen"]."""
    meta = {
        "client": {"method": "POST", "url": "http://127.0.0.1:8080/v1/chat/completions", "key": "sk-… (20 chars)"},
        "started_at": time.time(), "duration_ms": 1310.0, "endpoint": "chat.completions", "model": "gpt-4o",
        "upstream_model": "coder-model", "account": "default", "accounts_tried": ["default"], "retries": 0,
        "stream": False, "notes": [], "status": 200,
        "usage": {"prompt_tokens": 1180, "completion_tokens": 42, "total_tokens": 1222,
                  "prompt_tokens_details": {"cached_tokens": 1024}},
    }
    meta.update(overrides)
    return meta


def client_flow(body: dict | bytes | None = None, *, method: str = "POST", path: str = "/v1/chat/completions",
                host: str = "api.openai.com", reverse: bool = True, headers: dict | None = None) -> http.HTTPFlow:
    """A flow as the client sent it (before the gateway)."""
    f = tflow.tflow()
    content = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else b"")
    hdrs = {"authorization": "Bearer sk-client-secret-key", "content-type": "application/json", "host": host,
            **(headers or {})}
    f.request = http.Request.make(method, f"http://{host}{path}", content, hdrs)
    if reverse:
        f.client_conn.proxy_mode = mode_specs.ProxyMode.parse("reverse:https://portal.qwen.ai")
    return f


def rerouted(f: http.HTTPFlow, upstream_body: dict | None = None, token: str = "tok-injected-secret") -> None:
    """What the gateway does in `request`: its record, the upstream URL, the injected credential."""
    f.metadata["qwen"] = {"client": {"method": f.request.method, "url": f.request.pretty_url}}
    f.request.url = "https://portal.qwen.ai/v1/chat/completions"
    f.request.headers["authorization"] = f"Bearer {token}"
    f.request.headers["x-dashscope-authtype"] = "qwen-oauth"
    if upstream_body is not None:
        f.request.content = json.dumps(upstream_body).encode()


def chat_body(text: str = "hello world", model: str = "gpt-4o", **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}

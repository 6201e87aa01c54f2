"""Test support for tests/test_observe_*.py and tests/unit/mitmweb/test_flowview.py: exchanges and flows as the gateway
hands them to the observers, and configurations as the gateway parses them (observers are tested without
the gateway: each test calls the observer's methods in the gateway's order)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

from mitmproxy import ctx, http
from mitmproxy.test import taddons, tflow

from qwen_gateway.settings import config as config_mod
from qwen_gateway.settings.auth import AuthSettings
from qwen_gateway.settings.config import Config
from qwen_gateway.exchange import ClientRequest, ErrorInfo, Exchange, Retry, RetryReason

CLIENT_URL = "http://127.0.0.1:8080"
UPSTREAM_URL = "https://portal.qwen.ai/v1/chat/completions"
USAGE = {"prompt_tokens": 1180, "completion_tokens": 42, "total_tokens": 1222,
         "prompt_tokens_details": {"cached_tokens": 1024}}


@dataclass(frozen=True)
class EndpointStub:
    """What observers read of an endpoint: its name."""

    name: str


@dataclass(frozen=True)
class CredStub:
    """What observers read of a credential: its account (never a token)."""

    account: str


def config(state_dir: Path | None = None, **fields) -> Config:
    """A Config as the gateway would build it, with a state folder of the test's own."""
    cfg = Config(**fields)
    if state_dir is not None:
        cfg = replace(cfg, auth=AuthSettings.from_env(state_dir=state_dir))
    return cfg


class _Options:
    """Declares and parses the gateway's options exactly as the gateway does (settings/config.py)."""

    def __init__(self) -> None:
        self.config: Config | None = None

    def load(self, loader) -> None:
        config_mod.declare(loader)

    def configure(self, updated) -> None:
        self.config = config_mod.parse(ctx.options)


def parsed_config(**options) -> Config:
    """The Config for these option values (raises OptionsError like mitmproxy would)."""
    addon = _Options()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, **options)
        assert addon.config is not None
        return addon.config


def chat_body(text: str = "hello world", model: str = "gpt-4o", **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def exchange(*, endpoint: str | None = "chat.completions", route: str | None = None, method: str = "POST",
             path: str = "/v1/chat/completions", body: dict | None = None, size: int | None = None,
             model: str = "gpt-4o", upstream_model: str = "coder-model", account: str | None = "default",
             status: int | None = 200, usage: dict | None = USAGE, duration_ms: float = 1310.0,
             ttfb_ms: float | None = None, stream: bool = False, retries: tuple[Retry, ...] = (),
             error: tuple[int, str | None, str] | None = None, stream_error: str | None = None,
             prompt_tokens_est: int | None = None, token_method: str | None = None, notes: tuple[str, ...] = (),
             key_hint: str | None = "sk-… (20 chars)", upstream: bool = True, started_at: float | None = None,
             upstream_body: dict | None = None) -> Exchange:
    """A finished exchange, by default a forwarded chat completion as the gateway leaves it."""
    if body is None and endpoint is not None:
        body = chat_body(model=model)
    if size is None:
        size = len(json.dumps(body).encode()) if body is not None else 0
    ex = Exchange(ClientRequest(method, path, CLIENT_URL + path, key_hint=key_hint, size=size),
                  route=route or endpoint or "unknown", endpoint=EndpointStub(endpoint) if endpoint else None,
                  body=body, requested_model=model, stream=stream)
    ex.started = time.monotonic() - 10
    ex.result.ended = ex.started + duration_ms / 1000
    if started_at is not None:
        ex.started_at = started_at
    if ttfb_ms is not None:
        ex.result.first_byte_at = ex.started + ttfb_ms / 1000
    if endpoint is not None and upstream:
        ex.attempt.model = upstream_model
        ex.attempt.cred = CredStub(account) if account else None
        ex.attempt.tried = [account] if account else []
        ex.attempt.url = UPSTREAM_URL
        ex.attempt.headers = {"authorization": "Bearer <redacted>", "content-type": "application/json",
                               "x-dashscope-authtype": "qwen-oauth"}
        ex.attempt.body = upstream_body if upstream_body is not None else {**(body or {}), "model": upstream_model}
    ex.attempt.retries = list(retries)
    ex.notes = list(notes)
    ex.result.status = status
    ex.result.usage = usage
    if error is not None:
        ex.result.error = ErrorInfo(*error)
    ex.result.stream_error = stream_error
    ex.count.tokens, ex.count.method = prompt_tokens_est, token_method
    return ex


def refused(status: int, code: str, message: str, *, endpoint: str | None = "chat.completions",
            route: str | None = None, method: str = "POST", path: str = "/v1/chat/completions",
            model: str = "gpt-4o", body: dict | None = None, **kw) -> Exchange:
    """An exchange the gateway answered itself with an error, without asking Qwen."""
    return exchange(endpoint=endpoint, route=route, method=method, path=path, model=model, body=body,
                    upstream=False, status=status, usage=None, error=(status, code, message), duration_ms=2.0, **kw)


def local(route: str, *, method: str = "GET", path: str = "/v1/models", status: int = 200, **kw) -> Exchange:
    """A successful local answer (/v1/models, /health, /metrics)."""
    return exchange(endpoint=None, route=route, method=method, path=path, model="", upstream=False, status=status,
                    usage=None, duration_ms=0.4, **kw)


def retry(reason: RetryReason, account: str = "default", wait_s: float = 0.0) -> Retry:
    return Retry(reason, account, wait_s)


def client_flow(body: dict | bytes | None = None, *, method: str = "POST", path: str = "/v1/chat/completions",
                host: str = "127.0.0.1:8080", headers: dict | None = None) -> http.HTTPFlow:
    """A flow as the client sent it; the gateway leaves flow.request so (its key already removed)."""
    f = tflow.tflow()
    content = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else b"")
    hdrs = {"content-type": "application/json", "host": host, **(headers or {})}
    f.request = http.Request.make(method, f"http://{host}{path}", content, hdrs)
    return f


def answered(ex: Exchange, flow: http.HTTPFlow | None = None, *, content: bytes | dict = b"{}",
             headers: dict | None = None) -> http.HTTPFlow:
    """The flow once the client has its answer, with the record the gateway sets before `finished`."""
    f = flow or client_flow(ex.body, method=ex.client.method, path=ex.client.path)
    raw = json.dumps(content).encode() if isinstance(content, dict) else content
    f.response = http.Response.make(ex.result.status or 502, raw, {"content-type": "application/json", **(headers or {})})
    f.metadata["qwen"] = ex.to_meta()
    return f

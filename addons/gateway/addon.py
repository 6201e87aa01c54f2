"""The mitmproxy addon: claims OpenAI-bound flows, sends them to Qwen, rewrites the answers."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
from mitmproxy import ctx, exceptions, http
from mitmproxy.proxy import mode_specs, server_hooks
from mitmproxy.utils import asyncio_utils

from qwen_gateway.auth.base import OAUTH, AccountUnavailable, Credential
from qwen_gateway.auth.pool import AccountPool
from qwen_gateway.auth.remote import RemoteLogin, RemoteLoginError
from qwen_gateway.auth.settings import AuthSettings

from . import errors
from .chat import chat_to_qwen, qwen_to_chat
from .chat_stream import ChunkNormalizer
from .errors import GatewayError
from .legacy_exchange import Endpoint, Exchange
from .models import ModelMap, parse_model_map
from .response_store import ResponseStore
from .stall import close_upstream
from .streaming import StreamRewriter
from .surface import endpoints
from .upstream import DEFAULT_USER_AGENT, host_header, upstream_headers, upstream_url

log = logging.getLogger("qwen")

REDACTED = "Bearer <redacted>"
_JSON = {"content-type": "application/json"}
# Throttling retries inside one client request: a short wait is better than an error.
MAX_THROTTLE_RETRIES = 2
MAX_THROTTLE_WAIT = 10.0
# Client bodies up to this size are kept on the flow (mitmweb inspection, replay).
CLIENT_BODY_KEEP = 256 * 1024


class QwenGateway:
    """Reroutes OpenAI API calls to Qwen with an injected credential and OpenAI-shaped answers."""

    def __init__(self, pool=None) -> None:
        self._fixed_pool = pool  # tests hand in a pool; otherwise it is built from the options
        self.endpoints: dict[str, Endpoint] = endpoints(self._responses)
        self._store: ResponseStore | None = None
        self._state_dir: Path | None = None
        self._remote: RemoteLogin | None = None
        self.local_routes: dict[tuple[str, str], object] = {}
        self.hosts: set[str] = set()
        self.models = ModelMap("coder-model")
        self.pool = pool
        self.user_agent = DEFAULT_USER_AGENT
        self._exchanges: dict[str, Exchange] = {}
        self._client: httpx.AsyncClient | None = None

    # ---- options -------------------------------------------------------------------------------

    def load(self, loader) -> None:
        loader.add_option("qwen_intercept_hosts", Sequence[str], ["api.openai.com"],
                          "Hosts whose API calls are answered by Qwen in regular/transparent/local modes "
                          "(reverse mode answers everything). Nothing is ever sent to these hosts.")
        loader.add_option("qwen_default_model", str, "coder-model",
                          "Qwen model for OpenAI model names without an explicit mapping.")
        loader.add_option("qwen_model_map", Sequence[str], [],
                          "Extra model mappings, alias=qwen-model (repeat the option for more).")
        loader.add_option("qwen_dir", str, "", "Qwen Code's credential folder (default $QWEN_DIR or ~/.qwen).")
        loader.add_option("qwen_state_dir", str, "",
                          "The gateway's own state folder (default $QWEN_GATEWAY_HOME or ~/.qwen-gateway).")
        loader.add_option("qwen_oauth_base_url", str, "",
                          "Qwen OAuth server (default $QWEN_OAUTH_BASE_URL or https://chat.qwen.ai).")
        loader.add_option("qwen_api_base", str, "",
                          "API base for OAuth tokens without resource_url (default $QWEN_API_BASE or "
                          "DashScope's compatible-mode URL, as qwen-code does).")
        loader.add_option("qwen_user_agent", str, "",
                          f"User-Agent sent upstream (default $QWEN_USER_AGENT or {DEFAULT_USER_AGENT}).")
        loader.add_option("qwen_upstream_timeout", int, 600,
                          "Seconds the gateway's own retry requests wait for Qwen.")
        loader.add_option("qwen_remote_login", str, "off",
                          "Serve POST /auth/initiate and /auth/poll (a device login started from another "
                          "device): off, loopback (loopback clients only) or on (any client that passed the "
                          "client-key check).", choices=["off", "loopback", "on"])
        loader.add_option("qwen_stream_idle_timeout", int, 300,
                          "Seconds a stream may stay silent before the gateway closes it (0: never). "
                          "qwen-code uses 240 s; mitmproxy's own tcp_timeout is 600 s.")

    def configure(self, updated: set[str]) -> None:
        opts = ctx.options
        if "qwen_intercept_hosts" in updated:
            self.hosts = {h.strip().lower() for h in opts.qwen_intercept_hosts if h.strip()}
        if {"qwen_default_model", "qwen_model_map"} & updated:
            try:
                self.models = ModelMap(opts.qwen_default_model, parse_model_map(opts.qwen_model_map))
            except ValueError as e:
                raise exceptions.OptionsError(str(e)) from e
        if {"qwen_dir", "qwen_state_dir", "qwen_oauth_base_url", "qwen_api_base"} & updated:
            self._store = None
            self._state_dir = None
            if self._fixed_pool is None:
                self.pool = self._build_pool()
        if "qwen_user_agent" in updated:
            self.user_agent = opts.qwen_user_agent or os.environ.get("QWEN_USER_AGENT") or DEFAULT_USER_AGENT
        if {"listen_host", "mode"} & updated and "mode" in opts:
            _bind_loopback_by_default(opts)
        if "connection_strategy" in updated and opts.connection_strategy != "lazy":
            # Eager would open a connection to the client's original target (api.openai.com)
            # before the gateway reroutes the request; lazy connects only where we send it.
            opts.update(connection_strategy="lazy")

    def _settings(self) -> AuthSettings:
        o = ctx.options
        return AuthSettings.from_env(
            qwen_dir=Path(o.qwen_dir).expanduser() if o.qwen_dir else None,
            state_dir=Path(o.qwen_state_dir).expanduser() if o.qwen_state_dir else None,
            oauth_base_url=o.qwen_oauth_base_url or None,
            default_api_base=o.qwen_api_base or None,
        )

    def state_dir(self) -> Path:
        """The gateway's own folder (ledgers, stored responses, logs); resolved once per option change."""
        if self._state_dir is None:
            self._state_dir = self._settings().state_dir
        return self._state_dir

    def _build_pool(self) -> AccountPool:
        return AccountPool.from_settings(self._settings())

    def _responses(self) -> ResponseStore:
        """Stored Responses (previous_response_id), opened at first use."""
        if self._store is None:
            self._store = ResponseStore(self.state_dir() / "responses.sqlite3")
        return self._store

    def done(self) -> None:
        state = getattr(self.pool, "state", None)
        if state is not None:
            state.flush()  # batched request counts
        if self._client is not None:
            client, self._client = self._client, None
            try:
                asyncio.get_running_loop().create_task(client.aclose())
            except RuntimeError:
                pass

    # ---- which flows are ours --------------------------------------------------------------------

    def claims(self, flow: http.HTTPFlow) -> bool:
        if _replayed_exchange(flow):
            return True
        if isinstance(flow.client_conn.proxy_mode, mode_specs.ReverseMode):
            return True
        return flow.request.pretty_host.lower() in self.hosts

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        """Last line of defence: never open a connection to an intercepted host."""
        address = data.server.address
        if address and str(address[0]).lower() in self.hosts:
            data.server.error = f"qwen gateway refuses to connect to {address[0]}"

    # ---- request ----------------------------------------------------------------------------------

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        if not self.claims(flow):
            return
        try:
            await self._route(flow)
        except GatewayError as e:
            self._answer_error(flow, e)
        except Exception as e:  # fail closed: never let the flow go on to its original host
            log.exception("qwen: request handling failed")
            self._answer_error(flow, GatewayError(500, f"The gateway failed: {type(e).__name__}."))

    async def _route(self, flow: http.HTTPFlow) -> None:
        if _replayed_exchange(flow):
            return await self._replay(flow)
        method = flow.request.method.upper()
        path = flow.request.path.split("?", 1)[0].rstrip("/") or "/"
        sub = path[3:] if path.startswith("/v1/") or path == "/v1" else path
        flow.metadata["qwen"] = {"client": _client_record(flow.request)}
        if method == "POST" and path in ("/auth/initiate", "/auth/poll"):
            flow.response = await self._remote_login(flow, path)
            return
        local = self._local(method, path, sub)
        if local is not None:
            flow.response = local
            return
        endpoint = self.endpoints.get(sub)
        if endpoint is None:
            raise GatewayError(404, f"Unknown request URL: {method} {path}. Please check the URL.",
                               code="unknown_url")
        if method != "POST":
            raise GatewayError(405, f"Method {method} is not allowed for {path}; use POST.",
                               code="method_not_allowed")
        body = _parse_json(flow.request.content)
        if len(flow.request.content or b"") <= CLIENT_BODY_KEEP:
            flow.metadata["qwen"]["client"]["body"] = body  # the original request, for mitmweb and replay
        await self._start(flow, endpoint, body)

    async def _start(self, flow: http.HTTPFlow, endpoint: Endpoint, body: dict, note: str | None = None) -> None:
        requested = body.get("model") if isinstance(body.get("model"), str) else ""
        ex = Exchange(endpoint=endpoint, client_body=body, chat_body={}, requested_model=requested,
                      stream=body.get("stream") is True)
        if note:
            ex.notes.append(note)
        ex.chat_body = endpoint.to_chat(body, ex)
        ex.cred = await self._acquire(ex)
        self._send(flow, ex)
        self._exchanges[flow.id] = ex

    async def _replay(self, flow: http.HTTPFlow) -> None:
        """A flow replayed from mitmweb: run the original client request again, with a fresh credential."""
        meta = flow.metadata["qwen"]
        endpoint = next((e for e in self.endpoints.values() if e.name == meta["endpoint"]), None)
        body = meta.get("client", {}).get("body")
        if endpoint is None or not isinstance(body, dict):
            raise GatewayError(409, "This flow cannot be replayed: its original request was not kept "
                                    f"(bodies over {CLIENT_BODY_KEEP // 1024} KiB are not).", code="replay_unavailable")
        for key in ("error", "status", "usage", "ttfb_ms", "stream_error"):
            meta.pop(key, None)
        await self._start(flow, endpoint, body, note="replayed")

    async def _remote_login(self, flow: http.HTTPFlow, path: str) -> http.Response:
        mode = ctx.options.qwen_remote_login
        peer = flow.client_conn.peername[0] if flow.client_conn.peername else ""
        if mode == "off" or (mode == "loopback" and not _loopback(peer)):
            raise GatewayError(404 if mode == "off" else 403, "Remote login is "
                               + ("off (--set qwen_remote_login=loopback|on)." if mode == "off"
                                  else "only served to loopback clients here."), code="remote_login_disabled")
        if self._remote is None:
            self._remote = RemoteLogin(self._settings(), on_success=lambda _name: self._reload_accounts())
        body = _parse_json(flow.request.content or b"{}")
        try:
            if path == "/auth/initiate":
                account = body.get("account")
                return _json_response(200, await self._remote.initiate(account if isinstance(account, str) else None))
            return _json_response(200, await self._remote.poll(str(body.get("id") or body.get("device_code_id") or "")))
        except RemoteLoginError as e:
            raise GatewayError(e.status, str(e), code=e.code) from e

    def _reload_accounts(self) -> None:
        reload = getattr(self.pool, "reload", None)
        if callable(reload):
            reload()

    def _local(self, method: str, path: str, sub: str) -> http.Response | None:
        if sub.startswith("/responses/") and method in ("GET", "DELETE"):
            rid = sub[len("/responses/"):]
            if method == "DELETE" and self._responses().delete(rid):
                return _json_response(200, {"id": rid, "object": "response", "deleted": True})
            stored = self._responses().get(rid) if method == "GET" else None
            if stored is None:
                raise GatewayError(404, f"Response with id '{rid}' not found.", code="not_found", param="response_id")
            return _json_response(200, stored)
        if method != "GET":
            return None
        if path == "/health":
            return _json_response(200, self.health())
        if sub == "/models":
            return _json_response(200, {"object": "list", "data": self.models.list()})
        if sub.startswith("/models/"):
            model = self.models.get(sub[len("/models/"):])
            if model is None:
                raise GatewayError(404, f"The model '{sub[len('/models/'):]}' does not exist.",
                                   code="model_not_found", param="model")
            return _json_response(200, model)
        return None

    def health(self) -> dict:
        accounts = self.pool.status() if self.pool else []
        usable = [a for a in accounts if a.get("state") in ("ok", "expired", "refreshing")]
        return {
            "status": "ok" if usable else "degraded",
            "accounts": accounts,
            "upstream": usable[0].get("base_url") if usable else None,
        }

    async def _acquire(self, ex: Exchange, *, exclude: Sequence[str] = ()) -> Credential:
        if self.pool is None:
            raise GatewayError(503, "The gateway has no account pool configured.", code="no_accounts")
        skip = list(exclude)
        while True:
            try:
                cred = await self.pool.acquire(skip)
            except AccountUnavailable as e:
                if ex.endpoint.needs_embeddings and skip != list(exclude):
                    raise GatewayError(400, "None of your usable Qwen accounts serves embeddings: Qwen OAuth "
                                            "(portal.qwen.ai) has no embeddings API. Add a DashScope key: `qwen-auth "
                                            "add-key NAME --preset dashscope-intl --key-env VAR --embeddings`.",
                                       code="embeddings_unavailable", param="model") from e
                raise _unavailable(e) from e
            if not ex.endpoint.needs_embeddings or cred.embeddings:
                break
            skip.append(cred.account)
        ex.tried.append(cred.account)
        return cred

    def _upstream_body(self, ex: Exchange, cred: Credential) -> dict:
        ex.upstream_model = self.models.resolve(ex.requested_model, cred)
        if not ex.endpoint.translated:
            if ex.endpoint.needs_embeddings and not ex.upstream_model.startswith("text-embedding"):
                ex.upstream_model = "text-embedding-v4"
            return {**ex.chat_body, "model": ex.upstream_model}
        body = chat_to_qwen(ex.chat_body, model=ex.upstream_model, oauth=cred.kind == OAUTH, notes=ex.notes,
                            default_model=cred.default_model)
        ex.upstream_model = body["model"]  # images may have moved the request to a vision model
        return body

    def _send(self, flow: http.HTTPFlow, ex: Exchange) -> None:
        """Point the flow at the account's API and put the Qwen request in it."""
        cred = ex.cred
        assert cred is not None
        ex.upstream_body = self._upstream_body(ex, cred)
        scheme, host, port, path = upstream_url(cred, ex.endpoint.upstream_suffix)
        req = flow.request
        req.scheme = scheme  # first: host/port setters derive the Host header from it
        req.host = host
        req.port = port
        req.path = path
        req.headers = http.Headers([(k.encode(), v.encode()) for k, v in upstream_headers(
            cred, user_agent=self.user_agent, stream=ex.stream, host=host_header(scheme, host, port))])
        req.content = json.dumps(ex.upstream_body, ensure_ascii=False).encode()
        flow.metadata["qwen"].update(self._summary(ex))

    # ---- response ---------------------------------------------------------------------------------

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        ex = self._exchanges.get(flow.id)
        if ex is None or flow.response is None:
            return
        _redact(flow)
        resp = flow.response
        if ex.stream and resp.status_code == 200 and "event-stream" in resp.headers.get("content-type", ""):
            ex.rewriter = StreamRewriter(ChunkNormalizer(ex.requested_model or ex.upstream_model),
                                         ex.endpoint.stream_translator(ex), capture_limit=1 << 20)
            resp.stream = ex.rewriter
            resp.headers.pop("content-length", None)
            resp.headers["cache-control"] = "no-cache"
            if ctx.options.qwen_stream_idle_timeout > 0:
                ex.extra["watchdog"] = asyncio_utils.create_task(
                    self._watch_stream(flow, ex.rewriter, ctx.options.qwen_stream_idle_timeout),
                    name="qwen stream watchdog", keep_ref=True)

    async def _watch_stream(self, flow: http.HTTPFlow, rw: StreamRewriter, timeout: int) -> None:
        while not rw.finished and flow.live:
            idle = time.monotonic() - rw.last_upstream_at
            if idle >= timeout:
                if close_upstream(flow):
                    log.warning("qwen: no data from Qwen for %d s: closed the stream", timeout)
                    flow.metadata.setdefault("qwen", {})["stream_error"] = f"idle for {timeout} s: closed"
                return
            await asyncio.sleep(timeout - idle + 0.05)

    async def response(self, flow: http.HTTPFlow) -> None:
        ex = self._exchanges.pop(flow.id, None)
        if ex is None or flow.response is None:
            return
        _stop_watchdog(ex)
        try:
            if ex.rewriter is not None:
                self._finish_stream(flow, ex)
                return
            await self._finish_buffered(flow, ex)
        except GatewayError as e:
            self._answer_error(flow, e)
        except Exception as e:
            log.exception("qwen: response handling failed")
            self._answer_error(flow, GatewayError(502, f"The gateway could not read Qwen's answer: "
                                                       f"{type(e).__name__}."))

    def error(self, flow: http.HTTPFlow) -> None:
        ex = self._exchanges.pop(flow.id, None)
        if ex is None:
            return
        _stop_watchdog(ex)
        _redact(flow)
        self._report(ex, "error")
        meta = flow.metadata["qwen"]
        meta.update(self._summary(ex))
        meta["error"] = {"status": 502, "code": "upstream_connection_error",
                         "message": flow.error.msg if flow.error else "connection error"}

    def _finish_stream(self, flow: http.HTTPFlow, ex: Exchange) -> None:
        rw = ex.rewriter
        assert rw is not None
        # The client already has these bytes; keep them on the flow so mitmweb and -w show them.
        flow.response.raw_content = bytes(rw.captured)
        self._report(ex, "throttle" if rw.throttled else "error" if rw.error else "ok")  # error_finish: TPM
        if ex.endpoint.finished is not None and not rw.error:
            ex.endpoint.finished(ex, _final_object(rw))
        flow.metadata["qwen"].update(self._summary(ex, flow.response.status_code))

    async def _finish_buffered(self, flow: http.HTTPFlow, ex: Exchange) -> None:
        resp = flow.response
        status, headers, body = resp.status_code, dict(resp.headers), resp.content or b""
        while status >= 400:
            err = errors.classify(status, body, headers)
            nxt = await self._recover(ex, err)
            if nxt is None:
                # the pool knows ok/auth/quota/throttle/error; other failures are the request's, not the account's
                self._report(ex, err.kind if err.kind in (errors.AUTH, errors.QUOTA, errors.THROTTLE) else "error")
                flow.metadata["qwen"].update(self._summary(ex, err.status))
                raise err.to_gateway_error()
            status, headers, body = nxt
        self._report(ex, "ok")
        flow.response, final = self._client_answer(ex, status, headers, body)
        if ex.endpoint.finished is not None and final is not None:
            ex.endpoint.finished(ex, final)
        flow.metadata["qwen"].update(self._summary(ex, flow.response.status_code))

    def _client_answer(self, ex: Exchange, status: int, headers: dict, body: bytes) -> tuple[http.Response,
                                                                                            dict | None]:
        """The client's answer to a buffered Qwen answer, and the final object (for endpoints that keep it)."""
        ctype = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
        if "event-stream" in ctype or (ex.stream and body.lstrip().startswith(b"data:")):
            rw = StreamRewriter(ChunkNormalizer(ex.requested_model or ex.upstream_model),
                                ex.endpoint.stream_translator(ex))
            out = rw.run(body)
            ex.extra["usage"] = rw.normalizer.usage
            return http.Response.make(status, out, {"content-type": "text/event-stream; charset=utf-8",
                                                    "cache-control": "no-cache"}), _final_object(rw)
        data = _parse_upstream_json(body)
        if ex.endpoint.translated:
            data = qwen_to_chat(data, model=ex.requested_model or ex.upstream_model)
        ex.extra["usage"] = data.get("usage") if isinstance(data.get("usage"), dict) else None
        data = ex.endpoint.from_chat(data, ex)
        return _json_response(status, data), data

    async def _recover(self, ex: Exchange, err: errors.UpstreamError) -> tuple[int, dict, bytes] | None:
        """Decide whether (and with which credential) to try again; None means give up."""
        if self.pool is None or ex.cred is None:
            return None
        account = ex.cred.account
        try:
            if err.kind == errors.AUTH and not ex.extra.get("refreshed"):
                ex.extra["refreshed"] = True
                self.pool.report(account, "auth")
                ex.notes.append(f"401 from Qwen: refreshed {account}")
                ex.cred = await self.pool.refreshed(account)
            elif err.kind == errors.QUOTA:
                self.pool.report(account, "quota", retry_after=err.retry_after)
                ex.notes.append(f"quota exhausted on {account}: rotated")
                ex.cred = await self._acquire(ex, exclude=ex.tried)
            elif err.kind == errors.THROTTLE and ex.extra.get("throttled", 0) < MAX_THROTTLE_RETRIES:
                ex.extra["throttled"] = ex.extra.get("throttled", 0) + 1
                wait = min(err.retry_after if err.retry_after is not None else 1.0, MAX_THROTTLE_WAIT)
                self.pool.report(account, "throttle", retry_after=wait)
                ex.notes.append(f"throttled on {account}: waited {wait:g}s")
                await asyncio.sleep(wait)
                ex.cred = await self._acquire(ex)
            else:
                return None
        except AccountUnavailable as e:
            ex.notes.append(str(e))
            if err.kind == errors.QUOTA:
                raise _unavailable(e) from e
            return None
        except GatewayError:
            if err.kind == errors.QUOTA:
                raise
            return None
        ex.retries += 1
        return await self._send_again(ex)

    async def _send_again(self, ex: Exchange) -> tuple[int, dict, bytes]:
        """A retry, sent by the gateway itself (mitmproxy cannot re-send a flow it is answering)."""
        cred = ex.cred
        assert cred is not None
        body = self._upstream_body(ex, cred)
        ex.upstream_body = body
        scheme, host, port, path = upstream_url(cred, ex.endpoint.upstream_suffix)
        headers = dict(upstream_headers(cred, user_agent=self.user_agent, stream=ex.stream,
                                        host=host_header(scheme, host, port)))
        headers["X-Stainless-Retry-Count"] = str(ex.retries)
        url = f"{scheme}://{host_header(scheme, host, port)}{path}"
        try:
            r = await self._http().post(url, content=json.dumps(body, ensure_ascii=False).encode(), headers=headers)
        except httpx.HTTPError as e:
            raise GatewayError(502, f"Qwen could not be reached on retry: {type(e).__name__}.",
                               code="upstream_unreachable") from e
        return r.status_code, dict(r.headers), r.content

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(ctx.options.qwen_upstream_timeout, connect=10),
                                             trust_env=False)
        return self._client

    def _report(self, ex: Exchange, outcome: str) -> None:
        if self.pool is not None and ex.cred is not None:
            self.pool.report(ex.cred.account, outcome)

    # ---- helpers ------------------------------------------------------------------------------

    def _summary(self, ex: Exchange, status: int | None = None) -> dict:
        """JSON-safe facts for flow.metadata["qwen"] (saved by -w): never a token. Other addons
        (flow view, usage ledger, metrics, request log) read only this; keys are listed in exchange.py."""
        out = {
            "started_at": ex.started_at,
            "duration_ms": round((time.monotonic() - ex.started) * 1000, 1),
            "endpoint": ex.endpoint.name,
            "model": ex.requested_model,
            "upstream_model": ex.upstream_model,
            "account": ex.account,
            "accounts_tried": list(ex.tried),
            "retries": ex.retries,
            "stream": ex.stream,
            "notes": list(ex.notes),
        }
        if status is not None:
            out["status"] = status
        if ex.extra.get("usage"):
            out["usage"] = ex.extra["usage"]  # OpenAI chat usage, whatever the endpoint's own format
        rw = ex.rewriter
        if rw is not None:
            if rw.first_byte_at is not None:
                out["ttfb_ms"] = round((rw.first_byte_at - ex.started) * 1000, 1)
            out["usage"] = rw.normalizer.usage
            if rw.error:
                out["stream_error"] = rw.error.get("message")
        return out

    def _answer_error(self, flow: http.HTTPFlow, e: GatewayError) -> None:
        headers = {**_JSON, **e.headers}
        flow.response = http.Response.make(e.status, e.to_bytes(), headers)
        meta = flow.metadata.setdefault("qwen", {})
        meta["error"] = {"status": e.status, "code": e.code, "message": e.message}
        meta["status"] = e.status


def _bind_loopback_by_default(opts) -> None:
    """mitmproxy listens on every interface unless told; the gateway spends the user's Qwen
    quota, so it listens on loopback unless --listen-host or a mode's @host says otherwise."""
    if opts.listen_host != "":
        return
    modes = []
    for spec in opts.mode:
        mode = mode_specs.ProxyMode.parse(spec)
        port = mode.listen_port(opts.listen_port)
        if mode.custom_listen_host is None and port is not None and not isinstance(mode, mode_specs.LocalMode):
            spec = f"{spec.split('@', 1)[0]}@127.0.0.1:{port}"
        modes.append(spec)
    if modes != list(opts.mode):
        opts.update(mode=modes)
        # Scripts load after mitmproxy has started its listeners: start them again on loopback.
        ps = ctx.master.addons.get("proxyserver")
        if ps is not None:
            try:
                asyncio_utils.create_task(ps.setup_servers(), name="qwen: listen on loopback", keep_ref=True)
            except RuntimeError:  # no event loop (unit tests): listeners start later with the new modes
                pass


def _final_object(rw: StreamRewriter) -> dict | None:
    """A stream translator's final object (the Responses API keeps it), if it builds one."""
    build = getattr(rw.translator, "response", None)
    return build() if callable(build) and not rw.error else None


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback or host.startswith("::ffff:127.")
    except ValueError:
        return False


def _stop_watchdog(ex: Exchange) -> None:
    task = ex.extra.pop("watchdog", None)
    if task is not None:
        task.cancel()


def _replayed_exchange(flow: http.HTTPFlow) -> bool:
    meta = flow.metadata.get("qwen")
    return flow.is_replay == "request" and isinstance(meta, dict) and bool(meta.get("endpoint"))


def _client_record(req: http.Request) -> dict:
    """What the client sent, for inspection: its key only as a hint (prefix and length)."""
    record = {"method": req.method, "url": req.pretty_url}
    auth = req.headers.get("authorization", "") or req.headers.get("x-api-key", "")
    key = auth.split(" ", 1)[1] if auth.lower().startswith("bearer ") else auth
    if key:
        record["key"] = f"{key[:3]}… ({len(key)} chars)" if len(key) > 8 else f"<{len(key)} chars>"
    return record


def _parse_json(content: bytes | None) -> dict:
    try:
        body = json.loads(content or b"")
    except (ValueError, UnicodeDecodeError):
        raise GatewayError(400, "We could not parse the JSON body of your request. (HINT: This likely means "
                                "you aren't using your HTTP library correctly.)", code="invalid_json")
    if not isinstance(body, dict):
        raise GatewayError(400, "The request body must be a JSON object.", code="invalid_request_body")
    return body


def _parse_upstream_json(body: bytes) -> dict:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise GatewayError(502, "Qwen sent an answer that is not valid JSON.", code="invalid_upstream_response")
    if not isinstance(data, dict):
        raise GatewayError(502, "Qwen sent an unexpected answer.", code="invalid_upstream_response")
    return data


def _json_response(status: int, data: dict) -> http.Response:
    return http.Response.make(status, json.dumps(data, ensure_ascii=False).encode(), _JSON)


def _redact(flow: http.HTTPFlow) -> None:
    """The request has been sent: hide the credential from mitmweb, -w files and logs."""
    if "authorization" in flow.request.headers:
        flow.request.headers["authorization"] = REDACTED


def _unavailable(e: AccountUnavailable) -> GatewayError:
    retry_at = getattr(e, "retry_at", None)
    if getattr(e, "needs_login", False):
        return GatewayError(401, str(e), code="qwen_login_required")
    if retry_at is not None:
        wait = max(1, int(retry_at - time.time()))
        return GatewayError(429, str(e), type="insufficient_quota", code="insufficient_quota",
                            headers={"retry-after": str(wait)})
    return GatewayError(503, str(e), type="api_error", code="no_usable_account")

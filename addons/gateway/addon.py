"""The gateway: the one mitmproxy addon. It claims OpenAI-bound flows and answers them from Qwen.

Per claimed flow, in this order (each step reads the one `Exchange` record; any exception in any step
ends in an OpenAI-format error answered locally, so a claimed flow never reaches its original host):

    requestheaders  claim the flow (routing.claims), open its Exchange, check the client key and the
                    declared size (access), drop the client's key from the flow
    request         classify (routing.route); local answers (local); parse the body once; observers'
                    client_request; the endpoint's client -> chat translation (endpoints); the context
                    guard; then forward: a whole answer is fetched by the upstream engine (engine, retry)
                    and translated (forward); a stream is pointed at the loopback relay (relay)
    responseheaders a relayed stream gets its stream translator (forward, streaming)
    response/error  the record is completed, the pool told, the observers' finished called

Observers (observe/*, flowview) are plain objects called at named points, each isolated.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time

from mitmproxy import ctx, exceptions, http
from mitmproxy.proxy import mode_specs, server_hooks
from mitmproxy.utils import asyncio_utils

from . import access, config, embeddings, forward, mitmdefaults, routing
from .auth.base import Capability, Outcome, Pool
from .auth.pool import AccountPool
from .config import Config, normalise_host
from .endpoints import endpoints
from .engine import UpstreamEngine
from .errors import GatewayError
from .exchange import ClientRequest, Exchange, key_hint
from .flowview import FlowAnnotator, FlowCap
from .local import LocalAnswers, error_response
from .local import json_response as local_json
from .observe.base import POINTS, Observer, overrides
from .observe.debuglog import DebugLog
from .observe.guard import context_check
from .observe.ledger import UsageLedger
from .observe.metrics import Metrics
from .observe.requestlog import RequestLine
from .observe.tokens import TokenEstimator
from .relay import TOKEN_HEADER, LoopbackRelay
from .response_store import ResponseStore
from .retry import RetryPolicy

log = logging.getLogger("qwen")

# How long `finished` observers wait for a prompt estimate still being counted.
ESTIMATE_WAIT_S = 5.0


class QwenGateway:
    def __init__(self, pool: Pool | None = None, observers: list[Observer] | None = None,
                 upstream=None) -> None:
        self._fixed_pool = pool  # tests hand in a pool; otherwise it is built from the options
        self.pool: Pool | None = pool
        self.config = Config()
        self.observers: list[Observer] = default_observers() if observers is None else list(observers)
        self._flowcap = next((o for o in self.observers if isinstance(o, FlowCap)), None)
        self._points = {p: [getattr(o, p) for o in self.observers if overrides(o, p)] for p in POINTS}
        # finished: those that show the prompt estimate wait for it; the others are told at once
        self._points["finished_now"] = [o.finished for o in self.observers
                                        if overrides(o, "finished") and not o.waits_for_estimate]
        self._points["finished_after_estimate"] = [o.finished for o in self.observers
                                                   if overrides(o, "finished") and o.waits_for_estimate]
        self._store: ResponseStore | None = None
        self.endpoints = endpoints(self._responses)
        self.policy = RetryPolicy(pool)
        self.engine = UpstreamEngine(self.policy, self.config,
                                     on_upstream_request=self._upstream_request,
                                     client=upstream)
        self.relay = LoopbackRelay(self.engine.open, idle_timeout=lambda: self.config.stream_idle_timeout)
        self.local = LocalAnswers(pool=lambda: self.pool, store=self._responses, metrics=self._metrics,
                                  reload_accounts=self._reload_accounts)
        self._live: dict[str, Exchange] = {}  # flow id -> exchange, until response/error
        self._flows: dict[str, http.HTTPFlow] = {}  # exchange id -> flow, for the engine's callback

    # ---- lifecycle --------------------------------------------------------------------------------

    def load(self, loader) -> None:
        config.declare(loader)

    def configure(self, updated: set[str]) -> None:
        opts = ctx.options
        mitmdefaults.apply(opts, updated)  # flow_detail 0, web_columns + comment: unless the user set them
        if any(k.startswith("qwen_") for k in updated):
            old, new = self.config, config.parse(opts)
            self.config = new
            if new.auth != old.auth or self._store is None:
                self._store = None
                if self._fixed_pool is None:
                    if self.pool is not None:
                        self.pool.close()
                    self.pool = AccountPool.from_settings(new.auth)
                self.policy.pool = self.pool
            stale = self.engine.reconfigure(new)
            if stale is not None:
                _close_later(stale)
            for o in self.observers:
                self._call(o.configure, new)
        if {"mode", "listen_host", "qwen_client_keys_file", "qwen_allow_open"} & updated and "mode" in opts:
            exposed = access.exposed_listeners(list(opts.mode), opts.listen_host)
            if exposed and not self.config.client_keys and not self.config.allow_open:
                raise exceptions.OptionsError(
                    "The Qwen gateway would listen beyond loopback without client keys: " + ", ".join(exposed)
                    + f". Set ${config.KEYS_ENV} or --set qwen_client_keys_file=FILE, or --set "
                    "qwen_allow_open=true to accept that anyone reaching the port spends your quota.")
        if {"listen_host", "mode"} & updated and "mode" in opts:
            bind_loopback_by_default(opts)
        if "connection_strategy" in updated and opts.connection_strategy != "lazy":
            # Eager would open a connection to the client's original target (api.openai.com)
            # before the gateway reroutes the request; lazy connects only where we send it.
            opts.update(connection_strategy="lazy")

    def running(self) -> None:
        asyncio_utils.create_task(self.relay.start(), name="qwen: relay", keep_ref=True)
        describe = getattr(self.pool, "describe", None)
        if callable(describe):  # which accounts were loaded, and a warning when none is usable
            try:
                for line in describe():
                    (log.warning if line.startswith("WARNING") else log.info)(f"qwen: {line}")
            except Exception:
                log.exception("qwen: could not list the accounts")
        for o in self.observers:
            self._call(o.running)

    def done(self) -> None:
        self.relay.stop()
        if self.pool is not None:
            self._call(self.pool.flush)
        for o in self.observers:
            self._call(o.done)
        _close_later(self.engine.client)

    # ---- which flows are ours ---------------------------------------------------------------------

    def claims(self, flow: http.HTTPFlow) -> bool:
        if flow.is_replay == "request" and isinstance(flow.metadata.get("qwen"), dict):
            return True
        return routing.claims(flow, self.config)

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        """Last line of defence: the only server a claimed flow may reach is the relay. In reverse mode
        every flow is claimed; in other modes nothing for an intercepted name (Host, SNI) gets out."""
        address = data.server.address
        if address is None or (self.relay.address is not None and tuple(address[:2]) == self.relay.address):
            return
        hosts = self.config.intercept_hosts
        names = (str(address[0]), data.server.sni or "", data.client.sni or "")
        if isinstance(data.client.proxy_mode, mode_specs.ReverseMode) or any(
                normalise_host(n) in hosts for n in names if n):
            data.server.error = f"qwen gateway refuses to connect to {address[0]}: its requests go to Qwen"

    # ---- request ----------------------------------------------------------------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        try:
            if not self.claims(flow):
                return
            refusal = None if flow.is_replay else access.check_key(flow.request, self.config.client_keys)
            ex = self._open(flow)  # drops the client's key from the flow: checked just before
            if refusal is not None and ex.route == "health" and access.is_loopback(_peer(flow)):
                refusal = None  # /health stays open on loopback; beyond it, it is behind the key
            refusal = refusal or access.check_declared_size(flow.request, self.config.max_body)
            if refusal is not None:
                self._refuse(flow, ex, refusal)
        except Exception as e:
            self._fail_closed(flow, e)

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.error or not flow.live:
            return
        ex = self._live.get(flow.id)
        try:
            if ex is None:
                if flow.response or not self.claims(flow):
                    return
                ex = self._open(flow)  # a replay, or a flow that skipped requestheaders
            if flow.response is None:
                await self._handle(flow, ex)
        except GatewayError as e:
            self._refuse(flow, ex, e)
        except Exception as e:
            self._fail_closed(flow, e)

    async def _handle(self, flow: http.HTTPFlow, ex: Exchange) -> None:
        endpoint = ex.endpoint
        if endpoint is None or ex.route == "method_not_allowed":
            if ex.route == "auth":
                ex.body = _parse_json(self._content(flow, ex) or b"{}")
            self._notify("client_request", ex, flow)
            flow.response = await self.local.answer(ex, flow, self.config)
            return
        body = ex.body = _parse_json(self._content(flow, ex))
        ex.requested_model = body["model"] if isinstance(body.get("model"), str) else ""
        ex.stream = body.get("stream") is True
        self._notify("client_request", ex, flow)
        ex.chat_body = endpoint.to_chat(body, ex)
        refusal = await context_check(ex, self.config)
        if refusal is not None:
            raise refusal
        if ex.stream:
            await self._relay(flow, ex)
        elif endpoint.capability is Capability.EMBEDDINGS and len(batches := embeddings.split_batches(
                ex.chat_body)) > 1:
            flow.response = local_json(200, await self._embeddings(ex, batches))
        else:
            resp = await self.engine.open(ex)
            try:
                raw = ex.upstream_response_body = await resp.aread()
            finally:
                await resp.aclose()
            flow.response, ex.extra["final"] = forward.buffered_answer(ex, resp.status_code, resp.headers, raw)

    async def _embeddings(self, ex: Exchange, batches: list[dict]) -> dict:
        """More inputs than Qwen takes at once: the batches go upstream concurrently, each with its own
        credential and retries; the answers are put back together in order."""
        ex.notes.append(f"{sum(len(b['input']) for b in batches)} inputs sent as {len(batches)} requests of at "
                        f"most {embeddings.BATCH} (Qwen's limit)")
        parts = [dataclasses.replace(ex, chat_body=b, tried=[], retries=[], notes=[], extra={}) for b in batches]

        async def fetch(part: Exchange) -> dict:
            resp = await self.engine.open(part)
            try:
                raw = await resp.aread()
            finally:
                await resp.aclose()
            return forward.upstream_json(raw)

        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(fetch(p)) for p in parts]
        except* GatewayError as group:
            raise group.exceptions[0] from None
        first = parts[0]
        ex.cred, ex.upstream_model, ex.upstream_url = first.cred, first.upstream_model, first.upstream_url
        ex.upstream_headers, ex.upstream_status = first.upstream_headers, first.upstream_status
        ex.upstream_body = first.upstream_body
        for p in parts:
            ex.tried += [a for a in p.tried if a not in ex.tried]
            ex.retries += p.retries
        answer = embeddings.merge_answers([t.result() for t in tasks], model=ex.requested_model or None,
                                          encoding_format=(ex.body or {}).get("encoding_format"))
        ex.usage = answer.get("usage")
        return answer

    def _content(self, flow: http.HTTPFlow, ex: Exchange) -> bytes:
        try:
            content = flow.request.content or b""
        except ValueError as e:
            raise GatewayError(400, "The request body could not be decoded (Content-Encoding).",
                               code="invalid_content_encoding") from e
        if len(content) > self.config.max_body:
            raise access.too_large(self.config.max_body)
        ex.client = ClientRequest(ex.client.method, ex.client.path, ex.client.url, ex.client.key_hint, len(content))
        return content

    async def _relay(self, flow: http.HTTPFlow, ex: Exchange) -> None:
        """Point the flow at the relay: mitmproxy then streams the engine's answer like any server's."""
        host, port = await self.relay.start()
        ex.extra["relay_token"] = token = self.relay.expect(ex)
        ex.extra["relayed"] = True
        req = flow.request
        shown = req.host_header  # keep what the client addressed, for mitmweb's list
        req.scheme = "http"
        req.host, req.port = host, port
        req.host_header = shown
        req.headers[TOKEN_HEADER] = token

    # ---- response ---------------------------------------------------------------------------------

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        ex = self._live.get(flow.id)
        if ex is None or flow.response is None:
            return
        try:
            self.relay.forget(ex.extra.pop("relay_token", None))
            flow.request.headers.pop(TOKEN_HEADER, None)
            resp = flow.response
            if (ex.extra.get("relayed") and not ex.extra.get("relay_error") and resp.status_code == 200
                    and "event-stream" in resp.headers.get("content-type", "")):
                forward.start_stream(ex, resp)
                self._notify("stream_started", ex, flow)
        except Exception:
            log.exception("qwen: could not start translating a stream")

    def response(self, flow: http.HTTPFlow) -> None:
        ex = self._live.pop(flow.id, None)
        if ex is None or flow.response is None:
            self._track_unclaimed(flow)
            return
        try:
            final = ex.extra.pop("final", None)
            if ex.rewriter is not None:
                final = forward.finish_stream(ex, flow.response)
            elif ex.extra.get("relayed") and not ex.extra.get("relay_error"):
                # a relayed answer that was not a stream after all: translate it whole
                flow.response, final = forward.buffered_answer(ex, flow.response.status_code, flow.response.headers,
                                                               flow.response.content or b"")
            if ex.cred is not None and ex.error is None:
                rw = ex.rewriter
                outcome = Outcome.OK if rw is None or not rw.error else \
                    Outcome.THROTTLE if rw.throttled else Outcome.ERROR  # error_finish: throttled mid-stream
                self._call(self.pool.report, ex.cred.account, outcome)
                if ex.endpoint is not None and ex.endpoint.finished is not None and final is not None:
                    ex.endpoint.finished(ex, final)
        except GatewayError as e:
            flow.response = error_response(e)
            ex.fail(e.status, e.code, e.message)
        except Exception as e:
            log.exception("qwen: could not finish an answer")
            if ex.rewriter is None:
                e2 = GatewayError(502, f"The gateway could not read Qwen's answer: {type(e).__name__}.")
                flow.response = error_response(e2)
                ex.fail(e2.status, e2.code, e2.message)
        self._finish(flow, ex)

    def error(self, flow: http.HTTPFlow) -> None:
        ex = self._live.pop(flow.id, None)
        if ex is None:
            self._track_unclaimed(flow)
            return
        self.relay.forget(ex.extra.pop("relay_token", None))
        flow.request.headers.pop(TOKEN_HEADER, None)
        message = flow.error.msg if flow.error else "connection error"
        if ex.cred is not None:
            self._call(self.pool.report, ex.cred.account, Outcome.ERROR)
        ex.stream_error = ex.stream_error or message
        if ex.error is None:
            ex.fail(502, "upstream_connection_error", message)
        self._finish(flow, ex)

    # ---- the record and the observers -------------------------------------------------------------

    def _open(self, flow: http.HTTPFlow) -> Exchange:
        req = flow.request
        key = access.presented_key(req).decode("utf-8", "replace")
        ex = Exchange(ClientRequest(req.method.upper(), req.path.split("?", 1)[0], req.pretty_url, key_hint(key)))
        route = routing.route(ex.client.method, ex.client.path, self.endpoints)
        ex.route, ex.endpoint = route.name, route.endpoint
        # the client's own key (in explicit-proxy mode: the user's real OpenAI key) is never kept on the flow
        for name in ("authorization", "x-api-key", "proxy-authorization"):
            req.headers.pop(name, None)
        if flow.is_replay == "request":
            ex.notes.append("replayed")
        self._live[flow.id] = ex
        self._flows[ex.id] = flow
        return ex

    def _refuse(self, flow: http.HTTPFlow, ex: Exchange | None, e: GatewayError) -> None:
        flow.response = error_response(e)
        if ex is not None:
            ex.fail(e.status, e.code, e.message)

    def _fail_closed(self, flow: http.HTTPFlow, e: Exception) -> None:
        log.exception("qwen: request handling failed")
        ex = self._live.get(flow.id)
        self._refuse(flow, ex, GatewayError(500, f"The gateway failed: {type(e).__name__}."))

    def _track_unclaimed(self, flow: http.HTTPFlow) -> None:
        """Flows the gateway passes through (other hosts, explicit proxy) count for mitmweb's cap too."""
        if self._flowcap is not None:
            self._call(self._flowcap.track, flow)

    def _upstream_request(self, ex: Exchange) -> None:
        flow = self._flows.get(ex.id)
        if flow is not None:
            self._notify("upstream_request", ex, flow)

    def _finish(self, flow: http.HTTPFlow, ex: Exchange) -> None:
        self._flows.pop(ex.id, None)
        ex.ended = time.monotonic()
        if flow.response is not None and ex.status is None:
            ex.status = flow.response.status_code
        flow.metadata["qwen"] = ex.to_meta()
        self._notify("finished_now", ex, flow)
        if ex.estimate is not None and not ex.estimate.done():
            asyncio_utils.create_task(self._finish_after_estimate(flow, ex), name="qwen: finish", keep_ref=True)
        else:
            self._notify("finished_after_estimate", ex, flow)

    async def _finish_after_estimate(self, flow: http.HTTPFlow, ex: Exchange) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(ex.estimate), ESTIMATE_WAIT_S)
        except Exception:
            pass
        flow.metadata["qwen"] = ex.to_meta()
        self._notify("finished_after_estimate", ex, flow)

    def _notify(self, point: str, ex: Exchange, flow: http.HTTPFlow) -> None:
        for fn in self._points[point]:
            self._call(fn, ex, flow)

    @staticmethod
    def _call(fn, *args, **kw) -> None:
        """Observers and bookkeeping never change the flow: a failure is logged and the flow goes on."""
        try:
            fn(*args, **kw)
        except Exception:
            log.exception("qwen: %s failed", getattr(fn, "__qualname__", fn))

    # ---- helpers ----------------------------------------------------------------------------------

    def _responses(self) -> ResponseStore:
        """Stored Responses (previous_response_id), opened at first use."""
        if self._store is None:
            self._store = ResponseStore(self.config.state_dir / "responses.sqlite3")
        return self._store

    def _metrics(self) -> bytes | None:
        for o in self.observers:
            exposition = getattr(o, "exposition", None)
            if callable(exposition):
                return exposition()
        return None

    def _reload_accounts(self) -> None:
        if self.pool is not None:
            self.pool.reload()

    def health(self) -> dict:
        from .local import health
        return health(self.pool)


def default_observers() -> list[Observer]:
    """Every observer, in the order they are called (the annotator before the cap: the cap adds to the
    annotator's comment)."""
    return [TokenEstimator(), Metrics(), RequestLine(), UsageLedger(), DebugLog(), FlowAnnotator(), FlowCap()]


def bind_loopback_by_default(opts) -> None:
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


def _peer(flow: http.HTTPFlow) -> str:
    return str(flow.client_conn.peername[0]) if flow.client_conn.peername else ""


def _close_later(client) -> None:
    try:
        asyncio.get_running_loop().create_task(client.aclose())
    except RuntimeError:
        pass


def _parse_json(content: bytes) -> dict:
    try:
        body = json.loads(content or b"")
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise GatewayError(400, "We could not parse the JSON body of your request. (HINT: This likely means "
                                "you aren't using your HTTP library correctly.)", code="invalid_json")
    if not isinstance(body, dict):
        raise GatewayError(400, "The request body must be a JSON object.", code="invalid_request_body")
    return body

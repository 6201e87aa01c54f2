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

import json
import logging
import time

from mitmproxy import ctx, exceptions, http
from mitmproxy.proxy import mode_specs, server_hooks
from mitmproxy.utils import asyncio_utils

from . import config, forward, mitmdefaults
from .api import embeddings
from .api.responses.socket import ResponsesSockets, trim_messages, wants_socket
from .api.responses.store import ResponseStore
from .auth.base import Capability, Outcome, Pool
from .auth.pool import AccountPool
from .config import Config
from .door import access, routing
from .door.fence import Fence, bind_loopback_by_default
from .errors import GatewayError
from .exchange import ClientRequest, Exchange, key_hint
from .local import LocalAnswers, error_response, health
from .observe.dispatch import Observers, call_safely, default_observers
from .observe.guard import context_check
from .observer import Observer
from .registry import endpoints
from .upstream.engine import UpstreamEngine
from .upstream.relay import TOKEN_HEADER, LoopbackRelay
from .upstream.retry import RetryPolicy

log = logging.getLogger("qwen")
CLIENT_LEFT = "Client disconnected"  # how mitmproxy's HTTP/1 layer names a client gone before the answer's end


class QwenGateway:
    def __init__(self, pool: Pool | None = None, observers: list[Observer] | None = None,
                 upstream=None) -> None:
        self._fixed_pool = pool  # tests hand in a pool (and a fake upstream); otherwise built from the options
        self.pool: Pool | None = pool
        self.config = Config()
        self.observers = Observers(default_observers() if observers is None else list(observers))
        self._store: ResponseStore | None = None
        self.endpoints = endpoints(self._responses)
        self.policy = RetryPolicy(pool)
        self.engine = UpstreamEngine(self.policy, self.config, on_upstream_request=self._upstream_request,
                                     client=upstream)
        self.relay = LoopbackRelay(self.engine.open, idle_timeout=lambda: self.config.stream_idle_timeout)
        self.sockets = ResponsesSockets(self)  # Responses over WebSocket (Codex's GET /v1/responses upgrade)
        self.local = LocalAnswers(pool=lambda: self.pool, store=self._responses,
                                  metrics=lambda: self.observers.exposition() if self.observers.exposition else None,
                                  reload_accounts=lambda: self.pool.reload() if self.pool else None)
        self.fence = Fence()
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
            self.observers.configure(new)
        if {"mode", "listen_host", "qwen_client_keys_file", "qwen_allow_open"} & updated and "mode" in opts:
            exposed = access.exposed_listeners(list(opts.mode), opts.listen_host)
            if exposed and not self.config.client_keys and not self.config.allow_open:
                raise exceptions.OptionsError(
                    "The Qwen gateway would listen beyond loopback without client keys: " + ", ".join(exposed)
                    + f". Set ${config.KEYS_ENV} or --set qwen_client_keys_file=FILE, or --set "
                    "qwen_allow_open=true to accept that anyone reaching the port spends your quota.")
        if {"listen_host", "mode", "stream_large_bodies"} & updated and "mode" in opts:
            self.fence.loopback_only = bind_loopback_by_default(opts)
            reverse_only = all(isinstance(mode_specs.ProxyMode.parse(m), mode_specs.ReverseMode) for m in opts.mode)
            if reverse_only and opts.stream_large_bodies:
                # mitmproxy would stream a large request to the reverse target (a label here) before any hook
                # sees it; every flow is the gateway's in reverse mode, so nothing needs streaming through
                log.warning("qwen: stream_large_bodies is ignored in reverse mode: the gateway reads each request")
                opts.update(stream_large_bodies=None)
            if reverse_only and opts.body_size_limit is None:
                # mitmproxy buffers a whole upload before any hook can refuse it: bound it (reverse mode only,
                # where every flow is the gateway's; elsewhere it would also cut passed-through downloads).
                # Up to twice the limit the client still gets the gateway's own 413 in OpenAI's format.
                opts.update(body_size_limit=f"{2 * (self.config.max_body >> 20) + 1}m")
        if "keep_host_header" in updated and not opts.keep_host_header:
            # the Host the client sent tells a rebinding page from a real client; the engine sets its own
            opts.update(keep_host_header=True)
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
        self.observers.running()

    def done(self) -> None:
        self.relay.stop()
        self.sockets.stop()
        if self.pool is not None:
            call_safely(self.pool.flush)
        self.observers.done()
        _close_later(self.engine.client)

    # ---- the perimeter ----------------------------------------------------------------------------

    def claims(self, flow: http.HTTPFlow) -> bool:
        if flow.is_replay == "request" and isinstance(flow.metadata.get("qwen"), dict):
            return True
        return routing.claims(flow, self.config)

    def client_connected(self, client) -> None:
        """A connection that reached a listener beyond loopback before the gateway moved it is closed."""
        if self.fence.refuses_client(client.sockname):
            client.error = "qwen gateway: this listener is loopback-only"

    async def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        """Last line of defence (fence.py): claimed flows reach only the relay."""
        if await self.fence.refuses_server(data, self.config, (self.relay.address, self.sockets.address)):
            target = data.server.address[0] if data.server.address else "?"
            data.server.error = f"qwen gateway refuses to connect to {target}: its requests go to Qwen"

    def http_connect(self, flow: http.HTTPFlow) -> None:
        """Explicit proxy with client keys: a tunnel to a host the gateway does not answer is refused, so
        the proxy is no open relay for whoever holds no key (qwen_allow_passthrough lifts this)."""
        if self._no_passthrough() and not self.claims(flow):
            flow.response = error_response(access.PASSTHROUGH_REFUSED)

    def _no_passthrough(self) -> bool:
        return bool(self.config.client_keys) and not self.config.allow_passthrough

    # ---- request ----------------------------------------------------------------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        try:
            if self.fence.refuses_client(flow.client_conn.sockname):
                flow.kill()  # accepted before the gateway loaded and moved the listener: never served
                return
            if not self.claims(flow):
                if self._no_passthrough() and not flow.is_replay:
                    flow.response = error_response(access.PASSTHROUGH_REFUSED)
                return
            flow.request.stream = False  # the gateway reads the whole (bounded) body before anything is sent
            head, without_key = access.read_head(flow.request)
            key_refusal = None if flow.is_replay else access.check_key(head.key, self.config.client_keys)
            ex = self._open(flow, head, without_key)  # drops the client's key from the flow: checked just before
            refusal = access.admit(head, route=ex.route, key_refusal=key_refusal, peer=_peer(flow),
                                   allowed=self.config.allowed_hosts | {_sock(flow)}, max_body=self.config.max_body)
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
                ex = self._open(flow, *access.read_head(flow.request))  # a replay, or a flow that skipped requestheaders
            if flow.response is None:
                await self._handle(flow, ex)
        except GatewayError as e:
            self._refuse(flow, ex, e)
        except Exception as e:
            self._fail_closed(flow, e)

    async def _handle(self, flow: http.HTTPFlow, ex: Exchange) -> None:
        if wants_socket(flow, ex):
            await self.sockets.route(flow, ex)
            return
        endpoint = ex.endpoint
        if endpoint is None or ex.route == "method_not_allowed":
            if ex.route == "auth":
                ex.body = _parse_json(self._content(flow, ex) or b"{}")
            self.observers.notify("client_request", ex, flow)
            flow.response = await self.local.answer(ex, flow, self.config)
            return
        body = ex.body = _parse_json(self._content(flow, ex))
        ex.requested_model = body["model"] if isinstance(body.get("model"), str) else ""
        ex.stream = body.get("stream") is True
        self.observers.notify("client_request", ex, flow)
        ex.chat_body = endpoint.to_chat(body, ex)
        refusal = await context_check(ex, self.config)
        if refusal is not None:
            raise refusal
        if ex.stream:
            await self._relay(flow, ex)
        elif endpoint.capability is Capability.EMBEDDINGS and len(
                batches := embeddings.split_batches(ex.chat_body)) > 1:
            flow.response = await forward.fetch_embeddings(self.engine, ex, batches)
        else:
            flow.response, ex.extra["final"] = await forward.fetch_whole(self.engine, ex)

    def _content(self, flow: http.HTTPFlow, ex: Exchange) -> bytes:
        limit = self.config.max_body
        try:  # decoded here with the limit: mitmproxy's own decoding has none (a zstd bomb)
            content = access.decode_body(flow.request.raw_content or b"",
                                         flow.request.headers.get("content-encoding", ""), limit)
        except access.BodyTooLarge:
            raise access.too_large(limit) from None
        except ValueError as e:
            raise GatewayError(400, f"The request body could not be decoded: {e}.",
                               code="invalid_content_encoding") from e
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

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        trim_messages(flow)

    # ---- response ---------------------------------------------------------------------------------

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        ex = self._live.get(flow.id)
        if ex is None or flow.response is None or not ex.extra.get("relayed"):
            return  # only relayed answers have a token to forget and a stream to translate
        try:
            self.relay.forget(ex.extra.pop("relay_token", None))
            flow.request.headers.pop(TOKEN_HEADER, None)
            resp = flow.response
            if (ex.extra.get("relayed") and not ex.extra.get("relay_error") and resp.status_code == 200
                    and "event-stream" in resp.headers.get("content-type", "")):
                forward.start_stream(ex, resp)
                self.observers.notify("stream_started", ex, flow)
        except Exception:
            log.exception("qwen: could not start translating a stream")

    def response(self, flow: http.HTTPFlow) -> None:
        ex = self._live.pop(flow.id, None)
        if ex is None or flow.response is None:
            self._track_unclaimed(flow)
            return
        try:
            final = ex.extra.pop("final", None)
            if ex.extra.get("relay_error"):
                forward.as_stream_failure(flow, ex)
            if ex.rewriter is not None:
                final = forward.finish_stream(ex, flow.response)
            elif ex.extra.get("relayed") and not ex.extra.get("relay_error"):
                # a relayed answer that was not a stream after all: translate it whole
                flow.response, final = forward.buffered_answer(ex, flow.response.status_code, flow.response.headers,
                                                               flow.response.content or b"")
            self._served(ex, final)
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
        rw = ex.rewriter
        if rw is not None and rw.finished and not rw.error and flow.response is not None:
            # The client read the whole answer ([DONE] included) and closed its connection before mitmproxy
            # saw the relay's end of the stream: served, not an error.
            try:
                self._served(ex, forward.finish_stream(ex, flow.response))
                ex.notes.append("the client closed its connection after the whole answer")
            except Exception:
                log.exception("qwen: could not finish a stream the client had read")
            self._finish(flow, ex)
            return
        message = flow.error.msg if flow.error else "connection error"
        self._report(ex, Outcome.ERROR)
        ex.stream_error = ex.stream_error or message
        if ex.error is None:
            if message.startswith(CLIENT_LEFT):  # the client went away mid-answer: not Qwen's doing
                ex.fail(499, "client_disconnected", message)
            else:
                ex.fail(502, "upstream_connection_error", message)
        self._finish(flow, ex)

    # ---- the record -------------------------------------------------------------------------------

    def _open(self, flow: http.HTTPFlow, head: access.Head,
              without_key: tuple[tuple[bytes, bytes], ...] | None) -> Exchange:
        req = flow.request
        method, path = req.method.upper(), req.path.split("?", 1)[0]
        # the URL as the client addressed it (mitmproxy's pretty_url re-parses and validates the Host header)
        url = f"{req.scheme}://{head.host}{req.path}" if head.host else req.pretty_url
        ex = Exchange(ClientRequest(method, path, url, key_hint(head.key.decode("utf-8", "replace"))))
        route = routing.route(method, path, self.endpoints)
        ex.route, ex.endpoint = route.name, route.endpoint
        # the client's own key (in explicit-proxy mode: the user's real OpenAI key) is never kept on the flow
        if without_key is not None:
            req.headers.fields = without_key
        if flow.is_replay == "request":
            ex.notes.append("replayed")
        self._live[flow.id] = ex
        self._flows[ex.id] = flow
        return ex

    def _refuse(self, flow: http.HTTPFlow, ex: Exchange | None, e: GatewayError) -> None:
        flow.response = error_response(e)
        if ex is not None:
            ex.fail(e.status, e.code, e.message)
            forward.as_stream_failure(flow, ex)

    def _fail_closed(self, flow: http.HTTPFlow, e: Exception) -> None:
        log.exception("qwen: request handling failed")
        self._refuse(flow, self._live.get(flow.id), GatewayError(500, f"The gateway failed: {type(e).__name__}."))

    def _served(self, ex: Exchange, final: dict | None) -> None:
        """Qwen answered: the pool hears how, the endpoint keeps what it must (stored Responses)."""
        if ex.cred is None or ex.error is not None:
            return
        rw = ex.rewriter
        outcome = Outcome.OK if rw is None or not rw.error else \
            Outcome.THROTTLE if rw.throttled else Outcome.ERROR  # error_finish: throttled mid-stream
        self._report(ex, outcome)
        if ex.endpoint is not None and ex.endpoint.finished is not None and final is not None:
            ex.endpoint.finished(ex, final)

    def _report(self, ex: Exchange, outcome: Outcome) -> None:
        if self.pool is not None and ex.cred is not None:
            call_safely(self.pool.report, ex.cred.account, outcome)

    def _track_unclaimed(self, flow: http.HTTPFlow) -> None:
        """Flows the gateway passes through (other hosts, explicit proxy) count for mitmweb's cap too."""
        if self.observers.track is not None:
            call_safely(self.observers.track, flow)

    def _upstream_request(self, ex: Exchange) -> None:
        flow = self._flows.get(ex.id)
        if flow is not None:
            self.observers.notify("upstream_request", ex, flow)

    def _finish(self, flow: http.HTTPFlow, ex: Exchange) -> None:
        self._flows.pop(ex.id, None)
        ex.ended = time.monotonic()
        if flow.response is not None and ex.status is None:
            ex.status = flow.response.status_code
        flow.metadata["qwen"] = ex.to_meta()
        self.observers.finished(ex, flow)

    def _responses(self) -> ResponseStore:
        """Stored Responses (previous_response_id), opened at first use."""
        if self._store is None:
            self._store = ResponseStore(self.config.state_dir / "responses.sqlite3")
        return self._store

    def health(self) -> dict:
        return health(self.pool)


def _sock(flow: http.HTTPFlow) -> str:
    """The address the client connected to: a client that names it in Host is not a rebinding page."""
    return access.host_name(str(flow.client_conn.sockname[0])) if flow.client_conn.sockname else ""


def _peer(flow: http.HTTPFlow) -> str:
    return str(flow.client_conn.peername[0]) if flow.client_conn.peername else ""


def _close_later(client) -> None:
    try:
        asyncio_utils.create_task(client.aclose(), name="qwen: close upstream pool", keep_ref=True)
    except RuntimeError:
        pass


def _parse_json(content: bytes) -> dict:
    try:
        body = json.loads(content or b"")
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise GatewayError(400, "We could not parse the JSON body of your request. (HINT: This likely means "
                                "you aren't using your HTTP library correctly.)", code="invalid_json") from None
    if not isinstance(body, dict):
        raise GatewayError(400, "The request body must be a JSON object.", code="invalid_request_body")
    return body

"""The gateway: the one mitmproxy addon. It claims API flows and answers them from Qwen.

Per claimed flow, in this order (each step reads the one `Exchange` record; any exception in any step
ends in an error in the client's format answered locally, so a claimed flow never reaches its original host):

    requestheaders  claim the flow (door/routing), open its Exchange, check the client key, Host, Origin
                    and declared size (door/access), drop the client's key from the flow
    request         local answers (local, and the wings' own through the registry); the body read once
                    (door/body); observers' client_request; the endpoint's client -> chat translation
                    (api/); the context guard; then a whole answer is fetched by the upstream engine and
                    translated (forward); a stream is pointed at the loopback relay (upstream/relay)
    responseheaders a relayed stream gets its stream translator (forward, streaming)
    response/error  the exchange is settled: the answer completed, the pool told, the observers called
                    (settle)

The wings are named only in registry.py; the addon hands its tables to the core.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from mitmproxy import ctx, http, tls
from mitmproxy.proxy import mode_specs, server_hooks
from mitmproxy.utils import asyncio_utils

from . import config, forward, mitmdefaults, registry
from .api.responses.background import BackgroundRuns
from .api.responses.socket import ResponsesSockets, trim_messages, wants_socket
from .api.responses.store import ResponseStore
from .api.responses.store_pg import SharedResponseStore
from .storage import pg
from .storage.pg import Database, shown
from .accounts import Pool
from .auth.pool import AccountPool
from .config import Config
from .door import access, body, claim, listeners, mistakes, options, passthrough, routing, startup
from .door.hostile import HostileClients
from .door.keyring import digest
from .door.team import PENDING, Team
from .door.fence import Fence
from .storage.health import StateUnavailable
from .errors import GatewayError, gateway_error
from .exchange import Exchange
from .local import Formats, LocalAnswers, health
from .dispatch import Observers, call_safely
from .observe import requestlog, terminal
from .observe.guard import context_check
from .observer import Observer
from .seams import hook_dispatch
from .settle import Settlement
from .upstream.engine import UpstreamEngine
from .upstream.relay import TOKEN_HEADER, LoopbackRelay
from .upstream.retry import RetryPolicy

log = logging.getLogger("qwen")


class QwenGateway:
    def __init__(self, pool: Pool | None = None, observers: list[Observer] | None = None,
                 upstream=None) -> None:
        self._fixed_pool = pool  # tests hand in a pool (and a fake upstream); otherwise built from the options
        self.pool: Pool | None = pool
        self.config = Config()
        self.team = Team()  # named client keys (qwen-keys): checked at the door, spend counted when finished
        self.team.deleted.append(lambda name: self._responses().forget_owner(name))  # gone for good
        self.observers = Observers([*(registry.default_observers() if observers is None else observers), self.team])
        self._store: ResponseStore | None = None
        self.endpoints = registry.endpoints(self._responses, lambda: self.background)
        self.policy = RetryPolicy(pool)
        self.engine = UpstreamEngine(self.policy, self.config, registry.pairing(self.config),
                                     on_upstream_request=self._upstream_request, client=upstream)
        self.relay = LoopbackRelay(self.engine.open, idle_timeout=lambda: self.config.stream_idle_timeout)
        self.sockets = ResponsesSockets(self)  # Responses over WebSocket (Codex's GET /v1/responses upgrade)
        self.background = BackgroundRuns(self)  # Responses created with background: true, while they run
        self.local = LocalAnswers(pool=lambda: self.pool,
                                  routes=registry.local_routes(self._responses, self._reload_accounts,
                                                               lambda: self.background),
                                  metrics=lambda: self.observers.exposition(self.pool) if self.observers.exposition else None,
                                  keys=self.team.status)
        self.fence = Fence()
        self.watch = forward.ClientWatch()  # whole answers given up when their client leaves
        self.own_certs = False  # mitmproxy's `certs`: the user serves TLS on purpose
        self._live: dict[str, Exchange] = {}  # flow id -> exchange, until response/error
        self._flows: dict[str, http.HTTPFlow] = {}  # exchange id -> flow, for the engine's callback
        self.formats = Formats(registry.client_formats())
        self.settle = Settlement(pool=lambda: self.pool, observers=self.observers, flows=self._flows,
                                 formats=self.formats, prices=lambda: self.config.prices)
        self.clients = HostileClients(log, self.endpoints, self.formats)  # oversized and late heads, fd storms
        self.deadlines = self.clients.deadlines  # told by the hooks when a head arrives and an exchange ends
        self._running = False  # mitmproxy serves: a failure in configure is then refused, not fatal

    # ---- lifecycle --------------------------------------------------------------------------------

    def load(self, loader) -> None:
        master = getattr(loader, "master", None)  # mitmproxy's Loader has it (a bare OptManager does not)
        self._running = startup.mitmproxy_running(master)  # a script reloaded: mitmproxy already serves
        with startup.fail_closed(self._running):
            config.declare(loader)
            if master is not None:
                if problems := startup.check_deferred(master.options):
                    if not self._running:
                        startup.stop(problems)
                    for line in problems:  # a reload: the values stay unset, the gateway keeps serving
                        log.error("qwen: %s", line)
                hook_dispatch.install(master.addons)  # events enter only the addons with their hook
            terminal.keep_secrets_out_of_logs()  # mitmproxy's protocol debug prints clients' headers
            self.clients.load()

    def configure(self, updated: set[str]) -> None:
        with startup.fail_closed(self._running):  # never a mitmproxy serving without a configured gateway
            self._configure(updated)

    def _configure(self, updated: set[str]) -> None:
        opts = ctx.options
        mitmdefaults.apply(opts, updated)  # flow_detail 0, web_columns + comment: unless the user set them
        if any(k.startswith("qwen_") for k in updated) or config.NETWORK_OPTIONS & updated:
            old, new = self.config, config.parse(opts)
            self.config = new
            pairing = registry.pairing(new)
            if new.auth != old.auth or self._store is None:
                self._store = None
                if self._fixed_pool is None:
                    if self.pool is not None:
                        self.pool.close()
                    # the pool hands out only the kinds an upstream serves (a web account: not yet)
                    self.pool = AccountPool.from_settings(new.auth, kinds=pairing.upstreams.keys())
                self.policy.pool = self.pool
            self.engine.pairing = pairing
            stale = self.engine.reconfigure(new)
            if stale is not None:
                _close_later(stale)
            self.observers.configure(new)  # the team's keys first: the exposure check counts them
            self.clients.configure(old, new)
        options.enforce(opts, updated, self.config, self.fence, named_keys=self.team.keys_exist)
        if "certs" in updated:  # without certificates of the user's own, TLS on a reverse listener is a mistake
            self.own_certs = bool(opts.certs)

    def running(self) -> None:
        self._running = True
        asyncio_utils.create_task(self.relay.start(), name="qwen: relay", keep_ref=True)
        terminal.keep_secrets_out_of_logs()
        terminal.describe_accounts(getattr(self.pool, "describe", None))
        if self.config.state_url:  # never a password: the option refuses a URL that carries one
            log.info("qwen: shared state on %s", shown(self.config.state_url))
            self._responses().start()  # the shared sealing key adopted now, not by the first request
        self.observers.running()
        self.clients.running(self.config)

    async def done(self) -> None:
        closed = await listeners.close_clients(self.relay, self.sockets)  # first: flows end while all runs
        self.relay.stop()
        self.sockets.stop()
        self.background.stop()
        await self.team.close()
        if self.pool is not None:
            call_safely(self.pool.flush)
        await pg.drain()  # the shared database's last writes, before the loop stops
        self.observers.done()
        _close_later(self.engine.client)
        self.clients.done()
        terminal.stopped(closed)

    # ---- the perimeter ----------------------------------------------------------------------------

    def claims(self, flow: http.HTTPFlow) -> bool:
        if flow.is_replay == "request" and isinstance(flow.metadata.get("qwen"), dict):
            return True
        return routing.claims(flow, self.config)

    def client_connected(self, client) -> None:
        """A connection that reached a listener beyond loopback before the gateway moved it is closed."""
        if self.fence.refuses_client(client.sockname):
            client.error = "qwen gateway: this listener is loopback-only"
        else:
            self.deadlines.opened(client)  # it owes a request head from now on

    def client_disconnected(self, client) -> None:
        self.deadlines.closed(client)

    async def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        """Last line of defence (fence.py): claimed flows reach only the relay."""
        if await self.fence.refuses_server(data, self.config, (self.relay.address, self.sockets.address)):
            target = data.server.address[0] if data.server.address else "?"
            data.server.error = f"qwen gateway refuses to connect to {target}: its requests go to Qwen"

    def tls_failed_client(self, data: tls.TlsData) -> None:
        """`https://` on the reverse-mode listener, which speaks plain HTTP: say what to use (mistakes.py)."""
        client = data.context.client
        if not self.own_certs and isinstance(client.proxy_mode, mode_specs.ReverseMode):
            line = mistakes.https_on_plain_listener(client.sockname)
            if line:
                log.warning(line)

    def http_connect(self, flow: http.HTTPFlow) -> None:
        """Explicit proxy with client keys: a tunnel to a host the gateway does not answer is refused."""
        self.deadlines.tunnelled(flow)
        if claim.no_passthrough(self.config, self.team.ring.required) and not self.claims(flow):
            passthrough.refuse(flow)

    # a TCP tunnel passed through and a WebSocket session are exchanges in progress: never late for a head
    def tcp_start(self, flow) -> None:
        self.deadlines.began(flow)

    def tcp_end(self, flow) -> None:
        self.deadlines.ended(flow)

    tcp_error = websocket_end = tcp_end

    # ---- request ----------------------------------------------------------------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        self.deadlines.began(flow)  # a whole head: the connection owes nothing until this exchange ends
        if flow.response or flow.error or not flow.live:
            return
        try:
            if self.fence.refuses_client(flow.client_conn.sockname):
                flow.kill()  # accepted before the gateway loaded and moved the listener: never served
                return
            if not self.claims(flow):
                if claim.no_passthrough(self.config, self.team.ring.required) and not flow.is_replay:
                    passthrough.refuse(flow)
                else:
                    passthrough.pass_on(flow, self._own_key)
                return
            flow.request.stream = False  # the gateway reads the whole (bounded) body before anything is sent
            head, without_key = access.read_head(flow.request)
            key_refusal, key = (None, None) if flow.is_replay else self.team.check(head.key, self.config.client_keys, flow)
            ex = self._open(flow, head, without_key)  # drops the client's key from the flow: checked just before
            if key_refusal is PENDING:  # the shared keys are not read yet: decided in `request` (its digest only)
                ex.extra["key_digest"], key_refusal = digest(head.key), None
            self.team.bind(ex, key)
            refusal = access.admit(head, route=ex.route, key_refusal=key_refusal, peer=access.peer_host(flow),
                                   allowed=self.config.allowed_hosts | {access.sock_host(flow)}, max_body=self.config.max_body)
            refusal = refusal or mistakes.refusal(flow, ex.route, ex.dialect)
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
            if "key_digest" in ex.extra:
                await self._late_key_check(flow, ex)
            if flow.response is None:
                await self._handle(flow, ex)
        except (GatewayError, StateUnavailable) as e:
            self._refuse(flow, ex, gateway_error(e))
        except Exception as e:
            self._fail_closed(flow, e)

    async def _late_key_check(self, flow: http.HTTPFlow, ex: Exchange) -> None:
        refusal, key = await self.team.late_check(ex.extra.pop("key_digest"), bool(self.config.client_keys), flow)
        self.team.bind(ex, key)
        if refusal is not None and not access.key_exempt(ex.route, access.peer_host(flow)):
            raise refusal

    async def _handle(self, flow: http.HTTPFlow, ex: Exchange) -> None:
        if wants_socket(flow, ex):
            await self.sockets.route(flow, ex)
            return
        endpoint = ex.endpoint
        if endpoint is None or ex.route == "method_not_allowed":
            if ex.route in routing.BODY_ROUTES:
                ex.body = body.parse_json(body.read(flow, ex, self.config.max_body) or b"{}")
            self.observers.notify("client_request", ex, flow)
            flow.response = await self.local.answer(ex, flow, self.config)
            return
        client_body = ex.body = body.parse_json(body.read(flow, ex, self.config.max_body))
        ex.requested_model = client_body["model"] if isinstance(client_body.get("model"), str) else ""
        ex.stream = client_body.get("stream") is True
        self.observers.notify("client_request", ex, flow)
        if endpoint.prepare is not None:
            await endpoint.prepare(client_body, ex)
        ex.chat_body = endpoint.to_chat(client_body, ex)
        await self.check_context(ex)
        if ex.stream:
            await self._relay(flow, ex)
        else:
            flow.response, ex.extra["final"] = await forward.answer_whole(self.engine.open, ex, flow.client_conn,
                                                                              self.watch)

    async def check_context(self, ex: Exchange) -> None:
        """Just before upstream: the context guard (a prompt longer than the model takes is refused), then
        the named key's budgets and rate limits (door/team.py)."""
        refusal = await context_check(ex, self.config)
        if refusal is not None:
            raise refusal
        if ex.key_name:
            await self.team.limit(ex)

    async def _relay(self, flow: http.HTTPFlow, ex: Exchange) -> None:
        """Point the flow at the relay: mitmproxy then streams the engine's answer like any server's."""
        address = await self.relay.start()
        if ex.extra.get("keep_before_end"):  # the endpoint keeps the answer before the stream's end goes out
            ex.extra["final_gate"] = asyncio.get_running_loop().create_future()
        ex.extra["relay_token"] = token = self.relay.expect(ex)
        ex.extra["relayed"] = True
        claim.point_at_relay(flow, address, token, TOKEN_HEADER)

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        trim_messages(flow)

    # ---- response ---------------------------------------------------------------------------------

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        ex = self._live.get(flow.id)
        if ex is None:
            passthrough.seal(flow)  # sent: out of the record before -w writes it
            return
        if flow.response is None or not ex.extra.get("relayed"):
            return  # only relayed answers have a token to forget and a stream to translate
        try:
            self._forget_relay(flow, ex)
            claim.show_as_called(flow, ex)
            resp = flow.response
            if (ex.extra.get("relayed") and not ex.extra.get("relay_error") and resp.status_code == 200
                    and "event-stream" in resp.headers.get("content-type", "")):
                forward.start_stream(ex, resp)
                self.formats.stamp(ex, resp)
                self.observers.notify("stream_started", ex, flow)
        except Exception:
            log.exception("qwen: could not start translating a stream")

    def response(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        if flow.websocket is None:  # a WebSocket session goes on until websocket_end
            self.deadlines.ended(flow)
        ex = self._live.pop(flow.id, None)
        if ex is None or flow.response is None:
            passthrough.seal(flow)  # an answer that had no responseheaders (another addon's, a replay's)
            self.settle.passed(flow)
            requestlog.passed(flow)
            return None
        claim.show_as_called(flow, ex)
        self.settle.answered(flow, ex)
        # mitmproxy awaits what a hook returns: only an answer with a database write to wait for waits
        return self.settle.durable(flow, ex) if "durable" in ex.extra else None

    def error(self, flow: http.HTTPFlow) -> None:
        self.deadlines.ended(flow)
        ex = self._live.pop(flow.id, None)
        if ex is None:
            passthrough.seal(flow)
            self.settle.passed(flow)
            requestlog.passed(flow)
            return
        self._forget_relay(flow, ex)
        claim.show_as_called(flow, ex)
        self.settle.broken(flow, ex)

    def _forget_relay(self, flow: http.HTTPFlow, ex: Exchange) -> None:
        self.relay.forget(ex.extra.pop("relay_token", None))
        flow.request.headers.pop(TOKEN_HEADER, None)

    # ---- the record -------------------------------------------------------------------------------

    def _open(self, flow: http.HTTPFlow, head: access.Head,
              without_key: tuple[tuple[bytes, bytes], ...] | None) -> Exchange:
        ex = claim.open_exchange(flow, head, without_key, self.endpoints, self.engine.pairing.default)
        self._live[flow.id] = ex
        self._flows[ex.id] = flow
        return ex

    def _refuse(self, flow: http.HTTPFlow, ex: Exchange | None, e: GatewayError) -> None:
        flow.response = self.formats.error(e, ex)
        if ex is not None:
            ex.fail(e.status, e.code, e.message)
            forward.as_stream_failure(flow, ex)

    def _fail_closed(self, flow: http.HTTPFlow, e: Exception) -> None:
        log.exception("qwen: request handling failed")
        self._refuse(flow, self._live.get(flow.id), GatewayError(500, f"The gateway failed: {type(e).__name__}."))

    def _own_key(self, presented: bytes) -> bool:
        """Whether a credential is one of this gateway's client keys (flat or named, revoked included)."""
        return bool(presented) and (presented in self.config.client_keys or self.team.ring.find(presented) is not None)

    def _upstream_request(self, ex: Exchange) -> None:
        flow = self._flows.get(ex.id)
        if flow is not None:
            self.observers.notify("upstream_request", ex, flow)

    def _reload_accounts(self) -> None:
        if self.pool is not None:
            self.pool.reload()

    def _responses(self) -> ResponseStore:
        """Stored Responses (previous_response_id), opened at first use (shared: qwen_state_url)."""
        if self._store is None:
            path = self.config.state_dir / "responses.sqlite3"
            url = self.config.state_url
            self._store = SharedResponseStore(path, Database(url)) if url else ResponseStore(path)
        return self._store

    def health(self) -> dict:
        return health(self.pool, self.team.status())


def _close_later(client) -> None:
    try:
        asyncio_utils.create_task(client.aclose(), name="qwen: close upstream pool", keep_ref=True)
    except RuntimeError:
        pass

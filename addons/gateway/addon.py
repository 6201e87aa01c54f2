"""The gateway: the one mitmproxy addon. It claims API flows and answers them from Qwen. Only mitmproxy's hooks live
here; the parts they use are made and joined in wiring.py, and a claimed request is run by the turn
(turn/runner.py), whatever its transport. Per claimed flow, in this order (any exception in any step ends in an
error in the client's format answered locally, so a claimed flow never reaches its original host):

    requestheaders  claim the flow (ingress/routing), open its Exchange, check the client key, Host, Origin
                    and declared size (ingress/access), drop the client's key from the flow
    request         local answers (local, the outer packages' own: components.py); the body read once (ingress/body); the
                    turn: received, translated, checked; then its whole answer, or the flow at the relay
    responseheaders a relayed stream passes through mitmproxy as the turn writes it
    response/error  the exchange is settled: the answer completed, the pool told, the observers called
"""

from __future__ import annotations

import faulthandler
import logging
from collections.abc import Awaitable

from mitmproxy import ctx, http, tls
from mitmproxy.proxy import server_hooks

from .settings import config
from .ingress import access, admission, body, claim, passthrough, routing, startup
from .errors import GatewayError, failure, gateway_error
from .exchange import Exchange
from .observe import terminal
from .seams import at_load
from .storage.health import StateUnavailable
from .turn import outcome
from .turn.flow_answer import FlowAnswer
from .turn.relay import TOKEN_HEADER
from .wiring import Wiring

log = logging.getLogger("qwen")


class QwenGateway(Wiring):
    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self._live: dict[str, Exchange] = {}  # flow id -> exchange, until response/error
        self._running = False  # mitmproxy serves: a failure in configure is then refused, not fatal

    # ---- lifecycle --------------------------------------------------------------------------------

    def load(self, loader) -> None:
        master = getattr(loader, "master", None)  # mitmproxy's Loader has it (a bare OptManager does not)
        self._running = startup.mitmproxy_running(master)  # a script reloaded: mitmproxy already serves
        with startup.fail_closed(self._running):
            config.declare(loader)
            if master is not None:
                faulthandler.enable()  # a crash in native code prints every thread's stack on stderr
                startup.deferred_values(master.options, self._running)  # a bad one: stopped, never unconfigured
                at_load.install(master)  # the hook dispatch, the message checks, the terminal log's output
                if not self._running:  # a SIGTERM while it starts drains too
                    self.take_sigterm(master, starting=True)
            terminal.keep_secrets_out_of_logs()  # mitmproxy's protocol debug prints clients' headers
            self.clients.load()

    def configure(self, updated: set[str]) -> None:
        with startup.fail_closed(self._running):  # never a mitmproxy serving without a configured gateway
            self.reconfigure(ctx.options, updated)

    def running(self) -> None:
        self._running = True
        self.start()
        self.take_sigterm(ctx.master, starting=False)  # SIGTERM drains (turn/drain.py), mitmproxy's handler replaced

    done = Wiring.stop  # mitmproxy's last hook: the drain's end, the stores closed

    # ---- the perimeter ----------------------------------------------------------------------------

    def claims(self, flow: http.HTTPFlow) -> bool:
        if flow.is_replay == "request" and isinstance(flow.metadata.get("qwen"), dict):
            return True
        return routing.claims(flow, self.config)

    def client_connected(self, client) -> None:
        """A connection that reached a listener beyond loopback before the gateway moved it is closed."""
        if self.connections.refuses_client(client.sockname):
            client.error = "qwen gateway: this listener is loopback-only"
        else:
            self.deadlines.opened(client)  # it owes a request head from now on

    def next_layer(self, nextlayer) -> None:
        self.clients.next_layer(nextlayer)  # request heads bounded where the seam does not fit this mitmproxy

    def client_disconnected(self, client) -> None:
        self.clients.disconnected(client)

    async def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        """Last line of defence (connection_policy.py): claimed flows reach only the relay."""
        if await self.connections.refuses_server(data, self.config, (self.relay.address,)):
            target = data.server.address[0] if data.server.address else "?"
            data.server.error = f"qwen gateway refuses to connect to {target}: its requests go to Qwen"

    def tls_failed_client(self, data: tls.TlsData) -> None:  # what to use or set (ingress/untrusted.py)
        self.told.tls_failed(data.context.client, self.own_certs, ctx.options.confdir)

    def http_connect(self, flow: http.HTTPFlow) -> None:
        """Explicit proxy with client keys: a tunnel to a host the gateway does not answer is refused."""
        self.deadlines.tunnelled(flow)
        if claim.no_passthrough(self.config, self.team.ring.required) and not self.claims(flow):
            passthrough.refuse(flow)

    def tcp_start(self, flow) -> None:
        self.deadlines.began(flow)

    def tcp_end(self, flow) -> None:  # a TCP tunnel and a WebSocket session: exchanges, never late for a head
        self.deadlines.ended(flow)

    tcp_error = tcp_end
    websocket_end = Wiring.websocket_ended  # also what its messages held ahead of their turns, given back

    # ---- request ----------------------------------------------------------------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        self.deadlines.began(flow)  # a whole head: the connection owes nothing until this exchange ends
        if flow.response or flow.error or not flow.live:
            self.told.refused(flow)  # mitmproxy's own refusal (its validation): said, how to fix a CONNECT
            return
        try:
            if self.connections.refuses_client(flow.client_conn.sockname):
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
            ex = self._open(flow, head, without_key)  # drops the client's key from the flow (the head holds it)
            refusal = admission.admit(self.team, ex, head, flow, self.config)
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
            if ex.key.digest is not None:
                await admission.admit_late(self.team, ex, flow, self.config)
            if flow.response is None:
                await self._handle(flow, ex)
        except (GatewayError, StateUnavailable) as e:
            self._refuse(flow, ex, gateway_error(e))
        except Exception as e:
            self._fail_closed(flow, e)

    async def _handle(self, flow: http.HTTPFlow, ex: Exchange) -> None:
        endpoint = ex.endpoint
        if endpoint is not None and endpoint.upgrade is not None and flow.request.method.upper() == "GET":
            self.drain.refuse_new()  # the turns of a new WebSocket would be refused one by one
            if await endpoint.upgrade(flow, ex):
                return
        if endpoint is None or ex.route == "method_not_allowed":
            if ex.route in routing.READ_ROUTES:  # the body bounded and decoded first; a JSON route's parsed
                raw = body.read(flow, ex, self.config.max_body)
                ex.body = body.parse_json(raw or b"{}") if ex.route in routing.BODY_ROUTES else None
            self.observers.notify("client_request", ex, flow)
            flow.response = await self.local.answer(ex, flow, self.config)
            return
        self.turns.received(ex, await body.parsed(body.read(flow, ex, self.config.max_body)), flow)
        if ex.stream:  # the turn runs when mitmproxy connects to the relay, which streams its answer
            await self._relay(flow, ex)
        else:
            await self.turns.run(ex, FlowAnswer(flow, self.turns.refusal))

    async def _relay(self, flow: http.HTTPFlow, ex: Exchange) -> None:
        """Point the flow at the relay: mitmproxy then streams the turn's answer like any server's."""
        address = await self.relay.start()
        claim.point_at_relay(flow, address, self.relay.expect(ex), TOKEN_HEADER)

    websocket_message = Wiring.websocket_relayed  # a client's message counted in its read-ahead; the older cut

    # ---- response ---------------------------------------------------------------------------------

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        self.drain.closing(flow)  # draining: the connection closes after this answer
        ex = self._live.get(flow.id)
        if ex is None:
            passthrough.seal(flow)  # sent: out of the record before -w writes it
            return
        if flow.response is None or ex.turn.relay_token is None:
            return  # only relayed answers have a token to forget and a stream to pass on
        try:
            self._forget_relay(flow, ex)
            claim.show_as_called(flow, ex)
            if outcome.streamed(ex):  # the turn pumps the client's events: mitmproxy passes them on at once
                flow.response.stream = True
                self.formats.stamp(ex, flow.response)
        except Exception:
            log.exception("qwen: could not start passing a stream on")

    def response(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        self.drain.closing(flow)  # (an answer not streamed: its head not sent yet)
        if flow.websocket is None:  # a WebSocket session goes on until websocket_end
            self.deadlines.ended(flow)
        ex = self._live.pop(flow.id, None)
        if ex is None or flow.response is None:
            self.passed(flow)  # (also an answer that had no responseheaders: another addon's, a replay's)
            return None
        claim.show_as_called(flow, ex)
        self.settle.answered(flow, ex)
        # mitmproxy awaits what a hook returns: only an answer with a database write to wait for waits
        return self.settle.durable(flow, ex) if ex.turn.write is not None else None

    def error(self, flow: http.HTTPFlow) -> None:
        self.deadlines.ended(flow)
        ex = self._live.pop(flow.id, None)
        if ex is None:
            self.passed(flow)
            return
        self._forget_relay(flow, ex)
        claim.show_as_called(flow, ex)
        self.settle.broken(flow, ex)

    def _forget_relay(self, flow: http.HTTPFlow, ex: Exchange) -> None:
        self.relay.forget_turn(ex)
        flow.request.headers.pop(TOKEN_HEADER, None)

    # ---- the record -------------------------------------------------------------------------------

    def _open(self, flow: http.HTTPFlow, head: access.Head,
              without_key: tuple[tuple[bytes, bytes], ...] | None) -> Exchange:
        ex = claim.open_exchange(flow, head, without_key, self.endpoints, self.engine.pairing.default)
        self._live[flow.id] = ex
        self.turns.follow(ex, flow)
        return ex

    def _refuse(self, flow: http.HTTPFlow, ex: Exchange | None, e: GatewayError) -> None:
        if ex is None:
            flow.response = self.formats.error(e, None)
            return
        ex.fail(e.status, e.code, e.message)
        flow.response = self.turns.refusal(ex, e)

    def _fail_closed(self, flow: http.HTTPFlow, e: Exception) -> None:
        log.exception("qwen: request handling failed")
        self._refuse(flow, self._live.get(flow.id), failure(e))


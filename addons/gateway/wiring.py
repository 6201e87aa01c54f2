"""The composition root: every part of the gateway made once and joined, and what changes when the options do.

    the account pool       (upstream/pool/pool.py) from the options' account settings, made again when they change
    the stored Responses   (stores/responses*.py) opened at first use, shared on qwen_state_url
    the engine             (upstream/engine.py) with its retry policy and the pairing of components.py
    the observers          (components.default_observers, and the team: named keys' spend)
    the checks             before upstream, in order: the drain (no new turn once SIGTERM came), the cache
                           fixes (turn/cache_fixes.py: qwen_cache_fixes), the route
                           (turn/model_route.py: qwen_routes), the context guard (turn/context_guard.py), a
                           named key's budgets and rate limits (tenancy/team.py), the team's cache turns
                           (cache/shared.py); on each attempt, a USD budget's check (the engine asks the team)
    the turn               (turn/runner.py) with the engine, the checks, the observers and the settlement
    its transports         (turn/) the relay (HTTP streams), the WebSocket (speaking the Responses API's
                           messages), background runs
    the entrance           the connection policy, hostile clients, local answers, the dialects' error formats
    the drain              (turn/drain.py) SIGTERM: new turns refused, the running ones awaited (qwen_drain_s)

The addon (addon.py) is only mitmproxy's hooks over these parts; the outer packages are named in components.py.
"""

from __future__ import annotations

import asyncio
import logging
from typing import cast

from mitmproxy import ctx, exceptions, http
from mitmproxy.utils import asyncio_utils

from .settings import config, mitmproxy_defaults
from . import components
from .api.batches.routes import BatchRoutes
from .api.batches.watch import BatchWatch
from .turn.background import BackgroundRuns
from .turn.socket_flow import trim_messages
from .stores.responses import ResponseStore
from .stores.responses_pg import SharedResponseStore
from .storage import folder_access, pg
from .accounts import Pool
from .storage.pg import Database, listen_through, shown
from .upstream.pool.pool import AccountPool
from .settings.config import Config
from .dispatch import Observers, call_safely
from .ingress import listeners, exposure as options, passthrough, startup
from .ingress.connection_policy import ConnectionPolicy
from .ingress.hostile import HostileClients
from .tenancy import refusals, team
from .ingress.untrusted import MistakeLines
from .seams import shutdown_signals
from .turn.drain import Drain
from .exchange import Exchange
from .local_answers import Formats, LocalAnswers, health
from .mitmweb import login as mitmweb_login
from .observe import requestlog, terminal
from .seams import collector
from .turn.context_guard import context_check
from .turn import cache_fixes, model_route
from .observer import Observer
from .turn.runner import Turns
from .cache.diagnosis import Diagnoser
from .turn.settlement import Settlement
from .upstream.engine import UpstreamEngine
from .turn.relay import LoopbackRelay, stream_capture
from .models.learned import LearnedFacts
from .models.learned_pg import SharedLearnedFacts
from .upstream.retry import RetryPolicy

log = logging.getLogger("qwen")

CUT_WAIT_S = 3.0  # at a stop, how long the ends of answers cut short may take to reach their clients


class Wiring:
    def __init__(self, pool: Pool | None = None, observers: list[Observer] | None = None, upstream=None) -> None:
        self._fixed_pool = pool  # tests hand in a pool (and a fake upstream); otherwise built from the options
        self.pool: Pool | None = pool
        self.config = Config()
        self.team = team.Team()  # named client keys (qwen-keys): checked at the entrance, spend counted when finished
        self.told = MistakeLines()  # a client's mistake (a certificate, a CONNECT), said once an hour however often made
        self.team.deleted.append(lambda name: self._responses().forget_owner(name))  # gone for good
        self.team.ended.append(self._key_ended)
        self.diagnoser = Diagnoser()  # the cache doctor's memory, read for the clients that ask for diagnostics
        self.observers = Observers([*(components.default_observers(self.diagnoser) if observers is None else observers),
                                    self.team])
        self.diagnoser.catch_up = self.observers.flush  # a response answered a moment ago: its doctor's turn now
        self._store: ResponseStore | None = None
        self.endpoints = components.endpoints(self._responses, lambda: self.background, lambda: self.sockets,
                                              self.diagnoser)
        self.policy = RetryPolicy(pool)
        self.engine = UpstreamEngine(self.policy, self.config, components.pairing(self.config),
                                     on_upstream_request=self._upstream_request, client=upstream,
                                     usd_budget_check=self.team.priced_only)  # nothing unpriced past a USD budget
        self._flows: dict[str, http.HTTPFlow] = {}  # exchange id -> flow, while its exchange runs
        self.formats = Formats(components.client_formats())
        self.settle = Settlement(pool=lambda: self.pool, observers=self.observers, flows=self._flows, formats=self.formats,
                                 prices=lambda: self.config.prices, lists=lambda: self.config.models.accounts)
        self.drain = Drain(in_progress=lambda: len(self._flows))  # every exchange running, whatever its transport
        checks = (self.drain.check, self.fix_cache_noise, self.route, self.check_context, self.team.limit, self.diagnoser.recall)
        self.turns = Turns(open_upstream=self.engine.open, checks=checks, observers=self.observers,
                           settlement=self.settle, idle_timeout=lambda: self.config.stream_idle_timeout,
                           resume_upstream=self.engine.resume, read_before=self.diagnoser.read_before)
        self.relay = LoopbackRelay(self.turns)  # HTTP streams reach mitmproxy here
        responses = self.endpoints["/responses"]
        self.sockets = components.sockets(self.relay, self.turns, responses, self._responses)  # Codex's WebSocket
        self.background = BackgroundRuns(self.turns)  # background: true, while they run
        routes = components.local_routes(self._responses, self._reload_accounts, lambda: self.background,
                                         lambda: self.pool, self.engine.build,
                                         components.batch_bills(self.observers.all, self.observers.bill),
                                         self.team.priced_only)  # a USD budget: no unpriced batch either
        # batches billed when Qwen ends them, whether or not a client looks
        self.batch_watch = BatchWatch(cast(BatchRoutes, routes["batches"]), lambda: self.config)
        self.local = LocalAnswers(pool=lambda: self.pool, routes=routes,
                                  metrics=lambda: self.observers.scrape(self.pool, self.policy.learned),
                                  keys=self.team.status, unpriced=self.settle.unpriced.listed,
                                  learned=lambda: self.policy.learned.shown())
        self.drain.probes = self.local.probes  # readiness says `draining`
        self.connections = ConnectionPolicy()
        self.web_login = mitmweb_login.Login()  # where mitmweb's login is kept (mitmweb/login.py)
        self.own_certs = False  # mitmproxy's `certs`: the user serves TLS on purpose
        self.clients = HostileClients(log, self.endpoints, self.formats)  # oversized and late heads, fd storms
        self.deadlines = self.clients.deadlines  # told by the hooks when a head arrives and an exchange ends
        # the drain waits for a quiet entrance, then closes the listeners
        self.drain.connections, self.drain.close_listeners = self.deadlines, listeners.stop_listening
        self.admin = components.admin_listener(lambda: self.config.auth)  # qwen_admin_listen (cli/admin_server.py)

    # ---- what the options change ------------------------------------------------------------------

    def reconfigure(self, opts, updated: set[str]) -> None:
        mitmproxy_defaults.apply(opts, updated)  # flow_detail 0, web_columns + comment: unless the user set them
        if any(k.startswith("qwen_") for k in updated) or config.NETWORK_OPTIONS & updated:
            old, new = self.config, config.parse(opts)
            fresh = new.auth != old.auth or self._store is None  # a state folder not read yet
            if fresh and (blocked := folder_access.unreadable(new.state_dir)) is not None:
                raise exceptions.OptionsError(blocked)  # one line with the fix, before anything reads the folder
            if (moved := self.team.source.refusal(new)) is not None:  # the keys' place changed: the entrance holds
                raise exceptions.OptionsError(moved)
            self.config = new
            if new.state_url:  # before any store opens its database: where the one LISTEN goes
                listen_through(new.state_url, new.state_listen_url)
            pairing = components.pairing(new)
            if fresh:
                self._store = None
                if self._fixed_pool is None:
                    if self.pool is not None:
                        self.pool.close()
                    # the pool hands out only the accounts of a provider the pairing serves
                    self.pool = AccountPool.from_settings(new.auth, providers=pairing.upstreams.keys())
                self.policy.pool = self.pool
                self.policy.learned.close()  # what Qwen's refusals taught: kept in the folder, shared on a database
                self.policy.learned = SharedLearnedFacts(new.state_dir, Database(new.state_url)) \
                    if new.state_url else LearnedFacts(new.state_dir)
                self.policy.learned.start()
                self.diagnoser.share(Database(new.state_url) if new.state_url else None)  # the doctor's turns
            self.engine.pairing, self.policy.bindings, self.policy.fallbacks = pairing, new.bindings, new.fallbacks
            if (stale := self.engine.reconfigure(new)) is not None:
                _close_later(stale)
            self.observers.configure(new)  # the team's keys first: the exposure check counts them
            self.clients.configure(old, new)
            self.sockets.configure(new)  # its message limit (in mitmproxy's reader) and idle time
            self.admin.configure(new.admin_listen)  # a port in use: refused, as an option's bad value is
        options.enforce(opts, updated, self.config, self.connections, named_keys=self.team.keys_exist)
        self.relay.capture = stream_capture(ctx.master, opts, debug_log=self.config.debug_log)  # a reader's or none
        if mitmweb_login.OPTIONS & updated or "qwen_state_dir" in updated:  # mitmweb's token, out of the log
            self.web_login.keep(ctx.master, self.config.state_dir)
        if "certs" in updated:  # without certificates of the user's own, TLS on a reverse listener is a mistake
            self.own_certs = bool(opts.certs)

    # ---- start and stop ---------------------------------------------------------------------------

    def start(self) -> None:
        try:
            self._start()
        finally:  # last, and whatever happened: the collector paused while the gateway started runs again
            collector.settle(ctx.master)  # what starting made lives as long as the process

    def _start(self) -> None:
        startup.say_unknown_options(ctx.options)  # every addon has loaded: a name none declared is a typo
        asyncio_utils.create_task(self.relay.start(), name="qwen: relay", keep_ref=True)
        terminal.keep_secrets_out_of_logs()
        if self.config.state_url:  # never a password: the option refuses a URL that carries one
            log.info("qwen: shared state on %s", shown(self.config.state_url))
            self._responses().start()  # the shared sealing key adopted now, not by the first request
        else:  # which store it uses, as qwen-keys says where it reads (docs/keys.md)
            log.info("qwen: state in the folder %s (qwen_state_url not set)", self.config.state_dir)
        terminal.describe_accounts(getattr(self.pool, "describe", None))
        if self.pool is not None:  # each account's own model list, read from its provider in the background
            components.account_models(self.config, self.pool, self.pool.status())
        self.observers.running()
        self.batch_watch.start()
        self.clients.running(self.config, ctx.master)

    def take_sigterm(self, master, *, starting: bool) -> None:
        """SIGTERM begins the drain (turn/drain.py) in place of mitmproxy's handler, which stops at once: from `load`
        (`starting`: a start-up drains too, its wait begun once running), and again at `running`."""
        install = shutdown_signals.install_early if starting else shutdown_signals.install
        if install(master, lambda: self.drain.signalled(self.config.drain_s)):
            self.drain.shutdown = master.shutdown
        if not starting:
            self.drain.started()

    async def stop(self) -> None:
        self.drain.cancel()
        await self._cut()  # what still runs ends with the client's error, never a cut connection
        await self.sockets.close()  # a WebSocket's client reads its last events before its connection closes
        closed = await listeners.close_clients(self.relay)  # then: flows end while all runs
        self.relay.stop()
        self.sockets.stop()
        self.background.stop()
        self.batch_watch.stop()
        self.admin.stop()
        await self.team.close()
        if self.pool is not None:
            call_safely(self.pool.flush)
        await pg.drain()  # the shared database's last writes, before the loop stops
        await pg.close_pools()  # their workers stopped: the loop's end waits for nothing
        self.observers.done()
        _close_later(self.engine.client)
        self.clients.done()
        self.web_login.forget()
        terminal.stopped(closed)

    async def _cut(self) -> None:
        """Every turn still running ends now, with the client's error (turn/stopping.py); its end reaches the
        client and the record (at most CUT_WAIT_S)."""
        if not self.turns.cuts.cut():
            return
        for _ in range(int(CUT_WAIT_S / listeners.POLL_S)):
            if not self._flows:
                break
            await asyncio.sleep(listeners.POLL_S)

    # ---- the parts' callbacks ---------------------------------------------------------------------

    async def fix_cache_noise(self, ex: Exchange) -> None:
        """qwen_cache_fixes: per-request noise out of the translated request before anything reads it."""
        cache_fixes.apply(ex, self.config.cache_fixes, self.config.cache_lifetime, self.config.models.resolve)

    async def route(self, ex: Exchange) -> None:
        """The request's route (qwen_routes): decided before the context guard, which then judges the routed model."""
        await model_route.route(ex, self.config, self.policy.learned)

    async def check_context(self, ex: Exchange) -> None:
        """The context guard: a prompt longer than the model takes is refused before upstream."""
        if (refusal := await context_check(ex, self.config)) is not None:
            raise refusal

    def websocket_ended(self, flow: http.HTTPFlow) -> None:
        """A WebSocket flow ended: it owes no head; what its messages held ahead of their turns is given back."""
        self.deadlines.ended(flow)
        self.sockets.ended(flow)

    def websocket_relayed(self, flow: http.HTTPFlow) -> None:
        """A WebSocket message relayed: a client's to the gateway's server counted in its read-ahead, and of the
        flow's messages the newest kept, the older cut (socket_flow.trim_messages)."""
        self.sockets.relayed(flow)
        trim_messages(flow)

    def passed(self, flow: http.HTTPFlow) -> None:
        """A flow the gateway does not answer, ended: its credentials out of the record, counted."""
        passthrough.seal(flow)
        self.settle.passed(flow)
        requestlog.passed(flow)

    def _own_key(self, presented: bytes) -> bool:
        """Whether a credential is one of this gateway's client keys (flat or named, revoked included)."""
        return bool(presented) and (presented in self.config.client_keys or self.team.ring.find(presented) is not None)

    def _key_ended(self, name: str, change: str) -> None:
        """A named key revoked, rotated or deleted: its running turns end now (qwen_key_change_in_flight=end)."""
        ended = self.turns.cuts.cut(name, lambda: refusals.ended_in_flight(name, change)) if self.team.end_in_flight else 0
        if ended:
            log.info("qwen: key %s %s: %d answer%s in flight ended (qwen_key_change_in_flight)", name, change, ended,
                     "" if ended == 1 else "s")

    def _upstream_request(self, ex: Exchange) -> None:
        if (flow := self._flows.get(ex.id)) is not None:
            self.observers.notify("upstream_request", ex, flow)

    def _reload_accounts(self) -> None:
        if self.pool is not None:
            self.pool.reload()

    def _responses(self) -> ResponseStore:
        """Stored Responses (previous_response_id), opened at first use (shared: qwen_state_url)."""
        if self._store is None:
            path, url = self.config.state_dir / "responses.sqlite3", self.config.state_url
            self._store = SharedResponseStore(path, Database(url)) if url else ResponseStore(path)
        self._store.per_key = self.config.stored_per_key  # each key's newest kept: the option may change
        return self._store

    def health(self) -> dict:
        return health(self.pool, self.team.status(), self.settle.unpriced.listed(), self.policy.learned.shown())


def _close_later(client) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # no loop (a script, a unit test): the client never opened a connection
        return
    asyncio_utils.create_task(client.aclose(), name="qwen: close upstream pool", keep_ref=True)

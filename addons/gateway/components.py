"""The one place where the outer packages are named. The wiring builds its tables here — the client
dialects' endpoints by path, which upstream serves each kind of account, the (endpoint, upstream) pairs
that skip the chat form, the local answers that belong to a dialect, and the observers — and hands them to
the core, which knows the outer packages only through these tables (interfaces.py's types).

Adding a client dialect: its endpoints below. Adding a provider: its package's name in `PROVIDER_PACKAGES`, in
provider_list.py (the composition's list, which the commands import without the rest of it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .accounts import Pool
from .api import models as model_list, telemetry
from .api.batches import translation
from .api.batches.bills import BatchBills
from .api.batches.routes import BatchRoutes
from .stores.batches import BatchStore, SharedBatchStore
from .api.completions import COMPLETIONS
from .api.embeddings import EMBEDDINGS
from .api.messages import endpoints as messages, side as claude_side
from .api.messages.errors import FORMAT as ANTHROPIC_FORMAT
from .api.responses import retrieve
from .api.responses.endpoints import compact_endpoint, responses_endpoint
from .api.responses.socket_messages import ResponsesSocket
from .stores.responses import ResponseStore
from .turn.background import BackgroundRuns
from .turn import TurnRunner
from .turn.relay import LoopbackRelay
from .turn.socket import Sockets
from .api.stored_chat import endpoint as stored_chat
from .auth.remote import RemoteLogin
from .cache.diagnosis import Diagnoser
from .cli.admin_server import AdminListener
from .exchange import Exchange
from .settings.config import Config
from .storage.pg import Database
from .ingress.login import LoginRoute
from .local_answers import LocalRoute
from .mitmweb.flowview import FlowAnnotator, FlowCap
from .observe.cache_doctor import CacheDoctor
from .observe.debuglog import DebugLog
from .observe.estimator import TokenEstimator
from .observe.ledger import UsageLedger, row_of
from .observe.metrics import Metrics
from .observe.requestlog import RequestLine
from .observe.tracing import Tracing
from .observer import Observer
from .interfaces import ClientFormat, Endpoint
from .providers import Pairing, Provider, Upstream
from .provider_list import PROVIDERS  # every provider, declared to the core


def endpoints(store: Callable[[], ResponseStore], runs: Callable[[], BackgroundRuns] | None = None,
              sockets: Callable[[], Sockets] | None = None,
              diagnoser: Diagnoser | None = None) -> dict[str, Endpoint[Exchange]]:
    """Client paths (after /v1) -> endpoint. `runs`: where background responses run (none: refused); `sockets`:
    the Responses WebSocket's sessions (none: no upgrade); `diagnoser`: the cache doctor's memory, for the
    clients that ask for cache diagnostics (none: not answered)."""
    responses = responses_endpoint(store, runs, diagnoser)
    if sockets is not None:
        responses = dataclasses.replace(responses, upgrade=lambda flow, ex: sockets().route(flow, ex))
    return {"/chat/completions": stored_chat.chat_endpoint(stored_chat.chats_of(store)),
            "/responses": responses,
            "/responses/compact": compact_endpoint(store), "/completions": COMPLETIONS, "/embeddings": EMBEDDINGS,
            # the sealer signs thinking blocks: with a shared store, its key comes from the database first
            "/messages": dataclasses.replace(messages.messages_endpoint(lambda: store().sealer, diagnoser),
                                             prepare=lambda body, ex: store().ready())}


def sockets(relay: LoopbackRelay, runner: TurnRunner, responses: Endpoint[Exchange],
            store: Callable[[], ResponseStore]) -> Sockets:
    """The gateway's WebSocket (turn/socket.py: served on the relay, each message a turn of `runner`) speaking the
    Responses API's messages (api/responses/socket_messages.py: through its endpoint, with its stored Responses)."""
    return Sockets(relay, runner, ResponsesSocket(responses, store))


def pairing(config: Config) -> Pairing:
    """Which upstream serves each provider's accounts (an account names its provider: Qwen Code logins and keyed
    plans DashScope's compatible mode, web sessions chat.qwen.ai's web API, opt-in with qwen_web_accounts), and
    the pairs each provider carries without the chat form (`Provider.legs`). The wiring builds the pool with
    these providers only (`AccountPool.from_settings(providers=...)`): an account of a provider not listed is
    never acquired, so no account's credential reaches another provider's upstream (never `Pairing.default`)."""
    upstreams = {p.name: p.upstream(config) for p in PROVIDERS}
    legs = {(endpoint, upstreams[p.name].name): leg for p in PROVIDERS for endpoint, leg in p.legs(config).items()}
    return Pairing(default=upstreams[PROVIDERS[0].name], upstreams=upstreams, passthrough=legs)


def batch_provider() -> Provider:
    """The provider whose Files and Batch APIs serve OpenAI's (the first that has them)."""
    return next(p for p in PROVIDERS if p.batch_calls is not None)


def local_routes(store: Callable[[], ResponseStore], reload_accounts: Callable[[], None],
                 runs: Callable[[], BackgroundRuns] | None = None,
                 pool: Callable[[], Pool | None] = lambda: None,
                 build: translation.Build | None = None,
                 bills: BatchBills | None = None,
                 priced_only: Callable[[Exchange], None] = lambda ex: None) -> dict[str, LocalRoute]:
    """Local answers that belong to an outer package: route name (ingress/routing.py) -> answer. `bills`: where a finished
    batch's bill goes (`batch_bills`); `priced_only`: a named key's USD budget's check (the team's)."""
    return {"models": model_list.answer(pool, account_models), "stored_response": retrieve.stored_response(store, runs),
            "input_tokens": retrieve.input_tokens(store), "auth": LoginRoute(reload_accounts, RemoteLogin),
            "count_tokens": messages.count_tokens(lambda: store().sealer), "anthropic_side": claude_side.answer,
            "codex_models": model_list.codex_catalog, "codex_telemetry": telemetry.answer,
            "stored_chat": stored_chat.stored_chat(stored_chat.chats_of(store)),
            "batches": BatchRoutes(batch_calls(pool, priced_only), batch_store,
                                   functools.partial(translation.chat_line, build=build or translation.unbuilt),
                                   batch_answer, bills or batch_bills([], lambda ex: None))}


def batch_bills(observers: list[Observer], tell: Callable[[Exchange], None]) -> BatchBills:
    """A batch's bill: its row written to the usage ledger at once, before the batch is marked billed (the ledger's
    `xid` takes it once: api/batches/bills.py), then `tell` (the observers that count bills)."""
    ledger = next((o for o in observers if isinstance(o, UsageLedger)), None)

    async def write(bill: Exchange) -> None:
        if ledger is not None:
            row = row_of(bill)
            await asyncio.to_thread(lambda: ledger.ledger().add([row]))

    return BatchBills(write, tell)


@functools.cache
def _batch_store(state_dir: Path, url: str) -> BatchStore:
    return SharedBatchStore(Database(url)) if url else BatchStore(state_dir)


def batch_store(config: Config) -> BatchStore:
    """The batches' owners: in the shared database (qwen_state_url), else in the state folder (one store per
    place, opened at first use)."""
    return _batch_store(config.state_dir, config.state_url)


def batch_calls(pool: Callable[[], Pool | None], priced_only: Callable[[Exchange], None]) -> Any:
    made = batch_provider().batch_calls
    assert made is not None
    return made(pool, priced_only)


@functools.cache  # never at import: the options' defaults read the environment (the test fork server's rule)
def _batch_upstream() -> Upstream:
    return batch_provider().upstream(Config())


batch_answer = functools.partial(translation.chat_answer, upstream=_batch_upstream)


def account_models(config: Config, pool: Pool, rows: list[dict]) -> None:
    """Each provider's accounts' own model lists join /v1/models (`Provider.account_models`)."""
    for p in PROVIDERS:
        if p.account_models is not None:
            p.account_models(config, pool, rows)


def client_formats() -> dict[str, ClientFormat[Exchange]]:
    """The dialects whose clients read errors (and answer headers) in a format of their own."""
    return {messages.DIALECT: ANTHROPIC_FORMAT}


def default_observers(diagnoser: Diagnoser | None = None) -> list[Observer]:
    """Every observer, in the order they are called (the cache doctor first: the metrics and the ledger read its
    verdict, the annotator writes it in the comment; the annotator before the cap: the cap adds to its comment).
    `diagnoser`: the cache memory the doctor shares with the clients' diagnostics."""
    return [CacheDoctor(diagnoser), TokenEstimator(), Metrics(), RequestLine(), UsageLedger(), DebugLog(), Tracing(),
            FlowAnnotator(), FlowCap()]


def drift_check(provider: str) -> Callable[..., None] | None:
    """The provider's check of what its upstream says now against what the gateway assumes (`qwen-auth check`)."""
    return next((p.drift for p in PROVIDERS if p.name == provider), None)


def admin_listener(settings: Callable[[], Any]) -> AdminListener:
    """The admin API's listener (qwen_admin_listen): qwen-keys' and qwen-usage's operations over HTTP, on the
    accounts and state `settings()` names."""
    return AdminListener(settings, drift_check)

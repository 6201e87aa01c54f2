"""Every option of the gateway, declared in one place and parsed once in `configure` into a `Config`.

Hooks never read `ctx.options`: they read the frozen `Config` the gateway built when the options last
changed. Secrets are never options (mitmweb serves options at /options): client keys come from
$QWEN_GATEWAY_KEYS or a file, credentials from the account pool.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from mitmproxy import exceptions

from . import network as net
from .auth import AuthSettings
from ..models.model_map import ModelMap, parse_model_map
from ..models.bindings import Bindings, parse_bindings
from ..models.fallbacks import Fallbacks, parse_fallbacks
from ..models.routes import Routes, parse_routes
from .option_specs import listen_address, problem
from .option_table import (  # noqa: F401  (re-exported: the declarations' names, read from config)
    DAY_S, DEFAULT_USER_AGENT, INTERCEPT_HOSTS, KEYS_ENV, MAX_TOKENS, MODEL_LENGTH, PATH_LENGTH, QWEN_CODE_VERSION,
    SPECS, STORED_PER_KEY, YEAR_S, declare)
from ..pricing.prices import PriceTable, builtin as builtin_prices, load as load_prices
from ..storage.pg import check_url, driver_missing


# mitmproxy's own options the network settings are read from (a change re-parses the Config)
NETWORK_OPTIONS = net.OPTIONS
# Single paths of other hosts that belong to an intercepted API's clients: Codex (built-in provider) refreshes
# its model list from its backend, and its key must not go there either. Claimed with api.openai.com.
CODEX_MODELS = ("chatgpt.com", "/backend-api/codex/models")
CLAIMED_PATHS_WITH = {"api.openai.com": (CODEX_MODELS,)}
# Codex's telemetry (OTLP/HTTP to OpenAI's Statsig host): answered by the gateway unless qwen_codex_telemetry=pass.
CODEX_TELEMETRY = tuple(("ab.chatgpt.com", f"/otlp/v1/{signal}") for signal in ("metrics", "traces", "logs"))
TELEMETRY_WITH = {"api.openai.com": CODEX_TELEMETRY}



@dataclass(frozen=True)
class Config:
    intercept_hosts: frozenset[str] = frozenset(INTERCEPT_HOSTS)
    # (host, path) of hosts not intercepted
    claimed_paths: frozenset[tuple[str, str]] = frozenset({CODEX_MODELS, *CODEX_TELEMETRY})
    allowed_hosts: frozenset[str] = frozenset({"localhost", "127.0.0.1", "::1", *INTERCEPT_HOSTS, CODEX_MODELS[0],
                                               CODEX_TELEMETRY[0][0]})
    models: ModelMap = field(default_factory=lambda: ModelMap("coder-model"))
    routes: Routes = field(default_factory=Routes)  # qwen_routes, the defaults after them
    bindings: Bindings = field(default_factory=Bindings)  # qwen_account_bindings
    fallbacks: Fallbacks = field(default_factory=Fallbacks)  # qwen_fallbacks
    auth: AuthSettings = field(default_factory=AuthSettings.from_env)
    user_agent: str = DEFAULT_USER_AGENT
    upstream_timeout: float = 600
    upstream_keepalive: float = 120
    stream_idle_timeout: float = 300
    drain_s: float = 30
    remote_login: str = "off"
    client_keys: tuple[bytes, ...] = ()
    allow_open: bool = False
    key_change_in_flight: str = "end"  # qwen_key_change_in_flight: a revoked key's running turns ended (or finish)
    allow_passthrough: bool = False
    messages_passthrough: bool = False
    responses_native: bool = False
    cache_fixes: str = "off"  # qwen_cache_fixes: turn/cache_fixes.py
    cache_lifetime: str = "off"  # qwen_cache_lifetime: turn/cache_fixes.py, turn/cache_lifetime.py
    web_min_interval: float = 3
    web_pin: str = "off"
    web_pin_ttl: float = 3600
    stored_per_key: int = STORED_PER_KEY  # qwen_stored_per_key
    max_body: int = 32 << 20
    max_head: int = 64 << 10
    head_timeout: float = 60
    websocket_idle_timeout: float = 300
    websocket_read_ahead: int = 256 << 20  # qwen_websocket_read_ahead_mb (turn/socket_budget.py)
    batch_poll: float = 60  # qwen_batch_poll: the gateway's own looks at its unfinished batches (api/batches/watch.py)
    token_count: bool = True
    token_count_exact: bool = False
    metrics: bool = True
    context_limits: dict[str, int] = field(default_factory=dict)
    context_limit_default: int = 0
    otel: str = "auto"
    debug_log: bool = False
    debug_log_count: int = 20
    web_flow_limit: int = 500
    network: net.Network = field(default_factory=net.Network)  # proxy and trusted CAs for the calls to Qwen
    prices: PriceTable = field(default_factory=builtin_prices)
    state_listen_url: str = ""  # where the one LISTEN goes (qwen_state_listen_url; "": qwen_state_url)
    admin_listen: tuple[str, int] | None = None  # qwen_admin_listen: the admin API's host and port (None: off)

    @property
    def state_dir(self) -> Path:
        return self.auth.state_dir

    @property
    def state_url(self) -> str:
        return self.auth.state_url

    def context_limit(self, model: object) -> int:
        return self.context_limits.get(model, self.context_limit_default) if isinstance(model, str) \
            else self.context_limit_default


def normalise_host(host: str) -> str:
    """Host names compare case-insensitively and without the root's trailing dot (`api.openai.com.`)."""
    return host.strip().lower().rstrip(".")


def _listen_url(url: str, state_url: str) -> str:
    if url and not state_url:
        raise ValueError("qwen_state_listen_url goes with qwen_state_url (the pooler it listens beside)")
    if url:
        check_url(url)  # its errors name qwen_state_url's rules, which are the same
    return url


def parse(o) -> Config:
    """Options -> Config; raises OptionsError for any bad value (mitmproxy then refuses to start)."""
    env = os.environ
    # every value checked against its declaration first: one line for each that is refused
    if problems := [line for spec in SPECS.values() if (line := problem(spec, getattr(o, spec.name)))]:
        raise exceptions.OptionsError("\n".join(problems))
    try:
        models = ModelMap(o.qwen_default_model, parse_model_map(o.qwen_model_map))
        routes = parse_routes(o.qwen_routes)
        bindings = parse_bindings(o.qwen_account_bindings)
        fallbacks = parse_fallbacks(o.qwen_fallbacks)
        network = net.from_options(o)
        auth = AuthSettings.from_env(  # paths as they were checked: without the spaces around them
            qwen_dir=Path(o.qwen_dir.strip()).expanduser() if o.qwen_dir.strip() else None,
            state_dir=Path(o.qwen_state_dir.strip()).expanduser() if o.qwen_state_dir.strip() else None,
            oauth_base_url=o.qwen_oauth_base_url or None,
            default_api_base=o.qwen_api_base or None,
            web_accounts=o.qwen_web_accounts,
            web_auth_base_url=o.qwen_web_auth_base_url or None,
            state_url=o.qwen_state_url.strip() or None)
        # the OAuth refresh reaches Qwen the way the engine does: same proxy, same trusted CAs
        auth = replace(auth, proxy=network.proxy_url(auth.oauth_base_url), ca_file=network.ca_file,
                                   ca_dir=network.ca_dir, tls_verify=not network.insecure)
        prices = load_prices(o.qwen_prices_file.strip(), unpriced_as=o.qwen_unpriced_as)
        listen_url = _listen_url(o.qwen_state_listen_url.strip(), auth.state_url)
    except ValueError as e:
        raise exceptions.OptionsError(str(e)) from e
    if auth.state_url and (missing := driver_missing()):
        raise exceptions.OptionsError(missing)
    intercept = frozenset(normalise_host(h) for h in o.qwen_intercept_hosts if h.strip())
    claimed = frozenset(p for h in intercept for p in CLAIMED_PATHS_WITH.get(h, ())
                        + (TELEMETRY_WITH.get(h, ()) if o.qwen_codex_telemetry == "answer" else ()))
    return Config(
        intercept_hosts=intercept,
        claimed_paths=claimed,
        allowed_hosts=frozenset({"localhost", "127.0.0.1", "::1"}) | intercept | {h for h, _ in claimed}
        | {normalise_host(h) for h in o.qwen_allowed_hosts if h.strip()},
        models=models,
        routes=routes,
        bindings=bindings,
        fallbacks=fallbacks,
        messages_passthrough=o.qwen_messages_passthrough,
        responses_native=o.qwen_responses_native,
        cache_fixes=o.qwen_cache_fixes, cache_lifetime=o.qwen_cache_lifetime,
        web_min_interval=o.qwen_web_min_interval,
        web_pin=o.qwen_web_pin,
        web_pin_ttl=o.qwen_web_pin_ttl,
        stored_per_key=o.qwen_stored_per_key,
        auth=auth,
        user_agent=o.qwen_user_agent or env.get("QWEN_USER_AGENT") or DEFAULT_USER_AGENT,
        upstream_timeout=o.qwen_upstream_timeout,
        upstream_keepalive=o.qwen_upstream_keepalive,
        stream_idle_timeout=o.qwen_stream_idle_timeout,
        drain_s=o.qwen_drain_s,
        remote_login=o.qwen_remote_login,
        client_keys=tuple(load_keys(o.qwen_client_keys_file.strip(), env.get(KEYS_ENV))),
        allow_open=o.qwen_allow_open,
        key_change_in_flight=o.qwen_key_change_in_flight,
        allow_passthrough=o.qwen_allow_passthrough,
        max_body=o.qwen_max_body_mb << 20,
        max_head=o.qwen_max_header_kb << 10,
        head_timeout=o.qwen_head_timeout,
        websocket_idle_timeout=o.qwen_websocket_idle_timeout,
        websocket_read_ahead=o.qwen_websocket_read_ahead_mb << 20,
        batch_poll=o.qwen_batch_poll,
        token_count=o.qwen_token_count,
        token_count_exact=o.qwen_token_count_exact,
        metrics=o.qwen_metrics,
        context_limits=parse_limits(o.qwen_context_limits),
        context_limit_default=o.qwen_context_limit_default,
        otel=o.qwen_otel,
        debug_log=o.qwen_debug_log,
        debug_log_count=o.qwen_debug_log_count,
        web_flow_limit=o.qwen_web_flow_limit,
        network=network,
        prices=prices,
        state_listen_url=listen_url,
        admin_listen=listen_address(o.qwen_admin_listen) if o.qwen_admin_listen.strip() else None,
    )


def load_keys(path: str, env_value: str | None) -> list[bytes]:
    keys = [k.strip() for k in (env_value or "").split(",") if k.strip()]
    if path:
        try:
            lines = Path(path).expanduser().read_text().splitlines()
        except OSError as e:
            raise exceptions.OptionsError(f"qwen_client_keys_file: cannot read {path}: {e.strerror}") from e
        keys += [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    return [k.encode() for k in keys]


def parse_limits(entries: Sequence[str]) -> dict[str, int]:
    limits: dict[str, int] = {}
    for item in entries:
        model, sep, n = item.rpartition("=")
        model, n = model.strip(), n.strip()
        if not sep or not model or not n.isdigit() or int(n) <= 0:
            raise exceptions.OptionsError(f"qwen_context_limits: {item!r} is not model=tokens (a positive integer)")
        limits[model] = int(n)
    return limits

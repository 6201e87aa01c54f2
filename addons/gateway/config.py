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
from .auth_settings import AuthSettings
from .model_map import ModelMap, parse_model_map
from .option_specs import OptionSpec, problem
from .prices import PriceTable, builtin as builtin_prices, load as load_prices
from .storage.pg import driver_missing

# Requests on a Qwen OAuth login look like qwen-code's (its protocol); key accounts send the client's own User-Agent.
QWEN_CODE_VERSION = "0.14.5"
DEFAULT_USER_AGENT = f"QwenCode/{QWEN_CODE_VERSION} (linux; x64)"

KEYS_ENV = "QWEN_GATEWAY_KEYS"
# mitmproxy's own options the network settings are read from (a change re-parses the Config)
NETWORK_OPTIONS = net.OPTIONS
# The APIs an unchanged client is redirected from: OpenAI's and Anthropic's (Claude Code).
INTERCEPT_HOSTS = ("api.openai.com", "api.anthropic.com")
# Single paths of other hosts that belong to an intercepted API's clients: Codex (built-in provider) refreshes
# its model list from its backend, and its key must not go there either. Claimed with api.openai.com.
CODEX_MODELS = ("chatgpt.com", "/backend-api/codex/models")
CLAIMED_PATHS_WITH = {"api.openai.com": (CODEX_MODELS,)}
# Codex's telemetry (OTLP/HTTP to OpenAI's Statsig host): answered by the gateway unless qwen_codex_telemetry=pass.
CODEX_TELEMETRY = tuple(("ab.chatgpt.com", f"/otlp/v1/{signal}") for signal in ("metrics", "traces", "logs"))
TELEMETRY_WITH = {"api.openai.com": CODEX_TELEMETRY}


def declare(loader) -> None:
    """All gateway options (mitmproxy's `load`)."""
    for spec in SPECS.values():
        loader.add_option(spec.name, spec.typespec, spec.default, spec.help, spec.choices)


def _declarations() -> dict[str, OptionSpec]:
    """Every option: mitmproxy's declaration, and what its values mean (option_specs.py)."""
    specs: dict[str, OptionSpec] = {}

    def add(name: str, typespec, default, help: str, choices=None, *, minimum=None, kind=None) -> None:  # noqa: A002
        specs[name] = OptionSpec(name, typespec, default, help, choices, minimum, kind)

    # routing and models
    add("qwen_intercept_hosts", Sequence[str], list(INTERCEPT_HOSTS),
        "Hosts whose API calls are answered by Qwen in regular/transparent/local modes "
        "(reverse mode answers everything). Nothing is ever sent to these hosts.", kind="host")
    add("qwen_default_model", str, "coder-model", "Qwen model for OpenAI model names without an explicit mapping.", kind="model")
    add("qwen_model_map", Sequence[str], [], "Extra model mappings, alias=qwen-model (repeat the option for more).", kind="model_map")
    add("qwen_codex_telemetry", str, "answer",
        "Codex's telemetry to OpenAI (OTLP metrics to ab.chatgpt.com, through the explicit proxy): `answer` (the "
        "gateway answers it itself with an empty success; nothing is kept or sent on) or `pass` (it goes to "
        "OpenAI as Codex sent it). Claimed with api.openai.com.", choices=("answer", "pass"))
    add("qwen_messages_passthrough", bool, False,
        "Pass Anthropic Messages requests (Claude Code) through to the Anthropic-compatible base of a key "
        "account's plan (…/apps/anthropic) instead of translating them. Other accounts still translate.")
    # accounts and upstream
    add("qwen_dir", str, "", "Qwen Code's credential folder (default $QWEN_DIR or ~/.qwen).", kind="folder")
    add("qwen_state_dir", str, "", "The gateway's own state folder (default $QWEN_GATEWAY_HOME or ~/.qwen-gateway).", kind="folder")
    add("qwen_state_url", str, "",
        "Shared state on PostgreSQL, postgresql://user@host:port/db (no password in it: libpq reads PGPASSFILE, "
        "~/.pgpass or PGPASSWORD). Account state, refreshed logins, stored responses, the sealing key, web pins "
        "and the usage ledger are then shared by every gateway using that database. Default: SQLite files in "
        "the state folder.", kind="postgresql_url")
    add("qwen_oauth_base_url", str, "", "Qwen OAuth server (default $QWEN_OAUTH_BASE_URL or https://chat.qwen.ai).", kind="url")
    add("qwen_api_base", str, "",
        "API base for OAuth tokens without resource_url (default $QWEN_API_BASE or DashScope's "
        "compatible-mode URL, as qwen-code does).", kind="url")
    add("qwen_web_accounts", bool, False,
        "Use Qwen Chat web accounts (browser sessions imported with `qwen-auth add-web`). Off by default: "
        "automating your Qwen account outside the browser risks anti-bot blocks and a banned account.")
    add("qwen_web_min_interval", int, 3,
        "Seconds at least between two requests sent with one Qwen Chat web account (0: no pacing). Bursts "
        "look like a bot and raise the session's anti-bot risk.", minimum=0)
    add("qwen_web_pin", str, "off",
        "Pinned multi-turn for Qwen Chat web accounts: `off` (a new chat per request, the history flattened) or "
        "`user` (requests with the same OpenAI `user` field continue one chat, sending only the new message).",
        choices=("off", "user"))
    add("qwen_web_pin_ttl", int, 3600, "Seconds a pinned Qwen Chat conversation is kept after its last turn.", minimum=0)
    add("qwen_web_auth_base_url", str, "",
        "Where web sessions are refreshed (default $QWEN_WEB_AUTH_BASE_URL or https://auth.qwen.ai).", kind="url")
    add("qwen_user_agent", str, "", f"User-Agent sent to Qwen OAuth logins' API (default $QWEN_USER_AGENT or {DEFAULT_USER_AGENT}); key accounts send the client's own.", kind="text")
    add("qwen_upstream_timeout", int, 600, "Seconds a request to Qwen may take before its answer starts.", minimum=0)
    add("qwen_upstream_keepalive", int, 120,
        "Seconds an idle pooled connection to Qwen is kept warm for the next request (0: no pooling).", minimum=0)
    add("qwen_stream_idle_timeout", int, 300,
        "Seconds a stream may stay silent before the gateway ends it with an error (0: never). "
        "qwen-code uses 240 s; mitmproxy's own tcp_timeout is 600 s.", minimum=0)
    add("qwen_drain_s", int, 30,
        "Seconds a SIGTERM lets the requests in progress finish (streams, WebSocket turns, background responses) "
        "while new ones are answered 503 with Retry-After and readiness is 503; then, or at a second SIGTERM, "
        "what still runs ends with the client's error and the gateway stops (0: at once).", minimum=0)
    add("qwen_remote_login", str, "off",
        "Serve POST /auth/initiate and /auth/poll (a device login started from another device): off, "
        "loopback (loopback clients only) or on (any client that passed the client-key check).",
        choices=["off", "loopback", "on"])
    # access
    add("qwen_client_keys_file", str, "",
        f"File of client keys (one per line) the gateway requires; also ${KEYS_ENV} (comma-separated). "
        "Keys are never options.", kind="file")
    add("qwen_allow_open", bool, False,
        "Allow listening beyond loopback without client keys (anyone reaching the port spends your Qwen quota).")
    add("qwen_allow_passthrough", bool, False,
        "With client keys set, still relay traffic to hosts the gateway does not answer (explicit proxy). "
        "Off: the proxy is no open relay for whoever holds no key.")
    add("qwen_max_body_mb", int, 32, "Largest request body accepted, in MiB, after decompression (413 above).", minimum=1)
    add("qwen_max_header_kb", int, 64,
        "Largest request head (request line and headers) accepted over HTTP/1, in KiB: above it the client gets "
        "431 and the connection is closed. HTTP/2 header lists are held to 64 KiB by h2 itself.", minimum=1)
    add("qwen_head_timeout", int, 60,
        "Seconds a client connection may go without sending a complete request head: from when it opens (TLS "
        "handshake and CONNECT included) and from the end of its last answer, so an idle keep-alive connection "
        "is closed after this long too (0: never). A stream or WebSocket session in progress is never cut.", minimum=0)
    add("qwen_allowed_hosts", Sequence[str], [],
        "More host names the gateway answers for (Host header, browser Origin) besides localhost, loopback "
        "addresses, the address a client connected to, and qwen_intercept_hosts.", kind="host")
    # observability
    add("qwen_token_count", bool, True,
        "Estimate each prompt's tokens for the request line and ledger (characters / 4; tiktoken where a count "
        "must be exact: the context guard, Anthropic Messages, the count endpoints).")
    add("qwen_token_count_exact", bool, False,
        "Count every prompt with tiktoken (offline, in a thread), not only where a count must be exact: "
        "~25 MB more memory, loaded at start.")
    add("qwen_metrics", bool, True, "Serve Prometheus metrics at GET /metrics on the gateway's listener.")
    add("qwen_context_limits", Sequence[str], [],
        "Prompt token limits per model, model=tokens (the model name the client asks for), e.g. "
        "coder-model=1000000; repeat for more. Over the limit: a local 400 context_length_exceeded.", kind="limits")
    add("qwen_context_limit_default", int, 0, "Prompt token limit for models not in qwen_context_limits (0: no limit).", minimum=0)
    add("qwen_otel", str, "auto",
        "OpenTelemetry traces (OTLP/HTTP JSON): `auto` (on when OTEL_EXPORTER_OTLP_ENDPOINT or "
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set), `on` (also to the default http://localhost:4318), `off`. "
        "Endpoint and headers come only from the standard OTEL_* variables, never from an option.",
        choices=("auto", "on", "off"))
    add("qwen_debug_log", bool, False,
        "Write each exchange (client request, upstream request, upstream response, client response) as a "
        "redacted JSON file under <state_dir>/logs/.")
    add("qwen_debug_log_count", int, 20, "How many exchange files the debug log keeps (newest).", minimum=1)
    add("qwen_web_flow_limit", int, 500, "Finished flows mitmweb keeps (oldest removed first; 0: keep all).", minimum=0)
    # the team gateway (docs/keys.md)
    add("qwen_prices_file", str, "",
        "A JSON file of prices (USD per million tokens, by billing and model) that overrides or extends the "
        "built-in Model Studio price list; costs go to the usage ledger, /metrics and named keys' budgets.", kind="file")

    return specs


SPECS = _declarations()


@dataclass(frozen=True)
class Config:
    intercept_hosts: frozenset[str] = frozenset(INTERCEPT_HOSTS)
    # (host, path) of hosts not intercepted
    claimed_paths: frozenset[tuple[str, str]] = frozenset({CODEX_MODELS, *CODEX_TELEMETRY})
    allowed_hosts: frozenset[str] = frozenset({"localhost", "127.0.0.1", "::1", *INTERCEPT_HOSTS, CODEX_MODELS[0],
                                               CODEX_TELEMETRY[0][0]})
    models: ModelMap = field(default_factory=lambda: ModelMap("coder-model"))
    auth: AuthSettings = field(default_factory=AuthSettings.from_env)
    user_agent: str = DEFAULT_USER_AGENT
    upstream_timeout: float = 600
    upstream_keepalive: float = 120
    stream_idle_timeout: float = 300
    drain_s: float = 30
    remote_login: str = "off"
    client_keys: tuple[bytes, ...] = ()
    allow_open: bool = False
    allow_passthrough: bool = False
    messages_passthrough: bool = False
    web_min_interval: float = 3
    web_pin: str = "off"
    web_pin_ttl: float = 3600
    max_body: int = 32 << 20
    max_head: int = 64 << 10
    head_timeout: float = 60
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


def parse(o) -> Config:
    """Options -> Config; raises OptionsError for any bad value (mitmproxy then refuses to start)."""
    env = os.environ
    # every value checked against its declaration first: one line for each that is refused
    if problems := [line for spec in SPECS.values() if (line := problem(spec, getattr(o, spec.name)))]:
        raise exceptions.OptionsError("\n".join(problems))
    try:
        models = ModelMap(o.qwen_default_model, parse_model_map(o.qwen_model_map))
        network = net.from_options(o)
        auth = AuthSettings.from_env(
            qwen_dir=Path(o.qwen_dir).expanduser() if o.qwen_dir else None,
            state_dir=Path(o.qwen_state_dir).expanduser() if o.qwen_state_dir else None,
            oauth_base_url=o.qwen_oauth_base_url or None,
            default_api_base=o.qwen_api_base or None,
            web_accounts=o.qwen_web_accounts,
            web_auth_base_url=o.qwen_web_auth_base_url or None,
            state_url=o.qwen_state_url.strip() or None)
        # the OAuth refresh reaches Qwen the way the engine does: same proxy, same trusted CAs
        auth = replace(auth, proxy=network.proxy_url(auth.oauth_base_url), ca_file=network.ca_file,
                                   ca_dir=network.ca_dir, tls_verify=not network.insecure)
        prices = load_prices(o.qwen_prices_file.strip())
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
        messages_passthrough=o.qwen_messages_passthrough,
        web_min_interval=o.qwen_web_min_interval,
        web_pin=o.qwen_web_pin,
        web_pin_ttl=o.qwen_web_pin_ttl,
        auth=auth,
        user_agent=o.qwen_user_agent or env.get("QWEN_USER_AGENT") or DEFAULT_USER_AGENT,
        upstream_timeout=o.qwen_upstream_timeout,
        upstream_keepalive=o.qwen_upstream_keepalive,
        stream_idle_timeout=o.qwen_stream_idle_timeout,
        drain_s=o.qwen_drain_s,
        remote_login=o.qwen_remote_login,
        client_keys=tuple(load_keys(o.qwen_client_keys_file, env.get(KEYS_ENV))),
        allow_open=o.qwen_allow_open,
        allow_passthrough=o.qwen_allow_passthrough,
        max_body=o.qwen_max_body_mb << 20,
        max_head=o.qwen_max_header_kb << 10,
        head_timeout=o.qwen_head_timeout,
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

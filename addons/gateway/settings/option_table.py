"""The gateway's options, declared: each one's name, type, default, help and what its values may be (settings/option_specs.py
checks them; settings/config.py parses them once into a `Config`). docs/configuration.md's table is this one (tests/repo/
test_docs.py)."""

from __future__ import annotations

from collections.abc import Sequence

from .option_specs import OptionSpec

STORED_PER_KEY = 10_000  # stores/responses_schema.PER_KEY, the stores' own default (tests/unit/settings)

# Requests on a Qwen OAuth login look like qwen-code's (its protocol); key accounts send the client's own User-Agent.
QWEN_CODE_VERSION = "0.14.5"
DEFAULT_USER_AGENT = f"QwenCode/{QWEN_CODE_VERSION} (linux; x64)"

KEYS_ENV = "QWEN_GATEWAY_KEYS"
# The APIs an unchanged client is redirected from: OpenAI's and Anthropic's (Claude Code).
INTERCEPT_HOSTS = ("api.openai.com", "api.anthropic.com")

# Upper bounds of the options: far above what a real setup uses, and below where a value stops working (huge
# seconds overflow every timer, int -> float; bodies, heads and flows are held in memory; servers refuse long
# header lines). Each option's help says its bound and why.
DAY_S = 86_400  # timeouts, intervals and waits: longer is no limit at all (0 says that where it is allowed)
YEAR_S = 365 * DAY_S
MAX_TOKENS = 10**9  # the largest body (1 GiB) holds a prompt of about 3e8 tokens (4 characters each)
PATH_LENGTH = 4096  # Linux's PATH_MAX
MODEL_LENGTH = 256  # a model name (tens of characters in practice); 512 for an entry of two


def declare(loader) -> None:
    """All gateway options (mitmproxy's `load`)."""
    for spec in SPECS.values():
        loader.add_option(spec.name, spec.typespec, spec.default, spec.help, spec.choices)


def _declarations() -> dict[str, OptionSpec]:
    """Every option: mitmproxy's declaration, and what its values mean (settings/option_specs.py)."""
    specs: dict[str, OptionSpec] = {}

    def add(name: str, typespec, default, help: str, choices=None, *, minimum=None, maximum=None,  # noqa: A002
            max_length=None, kind=None) -> None:
        specs[name] = OptionSpec(name, typespec, default, help, choices, minimum, kind, maximum, max_length)

    # routing and models
    add("qwen_intercept_hosts", Sequence[str], list(INTERCEPT_HOSTS),
        "Hosts whose API calls are answered by Qwen in regular/transparent/local modes "
        "(reverse mode answers everything). Nothing is ever sent to these hosts. DNS names: at most 253 "
        "characters, 63 between dots.", kind="host")
    add("qwen_default_model", str, "coder-model", f"Qwen model for OpenAI model names without an explicit mapping "
        f"(at most {MODEL_LENGTH} characters).", kind="model", max_length=MODEL_LENGTH)
    add("qwen_model_map", Sequence[str], [], f"Extra model mappings, alias=qwen-model (repeat the option for more), "
        f"each at most {2 * MODEL_LENGTH} characters.", kind="model_map", max_length=2 * MODEL_LENGTH)
    add("qwen_routes", Sequence[str], [],
        "Routes by what a request needs, condition[@scope]=target (repeat for more; tried in order, then the "
        "defaults long-context=sibling and images=vision): long-context (the prompt over the mapped model's "
        "window in the catalogue) -> a model or `sibling`; images -> a vision model or `vision` (the account's); "
        "fast (claude haiku, OpenAI mini/nano names) -> a model; `off` stops a condition. Scopes: key:NAME, "
        "dialect:openai|anthropic, agent:PREFIX (User-Agent). E.g. fast=qwen3.6-flash, "
        f"long-context@key:ci=off. Each entry at most {2 * MODEL_LENGTH} characters.",
        kind="routes", max_length=2 * MODEL_LENGTH)
    add("qwen_account_bindings", Sequence[str], [],
        "Which accounts a request may use, WHO=ACCOUNTS (repeat for more; the first that matches decides, a request "
        "none matches may use any): WHO is key:NAME, model:NAME (the model the client asked, or a qwen_fallbacks "
        "model sent instead; a trailing * matches "
        "any ending), dialect:openai|anthropic or agent:PREFIX (User-Agent); ACCOUNTS account names or "
        "provider:NAME, comma-separated. E.g. model:claude-*=provider:selfhosted, key:ci=gpu1,gpu2. Each entry at "
        f"most {4 * MODEL_LENGTH} characters.", kind="routes", max_length=4 * MODEL_LENGTH)
    add("qwen_fallbacks", Sequence[str], [],
        "Fallbacks by model group, MODEL=FALLBACK[,FALLBACK...] (repeat for more): a request the upstream refuses "
        "for its model MODEL (as sent: not found, no access, not served, the prompt over its window) goes to the "
        "group's next model before the client sees the refusal, on any account that serves it (another provider's "
        "too); all refused: the first refusal. A model no group names is never replaced. E.g. "
        f"qwen3-max=qwen4-max,qwen3.6-plus. Each entry at most {4 * MODEL_LENGTH} characters.",
        kind="routes", max_length=4 * MODEL_LENGTH)
    add("qwen_codex_telemetry", str, "answer",
        "Codex's telemetry to OpenAI (OTLP metrics to ab.chatgpt.com, through the explicit proxy): `answer` (the "
        "gateway answers it itself with an empty success; nothing is kept or sent on) or `pass` (it goes to "
        "OpenAI as Codex sent it). Claimed with api.openai.com.", choices=("answer", "pass"))
    add("qwen_messages_passthrough", bool, False,
        "Pass Anthropic Messages requests (Claude Code) through to the Anthropic-compatible base of a key "
        "account's plan (…/apps/anthropic) instead of translating them. Other accounts still translate.")
    add("qwen_cache_fixes", str, "off",
        "Fixes of per-request noise that costs Qwen's prompt cache without meaning anything: `tool-order` sends a "
        "request's tools sorted by name (agents that gather tools from MCP servers list them in the servers' "
        "order, which changes between turns). `off` sends them as the client did. What would change what the "
        "model reads is never rewritten: the cache doctor reports it.", choices=("off", "tool-order"))
    add("qwen_cache_lifetime", str, "off",
        "`auto`: each turn of a conversation on a model with Qwen's 1-hour cache (qwen4) asks the hour where its "
        "expected cost is lower: the hour's premium on what the turn adds against the prompt written again after a "
        "pause over 5 minutes, the chance of such a pause learned from the key's own conversations. A lifetime the "
        "client asked is kept. `off`: 5 minutes unless asked.", choices=("off", "auto"))
    add("qwen_responses_native", bool, False,
        "Send Responses requests of pay-as-you-go key accounts to Model Studio's own Responses API with its "
        "session cache where that pays (stored requests that open a conversation or continue one Qwen holds, on "
        "models with the session cache), chaining by Qwen's previous_response_id. Everything else translates.")
    # accounts and upstream
    add("qwen_dir", str, "", f"Qwen Code's credential folder (default $QWEN_DIR or ~/.qwen; at most {PATH_LENGTH} "
        "characters, Linux's PATH_MAX).", kind="folder", max_length=PATH_LENGTH)
    add("qwen_state_dir", str, "", "The gateway's own state folder (default $QWEN_GATEWAY_HOME or ~/.qwen-gateway; "
        f"at most {PATH_LENGTH} characters, Linux's PATH_MAX).", kind="folder", max_length=PATH_LENGTH)
    add("qwen_state_url", str, "",
        "Shared state on PostgreSQL, postgresql://user@host:port/db (no password in it: libpq reads PGPASSFILE, "
        "~/.pgpass or PGPASSWORD). Account state, refreshed logins, stored responses, the sealing key, web pins "
        "and the usage ledger are then shared by every gateway using that database. Default: SQLite files in "
        "the state folder.", kind="postgresql_url")
    add("qwen_state_listen_url", str, "",
        "Where the one session connection that listens for the other gateways' changes (LISTEN/NOTIFY) goes, "
        "when qwen_state_url is a pooler in transaction mode (PgBouncer), which serves no LISTEN: the database "
        "itself, postgresql://user@host:port/db (no password in it). Default: qwen_state_url.",
        kind="postgresql_url")
    add("qwen_oauth_base_url", str, "", "Qwen OAuth server (default $QWEN_OAUTH_BASE_URL or https://chat.qwen.ai).", kind="url")
    add("qwen_api_base", str, "",
        "API base for OAuth tokens without resource_url (default $QWEN_API_BASE or DashScope's "
        "compatible-mode URL, as qwen-code does).", kind="url")
    add("qwen_web_accounts", bool, False,
        "Use Qwen Chat web accounts (browser sessions imported with `qwen-auth add-web`). Off by default: "
        "automating your Qwen account outside the browser risks anti-bot blocks and a banned account.")
    add("qwen_web_min_interval", int, 3,
        "Seconds at least between two requests sent with one Qwen Chat web account (0: no pacing). Bursts "
        f"look like a bot and raise the session's anti-bot risk. At most {DAY_S} (a day): queued requests would "
        "wait longer than any client does.", minimum=0, maximum=DAY_S)
    add("qwen_web_pin", str, "off",
        "Pinned multi-turn for Qwen Chat web accounts: `off` (a new chat per request, the history flattened) or "
        "`user` (requests with the same OpenAI `user` field continue one chat, sending only the new message).",
        choices=("off", "user"))
    add("qwen_web_pin_ttl", int, 3600, "Seconds a pinned Qwen Chat conversation is kept after its last turn; at "
        f"most {YEAR_S} (a year): longer is for ever, and far beyond it the expiry date overflows.",
        minimum=0, maximum=YEAR_S)
    add("qwen_stored_per_key", int, STORED_PER_KEY,
        "Stored objects each client key (and no key) keeps: its newest stored Responses, and as many stored chat "
        "completions (store: true); storing one more drops that key's oldest, never another key's. None is kept "
        "past 30 days. At most 1000000.", minimum=1, maximum=1_000_000)
    add("qwen_web_auth_base_url", str, "",
        "Where web sessions are refreshed (default $QWEN_WEB_AUTH_BASE_URL or https://auth.qwen.ai).", kind="url")
    add("qwen_user_agent", str, "", f"User-Agent sent to Qwen OAuth logins' API (default $QWEN_USER_AGENT or "
        f"{DEFAULT_USER_AGENT}); key accounts send the client's own. At most 512 printable ASCII characters: it "
        "is sent as two headers on every request, and servers refuse long header lines.", kind="text", max_length=512)
    add("qwen_upstream_timeout", int, 600, "Seconds a request to Qwen may take before its answer starts (0: no "
        f"limit); at most {DAY_S} (a day): longer is no limit, and far beyond it the timer overflows.",
        minimum=0, maximum=DAY_S)
    add("qwen_upstream_keepalive", int, 120,
        "Seconds an idle pooled connection to Qwen is kept warm for the next request (0: no pooling); at most "
        f"{DAY_S} (a day): servers close idle connections long before.", minimum=0, maximum=DAY_S)
    add("qwen_stream_idle_timeout", int, 300,
        "Seconds a stream may stay silent before the gateway ends it with an error (0: never). "
        f"qwen-code uses 240 s; mitmproxy's own tcp_timeout is 600 s. At most {DAY_S} (a day): longer is never, "
        "and far beyond it the timer overflows.", minimum=0, maximum=DAY_S)
    add("qwen_drain_s", int, 30,
        "Seconds a SIGTERM lets the requests in progress finish (streams, WebSocket turns, background responses) "
        "while new ones are answered 503 with Retry-After and readiness is 503; then, or at a second SIGTERM, "
        f"what still runs ends with the client's error and the gateway stops (0: at once). At most {DAY_S} (a "
        "day): whatever stops the gateway (systemd, Docker) gives up long before.", minimum=0, maximum=DAY_S)
    add("qwen_remote_login", str, "off",
        "Serve POST /auth/initiate and /auth/poll (a device login started from another device): off, "
        "loopback (loopback clients only) or on (any client that passed the client-key check).",
        choices=["off", "loopback", "on"])
    # access
    add("qwen_client_keys_file", str, "",
        f"File of client keys (one per line) the gateway requires; also ${KEYS_ENV} (comma-separated). "
        f"Keys are never options. At most {PATH_LENGTH} characters (Linux's PATH_MAX).", kind="file",
        max_length=PATH_LENGTH)
    add("qwen_admin_listen", str, "",
        "Serve the admin API (keys, spend, accounts, learned facts: docs/admin-api.md) on a listener of its own: "
        "PORT (on 127.0.0.1) or HOST:PORT (beyond loopback only when a HOST says so). Each request needs an admin "
        "credential (qwen-keys add-admin NAME), never a client key. Empty: off.", kind="listen", max_length=300)
    add("qwen_key_change_in_flight", str, "end",
        "A named key revoked, rotated or deleted while its requests run (qwen-keys): end ends them at once with the "
        "client's 401 error (a stream's error event); finish lets them finish (new requests are refused either way).",
        choices=("end", "finish"))
    add("qwen_allow_open", bool, False,
        "Allow listening beyond loopback without client keys (anyone reaching the port spends your Qwen quota).")
    add("qwen_allow_passthrough", bool, False,
        "With client keys set, still relay traffic to hosts the gateway does not answer (explicit proxy). "
        "Off: the proxy is no open relay for whoever holds no key.")
    add("qwen_max_body_mb", int, 32, "Largest request body accepted, in MiB, after decompression (413 above), and "
        "largest Responses WebSocket message (refused as it is read, closed with 1009); at "
        "most 1024 (1 GiB): a body is held in memory and parsed whole, which takes several times its size.",
        minimum=1, maximum=1024)
    add("qwen_max_header_kb", int, 64,
        "Largest request head (request line and headers) accepted over HTTP/1, in KiB: above it the client gets "
        "431 and the connection is closed. HTTP/2 header lists are held to 64 KiB by h2 itself. At most 1024 "
        "(1 MiB): each connection's head is held in memory as it arrives, and servers refuse far smaller ones.",
        minimum=1, maximum=1024)
    add("qwen_head_timeout", int, 60,
        "Seconds a client connection may go without sending a complete request head: from when it opens (TLS "
        "handshake and CONNECT included) and from the end of its last answer, so an idle keep-alive connection "
        "is closed after this long too (0: never). A stream or WebSocket session in progress is never cut. At "
        f"most {DAY_S} (a day): longer is never, and far beyond it the timer overflows.", minimum=0, maximum=DAY_S)
    add("qwen_websocket_idle_timeout", int, 300,
        "Seconds a Responses WebSocket may stay idle (no message from its client, no turn in progress) before the "
        "gateway closes it (1000, \"idle\"); a client opens a new one for its next turn (0: never). At most "
        f"{DAY_S} (a day): longer is never, and far beyond it the timer overflows.", minimum=0, maximum=DAY_S)
    add("qwen_websocket_read_ahead_mb", int, 256,
        "MiB of Responses WebSocket messages the gateway holds ahead of their turns' end, all connections together "
        "(each connection: at most twice qwen_max_body_mb of it); a message past it is refused as it is read (an "
        "error event, then close 1013 or 1008). 1 to 16384 (16 GiB): each byte held costs a few more parsed.",
        minimum=1, maximum=16384)
    add("qwen_allowed_hosts", Sequence[str], [],
        "More host names the gateway answers for (Host header, browser Origin) besides localhost, loopback "
        "addresses, the address a client connected to, and qwen_intercept_hosts. DNS names: at most 253 "
        "characters, 63 between dots.", kind="host")
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
        "coder-model=1000000; repeat for more. Over the limit: a local 400 context_length_exceeded. Tokens from 1 "
        f"to {MAX_TOKENS} (a prompt in the largest body has fewer), each entry at most {2 * MODEL_LENGTH} characters.",
        kind="limits", minimum=1, maximum=MAX_TOKENS, max_length=2 * MODEL_LENGTH)
    add("qwen_context_limit_default", int, 0, "Prompt token limit for models not in qwen_context_limits (0: no "
        f"limit); at most {MAX_TOKENS} (a prompt in the largest body has fewer).", minimum=0, maximum=MAX_TOKENS)
    add("qwen_otel", str, "auto",
        "OpenTelemetry traces (OTLP/HTTP JSON): `auto` (on when OTEL_EXPORTER_OTLP_ENDPOINT or "
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set), `on` (also to the default http://localhost:4318), `off`. "
        "Endpoint and headers come only from the standard OTEL_* variables, never from an option.",
        choices=("auto", "on", "off"))
    add("qwen_debug_log", bool, False,
        "Write each exchange (client request, upstream request, upstream response, client response) as a "
        "redacted JSON file under <state_dir>/logs/.")
    add("qwen_debug_log_count", int, 20, "How many exchange files the debug log keeps (newest); at most 10000: "
        "each may hold a whole exchange, and every write sorts the folder.", minimum=1, maximum=10_000)
    add("qwen_web_flow_limit", int, 500, "Finished flows mitmweb keeps (oldest removed first; 0: keep all); at "
        "most 100000: mitmweb holds each in memory, bodies included.", minimum=0, maximum=100_000)
    # the team gateway (docs/keys.md)
    add("qwen_prices_file", str, "",
        "A JSON file of prices (USD per million tokens, by billing and model) that overrides or extends the "
        "built-in Model Studio price list; costs go to the usage ledger, /metrics and named keys' budgets. At most "
        f"{PATH_LENGTH} characters (Linux's PATH_MAX).", kind="file", max_length=PATH_LENGTH)
    add("qwen_unpriced_as", str, "",
        "A priced model whose price counts the requests that have none (on the account's billing, else "
        "pay-as-you-go international); empty: they are unpriced, and refused to a named key with a USD budget. "
        f"At most {MODEL_LENGTH} characters.", kind="optional_model", max_length=MODEL_LENGTH)
    add("qwen_batch_poll", int, 60,
        "Seconds between the gateway's own looks at the batches it holds that Qwen has not finished (or it has not "
        "billed yet): a batch is billed when Qwen completes it, whether or not a client looks. 1 to "
        f"{DAY_S} (a day).", minimum=1, maximum=DAY_S)

    return specs


SPECS = _declarations()

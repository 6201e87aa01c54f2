"""Where credentials live, which servers they talk to, and how often the pool looks again: resolved once
(by settings/config.py from the gateway's options, by the commands from the environment), read by the accounts (auth/).

| Field | Env var | Default |
|---|---|---|
| qwen_dir | QWEN_DIR | ~/.qwen (qwen-code's own folder: oauth_creds.json lives here) |
| state_dir | QWEN_GATEWAY_HOME | ~/.qwen-gateway (accounts.json, state.sqlite3, and the gateway's other files) |
| oauth_base_url | QWEN_OAUTH_BASE_URL | https://chat.qwen.ai |
| default_api_base | QWEN_API_BASE | https://dashscope.aliyuncs.com/compatible-mode/v1 (qwen-code's default for a
  token without resource_url) |
| quota_reset_hour_utc | QWEN_QUOTA_RESET_HOUR_UTC | 0 (when a daily quota comes back; unverified, see pool.py) |
| file_check_s | QWEN_FILE_CHECK_S | 5 (stat a login file at most this often: qwen-code's CACHE_CHECK_INTERVAL_MS) |
| accounts_check_s | QWEN_ACCOUNTS_CHECK_S | 5 (look for new or removed accounts at most this often) |
| refresh_retry_s | QWEN_REFRESH_RETRY_S | 5 (after a failed refresh - network, 5xx - wait this long before the next) |
| refresh_backoff_s | QWEN_REFRESH_BACKOFF_S | 30 (after a refresh, a 401 gets that token: one refresh per window) |
| refresh_wait_s | QWEN_REFRESH_WAIT_S | 1 (wait this long for one account's refresh before serving another) |
| lock_stale_s | QWEN_LOCK_STALE_S | 10 (a refresh lock older than this is broken: qwen-code's LOCK_TIMEOUT_MS) |
| web_accounts | (none: the gateway's option qwen_web_accounts only) | false (Qwen Chat web accounts are handed out
  only when true: opt-in, risky) |
| web_base_url | QWEN_WEB_BASE_URL | https://chat.qwen.ai (the Qwen Chat web API) |
| web_auth_base_url | QWEN_WEB_AUTH_BASE_URL | https://auth.qwen.ai (where a web session is refreshed) |
| proxy, ca_file, ca_dir, tls_verify | (the gateway's network settings) | direct, certifi's roots: the gateway sets
  them so that the OAuth calls go the way its calls to Qwen go (settings/network.py: HTTPS_PROXY, SSL_CERT_FILE, …) |

Keyword overrides that are not None win over the environment.

`state_dir` is THE resolver of the gateway's state folder: every file the gateway keeps for itself goes
under `AuthSettings.state_dir` (or `resolve_state_dir()` where no settings object is at hand).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

DEFAULT_DASHSCOPE_BASE_URL = "https://dashscope.aliyuncs.com/compatible-mode/v1"  # auth/endpoints.py's default too
QWEN_OAUTH_BASE_URL = "https://chat.qwen.ai"
QWEN_WEB_BASE_URL = "https://chat.qwen.ai"
QWEN_WEB_AUTH_BASE_URL = "https://auth.qwen.ai"
QWEN_CLIENT_ID = "f0304373b74a44d2b584a3fb70ca9e56"
DEFAULT_STATE_DIR = "~/.qwen-gateway"

# Interval fields and the environment variables that set them (seconds, >= 0).
INTERVAL_ENV = {
    "file_check_s": "QWEN_FILE_CHECK_S",
    "accounts_check_s": "QWEN_ACCOUNTS_CHECK_S",
    "refresh_retry_s": "QWEN_REFRESH_RETRY_S",
    "refresh_backoff_s": "QWEN_REFRESH_BACKOFF_S",
    "refresh_wait_s": "QWEN_REFRESH_WAIT_S",
    "lock_stale_s": "QWEN_LOCK_STALE_S",
}


def resolve_state_dir(value: str | os.PathLike | None = None) -> Path:
    """The gateway's state folder: `value` (an option) if given, else $QWEN_GATEWAY_HOME, else
    ~/.qwen-gateway. The one rule; AuthSettings.from_env uses it too."""
    return Path(value or os.environ.get("QWEN_GATEWAY_HOME") or DEFAULT_STATE_DIR).expanduser()


@dataclass
class AuthSettings:
    qwen_dir: Path
    state_dir: Path
    oauth_base_url: str
    default_api_base: str
    client_id: str = QWEN_CLIENT_ID
    # qwen-code's LOCK_TIMEOUT_MS: a refresh lock older than this (mtime) is stale and broken.
    lock_stale_s: float = 10.0
    # qwen-code's CACHE_CHECK_INTERVAL_MS: stat the credential file at most this often.
    file_check_s: float = 5.0
    # The pool re-reads accounts.json (and whether qwen-code's login exists) at most this often.
    accounts_check_s: float = 5.0
    # After a refresh failed for a network or server reason, no new attempt before this (no hammering);
    # a 401-driven refresh() still tries at once.
    refresh_retry_s: float = 5.0
    # After a successful refresh, a forced refresh (a 401 from upstream) within this window returns the
    # token just obtained instead of calling the OAuth server again: a 401 storm costs one refresh.
    refresh_backoff_s: float = 30.0
    # acquire() waits this long for an account's refresh (or for another process's lock) before it
    # serves the next usable account; the refresh goes on in the background.
    refresh_wait_s: float = 1.0
    # Hour (UTC) at which a daily quota is assumed to come back. Unverified for Qwen/DashScope.
    quota_reset_hour_utc: int = 0
    # Qwen Chat web accounts (a browser session: auth/web_account.py) are loaded for status always, but
    # handed out only when the user opted in with the gateway's option qwen_web_accounts (no variable: an
    # environment left over from elsewhere must not switch it on).
    web_accounts: bool = False
    web_base_url: str = QWEN_WEB_BASE_URL
    web_auth_base_url: str = QWEN_WEB_AUTH_BASE_URL
    # How the OAuth calls reach the server: a proxy URL (its credentials inside: never shown), the trusted
    # CAs (None: certifi's roots) and whether certificates are verified at all (mitmproxy's ssl_insecure).
    proxy: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    ca_dir: str | None = None
    tls_verify: bool = True
    # Shared state on PostgreSQL (the gateway's option qwen_state_url; storage/pg.py): "" keeps SQLite files
    # under state_dir. Never carries a password (libpq reads PGPASSFILE, ~/.pgpass or PGPASSWORD).
    state_url: str = ""

    def __post_init__(self) -> None:
        self.qwen_dir = Path(self.qwen_dir).expanduser()
        self.state_dir = Path(self.state_dir).expanduser()
        self.oauth_base_url = self.oauth_base_url.rstrip("/")
        self.default_api_base = self.default_api_base.rstrip("/")
        self.web_base_url = self.web_base_url.rstrip("/")
        self.web_auth_base_url = self.web_auth_base_url.rstrip("/")
        if not 0 <= int(self.quota_reset_hour_utc) <= 23:
            raise ValueError(f"quota_reset_hour_utc must be 0-23, not {self.quota_reset_hour_utc!r}")
        for name in INTERVAL_ENV:
            value = float(getattr(self, name))
            if not value >= 0:  # also refuses NaN
                raise ValueError(f"{name} must be a number of seconds >= 0, not {getattr(self, name)!r}")
            setattr(self, name, value)
        if self.state_url:
            from ..storage.pg import check_url

            check_url(self.state_url)  # a StateUrlError (a ValueError) names what is wrong, never the password

    @property
    def default_creds_path(self) -> Path:
        return self.qwen_dir / "oauth_creds.json"

    def creds_path(self, name: str | None) -> Path:
        """qwen-code's file for the default account, `oauth_creds_<name>.json` for an extra one."""
        return self.default_creds_path if name in (None, "default") else self.qwen_dir / f"oauth_creds_{name}.json"

    @property
    def accounts_path(self) -> Path:
        return self.state_dir / "accounts.json"

    @property
    def state_db_path(self) -> Path:
        return self.state_dir / "state.sqlite3"

    def web_session_path(self, name: str) -> Path:
        """A web account's session (token, cookie jar, browser headers): <state dir>/web/<name>.json, 0600."""
        return self.state_dir / "web" / f"{name}.json"

    @classmethod
    def from_env(cls, **overrides) -> "AuthSettings":
        unknown = set(overrides) - {f.name for f in fields(cls)}
        if unknown:
            raise TypeError(f"unknown AuthSettings field(s): {', '.join(sorted(unknown))}")
        env = os.environ
        values: dict = {
            "qwen_dir": Path(env.get("QWEN_DIR") or "~/.qwen").expanduser(),
            "state_dir": resolve_state_dir(),
            "oauth_base_url": env.get("QWEN_OAUTH_BASE_URL") or QWEN_OAUTH_BASE_URL,
            "default_api_base": env.get("QWEN_API_BASE") or DEFAULT_DASHSCOPE_BASE_URL,
        }
        for name, var in (("web_base_url", "QWEN_WEB_BASE_URL"), ("web_auth_base_url", "QWEN_WEB_AUTH_BASE_URL")):
            if env.get(var):
                values[name] = env[var]
        if env.get("QWEN_QUOTA_RESET_HOUR_UTC"):
            values["quota_reset_hour_utc"] = int(env["QWEN_QUOTA_RESET_HOUR_UTC"])
        for name, var in INTERVAL_ENV.items():
            if env.get(var):
                try:
                    values[name] = float(env[var])
                except ValueError:
                    raise ValueError(f"{var} must be a number of seconds, not {env[var]!r}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


"""Where credentials live and which servers they talk to: options and env vars, resolved once.

| Field | Env var | Default |
|---|---|---|
| qwen_dir | QWEN_DIR | ~/.qwen (qwen-code's own folder: oauth_creds.json lives here) |
| state_dir | QWEN_GATEWAY_HOME | ~/.qwen-gateway (accounts.json, state.sqlite3) |
| oauth_base_url | QWEN_OAUTH_BASE_URL | https://chat.qwen.ai |
| default_api_base | QWEN_API_BASE | https://dashscope.aliyuncs.com/compatible-mode/v1 (qwen-code's default for a
  token without resource_url) |
| quota_reset_hour_utc | QWEN_QUOTA_RESET_HOUR_UTC | 0 (when a daily quota comes back; unverified, see pool.py) |

Keyword overrides that are not None win over the environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .endpoints import DEFAULT_DASHSCOPE_BASE_URL

QWEN_OAUTH_BASE_URL = "https://chat.qwen.ai"
QWEN_CLIENT_ID = "f0304373b74a44d2b584a3fb70ca9e56"


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
    # Hour (UTC) at which a daily quota is assumed to come back. Unverified for Qwen/DashScope.
    quota_reset_hour_utc: int = 0

    def __post_init__(self) -> None:
        self.qwen_dir = Path(self.qwen_dir).expanduser()
        self.state_dir = Path(self.state_dir).expanduser()
        self.oauth_base_url = self.oauth_base_url.rstrip("/")
        self.default_api_base = self.default_api_base.rstrip("/")
        if not 0 <= int(self.quota_reset_hour_utc) <= 23:
            raise ValueError(f"quota_reset_hour_utc must be 0-23, not {self.quota_reset_hour_utc!r}")

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

    @classmethod
    def from_env(cls, **overrides) -> "AuthSettings":
        env = os.environ
        values: dict = {
            "qwen_dir": Path(env.get("QWEN_DIR") or "~/.qwen").expanduser(),
            "state_dir": Path(env.get("QWEN_GATEWAY_HOME") or "~/.qwen-gateway").expanduser(),
            "oauth_base_url": env.get("QWEN_OAUTH_BASE_URL") or QWEN_OAUTH_BASE_URL,
            "default_api_base": env.get("QWEN_API_BASE") or DEFAULT_DASHSCOPE_BASE_URL,
        }
        if env.get("QWEN_QUOTA_RESET_HOUR_UTC"):
            values["quota_reset_hour_utc"] = int(env["QWEN_QUOTA_RESET_HOUR_UTC"])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

"""Where credentials live and which servers they talk to: options and env vars, resolved once."""

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

    @classmethod
    def from_env(cls, **overrides) -> "AuthSettings":
        env = os.environ
        values = {
            "qwen_dir": Path(env.get("QWEN_DIR") or "~/.qwen").expanduser(),
            "state_dir": Path(env.get("QWEN_GATEWAY_HOME") or "~/.qwen-gateway").expanduser(),
            "oauth_base_url": env.get("QWEN_OAUTH_BASE_URL") or QWEN_OAUTH_BASE_URL,
            "default_api_base": env.get("QWEN_API_BASE") or DEFAULT_DASHSCOPE_BASE_URL,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

"""The systemd user unit `qwen-gateway install-service` writes (cli/service.py): its text, the words of its
ExecStart quoted for systemd, its stop timeout after the drain, and the environment file's template."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

SETTINGS = ("QWEN_DIR", "QWEN_GATEWAY_HOME", "QWEN_OAUTH_BASE_URL", "QWEN_API_BASE", "QWEN_USER_AGENT",
            "QWEN_QUOTA_RESET_HOUR_UTC", "QWEN_FILE_CHECK_S", "QWEN_ACCOUNTS_CHECK_S", "QWEN_REFRESH_RETRY_S",
            "QWEN_REFRESH_BACKOFF_S", "QWEN_REFRESH_WAIT_S", "QWEN_LOCK_STALE_S", "TIKTOKEN_CACHE_DIR")
CLIENT_KEYS_ENV = "QWEN_GATEWAY_KEYS"
STOP_MARGIN_S = 30  # beyond the drain: answers cut at its end, the ledger's and the database's last writes


def systemd_quote(word: str) -> str:
    """One ExecStart word: `%` and `$` are systemd's specifier and variable signs; spaces, quotes and
    backslashes need double quotes."""
    word = word.replace("%", "%%").replace("$", "$$")
    if word and not any(c in word for c in " \t\"'\\;"):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _env_value(value: str) -> str:
    """An Environment= assignment, quoted whole for systemd."""
    return value.replace("%", "%%").replace("\\", "\\\\").replace('"', '\\"')


def drain_seconds(args: list[str]) -> int:
    """qwen_drain_s as the unit's ARGS set it (`--set qwen_drain_s=N`), else its default."""
    from ..settings.config import SPECS

    value = SPECS["qwen_drain_s"].default
    for i, a in enumerate(args):
        word = args[i + 1] if a == "--set" and i + 1 < len(args) else a.removeprefix("--set=") if a.startswith("--set=") else ""
        name, _, n = word.partition("=")
        if name == "qwen_drain_s" and n.strip().isdigit():
            value = int(n)
    return value


def service_command() -> list[str]:
    here = Path(sys.executable).parent / "qwen-gateway"
    return [str(here)] if here.exists() else [sys.executable, "-m", "qwen_gateway.cli.service"]


def unit_text(args: list[str], env_file: Path, environ: Mapping[str, str] | None = None) -> str:
    env: Mapping[str, str] = os.environ if environ is None else environ
    lines = [
        "# Written by `qwen-gateway install-service`; written again by each install.",
        "[Unit]",
        "Description=Qwen gateway: OpenAI API calls answered by Qwen (mitmproxy)",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=exec",
        "# Each log line reaches the journal when it is written (Python buffers output to a pipe).",
        'Environment="PYTHONUNBUFFERED=1"',
    ]
    for name in SETTINGS:
        if env.get(name):
            lines.append(f'Environment="{name}={_env_value(env[name])}"')
    lines += [
        f"# Keys: the variables of your key accounts and {CLIENT_KEYS_ENV}, one VAR=value a line (mode 0600).",
        f"EnvironmentFile={systemd_quote(str(env_file))}",
        "ExecStart=" + " ".join(systemd_quote(w) for w in [*service_command(), *args]),
        "Restart=on-failure",
        "RestartSec=5",
        "# SIGTERM drains: answers in progress finish within qwen_drain_s, then the last writes; SIGKILL only after.",
        f"TimeoutStopSec={drain_seconds(args) + STOP_MARGIN_S}",
        "# Each client connection takes a file descriptor; systemd's default soft limit is 1,024 (the gateway",
        "# also raises its soft limit to the hard one at start). Set as close as the user manager allows.",
        "LimitNOFILE=65536",
        "",
        "[Install]",
        "WantedBy=default.target",
        "",
    ]
    return "\n".join(lines)


def key_variables() -> list[str]:
    """The environment variables the registered key accounts read their keys from (names only)."""
    try:
        from ..auth.registry import Registry
        from ..settings.auth import AuthSettings
        data = Registry(AuthSettings.from_env()).load()
    except Exception:
        return []
    names = [s.get("key_env") for s in data.get("accounts", []) if isinstance(s, dict)]
    return sorted({n for n in names if isinstance(n, str) and n})


def env_template(variables: list[str]) -> str:
    lines = ["# Environment of the qwen-gateway service (read by systemd: VAR=value, one a line; no `export`).",
             "# Keep this file private (mode 0600): it holds keys.", ""]
    if variables:
        lines.append("# The variables your key accounts read their keys from (qwen-auth add-key --key-env):")
        lines += [f"#{v}=" for v in variables]
    else:
        lines.append("# The variables your key accounts read their keys from, e.g.:")
        lines.append("#DASHSCOPE_API_KEY=")
    lines += ["", "# Client keys the gateway requires (comma-separated), if you set any:",
              f"#{CLIENT_KEYS_ENV}=", ""]
    return "\n".join(lines)

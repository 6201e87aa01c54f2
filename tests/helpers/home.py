"""A gateway's home for an e2e test: its accounts, the secrets they read from the environment, its state folder with
`accounts.json` (written as the product writes it) and the env the gateway is started with. The one place a test
spells the registry's shape: a change of that shape is a change here.

    home = Home(tmp_path, emu)             # HOME=tmp_path, QWEN_DIR=tmp_path/.qwen, state folder tmp_path/state
    key = home.key("emu", default_model="qwen3-coder-plus")  # a new key the emulator knows, in $EMU_KEY
    home.key("cp", path=CODING_PLAN, key_env="CP_KEY")     # the Coding Plan's path, not pay-as-you-go's
    home.selfhosted("gpu", server.url + "/v1", secret=KEY)  # provider "selfhosted", its key as given
    gw = make_gateway(env=home.env(), args=(...))          # accounts.json written, then the gateway's env

`key` and `selfhosted` pass any other account field through (`embeddings=True`, `group=...`); `account(*specs)`
adds accounts as they stand (an OAuth or web one, another home's). `env(**extra)` adds variables
(`QWEN_OAUTH_BASE_URL=emu.url`, or a QWEN_GATEWAY_HOME the state folder is copied to); `write()` writes
accounts.json alone, for a gateway that brings its own env. A test that changes an existing accounts.json reads it
with `accounts_in(state)` and writes it back with `change_accounts(state, change)`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

ACCOUNTS = "accounts.json"
# The emulator's DashScope paths: pay-as-you-go's OpenAI-compatible base, and the Coding Plan's (`/v1`), where the
# emulator plays the plan's refusals.
PAYG = "/compatible-mode/v1"
CODING_PLAN = "/v1"


class Home:
    def __init__(self, root: Path, emu=None, *, state: Path | None = None, qwen_dir: Path | None = None) -> None:
        self.root = Path(root)
        self.emu = emu  # seeds a key when `key` is given no secret
        self.state = Path(state) if state is not None else self.root / "state"
        self.qwen_dir = Path(qwen_dir) if qwen_dir is not None else self.root / ".qwen"
        self.accounts: list[dict] = []
        self.secrets: dict[str, str] = {}  # variable -> secret, as the gateway's env carries them

    def key(self, name: str, *, path: str = PAYG, base_url: str | None = None, key_env: str | None = None,
            secret: str | None = None, **fields) -> str:
        """A key account on the emulator's `path` (or at `base_url`), reading its key from `key_env` (default
        `<NAME>_KEY`): the key `secret`, else a new one the emulator accepts. Returns the key."""
        if base_url is None:
            assert self.emu is not None, "a key account on the emulator needs Home(..., emu)"
            base_url = self.emu.url + path
        if secret is None:
            assert self.emu is not None, "a key account without a secret needs Home(..., emu) to seed one"
            secret = self.emu.seed_token(kind="key")
        key_env = key_env or re.sub(r"\W", "_", name).upper() + "_KEY"
        self.account({"name": name, "kind": "key", "base_url": base_url, "key_env": key_env, **fields})
        self.secrets[key_env] = secret
        return secret

    def selfhosted(self, name: str, base_url: str, *, secret: str, key_env: str | None = None, **fields) -> str:
        """A key account on a self-hosted OpenAI-compatible server (vLLM, SGLang) at `base_url`."""
        return self.key(name, base_url=base_url, key_env=key_env, secret=secret, provider="selfhosted", **fields)

    def account(self, *specs: dict) -> Home:
        """Accounts as given (an OAuth or web one, those of another home); their secrets, if any, are the caller's."""
        self.accounts.extend(dict(s) for s in specs)
        return self

    def write(self, **top) -> Path:
        """accounts.json in the state folder (made 0700 if missing), atomically and 0600 as the product writes it;
        `top`: the registry's fields beside the list (e.g. detach_default=True). Returns the file."""
        _write(self.state, {**top, "accounts": self.accounts})
        return self.state / ACCOUNTS

    def env(self, **extra: str) -> dict[str, str]:
        """The state folder made, accounts.json written (when there are accounts), and the gateway's env: its
        folders, every account's secret, then `extra`."""
        self.state.mkdir(parents=True, exist_ok=True)
        if self.accounts:
            self.write()
        return {"QWEN_DIR": str(self.qwen_dir), "QWEN_GATEWAY_HOME": str(self.state), "HOME": str(self.root),
                **self.secrets, **extra}


def accounts_in(state: Path) -> list[dict]:
    """The accounts a state folder's accounts.json lists."""
    return json.loads((Path(state) / ACCOUNTS).read_text())["accounts"]


def change_accounts(state: Path, change: Callable[[list[dict]], list[dict]]) -> list[dict]:
    """accounts.json in `state` rewritten with `change(accounts)` (its other fields kept); returns the new list."""
    data = json.loads((Path(state) / ACCOUNTS).read_text())
    data["accounts"] = change(list(data["accounts"]))
    _write(Path(state), data)
    return data["accounts"]


def _write(folder: Path, data: dict) -> None:
    # Through the registry's own save: the file the gateway reads is the one `qwen-auth` would have written. Imported
    # here: conftest.py and the namespace's script import this module, which then costs nothing until used.
    from qwen_gateway.auth.registry import Registry
    from qwen_gateway.settings.auth import AuthSettings

    unreachable = "http://127.0.0.1:9"
    Registry(AuthSettings(qwen_dir=folder / ".qwen", state_dir=folder, oauth_base_url=unreachable,
                          default_api_base=unreachable + "/v1")).save(data)

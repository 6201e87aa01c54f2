"""tests/helpers/home.py, the e2e tests' builder of a gateway's home: what it writes is what the product reads."""

from __future__ import annotations

import json
import stat

import pytest

from helpers.home import CODING_PLAN, Home, accounts_in, change_accounts
from qwen_gateway.auth.registry import Registry
from qwen_gateway.settings.auth import AuthSettings


class FakeEmulator:
    url = "http://127.0.0.1:9"

    def __init__(self) -> None:
        self.seeded: list[str] = []

    def seed_token(self, *, kind: str) -> str:
        assert kind == "key"
        self.seeded.append(f"sk-{len(self.seeded)}")
        return self.seeded[-1]


def registry(state) -> Registry:
    return Registry(AuthSettings(qwen_dir=state / ".qwen", state_dir=state, oauth_base_url="http://127.0.0.1:9",
                                 default_api_base="http://127.0.0.1:9/v1"))


def test_a_home_of_key_and_selfhosted_accounts_is_what_the_registry_reads(tmp_path):
    emu = FakeEmulator()
    home = Home(tmp_path, emu)
    first = home.key("emu", default_model="qwen3-coder-plus")
    second = home.key("cp", path=CODING_PLAN, key_env="CP_KEY", embeddings=True)
    home.selfhosted("gpu", "http://127.0.0.1:8/v1", secret="sk-gpu")
    env = home.env(QWEN_OAUTH_BASE_URL="http://127.0.0.1:7")

    assert (first, second) == ("sk-0", "sk-1") and emu.seeded == [first, second]
    assert env == {"QWEN_DIR": str(tmp_path / ".qwen"), "QWEN_GATEWAY_HOME": str(tmp_path / "state"),
                   "HOME": str(tmp_path), "EMU_KEY": "sk-0", "CP_KEY": "sk-1", "GPU_KEY": "sk-gpu",
                   "QWEN_OAUTH_BASE_URL": "http://127.0.0.1:7"}
    data = registry(tmp_path / "state").load()
    assert data == {"version": 1, "accounts": [
        {"name": "emu", "kind": "key", "base_url": "http://127.0.0.1:9/compatible-mode/v1", "key_env": "EMU_KEY",
         "default_model": "qwen3-coder-plus"},
        {"name": "cp", "kind": "key", "base_url": "http://127.0.0.1:9/v1", "key_env": "CP_KEY", "embeddings": True},
        {"name": "gpu", "kind": "key", "base_url": "http://127.0.0.1:8/v1", "key_env": "GPU_KEY",
         "provider": "selfhosted"}]}
    assert stat.S_IMODE((tmp_path / "state" / "accounts.json").stat().st_mode) == 0o600
    assert not list((tmp_path / "state").glob("*.tmp.*"))  # written atomically: no temporary file left


def test_an_empty_home_makes_its_state_folder_and_writes_no_list(tmp_path):
    env = Home(tmp_path, state=tmp_path / "elsewhere").env()
    assert env["QWEN_GATEWAY_HOME"] == str(tmp_path / "elsewhere")
    assert (tmp_path / "elsewhere").is_dir() and not (tmp_path / "elsewhere" / "accounts.json").exists()


def test_written_alone_and_changed_in_place(tmp_path):
    home = Home(tmp_path, state=tmp_path / "staging")
    home.account({"name": "work", "kind": "oauth"}, {"name": "chat", "kind": "web"})
    home.key("k", base_url="http://127.0.0.1:9/v1", secret="sk-k")
    path = home.write(detach_default=True)
    assert path == tmp_path / "staging" / "accounts.json"

    changed = change_accounts(tmp_path / "staging", lambda accounts: [*accounts, {**accounts[2], "name": "k2"}])
    assert [a["name"] for a in changed] == ["work", "chat", "k", "k2"] == [a["name"] for a in accounts_in(path.parent)]
    assert json.loads(path.read_text())["detach_default"] is True  # the list's neighbours kept


def test_a_key_on_the_emulator_needs_the_emulator(tmp_path):
    with pytest.raises(AssertionError, match="needs Home"):
        Home(tmp_path).key("emu")

"""accounts.json: entries that cannot work, logins saved, nothing replaced silently."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from qwen_gateway.auth.credfile import (LOGIN_ORDER)
from qwen_gateway.auth.key_account import BrokenAccount, KeyAccount
from qwen_gateway.auth.registry import AccountExists, Registry, save_login


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_registry_entries_that_cannot_work_are_shown_not_used(settings, state):
    Registry(settings).save({"accounts": [
        {"name": "ok", "kind": "key", "base_url": "http://x/v1", "key": "sk-stored"},
        {"name": "nourl", "kind": "key", "key_env": "X"},
        {"name": "../evil", "kind": "oauth"},
        {"name": "odd", "kind": "carrier-pigeon"},
        "garbage",
    ]})
    assert mode(settings.accounts_path) == 0o600
    accts = Registry(settings).accounts(state)
    assert [type(a) for a in accts] == [KeyAccount, BrokenAccount, BrokenAccount, BrokenAccount]
    assert all(a.status()["state"] == "error" for a in accts[1:])


def test_save_login_registers_extra_accounts_and_reattaches_default(settings):
    reg = Registry(settings)
    reg.save({"detach_default": True, "accounts": []})
    path, creds = save_login(settings, None, {"access_token": "a", "refresh_token": "r", "token_type": "Bearer",
                                              "expires_in": 60, "resource_url": "h"})
    assert path == settings.default_creds_path and "detach_default" not in reg.load()
    assert list(json.loads(path.read_text())) == list(LOGIN_ORDER)
    save_login(settings, "work", {"access_token": "b", "refresh_token": "r2", "expires_in": 60})
    assert reg.find(reg.load(), "work") == {"name": "work", "kind": "oauth"}
    assert mode(settings.creds_path("work")) == 0o600
    reg.put({"name": "k", "kind": "key", "base_url": "http://x/v1", "key_env": "K"})
    with pytest.raises(ValueError, match="already exists"):
        save_login(settings, "k", {"access_token": "c"})
    assert not settings.creds_path("k").exists()


def test_registry_never_replaces_silently(settings):
    reg = Registry(settings)
    reg.put({"name": "k", "kind": "key", "base_url": "http://x/v1", "key": "sk-stored"})
    before = settings.accounts_path.read_bytes()
    with pytest.raises(AccountExists):
        reg.put({"name": "k", "kind": "key", "base_url": "http://y/v1", "key_env": "K"})
    assert settings.accounts_path.read_bytes() == before
    old = reg.put({"name": "k", "kind": "key", "base_url": "http://y/v1", "key_env": "K"}, replace=True)
    assert old["key"] == "sk-stored" and reg.find(reg.load(), "k")["base_url"] == "http://y/v1"

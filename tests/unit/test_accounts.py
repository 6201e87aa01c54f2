"""The credential boundary (accounts.py): what a credential shows of itself, the outcomes and windows by their
string values (state files and logs hold those), the errors the pool raises."""

from __future__ import annotations

import dataclasses
from types import MappingProxyType

import pytest

from qwen_gateway.accounts import (KEY, OAUTH, WEB, AccountUnavailable, Credential, Kind, NotCapable, Outcome,
                                   Window)


def test_a_credential_never_shows_its_secrets():
    cred = Credential("web1", WEB, "https://chat.qwen.ai/api", "tok-secret", model_map={"gpt-4o": "qwen3-max"},
                      cookies={"token": "cookie-secret"}, headers={"bx-ua": "header-secret"})
    text = repr(cred)
    assert "web1" in text and "https://chat.qwen.ai/api" in text
    for secret in ("tok-secret", "cookie-secret", "header-secret", "qwen3-max"):
        assert secret not in text


def test_a_credential_is_immutable_with_empty_read_only_maps_by_default():
    cred = Credential("a", KEY, "http://x/v1", "t")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cred.token = "other"  # type: ignore[misc]
    assert isinstance(cred.model_map, MappingProxyType) and dict(cred.model_map) == {}
    assert (cred.default_model, cred.embeddings, cred.billing) == (None, False, "")


def test_kinds_outcomes_and_windows_are_their_string_values():
    assert (OAUTH, KEY, WEB) == ("oauth", "key", "web") and Kind("key") is KEY
    assert Outcome("throttle") is Outcome.THROTTLE and f"{Outcome.QUOTA}" == "quota"
    assert Window("5h") is Window.FIVE_HOURS and Window("tpm") is Window.TPM
    with pytest.raises(ValueError):
        Outcome("bogus")


def test_an_unavailable_account_says_what_can_change_it():
    e = AccountUnavailable("a: cooling down", retry_at=100.0, throttled=True)
    assert str(e) == "a: cooling down" and (e.needs_login, e.retry_at, e.throttled, e.transient) == (
        False, 100.0, True, False)
    missing = NotCapable("no account serves embeddings")
    assert isinstance(missing, AccountUnavailable) and missing.retry_at is None and not missing.transient

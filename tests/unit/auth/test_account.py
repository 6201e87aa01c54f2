"""What every kind of account is to the pool (auth/account.py): the defaults a kind need not override."""

from __future__ import annotations

import pytest

from qwen_gateway.accounts import KEY, Credential
from qwen_gateway.auth.account import Account


class Minimal(Account):
    name, kind = "m", KEY

    async def credential(self, *, force_refresh: bool = False, refused: str | None = None) -> Credential:
        return Credential(self.name, self.kind, "http://x/v1", "t")

    def status(self) -> dict:
        return {"name": self.name, "kind": self.kind, "state": "ok"}


def test_an_account_must_say_how_to_get_a_credential_and_its_status():
    class NoStatus(Account):
        async def credential(self, *, force_refresh: bool = False, refused: str | None = None) -> Credential:
            raise NotImplementedError

    with pytest.raises(TypeError, match="status"):
        NoStatus()  # type: ignore[abstract]


async def test_by_default_a_credential_is_awaited_never_refreshing_and_punish_pages_are_ignored():
    acct = Minimal()
    assert acct.ready() is None  # the pool then awaits credential()
    assert not acct.refreshing
    assert acct.record_punish("anti-bot page") is None and acct.status()["state"] == "ok"
    assert (await acct.credential()).token == "t"

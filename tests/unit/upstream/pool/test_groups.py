"""Key groups (upstream/pool/groups.py): the keys of one Alibaba Cloud account share its rate limits and quotas, so what
cools one cools its siblings, each saying through which key (docs/accounts.md, `--group`)."""

from __future__ import annotations


from qwen_gateway.accounts import KEY, Credential
from qwen_gateway.auth.account import Account
from qwen_gateway.upstream.pool.groups import cool, group_map, siblings


class Named(Account):
    kind = KEY

    def __init__(self, name: str, group: str | None = None) -> None:
        self.name, self.group = name, group

    async def credential(self, *, force_refresh=False, refused=None) -> Credential:
        raise AssertionError("not asked here")

    def status(self) -> dict:
        return {"name": self.name}


class Ungroupable(Account):
    """An account kind without a `group` attribute at all (OAuth logins, web sessions)."""

    kind = KEY

    def __init__(self, name: str) -> None:
        self.name = name

    async def credential(self, *, force_refresh=False, refused=None) -> Credential:
        raise AssertionError("not asked here")

    def status(self) -> dict:
        return {"name": self.name}


def test_each_account_maps_to_its_whole_group_in_the_order_given():
    groups = group_map([Named("a1", "acme"), Named("solo"), Named("a2", "acme"), Ungroupable("oauth"),
                        Named("b1", "beta")])
    assert groups == {"a1": ("a1", "a2"), "a2": ("a1", "a2"), "solo": ("solo",), "oauth": ("oauth",),
                      "b1": ("b1",)}


def test_an_account_named_like_a_group_is_not_in_it():
    """Ungrouped accounts are keyed apart from group names: an account called "acme" is not in group acme."""
    groups = group_map([Named("acme"), Named("k1", "acme"), Named("k2", "")])
    assert groups == {"acme": ("acme",), "k1": ("k1",), "k2": ("k2",)}  # "" is no group


def test_siblings_of_an_unknown_account_are_itself():
    groups = group_map([Named("a1", "acme"), Named("a2", "acme")])
    assert siblings(groups, "a2") == ("a1", "a2")
    assert siblings(groups, "added-later") == ("added-later",)
    assert siblings({}, "x") == ("x",)


def test_cooling_one_key_cools_its_group_and_says_through_which_key(state):
    groups = group_map([Named("a1", "acme"), Named("a2", "acme"), Named("other")])
    cool(state, groups, "a2", 1_900_000_000.0, "rate limited")
    assert state.get("a2")["cooldown_until"] == 1_900_000_000.0
    assert state.get("a2")["last_error"] == "rate limited"
    assert state.get("a1")["cooldown_until"] == 1_900_000_000.0
    assert state.get("a1")["last_error"] == ("rate limited; through a2, a key of the same Alibaba Cloud account "
                                             "(group)")
    assert not state.get("other")["cooldown_until"] and state.get("other")["last_error"] is None


def test_cooling_an_ungrouped_account_touches_no_other(state):
    groups = group_map([Named("solo"), Named("x1", "x")])
    cool(state, groups, "solo", 1_900_000_100.0, "quota exhausted")
    assert (state.get("solo")["cooldown_until"], state.get("solo")["last_error"]) == (1_900_000_100.0,
                                                                                      "quota exhausted")
    assert not state.get("x1")["cooldown_until"]

"""provider_registry.py: what the core knows of the providers, as the composition declares them (components.PROVIDERS)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from qwen_gateway import provider_registry as registry
from qwen_gateway.accounts import KEY, OAUTH, WEB, Credential
from qwen_gateway.components import PROVIDERS


@dataclass(frozen=True)
class Record:
    name: str
    kinds: frozenset[str] = frozenset()
    catalogued: bool = False
    plans: registry.KeyPlans | None = None


@pytest.fixture
def empty(monkeypatch):
    """A registry nothing was declared to (the composition's declarations put back afterwards)."""
    monkeypatch.setattr(registry, "_DECLARED", {})
    monkeypatch.setattr(registry, "_OF_KIND", {})


def test_the_compositions_providers_are_declared():
    assert [p.name for p in PROVIDERS] == ["dashscope", "qwenweb", "selfhosted"]  # accounts.json's `provider` values
    assert (registry.of_kind(OAUTH), registry.of_kind(KEY), registry.of_kind(WEB)) == ("dashscope", "dashscope",
                                                                                        "qwenweb")
    assert [registry.catalogued(p.name) for p in PROVIDERS] == [True, True, False]
    assert registry.plans("dashscope") is PROVIDERS[0].plans and registry.plans("selfhosted") is None
    assert Credential("a", KEY, "http://h/v1", "t").provider == "dashscope"  # unnamed: its kind's
    assert Credential("a", KEY, "http://h/v1", "t", provider="selfhosted").provider == "selfhosted"


def test_a_kind_is_the_first_claimers_and_an_unknown_one_nobodys(empty):
    registry.declare([Record("a", frozenset({KEY}), catalogued=True), Record("b", frozenset({KEY, WEB}))])
    assert registry.of_kind(KEY) == "a" and registry.of_kind(WEB) == "b" and registry.of_kind("other") == ""
    assert registry.catalogued("a") and not registry.catalogued("b") and not registry.catalogued("unknown")
    assert registry.plans("unknown") is None


def test_nothing_declared_is_said_rather_than_guessed(empty):
    with pytest.raises(LookupError, match="qwen_gateway.components"):
        registry.of_kind(KEY)
    with pytest.raises(LookupError):
        Credential("a", KEY, "http://h/v1", "t")
    assert Credential("a", KEY, "http://h/v1", "t", provider="named").provider == "named"  # a named one needs none

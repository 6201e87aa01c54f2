"""provider_registry.py: what the core knows of the providers, as the composition declares them (provider_list.PROVIDERS)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import pytest

from qwen_gateway import provider_registry as registry
from qwen_gateway.accounts import KEY, OAUTH, WEB, Credential
from qwen_gateway.provider_list import PROVIDERS


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


def test_asked_before_anything_declared_them_the_registry_reads_the_compositions_list(empty, monkeypatch):
    monkeypatch.delitem(sys.modules, "qwen_gateway.provider_list")
    assert Credential("a", KEY, "http://h/v1", "t").provider == "dashscope"
    assert registry.catalogued("qwenweb") and registry.plans("selfhosted") is None


def test_a_command_building_accounts_needs_the_providers_not_the_gateway():
    """`qwen-auth add-key`, a script refreshing a login: a credential's provider is its kind's without importing
    the gateway's whole composition (mitmproxy's proxy, every dialect: ~1.3 s), as `of_kind` once required."""
    code = ("import sys; from qwen_gateway.accounts import KEY, Credential; "
            "print(Credential('a', KEY, 'http://h/v1', 't').provider, "
            "sorted(m for m in sys.modules if m in ('qwen_gateway.components', 'mitmproxy.proxy.server')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split(maxsplit=1) == ["dashscope", "[]\n"]

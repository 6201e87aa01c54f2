"""The providers as the core knows them: by what each one's `Provider` record says (providers.py), never by name.

The composition declares its `PROVIDERS` here (provider_list.py, when it is imported); then the accounts, the pool,
the model map and the commands ask: which provider an account of a kind belongs to when it names none (`of_kind`), whether
the catalogue describes a provider's models (`catalogued`), a provider's keyed plans (`plans`). A provider's name is
written once, in its own package (tests/repo/test_providers.py).
"""

from __future__ import annotations

import importlib
from collections.abc import Collection, Iterable, Mapping
from typing import Protocol


class Preset(Protocol):
    """A plan's endpoint as `qwen-auth add-key --preset NAME` names it."""

    @property
    def base_url(self) -> str: ...

    @property
    def default_model(self) -> str: ...


class KeyPlans(Protocol):
    """A provider's keyed plans, said of a key account's base URL (upstream/dashscope/plans.py: Model Studio's)."""

    @property
    def presets(self) -> Mapping[str, Preset]:
        """Name -> endpoint, for `qwen-auth add-key --preset`."""
        ...

    @property
    def workspace_model(self) -> str:
        """The default model of a workspace's own endpoint (`qwen-auth add-key --workspace ID --region REGION`)."""
        ...

    def workspace_base_url(self, workspace: str, region: str) -> str:
        """A workspace's own base URL (ValueError: not a workspace id or region)."""
        ...

    def billing_of(self, base_url: str) -> str:
        """How requests through the base are paid, as the price table names it ("": not known)."""
        ...

    def label(self, base_url: str) -> str | None:
        """The base's plan, as people call it; None: no plan of these."""
        ...

    def describe_base(self, base_url: str) -> str | None:
        """The base for people (plan, region); None: no plan of these."""
        ...

    def terms(self, base_url: str) -> str | None:
        """The one-line rule the base's plan's terms set for its keys, or None."""
        ...

    def key_warning(self, key: str, base_url: str) -> str | None:
        """Why the key probably does not work with the base's plan (never the key), or None."""
        ...


class Declared(Protocol):
    """What the core reads of a provider's record (providers.Provider)."""

    @property
    def name(self) -> str: ...

    @property
    def kinds(self) -> Collection[str]: ...

    @property
    def catalogued(self) -> bool: ...

    @property
    def plans(self) -> KeyPlans | None: ...


_DECLARED: dict[str, Declared] = {}
_OF_KIND: dict[str, str] = {}


def declare(providers: Iterable[Declared]) -> None:
    """The composition's providers (provider_list.PROVIDERS); a kind belongs to the first that claims it."""
    for p in providers:
        _DECLARED[p.name] = p
        for kind in p.kinds:
            _OF_KIND.setdefault(kind, p.name)


def _declared() -> dict[str, Declared]:
    """The providers declared; asked before any is, the composition's list is imported (and declares them): a
    command or a script that builds accounts needs them as the gateway does, without the gateway's whole
    composition. The core names the list's module, never a provider."""
    if not _DECLARED:
        importlib.import_module(f"{__package__}.provider_list")
    return _DECLARED


def of_kind(kind: str) -> str:
    """The provider an account of `kind` belongs to unless it names another ("": no provider claims the kind)."""
    _declared()
    return _OF_KIND.get(kind, "")


def catalogued(provider: str) -> bool:
    """Whether the catalogue (models/catalogue.toml) describes the provider's models; else its own list does."""
    declared = _declared().get(provider)
    return declared is not None and declared.catalogued


def plans(provider: str) -> KeyPlans | None:
    """The provider's keyed plans; None: it has none (any base is just a base)."""
    declared = _declared().get(provider)
    return declared.plans if declared is not None else None

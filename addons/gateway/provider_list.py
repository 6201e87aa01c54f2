"""The providers the gateway has, one line each: the part of the composition (components.py) that the accounts and
the commands need without the rest of it (mitmproxy's proxy, the dialects). Imported, it declares them to the core
(provider_registry.py), which imports it itself the first time it is asked of a provider and none is declared.

A provider is named here by its package under upstream/, whose `provider` module's `PROVIDER` is read: adding one is
its package and its line in `PROVIDER_PACKAGES` (tests/repo/test_adding_a_provider.py)."""

from __future__ import annotations

import importlib

from .provider_registry import declare
from .providers import Provider

# Every provider the gateway can send requests to (providers.py), by its package under upstream/, the first the default
PROVIDER_PACKAGES = (
    "dashscope",
    "qwenweb",
    "selfhosted",
)
PROVIDERS: tuple[Provider, ...] = tuple(
    importlib.import_module(f"{__package__}.upstream.{package}.provider").PROVIDER for package in PROVIDER_PACKAGES)
declare(PROVIDERS)  # what the core knows of them: the kinds of account each one's, its catalogue, its plans

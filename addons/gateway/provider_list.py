"""The providers the gateway has, one line each: the part of the composition (components.py) that the accounts and
the commands need without the rest of it (mitmproxy's proxy, the dialects). Imported, it declares them to the core
(provider_registry.py), which imports it itself the first time it is asked of a provider and none is declared."""

from __future__ import annotations

from .provider_registry import declare
from .providers import Provider
from .upstream.dashscope import provider as dashscope
from .upstream.qwenweb import provider as qwenweb
from .upstream.selfhosted import provider as selfhosted

# Every provider the gateway can send requests to (providers.py), the first the default
PROVIDERS: tuple[Provider, ...] = (dashscope.PROVIDER, qwenweb.PROVIDER, selfhosted.PROVIDER)
declare(PROVIDERS)  # what the core knows of them: the kinds of account each one's, its catalogue, its plans

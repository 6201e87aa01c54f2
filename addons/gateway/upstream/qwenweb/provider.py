"""Qwen Chat web accounts as a provider (providers.py): opt-in with qwen_web_accounts; no pair skips the chat form."""

from __future__ import annotations

from ...accounts import WEB
from ...providers import Provider
from .upstream import NAME, web_upstream

# Web sessions are its own; the catalogue describes its models; no key account names it
PROVIDER = Provider(NAME, web_upstream, kinds=frozenset({WEB}), catalogued=True, keys=False)

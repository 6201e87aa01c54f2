"""Qwen Chat web accounts as a provider (providers.py): opt-in with qwen_web_accounts; no pair skips the chat form."""

from __future__ import annotations

from ...accounts import QWENWEB
from ...providers import Provider
from .upstream import web_upstream

PROVIDER = Provider(QWENWEB, web_upstream)

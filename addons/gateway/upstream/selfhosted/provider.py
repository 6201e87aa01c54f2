"""A self-hosted inference server as a provider (providers.py): every dialect translated through the chat form."""

from __future__ import annotations

from ...providers import Provider
from .upstream import NAME, SELF_HOSTED

PROVIDER = Provider(NAME, lambda config: SELF_HOSTED)

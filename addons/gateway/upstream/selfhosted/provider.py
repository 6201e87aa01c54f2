"""A self-hosted inference server as a provider (providers.py): every dialect translated through the chat form;
the server's own model list (models.py) joined to /v1/models; `qwen-auth check` asks the server (drift.py)."""

from __future__ import annotations

from ...providers import Provider
from .drift import check
from .models import account_models
from .upstream import NAME, SELF_HOSTED

PROVIDER = Provider(NAME, lambda config: SELF_HOSTED, account_models=account_models, drift=check)

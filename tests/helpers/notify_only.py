"""Test-only mitmproxy script: a gateway on a shared database hears changes by NOTIFY alone. Loaded with `-s` after
addons/qwen.py, it holds off the followers' full reads (storage/pg_follow.py: `reload(None)` every few seconds, for a
lost notification) for an hour. A change that then reaches a gateway at all came through its notification — what a
test of propagation checks, however long a busy machine takes — where a bound in seconds could not tell a
notification from the next full read. The reads at start (and after a reconnection) are kept."""

from __future__ import annotations

from qwen_gateway.auth import state_pg
from qwen_gateway.models import learned_pg
from qwen_gateway.tenancy import team_pg
from qwen_gateway.upstream.pool import affinity_pg

HOLD_S = 3600.0

for owner, name in ((team_pg, "REFRESH_S"), (state_pg.SharedAccountState, "REFRESH_S"),
                    (learned_pg.SharedLearnedFacts, "REFRESH_S"), (affinity_pg, "FOLLOW_S")):
    assert isinstance(getattr(owner, name), float), (owner, name)  # renamed in the gateway: say so, never pass
    setattr(owner, name, HOLD_S)

addons: list = []  # nothing to hook: the holds above are the whole script

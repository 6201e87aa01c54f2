"""The probes an orchestrator asks (Kubernetes, Docker's HEALTHCHECK, compose; docs/deploy.md#probes):

- `GET /health/liveness`: the process serves. 200 whenever the event loop gets to answer; a gateway that does
  not answer is the one to restart.
- `GET /health/readiness`: it can serve a request now. 200 when an account is usable, its state storage is
  available, its named client keys were read once and it is not draining; else 503 with the reasons, so
  traffic goes to another replica.

They answer any client, without a client key (kubelet and Docker send none): the bodies say a status and, when
not ready, the reasons as fixed words — never an account's name, an upstream URL, a path or an error's text.
`/health` shows those, to loopback clients and key holders only (ingress/access.py).
"""

from __future__ import annotations

from collections.abc import Callable

from .accounts import Pool
from .storage.health import unavailable

PROBES = frozenset({"liveness", "readiness"})  # the routes (ingress/routing.py)
USABLE = ("ok", "expired", "refreshing")  # an account the pool hands out, as /health counts them (local.health)


class Probes:
    def __init__(self, pool: Callable[[], Pool | None], keys: Callable[[], dict | None] = lambda: None) -> None:
        self.pool = pool
        self.keys = keys  # what /health says of the named client keys (tenancy/team.py `status`)
        # Set once the gateway stops taking new work (the graceful drain, to come: issue 40): readiness is 503
        # from then on, while liveness stays 200.
        self.draining = False

    def answer(self, route: str) -> tuple[int, dict]:
        """(status, body) of a probe route."""
        if route == "liveness":
            return 200, {"status": "alive"}
        reasons = self.not_ready()
        return (503, {"status": "not_ready", "reasons": reasons}) if reasons else (200, {"status": "ready"})

    def not_ready(self) -> list[str]:
        reasons = ["draining"] if self.draining else []
        pool = self.pool()
        if pool is None or not any(a.get("state") in USABLE for a in pool.status()):
            reasons.append("no_usable_account")
        if unavailable():  # the shared database or the state folder: what needs it would be refused
            reasons.append("storage_unavailable")
        if (self.keys() or {}).get("state") == "unread":  # never read: every request is refused 503
            reasons.append("keys_unread")
        return reasons

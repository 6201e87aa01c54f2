"""Whether a claimed request may go on, decided at the door from its head: the client key (flat keys and the
named keys of door/team.py), then the `Host`, a browser `Origin` and the declared size (access.py), then the
usual ways of pointing a client at the gateway wrongly (mistakes.py). The shared keys not read yet: the key
is decided once they are (`admit_late`, from the `request` hook), by its digest only."""

from __future__ import annotations

from mitmproxy import http

from ..config import Config
from ..errors import GatewayError
from ..exchange import Exchange
from . import access, mistakes
from .keyring import digest
from .team import PENDING, Team


def admit(team: Team, ex: Exchange, head: access.Head, flow: http.HTTPFlow, config: Config) -> GatewayError | None:
    """The refusal of a claimed request by its head, or None."""
    key_refusal, key = (None, None) if flow.is_replay else team.check(head.key, config.client_keys, flow)
    if key_refusal is PENDING:  # the shared keys are not read yet: decided in `request` (its digest only)
        ex.key_digest, key_refusal = digest(head.key), None
    team.bind(ex, key)
    refusal = access.admit(head, route=ex.route, key_refusal=key_refusal, peer=access.peer_host(flow),
                           allowed=config.allowed_hosts | {access.sock_host(flow)}, max_body=config.max_body)
    return refusal or mistakes.refusal(flow, ex.route, ex.dialect)


async def admit_late(team: Team, ex: Exchange, flow: http.HTTPFlow, config: Config) -> None:
    """The key of a request that came before the shared keys were read, decided now (raises the refusal)."""
    key_digest, ex.key_digest = ex.key_digest, None
    if key_digest is None:
        return
    refusal, key = await team.late_check(key_digest, bool(config.client_keys), flow)
    team.bind(ex, key)
    if refusal is not None and not access.key_exempt(ex.route, access.peer_host(flow)):
        raise refusal

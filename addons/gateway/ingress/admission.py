"""Whether a claimed request may go on, decided at the entrance from its head: the client key (flat keys and the
named keys of tenancy/team.py; a key in the URL or in basic auth refused), then the `Host`, a browser `Origin`
and the declared size (access.py), then the usual ways of pointing a client at the gateway wrongly
(mistakes.py). The shared keys not read yet: the key is decided once they are (`admit_late`, from the
`request` hook), by its digest only."""

from __future__ import annotations

from mitmproxy import http

from ..settings.config import Config
from ..errors import GatewayError
from ..exchange import Exchange
from . import access, claim, mistakes
from .. import peers
from ..tenancy import refusals, ring
from ..tenancy.ring import KeyRecord
from ..tenancy.team import PENDING, Team


def admit(team: Team, ex: Exchange, head: access.Head, flow: http.HTTPFlow, config: Config) -> GatewayError | None:
    """The refusal of a claimed request by its head, or None."""
    key_refusal, key = (None, None) if flow.is_replay else _check_key(team, ex, head, flow, config)
    team.bind(ex, key)
    refusal = access.admit(head, route=ex.route, key_refusal=key_refusal, peer=peers.peer_host(flow),
                           allowed=config.allowed_hosts | {access.sock_host(flow)}, max_body=config.max_body)
    return refusal or mistakes.refusal(flow, ex.route, ex.dialect)


def _check_key(team: Team, ex: Exchange, head: access.Head, flow: http.HTTPFlow,
               config: Config) -> tuple[GatewayError | None, KeyRecord | None]:
    """The client-key check (requestheaders): the key from where the gateway takes one (access.read_head),
    and a key in the URL refused — by its parameter's name, or by its value being one of the gateway's keys,
    which leaves the flow here, before any other addon sees it."""
    refusal, key = team.check(head.key, config.client_keys, flow)
    if team.ring.required or config.client_keys:  # a key to check (keys not read yet: maybe)
        under_any_name = claim.drop_keys_from_url(flow, ex, head, lambda value: _known(team, config, value))
        if head.key_in_url or under_any_name:
            return refusals.key_in_url(), key  # even beside a good header: the URL has gone round the logs
        if head.basic and not head.key and refusal is not None and refusal is not PENDING:
            return refusals.basic_auth(), None
    if refusal is PENDING:  # the shared keys are not read yet: decided in `request` (its digest only)
        ring.pending(ex, head.key)
        refusal = None
    return refusal, key


def _known(team: Team, config: Config, value: bytes) -> bool:
    """One of the gateway's keys (flat or named, revoked included)."""
    return peers.key_matches(value, config.client_keys) or team.ring.find(value) is not None


async def admit_late(team: Team, ex: Exchange, flow: http.HTTPFlow, config: Config) -> None:
    """The key of a request that came before the shared keys were read, decided now (raises the refusal)."""
    key_digest = ring.take_pending(ex)
    if key_digest is None:
        return
    refusal, key = await team.late_check(key_digest, bool(config.client_keys), flow)
    team.bind(ex, key)
    if refusal is not None and not access.key_exempt(ex.route, peers.peer_host(flow)):
        raise refusal

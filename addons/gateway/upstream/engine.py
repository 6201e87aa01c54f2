"""The upstream engine: every upstream call, over its own warm connections to the model servers (client.py), the
credential injected here, never carried in the flow where mitmweb and `-w` could see it; refreshes, rotations and
waits happen (retry.py) before the client hears a byte. Callers get an answer whose status is final and whose body
is still streaming."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Collection

from .. import jsonio, off_loop
from ..models import suggestions
from ..settings.config import Config
from ..errors import (
    DENIED, UNREACHABLE, ConnectionFailed, DeadConnection, GatewayError, Unreachable, UpstreamError,
    UpstreamTimeout)
from ..exchange import Exchange, Retry, RetryReason, note
from ..accounts import OAUTH, Credential
from ..models.model_map import offers_of, vision_model
from ..models.routes import LONG, window
from ..interfaces import UpstreamAnswer
from ..providers import TRANSLATED, Pairing, Upstream, Wire
from ..redact import shown_headers
from . import account_lists, before_build
from .client import ProxyRefused, UntrustedCertificate, UpstreamClient
from .first_event import first_event
from .retry import RetryPolicy

log = logging.getLogger("qwen")

CONNECT_TIMEOUT = 10.0


class UpstreamEngine:
    def __init__(self, policy: RetryPolicy, config: Config, pairing: Pairing,
                 on_upstream_request: Callable[[Exchange], None] = lambda ex: None, client=None,
                 usd_budget_check: Callable[[Exchange], None] = lambda ex: None) -> None:
        self.policy = policy
        self.usd_budget_check = usd_budget_check  # a named key's USD budget refuses the unpriced (tenancy/team.py)
        self.pairing = pairing  # which upstream serves the account, and how the endpoint's pair is carried
        self.config = config
        self.on_upstream_request = on_upstream_request
        self._fixed_client = client  # tests hand in a fake with the same send()
        self.client = client or self._client(config)

    @staticmethod
    def _client(config: Config) -> UpstreamClient:
        return UpstreamClient(keepalive=config.upstream_keepalive, connect_timeout=CONNECT_TIMEOUT,
                              network=config.network)

    def reconfigure(self, config: Config):
        """New options; returns the old client when the pool had to be rebuilt (the caller closes it)."""
        old, self.config = self.config, config
        if old.network != config.network:
            for line in config.network.warnings:  # once per change of the settings, not per request
                log.warning(line)
        same = (old.upstream_keepalive, old.network) == (config.upstream_keepalive, config.network)
        if same or self._fixed_client is not None:
            return None
        client, self.client = self.client, self._client(config)
        return client

    async def aclose(self) -> None:
        await self.client.aclose()

    async def open(self, ex: Exchange, going_on: tuple[str, str] | None = None) -> UpstreamAnswer:
        """Send the exchange to Qwen; return the answer with its headers read and its body still streaming.
        Raises GatewayError (in OpenAI's format) when no attempt succeeds. `going_on`: (model, prefix) of an answer
        continued on the account already chosen (`resume`)."""
        if going_on is None:
            await self.policy.acquire(ex)
        return await self.policy.attempts(ex, functools.partial(self._attempt, ex, going_on, [False]))

    async def _attempt(self, ex: Exchange, going_on: tuple[str, str] | None, reconnected: list[bool],
                       cred: Credential) -> UpstreamAnswer | UpstreamError:
        """One attempt on the attempt's account: its answer, or the refusal the retry policy hears. A reused
        connection found dead is sent again at once, once per request (`reconnected`)."""
        await before_build.ready(ex, cred, self.pairing.upstream(cred), self.config.models.accounts)
        while True:
            upstream, base = await self.built(ex)
            if (unlisted := account_lists.unlisted(ex, cred, self.config.models.accounts, self._unknown_model)):
                return unlisted
            self._hold(ex)
            if going_on is not None:
                _going_on(ex, upstream, *going_on)
            assert ex.attempt.cred is not None
            if ex.key.usd_budget:  # the model as it will be sent (routes applied), on this account: before the wire
                self.usd_budget_check(ex)
            prepared = await upstream.prepare(ex.attempt.cred, ex.attempt.body or {}, self._fetch)
            if isinstance(prepared, UpstreamError):  # the first of two requests failed (the web API's chats/new)
                return prepared
            ex.attempt.body = prepared
            url, headers, body, read = self._wire(ex, base)
            try:
                try:
                    resp = await self.client.send(url, headers, body, head_timeout=self.config.upstream_timeout
                                                  or None, read_timeout=read)
                except BaseException:
                    upstream.abandoned(ex.attempt.body)
                    raise
            except DeadConnection as e:
                if reconnected[0]:
                    raise GatewayError(502, "Qwen closed the connection.", code="upstream_connection_error") from e
                reconnected[0] = True
                ex.attempt.retries.append(Retry(RetryReason.RECONNECTED, ex.account))
                continue
            except Unreachable as e:  # nothing was sent: another account may take it (RetryPolicy.elsewhere)
                return UpstreamError(UNREACHABLE, 502, str(e), "server_error", transport=_transport(e))
            except ConnectionFailed as e:
                raise _transport(e) from e
            return await self._answered(ex, upstream, upstream.opened(ex.attempt.body, resp))

    async def _answered(self, ex: Exchange, upstream: Upstream, resp: UpstreamAnswer) -> UpstreamAnswer | UpstreamError:
        """The answer handed on, or the refusal it is: an error status, or a stream whose first event is one."""
        ex.attempt.status = resp.status_code
        ex.attempt.response_headers = dict(resp.headers)
        if not upstream.refused(resp.status_code, resp.headers):
            if not (ex.stream and not ex.attempt.leg.passthrough
                    and "event-stream" in resp.headers.get("content-type", "")):
                return resp
            resp, refused = await first_event(resp, functools.partial(upstream.chunks, ex.attempt.model))
            if refused is None:
                return resp
            err = await _refused_in_stream(ex, resp, refused)
        else:
            try:
                raw = await resp.aread()
            except ConnectionFailed:
                raw = b""
            finally:
                await resp.aclose()
            ex.attempt.response_body = raw
            err = upstream.classify(resp.status_code, raw, dict(resp.headers))
        if err.code == suggestions.NOT_FOUND:  # with the nearest names served, as OpenAI answers it
            err = account_lists.not_found(ex, self._unknown_model(ex, err), self.config.models.accounts)
        elif err.kind == DENIED and err.param == "model":  # this key may not call it: another may
            err = account_lists.not_found(ex, err, self.config.models.accounts, denied=True)
        return err

    async def resume(self, ex: Exchange, prefix: str, exclude: Collection[str] = ()) -> UpstreamAnswer:
        """The exchange's request sent again going on from `prefix`, the answer its client already has (the
        upstream's partial mode; turn/continuation.py): on its account, or on another when `exclude` leaves that
        one out. Raises GatewayError when no account can."""
        retry = Retry(RetryReason.CONTINUED, ex.account)
        ex.attempt.retries.append(retry)
        try:
            if exclude:
                await self.policy.acquire(ex, exclude)
            return await self.open(ex, (ex.attempt.model, prefix))
        except BaseException:  # not continued: the record counts only continuations that were made
            ex.attempt.retries.remove(retry)
            raise

    def _unknown_model(self, ex: Exchange, err: UpstreamError) -> UpstreamError:
        pool = self.policy.pool
        served = self.config.models.list(offers_of(pool.status()) if pool is not None else None)
        return suggestions.unknown(err, ex.attempt.model, [m["id"] for m in served], ex.requested_model)

    async def _fetch(self, wire: Wire) -> tuple[int, dict[str, str], bytes]:
        """An upstream's preparatory request (providers.Fetch): whole, over the same pool; a dead one tried again."""
        body = jsonio.dumps(wire.body)
        timeout = self.config.upstream_timeout or None
        for again in (False, True):
            try:
                resp = await self.client.send(wire.url, wire.headers, body, head_timeout=timeout, read_timeout=timeout)
                try:
                    return resp.status_code, dict(resp.headers), await resp.aread()
                finally:
                    await resp.aclose()
            except DeadConnection as e:
                if again:
                    raise GatewayError(502, "Qwen closed the connection.", code="upstream_connection_error") from e
            except ConnectionFailed as e:
                raise _transport(e) from e
        raise AssertionError("unreachable")

    def build(self, ex: Exchange, cred: Credential | None = None) -> tuple[Upstream, str | None]:
        """The upstream serving the exchange's current account and the API base its leg uses (None: the account's
        own); the body on the record. The one body builder: a live request's and a batch line's (api/batches/translation.py)
        — the model map, the route, a retired model answered here, the pair's leg, the provider's rules with what its
        refusals taught. `cred`: the account it is built for (a batch line's: the batch's), else the attempt's."""
        upstream, base, body = self._planned(ex, cred)
        return _record(ex, body(), upstream, base)

    async def built(self, ex: Exchange) -> tuple[Upstream, str | None]:
        """`build` for a live attempt: the body of a long conversation made by a worker thread (off_loop.py)."""
        upstream, base, body = self._planned(ex, None)
        made = await asyncio.to_thread(body) if off_loop.many_messages(ex.chat_body) else body()
        return _record(ex, made, upstream, base)

    def _planned(self, ex: Exchange, cred: Credential | None) -> tuple[Upstream, str | None, Callable[[], dict]]:
        """What `build` decides on the loop (shared state read), and the making of the body (the exchange's own)."""
        if cred is not None:
            ex.attempt.cred = cred
        cred = ex.attempt.cred
        assert cred is not None and ex.endpoint is not None
        config, endpoint = self.config, ex.endpoint
        upstream = ex.attempt.upstream = self.pairing.upstream(cred)
        model = self._routed(ex, ex.attempt.fallback or config.models.resolve(ex.requested_model, cred), cred)
        before_build.still_served(model)
        leg, base = self.pairing.leg(endpoint.name, upstream, cred, model)
        own: dict | None = None
        if leg.passthrough:
            ex.attempt.model = model  # the model asked upstream, which the endpoint's own body may read
            own = endpoint.own_body(ex.body or {}, ex) if endpoint.own_body is not None else ex.chat_body
            if own is None:  # this request needs what only the translation serves
                leg, base = TRANSLATED, None
        ex.attempt.leg = leg
        seen = config.models.accounts.seen_by(cred.account, self.policy.learned)  # lessons, then its own list
        if own is not None:
            return upstream, base, functools.partial(upstream.own_body, own, model=model, capability=endpoint.capability,
                                                     cred=cred, notes=ex.notes, learned=seen)
        return upstream, base, functools.partial(
            upstream.chat_body, ex.chat_body, model=model, cred=cred, notes=ex.notes, learned=seen,
            prompt=before_build.prompt(ex) if upstream.fits_window else None, tenant=ex.key.name or "")

    def _hold(self, ex: Exchange) -> None:
        """The conversation stays on its account as long as the body Qwen gets asks its cache to last (Qwen4's
        hour when asked, else five minutes): known only now, after the account and its model were chosen."""
        pool, conversation, body = self.policy.pool, ex.conversation, ex.attempt.body
        hold = getattr(pool, "hold", None)  # the account pool's (upstream/pool/pool.py); a pool without affinity has none
        if conversation is None or hold is None or not isinstance(body, dict) or "messages" not in body:
            return
        conversation.lifetime_s = ex.attempt.upstream.cache_lifetime_s(body) if ex.attempt.upstream else 300.0
        hold(conversation, ex.account)

    def _routed(self, ex: Exchange, model: str, cred: Credential) -> str:
        """The model of the request's route (qwen_routes, turn/model_route.py) on this account; the route is
        written on the attempt when it moves the model. A fallback group's model (qwen_fallbacks) goes as named: an
        account whose own list leaves it out sends it on (account_lists.py)."""
        routed, ex.attempt.route = None if ex.attempt.fallback else ex.routed, ""
        if routed is None:
            return model
        if routed.reason == LONG and ((own := window(model)) is None or (ex.count.tokens or 0) <= own):
            return model  # this account's model (its own map) is not one the prompt is too long for
        if routed.model:
            target = self.config.models.resolve(routed.model, cred)
        else:  # images: the account's vision model
            target = vision_model(model, oauth=cred.kind == OAUTH, default_model=cred.default_model)
            if target != model:
                note(ex.notes, f"images sent to {target}: {model} cannot read images (route: {routed.rule})")
        if target == model:
            return model
        ex.attempt.route = routed.reason
        return target

    def _wire(self, ex: Exchange, base: str | None) -> tuple[str, list[tuple[str, str]], bytes, float | None]:
        """(url, headers with the credential, body, read timeout) for the exchange's current account."""
        cred, config, upstream = ex.attempt.cred, self.config, ex.attempt.upstream
        assert cred is not None and upstream is not None and ex.attempt.body is not None
        wire = upstream.wire(cred, ex.attempt.leg.suffix, ex.attempt.body, user_agent=config.user_agent, stream=ex.stream,
                             attempt=len(ex.attempt.retries), base=base,
                             api_headers=ex.client.api_headers if ex.attempt.leg.passthrough else (),
                             client_agent=ex.client.user_agent)
        headers = wire.headers
        ex.attempt.url = wire.url
        ex.attempt.headers = dict(shown_headers(tuple(headers)))  # the exchange's own copy: a viewer may write on it
        ex.attempt.sent = jsonio.dumps(wire.body)  # kept: the cache doctor reads the prompt in it again
        self.on_upstream_request(ex)
        # A stream may pause between events for as long as the idle limit; a whole answer for the full timeout.
        read = (config.stream_idle_timeout or None) if ex.stream else (config.upstream_timeout or None)
        return wire.url, headers, ex.attempt.sent, read


async def _refused_in_stream(ex: Exchange, resp: UpstreamAnswer, err: UpstreamError) -> UpstreamError:
    """Qwen's refusal as a 200 stream's first event: what it sent kept for the debug log, the answer closed, the
    refusal said on the flow."""
    head = getattr(resp, "head", b"")
    await resp.aclose()
    ex.attempt.response_body = head if isinstance(head, bytes) else b""
    note(ex.notes, f"Qwen refused the request in its stream's first event ({err.status}): “{err.message[:200]}”")
    return err


def _going_on(ex: Exchange, upstream: Upstream, model: str, prefix: str) -> None:
    """The body built for this account made a continuation of `model`'s answer from `prefix`; an account that
    would send another model, its own API or a body partial mode cannot serve is refused."""
    body = None if ex.attempt.leg.passthrough or ex.attempt.model != model else \
        (ex.attempt.body if not prefix and upstream.resendable else upstream.continued(ex.attempt.body or {}, prefix))
    if body is None:
        raise GatewayError(502, f"Account {ex.account} cannot go on with {model}'s answer (partial mode).",
                           code="not_continued")
    ex.attempt.body = body


def _transport(e: ConnectionFailed) -> GatewayError:
    """A transport failure as the client's error: a timeout, the proxy's refusal, an untrusted certificate."""
    if isinstance(e, UpstreamTimeout):
        return GatewayError(504, f"Qwen did not answer in time: {e} (qwen_upstream_timeout).", code="upstream_timeout")
    code = "upstream_proxy_refused" if isinstance(e, ProxyRefused) else \
        "upstream_certificate" if isinstance(e, UntrustedCertificate) else "upstream_unreachable"
    return GatewayError(502, f"Qwen could not be reached: {e}.", code=code)


def _record(ex: Exchange, body: dict, upstream: Upstream, base: str | None) -> tuple[Upstream, str | None]:
    ex.attempt.body = body
    ex.attempt.model = body["model"]  # as sent (the route moved it, when one applies)
    return upstream, base

"""Qwen Chat web accounts as the chat form's `Upstream` (providers.py): the parts of this package behind one object.

One attempt is two requests: `prepare` creates the chat (`chats/new`, through the engine's pooled client),
then the engine sends the completion `wire` builds. Its answer is always a stream; a whole answer is
assembled from it (turn.whole.assembled), so `answer` is never given a JSON body by a working upstream."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ... import jsonio
from ...accounts import WEB, Capability, Credential
from ...settings.config import Config
from ...errors import SERVER, GatewayError, UpstreamError
from ...models.model_map import LiveModels
from ...settings.network import Network
from ...interfaces import UpstreamAnswer
from ...providers import Fetch, Lesson, Prompt, Wire
from ...storage.pg import Database
from . import errors, request
from .live_models import WebCatalogue
from .headers import url, web_headers
from .pacing import Pacer
from .pinning import PLAN, Pinning
from .pins import PinStore
from .pins_pg import SharedPinStore
from .stream import WebChunks

if TYPE_CHECKING:
    from ...models.learned import LearnedFacts

NAME = "qwenweb"  # the provider's name: what its accounts' `provider` says


class QwenWeb:
    """The `Upstream` of providers.py for chat.qwen.ai; `min_interval`: seconds between two generations of one
    account (qwen_web_min_interval); `pinning`: pinned multi-turn (qwen_web_pin; None: a new chat per request)."""

    name = NAME
    resendable = False  # a second generation of one turn in the chat: a broken stream ends in its error
    fits_window = False  # its models' input and output limits are apart

    def __init__(self, min_interval: float = 0.0, live: LiveModels | None = None, base: str | None = None,
                 network: Network | None = None, pinning: Pinning | None = None) -> None:
        self.pacer = Pacer(min_interval)
        self.live = live
        self.pinning = pinning
        if live is not None and base:  # web accounts in use: their catalogue joins /v1/models
            live.register(WEB, request.WEB_MODELS, WebCatalogue(live, base, network).refresh_soon, provider=NAME)

    def models(self) -> tuple[str, ...]:
        """The catalogue as cached (a due refresh starts in the background), else the static list."""
        if self.live is None:
            return request.WEB_MODELS
        self.live.wanted()
        return self.live.ids(WEB) or request.WEB_MODELS

    def chat_body(self, chat: dict, *, model: str, cred: Credential, notes: list[str],
                  learned: LearnedFacts | None = None, prompt: Prompt | None = None, tenant: str = "") -> dict:
        body = request.completion_body(chat, model=model, notes=notes, models=self.models(),
                                       default=cred.default_model)
        plan = self.pinning.plan(chat, cred.account, body["model"]) if self.pinning is not None else None
        hit = (plan or {}).get("hit")
        # What will be sent: a pinned chat's new message only, else the whole conversation (prepare checks that
        # again if the pin moves on meanwhile).
        request.check_size(request.continued(body, hit["chat_id"], hit["response_id"], hit["content"]) if hit
                           else body)
        return {**body, PLAN: plan} if plan is not None else body

    def own_body(self, body: dict, *, model: str, capability: Capability, cred: Credential,
                 notes: list[str], learned: LearnedFacts | None = None) -> dict:
        raise GatewayError(400, f"Qwen Chat web accounts do not serve {capability.value}.",
                           code="unsupported_value", param="model")

    async def prepare(self, cred: Credential, body: dict, fetch: Fetch) -> dict | UpstreamError:
        """Create the chat the completion goes to (after the account's pacing interval); the body with its
        `chat_id`, or what went wrong."""
        await self.pacer.wait(cred.account)
        if self.pinning is not None and (body.get(PLAN) or {}).get("hit"):
            continued = await self.pinning.claim(body)
            if continued is not None:
                return continued
            request.check_size(body)  # the pin moved on: the whole conversation goes to a new chat
        target, host = url(cred, "/api/v2/chats/new")
        status, headers, raw = await fetch(Wire(target, web_headers(cred, host, bearer=False),
                                                request.new_chat_body(body["model"])))
        try:
            data = json.loads(raw) if status == 200 else None
        except ValueError:
            data = None
        if isinstance(data, dict) and data.get("success") is True:
            chat_id = _chat_id(data)
            if chat_id:
                return request.with_chat(body, chat_id)
            return UpstreamError(SERVER, 502, "Qwen Chat created a chat without an id.", "server_error",
                                 code="invalid_upstream_response")
        return self.classify(status, raw, headers)

    def wire(self, cred: Credential, suffix: str, body: dict, *, user_agent: str, stream: bool, attempt: int,
             base: str | None = None, api_headers: tuple[tuple[str, str], ...] = (), client_agent: str = "") -> Wire:
        chat_id = str(body.get("chat_id") or "")
        target, host = url(cred, f"/api/v2/chat/completions?chat_id={chat_id}")
        sent = {k: v for k, v in body.items() if k != PLAN}
        return Wire(target, web_headers(cred, host, bearer=True, referer=f"/c/{chat_id}"), sent)

    def opened(self, body: dict, resp: UpstreamAnswer) -> UpstreamAnswer:
        """A pinned turn's answer is read through, to learn the chat's new last response when it ends."""
        return self.pinning.watch(body, resp) if self.pinning is not None and PLAN in body else resp

    def abandoned(self, body: dict) -> None:
        if self.pinning is not None and PLAN in body:
            self.pinning.abandoned(body)

    def refused(self, status: int, headers: Mapping[str, str]) -> bool:
        return errors.is_error_answer(status, dict(headers))

    def classify(self, status: int, body: bytes, headers: dict[str, str]) -> UpstreamError:
        err = errors.classify(status, body, headers)
        if err.code == "model_not_found" and self.live is not None:
            self.live.stale(WEB)  # the catalogue rotated: fetched again at the next chance
        return err

    def answer(self, data: dict, *, model: str) -> dict:
        # Only reached for a JSON answer the engine let through: the web API answers completions as streams.
        raise errors.classify(200, jsonio.dumps(data), {}).to_gateway_error()

    def chunks(self, model: str) -> WebChunks:
        return WebChunks(model)

    def lesson(self, message: str) -> Lesson | None:
        return None  # the web API's refusals name no ranges: nothing to learn

    def words_known(self, message: str) -> bool:
        return True  # its errors are read by their codes (errors.py), never by their wording

    def unlearnable(self, lesson: Lesson, sent: dict, model: str, carried: str) -> str | None:
        return "the web API teaches nothing"

    def cache_lifetime_s(self, body: dict) -> float:
        return 300.0  # no prompt cache to follow: a conversation's chat is pinned instead (pinning.py)

    def continued(self, body: dict, prefix: str) -> None:
        return None  # Qwen Chat has no partial mode: a stream cut mid-answer is not continued


def web_upstream(config: Config) -> QwenWeb:
    """The web upstream the options ask for (qwen_web_min_interval, qwen_web_pin, qwen_web_pin_ttl); its live
    catalogue only when web accounts are on (not opted in: nothing is fetched)."""
    pinning = None
    if config.web_pin != "off":
        path = config.state_dir / "web_pins.sqlite3"
        store = SharedPinStore(path, config.web_pin_ttl, Database(config.state_url)) if config.state_url \
            else PinStore(path, config.web_pin_ttl)
        pinning = Pinning(store, config.web_pin)
    if not config.auth.web_accounts:
        return QwenWeb(config.web_min_interval, pinning=pinning)
    return QwenWeb(config.web_min_interval, config.models.live, config.auth.web_base_url, config.network,
                   pinning=pinning)


def _chat_id(data: dict) -> str | None:
    """The new chat's id, where the clients find it (§1.5: `data.id`, also `chat_id`, `id`, `data.chat.id`)."""
    inner = data.get("data") if isinstance(data.get("data"), dict) else {}
    assert isinstance(inner, dict)
    chat = inner.get("chat") if isinstance(inner.get("chat"), dict) else {}
    assert isinstance(chat, dict)
    for v in (inner.get("id"), inner.get("chat_id"), chat.get("id"), data.get("chat_id"), data.get("id")):
        if isinstance(v, str) and v:
            return v
    return None


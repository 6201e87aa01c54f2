"""DashScope as the chat form's `Upstream` (providers.py): the parts of this package behind one object."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...accounts import OAUTH, Capability, Credential
from ...errors import UpstreamError
from ...providers import Lesson, OneRequest, Prompt, Wire
from ...models import catalogue
from . import answer, errors, markers, partial, ranges, request
from .headers import target, upstream_headers
from .stream import ChunkNormalizer

if TYPE_CHECKING:
    from ...models.learned import LearnedFacts

NAME = "dashscope"  # the provider's name: what its accounts' `provider` says (Qwen Code logins, keys naming none)


class DashScope(OneRequest):
    """The `Upstream` of providers.py for DashScope."""

    name = NAME
    resendable = True  # a request is a request: sent again, it is answered again
    fits_window = False  # its models' input and output limits are apart

    def chat_body(self, chat: dict, *, model: str, cred: Credential, notes: list[str],
                  learned: LearnedFacts | None = None, prompt: Prompt | None = None, tenant: str = "") -> dict:
        return request.chat_to_qwen(chat, model=model, oauth=cred.kind == OAUTH, notes=notes, learned=learned)

    def own_body(self, body: dict, *, model: str, capability: Capability, cred: Credential,
                 notes: list[str], learned: LearnedFacts | None = None) -> dict:
        return request.own_body(body, model=model, capability=capability, notes=notes, learned=learned)

    def wire(self, cred: Credential, suffix: str, body: dict, *, user_agent: str, stream: bool, attempt: int,
             base: str | None = None, api_headers: tuple[tuple[str, str], ...] = (), client_agent: str = "") -> Wire:
        url, hostport = target(base or cred.base_url, suffix)
        stream = stream or body.get("stream") is True  # a stream-only model's whole answer comes as a stream
        headers = upstream_headers(cred, user_agent=user_agent, stream=stream, host=hostport, attempt=attempt,
                                   client_agent=client_agent)
        headers += api_headers
        if suffix == "responses" and session_cached(body):
            headers.append((SESSION_CACHE, "enable"))
        return Wire(url, headers, body)

    def classify(self, status: int, body: bytes, headers: dict[str, str]) -> UpstreamError:
        return errors.classify(status, body, headers)

    def answer(self, data: dict, *, model: str) -> dict:
        return answer.qwen_to_chat(data, model=model)

    def chunks(self, model: str) -> ChunkNormalizer:
        return ChunkNormalizer(model)

    def continued(self, body: dict, prefix: str) -> dict | None:
        return partial.continued(body, prefix)

    def lesson(self, message: str) -> Lesson | None:
        return ranges.read(message)

    def words_known(self, message: str) -> bool:
        return ranges.known(message)

    def unlearnable(self, lesson: Lesson, sent: dict, model: str, carried: str) -> str | None:
        return ranges.learnable(lesson, sent, model, carried)

    def cache_lifetime_s(self, body: dict) -> float:
        return markers.lifetime_s(body)


# Model Studio's session cache ("Context cache", "Session cache"): the Responses API keeps the conversation's
# context for its continuations (previous_response_id) when a request carries this header
SESSION_CACHE = "x-dashscope-session-cache"


def session_cached(body: dict) -> bool:
    """A Responses request the session cache serves: stored (a later turn can continue it) on a model that
    offers the cache (the catalogue's `session_cache`)."""
    row = catalogue.find(str(body.get("model") or ""))
    return row is not None and row.session_cache and body.get("store") is not False


DASHSCOPE = DashScope()

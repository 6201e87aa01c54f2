"""A self-hosted inference server as the chat form's `Upstream` (providers.py): the parts of this package behind one
object."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...accounts import Capability, Credential
from ...errors import UpstreamError
from ...providers import Lesson, OneRequest, Prompt, Wire
from . import answer, request, template
from .stream import Chunks

if TYPE_CHECKING:
    from ...models.learned import LearnedFacts

NAME = "selfhosted"
GATEWAY_AGENT = "qwen-gateway"
# Its automatic prefix cache keeps no lifetime (blocks evicted when memory is needed): a conversation is held on
# its server as long as Model Studio's shortest lifetime, five minutes
HOLD_S = 300.0


class SelfHosted(OneRequest):
    name = NAME
    resendable = True  # a request is a request: sent again, it is answered again
    fits_window = True  # the prompt and the answer share the server's max_model_len

    def chat_body(self, chat: dict, *, model: str, cred: Credential, notes: list[str],
                  learned: LearnedFacts | None = None, prompt: Prompt | None = None, tenant: str = "") -> dict:
        listed = getattr(learned, "model", None)  # the server's own list (models.py), when read
        return request.chat_body(chat, model=model, notes=notes, listed=listed(model) if listed else None,
                                 prompt=prompt, system_first=template.system_first(model, learned), tenant=tenant)

    def own_body(self, body: dict, *, model: str, capability: Capability, cred: Credential,
                 notes: list[str], learned: LearnedFacts | None = None) -> dict:
        return {**body, "model": model}  # no pair skips the chat form here (no legs): never asked

    def wire(self, cred: Credential, suffix: str, body: dict, *, user_agent: str, stream: bool, attempt: int,
             base: str | None = None, api_headers: tuple[tuple[str, str], ...] = (), client_agent: str = "") -> Wire:
        return request.wire(cred, suffix, body, stream=stream or body.get("stream") is True,
                            client_agent=client_agent, gateway_agent=GATEWAY_AGENT, base=base)

    def classify(self, status: int, body: bytes, headers: dict[str, str]) -> UpstreamError:
        return answer.classify(status, body)

    def answer(self, data: dict, *, model: str) -> dict:
        return answer.to_chat(data, model=model)

    def chunks(self, model: str) -> Chunks:
        return Chunks(model)

    def continued(self, body: dict, prefix: str) -> dict | None:
        return request.continued(body, prefix)

    def lesson(self, message: str) -> Lesson | None:
        """Its chat template's refusal of a late system message; its limits are the operator's (--max-model-len):
        read from its list and its refusals' own counts (limits.py), never learned as a model's."""
        if template.SYSTEM_FIRST.lower() in message.lower():
            return Lesson(message, param="messages", system_first=True)
        return None

    def words_known(self, message: str) -> bool:
        return True  # its refusals are read by their status, never by their wording

    def unlearnable(self, lesson: Lesson, sent: dict, model: str, carried: str) -> str | None:
        return None if lesson.system_first else "a self-hosted server's limits are its operator's"

    def cache_lifetime_s(self, body: dict) -> float:
        return HOLD_S


SELF_HOSTED = SelfHosted()

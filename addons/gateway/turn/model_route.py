"""Which route a request takes (`qwen_routes`, models/routes.py): decided once, after the endpoint's translation
and before the context guard, so that a prompt longer than its model's window goes to a model that takes it
instead of being refused — or, when none does (or `long-context=off`), is refused here in the client's terms
(turn/context_overflow.py) instead of uploaded for Qwen to refuse. A step of the turn (wiring.py's checks, in order):

    await route(ex, config)   # ex.routed: the rule met, or None

Cheap for ordinary requests: long context needs the mapped model's window from the catalogue (a model it gives
none is never routed for length), and a body no longer than the window in bytes cannot be over it (as the
context guard reasons), so only longer bodies wait for the estimator's count (never a second count); images
are looked for in the chat messages' parts (a pass in C over the messages); the fast tier reads the model
name only when a `fast` rule is set. The engine asks the route's model of the account that serves the request
(upstream/engine.py), where the route is then written on the attempt and shown (request line, flow, record).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..accounts import Capability
from ..models.learned import INPUT
from ..models.routes import FAST, IMAGES, LONG, VISION, Routed, has_image, is_fast, long_target, window
from ..observer import endpoint_name
from ..tokens import SAMPLED
from .context_guard import SAMPLED_MARGIN, byte_bound, count_images
from .context_overflow import PROMPT_PARAMS, ContextOverflow, prompt_tokens

if TYPE_CHECKING:
    from ..exchange import Exchange
    from ..models.learned import LearnedFacts
    from ..settings.config import Config


async def route(ex: Exchange, config: Config, learned: LearnedFacts | None = None) -> None:
    """Sets `ex.routed` when a rule of `config.routes` applies to the request; `learned`: the longest prompts
    Qwen's refusals named (models/learned.py), over the catalogue's."""
    endpoint = ex.endpoint
    if endpoint is None or getattr(endpoint, "capability", Capability.CHAT) is not Capability.CHAT:
        return
    routes = config.routes
    dialect, key, agent = ex.dialect, ex.key.name or "", ex.client.user_agent
    messages = ex.chat_body.get("messages") if isinstance(ex.chat_body, dict) else None
    images = isinstance(messages, list) and has_image(messages)
    rule = routes.rule(LONG, dialect, key, agent)
    model = config.models.resolve(ex.requested_model)
    own = window(model)
    if learned is not None and (taught := learned.value(model, INPUT)) is not None:
        own = taught  # Qwen's own word, while it holds
    if own is not None and _may_exceed(ex, own, images):
        tokens = await prompt_tokens(ex)
        if tokens is not None and _over(ex, tokens, own):
            target = long_target(rule, model, tokens) if rule is not None else None
            if target is None:  # nothing takes it: answered here rather than uploaded to be refused
                ex.notes.append(f"about {tokens} prompt tokens > {own}, {model}'s longest prompt in the catalogue: "
                                "refused here, no longer model takes it")
                raise ContextOverflow(tokens, own, PROMPT_PARAMS.get(endpoint_name(ex) or "", "messages"))
            ex.routed = Routed(LONG, target, str(rule))
            ex.notes.append(f"route long-context ({rule}): about {tokens} prompt tokens > {own}, "
                            f"{model}'s window in the catalogue: sent to {target}")
            return
    if images and (rule := routes.rule(IMAGES, dialect, key, agent)) is not None:
        ex.routed = Routed(IMAGES, "" if rule.target == VISION else rule.target, str(rule))
        return
    if routes.fast and is_fast(ex.requested_model) and (rule := routes.rule(FAST, dialect, key, agent)) is not None:
        ex.routed = Routed(FAST, rule.target, str(rule))
        ex.notes.append(f"route fast ({rule}): {ex.requested_model} is a background or fast tier")


def _over(ex: Exchange, tokens: int, window: int) -> bool:
    """Over the window, as the context guard judges it: a sampled count gets its margin."""
    if (ex.count.method or "").startswith(SAMPLED):
        return tokens > window * (1 + SAMPLED_MARGIN)
    return tokens > window


def _may_exceed(ex: Exchange, window: int, images: bool) -> bool:
    """Whether the prompt may be over `window` tokens: a body of no more bytes (images counted at their fixed
    cost) cannot be."""
    size = ex.client.size
    if not size or size > window:
        return True
    return images and byte_bound(size, count_images(ex.body)) > window

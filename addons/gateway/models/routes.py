"""Routing by what a request needs (`qwen_routes`): rules, each a condition and a target model, read once from the
options; which rule a request meets is decided by turn/model_route.py before the context guard, and the engine
asks the route's model of whichever account serves the request.

    long-context[@scope]=MODEL|sibling|off   the prompt (the gateway's estimate) is over the mapped model's
                                             window as the catalogue gives it (`input`, else `context`)
    images[@scope]=MODEL|vision|off          an image in the request, for a model that cannot see it
    fast[@scope]=MODEL|off                   a background or fast tier asked: Claude's haiku, OpenAI's mini/nano
    scope: key:NAME (a named client key), dialect:openai|anthropic, agent:PREFIX (the User-Agent starts with it)

Rules are tried in the order written, the defaults last: `long-context=sibling` (the family's long-context
sibling the catalogue lists: same tier, a larger window, served on every plan the model is) and `images=vision`
(the account's vision model, as the gateway always did). A model the catalogue gives no window is never routed
for length: nothing is invented. The first condition that holds, in the order above, with a rule that matches,
routes the request; `off` stops that condition there.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import repeat

from .. import dialects
from .catalogue import CHAT, ROWS, SNAPSHOT, find

LONG, IMAGES, FAST = "long-context", "images", "fast"
CONDITIONS = (LONG, IMAGES, FAST)
OFF, VISION, SIBLING = "off", "vision", "sibling"
SCOPES = ("key", "dialect", "agent")
DIALECTS = tuple(dialects.DIALECTS)
# The model names of a background or fast tier: Claude's haiku (any version), OpenAI's mini and nano
_FAST_NAME = re.compile(r"(?:^|-)(?:mini|nano|haiku)(?:-|$)")
_VERSION = re.compile(r"^qwen[\d.]*-")  # qwen3.8-max -> max: a tier's name without its generation
# A Qwen model's name (qwen4-flash, qwq-plus, qvq-max): one newer than the catalogue is a target, unknown to it
_QWEN_NAME = re.compile(r"^(?:qwen|qwq|qvq)", re.I)
log = logging.getLogger(__name__)
_FORM = "condition[@scope]=target, e.g. long-context=sibling, images@key:ci=qwen3.6-plus, fast=qwen3.6-flash"


@dataclass(frozen=True, slots=True)
class Rule:
    when: str  # a condition (CONDITIONS)
    target: str  # a model id, or OFF, VISION (images), SIBLING (long-context)
    scope: str = ""  # "" (every request), or one of SCOPES
    who: str = ""  # the key's name, the dialect, the User-Agent's prefix

    def matches(self, dialect: str, key: str, agent: str) -> bool:
        if not self.scope:
            return True
        if self.scope == "key":
            return key == self.who
        if self.scope == "dialect":
            return dialect == self.who
        return agent.lower().startswith(self.who)

    def __str__(self) -> str:
        return f"{self.when}{'@' + self.scope + ':' + self.who if self.scope else ''}={self.target}"


DEFAULTS = (Rule(LONG, SIBLING), Rule(IMAGES, VISION))


@dataclass(frozen=True, slots=True)
class Routed:
    """A request's route: why (the condition) and where (a model; "" for images: the account's vision model)."""

    reason: str
    model: str
    rule: str  # the rule as written, for the flow's note


class Routes:
    """The parsed rules, by condition (the order written, the defaults last)."""

    def __init__(self, rules: Sequence[Rule] = ()) -> None:
        self.rules = (*rules, *DEFAULTS)
        self.by_condition = {c: tuple(r for r in self.rules if r.when == c) for c in CONDITIONS}
        self.fast = any(r.target != OFF for r in self.by_condition[FAST])  # none: no name is looked at
        self.scoped = any(r.scope for r in self.rules)

    def rule(self, condition: str, dialect: str, key: str, agent: str) -> Rule | None:
        """The first rule of this condition that matches the client; None (or an OFF rule): no route."""
        for r in self.by_condition[condition]:
            if r.matches(dialect, key, agent):
                return None if r.target == OFF else r
        return None


def parse_routes(entries: Iterable[str]) -> Routes:
    """`qwen_routes` entries -> Routes; ValueError naming the entry and what is wrong with it."""
    return Routes([parse_rule(e) for e in entries])


def parse_rule(entry: str) -> Rule:
    head, sep, target = entry.partition("=")
    head, target = head.strip(), target.strip()
    when, _, scoped = head.partition("@")
    scope, colon, who = scoped.partition(":")
    if not sep or not target:
        raise ValueError(f"qwen_routes: {entry!r} is not {_FORM}")
    if when not in CONDITIONS:
        raise ValueError(f"qwen_routes: {entry!r}: the condition {when!r} is not one of {', '.join(CONDITIONS)}")
    if scoped and (scope not in SCOPES or not colon or not who.strip()):
        raise ValueError(f"qwen_routes: {entry!r}: the scope {scoped!r} is not key:NAME, dialect:openai|anthropic "
                         "or agent:PREFIX")
    who = who.strip().lower() if scope in ("dialect", "agent") else who.strip()
    if scope == "dialect" and who not in DIALECTS:
        raise ValueError(f"qwen_routes: {entry!r}: the dialect {who!r} is not one of {', '.join(DIALECTS)}")
    rule = Rule(when, target, scope if scoped else "", who if scoped else "")
    if (problem := _target_problem(rule)) is not None:
        raise ValueError(f"qwen_routes: {entry!r}: {problem}")
    if rule.target not in (OFF, VISION, SIBLING) and find(rule.target) is None:
        log.warning("qwen: qwen_routes: %r: %s is not in the catalogue (models/catalogue.toml): sent as written, "
                    "unpriced (its price unknown) and without a known window", entry, rule.target)
    return rule


def _target_problem(rule: Rule) -> str | None:
    target = rule.target
    if target == OFF:
        return None
    if target in (VISION, SIBLING):
        wanted = IMAGES if target == VISION else LONG
        return None if rule.when == wanted else f"`{target}` is a target of {wanted} only"
    row = find(target)
    if (row is None and not _QWEN_NAME.match(target)) or (row is not None and row.kind != CHAT):
        return f"{target} is not a chat model the catalogue names (models/catalogue.toml)"
    if rule.when == LONG and window(target) is None:  # (a model newer than the catalogue too: nothing invented)
        return f"the catalogue gives no context window for {target}: a long prompt's route must be known to fit"
    if rule.when == IMAGES and row is None:
        return f"the catalogue does not say {target} can read images: an image's route must be known to read it"
    if rule.when == IMAGES and row is not None and not row.vision:
        return f"{target} cannot read images (the catalogue's `vision`)"
    return None


# ---- the conditions -----------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)  # asked per request about the few models a gateway serves
def window(model: str) -> int | None:
    """The longest prompt the model takes as a source dated after its release gives it (`input`, else
    `context`); None: not known."""
    row = find(model)
    if row is None:
        return None
    for fact in ("input", "context"):
        if getattr(row, fact) is not None and fact not in row.unsourced:
            return getattr(row, fact)
    return None


def _tier(model: str) -> str:
    row = find(model)
    base = row.family or row.id if row is not None else SNAPSHOT.sub("", model)
    return _VERSION.sub("", base)


@functools.lru_cache(maxsize=256)
def siblings(model: str) -> tuple[str, ...]:
    """The model's long-context siblings the catalogue lists, newest first: chat models of the same tier (max,
    plus, flash, coder-plus…) with a larger window, served on every plan the model is served on."""
    row, own = find(model), window(model)
    if row is None or own is None:
        return ()
    tier, plans = _tier(model), set(row.plans)
    return tuple(r.id for r in ROWS.values()
                 if r.kind == CHAT and r.id != row.id and _tier(r.id) == tier and (window(r.id) or 0) > own
                 and plans <= set(r.plans))


def long_target(rule: Rule, model: str, tokens: int) -> str | None:
    """Where a prompt of `tokens` over `model`'s window goes under this rule: a target whose window takes it."""
    if rule.target != SIBLING:
        fits = window(rule.target)
        return rule.target if fits is not None and tokens <= fits and rule.target != model else None
    return next((m for m in siblings(model) if tokens <= (window(m) or 0)), None)


def is_fast(requested: str) -> bool:
    """Whether the client asked a background or fast tier (claude-haiku-*, gpt-4o-mini, gpt-5-nano, o4-mini…)."""
    return bool(_FAST_NAME.search(requested.lower()))


def has_image(messages: list) -> bool:
    """An image part in OpenAI's form (`image_url`), or an Anthropic `image` block (a plan's Anthropic base takes
    those, also inside a tool result)."""
    return any(_images(content) for content in contents(messages) if isinstance(content, list))


def contents(messages: list) -> list:
    """Each message's content (None where it has none), read in C: a pass over a long conversation's
    messages costs a few microseconds."""
    try:
        return list(map(dict.get, messages, repeat("content")))
    except TypeError:  # an item that is no object
        return [m.get("content") if isinstance(m, dict) else None for m in messages]


def _images(content: object) -> bool:
    if not isinstance(content, list):
        return False
    return any(isinstance(p, dict) and (p.get("type") in ("image_url", "image") or
                                        (p.get("type") == "tool_result" and _images(p.get("content"))))
               for p in content)

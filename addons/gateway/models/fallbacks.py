"""Fallbacks by model group (`qwen_fallbacks`): what a model the upstream refused may be answered by instead, as the
admin declares it, read once from the options. The retry policy applies it (upstream/fallback.py) before the client
hears anything; a model no group names is never replaced.

    MODEL=FALLBACK[,FALLBACK…]   MODEL: the model refused, as it was sent (after qwen_model_map and qwen_routes);
                                 each FALLBACK tried in order: a model with a longer window, another provider's
                                 model (served by an account of that provider in the pool)

A refusal for the model — not found, no access, not served by any account, the prompt over its window — moves the
request to the group's next model; for a window, a fallback whose window the catalogue gives and the prompt
does not fit is passed over (one whose window is unknown, a team's own server's, is tried: its server decides).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass

from .catalogue import CHAT, find
from .routes import window as catalogue_window

log = logging.getLogger(__name__)
_FORM = "MODEL=FALLBACK[,FALLBACK…], e.g. qwen3-max=qwen4-max,qwen3.6-plus"

# Why the upstream refused a request for its model (the flow's words)
NOT_FOUND, NO_ACCESS, NOT_SERVED, WINDOW = "not found", "no access", "not served by any account", "prompt over its window"


@dataclass(frozen=True, slots=True)
class Group:
    model: str
    fallbacks: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.model}={','.join(self.fallbacks)}"


class Fallbacks:
    """The groups, by the model they stand in for."""

    def __init__(self, groups: Sequence[Group] = ()) -> None:
        self.groups = {g.model: g for g in groups}

    def __bool__(self) -> bool:
        return bool(self.groups)

    def group(self, model: str) -> Group | None:
        return self.groups.get(model)


def choose(group: Group, refused: Collection[str], *, why: str, needed: int | None,
           window: Callable[[str], int | None] = catalogue_window) -> tuple[str | None, list[str]]:
    """The group's next model not refused yet, and the ones passed over on the way (each with why): for a prompt
    over its window (`why` WINDOW), a fallback whose known window is under `needed` tokens (None: not known, so no
    fallback is passed over for it)."""
    passed: list[str] = []
    for model in group.fallbacks:
        if model in refused:
            continue
        own = window(model) if why == WINDOW and needed is not None else None
        if own is not None and needed is not None and own < needed:
            passed.append(f"{model} passed over: its window ({own:,} tokens) is under the prompt's {needed:,}")
            continue
        return model, passed
    return None, passed


def parse_fallbacks(entries: Iterable[str]) -> Fallbacks:
    """`qwen_fallbacks` entries -> Fallbacks; ValueError naming the entry and what is wrong with it. A model the
    catalogue does not name is named in one warning (it is served by an account's own list, or by none)."""
    groups: list[Group] = []
    for entry in entries:
        head, sep, targets = entry.partition("=")
        model = head.strip()
        fallbacks = tuple(t.strip() for t in targets.split(","))
        if not sep or not model or not all(fallbacks):
            raise ValueError(f"qwen_fallbacks: {entry!r} is not {_FORM}")
        if model in fallbacks or len(set(fallbacks)) < len(fallbacks):
            raise ValueError(f"qwen_fallbacks: {entry!r}: a model named twice in its group")
        if any(g.model == model for g in groups):
            raise ValueError(f"qwen_fallbacks: {entry!r}: {model} has a group already (one group per model)")
        for name in (model, *fallbacks):
            row = find(name)
            if row is not None and row.kind != CHAT:
                raise ValueError(f"qwen_fallbacks: {entry!r}: {name} is not a chat model (the catalogue's {row.kind})")
        unknown = [name for name in (model, *fallbacks) if find(name) is None]
        if unknown:
            log.warning("qwen: qwen_fallbacks: %r: %s not in the catalogue (models/catalogue.toml): served only "
                        "where an account's own list names it (a team's server), its window and price unknown",
                        entry, " and ".join(unknown) + (" is" if len(unknown) == 1 else " are"))
        groups.append(Group(model, fallbacks))
    return Fallbacks(groups)

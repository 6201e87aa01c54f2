"""Opt-in fixes of what makes a conversation's prompt differ from turn to turn without meaning anything
(`qwen_cache_fixes`; docs/configuration.md#cache-fixes). Qwen's prompt cache reads a prompt's prefix up to its
first differing byte, so noise early in a prompt turns a turn's cache reads into full-price input. A step of the
turn before the route (wiring.py's checks), on the translated chat request, so that the upstream body, the cache
doctor's fingerprints and the record all see the fixed request. One fix:

    tool-order   the tools sorted by name. Agents that gather tools from MCP servers list them in the order the
                 servers answered (a hash map's, a reconnect's): the same tools in another order change every
                 byte after the first moved tool. A model finds a tool by its name, not its place; clients
                 sort their own for this reason (openai/codex#2611, openclaw#58037, langchain deepagents#2497).

What would change what the model reads — a date in the system prompt, a system message mid-conversation, an
earlier message edited, an image re-encoded — is never rewritten: the cache doctor names it
(observe/cache_doctor.py). Claude Code's billing line, the one noise that is not prompt at all, is dropped by
the Messages translation whatever this option says (api/messages/request.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .cache_lifetime import Prices, Rhythms, choose
from ..models import catalogue
from ..pricing.prices import CREATION, EXPLICIT_HIT

if TYPE_CHECKING:
    from ..exchange import Exchange

OFF, TOOL_ORDER, AUTO = "off", "tool-order", "auto"
CHOICES = (OFF, TOOL_ORDER)
LIFETIMES = (OFF, AUTO)  # qwen_cache_lifetime
SORTED_NOTE = f"tools sorted by name for Qwen's prompt cache (qwen_cache_fixes={TOOL_ORDER})"
RHYTHMS = Rhythms()  # every key's pauses, this process's (cache_lifetime.py: bounded, no prompt text)
_ASKS = ("cache_control", "prompt_cache_retention", "prompt_cache_options")  # a lifetime the client chose itself


def apply(ex: Exchange, fixes: str, lifetime: str = OFF, resolve: Callable[[str], str] = str) -> None:
    """The fixes `fixes` names, made on `ex.chat_body` in place; with `lifetime` auto, the turn's cache lifetime
    chosen (`resolve`: the Qwen model a client's name goes to, the model map's)."""
    if fixes == TOOL_ORDER:
        _sort_tools(ex)
    if lifetime == AUTO:
        choose_lifetime(ex, resolve(ex.requested_model or ""))


def choose_lifetime(ex: Exchange, model: str) -> None:
    """The hour for this turn where the model takes it, the client chose no lifetime and its expected cost is
    lower (cache_lifetime.py): asked as Anthropic's automatic caching asks it, on the gateway's own markers
    (upstream/dashscope/markers.py). Said on the flow either way."""
    body, row = ex.chat_body, catalogue.find(model)
    if not isinstance(body, dict) or row is None or "1h" not in row.cache_ttls or ex.conversation is None:
        return
    if any(k in body for k in _ASKS) or not row.prices:
        return
    tier = next(iter(row.prices.values()))[0]
    _, inp, _, _, _, read, write_5m, write_1h = tier
    if not inp or write_1h is None:
        return
    prices = Prices((write_5m or inp * CREATION) / inp, write_1h / inp, (read or inp * EXPLICIT_HIT) / inp)
    prompt = max(1, ex.client.size // 4)  # the gateway's estimate before any count: 4 bytes a token
    pauses, added = RHYTHMS.turn(ex.key.name, ex.conversation.key, prompt)
    choice = choose(pauses, prompt, added, prices)
    share = f"{choice.over_5m:.0%} of pauses over 5 minutes expected ({pauses.seen} of this key's seen)"
    if choice.hour:
        body["cache_control"] = {"type": "ephemeral", "ttl": "1h"}
        ex.notes.append(f"cache lifetime 1 hour chosen (qwen_cache_lifetime=auto): {share}; expected to save "
                        f"~{choice.saving:,.0f} tokens' input price over the next pause")
    elif choice.saving > 0:  # cheaper on the prior's chance alone, which never buys the hour (cache_lifetime.py)
        ex.notes.append(f"cache lifetime 5 minutes kept (qwen_cache_lifetime=auto): {share}; no pause over 5 "
                        f"minutes seen of this key yet, the hour's ~{choice.saving:,.0f} tokens' expected saving "
                        "not bought on the prior alone")
    else:
        ex.notes.append(f"cache lifetime 5 minutes kept (qwen_cache_lifetime=auto): {share}; the hour would cost "
                        f"~{-choice.saving:,.0f} tokens' input price more")


def _sort_tools(ex: Exchange) -> None:
    body = ex.chat_body
    tools = body.get("tools") if isinstance(body, dict) else None
    if not isinstance(tools, list) or len(tools) < 2:
        return
    named = [_name(t) for t in tools]
    names = [n for n in named if n is not None]
    if len(names) < len(named):  # a tool the model could only find by its place: the order stays the client's
        return
    order = sorted(range(len(tools)), key=names.__getitem__)  # stable: tools of one name keep their order
    if order != list(range(len(tools))):
        body["tools"] = [tools[i] for i in order]
        ex.notes.append(SORTED_NOTE)
        ex.fixed.append(TOOL_ORDER)  # the request line and /metrics say so (observe/)


def _name(tool: object) -> str | None:
    function = tool.get("function") if isinstance(tool, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    return name if isinstance(name, str) and name else None

"""mitmproxy's event dispatch without the addons an event has nothing to do in, and without the machinery
around each hook it calls.

Why: mitmproxy 12 triggers every event on every addon of its chain (35 in mitmdump, 40 or so in mitmweb): for
each one, `AddonManager.trigger_event` opens a `safecall` context manager and an `invoke_addon` coroutine,
which walk the addon and its children with two generators looking for a method named like the event, and
build the hook's arguments from the event's dataclass fields for each hook. A keep-alive request is eight
events (requestheaders, request, responseheaders, response, each followed by `update`); the method exists on
few addons (in mitmdump 3 for requestheaders, 13 for request, 2 and 5 for the answer: 23 a request, the
gateway's own 4 beside them), and each one called cost ~7 µs of that machinery around a hook that does
nothing for most requests (mitmproxy's `map_local`, `anticache`, ... unset).

`install` gives the gateway's own AddonManager a `trigger_event` that walks each addon and its children as
mitmproxy does (`traverse`, `_iter_hooks`: the same `getattr`s, in the same order) and calls the hooks it
finds itself, as `invoke_addon` calls them — the event's arguments, a hook's awaitable awaited — with
`safecall`'s handling: an `AddonHalt` ends the event, an `OptionsError` goes up, any other error is logged as
mitmproxy logs it ("Addon error: …", the traceback from the hook's frame) and ends that addon's part of the
event. Anything else the walk meets (a lookup that raises, a hook that is not a function, a module named like
a hook, `addons` that is not a list) sends that addon to mitmproxy's own path, which handles and logs it as
it does. Nothing is cached: an addon registered, removed or reloaded later is seen at the next event. One
difference, written down: an addon's children are all looked at before its first hook runs, where mitmproxy
looks at the next child after the hook before it (a hook that adds a sibling's hook mid-event is seen at the
next event). Installed once, on that one manager (not on the class: another master in the process keeps
mitmproxy's dispatch), and only over the dispatch it was written against: mitmproxy 12.2.3's
`trigger_event`, `invoke_addon`, `safecall`, the walk (`_iter_hooks`, `traverse`) and `Hook.args`.

Only for mitmproxy's addons and the gateway's: while an addon of another's with hooks on flows or connections
is in the chain (a user's `-s their.py`), every event takes mitmproxy's own `trigger_event`, and the gateway's
comes back when it leaves (addon_chain.py: the chain is walked when it changes, read once per event).

What mitmproxy change would remove it: AddonManager keeping, per event name, the hooks of its chain
(invalidated when the chain or an addon's children change), called without a context manager and a
coroutine each.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
from typing import Any

from mitmproxy import addonmanager, exceptions, hooks

from . import addon_chain
from .fingerprint import WrittenAgainst

WRITTEN = WrittenAgainst(
    seam="events entering only the addons with their hook",
    loses="every event walks every addon, as in mitmproxy (the same hooks, more work per request)",
    code=(("mitmproxy.addonmanager:AddonManager.trigger_event", "b763c59bc4992e33"),
          ("mitmproxy.addonmanager:AddonManager.invoke_addon", "13180532440359de"),
          ("mitmproxy.addonmanager:safecall", "f2052c18340e99b0"),
          ("mitmproxy.addonmanager:AddonManager._iter_hooks", "350b419ab7284091"),
          ("mitmproxy.addonmanager:traverse", "bad3d9f88bdf9269"),
          ("mitmproxy.hooks:Hook.args", "5bab95f7aa358e18"), *addon_chain.CODE))

_NO_CHILDREN = object()
_PLAIN = (types.MethodType, types.FunctionType)  # hooks called here; anything else: mitmproxy's path
_ODD = None  # what _hooks answers when mitmproxy's own path must walk the addon


def _hooks(addon: Any, name: str, found: list) -> list | None:
    """The hooks mitmproxy's walk (traverse, _iter_hooks) finds for `name` in `addon` and its children, in
    its order, appended to `found`; None when the walk meets anything but plain functions and lists of
    children (a lookup that raises, a non-callable, a module named like the hook): mitmproxy's path is taken."""
    try:
        func = getattr(addon, name, None)
        if func:
            if type(func) not in _PLAIN:
                return _ODD
            found.append(func)
        children: Any = getattr(addon, "addons", _NO_CHILDREN)  # traverse: hasattr(a, "addons"), then a.addons
        if children is not _NO_CHILDREN:
            if type(children) is not list:
                return _ODD
            for child in children:
                if _hooks(child, name, found) is None:
                    return _ODD
        return found
    except Exception:
        return _ODD


_FIELDS: dict[type, tuple[str, ...]] = {}  # an event class's dataclass fields: Hook.args reads them per hook


def _args(event: hooks.Hook) -> list:
    """event.args() (Hook.args: the event's field values, in order), the field names read once per class."""
    cls = type(event)
    if cls.args is not hooks.Hook.args:
        return event.args()  # an event of its own making
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(event))  # type: ignore[arg-type]
    return [getattr(event, n) for n in names]


def _addon_error(e: Exception) -> None:
    """What safecall logs for an error of a hook: its traceback from the hook's own frame (mitmproxy cuts its
    own frames off; here this module's is the one to cut)."""
    tb = e.__traceback__.tb_next if e.__traceback__ is not None else None
    addonmanager.logger.error(f"Addon error: {e}", exc_info=(type(e), e, tb or e.__traceback__))


async def _trigger_event(watch: addon_chain.ChainWatch, event: hooks.Hook) -> None:
    """AddonManager.trigger_event (mitmproxy 12.2.3): each addon's hooks found by mitmproxy's walk and called
    as invoke_addon calls them, with safecall's handling; mitmproxy's own while an addon of another's is loaded."""
    if watch.unsettled:
        watch.settle()
    self = watch.manager
    if not watch.ours:
        return await type(self).trigger_event(self, event)
    name = event.name
    args = None
    for addon in self.chain:
        try:  # the common case inline (an addon without children): two lookups
            func = getattr(addon, name, None)
            childless = getattr(addon, "addons", _NO_CHILDREN) is _NO_CHILDREN
        except Exception:
            func, childless = None, False  # _hooks meets it again and hands it to mitmproxy's path
        if childless:
            if not func:
                continue  # mitmproxy's path would walk it, find nothing, call nothing, raise nothing
            found = [func] if type(func) in _PLAIN else _ODD
        else:
            found = _hooks(addon, name, [])
        if found is _ODD:
            try:
                with addonmanager.safecall():
                    await self.invoke_addon(addon, event)
            except exceptions.AddonHalt:
                return
            continue
        if not found:
            continue
        if args is None:
            args = _args(event)  # the same list for every hook: each gets its values unpacked
        try:
            for hook in found:
                res = hook(*args)
                if res is not None and inspect.isawaitable(res):  # async and sync hooks alike, as invoke_addon
                    await res
        except exceptions.AddonHalt:
            return
        except exceptions.OptionsError:
            raise
        except Exception as e:
            _addon_error(e)


def install(manager: addonmanager.AddonManager) -> bool:
    """Give `manager` the dispatch above; False when it is there already, when the manager's dispatch is not
    its class's (another addon's), or when that is not the code this was written against: left as it is."""
    current = getattr(manager, "trigger_event", None)
    if "trigger_event" in vars(manager) or getattr(current, "__func__", None) is not type(manager).trigger_event:
        return False
    if not WRITTEN.fits():
        return False
    watch = addon_chain.watch(manager)
    watch.follow("event dispatch", lambda ours: None)  # read per event (above): named in the watch's log line
    manager.trigger_event = types.MethodType(_trigger_event, watch)  # type: ignore[method-assign]
    return True

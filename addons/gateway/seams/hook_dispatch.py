"""mitmproxy's event dispatch without the addons an event has nothing to do in.

Why: mitmproxy 12 triggers every event on every addon of its chain (35 in mitmdump, 40 or so in mitmweb): for
each one, `AddonManager.trigger_event` opens a `safecall` context manager and an `invoke_addon` coroutine,
which walk the addon and its children with two generators looking for a method named like the event. A
keep-alive request is eight events (requestheaders, request, responseheaders, response, each followed by
`update`), and the method exists on few addons: 4 of the chain for requestheaders, none for update. The
walk, not the hooks, was mitmproxy's largest cost per request in the gateway's profile (bench.py profile:
about a fifth of the process's samples, in bare mitmdump as in the gateway).

`install` gives the gateway's own AddonManager a `trigger_event` that first looks, with the same `getattr`
mitmproxy uses and over the same children, whether an addon has the event's method at all, and enters
mitmproxy's own path (`safecall`, `invoke_addon`) only for those that do: the same hooks, in the same
order, with the same error handling and `AddonHalt`. Nothing is cached: an addon registered, removed or
reloaded later is seen at the next event. Installed once, on that one manager (not on the class: another
master in the process keeps mitmproxy's dispatch), and only over the dispatch it was written against:
mitmproxy 12.2.3's `trigger_event`, whose walk (`_iter_hooks`, `traverse`) `_has_hook` reproduces.

What mitmproxy change would remove it: AddonManager keeping, per event name, the addons that have the hook
(invalidated when the chain or an addon's children change), or skipping `safecall`/`invoke_addon` when
`_iter_hooks` finds nothing.
"""

from __future__ import annotations

import types
from typing import Any

from mitmproxy import addonmanager, exceptions, hooks

from .fingerprint import WrittenAgainst

WRITTEN = WrittenAgainst(
    seam="events entering only the addons with their hook",
    loses="every event walks every addon, as in mitmproxy (the same hooks, more work per request)",
    code=(("mitmproxy.addonmanager:AddonManager.trigger_event", "b763c59bc4992e33"),
          ("mitmproxy.addonmanager:AddonManager._iter_hooks", "350b419ab7284091"),
          ("mitmproxy.addonmanager:traverse", "bad3d9f88bdf9269")))

_NO_CHILDREN = object()


def _has_hook(addon: Any, name: str) -> bool:
    """Whether mitmproxy's walk (addonmanager.traverse, _iter_hooks) would find anything to do for `name`
    in `addon`: a truthy attribute of that name on it or any child. Anything odd (a property that raises,
    `addons` that is not a list) answers True, so mitmproxy's own path meets it and handles it as it does."""
    try:
        if getattr(addon, name, None):
            return True
        children: Any = getattr(addon, "addons", _NO_CHILDREN)  # traverse: hasattr(a, "addons"), then a.addons
        if children is _NO_CHILDREN:
            return False
        for child in children:
            if _has_hook(child, name):
                return True
        return False
    except Exception:
        return True


async def _trigger_event(self: addonmanager.AddonManager, event: hooks.Hook) -> None:
    """AddonManager.trigger_event (mitmproxy 12.2.3), entering only the addons that have the hook."""
    name = event.name
    for addon in self.chain:
        try:  # the common case inline (an addon of mitmproxy's without the hook nor children): two lookups
            idle = not getattr(addon, name, None) and getattr(addon, "addons", _NO_CHILDREN) is _NO_CHILDREN
        except Exception:
            idle = False  # mitmproxy's path meets it, and logs it
        if idle or not _has_hook(addon, name):
            continue  # mitmproxy's path would walk it, find nothing, call nothing, raise nothing
        try:
            with addonmanager.safecall():
                await self.invoke_addon(addon, event)
        except exceptions.AddonHalt:
            return


def install(manager: addonmanager.AddonManager) -> bool:
    """Give `manager` the dispatch above; False when it is there already, when the manager's dispatch is not
    its class's (another addon's), or when that is not the code this was written against: left as it is."""
    current = getattr(manager, "trigger_event", None)
    if "trigger_event" in vars(manager) or getattr(current, "__func__", None) is not type(manager).trigger_event:
        return False
    if not WRITTEN.fits():
        return False
    manager.trigger_event = types.MethodType(_trigger_event, manager)  # type: ignore[method-assign]
    return True

"""Whether every addon of mitmproxy's chain that takes part in flows or connections is mitmproxy's own or the
gateway's: the gateway's event dispatch and message checks (hook_dispatch.py, message_checks.py) serve only then.

Why: those two seams change how mitmproxy runs every addon's hooks and makes every message. A user's own addon
loaded beside the gateway (`-s their.py`, a script reloaded, `addons.add`) must run under mitmproxy's own
dispatch and checks, the ones it was written and tested against. So while such an addon is in the chain the two
seams stand aside for mitmproxy's own code, and come back when it leaves: each change one log line.

Another's addon: an addon at any depth (an addon's `addons`, as mitmproxy's `traverse` walks them: the script
loader's scripts and their modules included) with a hook other than the lifecycle ones (load, configure, running,
done), where the addon's class (a script: its module) or the hook's function is defined outside the packages
`mitmproxy` and `qwen_gateway`. An addon with lifecycle hooks only never meets a flow or a connection.

When the chain is walked: not per event. mitmproxy changes its chain through `AddonManager.register` (called by
`add`, by the script loader for each script and by a script for its module, reloads included) and `remove`:
the watch wraps those two on the one manager (the instance, as the dispatch) and marks the chain unsettled. It
is walked again at the next turn of the event loop (a script loader drops a script from its own list after
`remove` returns) or before the next event, whichever comes first: one attribute read per event. An addon
registered with hooks of another's is seen at once, before any event reaches it. Not seen: an addon that
rewrites its own `addons` list or sets a hook on itself without `register` (mitmproxy asks addons that manage
addons to use `register`).
"""

from __future__ import annotations

import asyncio
import logging
import types
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from mitmproxy import hooks

log = logging.getLogger("qwen")

LIFECYCLE = frozenset({"load", "configure", "running", "done"})
OURS = ("mitmproxy", "qwen_gateway")  # packages whose addons the seams serve
MAX_DEPTH = 32  # deeper nesting, or a loop of addons, is not judged: it counts as another's

# the mitmproxy code the watch relies on: the chain changes through these (each seam that follows the watch names it)
CODE = (("mitmproxy.addonmanager:AddonManager.register", "01ddcca314eebbd3"),
        ("mitmproxy.addonmanager:AddonManager.add", "6c26295c4f0f4eb9"),
        ("mitmproxy.addonmanager:AddonManager.remove", "2e93aab2204a39f6"),
        ("mitmproxy.addons.script:Script.loadscript", "f2972abb206ff2fe"),
        ("mitmproxy.addons.script:ScriptLoader.configure", "d76470344008804a"))


def ours(module: object) -> bool:
    return isinstance(module, str) and any(module == p or module.startswith(p + ".") for p in OURS)


def others_hooks(addon: Any) -> list[str]:
    """The hooks (not lifecycle ones) that make `addon` itself, its children aside, another's: none when it is
    mitmproxy's or the gateway's, or has lifecycle hooks only."""
    owner = addon.__name__ if isinstance(addon, types.ModuleType) else type(addon).__module__
    found = []
    for name in hooks.all_hooks.keys() - LIFECYCLE:
        try:
            func = getattr(addon, name, None)
        except Exception:  # a lookup that raises: not known to be ours
            found.append(name)
            continue
        if func and not isinstance(func, types.ModuleType):  # mitmproxy skips a module named like a hook
            if not (ours(owner) and ours(getattr(func, "__module__", None))):
                found.append(name)
    return sorted(found)


def _walk(addons: Any, depth: int = 0) -> Iterator[Any]:
    if depth > MAX_DEPTH:
        raise RecursionError("addons nested too deep")
    for addon in addons:
        yield addon
        if hasattr(addon, "addons"):
            yield from _walk(addon.addons, depth + 1)


def others(addons: Any) -> list[str]:
    """Each addon of another's in `addons` (at any depth) as `name (hook, ...)`."""
    try:
        return [f"{_name(a)} ({', '.join(found)})" for a in _walk(addons) if (found := others_hooks(a))]
    except Exception as e:  # a walk mitmproxy's own would fail too: the seams stand aside
        return [f"an addon that cannot be walked ({type(e).__name__})"]


def _name(addon: Any) -> str:
    return str(getattr(addon, "name", None) or type(addon).__name__.lower())  # mitmproxy's name for it


class ChainWatch:
    """The chain of one AddonManager, watched: `ours` is whether the seams that follow it may serve."""

    def __init__(self, manager: Any) -> None:
        self.manager = manager
        self.ours = True
        self.others: list[str] = []
        self.unsettled = False
        self._followers: list[tuple[str, Callable[[bool], None]]] = []
        self._register, self._remove = manager.register, manager.remove
        manager.register, manager.remove = self.register, self.remove
        self.settle()
        _watches.add(self)

    def follow(self, label: str, on_change: Callable[[bool], None]) -> None:
        """`on_change(ours)` from now on, each time it changes; `label` names the seam in the log line."""
        self._followers.append((label, on_change))

    def register(self, addon: Any) -> Any:
        """AddonManager.register, and the chain walked again (at once for an addon with another's hooks)."""
        registered = self._register(addon)
        self._changed()
        if self.ours and others([addon]):
            self.settle(addon)
        return registered

    def remove(self, addon: Any) -> None:
        try:
            self._remove(addon)
        finally:
            self._changed()

    def _changed(self) -> None:
        self.unsettled = True
        try:
            asyncio.get_running_loop().call_soon(self._settle_if_unsettled)
        except RuntimeError:  # no loop runs (a test's master): before the next event, then
            pass

    def _settle_if_unsettled(self) -> None:
        if self.unsettled:
            self.settle()

    def settle(self, registering: Any = None) -> None:
        """Walk the chain (and an addon being registered, not in it yet); tell the followers when that changed."""
        found = others(self.manager.chain) + ([] if registering is None else others([registering]))
        self.others, self.unsettled = list(dict.fromkeys(found)), False
        if self.ours == (not found):
            return
        self.ours = not found
        labels = " and ".join(label for label, _ in self._followers)
        if labels:
            log.info(f"qwen: the gateway's {labels}: back, as no addon of another's has hooks on flows or "
                     "connections any more" if self.ours else
                     f"qwen: the gateway's {labels}: mitmproxy's own serve instead while an addon of another's "
                     f"with hooks on flows or connections is loaded: {'; '.join(self.others)}")
        for _, on_change in self._followers:
            on_change(self.ours)

    def standing_aside(self) -> dict[str, list[str]]:
        """Each seam that follows this chain and stands aside now, with the addons of others it stands aside for."""
        return {} if self.ours else {label: self.others for label, _ in self._followers}


_watches: weakref.WeakSet[ChainWatch] = weakref.WeakSet()  # the process's (one master's, but for tests')


def watch(manager: Any) -> ChainWatch:
    """The watch of `manager`'s chain, made on first asking."""
    existing = getattr(manager.register, "__self__", None)
    return existing if isinstance(existing, ChainWatch) else ChainWatch(manager)


def standing_aside() -> dict[str, list[str]]:
    """Each seam standing aside for mitmproxy's own code now, in this process (one master's chain, but in tests)."""
    out: dict[str, list[str]] = {}
    for w in list(_watches):
        for label, addons in w.standing_aside().items():
            out.setdefault(label, []).extend(a for a in addons if a not in out[label])
    return out

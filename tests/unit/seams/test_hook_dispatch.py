"""mitmproxy's event dispatch in the gateway's process (seams/hook_dispatch.py): an event enters only the
addons that have its hook — the same hooks, in the same order, with mitmproxy's own error handling — instead
of every addon of the chain (35 in mitmdump) through a context manager, a coroutine and two generators each;
on another mitmproxy's dispatch, the seam stays out.

Driven through a real DumpMaster (mitmdump's own addons) with the gateway loaded as mitmproxy loads it;
the work is counted (addons entered per event), never timed."""

from __future__ import annotations

import asyncio
import importlib
import logging
import re
import traceback
import types

import pytest
from helpers import another_mitmproxy
from mitmproxy import addonmanager, exceptions, hooks, options, version
from mitmproxy.proxy.layers import http as lhttp
from mitmproxy.test import tflow
from mitmproxy.tools.dump import DumpMaster

from qwen_gateway.seams import addon_chain, fingerprint, hook_dispatch
from qwen_gateway.addon import QwenGateway


@pytest.fixture(autouse=True)
def every_addon_ours(monkeypatch):
    """The dispatch itself, as it serves a chain of mitmproxy's and the gateway's addons: these tests' own
    addons (this module's, a script's) count as such (test_addon_chain.py: what an addon of another's does)."""
    monkeypatch.setattr(addon_chain, "others", lambda addons: [])


def _master(*extra) -> DumpMaster:
    m = DumpMaster(options.Options(), with_termlog=False, with_dumper=True)
    for addon in extra:
        m.addons.add(addon)
    m.options.update(flow_detail=0)
    return m


def _entered(m: DumpMaster) -> list[str]:
    """Names of the chain's addons mitmproxy's invoke_addon is entered for, in order."""
    seen: list[str] = []
    real = m.addons.invoke_addon

    async def counting(addon, event):
        seen.append(type(addon).__name__)
        await real(addon, event)
    m.addons.invoke_addon = counting  # type: ignore[method-assign]
    return seen


def _called(m: DumpMaster, name: str) -> list[str]:
    """Names of the addons whose hook `name` is called, in order (each hook wrapped where it is found)."""
    seen: list[str] = []
    for top in m.addons.chain:
        for addon in addonmanager.traverse([top]):
            hook = getattr(addon, name, None)
            if isinstance(hook, types.MethodType):
                def counting(*args, _hook=hook, _name=type(addon).__name__):
                    seen.append(_name)
                    return _hook(*args)
                setattr(addon, name, counting)
    return seen


def _hooked(m: DumpMaster, name: str) -> list[str]:
    return [type(a).__name__ for a in m.addons.chain
            if any(getattr(x, name, None) for x in addonmanager.traverse([a]))]


async def test_the_gateway_loaded_calls_the_hooks_without_mitmproxys_machinery_around_each(monkeypatch):
    gateway = QwenGateway()
    m = _master(gateway)
    called = _called(m, "requestheaders")
    entered = _entered(m)
    safecalls: list[int] = []
    real_safecall = addonmanager.safecall
    monkeypatch.setattr(addonmanager, "safecall", lambda: safecalls.append(1) or real_safecall())
    f = tflow.tflow(resp=True)
    f.request.host = "example.com"  # not a flow the gateway claims in its default (explicit) mode
    await m.addons.handle_lifecycle(lhttp.HttpRequestHeadersHook(f))
    assert len(m.addons.chain) > 30
    # requestheaders: mitmdump's ProxyAuth, ModifyHeaders, UpstreamAuth and the gateway; update: nobody
    assert called == _hooked(m, "requestheaders") == ["ProxyAuth", "ModifyHeaders", "UpstreamAuth", "QwenGateway"]
    assert entered == [] and safecalls == []  # called as invoke_addon calls them, not through it


class Recorder:
    def __init__(self, name: str, calls: list[str], *, fail: bool = False, halt: bool = False,
                 is_async: bool = False, children: list | None = None, options_error: bool = False) -> None:
        self.name, self.calls, self.fail, self.halt, self.options_error = name, calls, fail, halt, options_error
        if children is not None:
            self.addons = children
        if is_async:
            async def request(flow) -> None:
                self._called()
            self.request = request
        else:
            self.request = lambda flow: self._called()

    def _called(self) -> None:
        self.calls.append(self.name)
        if self.fail:
            raise ValueError(f"{self.name} broke")
        if self.halt:
            raise exceptions.AddonHalt()
        if self.options_error:
            raise exceptions.OptionsError(f"{self.name}: a bad option")


class Quiet:
    """No hook at all, children included."""

    def __init__(self, children: list | None = None) -> None:
        if children is not None:
            self.addons = children


class ModuleNamedLikeAHook:
    request = types  # "from mitmproxy import log" in an addon: a module, not a hook (mitmproxy skips it)


class NotCallable:
    request = 42  # mitmproxy logs an AddonManagerError for it


class RaisingLookup:
    @property
    def request(self):  # getattr(addon, "request", None) raises: mitmproxy logs it
        raise ValueError("no looking")


class NoneChildren:
    addons = None  # traverse iterates it: mitmproxy logs the TypeError


def _chain(calls: list[str]) -> list:
    late = Recorder("late", calls)
    return [Quiet(), Recorder("a", calls), Quiet([Quiet(), Recorder("nested", calls, is_async=True)]),
            Recorder("broken", calls, fail=True), Recorder("async, broken", calls, fail=True, is_async=True),
            Quiet([Recorder("first child, broken", calls, fail=True), Recorder("its sibling", calls)]), ModuleNamedLikeAHook(), NotCallable(), RaisingLookup(), NoneChildren(),
            Recorder("parent", calls, children=[Recorder("child", calls)]), Recorder("halt", calls, halt=True), late]


def _frames(record: logging.LogRecord) -> list[str]:
    """The functions of a logged error's traceback, outermost first."""
    tb = record.exc_info[2] if record.exc_info else None
    return [frame.name for frame in traceback.extract_tb(tb)] if tb else []


async def _run(install: bool, caplog) -> tuple[list[str], list[str]]:
    m = DumpMaster(options.Options(), with_termlog=False, with_dumper=False)
    calls: list[str] = []
    m.addons.chain = _chain(calls)
    if install:
        assert hook_dispatch.install(m.addons)
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        await m.addons.trigger_event(lhttp.HttpRequestHook(tflow.tflow()))
    return calls, [(re.sub(r" at 0x[0-9a-f]+", "", r.getMessage()), r.name, _frames(r)) for r in caplog.records]


async def test_the_same_hooks_in_the_same_order_with_mitmproxys_error_handling(caplog):
    calls, logged = await _run(False, caplog)
    assert (calls, logged) == await _run(True, caplog)
    # an error ends its addon's part of the event (the broken child's sibling is not called); AddonHalt all of it
    assert calls == ["a", "nested", "broken", "async, broken", "first child, broken", "parent", "child", "halt"]
    messages = [message for message, _, _ in logged]
    assert messages[:3] == ["Addon error: broken broke", "Addon error: async, broken broke",
                            "Addon error: first child, broken broke"] and "not callable" in messages[3]
    assert messages[4:] == ["Addon error: no looking", "Addon error: 'NoneType' object is not iterable"]
    # logged by mitmproxy's logger, the traceback from the hook's own frame, as mitmproxy cuts it
    assert {name for _, name, _ in logged} == {"mitmproxy.addonmanager"}
    assert [frames[:2] for _, _, frames in logged[:3]] == [["<lambda>", "_called"], ["request", "_called"],
                                                           ["<lambda>", "_called"]]


@pytest.mark.parametrize("install", [False, True])
async def test_an_options_error_goes_up_as_in_mitmproxy(install):
    m = DumpMaster(options.Options(), with_termlog=False, with_dumper=False)
    calls: list[str] = []
    m.addons.chain = [Recorder("bad option", calls, options_error=True), Recorder("after", calls)]
    if install:
        assert hook_dispatch.install(m.addons)
    with pytest.raises(exceptions.OptionsError, match="bad option: a bad option"):
        await m.addons.trigger_event(lhttp.HttpRequestHook(tflow.tflow()))
    assert calls == ["bad option"]


async def test_the_gateway_loaded_as_a_script_is_called_without_invoke_addon(tmp_path):
    """`-s addons/qwen.py`: the gateway sits three levels down (the script loader, its script, the module's
    `addons`); its hook is found by the same walk and called directly."""
    script = tmp_path / "recorder.py"
    script.write_text("calls = []\nclass Gateway:\n    def request(self, flow):\n        calls.append(flow.id)\n"
                      "addons = [Gateway()]\n")
    m = _master()
    assert hook_dispatch.install(m.addons)
    m.options.update(scripts=[str(script)])
    loader = next(a for a in m.addons.chain if type(a).__name__ == "ScriptLoader")
    for _ in range(100):  # the script's watcher loads it at its first turn of the loop
        if loader.addons and loader.addons[0].ns is not None:
            break
        await asyncio.sleep(0)
    module = loader.addons[0].ns
    entered = _entered(m)
    flow = tflow.tflow()
    await m.addons.trigger_event(lhttp.HttpRequestHook(flow))
    assert module.calls == [flow.id]
    assert "ScriptLoader" not in entered


async def test_addons_added_or_children_changed_after_install_are_seen():
    m = DumpMaster(options.Options(), with_termlog=False, with_dumper=False)
    calls: list[str] = []
    loader = Quiet([])
    m.addons.chain = [loader]
    assert hook_dispatch.install(m.addons)
    event = lhttp.HttpRequestHook(tflow.tflow())
    await m.addons.trigger_event(event)
    loader.addons = [Recorder("script, reloaded", calls)]  # as mitmproxy's script loader does
    m.addons.chain.append(Recorder("registered later", calls))
    await m.addons.trigger_event(event)
    assert calls == ["script, reloaded", "registered later"]


async def test_installed_once_and_only_over_mitmproxys_own_dispatch():
    m = DumpMaster(options.Options(), with_termlog=False, with_dumper=False)
    assert hook_dispatch.install(m.addons) and not hook_dispatch.install(m.addons)  # already there
    other = DumpMaster(options.Options(), with_termlog=False, with_dumper=False)

    async def someone_elses(event: hooks.Hook) -> None:
        return None
    other.addons.trigger_event = someone_elses  # type: ignore[method-assign]
    assert not hook_dispatch.install(other.addons)
    assert other.addons.trigger_event is someone_elses


@pytest.mark.parametrize("event", ["running", "done"])
async def test_lifecycle_events_reach_the_gateway(event, monkeypatch):
    """running/done go through trigger_event too (master.py): the gateway still gets them."""
    got: list[str] = []
    gateway = QwenGateway()
    monkeypatch.setattr(gateway, event, lambda *a: got.append(event))
    m = _master(gateway)
    await m.addons.trigger_event(hooks.RunningHook() if event == "running" else hooks.DoneHook())
    assert got == [event]


async def test_on_another_mitmproxys_dispatch_it_is_left_as_it_is_with_one_line(tmp_path, monkeypatch, caplog):
    """Written against mitmproxy 12.2.3's trigger_event (and the walk it reproduces): a release that changes
    one line of it — here iterating over a copy of the chain — keeps its own dispatch, and the events still
    reach the hooks (every addon walked, as in mitmproxy)."""
    monkeypatch.setattr(fingerprint, "_told", set())
    monkeypatch.setattr(fingerprint, "decided", {})  # this test decides anew
    other = another_mitmproxy.release("mitmproxy.addonmanager", tmp_path, monkeypatch)
    monkeypatch.setattr(version, "VERSION", "12.3.0")
    monkeypatch.setattr(addonmanager.AddonManager, "trigger_event", other.AddonManager.trigger_event)
    importlib.reload(hook_dispatch)  # the seam imported on that mitmproxy
    m = DumpMaster(options.Options(), with_termlog=False, with_dumper=False)
    calls: list[str] = []
    m.addons.chain = [Quiet(), Recorder("a", calls)]
    with caplog.at_level(logging.WARNING, logger="qwen"):
        assert not hook_dispatch.install(m.addons)
        assert not hook_dispatch.install(DumpMaster(options.Options(), with_termlog=False).addons)  # no 2nd line
    assert m.addons.trigger_event.__func__ is other.AddonManager.trigger_event
    entered = _entered(m)
    await m.addons.trigger_event(lhttp.HttpRequestHook(tflow.tflow()))
    assert calls == ["a"] and entered == ["Quiet", "Recorder"]  # mitmproxy's walk: the quiet addon entered too
    assert caplog.messages == [
        "qwen: events entering only the addons with their hook: left out, as this mitmproxy (12.3.0) is not the "
        "code it was written against (mitmproxy 12.2.3; changed: AddonManager.trigger_event); every event walks "
        "every addon, as in mitmproxy (the same hooks, more work per request)"]


async def test_the_same_code_under_another_release_number_is_patched(monkeypatch):
    """The guard reads the code, not the number: a release that leaves the dispatch as it was keeps the seam."""
    monkeypatch.setattr(version, "VERSION", "12.2.9")
    assert hook_dispatch.install(DumpMaster(options.Options(), with_termlog=False, with_dumper=False).addons)

"""The gateway's event dispatch and message checks serve only while every addon with hooks on flows or
connections is mitmproxy's or the gateway's (seams/addon_chain.py): an addon of another's — added, loaded as a
script, a script reloaded — puts mitmproxy's own back at once, and its leaving brings the gateway's back, each
with one log line. Driven through a real DumpMaster with the gateway loaded; the dispatch in use is seen by
mitmproxy's `invoke_addon` being entered (the gateway's calls hooks without it)."""

from __future__ import annotations

import asyncio
import importlib.util
import logging

import pytest
from helpers.procs import PORTFILE_ADDON
from mitmproxy import addonmanager, http, options
from mitmproxy.addons import anticache
from mitmproxy.proxy.layers import http as lhttp
from mitmproxy.test import tflow
from mitmproxy.tools.dump import DumpMaster

from qwen_gateway.addon import QwenGateway
from qwen_gateway.seams import addon_chain, hook_dispatch, message_checks


class Counter:
    """A user's addon: a hook on flows (its class is not mitmproxy's nor the gateway's)."""

    def __init__(self) -> None:
        self.calls = 0

    def responseheaders(self, flow) -> None:
        self.calls += 1


class PortFile:
    """A user's addon with lifecycle hooks only (as tests/helpers/portfile.py)."""

    def load(self, loader) -> None: ...
    def configure(self, updated) -> None: ...
    def running(self) -> None: ...
    def done(self) -> None: ...


@pytest.fixture
async def m():
    message_checks.uninstall()
    master = DumpMaster(options.Options(), with_termlog=False, with_dumper=False)
    master.addons.add(QwenGateway())  # its `load` installs both seams, as in mitmdump
    yield master
    message_checks.uninstall()


def _entered(m: DumpMaster) -> list[str]:
    seen: list[str] = []
    real = m.addons.invoke_addon

    async def counting(addon, event):
        seen.append(type(addon).__name__)
        await real(addon, event)
    m.addons.invoke_addon = counting  # type: ignore[method-assign]
    return seen


async def _event(m: DumpMaster) -> list[str]:
    """The addons mitmproxy's own dispatch entered for one event (none: the gateway's dispatched it)."""
    entered = _entered(m)
    await m.addons.trigger_event(lhttp.HttpResponseHeadersHook(tflow.tflow(resp=True)))
    del m.addons.invoke_addon
    return entered


def _gateways_checks() -> bool:
    return http.MessageData.__post_init__ is message_checks._post_init


async def test_an_addon_of_anothers_puts_mitmproxys_own_back_at_once_and_its_leaving_the_gateways(m, caplog):
    assert await _event(m) == [] and _gateways_checks()
    counter = Counter()
    with caplog.at_level(logging.INFO, logger="qwen"):
        m.addons.add(counter)
        assert not _gateways_checks()  # at once: before any event
        entered = await _event(m)
        assert counter.calls == 1 and "Counter" in entered and "QwenGateway" in entered and len(entered) > 30
        assert [r.getMessage() for r in caplog.records] == [
            "qwen: the gateway's event dispatch and message checks: mitmproxy's own serve instead while an addon "
            "of another's with hooks on flows or connections is loaded: counter (responseheaders)"]
        caplog.clear()
        m.addons.remove(counter)
        assert await _event(m) == [] and _gateways_checks()
    assert [r.getMessage() for r in caplog.records] == [
        "qwen: the gateway's event dispatch and message checks: back, as no addon of another's has hooks on flows "
        "or connections any more"]


async def test_an_addon_with_lifecycle_hooks_only_is_no_reason(m, caplog):
    with caplog.at_level(logging.INFO, logger="qwen"):
        m.addons.add(PortFile())
    assert await _event(m) == [] and _gateways_checks() and caplog.records == []


async def test_a_hook_of_anothers_on_mitmproxys_own_addon_counts_at_any_depth(m):
    parent = anticache.AntiCache()  # mitmproxy's own class; a child of the user's, and a hook set on the instance
    parent.name = "wrapped"
    parent.addons = [anticache.AntiCache()]
    parent.addons[0].name = "child"
    parent.addons[0].response = lambda flow: None
    m.addons.add(parent)
    assert await _event(m) != [] and addon_chain.watch(m.addons).others == ["child (response)"]


async def _loaded(loader, path: str):
    for _ in range(200):  # the script's watcher (re)loads it on its own turns of the loop
        script = next((s for s in loader.addons if s.path == path), None)
        if script is not None and script.ns is not None:
            return script
        await asyncio.sleep(0)
    raise AssertionError("the script did not load")


async def test_a_users_script_and_its_reload_are_seen(m, tmp_path, caplog):
    script = tmp_path / "counts.py"
    script.write_text("calls = []\ndef responseheaders(flow):\n    calls.append(flow.id)\n")
    loader = next(a for a in m.addons.chain if type(a).__name__ == "ScriptLoader")
    with caplog.at_level(logging.INFO, logger="qwen"):
        m.options.update(scripts=[str(script)])
        loaded = await _loaded(loader, str(script))
        entered = await _event(m)
        assert len(loaded.ns.calls) == 1 and "ScriptLoader" in entered and not _gateways_checks()
        script.write_text("def running():\n    pass\n")  # the same script, reloaded without its flow hooks
        loaded.loadscript()
        await asyncio.sleep(0)  # the removal settles at the next turn of the loop
        assert await _event(m) == [] and _gateways_checks()
        m.options.update(scripts=[])
    assert [r.getMessage().split(":")[2] for r in caplog.records] == [" mitmproxy's own serve instead while an addon "
                                                                     "of another's with hooks on flows or connections "
                                                                     "is loaded", " back, as no addon of another's has "
                                                                     "hooks on flows or connections any more"]
    assert str(script) in caplog.records[0].getMessage()


async def test_loaded_before_the_gateway_an_addon_of_anothers_keeps_mitmproxys_own_from_the_start():
    master = DumpMaster(options.Options(), with_termlog=False, with_dumper=False)
    master.addons.add(Counter())
    master.addons.add(QwenGateway())
    assert len(await _event(master)) > 30 and not _gateways_checks()
    assert addon_chain.watch(master.addons).standing_aside() == {"event dispatch": ["counter (responseheaders)"],
                                                                 "message checks": ["counter (responseheaders)"]}
    assert "counter (responseheaders)" in addon_chain.standing_aside()["event dispatch"]  # the process's


async def test_the_watch_costs_one_read_per_event_not_a_walk(m, monkeypatch):
    walks: list[int] = []
    real = addon_chain.ChainWatch.settle
    monkeypatch.setattr(addon_chain.ChainWatch, "settle", lambda self, *a: walks.append(1) or real(self, *a))
    for _ in range(5):
        await m.addons.trigger_event(lhttp.HttpResponseHeadersHook(tflow.tflow(resp=True)))
    assert walks == []
    m.addons.add(PortFile())
    await m.addons.trigger_event(lhttp.HttpResponseHeadersHook(tflow.tflow(resp=True)))
    await asyncio.sleep(0)  # the turn of the loop the change also asked to be walked at
    await m.addons.trigger_event(lhttp.HttpResponseHeadersHook(tflow.tflow(resp=True)))
    assert len(walks) == 1  # walked once after the change, then not again


async def test_register_and_remove_are_mitmproxys_own_underneath(m):
    watch = addon_chain.watch(m.addons)
    assert addon_chain.watch(m.addons) is watch  # one per manager
    assert watch._register.__func__ is addonmanager.AddonManager.register
    assert hook_dispatch.install(m.addons) is False  # installed once


def test_the_test_suites_portfile_has_lifecycle_hooks_only():
    """Every e2e gateway loads tests/helpers/portfile.py beside the gateway: it must not turn the seams off (the
    connections mitmproxy opened are read from its own log instead: helpers/procs.server_connections)."""
    spec = importlib.util.spec_from_file_location("portfile_under_test", PORTFILE_ADDON)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert addon_chain.others(module.addons) == []

"""A mitmproxy module as another release might ship it: the installed module's own source with one line
changed, loaded from a file of its own under a name of its own (so `inspect` reads that file, as the seams'
fingerprint check does). The seams (addons/gateway/seams/) must refuse code they were not written against.

`install()` makes the whole process "another mitmproxy": each piece of code a seam names is replaced by its
edited copy. A gateway test runs it at interpreter start (next_mitmproxy/sitecustomize.py on PYTHONPATH)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from mitmproxy.hooks import all_hooks

if TYPE_CHECKING:
    import pytest

# A plausible change per piece of code a seam names, each keeping the code working as before.
EDITS = {
    "mitmproxy.addonmanager": ("        for i in self.chain:\n            try:\n                with safecall():\n"
                               "                    await self.invoke_addon(i, event)",
                               "        for i in list(self.chain):\n            try:\n                with safecall():\n"
                               "                    await self.invoke_addon(i, event)"),
    "mitmproxy.proxy.server": ('self.log(f"error establishing server connection: {err}")',
                               'self.log(f"could not establish a server connection: {err}")'),
    "mitmproxy.proxy.layers.http._http1": ("# we have headers that we can show in the ui",
                                           "# we have headers the UI can show"),
    "mitmproxy.master": ('logger.error(f"Unhandled asyncio error: {context}")',
                         'logger.error(f"Unhandled asyncio error (no exception): {context}")'),
    "mitmproxy.tools.main": ("# Prefer loop.add_signal_handler where it is available",
                             "# loop.add_signal_handler where it is available, first"),
    "mitmproxy.proxy.layers.websocket": ("# response == original event, so no need to differentiate here.",
                                         "# the response is the original event: no need to tell them apart."),
    "mitmproxy.addons.termlog": ("# We cannot print, exit immediately.", "# We cannot print: exit at once."),
    "mitmproxy.utils.typecheck": ('    e = TypeError(f"Expected {typeinfo} for {name}, but got {type(value)}.")',
                                  '    e = TypeError(f"Expected {typeinfo} for {name}, but got {type(value)}.")  # eager'),
}


def release(module_name: str, directory: Path, monkeypatch: pytest.MonkeyPatch | None = None) -> ModuleType:
    """`module_name` with its EDITS line changed, as `<module_name>_next` in sys.modules (until `monkeypatch`
    is undone; for good without one)."""
    old, new = EDITS[module_name]
    source = Path(importlib.import_module(module_name).__file__ or "").read_text()
    assert source.count(old) == 1, f"{module_name}: the line to change is not in this mitmproxy"
    path = directory / f"{module_name.replace('.', '_')}_next.py"
    path.write_text(source.replace(old, new))
    name = f"{module_name}_next"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    if monkeypatch is not None:
        monkeypatch.setitem(sys.modules, name, module)
    else:
        sys.modules[name] = module
    hooks = dict(all_hooks)
    with warnings.catch_warnings():  # the copy's hook classes (addonmanager's LoadHook) are not mitmproxy's
        warnings.simplefilter("ignore", RuntimeWarning)
        spec.loader.exec_module(module)
    all_hooks.clear()
    all_hooks.update(hooks)
    return module


def install(directory: Path) -> None:
    """Every seam's code replaced by another release's (the copies work as the originals do)."""
    from mitmproxy import addonmanager, master
    from mitmproxy.addons import termlog
    from mitmproxy.proxy import server
    from mitmproxy.proxy.layers import websocket
    from mitmproxy.proxy.layers.http import _http1
    from mitmproxy.tools import main
    from mitmproxy.utils import typecheck

    addonmanager.AddonManager.trigger_event = release(  # type: ignore[method-assign]
        "mitmproxy.addonmanager", directory).AddonManager.trigger_event
    server.ConnectionHandler.open_connection = release(  # type: ignore[method-assign]
        "mitmproxy.proxy.server", directory).ConnectionHandler.open_connection
    _http1.Http1Server.read_headers = release(  # type: ignore[method-assign]
        "mitmproxy.proxy.layers.http._http1", directory).Http1Server.read_headers
    websocket.WebsocketLayer.relay_messages = release(  # type: ignore[method-assign]
        "mitmproxy.proxy.layers.websocket", directory).WebsocketLayer.relay_messages
    master.Master._asyncio_exception_handler = release(  # type: ignore[method-assign]
        "mitmproxy.master", directory).Master._asyncio_exception_handler
    main.run = release("mitmproxy.tools.main", directory).run
    typecheck.check_option_type = release("mitmproxy.utils.typecheck", directory).check_option_type
    next_termlog = release("mitmproxy.addons.termlog", directory)  # the master makes its TermLog at start
    termlog.TermLog, termlog.TermLogHandler = next_termlog.TermLog, next_termlog.TermLogHandler

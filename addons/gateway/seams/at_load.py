"""The seams installed as the addon loads: mitmproxy's master is at hand, and nothing is served yet."""

from __future__ import annotations

from . import hook_dispatch, message_checks, terminal_log


def install(master) -> None:
    hook_dispatch.install(master.addons)  # events enter only the addons with their hook
    message_checks.install(master)  # a message's fields checked without raising for each None
    terminal_log.install(master)  # a log line that cannot be written is dropped, never an exit

"""mitmproxy options the gateway gives other defaults — only while the user has not set them.

- `flow_detail` 0 (mitmdump): the gateway's request line is the one line per request; mitmproxy's own
  per-flow lines (the flow dump, and its connection lines: client/server connect and disconnect,
  "Streaming response from …") are left out. `--set flow_detail=1` (or `-v`, or
  `termlog_verbosity=debug`) brings them back. mitmweb has no `flow_detail`: its connection lines are off
  too, and `--set termlog_verbosity=debug` brings them back.
- `web_columns` + `comment` (mitmweb): the list shows the gateway's one-line summary.

"Set" means set by anyone — the command line (`--set`, `--flow-detail`, `-q`, `-v`), config.yaml or
mitmweb's options editor — even to the option's default value: mitmproxy's OptManager keeps the marker
`optmanager.unset` as an option's value until something sets it (`_Option.value`; `has_changed()` only
compares with the default, so it cannot tell `--set flow_detail=1` from nothing).
"""

from __future__ import annotations

import logging

from mitmproxy import optmanager

# mitmproxy logs every connection event (connect, disconnect, streaming) through this logger at INFO.
CONNECTION_LOGGER = "mitmproxy.proxy.server"


def user_set(opts, name: str) -> bool:
    """Whether the option `name` was set by anyone (to any value). An option mitmproxy does not know
    counts as set: the gateway never touches it."""
    option = getattr(opts, "_options", {}).get(name)
    return option is None or getattr(option, "value", None) is not optmanager.unset


def apply(opts, updated: set[str]) -> None:
    """From the gateway's `configure`: give the defaults above to options nobody set."""
    if "flow_detail" in updated and not user_set(opts, "flow_detail"):
        opts.update(flow_detail=0)
    if "web_columns" in updated and not user_set(opts, "web_columns") and "comment" not in opts.web_columns:
        opts.update(web_columns=[*opts.web_columns, "comment"])
    if {"flow_detail", "termlog_verbosity"} & updated:
        # mitmweb has no flow_detail (mitmdump's dumper declares it): there only termlog_verbosity decides
        detail = opts.flow_detail if "flow_detail" in opts else 0
        quiet = detail == 0 and getattr(opts, "termlog_verbosity", "info") != "debug"
        logging.getLogger(CONNECTION_LOGGER).setLevel(logging.WARNING if quiet else logging.NOTSET)

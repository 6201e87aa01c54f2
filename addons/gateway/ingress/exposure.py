"""mitmproxy's own options, held to what the gateway needs whenever they change (called from `configure`).

- Listening beyond loopback without client keys is refused (anyone reaching the port would spend the
  account's quota), unless the user accepts it with `qwen_allow_open`.
- In reverse mode every flow is the gateway's: no request is streamed past it, and uploads are bounded.
- The client's Host header is kept (it tells a DNS-rebinding page from a real client).
- Connections are lazy: an eager strategy would connect to the client's original target first.
- `proxy_debug` prints every byte clients send: the gateway redacts the credentials it knows in every
  log line (observe/terminal.py) and says at start-up that other secrets may still show.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from mitmproxy import exceptions
from mitmproxy.proxy import mode_specs

from ..settings.config import KEYS_ENV, Config
from .. import peers
from .connection_policy import ConnectionPolicy
from .listeners import bind_loopback_by_default

log = logging.getLogger("qwen")


def enforce(opts, updated: set[str], config: Config, policy: ConnectionPolicy,
            named_keys: Callable[[], bool] = lambda: False) -> None:
    """`named_keys`: whether named client keys (qwen-keys) exist (asked only when a listener is exposed)."""
    if {"mode", "listen_host", "qwen_client_keys_file", "qwen_allow_open"} & updated and "mode" in opts:
        exposed = peers.exposed_listeners(list(opts.mode), opts.listen_host)
        if exposed and not config.client_keys and not config.allow_open and not named_keys():
            raise exceptions.OptionsError(
                "The Qwen gateway would listen beyond loopback without client keys: " + ", ".join(exposed)
                + f". Add named keys with qwen-keys add NAME, set ${KEYS_ENV} or --set qwen_client_keys_file=FILE, "
                "or --set qwen_allow_open=true to accept that anyone reaching the port spends your quota.")
    if {"listen_host", "mode", "stream_large_bodies"} & updated and "mode" in opts:
        policy.loopback_only = bind_loopback_by_default(opts)
        reverse_only = all(isinstance(mode_specs.ProxyMode.parse(m), mode_specs.ReverseMode) for m in opts.mode)
        if reverse_only and getattr(opts, "stream_large_bodies", None):  # proxyserver's: absent in bare tests
            # mitmproxy would stream a large request to the reverse target (a label here) before any hook
            # sees it; every flow is the gateway's in reverse mode, so nothing needs streaming through
            log.warning("qwen: stream_large_bodies is ignored in reverse mode: the gateway reads each request")
            opts.update(stream_large_bodies=None)
        if reverse_only and "body_size_limit" in opts and opts.body_size_limit is None:
            # mitmproxy buffers a whole upload before any hook can refuse it: bound it (reverse mode only,
            # where every flow is the gateway's; elsewhere it would also cut passed-through downloads).
            # Up to twice the limit the client still gets the gateway's own 413 in OpenAI's format.
            opts.update(body_size_limit=f"{2 * (config.max_body >> 20) + 1}m")
    if "proxy_debug" in updated and getattr(opts, "proxy_debug", False):
        log.warning("qwen: WARNING: proxy_debug logs the raw bytes of every request and answer, secrets "
                    "included: the gateway redacts credentials it recognises (Authorization, Proxy-Authorization, "
                    "x-api-key, api-key, Cookie headers; Bearer and sk- keys), others (in bodies) may still show")
    if "keep_host_header" in updated and not opts.keep_host_header:
        # the Host the client sent tells a rebinding page from a real client; the engine sets its own
        opts.update(keep_host_header=True)
    if "connection_strategy" in updated and opts.connection_strategy != "lazy":
        # Eager would open a connection to the client's original target (api.openai.com)
        # before the gateway reroutes the request; lazy connects only where we send it.
        opts.update(connection_strategy="lazy")

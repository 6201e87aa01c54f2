"""Test-only mitmproxy script: records every server connection mitmproxy opened to $QWEN_TEST_CONNLOG (one
host:port per line; "relay" for the gateway's own relay, the only server a claimed flow may reach).

A hook on connections, so loaded only by the tests that read it (`Gateway(connlog=True)`): as any addon of
another's beside the gateway, it puts mitmproxy's own event dispatch and message checks back for that gateway
(seams/addon_chain.py); the other e2e gateways run with the gateway's."""

import os

from mitmproxy import ctx


class ConnLog:
    def server_connected(self, data) -> None:  # opened for real: an attempt the gateway refused is not here
        if data.server.address:
            gateway = ctx.master.addons.get("qwengateway")
            relay = getattr(getattr(gateway, "relay", None), "address", None)
            address = tuple(data.server.address[:2])
            with open(os.environ["QWEN_TEST_CONNLOG"], "a") as f:
                f.write("relay\n" if address == relay else f"{address[0]}:{address[1]}\n")


addons = [ConnLog()]

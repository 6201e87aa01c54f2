"""Test-only mitmproxy script: writes the listening ports to $QWEN_TEST_PORTFILE once running,
and records every server connection mitmproxy opened to $QWEN_TEST_CONNLOG (one host:port per line;
"relay" for the gateway's own loopback relay, the only server a claimed flow may reach)."""

import json
import os

from mitmproxy import ctx


class PortFile:
    def running(self) -> None:
        ps = ctx.master.addons.get("proxyserver")
        ports = {s.mode.full_spec: s.listen_addrs[0][1] for s in ps.servers if s.listen_addrs}
        path = os.environ["QWEN_TEST_PORTFILE"]
        with open(path + ".tmp", "w") as f:
            json.dump(ports, f)
        os.replace(path + ".tmp", path)

    def server_connected(self, data) -> None:  # opened for real: an attempt the gateway refused is not here
        log = os.environ.get("QWEN_TEST_CONNLOG")
        if log and data.server.address:
            gateway = ctx.master.addons.get("qwengateway")
            relay = getattr(getattr(gateway, "relay", None), "address", None)
            address = tuple(data.server.address[:2])
            with open(log, "a") as f:
                f.write("relay\n" if address == relay else f"{address[0]}:{address[1]}\n")


addons = [PortFile()]

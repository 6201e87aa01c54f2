"""Test-only mitmproxy script: writes the listening ports to $QWEN_TEST_PORTFILE once running.

Lifecycle hooks only, so that the gateway's seams serve beside it as in production (an addon of another's with
hooks on flows or connections puts mitmproxy's own dispatch back: seams/addon_chain.py). The server
connections mitmproxy opens are recorded by connlog.py, loaded only where a test reads them."""

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


addons = [PortFile()]

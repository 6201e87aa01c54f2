"""Test-only mitmproxy script: writes the listening ports to $QWEN_TEST_PORTFILE once running,
and records every upstream connection attempt to $QWEN_TEST_CONNLOG (one host:port per line)."""

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

    def server_connect(self, data) -> None:
        log = os.environ.get("QWEN_TEST_CONNLOG")
        if log and data.server.address:
            with open(log, "a") as f:
                f.write(f"{data.server.address[0]}:{data.server.address[1]}\n")


addons = [PortFile()]

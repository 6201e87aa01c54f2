"""Test-only mitmproxy script for a mitmdump playing a corporate proxy: appends every CONNECT it is asked
for to $QWEN_TEST_CONNECT_LOG, one `host:port` per line (whether it carried Proxy-Authorization is not
written: the header's value is a credential)."""

import os


class ConnectLog:
    def http_connect(self, flow) -> None:
        with open(os.environ["QWEN_TEST_CONNECT_LOG"], "a") as f:
            f.write(f"{flow.request.host}:{flow.request.port}\n")


addons = [ConnectLog()]

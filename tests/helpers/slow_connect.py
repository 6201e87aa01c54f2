"""Test-only mitmproxy script, loaded ahead of the gateway: its `client_connected` waits
$QWEN_TEST_CONNECT_DELAY_S seconds, as a user's own addon does that looks a client up somewhere (an allow-list,
a database). Until it returns, mitmproxy holds the connection and the addons after it have not heard of it."""

import asyncio
import os


class SlowConnect:
    async def client_connected(self, client) -> None:
        await asyncio.sleep(float(os.environ.get("QWEN_TEST_CONNECT_DELAY_S", "0.5")))


addons = [SlowConnect()]

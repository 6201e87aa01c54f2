"""What the gateway imports only at first need (issue #34: RSS after 10,000 requests ≤ 100 MB): tiktoken (its
encoding ~25 MB: tests/unit/test_tokens_lazy.py) and httpx (1.6 MB: the OAuth and web-session refresh, the device
login). A gateway of key accounts serving chat requests never loads either."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


LAZY = ["httpx", "tiktoken", "qwen_gateway.observe.otlp", "opentelemetry"]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory) -> set[str]:
    """The lazy modules a fresh process holds after loading and configuring the gateway (one process for all)."""
    code = ("import sys\nfrom mitmproxy.tools import dump\nimport qwen_gateway.addon, qwen_gateway.components\n"
            "from mitmproxy.test import taddons\ngw = qwen_gateway.addon.QwenGateway()\n"
            "with taddons.context(gw) as tctx:\n    gw.configure(set(tctx.options.keys()))\n"
            f"print(' '.join(m for m in {LAZY!r} if m in sys.modules))")
    env = {**os.environ, "QWEN_GATEWAY_HOME": str(tmp_path_factory.mktemp("state"))}  # never the real home's
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


# traces' exporter and OpenTelemetry's packages: nothing of traces while they are off (the default)
@pytest.mark.parametrize("module", LAZY)
def test_loading_the_gateway_does_not_import(loaded, module):
    assert module not in loaded


async def test_the_oauth_client_still_gets_its_timeouts():
    from qwen_gateway.auth import oauth

    client = oauth.client()
    try:
        assert (client.timeout.read, client.timeout.connect) == (oauth.TIMEOUT_S, oauth.CONNECT_TIMEOUT_S)
    finally:
        await client.aclose()

"""The gateway on another mitmproxy: a real mitmdump whose every piece of code the seams name (addons/gateway/
seams/) was changed by a line at start (helpers/another_mitmproxy.py). Each seam stays out, says so in one
line, and the gateway serves whole and streamed answers all the same; request heads stay bounded
(through mitmproxy's public API: seams/http1_heads.py's fallback)."""

from __future__ import annotations

import os

import httpx
import openai
import pytest

from helpers.procs import ROOT

pytestmark = pytest.mark.e2e

HELPERS = ROOT / "tests" / "helpers"


def test_on_another_mitmproxy_every_seam_stays_out_and_the_gateway_serves(make_gateway, emu, oauth_home, tmp_path):
    path = os.pathsep.join(p for p in (str(HELPERS / "next_mitmproxy"), str(HELPERS), os.environ.get("PYTHONPATH"))
                           if p)
    gw = make_gateway("next", env={**oauth_home["env"], "PYTHONPATH": path,
                                   "QWEN_TEST_NEXT_MITMPROXY": str(tmp_path)})
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0, timeout=30)
    messages = [{"role": "user", "content": "ping"}]
    whole = client.chat.completions.create(model="gpt-4o", messages=messages)
    assert whole.choices[0].message.content == "Echo: ping"
    chunks = client.chat.completions.create(model="gpt-4o", messages=messages, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: ping"
    # the head bound's seam is out, its public-API fallback holds: a 100 KiB head is refused (431, OpenAI's
    # format), before and after a request on the same connection; a head within the limit is served
    with httpx.Client(base_url=gw.url, timeout=30) as web:
        big = {"x-big": "a" * (100 << 10), "authorization": "Bearer k"}
        refused = web.post("/v1/chat/completions", headers=big, json={"model": "gpt-4o", "messages": messages})
        assert refused.status_code == 431 and refused.json()["error"]["code"] == "request_header_fields_too_large"
        ok = web.post("/v1/chat/completions", headers={"x-fine": "a" * (30 << 10), "authorization": "Bearer k"},
                      json={"model": "gpt-4o", "messages": messages})
        assert ok.status_code == 200, ok.text
        again = web.post("/v1/chat/completions", headers=big, json={"model": "gpt-4o", "messages": messages})
        assert again.status_code == 431
        # /health says which seams this mitmproxy left out, as `qwen-gateway --version` does
        left_out = web.get("/health").json()["software"]["seams"]["left_out"]
        assert sorted(left_out) == ["hook_dispatch", "http1_heads", "loop_reports", "message_checks",
                                    "server_connect", "shutdown_signals", "terminal_log", "websocket_messages"]
    gw.stop()
    log = gw.log()
    refused = [line.split("qwen: ", 1)[1].split(": left out", 1)[0] for line in log.splitlines()
               if "left out, as this mitmproxy" in line]
    assert sorted(refused) == ["SIGTERM drains the gateway",
                               "WebSocket messages bounded in mitmproxy's WebSocket layer",
                               "accept() storms tallied and cancelled connection handlers quiet at exit",
                               "events entering only the addons with their hook",
                               "in-process connections to the stream relay",
                               "log lines that cannot be written dropped",
                               "message fields checked without an exception each",
                               "request heads bounded in mitmproxy's HTTP/1 reader"], log
    assert "Traceback" not in log, log

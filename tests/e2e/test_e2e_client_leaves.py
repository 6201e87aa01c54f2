"""A client that leaves before its answer: the gateway records 499 and cancels the upstream request at once,
non-stream and stream alike, so a slow model's answer is not paid for by nobody. The emulator counts a request
whose client closed the connection while it was still thinking (`stats["abandoned"]`)."""

from __future__ import annotations

import time

import httpx
import pytest

pytestmark = pytest.mark.e2e


def leave_early(gw, *, stream: bool, path: str = "/v1/chat/completions", body: dict | None = None) -> None:
    body = body or {"model": "gpt-4o", "stream": stream, "messages": [{"role": "user", "content": "slow answer"}]}
    with httpx.Client(trust_env=False, timeout=httpx.Timeout(1.0, connect=5.0)) as c:
        with pytest.raises(httpx.ReadTimeout):  # the client gives up and closes its connection
            c.post(gw.url + path, json=body)


def wait_for(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
def test_a_client_that_leaves_cancels_the_upstream_request(gw, emu, stream):
    emu.switches(first_byte_delay_ms=6000)
    leave_early(gw, stream=stream)
    # the emulator is still "thinking" (6 s) when the gateway's upstream connection closes
    assert wait_for(lambda: emu.stats()["abandoned"] == 1), emu.stats()
    assert wait_for(lambda: " 499 " in gw.log())
    line = next(ln for ln in gw.log().splitlines() if "POST /v1/chat/completions" in ln and " 499 " in ln)
    assert "gpt-4o" in line


def test_a_responses_client_that_leaves_cancels_the_upstream_request(gw, emu):
    emu.switches(first_byte_delay_ms=6000)
    leave_early(gw, stream=False, path="/v1/responses", body={"model": "gpt-4o", "input": "slow answer"})
    assert wait_for(lambda: emu.stats()["abandoned"] == 1), emu.stats()


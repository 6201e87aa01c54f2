"""docs/deploy.md's "Two gateways behind nginx", run: Debian's nginx on loopback with the `nginx` block of the
page as printed (only the ports and the host name changed), in front of two real gateways sharing one real
PostgreSQL, driven by openai-python."""

from __future__ import annotations

import json
import re
import shutil
import signal
import time
from pathlib import Path

import httpx
import pytest

from helpers.nginx import Nginx
from helpers.pgserver import pg_server, pg_url  # noqa: F401  (fixtures)
from helpers.procs import ROOT, Gateway, free_port, until, write_creds

pytestmark = pytest.mark.e2e

KEY = "deploy-client-key"


def nginx_block() -> str:
    """The page's nginx configuration, exactly as printed."""
    text = (ROOT / "docs" / "deploy.md").read_text()
    blocks = re.findall(r"```nginx\n(.*?)```", text, re.S)
    assert len(blocks) == 1, "docs/deploy.md should show one nginx block"
    return blocks[0]


def configured(block: str, listen: int, gateways: list[int]) -> str:
    """The printed block for this test: its ports, and 127.0.0.1 as the host name clients use."""
    out = block.replace("listen 8080;", f"listen 127.0.0.1:{listen};").replace("qwen.internal", "127.0.0.1")
    for printed, port in zip(("127.0.0.1:8081", "127.0.0.1:8082"), gateways):
        assert printed in out
        out = out.replace(printed, f"127.0.0.1:{port}")
    return out


@pytest.fixture
def deployed(tmp_path, emu, pg_url):
    """(nginx's URL, gateway one, gateway two, nginx), the gateways started as the page shows."""
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        pytest.skip("nginx is not installed (Debian package nginx-light: scripts/install-test-tools.sh)")
    issued = emu.admin("POST", "tokens", {"expires_in": 3600})
    gws: list[Gateway] = []
    nginx = None
    try:
        for name in ("one", "two"):
            home = tmp_path / name
            write_creds(home / ".qwen", access_token=issued["access_token"], refresh_token=issued["refresh_token"],
                        resource_url=emu.url)
            env = {"QWEN_DIR": str(home / ".qwen"), "QWEN_GATEWAY_HOME": str(home / "state"), "HOME": str(home),
                   "QWEN_OAUTH_BASE_URL": emu.url, "QWEN_GATEWAY_KEYS": KEY}
            gw = Gateway(home / "gw", env=env, args=("--set", f"qwen_state_url={pg_url}",
                                                     "--set", "qwen_allowed_hosts=qwen.internal"))
            gws.append(gw.start())
        port = free_port()
        nginx = Nginx(tmp_path / "nginx", port, configured(nginx_block(), port, [gw.port for gw in gws]))
        nginx.start()
        yield f"http://127.0.0.1:{nginx.port}", gws[0], gws[1], nginx
    finally:
        if nginx is not None:
            nginx.stop()
        for gw in gws:
            gw.stop()


def client(url: str):
    import openai
    return openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0, timeout=30)


def served(gw: Gateway) -> int:
    """Chat and Responses requests the gateway answered (its own /metrics, on its own port)."""
    text = httpx.get(gw.url + "/metrics", headers={"authorization": f"Bearer {KEY}"}, trust_env=False).text
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("qwen_requests_total{") and 'endpoint="models"' not in line))


def test_requests_alternate_and_a_stored_response_is_continued_through_the_other(deployed, emu):
    url, one, two, _ = deployed
    c = client(url)
    first = c.responses.create(model="gpt-4o", input="remember the word kumquat")
    ids = [first.id]
    for i in range(3):  # each turn continues the last, whichever gateway stored it
        ids.append(c.responses.create(model="gpt-4o", previous_response_id=ids[-1], input=f"turn {i}").id)
    assert "kumquat" in json.dumps(emu.chat_requests()[-1]["body"]["messages"])
    assert served(one) >= 2 and served(two) >= 2  # nginx alternated: both stored, both continued
    assert c.responses.retrieve(first.id).output_text == "Echo: remember the word kumquat"


def test_a_stream_arrives_event_by_event_through_nginx(deployed, emu):
    url, *_ = deployed
    emu.switches(gap_ms=200)
    arrivals = []
    t0 = time.monotonic()
    with client(url).chat.completions.create(model="gpt-4o", stream=True,
                                             messages=[{"role": "user", "content": "a b c d e"}]) as stream:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                arrivals.append(time.monotonic() - t0)
    assert len(arrivals) >= 5
    # each piece arrives as the emulator sent it (200 ms apart), not collected until the end of the answer
    assert arrivals[-1] - arrivals[0] >= 0.6, arrivals


def test_with_one_gateway_stopped_the_other_answers_everything(deployed):
    url, one, two, _ = deployed
    one.stop()
    c = client(url)
    for i in range(4):
        r = c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": f"still {i}"}])
        assert r.choices[0].message.content == f"Echo: still {i}"


def test_a_client_without_the_key_is_refused_through_nginx(deployed):
    """Every request reaches the gateways from 127.0.0.1 through nginx: the client keys are what keeps the
    network out."""
    url, *_ = deployed
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
    r = httpx.post(url + "/v1/chat/completions", json=body, trust_env=False, timeout=30)
    assert r.status_code == 401 and r.json()["error"]["type"] == "invalid_request_error", r.text
    r = httpx.post(url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {KEY}"},
                   trust_env=False, timeout=30)
    assert r.status_code == 200


def test_requests_during_a_drain_are_all_served_by_the_other_gateway(deployed, emu):
    """A gateway stopping (SIGTERM) drains: it finishes what runs and refuses what is new with 503 before any
    upstream call, so nginx may send that request to the other gateway (`http_503 non_idempotent`): a client
    going through nginx sees no 503, and Qwen is asked once per request."""
    url, one, two, nginx = deployed
    emu.switches(chunk_count=10, gap_ms=500)  # a stream of about 5 s keeps gateway one draining
    direct = client(one.url)
    stream = iter(direct.chat.completions.create(model="gpt-4o", stream=True,
                                                 messages=[{"role": "user", "content": "a b c d e"}]))
    next(stream)
    asked = len(emu.chat_requests())
    assert one.proc is not None
    one.proc.send_signal(signal.SIGTERM)

    def draining() -> bool:
        r = httpx.get(one.url + "/health/readiness", trust_env=False, timeout=5)
        return r.status_code == 503 and "draining" in r.json().get("reasons", [])

    until(draining, "gateway one draining", limit=10, every=0.05)
    c = client(url)  # no retries of the client's own: every answer is nginx's
    refused_by_one = f"upstream=127.0.0.1:{one.port}, 127.0.0.1:{two.port} statuses=503, 200"
    statuses = []
    for i in range(16):  # at least 8, and on until nginx has tried the draining gateway (it takes turns)
        try:
            r = c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": f"during {i}"}])
            statuses.append(200 if r.choices[0].message.content == f"Echo: during {i}" else 0)
        except Exception as e:  # the SDK's APIStatusError: what the client would have seen
            statuses.append(getattr(e, "status_code", -1))
        if i >= 7 and any(line.endswith(refused_by_one) for line in nginx.tried()):
            break
    assert statuses == [200] * len(statuses), statuses
    tried = "\n".join(nginx.tried())
    assert refused_by_one in tried, f"nginx never tried gateway one:\n{tried}\n{nginx.errors()}"
    # its request line is written once the refusal's exchange ends, a moment after nginx had the 503
    until(lambda: "gateway_shutting_down" in one.log(), "gateway one's line for the refusal", limit=10)
    list(stream)  # the stream that kept it draining, whole
    assert one.proc.wait(30) == 0
    assert len(emu.chat_requests()) == asked + len(statuses)  # each request reached Qwen once: the refusal sent nothing

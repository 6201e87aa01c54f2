"""/health/liveness and /health/readiness (issue 40, item 3) in mitmproxy's test style: what each answers, to
whom (kubelet and Docker send no client key and come from beyond loopback), and that nothing secret shows.
Through real mitmdump, a keyed gateway and a real PostgreSQL outage: tests/e2e/test_e2e_probes.py; from outside a
container: tests/e2e/test_e2e_container.py."""

from __future__ import annotations

import json

import pytest
from mitmproxy.test import taddons

from qwen_gateway.health_probes import Probes
from qwen_gateway.storage.health import health_of
from unit.test_addon import KEY_CRED, OAUTH_CRED, StaticPool, chat_flow, make, setup, through  # noqa: F401
from unit.ingress.test_mistakes import to_the_proxy_itself

POD = ("10.1.2.3", 8080)  # the address kubelet probes: the pod's own, Host included
KUBELET = ("10.1.0.1", 41000)


def probe(path: str, *, key: bytes | None = None, peer=KUBELET):
    """A probe as kubelet sends it: GET to the pod's address, Host that address, no client key."""
    f = chat_flow(b"", host=f"{POD[0]}:{POD[1]}", path=path, method="GET", reverse=True,
                  auth=b"Bearer " + key if key else b"")
    if key is None:
        del f.request.headers["authorization"]
    f.client_conn.sockname, f.client_conn.peername = POD, peer
    return f


@pytest.fixture
def keyed(monkeypatch):
    """A gateway that requires client keys, with two accounts (their names and URLs must not show)."""
    monkeypatch.setenv("QWEN_GATEWAY_KEYS", "the-client-key")
    gw, _ = make(OAUTH_CRED, KEY_CRED)
    with taddons.context(gw) as tctx:
        gw.configure(set(tctx.options.keys()))
        tctx.configure(gw, listen_host="0.0.0.0")  # as in a container: every interface (keys set)
        yield gw


def body(f) -> dict:
    return json.loads(f.response.content)


async def test_the_probes_answer_without_a_key_from_beyond_loopback_and_health_does_not(keyed):
    live = await through(keyed, probe("/health/liveness"))
    ready = await through(keyed, probe("/health/readiness"))
    assert (live.response.status_code, body(live)) == (200, {"status": "alive"})
    assert (ready.response.status_code, body(ready)) == (200, {"status": "ready"})
    assert ready.response.headers["content-type"] == "application/json"
    shown = live.response.text + ready.response.text
    for secret in ("default", "ds", "portal.qwen.ai", "dashscope", "secret"):
        assert secret not in shown
    # /health shows the accounts: beyond loopback it stays behind the key
    assert (await through(keyed, probe("/health"))).response.status_code == 401
    assert (await through(keyed, probe("/health", key=b"the-client-key"))).response.status_code == 200


async def test_a_wrong_key_does_not_refuse_a_probe(keyed):
    f = await through(keyed, probe("/health/readiness", key=b"not-a-key"))
    assert f.response.status_code == 200


async def test_a_probe_from_a_page_of_another_site_is_refused(keyed):
    """The Host and Origin checks stay: a DNS-rebinding page gets nothing, not even the status."""
    f = probe("/health/readiness")
    f.request.headers["host"] = "evil.example"
    assert (await through(keyed, f)).response.status_code == 403


async def test_readiness_is_503_without_a_usable_account(keyed):
    keyed.pool = StaticPool()  # no account at all
    f = await through(keyed, probe("/health/readiness"))
    assert (f.response.status_code, body(f)) == (503, {"status": "not_ready", "reasons": ["no_usable_account"]})
    assert (await through(keyed, probe("/health/liveness"))).response.status_code == 200


class CoolingPool(StaticPool):
    def status(self):
        return [{**row, "state": "cooling_down"} for row in super().status()]


async def test_readiness_is_503_while_every_account_cools_down(keyed):
    keyed.pool = CoolingPool(OAUTH_CRED, KEY_CRED)
    f = await through(keyed, probe("/health/readiness"))
    assert (f.response.status_code, body(f)["reasons"]) == (503, ["no_usable_account"])


async def test_readiness_is_503_while_draining(keyed):
    keyed.local.probes.draining = True
    f = await through(keyed, probe("/health/readiness"))
    assert (f.response.status_code, body(f)["reasons"]) == (503, ["draining"])
    assert (await through(keyed, probe("/health/liveness"))).response.status_code == 200


def test_readiness_is_503_while_a_storage_is_down(tmp_path):
    """A storage the process uses is down (what `/health` lists under `storage`): not ready, and ready again
    once it is back. The outage is declared here as the stores declare theirs (`Health.lost`); a real one,
    PostgreSQL stopped under a running gateway: tests/e2e/test_e2e_probes.py."""
    back = []
    health = health_of(f"test:{tmp_path}", f"the test storage {tmp_path}", "test storage", lambda: bool(back))
    probes = Probes(lambda: StaticPool(OAUTH_CRED))
    assert probes.answer("readiness") == (200, {"status": "ready"})
    health.lost("disk full")
    try:
        assert probes.answer("readiness") == (503, {"status": "not_ready", "reasons": ["storage_unavailable"]})
        assert str(tmp_path) not in json.dumps(probes.answer("readiness"))
    finally:
        back.append(True)  # the probe thread sees it back within a second, and ends
        health.reason = None


def test_readiness_is_503_until_the_shared_keys_were_read():
    """A gateway that never read its named client keys refuses every request (503 state_unavailable): not ready,
    so a balancer sends the traffic elsewhere until the first read has worked."""
    keys: dict = {"state": "unread"}
    probes = Probes(lambda: StaticPool(OAUTH_CRED), lambda: keys)
    assert probes.answer("readiness") == (503, {"status": "not_ready", "reasons": ["keys_unread"]})
    keys = {"state": "read", "active": 1}
    assert probes.answer("readiness") == (200, {"status": "ready"})


async def test_the_probes_are_answered_at_the_explicit_proxy_like_health(setup):
    """Started as an explicit proxy, a request addressed to the gateway itself is answered with what to type
    instead — but its own monitoring routes, the probes with /health and /metrics, are answered."""
    gw, _, _ = setup
    for path in ("/health/liveness", "/health/readiness"):
        f = await through(gw, to_the_proxy_itself(b"", path, method="GET"))
        assert f.response.status_code == 200, f.response.text


async def test_a_probe_with_another_method_is_not_a_probe(keyed):
    f = probe("/health/readiness", key=b"the-client-key")
    f.request.method = "POST"
    assert (await through(keyed, f)).response.status_code == 404

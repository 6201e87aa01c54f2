"""Remote login's route (ingress/login.py): off (404), loopback only (403 to anyone else) or open, by
`qwen_remote_login`; the device logins made once, at the first request; /auth/initiate with an optional account
name and /auth/poll by id, answered as JSON; a saved login reloads the accounts. tests/unit/auth/test_remote.py
has the device logins' own tests."""

from __future__ import annotations

import dataclasses
import json

import pytest
from mitmproxy.test import tflow

from qwen_gateway.errors import GatewayError
from qwen_gateway.exchange import ClientRequest, Exchange
from qwen_gateway.ingress.login import LoginRoute
from qwen_gateway.settings.config import Config


class Logins:
    made: list = []

    def __init__(self, auth, on_success) -> None:
        self.auth, self.on_success = auth, on_success
        self.calls: list = []
        Logins.made.append(self)

    async def initiate(self, account=None):
        self.calls.append(("initiate", account))
        return {"device_code_id": "d1", "account": account or "default"}

    async def poll(self, id):
        self.calls.append(("poll", id))
        self.on_success("work")
        return {"status": "success", "account": "work"}


@pytest.fixture
def route():
    Logins.made = []
    reloads: list = []
    r = LoginRoute(lambda: reloads.append(True), Logins)
    r.reloads = reloads  # type: ignore[attr-defined]
    return r


def request(path: str, body: dict | None, peer: str = "127.0.0.1"):
    f = tflow.tflow()
    f.client_conn.peername = (peer, 50000)
    f.request.path = path
    ex = Exchange(ClientRequest("POST", path, f"http://127.0.0.1:8080{path}"), body=body)
    return ex, f


async def test_off_is_a_404_that_says_how_to_turn_it_on(route):
    ex, f = request("/auth/initiate", {})
    with pytest.raises(GatewayError) as e:
        await route(ex, f, Config(remote_login="off"))
    assert (e.value.status, e.value.code) == (404, "remote_login_disabled")
    assert "Remote login is off (--set qwen_remote_login=loopback|on)." in str(e.value)
    assert Logins.made == []


@pytest.mark.parametrize("peer", ["192.0.2.7", "10.0.0.2", "::ffff:192.0.2.7"])
async def test_loopback_only_refuses_others(route, peer):
    ex, f = request("/auth/initiate", {}, peer)
    with pytest.raises(GatewayError) as e:
        await route(ex, f, Config(remote_login="loopback"))
    assert (e.value.status, e.value.code) == (403, "remote_login_disabled")
    assert "Remote login is only served to loopback clients here." in str(e.value)


async def test_loopback_clients_start_and_poll_a_login(route):
    config = Config(remote_login="loopback")
    ex, f = request("/auth/initiate", {"account": "work"}, "::1")
    resp = await route(ex, f, config)
    assert resp.status_code == 200 and json.loads(resp.content) == {"device_code_id": "d1", "account": "work"}
    ex, f = request("/auth/poll", {"id": "d1"})
    resp = await route(ex, f, config)
    assert json.loads(resp.content) == {"status": "success", "account": "work"}
    assert len(Logins.made) == 1 and Logins.made[0].auth is config.auth  # made once, at the first request
    assert Logins.made[0].calls == [("initiate", "work"), ("poll", "d1")]
    assert route.reloads == [True]  # the saved login joins the pool


async def test_open_serves_anyone_and_odd_bodies_are_read_safely(route):
    config = Config(remote_login="on")
    ex, f = request("/auth/initiate", {"account": 42}, "192.0.2.7")
    await route(ex, f, config)
    ex, f = request("/auth/initiate", None, "192.0.2.7")
    await route(ex, f, config)
    ex, f = request("/auth/poll", {"device_code_id": "d2"}, "192.0.2.7")
    await route(ex, f, config)
    ex, f = request("/auth/poll", {}, "192.0.2.7")
    await route(ex, f, config)
    assert Logins.made[0].calls == [("initiate", None), ("initiate", None), ("poll", "d2"), ("poll", "")]


async def test_a_client_without_a_peer_address_is_not_loopback(route):
    ex, f = request("/auth/initiate", {})
    f.client_conn.peername = None
    with pytest.raises(GatewayError) as e:
        await route(ex, f, dataclasses.replace(Config(), remote_login="loopback"))
    assert e.value.status == 403

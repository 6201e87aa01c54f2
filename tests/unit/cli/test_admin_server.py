"""The admin API's listener (cli/admin_server.py) on loopback: an admin credential as Bearer, nothing else (no
client key, no cookie: 401 in the API's one error shape), bodies bounded, changes logged with the credential's
name and never a secret, an address in use refused as an option is."""

from __future__ import annotations

import logging
import socket

import httpx
import pytest
from mitmproxy import exceptions

from qwen_gateway.cli import admin_creds
from qwen_gateway.cli.admin_server import MAX_BODY, AdminListener
from qwen_gateway.settings.auth import AuthSettings
from qwen_gateway.settings.option_specs import listen_address


@pytest.fixture(autouse=True)
def no_shared_database(monkeypatch):
    monkeypatch.delenv("QWEN_STATE_URL", raising=False)


@pytest.fixture
def served(tmp_path):
    settings = AuthSettings(qwen_dir=tmp_path / ".qwen", state_dir=tmp_path, oauth_base_url="http://127.0.0.1:9",
                            default_api_base="http://127.0.0.1:9/v1")
    listener = AdminListener(lambda: settings)
    listener.configure(("127.0.0.1", 0))
    assert listener._server is not None
    port = listener._server.server_address[1]
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=30)
    yield client, admin_creds.add(tmp_path, "lead")
    client.close()
    listener.stop()


def test_only_an_admin_credential_is_let_in(served, caplog):
    client, secret = served
    for headers in ({}, {"Authorization": "Bearer sk-qg-notanadmin"}, {"Cookie": f"token={secret}"},
                    {"Authorization": f"Basic {secret}"}, {"x-api-key": secret}):
        r = client.get("/admin/v1/keys", headers=headers)
        assert r.status_code == 401 and r.json()["error"]["type"] == "unauthorized", headers
        assert "access-control-allow-origin" not in r.headers
    r = client.get("/admin/v1/keys", headers={"Authorization": f"Bearer {secret}"})
    assert (r.status_code, r.json()) == (200, {"keys": []})
    with caplog.at_level(logging.INFO, "qwen"):
        r = client.post("/admin/v1/keys", json={"name": "alice"}, headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    key = r.json()["key"]
    assert "qwen: admin API: POST /admin/v1/keys by lead: 200" in caplog.text
    assert secret not in caplog.text and key not in caplog.text


def test_a_body_over_the_bound_is_refused(served):
    client, secret = served
    r = client.post("/admin/v1/keys", content=b"x" * (MAX_BODY + 1), headers={"Authorization": f"Bearer {secret}"})
    assert (r.status_code, r.json()["error"]["field"]) == (413, "body")


def test_an_address_in_use_is_refused_as_an_option(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listener = AdminListener(lambda: None)  # type: ignore[arg-type,return-value]
        with pytest.raises(exceptions.OptionsError, match="qwen_admin_listen: cannot listen on 127.0.0.1:"):
            listener.configure(("127.0.0.1", taken.getsockname()[1]))


def test_the_option_is_a_port_on_loopback_or_a_host_and_port():
    assert listen_address("8765") == ("127.0.0.1", 8765)
    assert listen_address("0.0.0.0:8765") == ("0.0.0.0", 8765)
    assert listen_address("[::1]:8765") == ("::1", 8765)
    assert [listen_address(v) for v in ("", "0", "70000", "host:", "a b:1", "x")] == [None] * 6

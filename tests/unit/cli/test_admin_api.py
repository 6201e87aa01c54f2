"""The admin API's requests (cli/admin_api.py) on a state folder with no gateway running: qwen-keys' operations
and words, its errors in one JSON shape (400 naming the field, 404, 405, 409), and what qwen-keys then lists is
what the API did. Two real gateways on PostgreSQL: tests/e2e/test_e2e_admin_api.py."""

from __future__ import annotations

import json

import pytest

from qwen_gateway.cli import keys
from qwen_gateway.cli.admin_api import AdminApi
from qwen_gateway.cli.keys_ops import JOURNAL
from qwen_gateway.settings.auth import AuthSettings


@pytest.fixture(autouse=True)
def no_shared_database(monkeypatch):
    monkeypatch.delenv("QWEN_STATE_URL", raising=False)


@pytest.fixture
def api(tmp_path):
    settings = AuthSettings(qwen_dir=tmp_path / ".qwen", state_dir=tmp_path, oauth_base_url="http://127.0.0.1:9",
                            default_api_base="http://127.0.0.1:9/v1")
    admin = AdminApi(lambda: settings)

    def call(method: str, path: str, body: object = None, **query: str):
        raw = b"" if body is None else json.dumps(body).encode()
        answer = admin.handle(method, path, {k: [v] for k, v in query.items()}, raw, "lead")
        return answer.status, answer.body
    return call


def listed(tmp_path, capsys) -> dict:
    capsys.readouterr()
    assert keys.main(["list", "--json", "--state-dir", str(tmp_path)]) == 0
    return {r["name"]: r for r in json.loads(capsys.readouterr().out)}


def test_a_keys_lifecycle_in_qwen_keys_words(api, tmp_path, capsys):
    status, body = api("POST", "/admin/v1/keys", {"name": "alice", "rpm": 3, "daily-tokens": 1000})
    assert status == 200, body
    assert body["key"].startswith("sk-qg-") and body["confirmed"] and body["unconfirmed"] == []
    assert body["said"][0] == f"Added key alice (rpm 3, daily-tokens 1,000) to {tmp_path / 'keys.sqlite3'}."
    assert body["applied"] == "No gateway is running on it: each reads the keys when it starts."
    assert body["record"]["rpm"] == 3 and body["record"]["state"] == "active"
    assert listed(tmp_path, capsys)["alice"]["daily_tokens"] == 1000

    status, body = api("PATCH", "/admin/v1/keys/alice", {"monthly-usd": "2.50", "model-monthly-usd": {"qwen3-max": 1}})
    assert status == 200 and body["said"] == ["Key alice: rpm 3, daily-tokens 1,000, monthly-usd $2.50, "
                                              "model-monthly-usd qwen3-max=$1.00."], body
    assert body["key"] is None
    status, body = api("POST", "/admin/v1/keys/alice/rotate")
    assert status == 200 and body["key"].startswith("sk-qg-") and "the old key no longer works" in body["said"][0]
    status, body = api("POST", "/admin/v1/keys/alice/revoke")
    assert (status, body["said"]) == (200, ["Revoked key alice: gateways refuse it (401)."])
    assert listed(tmp_path, capsys)["alice"]["state"] == "revoked"
    assert api("GET", "/admin/v1/keys/alice")[1]["state"] == "revoked"
    status, body = api("DELETE", "/admin/v1/keys/alice")
    assert status == 200 and body["said"][0].startswith("Deleted key alice"), body
    assert listed(tmp_path, capsys) == {}
    journal = [json.loads(line) for line in (tmp_path / JOURNAL).read_text().splitlines()]
    assert [(j["by"], j["command"], j["name"]) for j in journal] == [
        ("admin lead", c, "alice") for c in ("add", "set", "rotate", "revoke", "delete")]
    assert "sk-qg-" not in (tmp_path / JOURNAL).read_text()


def test_errors_have_one_shape_and_the_right_status(api):
    status, body = api("POST", "/admin/v1/keys", {"name": "bob", "rpm": -1})
    assert (status, body["error"]["type"], body["error"]["field"]) == (400, "invalid_request", "rpm")
    assert api("POST", "/admin/v1/keys", {"name": "bad name"})[1]["error"]["field"] == "name"
    assert api("POST", "/admin/v1/keys", {"name": "bob", "colour": "red"})[1]["error"]["field"] == "colour"
    assert api("POST", "/admin/v1/keys", {"name": "bob", "model-monthly-usd": 3})[1]["error"]["field"] \
        == "model-monthly-usd"
    assert api("POST", "/admin/v1/keys", {"name": "bob", "wait": 0})[1]["error"]["field"] == "wait"
    status, body = api("PATCH", "/admin/v1/keys/nobody", {"rpm": 1})
    assert (status, body["error"]["type"]) == (404, "not_found"), body
    assert api("POST", "/admin/v1/keys/nobody/revoke")[0] == 404
    assert api("GET", "/admin/v1/keys/nobody")[0] == 404
    assert api("POST", "/admin/v1/keys", {"name": "bob"})[0] == 200
    status, body = api("POST", "/admin/v1/keys", {"name": "bob"})
    assert (status, body["error"]["type"]) == (409, "conflict") and "exists" in body["error"]["message"]
    assert api("PATCH", "/admin/v1/keys/bob", {})[1]["error"]["field"] == "rpm"  # set needs a limit
    assert api("PUT", "/admin/v1/keys/bob")[0] == 405
    assert api("GET", "/admin/v1/nothing")[0] == 404
    status, body = api("POST", "/admin/v1/keys", None)
    assert (status, body["error"]["field"]) == (400, "body")
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message", "field"}


def test_the_list_is_qwen_keys_list_json(api, tmp_path, capsys):
    api("POST", "/admin/v1/keys", {"name": "carol", "tpm": 5000})
    status, body = api("GET", "/admin/v1/keys")
    assert status == 200 and body["keys"] == list(listed(tmp_path, capsys).values())

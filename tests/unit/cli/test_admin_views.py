"""The admin API's views besides the keys (cli/admin_views.py), read from a state folder: qwen-usage's sums by
key, model, day and account and its requests, learned facts listed and forgotten as `qwen-usage learned` does, the
accounts as `qwen-auth status --json` lists them; a query parameter refused by name (400)."""

from __future__ import annotations

import json
import time

import pytest

from helpers.observe_testlib import exchange
from qwen_gateway.cli import usage as usage_cli
from qwen_gateway.cli.admin_api import AdminApi
from qwen_gateway.cli.admin_views import SPEND_BY
from qwen_gateway.models.learned import LearnedFacts
from qwen_gateway.observe.ledger import Ledger, row_of
from qwen_gateway.settings.auth import AuthSettings


@pytest.fixture(autouse=True)
def no_shared_database(monkeypatch):
    monkeypatch.delenv("QWEN_STATE_URL", raising=False)


@pytest.fixture
def api(tmp_path):
    settings = AuthSettings(qwen_dir=tmp_path / ".qwen", state_dir=tmp_path, oauth_base_url="http://127.0.0.1:9",
                            default_api_base="http://127.0.0.1:9/v1")
    admin = AdminApi(lambda: settings)

    def call(method: str, path: str, **query: str):
        answer = admin.handle(method, path, {k: [v] for k, v in query.items()}, b"", "lead")
        return answer.status, answer.body
    return call


def test_spend_by_key_model_and_day_as_qwen_usage_sums_them(api, tmp_path, capsys):
    assert api("GET", "/admin/v1/spend") == (200, {"by": "key", "rows": []})  # no ledger yet
    led = Ledger(tmp_path / "usage.sqlite3")
    now = time.time()
    led.add([row_of(exchange(started_at=now - 1, usage={"prompt_tokens": 20, "completion_tokens": 5})),
             row_of(exchange(started_at=now, account="ds", upstream_model="qwen3-coder-plus",
                             usage={"prompt_tokens": 7, "completion_tokens": 3}))])
    led.close()
    status, body = api("GET", "/admin/v1/spend", by="model")
    assert usage_cli.main(["models", "--json", "--state-dir", str(tmp_path)]) == 0
    assert (status, body["rows"]) == (200, json.loads(capsys.readouterr().out))
    status, body = api("GET", "/admin/v1/spend", by="key")
    assert status == 200 and sum(r["requests"] for r in body["rows"]) == 2
    assert [r["day"] for r in api("GET", "/admin/v1/spend", by="day")[1]["rows"]] == [time.strftime("%Y-%m-%d")]
    assert len(api("GET", "/admin/v1/requests", limit="1")[1]["rows"]) == 1
    assert api("GET", "/admin/v1/conversations")[0] == 200
    assert all(api("GET", "/admin/v1/spend", by=by)[0] == 200 for by in SPEND_BY)  # every view qwen-usage has
    status, body = api("GET", "/admin/v1/spend", by="colour")
    assert (status, body["error"]["field"]) == (400, "by")
    assert api("GET", "/admin/v1/spend", since="yesterday-ish")[1]["error"]["field"] == "since"
    assert api("GET", "/admin/v1/spend", colour="red")[1]["error"]["field"] == "colour"
    assert api("POST", "/admin/v1/spend")[0] == 405


def test_learned_facts_listed_and_forgotten(api, tmp_path):
    facts = LearnedFacts(tmp_path)
    facts.learn("qwen3.8-flash", "output", 32768)
    facts.learn("qwen9-max", "output", 40000)
    facts.close()
    status, body = api("GET", "/admin/v1/learned")
    assert status == 200 and [f["model"] for f in body["facts"]] == ["qwen3.8-flash", "qwen9-max"]
    status, body = api("DELETE", "/admin/v1/learned", model="qwen9-max")
    assert status == 200 and body["forgot"] == 1 and [f["model"] for f in body["facts"]] == ["qwen3.8-flash"]
    assert api("DELETE", "/admin/v1/learned")[1]["error"]["field"] == "model"
    assert api("DELETE", "/admin/v1/learned", model="m", fact="colour")[1]["error"]["field"] == "fact"


def test_accounts_as_qwen_auth_status_lists_them(api, tmp_path, monkeypatch):
    monkeypatch.setenv("ADMIN_VIEW_KEY", "sk-secretsecretsecret")
    (tmp_path / "accounts.json").write_text(json.dumps({"accounts": [
        {"name": "emu", "kind": "key", "base_url": "http://127.0.0.1:9/v1", "key_env": "ADMIN_VIEW_KEY"}]}))
    status, body = api("GET", "/admin/v1/accounts")
    assert status == 200 and [a["name"] for a in body["accounts"]] == ["emu"]
    assert "sk-secretsecretsecret" not in json.dumps(body)  # never a key, as qwen-auth status says none

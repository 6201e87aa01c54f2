"""The installed `qwen-auth` command, run as a user runs it, against the session's Qwen emulator: device
login with the QR code, extra logins, denied/expired logins, a server down, keys (rules and secrecy),
status/list, remove. (add-key's plans, --replace, help text and the QR drawing: tests/unit/cli/test_auth.py.)"""

from __future__ import annotations

import json
import re
import stat
import time
import uuid
from urllib.parse import quote, urlencode

import pytest

from qwen_gateway.auth.credfile import LOGIN_ORDER
from qwen_gateway.auth.registry import Registry
from helpers.auth_env import NODE_FETCH, Server, cli, read_until, run_cli, seed, settings_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def srv(emu) -> Server:
    return Server(emu.proc, emu.port)


@pytest.fixture
def settings(tmp_path, srv):
    return settings_for(tmp_path, srv)


def test_cli_device_login_with_qr_writes_qwen_codes_file(srv, settings):
    p = cli(settings, "login")
    shown = read_until(p.stderr, "Waiting for approval")
    code = re.search(r"User code: (\w+)", shown).group(1)
    assert f"user_code={code}" in shown and "Qwen OAuth Device Authorization" in shown
    qr_lines = [ln for ln in shown.splitlines() if set(ln.strip()) and set(ln.strip()) <= set("█▀▄ \xa0")]
    assert len(qr_lines) > 10  # a QR code was drawn
    srv.admin("POST", "approve", {"user_code": code})
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    path = settings.default_creds_path
    raw = path.read_text()
    creds = json.loads(raw)
    assert list(creds) == list(LOGIN_ORDER) and raw == json.dumps(creds, indent=2) and not raw.endswith("\n")
    assert creds["token_type"] == "Bearer" and creds["resource_url"] == srv.url
    assert abs(creds["expiry_date"] - (time.time() + 3600) * 1000) < 60_000
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert srv.accepts(creds["access_token"])
    assert creds["access_token"] not in shown + out + err and creds["refresh_token"] not in shown + out + err
    assert "Logged in: account default" in out
    # the wire: form-encoded like encodeURIComponent, JSON accepted, x-request-id on the device request only
    dev = srv.requests("/api/v1/oauth2/device/code")[0]
    assert dev["headers"]["content-type"] == "application/x-www-form-urlencoded"
    assert dev["headers"]["accept"] == "application/json" and uuid.UUID(dev["headers"]["x-request-id"])
    assert dev["body"]["scope"] == "openid profile email model.completion"
    assert dev["body"]["code_challenge_method"] == "S256" and len(dev["body"]["code_challenge"]) == 43
    assert dev["raw_body_len"] == len(urlencode(dev["body"], quote_via=quote))  # %20, not +
    polls = srv.requests("/api/v1/oauth2/token")
    assert polls and all("x-request-id" not in r["headers"] for r in polls)
    for r in (dev, *polls):  # Node's fetch, as qwen-code: user-agent node, gzip/deflate, accept-language *, cors
        assert {k: r["headers"].get(k) for k in NODE_FETCH} == NODE_FETCH
    assert polls[-1]["body"]["grant_type"] == "urn:ietf:params:oauth:grant-type:device_code"
    assert len(polls[-1]["body"]["code_verifier"]) == 43


def test_cli_add_extra_account_then_list(srv, settings):
    srv.switches(auto_approve=True)
    rc, out, err = run_cli(settings, "add", "work", "--no-qr")
    assert rc == 0, err
    path = settings.creds_path("work")
    assert path.name == "oauth_creds_work.json" and list(json.loads(path.read_text())) == list(LOGIN_ORDER)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Registry(settings).find(Registry(settings).load(), "work") == {"name": "work", "kind": "oauth"}
    assert not settings.default_creds_path.exists()
    rc, out, _ = run_cli(settings, "list")
    assert rc == 0 and re.search(r"work\s+oauth\s+ok\s+\d{4}-\d\d-\d\d \d\d:\d\d UTC\s+0", out), out


@pytest.mark.parametrize("action,exit_code,message", [("deny", 2, "access_denied"),
                                                      ("expire", 3, "expired_token")])
def test_cli_login_denied_or_expired(srv, settings, action, exit_code, message):
    p = cli(settings, "login", "--no-qr")
    code = re.search(r"User code: (\w+)", read_until(p.stderr, "User code:")).group(1)
    srv.admin("POST", action, {"user_code": code})
    _, err = p.communicate(timeout=30)
    assert p.returncode == exit_code and message in err
    assert not settings.default_creds_path.exists()


def test_cli_login_with_the_oauth_server_down(srv, settings):
    srv.admin("POST", "fault", {"kind": "oauth500"})
    rc, _, err = run_cli(settings, "login")
    assert rc == 4 and "Device authorization failed: 500" in err
    rc, _, err = run_cli(settings, "--oauth-base-url", "http://127.0.0.1:9", "login")
    assert rc == 4 and "cannot reach" in err


def test_cli_status_and_list_show_no_secrets(srv, settings):
    token, rt, _ = seed(srv, settings, expires_in=3600)
    rc, out, err = run_cli(settings, "add-key", "ds", "--preset", "dashscope-intl", "--key-stdin",
                           stdin="sk-very-secret-stored\n")
    assert rc == 0 and "sk-very-secret-stored" not in out + err
    assert "https://dashscope-intl.aliyuncs.com/compatible-mode/v1" in out and "qwen3-coder-plus" in out
    rc, out, err = run_cli(settings, "add-key", "cp", "--preset", "coding-plan", "--key-env", "CP_KEY",
                           env={"CP_KEY": "sk-sp-secret-env"})
    assert rc == 0
    reg = settings.accounts_path
    assert stat.S_IMODE(reg.stat().st_mode) == 0o600 and "sk-very-secret-stored" in reg.read_text()
    assert "sk-sp-secret-env" not in reg.read_text()  # by reference only
    secrets_ = (token, rt, "sk-very-secret-stored", "sk-sp-secret-env")
    outputs = {}
    for args in (("status",), ("status", "--json"), ("list",), ("list", "--json")):
        rc, out, err = run_cli(settings, *args, env={"CP_KEY": "sk-sp-secret-env"})
        assert rc == 0, err
        assert not any(s in out + err for s in secrets_), args
        outputs[args] = out
    rows = {r["name"]: r for r in json.loads(outputs[("status", "--json")])}
    assert set(rows) == {"default", "ds", "cp"}
    assert rows["default"]["state"] == "ok" and rows["default"]["base_url"] == srv.url + "/v1"
    assert rows["ds"]["base_url"] == "https://dashscope-intl.aliyuncs.com/compatible-mode/v1"
    assert rows["cp"]["base_url"] == "https://coding.dashscope.aliyuncs.com/v1" and rows["cp"]["key"] == "$CP_KEY"
    for r in rows.values():
        assert {"name", "kind", "state", "base_url", "expires_at", "cooldown_until", "requests_today",
                "last_error"} <= set(r)
    assert set(json.loads(outputs[("list", "--json")])[0]) == {"name", "kind", "state", "expires_at",
                                                                "requests_today"}
    assert "ACCOUNT" in outputs[("status",)] and "dashscope-intl" in outputs[("status",)]


def test_cli_key_rules(srv, settings):
    rc, _, err = run_cli(settings, "add-key", "x", "--base-url", "http://h/v1", "--key-env", "sk-abc-123-secret")
    assert rc == 1 and "sk-abc-123-secret" not in err and "NAME of an environment variable" in err
    rc, _, err = run_cli(settings, "add-key", "x", "--base-url", "http://h/v1")  # no key source
    assert rc == 1
    rc, _, err = run_cli(settings, "add-key", "x", "--key-env", "K")  # no URL
    assert rc == 1 and "--base-url" in err
    rc, _, err = run_cli(settings, "add-key", "../x", "--base-url", "http://h/v1", "--key-env", "K")
    assert rc == 1 and "invalid account name" in err
    rc, _, err = run_cli(settings, "add-key", "x", "--base-url", "http://h/v1", "--key-stdin", stdin="")
    assert rc == 1 and "no key" in err
    rc, _, err = run_cli(settings, "add-key", "x", "--base-url", "http://h/v1", "--key-env", "K", "--model-map", "nope")
    assert rc == 1 and "ALIAS=MODEL" in err
    assert not settings.accounts_path.exists()  # nothing was written by any of these
    assert run_cli(settings, "add-key", "x", "--preset", "dashscope-us", "--key-stdin", stdin="sk-first\n")[0] == 0
    before = settings.accounts_path.read_bytes()
    rc, _, err = run_cli(settings, "add-key", "x", "--preset", "dashscope-cn", "--key-stdin", stdin="sk-second\n")
    assert rc == 1 and "--replace" in err and settings.accounts_path.read_bytes() == before
    rc, out, _ = run_cli(settings, "--help")
    assert rc == 0 and "exit codes" in out and "login denied" in out


def test_cli_add_key_checks_the_key_once_against_its_base(srv, settings):
    """One GET {base}/models with the key, then one line: what the base lists, that it refused the key, or
    that it could not be reached; the account is saved either way and no line holds the key."""
    key = srv.issue(kind="key")["access_token"]
    listed = [m["id"] for m in srv.http.get("/v1/models", headers={"authorization": f"Bearer {key}"}).json()["data"]]
    before = len(srv.requests("/v1/models"))
    rc, out, err = run_cli(settings, "add-key", "emu", "--base-url", srv.url + "/v1", "--key-env", "EMU_KEY",
                           env={"EMU_KEY": key})
    assert rc == 0 and err == "", err
    assert out.splitlines()[-1] == (f"Key check: the key works; the base lists {len(listed)} models: "
                                    + ", ".join(listed[:3]) + ", …")
    checks = srv.requests("/v1/models")[before:]
    assert [(r["method"], r["headers"]["authorization"]) for r in checks] == [("GET", f"Bearer {key}")]
    wrong = "sk-not-a-key-the-emulator-knows"
    rc, out, err = run_cli(settings, "add-key", "bad", "--base-url", srv.url + "/v1", "--key-stdin", stdin=wrong + "\n")
    assert rc == 0 and "Warning: key check: the base refused the key (HTTP 401 invalid_api_key)" in err
    rc, out2, err2 = run_cli(settings, "add-key", "off", "--base-url", "http://127.0.0.1:9/v1", "--key-stdin",
                             stdin=wrong + "\n")
    assert rc == 0 and err2.splitlines() == ["Warning: key check: could not reach 127.0.0.1 (ConnectError: [Errno 111] "
                                             "Connection refused); the account is saved, the key unchecked."]
    for line in (out + err + out2 + err2).splitlines():
        assert wrong not in line and key not in line, line
    names = {a["name"] for a in Registry(settings).load()["accounts"]}
    assert {"emu", "bad", "off"} <= names  # saved whatever the check said


def test_status_shows_a_keys_failed_check_until_the_key_is_right(srv, settings, tmp_path):
    """The issue: `qwen-auth status` said `ok` for a key whose check had just failed. It says `check_failed`, with
    the check's line under the table (the base's 401, or no answer), until the key serves a request or a check
    works; the gateway still tries it (the key may be right later: not active yet, checked offline)."""
    wrong = "sk-not-a-key-the-emulator-knows"
    assert run_cli(settings, "add-key", "bad", "--base-url", srv.url + "/v1", "--key-env", "BAD_KEY",
                   env={"BAD_KEY": wrong})[0] == 0
    assert run_cli(settings, "add-key", "off", "--base-url", "http://127.0.0.1:9/v1", "--key-env", "OFF_KEY",
                   env={"OFF_KEY": wrong})[0] == 0
    rc, out, _ = run_cli(settings, "status", env={"BAD_KEY": wrong, "OFF_KEY": wrong})
    rows = {ln.split()[0]: ln.split()[3] for ln in out.splitlines()[1:] if ln.split() and ln.split()[0] in ("bad", "off")}
    assert rows == {"bad": "check_failed", "off": "check_failed"}, out
    assert "bad: key check (qwen-auth add-key, " in out and "the base refused the key (HTTP 401" in out, out
    assert "off: key check (qwen-auth add-key, " in out and "could not reach 127.0.0.1" in out, out
    assert wrong not in out
    key = srv.issue(kind="key")["access_token"]  # the right key, checked again
    assert run_cli(settings, "add-key", "bad", "--replace", "--base-url", srv.url + "/v1", "--key-env", "BAD_KEY",
                   env={"BAD_KEY": key})[0] == 0
    rc, out, _ = run_cli(settings, "status", env={"BAD_KEY": key, "OFF_KEY": wrong})
    bad = [ln for ln in out.splitlines() if ln.startswith("bad ")]
    assert bad and bad[0].split()[3] == "ok" and "bad: " not in out, out


def test_cli_add_keys_check_goes_through_the_proxy_the_environment_names(srv, settings):
    """httpx's own proxy rules (HTTP_PROXY here): the emulator, as the proxy, gets the absolute-form request."""
    key = srv.issue(kind="key")["access_token"]
    rc, out, err = run_cli(settings, "add-key", "far", "--base-url", "http://qwen-check.invalid/v1", "--key-env",
                           "FAR_KEY", env={"FAR_KEY": key, "HTTP_PROXY": srv.url})
    assert rc == 0 and err == "" and out.splitlines()[-1].startswith("Key check: the key works; the base lists"), err
    assert [r["path"] for r in srv.requests() if r["path"].endswith("/models")][-1] == \
        "http://qwen-check.invalid/v1/models"


def test_cli_remove(srv, settings):
    seed(srv, settings, expires_in=3600)
    seed(srv, settings, expires_in=3600, name="work")
    Registry(settings).put({"name": "work", "kind": "oauth"})
    assert run_cli(settings, "remove", "default")[0] == 0
    assert settings.default_creds_path.exists()  # qwen-code's file: detached, never deleted
    names = [r["name"] for r in json.loads(run_cli(settings, "status", "--json")[1])]
    assert names == ["work"]
    rc, out, _ = run_cli(settings, "remove", "work")
    assert rc == 0 and settings.creds_path("work").exists() and "--force" in out
    assert run_cli(settings, "remove", "nobody")[0] == 5
    srv.switches(auto_approve=True)
    assert run_cli(settings, "login", "--no-qr")[0] == 0  # attaches the default again
    assert [r["name"] for r in json.loads(run_cli(settings, "list", "--json")[1])] == ["default"]
    assert run_cli(settings, "remove", "default", "--force")[0] == 0
    assert not settings.default_creds_path.exists()


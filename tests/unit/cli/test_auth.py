"""`qwen-auth` run in this process (no server, no child process): add-key's plans, presets, workspace
domains, key/plan warnings and --replace; help text for every command; the QR code's quiet zone."""

from __future__ import annotations

import argparse
import io
import json
import stat
import sys

import httpx
import pytest

from qwen_gateway.auth import qr
from qwen_gateway.cli import auth as cli, auth_keys as cli_keys
from qwen_gateway.upstream.dashscope.plans import (CODING, PAYG, PRESETS, TOKEN, key_warning, plan_of_url,
                                                   workspace_base_url)
from qwen_gateway.auth.registry import Registry

PAYG_KEY = "sk-0123456789abcdef0123456789abcdef"
PLAN_KEY = "sk-sp-0123456789abcdef0123456789ab"


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """add-key's check never leaves the machine here: every base lists the presets' default models (tests/unit/cli/
    test_auth_keys.py has the check's own cases)."""
    models = {"data": [{"id": "qwen3-coder-plus"}, {"id": "qwen3.6-plus"}]}
    listed = httpx.MockTransport(lambda r: httpx.Response(200, json=models))
    real = cli_keys.check_key
    monkeypatch.setattr(cli_keys, "check_key", lambda base, key: real(base, key, transport=listed))


@pytest.fixture
def run(settings, capsys, monkeypatch):
    def run(*args: str, stdin: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        rc = cli.main(["--qwen-dir", str(settings.qwen_dir), "--state-dir", str(settings.state_dir), *args])
        out = capsys.readouterr()
        return rc, out.out, out.err
    return run


def entry(settings, name: str) -> dict | None:
    reg = Registry(settings)
    return reg.find(reg.load(), name)


# ---- plans and presets ---------------------------------------------------------------------------------


def test_every_keyed_plan_has_presets():
    urls = {name: p.base_url for name, p in PRESETS.items()}
    assert urls == {
        "dashscope-intl": "https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
        "dashscope-cn": "https://dashscope.aliyuncs.com/compatible-mode/v1",
        "dashscope-us": "https://dashscope-us.aliyuncs.com/compatible-mode/v1",
        "coding-plan": "https://coding.dashscope.aliyuncs.com/v1",
        "coding-plan-intl": "https://coding-intl.dashscope.aliyuncs.com/v1",
        "token-plan-cn": "https://token-plan.cn-beijing.maas.aliyuncs.com/compatible-mode/v1",
        "token-plan-intl": "https://token-plan.ap-southeast-1.maas.aliyuncs.com/compatible-mode/v1",
    }
    assert all(plan_of_url(p.base_url) == p.plan for p in PRESETS.values())
    assert workspace_base_url("ws-1a2b", "cn-beijing") == "https://ws-1a2b.cn-beijing.maas.aliyuncs.com/compatible-mode/v1"
    assert plan_of_url(workspace_base_url("w", "ap-southeast-1")) == PAYG
    assert plan_of_url("https://cn-hongkong.dashscope.aliyuncs.com/compatible-mode/v1") == PAYG
    assert plan_of_url("http://127.0.0.1:8000/v1") is None and plan_of_url("https://dashscope.evil.com/v1") is None
    for ws, region in (("a.b", "cn-beijing"), ("-x", "cn-beijing"), ("w", "Beijing"), ("w", "cn beijing")):
        with pytest.raises(ValueError):
            workspace_base_url(ws, region)


@pytest.mark.parametrize("key,plan,warns", [
    (PAYG_KEY, PAYG, None), (PLAN_KEY, CODING, None), (PLAN_KEY, TOKEN, None),
    (PLAN_KEY, PAYG, "Coding Plan or Token Plan key"), (PAYG_KEY, CODING, "Coding Plan keys start with sk-sp-"),
    (PAYG_KEY, TOKEN, "Token Plan keys start with sk-sp-"), ("AKIA-not-a-model-studio-key", PAYG, "start with sk-"),
    ("anything", None, None),
])
def test_key_warnings_name_the_plan_never_the_key(key, plan, warns):
    w = key_warning(key, plan)
    assert (w is None) if warns is None else (warns in w and key not in w and key[6:] not in w)


# ---- add-key -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", list(PRESETS))
def test_add_key_with_each_preset(run, settings, preset):
    key = PLAN_KEY if PRESETS[preset].plan in (CODING, TOKEN) else PAYG_KEY
    rc, out, err = run("add-key", "k", "--preset", preset, "--key-stdin", stdin=key + "\n")
    assert rc == 0 and "Warning" not in err and key not in out + err
    assert entry(settings, "k") == {"name": "k", "kind": "key", "base_url": PRESETS[preset].base_url, "key": key,
                                    "default_model": PRESETS[preset].default_model}
    assert PRESETS[preset].base_url in out
    assert stat.S_IMODE(settings.accounts_path.stat().st_mode) == 0o600


def test_add_key_for_a_workspace_domain(run, settings, monkeypatch):
    monkeypatch.setenv("WS_KEY", PAYG_KEY)
    rc, out, err = run("add-key", "ws", "--workspace", "llm-abc123", "--region", "ap-southeast-1", "--key-env", "WS_KEY")
    assert rc == 0 and "Warning" not in err, err
    assert entry(settings, "ws")["base_url"] == "https://llm-abc123.ap-southeast-1.maas.aliyuncs.com/compatible-mode/v1"
    assert "pay-as-you-go" in out and PAYG_KEY not in out + err
    for args, problem in ((("--workspace", "w"), "go together"), (("--region", "cn-beijing"), "go together"),
                          (("--workspace", "w", "--region", "cn-beijing", "--preset", "dashscope-cn"), "drop --preset"),
                          (("--workspace", "w_1", "--region", "cn-beijing"), "workspace id"),
                          (("--workspace", "w", "--region", "mars"), "region id")):
        rc, _, err = run("add-key", "other", *args, "--key-env", "WS_KEY")
        assert rc == 1 and problem in err, (args, err)
    assert entry(settings, "other") is None


@pytest.mark.parametrize("preset,key,problem", [
    ("dashscope-intl", PLAN_KEY, "this looks like a Coding Plan or Token Plan key"),
    ("coding-plan-intl", PAYG_KEY, "Coding Plan keys start with sk-sp-"),
    ("token-plan-cn", PAYG_KEY, "Token Plan keys start with sk-sp-"),
])
def test_a_key_that_does_not_fit_the_plan_is_warned_about(run, settings, monkeypatch, preset, key, problem):
    rc, out, err = run("add-key", "stdin", "--preset", preset, "--key-stdin", stdin=key + "\n")
    assert rc == 0 and f"Warning: {problem}" in err and key not in out + err and key[6:16] not in err
    monkeypatch.setenv("THE_KEY", key)  # the same check on a key read from the environment
    rc, out, err = run("add-key", "env", "--preset", preset, "--key-env", "THE_KEY")
    assert rc == 0 and f"Warning: {problem}" in err and key not in out + err


def test_add_key_never_replaces_without_replace(run, settings, monkeypatch):
    assert run("add-key", "k", "--preset", "dashscope-intl", "--key-stdin", stdin=PAYG_KEY + "\n")[0] == 0
    before = settings.accounts_path.read_bytes()
    rc, _, err = run("add-key", "k", "--preset", "dashscope-us", "--key-env", "OTHER")
    assert rc == 1 and "already exists" in err and "--replace" in err and PAYG_KEY not in err
    assert settings.accounts_path.read_bytes() == before  # the stored key is still there
    # --replace without a key source keeps the stored key
    rc, out, err = run("add-key", "k", "--preset", "dashscope-us", "--replace")
    assert rc == 0 and "Replaced key account k" in out and "kept" in out
    assert entry(settings, "k") == {"name": "k", "kind": "key", "key": PAYG_KEY, "default_model": "qwen3-coder-plus",
                                    "base_url": "https://dashscope-us.aliyuncs.com/compatible-mode/v1"}
    # replacing the stored key by a variable says so
    monkeypatch.setenv("NEW_KEY", PAYG_KEY)
    rc, out, err = run("add-key", "k", "--preset", "dashscope-us", "--key-env", "NEW_KEY", "--replace")
    assert rc == 0 and "The key that was stored for k in accounts.json is removed" in out
    assert entry(settings, "k")["key_env"] == "NEW_KEY" and "key" not in entry(settings, "k")
    # an OAuth account is never replaced by a key account
    Registry(settings).put({"name": "w", "kind": "oauth"})
    rc, _, err = run("add-key", "w", "--preset", "dashscope-us", "--key-env", "NEW_KEY", "--replace")
    assert rc == 1 and "already exists as an oauth account" in err
    # a new account needs a key source
    rc, _, err = run("add-key", "fresh", "--preset", "dashscope-us")
    assert rc == 1 and "--key-env VAR" in err and entry(settings, "fresh") is None


# ---- help text -------------------------------------------------------------------------------------------


def test_every_command_and_option_has_help(run):
    parser = cli.build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(subs.choices) == {"login", "add", "add-key", "add-web", "remove", "list", "status", "check"}
    listed = {a.dest: a.help for a in subs._choices_actions}
    for name, sub in subs.choices.items():
        assert listed[name] and sub.description and len(sub.description) > 40, name
        for action in sub._actions:
            assert action.help and action.help != argparse.SUPPRESS, (name, action.dest)
        with pytest.raises(SystemExit) as e:
            run(name, "--help")
        assert e.value.code == 0
    with pytest.raises(SystemExit) as e:
        run("--help")
    assert e.value.code == 0


# ---- the QR code in qwen-auth login (the code itself: test_qr.py) ------------------------------------------

URL = "https://chat.qwen.ai/authorize?user_code=BF0Q6UX9&client=qwen-code"


async def test_login_draws_the_qr_code_as_asked(settings, monkeypatch):
    """device_login with the OAuth calls replaced: --invert reaches the drawing."""
    from qwen_gateway.auth import oauth

    async def device_code(_s, _c):
        return {"device_code": "d", "user_code": "BF0Q6UX9", "verification_uri_complete": URL, "expires_in": 60}

    async def poll_token(*_a, **_k):
        return {"access_token": "a", "refresh_token": "r", "expires_in": 60}

    monkeypatch.setattr(oauth, "device_code", device_code)
    monkeypatch.setattr(oauth, "poll_token", poll_token)
    monkeypatch.delenv("COLORFGBG", raising=False)
    for invert, field in ((False, "█"), (True, " ")):
        out = io.StringIO()
        await cli.device_login(settings, None, out=out, invert=invert)
        lines = out.getvalue().splitlines()
        first = next(i for i, ln in enumerate(lines) if ln.startswith("Or scan"))
        assert set(lines[first + 1]) == {field} and len(lines[first + 1]) == len(qr.qr_matrix(URL))
    assert json.loads(settings.default_creds_path.read_text())["access_token"] == "a"


def test_a_default_model_the_bases_own_list_leaves_out_is_named_with_the_lists_choice():
    from qwen_gateway.cli.auth_keys import not_listed
    said = not_listed({"default_model": "Qwen/Qwen3.6-27B"}, ("qwen3-8b", "Qwen/Qwen3-8B"))
    assert said.startswith("Qwen/Qwen3.6-27B is not in the base's own model list") and "--default-model Qwen/Qwen3-8B" \
        in said  # the nearest name the list has
    mapped = not_listed({"default_model": "qwen3-8b", "model_map": {"gpt-4o": "gone", "o3": "gone2"}}, ("qwen3-8b",))
    assert mapped.startswith("gone, gone2 are not in")
    assert not_listed({"default_model": "qwen3-8b"}, ("qwen3-8b",)) == ""
    assert not_listed({"default_model": "x"}, ()) == ""  # a base that lists nothing: nothing to judge by


def test_a_retired_default_or_mapped_model_is_named_with_the_newest_of_its_family_the_list_has():
    """Issue 79 item 5: Model Studio retires a model (qwen3-coder-plus, the key accounts' default): the key's own list
    lacks it, and add-key says so with the list's own choice of the same family, not merely its first model."""
    from qwen_gateway.cli.auth_keys import not_listed
    listed = ("qwen3.6-plus", "qwen3.6-coder-plus", "qwen3.7-coder-plus", "qwen3.7-max")
    said = not_listed({"default_model": "qwen3-coder-plus", "model_map": {"gpt-4o": "qwen3-max"}}, listed)
    assert said.startswith("qwen3-coder-plus, qwen3-max are not in the base's own model list (retired, or not for "
                           "this key)"), said
    assert said.endswith("the list's own choice: --default-model qwen3.7-coder-plus --model-map gpt-4o=qwen3.7-max."), \
        said


@pytest.mark.parametrize("command", ["auth", "keys", "usage"])
def test_a_command_loads_no_proxy_until_it_needs_one(command):
    """`qwen-auth add-key` or `qwen-keys list` is a small program: importing the gateway's composition (mitmproxy's
    proxy server, every dialect) made each `qwen-auth` command 1.3 s of CPU before its first line. Only
    `qwen-auth check` needs the providers' checks, and imports them when it runs."""
    import subprocess
    import sys

    code = (f"import sys, qwen_gateway.cli.{command}; "
            "print(sorted(m for m in sys.modules if m in ('qwen_gateway.components', 'mitmproxy.proxy.server')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"

"""Quota windows read, through a real gateway with openai-python: key accounts added with `qwen-auth add-key`
(two of them `--group acme`: keys of one Alibaba Cloud account, whose Coding Plan quota the emulator counts for
both), a Coding Plan's 5-hour window that cools the whole group for five hours, and pay-as-you-go's TPM limit
answered as the throttle of seconds it is. `/health` and `qwen-auth status` say which window and until when."""

from __future__ import annotations

import calendar
import time

import httpx
import openai
import pytest

from helpers.auth_env import Server, run_cli, settings_for

pytestmark = pytest.mark.e2e


def add_key(settings, emu, name: str, key: str, *extra: str, path: str = "/v1") -> None:
    rc, out, err = run_cli(settings, "add-key", name, "--base-url", emu.url + path, "--key-env", name.upper(),
                           "--default-model", "qwen3-coder-plus", *extra, env={name.upper(): key})
    assert rc == 0, err
    assert key not in out + err


def ask(gw, text: str) -> str:
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="client-key", max_retries=0, timeout=60)
    return c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": text}]).choices[0].message.content


def health(gw) -> dict[str, dict]:
    return {r["name"]: r for r in httpx.get(gw.url + "/health", trust_env=False).json()["accounts"]}


def epoch(iso: str) -> float:
    return calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ"))


def test_a_five_hour_window_cools_every_key_of_the_account_for_five_hours(make_gateway, emu, tmp_path):
    settings = settings_for(tmp_path, Server(emu.proc, emu.port))
    keys = {name: emu.seed_token(kind="key") for name in ("a1", "a2", "b")}
    add_key(settings, emu, "a1", keys["a1"], "--group", "acme")
    add_key(settings, emu, "a2", keys["a2"], "--group", "acme")
    add_key(settings, emu, "b", keys["b"], path="/compatible-mode/v1")  # pay-as-you-go: no plan windows
    emu.switches(key_accounts={keys["a1"]: "acme", keys["a2"]: "acme", keys["b"]: "bee"}, plan_limits={"5h": 2})
    gw = make_gateway("windows", env={"QWEN_DIR": str(settings.qwen_dir), "QWEN_GATEWAY_HOME": str(settings.state_dir),
                                      "HOME": str(tmp_path), **{n.upper(): k for n, k in keys.items()}})
    spent = time.time()
    answers = [ask(gw, f"task {n}") for n in range(5)]  # five conversations: in turn a1, a2, b, a1 (spent), b
    assert answers == [f"Echo: task {n}" for n in range(5)]
    by_key = {k: n for n, k in keys.items()}
    sent = [(by_key[r["headers"]["authorization"][7:]], r["body"]["messages"][-1]["content"])
            for r in emu.chat_requests()]
    assert [name for name, _ in sent] == ["a1", "a2", "b", "a1", "b", "b"], sent  # a2 never asked again
    rows = health(gw)
    for name in ("a1", "a2"):
        assert rows[name]["state"] == "cooling_down" and rows[name]["window"] == "5h", rows[name]
        assert spent + 5 * 3600 - 5 <= epoch(rows[name]["cooldown_until"]) <= time.time() + 5 * 3600
        assert rows[name]["group"] == "acme"
    assert "Coding Plan 5-hour quota" in rows["a1"]["last_error"] and "hour allocated quota exceeded" in rows["a1"]["last_error"]
    assert "through a1, a key of the same Alibaba Cloud account" in rows["a2"]["last_error"]
    assert rows["b"]["state"] == "ok"
    rc, out, err = run_cli(settings, "status", env={n.upper(): k for n, k in keys.items()})
    assert rc == 0, err
    assert "a1: quota exhausted: Coding Plan 5-hour quota, back at " in out and rows["a1"]["cooldown_until"] in out
    assert not any(k in out + err for k in keys.values())


def test_tokens_per_minute_is_a_throttle_of_seconds_not_a_quota_until_midnight(make_gateway, emu, tmp_path):
    settings = settings_for(tmp_path, Server(emu.proc, emu.port))
    key = emu.seed_token(kind="key")
    add_key(settings, emu, "payg", key, path="/compatible-mode/v1")
    emu.switches(tpm_limit=50)
    gw = make_gateway("tpm", env={"QWEN_DIR": str(settings.qwen_dir), "QWEN_GATEWAY_HOME": str(settings.state_dir),
                                  "HOME": str(tmp_path), "PAYG": key})
    assert ask(gw, "a prompt of some two hundred characters " * 5).startswith("Echo: ")  # the minute's tokens spent
    with pytest.raises(openai.RateLimitError) as e:
        ask(gw, "next")
    err = e.value
    assert err.code == "rate_limit_exceeded" and err.body["type"] == "tokens", err.body
    assert "You exceeded your current quota" in err.message
    refused = [r for r in emu.chat_requests() if r["body"]["messages"][-1]["content"] == "next"]
    assert len(refused) == 3  # sent, then twice more after a second's wait: a throttle, not a spent quota
    row = health(gw)["payg"]
    assert row["window"] == "tpm" and epoch(row["cooldown_until"]) <= time.time() + 60, row
    assert row["last_error"].startswith("throttled: tokens per minute (TPM)")

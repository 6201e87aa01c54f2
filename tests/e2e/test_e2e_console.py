"""The team's console (docs/admin-api.md#the-console) in real headless Chromium, served by a real gateway's admin
listener (qwen_admin_listen) with data from real requests through it to the emulator: a wrong credential refused,
the admin credential let in; the keys with their spend bars, charts of spend by key, model and day with bars for
the requests made, the cache doctor's conversations, the accounts; a key made on the page works at the gateway,
is shown once and is gone from the page when dismissed; revoked on the page, the gateway refuses it. No key and no
credential is ever in the page's markup, storage or cookies; a reload forgets the credential; the page's policy
lets nothing load from elsewhere."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from helpers.browser import chromium
from helpers.procs import Gateway, free_port
from helpers.team import add_key, qwen_keys, team_env

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
WORDS = "the console shows what the team spends"


def ask(gw: Gateway, key: str, messages: list[dict]) -> httpx.Response:
    return httpx.post(gw.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, trust_env=False,
                      json={"model": "gpt-4o", "messages": messages}, timeout=30)


def wait(driver, script: str, what: str, *args, limit: float = 20):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:  # bounded
        if value := driver.execute_script(script, *args):
            return value
        time.sleep(0.1)
    raise AssertionError(f"never: {what}; status: {driver.execute_script('return document.getElementById(\"status\").textContent')}")


TABLE = "return [...document.querySelectorAll('#' + arguments[0] + ' tbody tr')].map(tr => [...tr.cells].map(c => " \
        "c.textContent.trim()));"
BARS = "return [...document.querySelectorAll('#' + arguments[0] + ' rect.bar')].map(r => [r.dataset.label, " \
       "Number(r.dataset.value), r.getBoundingClientRect().width]);"
SECRETS = "return [document.documentElement.outerHTML, JSON.stringify({...localStorage}), " \
          "JSON.stringify({...sessionStorage}), document.cookie].join('\\n');"


def test_the_console_in_chromium_logs_in_shows_spend_makes_and_revokes_a_key(tmp_path, emu):
    port = free_port()
    env = team_env(tmp_path, emu)
    prices = tmp_path / "prices.json"  # a USD price, so the key's monthly budget counts
    prices.write_text(json.dumps({"*": {"qwen3-coder-plus": {"input": 2.0, "output": 10.0, "cached": 1.0}}}))
    admin = qwen_keys(env, "add-admin", "lead").stdout.strip().splitlines()[-1]
    alice = add_key(env, "alice", "--monthly-usd", "5", "--daily-tokens", "100000")
    gw = Gateway(tmp_path / "gw", env=env, args=("--set", f"qwen_admin_listen={port}", "--set", f"qwen_prices_file={prices}")).start()
    try:
        turn = [{"role": "system", "content": "You answer briefly and plainly. " * 60}, {"role": "user", "content": WORDS}]
        first = ask(gw, alice, turn)
        assert first.status_code == 200, first.text
        turn += [first.json()["choices"][0]["message"], {"role": "user", "content": "and again"}]
        assert ask(gw, alice, turn).status_code == 200
        page = httpx.get(f"http://127.0.0.1:{port}/console", trust_env=False, timeout=10)
        assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
        assert httpx.get(f"http://127.0.0.1:{port}/admin/v1/keys", trust_env=False, timeout=10).status_code == 401

        with chromium(tmp_path / "chrome") as driver:
            from selenium.webdriver.common.by import By
            driver.get(f"http://127.0.0.1:{port}/console")
            driver.find_element(By.ID, "credential").send_keys(alice)  # a client key is no admin credential
            driver.find_element(By.CSS_SELECTOR, "#login-form button").click()
            wait(driver, "return document.getElementById('login-error').textContent", "the refusal said")
            assert driver.find_element(By.ID, "console").get_attribute("hidden") is not None

            driver.find_element(By.ID, "credential").send_keys(admin)
            driver.find_element(By.CSS_SELECTOR, "#login-form button").click()
            wait(driver, "return document.body.dataset.loaded", "the console read the API")
            assert "error" not in driver.find_element(By.ID, "status").get_attribute("class"), \
                driver.find_element(By.ID, "status").text

            keys = {r[0]: r for r in driver.execute_script(TABLE, "keys")}
            assert keys["alice"][1] == "active" and keys["alice"][2].endswith("of $5.00"), keys
            tokens_today = int(keys["alice"][3].split(" of ")[0].replace(",", ""))
            assert tokens_today > 0 and keys["alice"][3].endswith("of 100,000"), keys
            assert driver.find_elements(By.CSS_SELECTOR, "#keys tr[data-key=alice] .track .fill")
            for chart, label in (("chart-key", "alice"), ("chart-model", None), ("chart-day", time.strftime("%Y-%m-%d"))):
                bars = driver.execute_script(BARS, chart)
                assert bars and all(width > 0 for _, _, width in bars), (chart, bars)
                if label is not None:
                    assert label in [b[0] for b in bars], (chart, bars)
            model_tokens = sum(v for _, v, _ in driver.execute_script(BARS, "chart-model"))
            assert model_tokens == tokens_today, (model_tokens, tokens_today)  # the ledger's, and the key's
            conversations = driver.execute_script(TABLE, "conversations")
            assert len(conversations) == 1 and conversations[0][2] == "2", conversations
            accounts = driver.execute_script(TABLE, "accounts")
            assert [a[0] for a in accounts] == ["emu"] and accounts[0][2] == "ok", accounts

            driver.find_element(By.CSS_SELECTOR, "#accounts tr[data-account=emu] button.check").click()
            said = wait(driver, "const s = document.getElementById('status').textContent; "
                                "return s.startsWith('emu: ') && s", "the health check's answer")
            assert "models read" in said, said  # what the emulator's list says, against the catalogue

            driver.find_element(By.ID, "add-name").send_keys("bob")
            driver.find_element(By.ID, "add-daily-tokens").send_keys("5000")
            driver.find_element(By.CSS_SELECTOR, "#add-form button").click()
            bob = wait(driver, "return document.getElementById('new-key-value').textContent", "bob's key shown")
            assert bob.startswith("sk-qg-") and ask(gw, bob, [{"role": "user", "content": WORDS}]).status_code == 200
            wait(driver, "return document.querySelector('#keys tr[data-key=bob]')", "bob listed")
            driver.find_element(By.ID, "new-key-done").click()
            assert bob not in driver.execute_script(SECRETS) and admin not in driver.execute_script(SECRETS)

            revoke = driver.find_element(By.CSS_SELECTOR, "#keys tr[data-key=bob] button.revoke")
            revoke.click()  # armed
            assert "bob" in revoke.text and ask(gw, bob, [{"role": "user", "content": WORDS}]).status_code == 200
            revoke.click()
            wait(driver, "return document.querySelector('#keys tr[data-key=bob] td:nth-child(2)')"
                         "?.textContent === 'revoked'", "bob revoked on the page")
            assert driver.find_element(By.ID, "status").text == "Applied on 1 running gateway."
            assert ask(gw, bob, [{"role": "user", "content": WORDS}]).status_code == 401  # when the page said so

            seen = driver.execute_async_script("""
                const done = arguments[arguments.length - 1], seen = [];
                document.addEventListener('securitypolicyviolation', e => seen.push(e.violatedDirective));
                fetch('http://127.0.0.1:' + arguments[0] + '/v1/models').then(() => 'loaded', () => 'refused')
                  .then(f => setTimeout(() => done([f, seen]), 300));""", gw.port)
            assert seen == ["refused", ["connect-src"]], seen  # another origin: the gateway's own proxy port

            driver.refresh()  # the credential was in the tab's memory only
            wait(driver, "return !document.getElementById('login').hidden", "the login form again")
            assert admin not in driver.execute_script(SECRETS)
        assert admin not in gw.log() and bob not in gw.log() and alice not in gw.log()
        assert "admin API: POST /admin/v1/keys by lead: 200" in gw.log()
        assert "admin API: POST /admin/v1/keys/bob/revoke by lead: 200" in gw.log()
    finally:
        gw.stop()

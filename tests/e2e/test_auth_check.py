"""`qwen-auth check NAME [--deep]` (issue 70 item 5), the installed command run as a user runs it against the session's
emulator playing Model Studio: as it is, no difference; drifted (a price, an output cap, a model left out of the key's
list), exactly those; an unreadable list, one line; no such account, exit 5. The account's base is pay-as-you-go
international's host, reached through the emulator as an HTTP proxy, so the gateway knows its plan and prices. What
the command spends is what it says: the emulator counts one chat request per probe, and the key is never printed."""

from __future__ import annotations

import json
import re

import pytest

from qwen_gateway.auth.registry import Registry
from qwen_gateway.upstream.dashscope.headers import GATEWAY_AGENT
from helpers.auth_env import Server, cli, run_cli, settings_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

BASE = "http://dashscope-intl.aliyuncs.com/compatible-mode/v1"  # payg:intl; the emulator answers as its proxy
PROBED = "qwen-plus"  # the account's default model: output cap 32,768 (sourced), partial mode, hybrid thinking
PROBES = 5  # a range refusal, a stream, partial mode, the cache's two requests


def usd(price: str) -> dict:
    return {"price": price, "price_unit": "USD/1M tokens", "time_band": "standard"}


# qwen3.6-flash's one tier with its input at $0.25 (the catalogue: $0.1875), its output as the catalogue's
FLASH_PRICE = [{"range_name": "Default", "prices": [{"type": "input_token", **usd("0.25")},
                                                     {"type": "output_token", **usd("1.125")}]}]


@pytest.fixture
def srv(emu) -> Server:
    return Server(emu.proc, emu.port)


@pytest.fixture
def settings(tmp_path, srv):
    return settings_for(tmp_path, srv)


@pytest.fixture
def key(srv, settings) -> str:
    Registry(settings).put({"name": "ds", "kind": "key", "base_url": BASE, "key_env": "DS_KEY",
                            "default_model": PROBED})
    return srv.issue(kind="key")["access_token"]


def check(srv, settings, key: str, *args: str) -> tuple[int, str, str]:
    rc, out, err = run_cli(settings, "check", *args, env={"DS_KEY": key, "HTTP_PROXY": srv.url, "NO_PROXY": ""})
    assert key not in out + err  # never the key, whatever was found
    return rc, out, err


def chats(srv) -> int:
    return srv.stats()["chat_requests"]


def test_the_emulator_as_it_is_differs_in_nothing(srv, settings, key):
    before = chats(srv)
    rc, out, err = check(srv, settings, key, "ds", "--deep")
    assert (rc, err) == (0, ""), out + err
    lines = out.splitlines()
    assert not [ln for ln in lines if ln.startswith("DIFF")], out
    for pattern in (r"ok model list: \d+ models read", r"ok prices: \d+ models as the catalogue's on payg:intl",
                    r"ok caps: output caps and longest prompts of \d+ models as the catalogue's",
                    r"ok the plan's models: all \d+ the catalogue serves on payg-intl are listed",
                    r"ok qwen-plus output cap: Qwen refused 32,769 with \[1, 32,768\], as the gateway says",
                    r"ok stream shape: a finish chunk, a usage chunk, then data: \[DONE\]",
                    r"ok qwen-plus partial mode: served \(HTTP 200\), as the catalogue says",
                    r"ok qwen-plus explicit cache: the second request read 1,\d{3} cached tokens",
                    r"spent: [\d,]+ tokens of this key \(5 requests\)"):
        assert any(re.fullmatch(pattern, ln) for ln in lines), (pattern, out)
    sent = srv.chat_requests()[-PROBES:]
    assert chats(srv) - before == PROBES  # nothing spent but the probes
    assert {r["path"] for r in sent} == {BASE + "/chat/completions"}
    assert {r["headers"]["user-agent"] for r in sent} == {GATEWAY_AGENT}
    assert [r["body"]["max_completion_tokens"] for r in sent] == [32_769, 8, 8, 1, 1]
    listed = [r for r in srv.requests() if r["path"].startswith("http://dashscope-intl.aliyuncs.com/api/v1/models?")]
    assert listed and {r["headers"]["user-agent"] for r in listed} == {GATEWAY_AGENT}
    # the spend said is Qwen's usage: the cache's prompt twice, and more
    spent = int(re.search(r"spent: ([\d,]+) tokens", out).group(1).replace(",", ""))
    assert spent > 2 * 1_100


def test_a_drifted_qwen_differs_in_exactly_what_drifted(srv, settings, key):
    srv.switches(model_caps={PROBED: 16_384},  # its list and its refusal say 16,384
                 model_list={"override": {"qwen3.6-flash": {"prices": FLASH_PRICE}}, "omit": ["qwen3.5-plus"]})
    before = chats(srv)
    rc, out, err = check(srv, settings, key, "ds", "--deep", "--no-cache-probe")
    assert (rc, err) == (6, ""), out + err
    assert [ln for ln in out.splitlines() if ln.startswith("DIFF")] == [
        "DIFF qwen3.6-flash input price: gateway assumes $0.1875/M, Qwen says $0.25/M — the gateway uses Qwen's "
        "figure while it can read the list; correct the catalogue's price (used when the list cannot be read)",
        "DIFF qwen-plus output cap: gateway assumes 32,768, Qwen says 16,384 — the gateway uses Qwen's figure while "
        "it can read the list; correct the catalogue's `output`",
        "DIFF qwen3.5-plus: gateway assumes served on payg-intl, Qwen says not in this key's list — this key cannot "
        "call it; requests for it go to other accounts",
    ], out
    assert "ok qwen-plus output cap: Qwen refused 32,769 with [1, 16,384], as its list says" in out.splitlines()
    assert chats(srv) - before == 3  # the cache's probe skipped
    rc, out, _ = check(srv, settings, key, "ds", "--json")
    report = json.loads(out)
    assert rc == 6 and report["account"] == "ds" and report["spent_tokens"] == 0
    assert [d["what"] for d in report["differences"]] == ["qwen3.6-flash input price", "qwen-plus output cap",
                                                          "qwen3.5-plus"]
    assert chats(srv) - before == 3  # without --deep: nothing spent


@pytest.mark.parametrize("unreadable,why", [(500, "HTTP 500"), ("garbage", "not JSON")])
def test_an_unreadable_list_is_one_line(srv, settings, key, unreadable, why):
    srv.switches(model_list={"unreadable": unreadable})
    before = chats(srv)
    rc, out, err = check(srv, settings, key, "ds")
    assert (rc, err) == (6, "") and out.splitlines() == [
        f"DIFF Qwen's list could not be read ({why}): the gateway uses the catalogue for this account"], out
    assert chats(srv) == before


def test_no_such_account_or_no_key_account(srv, settings, key):
    rc, out, err = check(srv, settings, key, "nobody")
    assert (rc, out) == (5, "") and err == "qwen-auth: no account named 'nobody'\n"
    Registry(settings).put({"name": "work", "kind": "oauth"})
    rc, out, err = check(srv, settings, key, "work", "--deep")
    assert rc == 1 and "is an oauth account" in err
    rc, out, err = run_cli(settings, "check", "ds", env={"HTTP_PROXY": srv.url})  # DS_KEY unset
    assert rc == 1 and "DS_KEY is not set" in err, err
    rc, out, err = run_cli(settings, "check", "ds", env={"DS_KEY": key, "HTTP_PROXY": "http://127.0.0.1:9"})
    assert rc == 4 and "could not reach dashscope-intl.aliyuncs.com (ConnectError" in err and key not in out + err


def test_a_list_that_hangs_is_said_within_a_bounded_wait_and_the_chat_api_is_probed(srv, settings, key):
    """Issue 79 item 5: Model Studio's List Models API never answers while its chat API does. `check --deep` says the
    list could not be read after a few seconds' wait and probes the chat API with the account's own default model —
    it ends within the 50 s it is given here (it used to give up after 64 s, probing nothing)."""
    srv.switches(model_list={"unreadable": "hang"})
    before = chats(srv)
    p = cli(settings, "check", "ds", "--deep", "--no-cache-probe",
            env={"DS_KEY": key, "HTTP_PROXY": srv.url, "NO_PROXY": ""})
    try:
        out, err = p.communicate(timeout=50)
    finally:
        p.kill()
        p.wait(5)
    assert key not in out + err and (p.returncode, err) == (6, ""), out + err
    lines = out.splitlines()
    assert "DIFF Qwen's list could not be read (no answer within 5 s): the gateway uses the catalogue for this " \
           "account" in lines, out
    assert f"ok {PROBED} partial mode: served (HTTP 200), as the catalogue says" in lines, out
    assert "ok stream shape: a finish chunk, a usage chunk, then data: [DONE]" in lines, out
    assert chats(srv) - before == 3 and {r["body"]["model"] for r in srv.chat_requests()[-3:]} == {PROBED}

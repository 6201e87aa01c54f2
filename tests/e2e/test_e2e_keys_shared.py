"""Named keys shared by two real gateways (mitmdump, each with its own state folder as on two machines) on one
real PostgreSQL (`--set qwen_state_url=…`, keys made with `qwen-keys --state-url`): keys, limits and spend
are one state for both."""

from __future__ import annotations

import concurrent.futures
import json

import httpx
import openai
import pytest

from helpers.pgserver import pg_server, pg_url  # noqa: F401  (fixtures)
from helpers.procs import Gateway
from helpers.team import add_key, openai_client, qwen_keys, team_env, until

pytestmark = pytest.mark.e2e
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def pair(tmp_path, emu, pg_url):
    """(gateway one, gateway two, the env qwen-keys uses: the database URL)."""
    gws = []
    for name in ("one", "two"):
        env = team_env(tmp_path, emu, name)
        gws.append(Gateway(tmp_path / name / "gw", env=env, args=("--set", f"qwen_state_url={pg_url}")))
    try:
        for gw in gws:
            gw.start()
        yield gws[0], gws[1], {"QWEN_STATE_URL": pg_url, "QWEN_GATEWAY_HOME": str(tmp_path / "cli-state")}
    finally:
        for gw in gws:
            gw.stop()


def status(gw: Gateway, key: str) -> int:
    return httpx.post(gw.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, trust_env=False,
                      json={"model": "gpt-4o", "messages": HI}, timeout=30).status_code


def test_keys_made_with_qwen_keys_are_seen_by_every_gateway_within_5_s(pair, emu):
    one, two, cli = pair
    assert status(one, "anything") == 200 and status(two, "anything") == 200  # no keys yet: open
    key = add_key(cli, "alice")
    for gw in (one, two):
        until(lambda gw=gw: status(gw, "anything") == 401, "the new key on every gateway", limit=5)
        assert status(gw, key) == 200
    qwen_keys(cli, "revoke", "alice")
    for gw in (one, two):
        until(lambda gw=gw: status(gw, key) == 401, "the revocation on every gateway", limit=5)
    assert not (cli["QWEN_GATEWAY_HOME"] and __import__("pathlib").Path(cli["QWEN_GATEWAY_HOME"], "keys.sqlite3").exists())


def test_a_key_deleted_is_gone_from_every_gateway_and_the_last_one_opens_them_again(pair, emu):
    one, two, cli = pair
    alice, bob = add_key(cli, "alice"), add_key(cli, "bob")
    for gw in (one, two):
        until(lambda gw=gw: status(gw, bob) == 200 and status(gw, "anything") == 401, "the keys on every gateway",
              limit=5)
    qwen_keys(cli, "delete", "alice")  # announced by NOTIFY, as a revocation is
    for gw in (one, two):
        until(lambda gw=gw: status(gw, alice) == 401, "the deletion on every gateway", limit=5)
        assert status(gw, bob) == 200 and "no named client key is left" not in gw.log()
    assert [k["name"] for k in json.loads(qwen_keys(cli, "list", "--json").stdout)] == ["bob"]
    qwen_keys(cli, "delete", "bob")
    for gw in (one, two):
        until(lambda gw=gw: status(gw, "anything") == 200, "every gateway keyless again", limit=5)
        assert gw.log().count("no named client key is left") == 1


def test_a_key_with_rpm_3_gets_its_4th_request_in_a_minute_refused_whichever_gateway_it_reaches(pair, emu):
    one, two, cli = pair
    key = add_key(cli, "three", "--rpm", "3")
    until(lambda: status(one, "x") == 401 and status(two, "x") == 401, "the key on both gateways", limit=5)
    assert [status(gw, key) for gw in (one, two, one)] == [200, 200, 200]
    with pytest.raises(openai.RateLimitError) as e:
        openai_client(two.url, key).chat.completions.create(model="gpt-4o", messages=HI)
    assert e.value.code == "rate_limit_exceeded" and "3 requests per minute" in e.value.message
    assert status(one, key) == 429


def test_twenty_concurrent_requests_across_two_gateways_on_a_key_with_rpm_5_get_exactly_5_answers(pair, emu):
    one, two, cli = pair
    key = add_key(cli, "burst", "--rpm", "5")
    until(lambda: status(one, "x") == 401 and status(two, "x") == 401, "the key on both gateways", limit=5)
    before = len(emu.chat_requests())
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(lambda i: status((one, two)[i % 2], key), range(20)))
    assert sorted(codes) == [200] * 5 + [429] * 15, codes
    assert len(emu.chat_requests()) == before + 5


def test_what_a_key_spent_through_one_gateway_counts_at_the_other(pair, emu):
    one, two, cli = pair
    key = add_key(cli, "budget", "--daily-tokens", "10")
    until(lambda: status(one, "x") == 401 and status(two, "x") == 401, "the key on both gateways", limit=5)
    assert openai_client(one.url, key).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "word " * 30}]).usage.total_tokens > 10
    until(lambda: json.loads(qwen_keys(cli, "list", "--json").stdout)[0]["tokens_today"] > 10,
          "gateway one writing what the key spent", limit=5)  # batched: within about a second
    seen: list[int] = []  # gateway two hears of it within about a second: what it admitted meanwhile is counted
    until(lambda: seen.append(status(two, key)) or seen[-1] == 429, "gateway two seeing what gateway one spent",
          limit=5)
    with pytest.raises(openai.RateLimitError) as e:
        openai_client(two.url, key).chat.completions.create(model="gpt-4o", messages=HI)
    assert e.value.code == "insufficient_quota" and "daily budget" in e.value.message
    listed = until(lambda: [k for k in json.loads(qwen_keys(cli, "list", "--json").stdout)
                            if k["requests_today"] == 1 + seen.count(200)], "every admitted request counted")
    # at most a second of polling (every 0.1 s) is admitted before gateway two hears of the spend
    assert listed[0]["name"] == "budget" and listed[0]["tokens_today"] > 10 and seen.count(200) <= 10

"""Batches through the retry policy and the pool, as chat turns go (issue 62, item 1), through a real mitmdump and
the emulator's Files and Batch APIs with its faults aimed at them: an upload whose first account's key Qwen
refuses (401) is taken by the next pay-as-you-go account, and the pool marks the refused one (/health); a batch
create throttled (429) on the account that holds its file is sent again there once the wait is over, and Qwen
holds one batch; a create Qwen answered with a server error is never sent twice; a holder whose key is refused is
named in the client's error."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai
import pytest

from helpers.home import Home
from helpers.team import openai_client

pytestmark = pytest.mark.e2e

MODEL = "qwen-plus"
ROW = {"custom_id": "q1", "method": "POST", "url": "/v1/chat/completions",
       "body": {"model": MODEL, "messages": [{"role": "user", "content": "1 + 1?"}]}}


def two_payg(tmp_path: Path, emu) -> tuple[dict[str, str], str, str]:
    """Two key accounts on pay-as-you-go's base (`a` first in the round-robin, then `b`)."""
    home = Home(tmp_path, emu)
    key_a = home.key("a", key_env="KEY_A", default_model=MODEL)
    key_b = home.key("b", key_env="KEY_B", default_model=MODEL)
    return home.env(), key_a, key_b


def upload(c) -> str:
    return c.files.create(file=("in.jsonl", (json.dumps(ROW) + "\n").encode()), purpose="batch").id


def accounts(gw) -> dict[str, dict]:
    return {a["name"]: a for a in httpx.get(gw.url + "/health", trust_env=False, timeout=10).json()["accounts"]}


def held(emu) -> int:
    return len(emu.admin("GET", "batches")["batches"])


def test_a_refused_key_is_reported_and_the_next_account_takes_the_upload(tmp_path, emu, make_gateway):
    env, key_a, key_b = two_payg(tmp_path, emu)
    gw = make_gateway(env=env)
    c = openai_client(gw.url, "client-key")
    emu.fault("auth401", token=key_a, path="/files")
    fid = upload(c)  # a's key refused before anything was uploaded: b takes it
    assert accounts(gw)["a"]["state"] == "refused" and accounts(gw)["b"]["state"] == "ok"
    emu.fault("throttle429", token=key_b, path="/batches")
    made = c.batches.create(input_file_id=fid, endpoint="/v1/chat/completions", completion_window="24h")
    assert made.id.startswith("batch_") and held(emu) == 1  # waited on b, where the file lives; one batch on Qwen
    assert c.batches.retrieve(made.id).id == made.id
    assert key_a not in gw.log() and key_b not in gw.log()


def test_a_create_qwen_may_have_taken_is_never_sent_twice(tmp_path, emu, make_gateway):
    env, _, key_b = two_payg(tmp_path, emu)
    gw = make_gateway(env=env)
    c = openai_client(gw.url, "client-key")
    fid = upload(c)  # on a
    before = emu.stats()["batch_api_requests"]
    emu.fault("server500", path="/batches")
    with pytest.raises(openai.InternalServerError):
        c.batches.create(input_file_id=fid, endpoint="/v1/chat/completions", completion_window="24h")
    assert emu.stats()["batch_api_requests"] == before + 1 and held(emu) == 0


def test_the_holders_refused_key_is_named_and_no_other_account_is_asked(tmp_path, emu, make_gateway):
    env, key_a, _ = two_payg(tmp_path, emu)
    gw = make_gateway(env=env)
    c = openai_client(gw.url, "client-key")
    fid = upload(c)  # on a
    before = emu.stats()["batch_api_requests"]
    emu.fault("auth401", token=key_a, path="/batches")
    with pytest.raises(openai.AuthenticationError) as e:
        c.batches.create(input_file_id=fid, endpoint="/v1/chat/completions", completion_window="24h")
    assert "account a" in e.value.message and "$KEY_A" in e.value.message and key_a not in e.value.message
    assert emu.stats()["batch_api_requests"] == before + 1 and held(emu) == 0  # b holds no file of it
    assert accounts(gw)["a"]["state"] == "refused"

"""Model Studio's own model list with prices on the emulator (`GET /api/v1/models`, scripts/emulator/model_list.py):
paging, the key's models, each entry's facts and prices from the gateway's catalogue (read here with tomllib, not
through the emulator), and the `model_list` drift switch. Driven over HTTP against an emulator process."""

from __future__ import annotations

import datetime
import json
import sys
import tomllib
from decimal import Decimal
from pathlib import Path

import pytest

from emulation.test_emulator import API_KEY, emulator_fixtures

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
from emulator import model_list  # noqa: E402

pytestmark = pytest.mark.e2e  # starts an emulator process

proc, emu = emulator_fixtures("--quiet", "--api-key", API_KEY)
RAW = tomllib.loads((ROOT / "addons" / "gateway" / "models" / "catalogue.toml").read_text(encoding="utf-8"))["models"]
AUTH = {"Authorization": f"Bearer {API_KEY}"}
TODAY = "2026-11-20"  # qwen4-max-preview still served (its last day 2026-11-25), qwen-turbo retired (2026-10-09)
OTHER = "sk-emulator-other"


def inherited(model: str, fact: str):
    raw = RAW[model]
    return raw[fact] if fact in raw else RAW[raw["family"]].get(fact) if "family" in raw else None


def expected_models(today: str) -> list[str]:
    """What a key without `key_models` may call: chat rows but the OAuth portal's, then embeddings; none retired."""
    live = [m for m in RAW if not (RAW[m].get("retires") and today > RAW[m]["retires"])]
    chat = [m for m in live if inherited(m, "kind") in (None, "chat") and inherited(m, "plans") != ["oauth"]]
    return chat + [m for m in live if inherited(m, "kind") == "embedding"]


def listing(emu, headers=AUTH, **params) -> dict:
    r = emu.http.get("/api/v1/models", params=params, headers=headers)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json", r.text
    body = r.json()
    assert body["success"] is True and body["request_id"]
    return body["output"]


def everything(emu, headers=AUTH) -> dict[str, dict]:
    return {m["model"]: m for m in listing(emu, headers, page_size=100)["models"]}


def prices_of(entry: dict) -> dict[str, dict[str, Decimal]]:
    """range_name -> price type -> USD per million tokens, checking each price's unit and band on the way."""
    out = {}
    for tier in entry["prices"]:
        assert all(isinstance(p["price"], str) and p["price_unit"] == "USD/1M tokens" and p["time_band"] == "standard"
                   for p in tier["prices"])
        out[tier["range_name"]] = {p["type"]: Decimal(p["price"]) for p in tier["prices"]}
    return out


def usd(value) -> Decimal:
    return Decimal(str(value))


@pytest.mark.parametrize("tokens, written", [(999, "999"), (1000, "1k"), (10_000, "10k"), (32_000, "32k"),
                                             (128_000, "128k"), (256_000, "256k"), (1_500, "1.5k"),
                                             (1_000_000, "1M"), (10_000_000, "10M"), (991_808, "991.808k")])
def test_a_tier_bound_is_written_in_k_and_m(tokens, written):
    assert model_list.amount(tokens) == written


def test_range_names_come_from_the_tier_bounds():
    assert model_list.range_names([None]) == ["Default"]
    assert model_list.range_names([256_000, None]) == ["Input<=256k", "Input>256k"]
    assert model_list.range_names([32_000, 128_000, None]) == ["Input<=32k", "32k<Input<=128k", "Input>128k"]
    assert model_list.range_names([128_000, 256_000, 1_000_000, None]) == [
        "Input<=128k", "128k<Input<=256k", "256k<Input<=1M", "Input>1M"]


def test_page_size_one_walks_every_model_the_key_may_call_and_none_retired(emu):
    emu.switches(today=TODAY)
    first = listing(emu)
    assert (first["page_no"], first["page_size"]) == (1, 10) and len(first["models"]) == 10  # the defaults
    expected = expected_models(TODAY)
    assert "qwen4-max-preview" in expected and "qwen-turbo" not in expected and "text-embedding-v4" in expected
    walked = []
    for page in range(1, len(expected) + 1):
        out = listing(emu, page_no=page, page_size=1, language="en-US")
        assert (out["total"], out["page_no"], out["page_size"]) == (len(expected), page, 1)
        walked += [m["model"] for m in out["models"]]
    assert walked == expected
    past = listing(emu, page_no=len(expected) + 1, page_size=1)
    assert past["models"] == [] and past["total"] == len(expected)
    assert [m["model"] for m in listing(emu, page_no=2, page_size=3)["models"]] == expected[3:6]
    emu.switches(today="2026-11-26")  # past qwen4-max-preview's last day: gone from the list, as from chat
    assert "qwen4-max-preview" not in everything(emu)
    assert emu.chat(model="qwen4-max-preview", path="/compatible-mode/v1/chat/completions").status_code == 404


@pytest.mark.parametrize("params", [{"page_size": "0"}, {"page_size": "101"}, {"page_size": "ten"},
                                    {"page_size": "1.5"}, {"page_no": "0"}, {"page_no": "-1"}, {"page_no": "x"}])
def test_bad_paging_is_a_dashscope_400(emu, params):
    r = emu.http.get("/api/v1/models", params=params, headers=AUTH)
    assert r.status_code == 400
    body = r.json()
    assert set(body) == {"request_id", "code", "message"} and body["code"] == "InvalidParameter"
    assert next(iter(params)) in body["message"]


def test_the_list_needs_a_valid_key(emu):
    assert emu.http.get("/api/v1/models").status_code == 401
    r = emu.http.get("/api/v1/models", headers={"Authorization": "Bearer sk-nobody"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert emu.http.post("/api/v1/models", headers=AUTH).status_code == 405


def test_each_key_lists_what_it_unlocks_as_its_compatible_list_does(emu):
    emu.admin("POST", "tokens", {"kind": "key", "access_token": OTHER})
    own = ["qwen3.6-plus", "qwen3-coder-plus", "text-embedding-v4"]
    emu.switches(key_models={API_KEY: own})
    assert list(everything(emu)) == own and listing(emu)["total"] == 3
    compatible = emu.http.get("/compatible-mode/v1/models", headers=AUTH).json()["data"]
    assert [m["id"] for m in compatible] == own
    other = {"Authorization": f"Bearer {OTHER}"}
    assert list(everything(emu, other)) == expected_models(model_list_today(emu))  # no list of its own: every model
    emu.switches(key_models=None, listed_models=["qwen3-max", "qwen-plus"])
    assert list(everything(emu)) == ["qwen3-max", "qwen-plus"]


def model_list_today(emu) -> str:
    """The emulator's date as the list uses it (the `today` switch, else the real UTC date)."""
    return emu.admin("GET", "switches")["today"] or datetime.datetime.now(datetime.timezone.utc).date().isoformat()


def test_a_tiered_models_prices_are_its_rows_with_the_explicit_caches_defaults(emu):
    listed = everything(emu)
    for model in ("qwen3-max", "qwen-plus"):
        tiers = RAW[model]["price"]["payg:intl"]
        got = prices_of(listed[model])
        assert list(got) == model_list.range_names([t.get("upto") for t in tiers])
        for tier, (name, p) in zip(tiers, got.items()):
            assert p["input_token"] == usd(tier["input"]) and p["output_token"] == usd(tier["output"]), name
            assert p["input_token_cache"] == usd(tier["cached"])  # the implicit cache's read
            assert p["input_token_cache_read"] == usd(tier["input"]) * Decimal("0.1")  # none in the row: 10 %
            assert p["input_token_cache_creation_5m"] == usd(tier["input"]) * Decimal("1.25")  # and 125 %
            assert "input_token_cache_creation_1h" not in p  # never guessed
            assert p.get("thinking_output_token") == (usd(tier["thinking_output"]) if "thinking_output" in tier
                                                      else None)
    assert list(prices_of(listed["qwen3-max"])) == ["Input<=32k", "32k<Input<=128k", "Input>128k"]
    assert list(prices_of(listed["qwen-plus"])) == ["Input<=256k", "Input>256k"]
    assert prices_of(listed["qwen-plus"])["Input<=256k"]["input_token_cache_read"] == Decimal("0.04")
    assert listed["qwen-plus"]["prices"][0]["prices"][3]["price"] == "0.04"  # a decimal string, no float noise
    assert listed["qwen3-coder-next"]["prices"] == []  # the catalogue prices it on no billing


def test_qwen4_max_prices_its_cache_from_its_own_row(emu):
    (name, p), = prices_of(everything(emu)["qwen4-max"]).items()
    row = RAW["qwen4-max"]["price"]["payg:intl"][0]
    assert name == "Default" and p["input_token"] == usd(row["input"]) == Decimal("1.5")
    assert p["input_token_cache_read"] / p["input_token"] == Decimal("0.05")
    assert p["input_token_cache_creation_5m"] / p["input_token"] == Decimal("1.25")
    assert p["input_token_cache_creation_1h"] / p["input_token"] == Decimal("2")
    assert (p["output_token"], p["input_token_cache"]) == (usd(row["output"]), usd(row["cached"]))
    assert "thinking_output_token" not in p


def test_each_entry_says_what_its_row_says(emu):
    listed = everything(emu)
    plus = listed["qwen3.6-plus"]
    assert (plus["name"], plus["provider"], plus["capabilities"]) == ("Qwen3.6-Plus", "qwen", ["Reasoning"])
    assert plus["inference_metadata"] == {"request_modality": ["Text", "Image"], "response_modality": ["Text"]}
    assert plus["model_info"] == {"context_window": 1_000_000, "max_input_tokens": 1_000_000,
                                  "max_output_tokens": 65_536, "reasoning_max_output_tokens": 81_920}
    assert plus["published_time"] == "2026-04-02 00:00:00"
    coder = listed["qwen3-coder-plus"]  # does not think; released "2025-07" is no day
    assert "capabilities" not in coder and "published_time" not in coder
    assert coder["inference_metadata"]["request_modality"] == ["Text"]
    assert listed["qwen3-max"]["model_info"] == {"context_window": 262_144, "max_input_tokens": 258_048,
                                                 "max_output_tokens": 65_536}
    emu.switches(model_caps={"qwen3-max": 32_768})  # the cap chat holds requests to is the one listed
    assert everything(emu)["qwen3-max"]["model_info"]["max_output_tokens"] == 32_768


def test_a_key_on_another_billing_reads_that_billings_prices(emu):
    emu.switches(model_list={"billing": {API_KEY: "payg:cn"}})
    listed = everything(emu)
    cn = RAW["qwen3-max"]["price"]["payg:cn"]
    assert [p["input_token"] for p in prices_of(listed["qwen3-max"]).values()] == [usd(t["input"]) for t in cn]
    assert listed["qwen4-max"]["prices"] == []  # its row prices the international site only


def test_override_replaces_prices_and_merges_model_info(emu):
    tiers = [{"range_name": "Default", "prices": [{"type": "input_token", "price": "9.99",
                                                   "price_unit": "USD/1M tokens", "time_band": "standard"}]}]
    emu.switches(model_list={"override": {"qwen3-max": {"prices": tiers},
                                          "qwen3.6-plus": {"model_info": {"max_output_tokens": 8192},
                                                           "published_time": "2026-05-01 00:00:00"},
                                          "qwen-plus": {"model_info": {"reasoning_max_output_tokens": None}}}})
    listed = everything(emu)
    assert listed["qwen3-max"]["prices"] == tiers
    assert listed["qwen3.6-plus"]["model_info"] == {"context_window": 1_000_000, "max_input_tokens": 1_000_000,
                                                    "max_output_tokens": 8192, "reasoning_max_output_tokens": 81_920}
    assert listed["qwen3.6-plus"]["published_time"] == "2026-05-01 00:00:00"
    assert "reasoning_max_output_tokens" not in listed["qwen-plus"]["model_info"]
    assert prices_of(listed["qwen3.6-flash"])["Default"]["input_token"] == Decimal("0.1875")  # others untouched


def test_an_omitted_model_leaves_the_list_but_chat_still_serves_it(emu):
    before = listing(emu)["total"]
    emu.switches(model_list={"omit": ["qwen3.6-plus", "text-embedding-v4"]})
    out = listing(emu, page_size=100)
    assert out["total"] == before - 2
    assert not {"qwen3.6-plus", "text-embedding-v4"} & {m["model"] for m in out["models"]}
    r = emu.chat(model="qwen3.6-plus", path="/compatible-mode/v1/chat/completions")
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "Echo: hello there"
    assert "qwen3.6-plus" in [m["id"] for m in emu.http.get("/compatible-mode/v1/models", headers=AUTH).json()["data"]]


@pytest.mark.parametrize("status, code", [(500, "InternalError"), (401, "InvalidApiKey"), (404, "Not Found")])
def test_an_unreadable_list_answers_a_dashscope_error(emu, status, code):
    emu.switches(model_list={"unreadable": status})
    r = emu.http.get("/api/v1/models", headers=AUTH)
    assert r.status_code == status
    body = r.json()
    assert set(body) == {"request_id", "code", "message"} and body["code"] == code
    assert emu.chat(path="/compatible-mode/v1/chat/completions").status_code == 200  # the list only


def test_a_garbage_list_is_200_and_not_json(emu):
    emu.switches(model_list={"unreadable": "garbage"})
    r = emu.http.get("/api/v1/models", headers=AUTH)
    assert r.status_code == 200 and r.content
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.content)
    emu.switches(model_list=None)
    assert listing(emu)["total"] > 0


def test_a_hanging_list_for_one_key_never_answers_and_the_other_keys_list_does(emu):
    """`unreadable` per key: `hang` holds the request unanswered (the client's own wait ends it); with `compatible`
    the key's GET /models hangs too; another key's lists and the chat API answer."""
    import httpx
    emu.switches(model_list={"unreadable": {API_KEY: "hang"}, "compatible": True})
    with httpx.Client(base_url=emu.url, timeout=1.0, trust_env=False) as http:
        for path in ("/api/v1/models", "/compatible-mode/v1/models"):
            with pytest.raises(httpx.ReadTimeout):
                http.get(path, headers=AUTH)
    assert emu.chat(path="/compatible-mode/v1/chat/completions").status_code == 200  # the lists only
    emu.switches(model_list={"unreadable": {API_KEY: 503}, "compatible": True})
    r = emu.http.get("/api/v1/models", headers=AUTH)
    assert r.status_code == 503 and r.json()["code"] == "ServiceUnavailable"
    compatible = emu.http.get("/compatible-mode/v1/models", headers=AUTH)
    assert compatible.status_code == 503 and compatible.json()["error"]["code"] == "ServiceUnavailable"
    emu.switches(model_list={"unreadable": {OTHER: 503}})  # another key's fault: this key's lists answer
    assert emu.http.get("/api/v1/models", headers=AUTH).status_code == 200
    emu.switches(model_list=None)

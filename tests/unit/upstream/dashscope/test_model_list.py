"""Model Studio's model list decoded (upstream/dashscope/model_list.py): tiers by range name, USD only, unknown
stays unknown."""

import json

import pytest

from qwen_gateway.upstream.dashscope import model_list


def usd(kind: str, price: str, band: str = "standard", unit: str = "USD/1M tokens") -> dict:
    return {"type": kind, "price": price, "price_unit": unit, "time_band": band}


TIERED = {"model": "qwen3.6-plus", "published_time": "2026-04-02 00:00:00",
          "model_info": {"context_window": 1000000, "max_input_tokens": 991808, "max_output_tokens": 65536},
          "prices": [{"range_name": "256k<Input<=1M", "prices": [usd("input_token", "2"), usd("output_token", "6")]},
                     {"range_name": "Input<=256k", "prices": [usd("input_token", "0.5"), usd("output_token", "3"),
                                                              usd("input_token", "0.9", "peak"),
                                                              usd("input_token_cache_read", "0.05"),
                                                              usd("input_token_cache_creation_1h", "1.0")]}]}


@pytest.mark.parametrize("name, bound", [("Input<=32k", 32_000), ("32k<Input<=128k", 128_000), ("Input>128k", None),
                                         ("Default", None), ("256k<Input<=1M", 1_000_000), ("输入<=32k", 32_000),
                                         ("Output<=32k", False), ("", False)])
def test_a_range_name_bounds_the_prompt(name, bound):
    assert model_list.upper(name) == bound


def test_a_tiered_model_its_caps_and_publish_time():
    listed, why = model_list.model(TIERED)
    assert why == ""
    assert [(t.up_to, t.input, t.output, t.name) for t in listed.tiers] == [
        (256_000, 0.5, 3.0, "Input<=256k"), (None, 2.0, 6.0, "256k<Input<=1M")]  # the top: every prompt above
    assert listed.tiers[0].cache_read == 0.05 and listed.tiers[0].cache_write_1h == 1.0  # the peak band not taken
    assert (listed.context, listed.max_input, listed.max_output, listed.reasoning_max_output) == \
        (1000000, 991808, 65536, None)
    assert listed.published == "2026-04-02 00:00:00"
    assert listed.other_bands == ("peak",)  # named, its hours not given: not applied, said on each answer


def test_only_a_priced_model_names_its_other_bands():
    assert model_list.other_bands([{"prices": [usd("input_token", "1", "off_peak"), usd("input_token", "1", ""),
                                               usd("output_token", "2", "off_peak"), "x"]}, 3]) == ("off_peak",)
    assert model_list.other_bands(None) == ()
    unpriced, _ = model_list.model({**TIERED, "prices": [{"range_name": "Default", "prices": [
        usd("input_token", "1", "peak")]}]})
    assert unpriced.tiers is None and unpriced.other_bands == ()  # the catalogue prices it: nothing to say


def test_the_open_ended_top_tier_is_the_last_one():
    one = {"model": "m", "prices": [{"range_name": "Default", "prices": [usd("input_token", "1"),
                                                                        usd("output_token", "2")]}]}
    assert [t.up_to for t in model_list.model(one)[0].tiers] == [None]


@pytest.mark.parametrize("item, said", [
    (usd("input_token", "2.9", unit="CNY/1M tokens"), "not USD"),
    (usd("input_token", "0.001", unit="USD per image"), "cannot read"),
    (usd("input_token", "cheap"), "cannot read")])
def test_prices_it_cannot_read_as_usd_per_million_are_not_taken(item, said):
    record = {"model": "m", "prices": [{"range_name": "Default", "prices": [item, usd("output_token", "1")]}]}
    listed, why = model_list.model(record)
    assert listed.tiers is None and said in why


def test_per_thousand_is_scaled_and_a_missing_output_price_leaves_it_unpriced():
    record = {"model": "m", "prices": [{"range_name": "Default", "prices": [
        usd("input_token", "0.0004", unit="USD/1K tokens"), usd("output_token", "0.0016", unit="USD/1K tokens")]}]}
    tier = model_list.model(record)[0].tiers[0]
    assert (round(tier.input, 6), round(tier.output, 6)) == (0.4, 1.6)
    no_output = {"model": "m", "prices": [{"range_name": "Default", "prices": [usd("input_token", "1")]}]}
    assert model_list.model(no_output)[0].tiers is None


def test_unknown_is_none_never_zero():
    listed, _ = model_list.model({"model": "m", "model_info": {"max_output_tokens": 0, "context_window": "big"}})
    assert listed.tiers is None and listed.max_output is None and listed.context is None


def test_a_page_and_what_is_not_the_list():
    raw = json.dumps({"output": {"total": 3, "page_no": 1, "page_size": 100,
                                 "models": [TIERED, {"name": "no id"}, "x"]}}).encode()
    records, total = model_list.page(raw)
    assert [r["model"] for r in records] == ["qwen3.6-plus"] and total == 3
    for bad in (b"{}", b"[]", b'{"output": {"models": []}}', b"<html>"):
        with pytest.raises(ValueError):
            model_list.page(bad)
    assert model_list.path(2) == "/api/v1/models?page_no=2&page_size=100&language=en-US"


def test_pages_are_read_until_every_record_is_in_and_no_further_than_the_most():
    """One paging for both readers (key_models.py's on the gateway's pool, drift.py's on httpx)."""
    import json as _json

    def answer(n: int, total: int) -> bytes:
        return _json.dumps({"output": {"total": total, "models": [{"model": f"m{i}"} for i in range(n)]}}).encode()

    pages = model_list.Pages("https://dashscope-intl.aliyuncs.com/compatible-mode/v1")
    asked = []
    while (where := pages.next()) is not None:
        asked.append(where)
        pages.take(answer(100 if len(asked) < 3 else 50, 250))
    assert [u.split("page_no=")[1].split("&")[0] for u, _ in asked] == ["1", "2", "3"]
    assert asked[0][1] == "dashscope-intl.aliyuncs.com" and len(pages.records) == 250
    endless = model_list.Pages("https://dashscope-intl.aliyuncs.com/compatible-mode/v1")
    count = 0
    while endless.next() is not None:
        count += 1
        endless.take(answer(100, 10**6))
    assert count == model_list.MOST_PAGES


def test_a_zero_price_is_unknown_unless_the_catalogue_says_the_model_is_free():
    """A 0 in the account's list is no price (issue 79, item 5): an input or output of 0 leaves the model to the
    catalogue's price (or unpriced), a 0 cache price to its documented default; only where the catalogue prices that
    very field at 0 (an embedding model's output) is it taken."""
    zero_input = {"model": "qwen3.6-plus", "prices": [{"range_name": "Default", "prices": [
        usd("input_token", "0"), usd("output_token", "3")]}]}
    listed, why = model_list.model(zero_input)
    assert listed.tiers is None and "0" in why and "input_token" in why and "free" in why
    zero_cache = {"model": "qwen3.6-plus", "prices": [{"range_name": "Default", "prices": [
        usd("input_token", "0.5"), usd("output_token", "3"), usd("input_token_cache", "0.0"),
        usd("input_token_cache_read", "0")]}]}
    tier = model_list.model(zero_cache)[0].tiers[0]
    assert (tier.input, tier.output, tier.cached, tier.cache_read) == (0.5, 3.0, None, None)
    embedding = {"model": "text-embedding-v4", "prices": [{"range_name": "Default", "prices": [
        usd("input_token", "0.07"), usd("output_token", "0")]}]}
    tier = model_list.model(embedding)[0].tiers[0]
    assert (tier.input, tier.output) == (0.07, 0.0)  # the catalogue prices its output at 0: free, said so
    not_free = {"model": "text-embedding-v4", "prices": [{"range_name": "Default", "prices": [
        usd("input_token", "0"), usd("output_token", "0")]}]}
    assert model_list.model(not_free)[0].tiers is None  # its input is not free by the catalogue

"""A key account's own model list (upstream/dashscope/key_models.py): parsed from an OpenAI list, and a fetch that
cannot happen leaves the plan's catalogue in place."""

from __future__ import annotations

import json
import logging

import pytest

from qwen_gateway.accounts import KEY, Credential
from qwen_gateway.models.model_map import LiveModels
from qwen_gateway.upstream.dashscope.key_models import KeyCatalogue, parse


def test_an_openai_model_list_is_read_in_its_order():
    raw = b'{"object": "list", "data": [{"id": "qwen4-max"}, {"id": "qwen3.6-plus"}, {"id": "qwen4-max"}, {"x": 1}]}'
    assert parse(raw) == ["qwen4-max", "qwen3.6-plus"]


def test_anything_else_is_no_list():
    assert parse(b"<html>") == [] and parse(b'{"data": "x"}') == [] and parse(b"[]") == []


async def test_an_account_without_a_usable_key_keeps_the_plans_catalogue():
    live = LiveModels()
    catalogue = KeyCatalogue(live, "ds", lambda: None)
    live.register("ds", (), catalogue.refresh_soon)
    await catalogue.refresh()
    assert not live.is_live("ds") and live.ids("ds") == () and not live.due("ds")  # retried after LIVE_RETRY


@pytest.mark.parametrize("count, said", [(1, "Qwen's model list read: 1 model"),
                                         (2, "Qwen's model list read: 2 models")])
async def test_the_list_read_is_said_with_its_count(caplog, count, said):
    class Listing(KeyCatalogue):
        async def _get(self, cred, url, host):
            models = [{"model": f"qwen-m{i}"} for i in range(count)]
            return 200, json.dumps({"output": {"total": count, "models": models}}).encode()

    cred = Credential("ds", KEY, "https://dashscope-intl.aliyuncs.com/compatible-mode/v1", "sk-test")
    live = LiveModels()
    catalogue = Listing(live, "ds", lambda: cred)
    live.register("ds", (), catalogue.refresh_soon)
    with caplog.at_level(logging.INFO, logger="qwen"):
        await catalogue.refresh()
    assert [r.getMessage() for r in caplog.records] == [f"qwen: account ds: {said}"]

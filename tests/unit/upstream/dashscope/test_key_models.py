"""A key account's own model list (upstream/dashscope/key_models.py): parsed from an OpenAI list, and a fetch that
cannot happen leaves the plan's catalogue in place."""

from __future__ import annotations

import asyncio
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


BASE = "https://dashscope-intl.aliyuncs.com/compatible-mode/v1"


class Hanging(KeyCatalogue):
    """Both lists never answer, until `answers` is set; `why` says how they fail instead of hanging."""
    answers: list[str] | None = None
    why: str = "hang"

    async def _get(self, cred, url, host):
        if self.answers is not None:
            if "/api/v1/models" in url:
                return 200, json.dumps({"output": {"total": len(self.answers),
                                                   "models": [{"model": m} for m in self.answers]}}).encode()
            return 200, json.dumps({"data": [{"id": m} for m in self.answers]}).encode()
        if self.why == "503":
            return 503, b'{"code":"ServiceUnavailable"}'
        if self.why == "garbage":
            return 200, b'{"output": {"to'
        if self.why == "refused":
            raise ConnectionRefusedError(111, "Connection refused")
        await asyncio.sleep(3600)
        raise AssertionError("never answered")


@pytest.mark.parametrize("why, said", [("hang", "no answer within 0.05 s"), ("503", "HTTP 503"),
                                       ("garbage", "an answer that is not the list"),
                                       ("refused", "ConnectionRefusedError")])
async def test_a_list_that_cannot_be_read_is_said_once_with_why_and_the_account_stays_unknown(
        caplog, monkeypatch, why, said):
    monkeypatch.setattr("qwen_gateway.upstream.dashscope.key_models.TIMEOUT", 0.05)
    cred = Credential("ds", KEY, BASE, "sk-secret-key")
    live = LiveModels()
    catalogue = Hanging(live, "ds", lambda: cred)
    catalogue.why = why
    live.register("ds", (), catalogue.refresh_soon)
    with caplog.at_level(logging.INFO, logger="qwen"):
        for _ in range(3):
            await catalogue.refresh()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and lines[0].startswith("qwen: account ds: its model list could not be read (") \
        and said in lines[0] and "tried for any model" in lines[0], lines
    assert caplog.records[0].levelno == logging.WARNING and "sk-secret-key" not in lines[0]
    assert live.unknown("ds") and not live.is_live("ds")  # unknown, never an empty list
    catalogue.answers = ["qwen3.7-max"]
    with caplog.at_level(logging.INFO, logger="qwen"):
        await catalogue.refresh()
    assert caplog.records[-1].getMessage() == "qwen: account ds: Qwen's model list read: 1 model"
    assert live.ids("ds") == ("qwen3.7-max",) and not catalogue.unread


async def test_a_default_or_mapped_model_the_list_lacks_is_one_warning_line_with_the_lists_choice(caplog):
    from qwen_gateway.models.model_map import ModelMap
    cred = Credential("ds", KEY, BASE, "sk-secret-key", model_map={"gpt-4o": "qwen3-max"})
    live = LiveModels()
    catalogue = Hanging(live, "ds", lambda: cred, named=ModelMap("coder-model").named)
    catalogue.answers = ["qwen3.6-plus", "qwen3.7-coder-plus", "qwen3.7-max"]
    live.register("ds", (), catalogue.refresh_soon)
    with caplog.at_level(logging.WARNING, logger="qwen"):
        await catalogue.refresh()
        await catalogue.refresh()  # said once: nothing changed
    assert [r.getMessage() for r in caplog.records] == [
        "qwen: account ds: qwen3-coder-plus (its default model; the list has qwen3.7-coder-plus), qwen3-max (the "
        "model map's gpt-4o; the list has qwen3.7-max) are not in its model list from Qwen (retired, or not for this "
        "key): requests for them are refused there"]
    catalogue.answers = ["qwen3-coder-plus", "qwen3-max"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="qwen"):
        await catalogue.refresh()
    assert caplog.records == []

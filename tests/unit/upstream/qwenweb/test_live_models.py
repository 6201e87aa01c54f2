"""Live models (issue #24 item 5): the web catalogue's answer read (`catalogue.parse`), the best current model
picked by rank, the cache with its TTL and its retry pause (`models.LiveModels`, a fake clock), /v1/models
joining the live catalogue with the account kind, and a catalogue that fails leaving the fallback."""

from __future__ import annotations

import asyncio
import json

from helpers.procs import free_port
from qwen_gateway.accounts import WEB, Credential
from qwen_gateway.models.model_map import LIVE_RETRY, LiveModels, ModelMap
from qwen_gateway.upstream.qwenweb import request
from qwen_gateway.upstream.qwenweb.live_models import WebCatalogue, best, parse, pick
from qwen_gateway.upstream.qwenweb.upstream import QwenWeb


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(model_id: str, types: list[str] | None = None) -> dict:
    return {"id": model_id, "info": {"meta": {"chat_type": types}} if types is not None else {}}


def test_parse_keeps_the_text_chat_models_in_order():
    raw = json.dumps({"data": [record("qwen4-plus", ["t2t", "search"]), record("wan-video", ["t2v"]),
                               record("qwen3.5-plus"), {"name": "no id"}, record("qwen4-plus", ["t2t"])]}).encode()
    assert parse(raw) == ["qwen4-plus", "qwen3.5-plus"]
    assert parse(b"<html>punish</html>") == [] and parse(b'{"data": 3}') == [] and parse(b"[]") == []


def test_best_is_the_newest_version_then_the_tier_then_a_general_model():
    assert best(["qwen3.7-plus", "qwen3.8-max", "qwen3.7-max"]) == "qwen3.8-max"
    assert best(["qwen3.8-max", "qwen4-plus"]) == "qwen4-plus"
    assert best(["qwen3.8-coder-max", "qwen3.8-max"]) == "qwen3.8-max"
    assert best(["qwen3.6-plus", "qwen3.6-flash"]) == "qwen3.6-plus"
    assert best([]) is None


def test_pick_keeps_a_listed_model_else_the_accounts_default_else_the_best():
    notes: list[str] = []
    models = ("qwen4-plus", "qwen3.5-plus")
    assert pick("qwen3.5-plus", models, None, notes) == "qwen3.5-plus" and notes == []
    assert pick("qwen3.7-plus", models, None, notes) == "qwen4-plus"
    assert notes == ["qwen3.7-plus is not in the Qwen Chat web catalogue: sent to qwen4-plus"]
    assert pick("gpt-4o", models, "qwen3.5-plus", []) == "qwen3.5-plus"
    assert pick("gpt-4o", models, "qwen-gone", []) == "qwen4-plus"


def test_live_models_fallback_cache_ttl_and_retry_pause():
    clock = Clock()
    live = LiveModels(ttl=3600, clock=clock)
    calls: list[str] = []
    live.register(WEB, ("qwen3.7-plus",), lambda: calls.append("refresh"))
    assert live.ids(WEB) == ("qwen3.7-plus",) and not live.is_live(WEB)
    live.wanted()
    assert calls == ["refresh"]
    live.put(WEB, ["qwen4-plus"])
    live.wanted()
    assert live.ids(WEB) == ("qwen4-plus",) and calls == ["refresh"]  # fresh: no refresh
    clock.now += 3600
    live.wanted()
    assert calls == ["refresh"] * 2
    live.put(WEB, [])  # a failed fetch keeps the last catalogue and pauses
    assert live.ids(WEB) == ("qwen4-plus",)
    live.wanted()
    assert calls == ["refresh"] * 2
    clock.now += LIVE_RETRY
    live.wanted()
    assert calls == ["refresh"] * 3
    live.put(WEB, ["qwen4-max"])
    live.stale(WEB)  # a model gone: the next chance refreshes
    assert live.due(WEB) and live.ids(WEB) == ("qwen4-max",)


def test_model_list_joins_the_live_catalogue_with_the_account_kind():
    models = ModelMap("coder-model")
    plain = models.list()
    assert all(m["owned_by"] in ("qwen", "qwen-gateway") for m in plain)
    models.live.register(WEB, request.WEB_MODELS, lambda: None)
    models.live.put(WEB, ["qwen4-plus", "qwen3.7-plus"])
    listed = {m["id"]: m["owned_by"] for m in models.list()}
    assert listed["qwen4-plus"] == "qwen-web" and listed["qwen3.7-plus"] == "qwen-web"
    assert listed["qwen3-coder-flash"] == "qwen" and listed["gpt-4o"] == "qwen-gateway"
    assert len(listed) == len(models.list())  # ids stay unique


def test_the_web_upstream_picks_from_the_live_catalogue():
    live = LiveModels()
    web = QwenWeb(0, live, "http://127.0.0.1:9")
    cred = Credential("chat", WEB, "http://127.0.0.1:9", "t")
    chat = {"messages": [{"role": "user", "content": "hi"}]}
    notes: list[str] = []
    assert web.chat_body(chat, model="qwen3.7-plus", cred=cred, notes=notes, learned=None)["model"] == "qwen3.7-plus"
    live.put(WEB, ["qwen4-plus", "qwen3.5-plus"])
    assert web.chat_body(chat, model="qwen3.7-plus", cred=cred, notes=notes, learned=None)["model"] == "qwen4-plus"
    assert QwenWeb(0).chat_body(chat, model="qwen4-plus", cred=cred, notes=[], learned=None)["model"] == "qwen3.8-max"


def test_a_catalogue_that_cannot_be_reached_leaves_the_fallback():
    port = free_port()  # a port nobody listens on, and no connection is given meanwhile
    live = LiveModels()
    live.register(WEB, request.WEB_MODELS, lambda: None)
    asyncio.run(WebCatalogue(live, f"http://127.0.0.1:{port}").refresh())
    assert live.ids(WEB) == request.WEB_MODELS and not live.is_live(WEB) and not live.due(WEB)


def test_refresh_soon_without_an_event_loop_does_nothing():
    live = LiveModels()
    WebCatalogue(live, "http://127.0.0.1:9").refresh_soon()
    assert not live.is_live(WEB)


def test_model_not_found_makes_the_catalogue_due_again():
    live = LiveModels()
    web = QwenWeb(0, live, "http://127.0.0.1:9")
    live.put(WEB, ["qwen3.7-plus"])
    assert not live.due(WEB)
    envelope = json.dumps({"success": False, "data": {"code": "Not_Found", "details": "Model not found!"}}).encode()
    err = web.classify(200, envelope, {"content-type": "application/json"})
    assert err.status == 404 and err.code == "model_not_found"
    assert live.due(WEB) and live.ids(WEB) == ("qwen3.7-plus",)  # refetched at the next chance, cache kept

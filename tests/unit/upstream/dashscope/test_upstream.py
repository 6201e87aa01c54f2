"""DashScope as the chat form's Upstream (upstream/dashscope/upstream.py): a Responses pass-through asks for Model
Studio's session cache on the models that offer it, when the response is stored (a later turn can continue it),
and its output cap is the Responses API's field within the model's cap."""

from __future__ import annotations

from qwen_gateway.accounts import KEY, Capability, Credential
from qwen_gateway.upstream.dashscope.upstream import DASHSCOPE, SESSION_CACHE

CRED = Credential("a", KEY, "https://dashscope-intl.aliyuncs.com/compatible-mode/v1", "sk-1")


def headers(suffix: str, body: dict) -> dict:
    return dict(DASHSCOPE.wire(CRED, suffix, body, user_agent="ua", stream=False, attempt=0).headers)


def test_the_session_cache_on_stored_responses_of_models_that_offer_it():
    assert headers("responses", {"model": "qwen3-coder-plus", "store": True})[SESSION_CACHE] == "enable"
    assert SESSION_CACHE not in headers("responses", {"model": "qwen3-coder-plus", "store": False})
    assert SESSION_CACHE not in headers("responses", {"model": "qwen3.5-27b"})  # Responses, no session cache
    assert SESSION_CACHE not in headers("chat/completions", {"model": "qwen3-coder-plus"})


def test_a_responses_body_keeps_its_cap_field_within_the_models_cap():
    notes: list[str] = []
    body = DASHSCOPE.own_body({"model": "x", "input": "hi", "max_output_tokens": 10**7}, model="qwen3-coder-plus",
                              capability=Capability.CHAT, cred=CRED, notes=notes)
    assert body == {"model": "qwen3-coder-plus", "input": "hi", "max_output_tokens": 65_536} and notes


def test_verbosity_is_a_hint_at_the_end_of_the_instructions_as_the_chat_path_gives_it():
    notes: list[str] = []
    body = DASHSCOPE.own_body({"model": "x", "input": "hi", "instructions": "be", "verbosity": "low"},
                              model="qwen3-coder-plus", capability=Capability.CHAT, cred=CRED, notes=notes)
    assert "verbosity" not in body and body["instructions"].startswith("be\n\n") and len(body["instructions"]) > 6
    alone = DASHSCOPE.own_body({"model": "x", "input": "hi", "verbosity": "low"}, model="qwen3-coder-plus",
                               capability=Capability.CHAT, cred=CRED, notes=notes)
    assert alone["instructions"] and "verbosity" not in alone

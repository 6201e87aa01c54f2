"""A field the client sent that a dialect or a provider does not carry is said on the flow (request_surface.py's
`drop` and `ignored` fates), never dropped in silence: the gaps the table's rows closed, one test each."""

from __future__ import annotations

from qwen_gateway.api import completions
from qwen_gateway.api.responses import request as responses
from qwen_gateway.upstream.dashscope import request as dashscope
from qwen_gateway.upstream.qwenweb import request as qwenweb
from qwen_gateway.upstream.selfhosted import request as selfhosted

CHAT = {"model": "qwen3.6-plus", "messages": [{"role": "user", "content": "hi"}]}


def test_responses_fields_with_no_qwen_equivalent_are_noted():
    notes: list[str] = []
    responses.translate({"model": "m", "input": "hi", "moderation": {"mode": "off"},
                         "context_management": [{"type": "compaction"}]}, notes=notes)
    assert "moderation: accepted, no Qwen equivalent" in notes
    assert "context_management: accepted, no Qwen equivalent" in notes


def test_a_legacy_completion_s_logit_bias_is_noted():
    notes: list[str] = []
    chat = completions.completions_to_chat({"model": "m", "prompt": "hi", "logit_bias": {"50256": -100}}, notes)
    assert "logit_bias" not in chat
    assert "logit_bias: accepted, no Qwen equivalent" in notes


def test_a_self_hosted_server_says_what_it_has_no_field_for():
    notes: list[str] = []
    body = selfhosted.chat_body({**CHAT, "verbosity": "low", "safety_identifier": "u1",
                                 "prompt_cache_retention": "24h", "web_search_options": {}},
                                model="Qwen/Qwen3-8B", notes=notes)
    assert not {"verbosity", "safety_identifier", "prompt_cache_retention", "web_search_options"} & set(body)
    for field in ("verbosity", "safety_identifier", "prompt_cache_retention", "web_search_options"):
        assert any(n.startswith(f"{field} not sent: ") for n in notes), field


def test_a_web_account_says_what_it_has_no_setting_for():
    notes: list[str] = []
    qwenweb.completion_body({**CHAT, "thinking_budget": 2048, "verbosity": "high", "cache_control": {
        "type": "ephemeral", "ttl": "1h"}}, model="qwen3.7-max", notes=notes)
    for field in ("thinking_budget", "verbosity", "cache_control"):
        assert f"{field}: Qwen Chat web accounts have no such setting: dropped" in notes, field


def test_dashscope_notes_a_safety_identifier_it_does_not_send():
    notes: list[str] = []
    body = dashscope.chat_to_qwen({**CHAT, "safety_identifier": "u1"}, model="qwen3.6-plus", oauth=False,
                                  notes=notes)
    assert "safety_identifier" not in body
    assert any(n.startswith("safety_identifier not sent: ") for n in notes)

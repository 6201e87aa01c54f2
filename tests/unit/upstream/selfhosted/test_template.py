"""What a Qwen chat template needs of a request (upstream/selfhosted/template.py): which versions take system text only
first, what an agent is, a developer message made system."""

from __future__ import annotations

from qwen_gateway.models.learned import LearnedFacts
from qwen_gateway.upstream.selfhosted import template


def test_the_family_and_version_in_a_served_name():
    assert template.family("Qwen/Qwen3.6-27B") == (3, 6) and template.family("qwen3-8b") == (3, 0)
    assert template.family("Qwen/Qwen3.8-Flash-Next") == (3, 8) and template.family("qwen4-max") == (4, 0)
    assert template.family("team-model") is None and template.family("meta/Llama-3") is None


def test_system_first_by_name_or_by_the_servers_word():
    assert template.system_first("Qwen/Qwen3.6-27B") and not template.system_first("Qwen/Qwen3-8B")
    learned = LearnedFacts()
    assert not template.system_first("team-model", learned)
    learned.system_first.add("team-model")
    assert template.system_first("team-model", learned)


def test_an_agent_offers_tools_or_carries_a_tool_loop():
    assert template.agent({"tools": [{"type": "function"}]})
    assert template.agent({"messages": [{"role": "tool", "content": "x"}]})
    assert not template.agent({"messages": [{"role": "user", "content": "x"}]})


def test_a_developer_message_is_a_system_message_where_it_stands():
    notes: list[str] = []
    messages = [{"role": "user", "content": "a"}, {"role": "developer", "content": "b"}]
    assert template.no_developer(messages, notes) == [messages[0], {"role": "system", "content": "b"}] and notes
    plain = [{"role": "user", "content": "a"}]
    assert template.no_developer(plain, []) is plain

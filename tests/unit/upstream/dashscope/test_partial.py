"""An answer continued from its prefix as DashScope takes it (upstream/dashscope/partial.py, Model Studio's partial
mode, the catalogue's source AB): the request as it was sent, its last message the prefix marked `partial`, its
output cap less what the prefix spent; none for a model the page does not list, a request that thinks, searches
or asks more than one choice."""

from __future__ import annotations

import copy

import pytest

from qwen_gateway.tokens import encoding
from qwen_gateway.upstream.dashscope import partial
from qwen_gateway.upstream.dashscope.request import chat_to_qwen
from qwen_gateway.upstream.dashscope.upstream import DASHSCOPE
from qwen_gateway.upstream.qwenweb.upstream import QwenWeb

USER = {"role": "user", "content": "write a poem"}


def sent(model: str, **client) -> dict:
    """The body the gateway sent for a client's chat request (its thinking knobs written by knobs.py)."""
    return chat_to_qwen({"model": "gpt-4o", "messages": [USER], "stream": True, **client}, model=model, oauth=False)


def test_the_prefix_is_the_last_message_marked_partial_and_the_rest_is_as_sent():
    body = sent("qwen3-coder-plus")
    kept = copy.deepcopy(body)
    out = DASHSCOPE.continued(body, "Roses are red,")
    assert out is not None and body == kept  # the sent body is not altered
    assert out["messages"][:-1] == body["messages"]
    assert out["messages"][-1] == {"role": "assistant", "content": "Roses are red,", "partial": True}
    assert {k: v for k, v in out.items() if k != "messages"} == {k: v for k, v in body.items() if k != "messages"}


def test_the_output_cap_is_what_the_prefix_left_of_it():
    prefix = "Roses are red, violets are blue"
    spent = encoding().count(prefix)
    out = DASHSCOPE.continued(sent("qwen-plus", max_completion_tokens=100), prefix)
    assert out is not None and out["max_completion_tokens"] == 100 - spent
    assert DASHSCOPE.continued(sent("qwen-plus", max_completion_tokens=2), prefix)["max_completion_tokens"] == 1


@pytest.mark.parametrize("model", ["qwen3-coder-plus", "qwen-plus", "qwen3-max", "qwen3-max-2026-01-23",
                                   "qwen-max-latest", "qwen3-vl-plus"])
def test_a_model_the_page_lists_in_non_thinking_mode_is_continued(model):
    assert DASHSCOPE.continued(sent(model), "x") is not None


@pytest.mark.parametrize("model", ["qwen4-max", "qwen3.8-max", "qwen3-30b-a3b-thinking-2507",
                                   "qwen3-235b-a22b-thinking-2507",
                                   "coder-model", "some-model-nobody-knows"])
def test_a_model_the_page_does_not_list_is_not(model):
    assert DASHSCOPE.continued(sent(model), "x") is None


def test_a_request_that_thinks_is_not_continued():
    """Partial mode is non-thinking only: a hybrid model told to think, or one that thinks when told nothing."""
    assert DASHSCOPE.continued(sent("qwen-plus", enable_thinking=True), "x") is None
    assert DASHSCOPE.continued(sent("qwen3.6-plus", reasoning_effort="high"), "x") is None
    told_not = sent("qwen3.6-plus")  # the knobs tell a model that thinks by default not to
    assert told_not.get("enable_thinking") is False and DASHSCOPE.continued(told_not, "x") is not None
    assert DASHSCOPE.continued({**told_not, "enable_thinking": None}, "x") is None  # told nothing: it thinks


def test_what_thinks_is_read_from_the_body_as_sent():
    assert partial.thinks({"enable_thinking": False}, "qwen3.6-plus") is False
    assert partial.thinks({}, "qwen3.6-plus") is True  # it thinks when told nothing
    assert partial.thinks({}, "qwen-plus") is False
    assert partial.thinks({}, "qwen3-coder-plus") is False  # it does not think
    assert partial.thinks({}, "a-model-nobody-knows") is True  # not known: it may


def test_searching_or_several_choices_are_not_continued():
    assert DASHSCOPE.continued({**sent("qwen-plus"), "enable_search": True}, "x") is None
    assert DASHSCOPE.continued({**sent("qwen-plus"), "n": 2}, "x") is None


def test_qwen_chat_web_accounts_have_no_partial_mode():
    assert QwenWeb().continued(sent("qwen3-coder-plus"), "x") is None

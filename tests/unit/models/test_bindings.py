"""Which accounts a request may use (models/bindings.py, `qwen_account_bindings`), and the pool holding to it."""

from __future__ import annotations

import pytest

from qwen_gateway.models.bindings import parse_bindings


def test_the_first_entry_that_matches_decides():
    b = parse_bindings(["model:claude-*=provider:selfhosted", "key:ci=ms,gpu2", "dialect:OpenAI=ms"])
    claude = b.find(key="ci", model="claude-haiku-4-5", dialect="anthropic", agent="claude-cli/2.1")
    assert claude is not None and str(claude) == "model:claude-*=provider:selfhosted"
    assert claude.admits("gpu1", "selfhosted") and not claude.admits("ms", "dashscope")
    ci = b.find(key="ci", model="gpt-4o", dialect="openai", agent="")
    assert ci is not None and ci.admits("gpu2", "selfhosted") and not ci.admits("gpu1", "selfhosted")
    assert b.find(key="", model="gpt-4o", dialect="openai", agent="").accounts == ("ms",)  # dialect, any case
    assert b.find(key="", model="claude", dialect="anthropic", agent="") is None  # "claude-*" needs the dash
    assert not parse_bindings([])


@pytest.mark.parametrize("entry", ["model:x", "x=gpu", "model:=gpu", "model:x=", "team:x=gpu", "key:ci=provider:nope"])
def test_a_bad_entry_is_refused_with_its_reason(entry):
    with pytest.raises(ValueError, match="qwen_account_bindings"):
        parse_bindings([entry], providers=("dashscope", "selfhosted"))

"""Qwen Chat web accounts as a provider (upstream/qwenweb/provider.py): its upstream under the options, no pair
that skips the chat form, no Files and Batch APIs."""

from __future__ import annotations

from qwen_gateway.settings.config import Config
from qwen_gateway.upstream.qwenweb import provider


def test_it_names_its_accounts_provider_and_carries_everything_through_the_chat_form():
    p = provider.PROVIDER
    upstream = p.upstream(Config())
    assert p.name == upstream.name == "qwenweb"  # accounts.json's `provider`
    assert dict(p.legs(Config())) == {} and p.batch_calls is None and p.account_models is None
    assert upstream.lesson("Range of max_tokens should be [1, 8192]") is None  # its refusals teach nothing

"""The self-hosted provider as the composition sees it (upstream/selfhosted/provider.py, upstream.py)."""

from __future__ import annotations

from qwen_gateway.settings.config import Config
from qwen_gateway.upstream.selfhosted import provider
from qwen_gateway.upstream.selfhosted.upstream import SELF_HOSTED


def test_every_dialect_goes_through_the_chat_form_and_nothing_is_learned_from_its_words():
    p = provider.PROVIDER
    assert p.name == "selfhosted" and p.upstream(Config()) is SELF_HOSTED
    assert dict(p.legs(Config())) == {} and p.batch_calls is None and p.account_models is None
    assert SELF_HOSTED.lesson("Range of max_tokens should be [1, 8192]") is None
    assert SELF_HOSTED.cache_lifetime_s({}) == 300.0 and SELF_HOSTED.resendable

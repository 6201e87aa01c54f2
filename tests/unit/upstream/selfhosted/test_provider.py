"""The self-hosted provider as the composition sees it (upstream/selfhosted/provider.py, upstream.py)."""

from __future__ import annotations

from qwen_gateway.providers import Lesson
from qwen_gateway.settings.config import Config
from qwen_gateway.upstream.selfhosted import models, provider
from qwen_gateway.upstream.selfhosted.upstream import SELF_HOSTED


def test_every_dialect_goes_through_the_chat_form_and_its_limits_are_never_learned_as_a_models():
    p = provider.PROVIDER
    assert p.name == "selfhosted" and p.upstream(Config()) is SELF_HOSTED
    assert dict(p.legs(Config())) == {} and p.batch_calls is None
    assert p.account_models is models.account_models  # the server's own list joins /v1/models
    assert SELF_HOSTED.lesson("Range of max_tokens should be [1, 8192]") is None
    assert SELF_HOSTED.unlearnable(Lesson("x", param="max_tokens", fact="output", bound=9), {}, "m", "") is not None
    assert SELF_HOSTED.cache_lifetime_s({}) == 300.0 and SELF_HOSTED.resendable and SELF_HOSTED.fits_window


def test_a_template_that_takes_system_text_only_first_is_a_lesson():
    reading = SELF_HOSTED.lesson("System message must be at the beginning. None")
    assert reading is not None and reading.system_first
    assert SELF_HOSTED.unlearnable(reading, {}, "my-model", "") is None

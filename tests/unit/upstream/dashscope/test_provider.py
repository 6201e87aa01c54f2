"""DashScope as a provider (upstream/dashscope/provider.py): its pairs that skip the chat form, and only on the
accounts that have the base they need."""

from __future__ import annotations

from qwen_gateway.accounts import KEY, OAUTH, Credential
from qwen_gateway.settings.config import Config
from qwen_gateway.upstream.dashscope import provider
from qwen_gateway.upstream.dashscope.upstream import DASHSCOPE

PLAN = Credential("k", KEY, "https://coding-intl.dashscope.aliyuncs.com/v1", "sk-sp-x")
LOGIN = Credential("o", OAUTH, "https://portal.qwen.ai/v1", "t")


def test_the_anthropic_base_is_a_key_accounts_only():
    assert provider.anthropic_base(PLAN) == "https://coding-intl.dashscope.aliyuncs.com/apps/anthropic"
    assert provider.anthropic_base(LOGIN) is None


def test_its_legs_follow_the_options():
    assert set(provider.legs(Config())) == {"embeddings"}
    assert set(provider.legs(Config(messages_passthrough=True, responses_native=True))) == {
        "embeddings", "messages", "responses"}
    assert provider.PROVIDER.upstream(Config()) is DASHSCOPE and provider.PROVIDER.name == DASHSCOPE.name


def test_only_its_own_key_accounts_join_the_model_list():
    registered: list[str] = []

    class Live:
        def registered(self, name): return False
        def register(self, name, models, refresh, provider=""): registered.append(name)
        def wanted(self): pass

    class Models:
        accounts = Live()

        def named(self, cred): return {}

    class Cfg:
        models, network = Models(), None

    class Pool:
        def get(self, name): return None

    rows = [{"name": "ds", "kind": KEY, "state": "ok"}, {"name": "gpu", "kind": KEY, "state": "ok",
                                                         "provider": "selfhosted"},
            {"name": "o", "kind": OAUTH, "state": "ok"}, {"name": "off", "kind": KEY, "state": "missing"}]
    provider.account_models(Cfg(), Pool(), rows)  # type: ignore[arg-type]
    assert registered == ["ds"]

"""The core's view of the outer packages (interfaces.py, providers.py): which upstream serves a credential and how each (endpoint,
upstream) pair is carried; the defaults an endpoint and a client format take. The declared types (TypedDicts,
Protocols) have no behaviour of their own."""

from __future__ import annotations

from qwen_gateway.accounts import KEY, OAUTH, WEB, Capability, Credential
from qwen_gateway.errors import GatewayError
from qwen_gateway.interfaces import ClientFormat, Endpoint
from qwen_gateway.providers import TRANSLATED, Leg, Pairing


class Named:
    def __init__(self, name: str) -> None:
        self.name = name


DASH, WEBUP, OTHER = Named("dashscope"), Named("qwenweb"), Named("other")
KEYED = Credential("k", KEY, "https://h/v1", "t")
LOGIN = Credential("o", OAUTH, "https://portal.qwen.ai/v1", "t")


def pairing(**legs) -> Pairing:
    return Pairing(default=DASH, upstreams={"dashscope": DASH, "qwenweb": WEBUP},  # type: ignore[dict-item]
                   passthrough=legs.get("legs", {}))


def test_each_account_gets_its_providers_upstream_and_one_not_listed_the_default():
    p = pairing()
    assert p.upstream(KEYED) is DASH and p.upstream(Credential("w", WEB, "u", "t")) is WEBUP
    assert p.upstream(LOGIN) is DASH  # an OAuth login is DashScope's
    assert p.upstream(Credential("w", KEY, "u", "t", provider="qwenweb")) is WEBUP  # by provider, not by kind
    assert p.upstream(Credential("x", KEY, "u", "t", provider="elsewhere")) is DASH  # not listed: the default


def test_a_pair_without_a_leg_is_translated_on_the_accounts_own_base():
    assert TRANSLATED == Leg("chat/completions", passthrough=False, base=None)
    assert pairing().leg("chat.completions", DASH, KEYED) == (TRANSLATED, None)  # type: ignore[arg-type]


def test_a_pass_through_leg_with_its_own_base_or_translated_where_the_account_has_none():
    leg = Leg("v1/messages", passthrough=True, base=lambda cred: "https://h/apps/anthropic" if cred.kind == KEY
              else None)
    p = pairing(legs={("messages", "dashscope"): leg})
    assert p.leg("messages", DASH, KEYED) == (leg, "https://h/apps/anthropic")  # type: ignore[arg-type]
    assert p.leg("messages", DASH, LOGIN) == (TRANSLATED, None)  # type: ignore[arg-type]
    assert p.leg("messages", OTHER, KEYED) == (TRANSLATED, None)  # type: ignore[arg-type]  # another upstream
    plain = Leg("embeddings", passthrough=True)
    assert pairing(legs={("embeddings", "dashscope"): plain}).leg("embeddings", DASH, LOGIN) == (plain, None)  # type: ignore[arg-type]


def test_an_endpoint_is_a_chat_endpoint_in_openais_format_unless_it_says_otherwise():
    e = Endpoint("x", to_chat=lambda b, ex: b, from_chat=lambda d, ex: d, stream_translator=lambda ex: None)
    assert (e.capability, e.dialect, e.counted_first, e.upgrade, e.own_body) == (Capability.CHAT, "openai", False,
                                                                                 None, None)


def test_a_client_format_answers_with_the_errors_own_status_by_default():
    fmt = ClientFormat(error_body=lambda e, ex: b"{}", headers=lambda ex: {})
    assert fmt.status(GatewayError(429, "slow down")) == 429


def test_a_leg_for_some_models_translates_the_others():
    leg = Leg("responses", passthrough=True, models=lambda m: m == "qwen3-coder-plus")
    p = pairing(legs={("responses", "dashscope"): leg})
    assert p.leg("responses", DASH, KEYED, "qwen3-coder-plus") == (leg, None)  # type: ignore[arg-type]
    assert p.leg("responses", DASH, KEYED, "qwen3.6-plus") == (TRANSLATED, None)  # type: ignore[arg-type]

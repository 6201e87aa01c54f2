"""The client's User-Agent on the record (ingress/access.py reads it with the other headers, ingress/claim.py puts it
on the exchange) and where it goes: a key account's upstream request carries it as the client sent it, a Qwen
OAuth login keeps qwen-code's; nothing of it is parsed. In mitmproxy's test style (taddons, tflow)."""

from __future__ import annotations

from mitmproxy.test import taddons

from qwen_gateway import components
from qwen_gateway.settings.config import Config
from qwen_gateway.ingress import access, claim
from qwen_gateway.upstream.dashscope.headers import GATEWAY_AGENT
from unit.test_addon import KEY_CRED, OAUTH_CRED, chat_flow, make, through

HI = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
SCRIPT = "OpenAI/Python 1.99.0"


def test_the_record_keeps_the_clients_user_agent_as_sent():
    f = chat_flow(HI)
    f.request.headers["User-Agent"] = SCRIPT
    head, without_key = access.read_head(f.request)
    ex = claim.open_exchange(f, head, without_key, components.endpoints(lambda: None), components.pairing(Config()).default)
    assert head.user_agent == ex.client.user_agent == SCRIPT
    assert ex.client.sized(10).user_agent == SCRIPT  # the body's size known: the same request
    f = chat_flow(HI)
    assert access.read_head(f.request)[0].user_agent == ""  # none sent


async def test_a_key_account_sends_the_clients_user_agent_and_an_oauth_login_qwen_codes():
    gw, qwen = make(KEY_CRED)
    with taddons.context(gw) as tctx:
        gw.configure(set(tctx.options.keys()))
        f = chat_flow(HI)
        f.request.headers["User-Agent"] = SCRIPT
        await through(gw, f)
        await through(gw, chat_flow(HI))
    sent, bare = qwen.requests
    assert sent.headers["user-agent"] == SCRIPT and bare.headers["user-agent"] == GATEWAY_AGENT
    assert not any(k.startswith("x-stainless") or k in ("x-dashscope-useragent", "x-dashscope-authtype")
                   for k in sent.headers)
    assert f.metadata["qwen"]["upstream"]["headers"]["User-Agent"] == SCRIPT

    gw, qwen = make(OAUTH_CRED)
    with taddons.context(gw) as tctx:
        gw.configure(set(tctx.options.keys()))
        f = chat_flow(HI)
        f.request.headers["User-Agent"] = SCRIPT
        await through(gw, f)
    (up,) = qwen.requests
    assert up.headers["user-agent"].startswith("QwenCode/") and up.headers["x-stainless-lang"] == "js"
    assert up.headers["x-dashscope-authtype"] == "qwen-oauth"

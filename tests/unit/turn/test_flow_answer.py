"""A whole HTTP answer's transport (turn/flow_answer.py): the turn's answer and its refusal become the flow's
response; the flow's client is the one the turn watches."""

from __future__ import annotations

from mitmproxy import http
from mitmproxy.test import tflow

from qwen_gateway.errors import GatewayError
from qwen_gateway.exchange import ClientRequest, Exchange
from qwen_gateway.turn.flow_answer import FlowAnswer


async def test_the_answer_and_the_refusal_become_the_flows_response():
    flow = tflow.tflow()
    said = []

    def refusal(ex, err):
        said.append(err.code)
        return http.Response.make(err.status, err.message)
    t = FlowAnswer(flow, refusal)
    ex = Exchange(ClientRequest("POST", "/v1/chat/completions", "http://x/v1/chat/completions"))
    assert t.client is flow.client_conn and not t.ends_record and not t.keeps
    await t.whole(ex, http.Response.make(200, b"answer"))
    assert flow.response.content == b"answer"
    await t.refuse(ex, GatewayError(429, "spent", code="insufficient_quota"))
    assert flow.response.status_code == 429 and said == ["insufficient_quota"]

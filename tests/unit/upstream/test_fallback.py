"""The retry policy's fallback by model group (upstream/fallback.py, `qwen_fallbacks`): which refusals move a request to
its group's next model, what the flow says, and the first refusal when every model refused."""

from __future__ import annotations

import json

import pytest

from qwen_gateway import errors
from qwen_gateway.accounts import KEY, AccountUnavailable, Credential
from qwen_gateway.errors import GatewayError, UpstreamError
from qwen_gateway.exchange import ClientRequest, Exchange, RetryReason
from qwen_gateway.interfaces import Endpoint
from qwen_gateway.models.fallbacks import parse_fallbacks
from qwen_gateway.upstream.dashscope.errors import classify
from qwen_gateway.upstream.dashscope.upstream import DASHSCOPE
from qwen_gateway.upstream.fallback import refused_for_its_model
from qwen_gateway.upstream.retry import RetryPolicy

MS = Credential("ms", KEY, "https://dashscope-intl.aliyuncs.com/compatible-mode/v1", "sk-ms")


class Pool:
    def __init__(self, *creds: Credential) -> None:
        self.creds = list(creds)

    async def acquire(self, exclude=(), *, capability=None, conversation=None):
        for c in self.creds:
            if c.account not in exclude:
                return c
        raise AccountUnavailable("no account left")

    async def refreshed(self, account, *, refused=None):
        raise AccountUnavailable(f"the key of {account} was refused")

    def report(self, account, outcome, **kw) -> None:
        pass


def policy(*groups: str, pool: Pool | None = None) -> RetryPolicy:
    p = RetryPolicy(pool or Pool(MS))
    p.fallbacks = parse_fallbacks(groups)
    return p


def exchange(model: str = "qwen3-max") -> Exchange:
    ex = Exchange(ClientRequest("POST", "/v1/chat/completions", "x"), requested_model=model,
                  endpoint=Endpoint("chat.completions", to_chat=lambda b, e: b, from_chat=lambda d, e: d,
                                    stream_translator=lambda e: None))
    ex.attempt.cred, ex.attempt.model, ex.attempt.tried = MS, model, [MS.account]
    ex.attempt.upstream = DASHSCOPE
    ex.chat_body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return ex


def qwen(status: int, code: str, message: str) -> UpstreamError:
    return classify(status, json.dumps({"error": {"code": code, "message": message, "type": code}}))


DENIED = (403, "AccessDenied.Unpurchased", "Access to model denied. Please make sure you are eligible for using the model.")
NOT_FOUND = (400, "model_not_found", "The model `qwen3-max` does not exist or you do not have access to it.")
BAD_PARAM = (400, "InvalidParameter", "<400> InternalError.Algo.InvalidParameter: Range of top_p should be (0.0, 1.0]")


def test_which_refusals_are_the_models():
    assert refused_for_its_model(qwen(*DENIED)) == "no access"
    assert refused_for_its_model(qwen(*NOT_FOUND)) == "not found"
    assert refused_for_its_model(qwen(400, "InvalidParameter", "Range of input length should be [1, 258048]")) == \
        "prompt over its window"
    for other in (BAD_PARAM, (401, "InvalidApiKey", "Invalid API-key provided."), (429, "Throttling.RateQuota",
                  "Requests rate limit exceeded, please try again later."), (403, "Arrearage", "Access denied.")):
        assert refused_for_its_model(qwen(*other)) is None, other


async def test_a_model_refused_goes_to_its_groups_next_model_said_on_the_flow():
    p, ex = policy("qwen3-max=qwen4-max,qwen3.6-plus"), exchange()
    assert await p.recover(ex, qwen(*DENIED)) is MS
    assert ex.attempt.fallback == "qwen4-max"
    assert ex.attempt.retries[-1].reason is RetryReason.FELL_BACK
    assert "qwen3-max refused on ms (no access): fell back to qwen4-max (qwen_fallbacks " \
           "qwen3-max=qwen4-max,qwen3.6-plus)" in ex.notes
    ex.attempt.model = "qwen4-max"  # as the engine sends it: refused too, the next
    assert await p.recover(ex, qwen(*NOT_FOUND)) is MS and ex.attempt.fallback == "qwen3.6-plus"
    assert [r.model for r in ex.attempt.refusals] == "qwen3-max qwen4-max".split()


async def test_every_model_refused_answers_the_first_refusal():
    p, ex = policy("qwen3-max=qwen4-max"), exchange()
    await p.recover(ex, qwen(*DENIED))
    ex.attempt.model = "qwen4-max"
    with pytest.raises(GatewayError) as refused:
        await p.recover(ex, qwen(*NOT_FOUND))
    assert refused.value.status == 403 and "Access to model denied" in refused.value.message  # the first's
    assert any("every fallback of qwen_fallbacks qwen3-max=qwen4-max refused" in n for n in ex.notes)


@pytest.mark.parametrize("answer", [BAD_PARAM, (401, "InvalidApiKey", "Invalid API-key provided.")])
async def test_a_refusal_of_the_request_itself_is_no_fallbacks(answer):
    p, ex = policy("qwen3-max=qwen4-max"), exchange()
    with pytest.raises(GatewayError) as refused:
        await p.recover(ex, qwen(*answer))
    assert refused.value.status == answer[0] and ex.attempt.fallback == ""
    assert not any("fell back" in n for n in ex.notes)


async def test_a_model_no_group_names_is_never_replaced():
    p, ex = policy("qwen3-coder-plus=qwen3.6-plus"), exchange()
    with pytest.raises(GatewayError) as refused:
        await p.recover(ex, qwen(*DENIED))
    assert refused.value.status == 403 and ex.attempt.fallback == ""


async def test_a_window_refusal_passes_over_a_fallback_whose_window_is_too_small():
    """The server's own count (a self-hosted server says it) against the catalogue's windows: qwen3-max's 258,048
    cannot hold 300,000 tokens, qwen3.6-plus's million can."""
    p, ex = policy("qwen3-coder-plus=qwen3-max,qwen3.6-plus"), exchange("qwen3-coder-plus")
    over = UpstreamError(errors.CONTEXT, 400, "too long", "invalid_request_error", "context_length_exceeded",
                         counted=(300_000, 131_072))
    assert await p.recover(ex, over) is MS and ex.attempt.fallback == "qwen3.6-plus"
    assert "qwen3-max passed over: its window (258,048 tokens) is under the prompt's 300,000" in ex.notes


async def test_no_account_for_the_fallback_answers_the_first_refusal():
    class Gone(Pool):
        async def acquire(self, exclude=(), **kw):
            raise AccountUnavailable("every account is cooling down")

    p, ex = policy("qwen3-max=qwen4-max", pool=Gone()), exchange()
    with pytest.raises(GatewayError) as refused:
        await p.recover(ex, qwen(*DENIED))
    assert refused.value.status == 403 and "no account can take qwen4-max: the first refusal answered" in ex.notes

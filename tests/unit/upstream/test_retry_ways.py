"""Each of the retry policy's ways back (upstream/retry.py, RetryPolicy.recover), alone: what error it takes,
what it tells the pool and the exchange, and the credential it hands back — or None, leaving the error to the
next way, and to `given_up` when none applies."""

from __future__ import annotations

import pytest

from qwen_gateway import errors
from qwen_gateway.accounts import KEY, OAUTH, AccountUnavailable, Credential, Outcome
from qwen_gateway.errors import GatewayError, UpstreamError
from qwen_gateway.upstream.dashscope.upstream import DASHSCOPE
from qwen_gateway.exchange import ClientRequest, Exchange, RetryReason
from qwen_gateway.interfaces import Endpoint
from qwen_gateway.upstream import retry
from qwen_gateway.upstream.retry import RetryPolicy
from qwen_gateway.upstream.retry_request import RequestWays

OAUTH_CRED = Credential("login", OAUTH, "https://portal.qwen.ai/v1", "tok")
KEY_A = Credential("a", KEY, "https://dashscope-intl.aliyuncs.com/compatible-mode/v1", "sk-a")
KEY_B = Credential("b", KEY, "https://dashscope-intl.aliyuncs.com/compatible-mode/v1", "sk-b")


class Pool:
    def __init__(self, *creds: Credential, refresh: Exception | None = None) -> None:
        self.creds, self.refresh = list(creds), refresh
        self.reports: list[tuple[str, Outcome]] = []

    async def acquire(self, exclude=(), *, capability=None, conversation=None):
        for c in self.creds:
            if c.account not in exclude:
                return c
        raise AccountUnavailable("no account left")

    async def refreshed(self, account, *, refused=None):
        if self.refresh is not None:
            raise self.refresh
        return Credential(account, OAUTH, "https://portal.qwen.ai/v1", "tok2")

    def report(self, account, outcome, **kw) -> None:
        self.reports.append((account, outcome))


def exchange(cred: Credential, model: str = "qwen3-coder-plus") -> Exchange:
    ex = Exchange(ClientRequest("POST", "/v1/chat/completions", "x"),
                  endpoint=Endpoint("chat.completions", to_chat=lambda b, e: b, from_chat=lambda d, e: d,
                                    stream_translator=lambda e: None))
    ex.attempt.cred, ex.attempt.model, ex.attempt.tried = cred, model, [cred.account]
    ex.attempt.upstream = DASHSCOPE  # the engine sets it with the credential
    ex.chat_body = {"model": model, "messages": [{"role": "user", "content": "x " * 50}] * 20}
    return ex


def err(kind: errors.ErrorKind, message: str = "no", status: int = 400, **kw) -> UpstreamError:
    return UpstreamError(kind, status, message, "invalid_request_error" if status < 500 else "server_error", **kw)


async def test_relearned_takes_a_models_lesson_once_and_sends_again_with_the_same_credential():
    policy, ex = RetryPolicy(Pool(KEY_A)), exchange(KEY_A)
    capped = err(errors.CLIENT, "<400> InternalError.Algo.InvalidParameter: Range of max_completion_tokens should be "
                                "[1, 8192]")
    ex.attempt.body = {"model": "qwen3-coder-plus", "max_completion_tokens": 20000, "messages": []}
    assert await policy.relearned(ex, capped) is KEY_A
    assert policy.learned.value("qwen3-coder-plus", "output") == 8192
    assert ex.attempt.retries[-1].reason is RetryReason.CAPPED
    assert await policy.relearned(ex, capped) is None  # learned already: not again
    assert await policy.relearned(ex, err(errors.QUOTA)) is None


async def test_truncated_needs_the_clients_leave_and_happens_once():
    policy, ex = RetryPolicy(Pool(KEY_A)), exchange(KEY_A)
    over = err(errors.CONTEXT, "Range of input length should be [1, 100]")
    assert await policy.truncated(ex, over) is None  # the client did not allow it
    ex.truncate_oldest = True
    assert await policy.truncated(ex, over) is KEY_A and ex.attempt.retries[-1].reason is RetryReason.TRUNCATED
    assert await policy.truncated(ex, over) is None


async def test_new_chat_once_for_a_stale_chat():
    policy, ex = RetryPolicy(Pool(KEY_A)), exchange(KEY_A)
    stale = err(errors.STALE, "the chat moved on")
    assert await policy.new_chat(ex, stale) is KEY_A and await policy.new_chat(ex, stale) is None


async def test_another_for_the_plan_only_counts_the_refusal_of_the_refusing_account():
    pool = Pool(KEY_A, KEY_B)
    policy, ex = RetryPolicy(pool), exchange(KEY_A)
    refused = err(errors.PLAN_REFUSED, "coding agents only", 403)
    # counted for /health (the account stays ok: it serves the clients its plan accepts), nothing that cools it
    assert await policy.another_for_the_plan(ex, refused) is KEY_B and pool.reports == [("a", Outcome.PLAN_REFUSED)]
    alone = RetryPolicy(Pool(KEY_A))
    with pytest.raises(GatewayError) as e:
        await alone.another_for_the_plan(exchange(KEY_A), refused)
    assert e.value.status == 403 and e.value.message == "Account a: coding agents only"


async def test_a_keys_401_goes_past_it_and_a_logins_is_refreshed_once():
    pool = Pool(KEY_A, KEY_B)
    policy = RetryPolicy(pool)
    assert await policy.past_a_refused_key(exchange(OAUTH_CRED), err(errors.AUTH, status=401)) is None  # a login's
    got = await policy.past_a_refused_key(exchange(KEY_A), err(errors.AUTH, status=401))
    assert got is not None and ("a", Outcome.AUTH) in pool.reports
    login = exchange(OAUTH_CRED)
    fresh = await policy.refreshed(login, err(errors.AUTH, status=401))
    assert fresh is not None and fresh.token == "tok2" and login.attempt.retries[-1].reason is RetryReason.REFRESHED
    assert await policy.refreshed(login, err(errors.AUTH, status=401)) is None  # once


async def test_a_failed_refresh_gives_up_saying_why():
    policy = RetryPolicy(Pool(OAUTH_CRED, refresh=AccountUnavailable("the refresh token was revoked")))
    ex = exchange(OAUTH_CRED)
    assert await policy.refreshed(ex, err(errors.AUTH, status=401)) is None
    assert "the refresh token was revoked" in ex.notes


async def test_rotated_cools_the_account_and_takes_another_or_gives_the_pools_answer():
    pool = Pool(KEY_A, KEY_B)
    policy, ex = RetryPolicy(pool), exchange(KEY_A)
    assert await policy.rotated(ex, err(errors.QUOTA, status=429)) is KEY_B and pool.reports == [("a", Outcome.QUOTA)]
    with pytest.raises(GatewayError):
        await RetryPolicy(Pool(KEY_A)).rotated(exchange(KEY_A), err(errors.QUOTA, status=429))


async def test_waited_waits_what_qwen_asked_at_most_twice(monkeypatch):
    slept: list[float] = []

    async def sleep(s):
        slept.append(s)
    monkeypatch.setattr(retry.asyncio, "sleep", sleep)
    policy, ex = RetryPolicy(Pool(KEY_A)), exchange(KEY_A)
    throttled = err(errors.THROTTLE, status=429, retry_after=99.0)
    for _ in range(retry.MAX_THROTTLE_RETRIES):
        assert await policy.waited(ex, throttled) is KEY_A
    assert await policy.waited(ex, throttled) is None and slept == [retry.MAX_THROTTLE_WAIT] * 2


async def test_given_up_reports_the_account_and_is_the_clients_error():
    pool = Pool(KEY_A)
    policy = RetryPolicy(pool)
    e = await policy.given_up(exchange(KEY_A), err(errors.CLIENT, "bad", 400))
    assert (e.status, e.message) == (400, "bad") and pool.reports == [("a", Outcome.ERROR)]


async def test_recover_tries_the_ways_in_order():
    pool = Pool(KEY_A, KEY_B)
    policy, ex = RetryPolicy(pool), exchange(KEY_A)
    assert await policy.recover(ex, err(errors.QUOTA, status=429)) is KEY_B
    with pytest.raises(GatewayError):
        await policy.recover(exchange(KEY_A), err(errors.CLIENT, "bad", 400))


async def test_a_model_an_accounts_own_list_leaves_out_goes_to_the_next_and_reports_nothing():
    pool = Pool(KEY_A, KEY_B)
    policy, ex = RetryPolicy(pool), exchange(KEY_A)
    unlisted = err(errors.UNLISTED, "The model `m` does not exist or you do not have access to it.", 404)
    assert await policy.listed_elsewhere(ex, unlisted) is KEY_B and pool.reports == []  # the account is fine
    alone = RetryPolicy(Pool(KEY_A))
    with pytest.raises(GatewayError) as e:
        await alone.listed_elsewhere(exchange(KEY_A), unlisted)
    assert e.value.status == 404 and "does not exist" in e.value.message
    assert await policy.listed_elsewhere(ex, err(errors.CLIENT, "bad", 400)) is None


GPU = Credential("gpu", KEY, "http://127.0.0.1:8000/v1", "sk-gpu", provider="selfhosted")


async def test_refitted_sends_a_refused_cap_again_once_with_the_servers_own_count():
    from qwen_gateway.upstream.selfhosted.upstream import SELF_HOSTED
    policy, ex = RetryPolicy(Pool(GPU)), exchange(GPU, "Qwen/Qwen3-8B")
    ex.attempt.upstream = SELF_HOSTED
    refused = SELF_HOSTED.classify(400, b'{"error": {"message": "This model\'s maximum context length is 40960 '
                                        b'tokens. However, you requested 128000 output tokens and your prompt contains '
                                        b'at least 9021 input tokens, for a total of at least 137021 tokens.", '
                                        b'"type": "BadRequestError", "param": null, "code": 400}}', {})
    assert await policy.recover(ex, refused) is GPU
    assert ex.attempt.counted == (9021, 40960) and ex.attempt.retries[-1].reason is RetryReason.CAPPED
    assert "9,021 prompt tokens of its 40,960-token window" in ex.notes[-1]
    with pytest.raises(GatewayError) as given:  # the same numbers again: not sent a third time
        await policy.recover(ex, refused)
    assert given.value.code != "context_length_exceeded"


async def test_a_prompt_over_a_servers_window_is_the_overflow_in_the_servers_numbers():
    from qwen_gateway.upstream.selfhosted.upstream import SELF_HOSTED
    policy, ex = RetryPolicy(Pool(GPU)), exchange(GPU, "Qwen/Qwen3-8B")
    ex.attempt.upstream = SELF_HOSTED
    over = SELF_HOSTED.classify(400, b'{"object": "error", "message": "The input (41200 tokens) is longer than the '
                                     b'model\'s context length (40960 tokens).", "code": 400}', {})
    with pytest.raises(GatewayError) as given:
        await policy.recover(ex, over)
    assert given.value.code == "context_length_exceeded"
    assert (given.value.tokens, given.value.limit) == (41200, 40960)  # what a Messages client reads as N > M


async def test_a_template_that_takes_system_text_only_first_is_learned_and_sent_again():
    from qwen_gateway.upstream.selfhosted.upstream import SELF_HOSTED
    policy, ex = RetryPolicy(Pool(GPU)), exchange(GPU, "served-name")
    ex.attempt.upstream = SELF_HOSTED
    refused = SELF_HOSTED.classify(400, b'{"error": {"message": "System message must be at the beginning.", '
                                        b'"type": "BadRequestError", "param": null, "code": 400}}', {})
    assert await policy.recover(ex, refused) is GPU
    assert "served-name" in policy.learned.system_first and ex.attempt.retries[-1].reason is RetryReason.TEMPLATE
    with pytest.raises(GatewayError):  # learned already: a second refusal is the client's error
        await policy.recover(ex, refused)


async def test_elsewhere_sends_what_an_unreachable_server_never_got_to_another_account():
    policy, ex = RetryPolicy(pool := Pool(GPU, KEY_B)), exchange(GPU, "Qwen/Qwen3-8B")
    down = UpstreamError(errors.UNREACHABLE, 502, "cannot connect to 127.0.0.1:9: Connection refused",
                         "server_error", transport=GatewayError(502, "Qwen could not be reached: x.",
                                                                code="upstream_unreachable"))
    assert await policy.recover(ex, down) is KEY_B
    assert pool.reports == [("gpu", Outcome.UNREACHABLE)] and ex.attempt.retries[-1].reason is RetryReason.ROTATED
    assert "gpu unreachable" in ex.notes[-1]
    alone, ex = RetryPolicy(pool := Pool(GPU)), exchange(GPU, "Qwen/Qwen3-8B")
    with pytest.raises(GatewayError) as given:  # no other account: the transport's own 502, the account as it was
        await alone.recover(ex, down)
    assert given.value.status == 502 and given.value.code == "upstream_unreachable"
    assert pool.reports == []


def test_a_servers_503_is_unreachable_and_a_dashscope_503_is_not():
    from qwen_gateway.upstream.selfhosted.upstream import SELF_HOSTED
    assert SELF_HOSTED.classify(503, b'{"error": {"message": "engine dead"}}', {}).kind is errors.UNREACHABLE
    assert DASHSCOPE.classify(503, b'{"error": {"message": "busy"}}', {}).kind is not errors.UNREACHABLE


def test_the_ways_that_mend_the_request_are_the_policys_own():
    assert issubclass(RetryPolicy, RequestWays)
    for way in ("refitted", "relearned", "truncated", "new_chat"):
        assert getattr(RetryPolicy, way) is getattr(RequestWays, way)

"""Model Studio's Files and Batch APIs through the retry policy and the pool (upstream/dashscope/batch_calls.py): the account
the pool hands out, a refusal (a key refused 401, a quota or a throttle 429) reported to the pool and another
account tried while nothing is on Qwen yet; a call pinned to the account that holds its object waits there or
fails naming it; what Qwen may have taken (a server error, a connection lost) is never sent again."""

from __future__ import annotations

import asyncio
import json
import types

import pytest

from qwen_gateway.accounts import KEY, AccountUnavailable, Credential, Outcome
from qwen_gateway.errors import ConnectionFailed, GatewayError
from qwen_gateway.exchange import ClientRequest, Exchange
from qwen_gateway.settings.config import Config
from qwen_gateway.upstream import retry
from qwen_gateway.upstream.dashscope.batch_calls import BatchCalls

BASE = "http://127.0.0.1:9/compatible-mode/v1"
A, B = Credential("a", KEY, BASE, "sk-a"), Credential("b", KEY, BASE, "sk-b")
CODING = Credential("cp", KEY, "https://coding-intl.dashscope.aliyuncs.com/v1", "sk-sp-1", billing="coding")
REFUSED_KEY = (401, {"error": {"code": "invalid_api_key", "message": "invalid access token or token expired"}})
THROTTLED = (429, {"error": {"code": "Throttling", "message": "Requests throttling triggered."}})
QUOTA = (429, {"error": {"code": "insufficient_quota", "message": "Free allocated quota exceeded."}})
MADE = (200, {"id": "batch_1", "object": "batch"})


class Pool:
    """The pool interface: accounts in order, a refused key kept refused, a quota cooling its account."""

    def __init__(self, *creds: Credential) -> None:
        self.creds = creds
        self.reports: list[tuple[str, Outcome]] = []
        self.away: dict[str, str] = {}

    async def acquire(self, exclude=(), **_):
        for c in self.creds:
            if c.account not in exclude and c.account not in self.away:
                return c
        raise AccountUnavailable("No Qwen account can take this request. " + "; ".join(
            f"{a}: {why}" for a, why in self.away.items()), retry_at=9e9 if "quota" in self.away.values() else None)

    async def refreshed(self, account, *, refused=None):
        self.away[account] = "refused"
        raise AccountUnavailable(f"Qwen refused the key of account {account} ($KEY_{account.upper()}) with 401")

    def report(self, account, outcome, **_):
        self.reports.append((account, Outcome(outcome)))
        if outcome is Outcome.QUOTA:
            self.away[account] = "quota"

    def status(self):
        return [{"name": c.account} for c in self.creds]


class Qwen:
    """Answers in order, per account; each call kept."""

    def __init__(self, **answers: list[tuple[int, dict] | Exception]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, str, str, bytes]] = []

    async def __call__(self, cred, method, suffix, body, content_type, query, agent, config):
        self.calls.append((cred.account, method, suffix, body))
        queued = self.answers.get(cred.account) or [MADE]
        answer = queued.pop(0) if len(queued) > 1 else queued[0]
        if isinstance(answer, Exception):
            raise answer
        return answer[0], "application/json", json.dumps(answer[1]).encode()


def exchange() -> Exchange:
    return Exchange(ClientRequest("POST", "/v1/files", "http://gw/v1/files"), route="batches")


def run(calls: BatchCalls, ex: Exchange, **kw) -> tuple[int, str, bytes]:
    return asyncio.run(calls.call(ex, Config(), "POST", "files", **kw))


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch):
    """A throttle's wait (the retry policy's asyncio.sleep) kept, not slept."""
    waits: list[float] = []

    async def sleep(seconds):
        waits.append(seconds)

    monkeypatch.setattr(retry, "asyncio", types.SimpleNamespace(sleep=sleep, to_thread=asyncio.to_thread))
    return waits


def test_a_refused_key_is_reported_and_the_next_batch_account_takes_the_call_with_its_own_body():
    pool, qwen = Pool(CODING, A, B), Qwen(a=[REFUSED_KEY])

    async def body(cred):
        return "text/plain", f"for {cred.account}".encode()

    ex = exchange()
    status, _, _ = run(BatchCalls(lambda: pool, qwen), ex, body=body)
    assert status == 200 and ex.account == "b" and ex.attempt.tried == ["a", "b"]
    assert [(c[0], c[3]) for c in qwen.calls] == [("a", b"for a"), ("b", b"for b")]  # never the Coding Plan
    assert pool.reports == [("a", Outcome.AUTH)] and pool.away == {"a": "refused"}


def test_a_quota_rotates_and_a_throttle_waits(no_waiting):
    pool, qwen = Pool(A, B), Qwen(a=[QUOTA], b=[THROTTLED, MADE])
    ex = exchange()
    assert run(BatchCalls(lambda: pool, qwen), ex)[0] == 200
    assert [c[0] for c in qwen.calls] == ["a", "b", "b"] and no_waiting == [1.0]
    assert pool.reports == [("a", Outcome.QUOTA), ("b", Outcome.THROTTLE)]


def test_a_call_on_the_holder_waits_there_and_a_refused_holder_is_named_not_moved(no_waiting):
    pool, qwen = Pool(A, B), Qwen(b=[THROTTLED, MADE])
    ex = exchange()
    assert run(BatchCalls(lambda: pool, qwen), ex, holder="b")[0] == 200
    assert [c[0] for c in qwen.calls] == ["b", "b"] and pool.reports == [("b", Outcome.THROTTLE)]
    qwen = Qwen(b=[REFUSED_KEY])
    with pytest.raises(GatewayError) as e:
        run(BatchCalls(lambda: pool, qwen), exchange(), holder="b")
    assert e.value.status == 401 and e.value.code == "invalid_api_key" and "account b ($KEY_B)" in e.value.message
    assert [c[0] for c in qwen.calls] == ["b"] and "sk-b" not in e.value.message


def test_a_holder_out_of_quota_is_the_pools_answer_naming_it():
    pool, qwen = Pool(A, B), Qwen(a=[QUOTA])
    with pytest.raises(GatewayError) as e:
        run(BatchCalls(lambda: pool, qwen), exchange(), holder="a")
    assert e.value.status == 429 and e.value.code == "insufficient_quota" and "a: quota" in e.value.message
    assert [c[0] for c in qwen.calls] == ["a"]


def test_what_qwen_may_have_taken_is_never_sent_again():
    pool = Pool(A, B)
    qwen = Qwen(a=[(500, {"error": {"code": "InternalError", "message": "Internal server error"}})])
    assert run(BatchCalls(lambda: pool, qwen), exchange())[0] == 500  # Qwen's answer, as it is
    qwen = Qwen(a=[ConnectionFailed("connection reset")])
    with pytest.raises(GatewayError) as e:
        run(BatchCalls(lambda: pool, qwen), exchange())
    assert e.value.status == 502 and "account a" in e.value.message
    assert len(qwen.calls) == 1 and pool.reports == []

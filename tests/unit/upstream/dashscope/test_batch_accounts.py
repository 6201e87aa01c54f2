"""Which accounts may run batches (upstream/dashscope/batch_accounts.py): pay-as-you-go key accounts; the Coding Plan and the
Token Plan refused saying why; the account that holds an object found by name."""

from __future__ import annotations

import asyncio

import pytest

from qwen_gateway.accounts import KEY, OAUTH, AccountUnavailable, Credential
from qwen_gateway.upstream.dashscope.batch_accounts import batch_account, credential_of, unfit
from qwen_gateway.errors import GatewayError

PAYG = Credential("ds", KEY, "https://dashscope-intl.aliyuncs.com/compatible-mode/v1", "sk-1", billing="payg:intl")
CODING = Credential("cp", KEY, "https://coding-intl.dashscope.aliyuncs.com/v1", "sk-sp-1", billing="coding")
TOKEN = Credential("tp", KEY, "https://token-plan.ap-southeast-1.maas.aliyuncs.com/compatible-mode/v1", "sk-sp-2",
                   billing="token")
EMULATED = Credential("emu", KEY, "http://127.0.0.1:9/compatible-mode/v1", "sk-3")
OTHER = Credential("vllm", KEY, "http://127.0.0.1:9/v1", "sk-4")
LOGIN = Credential("me", OAUTH, "https://portal.qwen.ai/v1", "tok")


class Pool:
    def __init__(self, *creds: Credential) -> None:
        self.creds = creds

    async def acquire(self, exclude=(), **_):
        for c in self.creds:
            if c.account not in exclude:
                return c
        raise AccountUnavailable("every account is cooling down")

    def status(self):
        return [{"name": c.account} for c in self.creds]


def test_pay_as_you_go_keys_run_batches_and_plans_do_not():
    assert unfit(PAYG) is None and unfit(EMULATED) is None
    assert "Coding Plan" in unfit(CODING) and "Token Plan" in unfit(TOKEN)
    assert "no Batch API" in unfit(LOGIN) and "not a Model Studio pay-as-you-go base" in unfit(OTHER)


def test_the_first_account_that_may_run_batches_is_taken_else_the_plans_are_named():
    assert asyncio.run(batch_account(Pool(CODING, LOGIN, PAYG))) is PAYG
    with pytest.raises(GatewayError) as e:
        asyncio.run(batch_account(Pool(CODING, TOKEN)))
    assert e.value.status == 403 and e.value.code == "batch_not_allowed"
    assert "cp (the Coding Plan, whose terms forbid batch jobs); tp (the Token Plan" in e.value.message
    assert "pay-as-you-go" in e.value.message and "sk-sp" not in e.value.message
    with pytest.raises(AccountUnavailable):  # the pool's own words: the caller maps them (upstream/dashscope/batch_calls.py)
        asyncio.run(batch_account(Pool()))
    assert asyncio.run(batch_account(Pool(CODING, PAYG, EMULATED), exclude=["ds"])) is EMULATED
    with pytest.raises(AccountUnavailable):  # a retry's cause is the account it left, not the plans
        asyncio.run(batch_account(Pool(CODING, PAYG), exclude=["ds"]))


def test_the_account_that_holds_an_object_is_found_by_name():
    assert asyncio.run(credential_of(Pool(PAYG, EMULATED), "emu")) is EMULATED
    with pytest.raises(GatewayError) as e:
        asyncio.run(credential_of(Pool(PAYG), "gone"))
    assert e.value.status == 503 and "gone" in e.value.message

"""The Coding Plan's refusal of a client it does not count as a coding agent (upstream/dashscope/errors.py):
HTTP 405 `{"error": "Coding Plan is currently only available for Coding Agents"}` (users since 2026-03:
aaif-goose/goose#8005, iOfficeAI/AionUi#2555) becomes a permission refusal the SDKs read as one (403
`permission_error`, code `plan_refused`) that says what the plan serves and what to use instead; more of
the classifier in tests/unit/test_errors.py."""

from __future__ import annotations

import json

import pytest

from qwen_gateway.errors import ErrorKind
from qwen_gateway.upstream.dashscope.errors import classify

SENTENCE = "Coding Plan is currently only available for Coding Agents"


@pytest.mark.parametrize("status, body", [
    (405, json.dumps({"error": SENTENCE})),  # as users quote it
    (405, b""),  # the status alone: the gateway only ever POSTs where a POST is served
    (403, json.dumps({"error": {"message": SENTENCE, "type": "invalid_request_error"}})),  # the sentence alone
])
def test_the_coding_plans_refusal_of_a_client_is_a_permission_refusal(status, body):
    err = classify(status, body)
    assert err.kind is ErrorKind.PLAN_REFUSED
    assert (err.status, err.type, err.code) == (403, "invalid_request_error", "plan_refused")
    assert err.headers == {"x-should-retry": "false"}
    assert "coding agents only" in err.message and "Claude Code" in err.message
    assert "qwen-auth add-key NAME --preset dashscope-intl --key-env VAR" in err.message
    assert err.to_gateway_error().status == 403


def test_qwens_words_are_kept():
    assert SENTENCE in classify(405, json.dumps({"error": SENTENCE})).message


def test_other_refusals_are_not_the_plans():
    assert classify(403, json.dumps({"code": "AccessDenied", "message": "Access denied."})).kind is ErrorKind.DENIED


@pytest.mark.parametrize("code, param", [("AccessDenied.Unpurchased", "model"), ("Model.AccessDenied", "model"),
                                         ("AccessDenied", None), ("Arrearage", None), ("Workspace.AccessDenied", None)])
def test_a_denial_of_the_model_names_the_model_one_of_the_account_does_not(code, param):
    err = classify(403, json.dumps({"code": code, "message": "Access to model denied."}))
    assert err.kind is ErrorKind.DENIED and err.param == param and err.status == 403
    assert classify(400, json.dumps({"error": {"message": "bad", "code": "x"}})).kind is ErrorKind.CLIENT


def test_a_previous_response_qwen_no_longer_holds_is_stale_sent_again_once_afresh():
    body = json.dumps({"code": "InvalidParameter", "message": "Not found previous_response_id: resp_x",
                       "request_id": "r"})  # the Responses API's flat error (scripts/emulator/responses.py)
    err = classify(400, body)
    assert err.kind is ErrorKind.STALE and err.status == 400 and err.code == "previous_response_not_found"
    assert "resp_x" in err.message

"""Answers the gateway builds itself (local.py)."""

from __future__ import annotations

import dataclasses

from mitmproxy import http

from qwen_gateway.local import answer, json_response


def test_an_answer_is_what_response_make_builds():
    """`answer` skips mitmproxy's constructor checks; every field must still be there, of the right type."""
    body = '{"id":"x","text":"héllo"}'.encode()
    for status in (200, 404, 429, 599):
        fast = answer(status, body)
        made = http.Response.make(status, body, {"content-type": "application/json"})
        fast.timestamp_start = made.timestamp_start
        fast.timestamp_end = made.timestamp_end
        assert fast.get_state() == made.get_state()
        assert {f.name for f in dataclasses.fields(http.ResponseData)} == set(vars(fast.data))
        dataclasses.replace(fast.data)  # mitmproxy's own type checks accept every field


def test_json_response():
    r = json_response(201, {"ok": True, "name": "ü"})
    assert r.status_code == 201 and r.headers["content-type"] == "application/json"
    assert r.json() == {"ok": True, "name": "ü"} and r.headers["content-length"] == str(len(r.content))

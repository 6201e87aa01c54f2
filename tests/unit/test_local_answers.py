"""Answers the gateway builds itself (local_answers.py)."""

from __future__ import annotations

import dataclasses

from mitmproxy import http

from qwen_gateway.local_answers import answer, json_response


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
        assert vars(fast.headers) == vars(made.headers) and type(fast.headers) is http.Headers
        fast.headers["x-request-id"] = "req_1"  # the headers work as mitmproxy's own
        assert bytes(fast.headers).endswith(b"x-request-id: req_1\r\n")


def test_an_answer_builds_no_headers_through_their_constructor(monkeypatch):
    """`Headers(fields)` copies every field into new tuples and type-checks them, then runs an empty update:
    an answer's two fields are known to be bytes."""
    made = []
    real = http.Headers.__init__
    monkeypatch.setattr(http.Headers, "__init__", lambda self, *a, **kw: made.append(a) or real(self, *a, **kw))
    assert answer(200, b"{}").headers.fields == ((b"content-type", b"application/json"), (b"content-length", b"2"))
    assert made == []


def test_json_response():
    r = json_response(201, {"ok": True, "name": "ü"})
    assert r.status_code == 201 and r.headers["content-type"] == "application/json"
    assert r.json() == {"ok": True, "name": "ü"} and r.headers["content-length"] == str(len(r.content))


def test_health_says_which_gateway_on_which_mitmproxy_and_the_seams_left_out(monkeypatch):
    """A mitmproxy the seams were not written against is visible in /health, as in `qwen-gateway --version`."""
    from importlib.metadata import version

    from mitmproxy import version as mitmproxy_version

    from qwen_gateway import local_answers
    from qwen_gateway.seams.fingerprint import WRITTEN_AGAINST

    software = local_answers.health(None)["software"]
    assert software == {"gateway": version("qwen-gateway"), "mitmproxy": mitmproxy_version.VERSION,
                        "seams": {"written_against": WRITTEN_AGAINST, "left_out": {}}}
    from qwen_gateway.seams import fingerprint, http1_heads

    # a seam that decided, on another mitmproxy, to stay out: its decision holds, whatever the code is now
    monkeypatch.setitem(fingerprint.decided, http1_heads.WRITTEN.seam, ["Http1Server.read_headers"])
    assert local_answers.health(None)["software"]["seams"]["left_out"] == {
        "http1_heads": ["Http1Server.read_headers"]}


def test_a_seam_installed_is_not_said_left_out_though_its_code_is_now_its_own():
    """Installed, a seam's code "as found" is its own wrapper: /health still says it fits."""
    from qwen_gateway import local_answers
    from qwen_gateway.seams import http1_heads

    before = http1_heads._limit
    assert http1_heads.install(http1_heads.Limit(1024))
    try:
        assert http1_heads.WRITTEN.differing() != [] or http1_heads._original == {}  # the wrapper is found now
        assert "http1_heads" not in local_answers.health(None)["software"]["seams"]["left_out"]
    finally:
        http1_heads.install(before)


def test_health_lists_the_unpriced_models_that_carried_traffic():
    """Issue 59: what the gateway could not put a price on, since it started (none: not said)."""
    from qwen_gateway import local_answers

    assert "unpriced" not in local_answers.health(None)
    seen = [{"model": "qwen3.6-plus", "billing": "payg:intl", "requests": 3}]
    assert local_answers.health(None, unpriced=seen)["unpriced"] == seen

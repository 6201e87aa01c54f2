"""Flows the gateway does not answer (ingress/passthrough.py), with mitmproxy's test flows."""

from __future__ import annotations

from mitmproxy.test import tflow

from qwen_gateway.ingress import passthrough
from qwen_gateway.ingress.body import parse_json


def flow_with(*headers: tuple[bytes, bytes]):
    f = tflow.tflow()
    f.request.headers.fields = ((b"host", b"example.com"), *headers)
    return f


def test_a_refused_flow_keeps_no_credential_and_gets_the_refusal():
    f = flow_with((b"Authorization", b"Bearer sk-qg-1"), (b"x-api-key", b"k"), (b"Proxy-Authorization", b"Basic x"))
    passthrough.refuse(f)
    assert f.request.headers.fields == ((b"host", b"example.com"),)
    assert f.response is not None and f.response.status_code == 403


def test_a_flow_passed_on_loses_only_the_gateways_own_keys():
    f = flow_with((b"authorization", b"Bearer ours"), (b"x-api-key", b"theirs"))
    passthrough.pass_on(f, lambda key: key == b"ours")
    assert f.request.headers.fields == ((b"host", b"example.com"), (b"x-api-key", b"theirs"))


def test_sealing_redacts_what_was_sent_once():
    f = flow_with((b"x-api-key", b"theirs"), (b"accept", b"*/*"))
    passthrough.seal(f)
    passthrough.seal(f)
    assert f.request.headers.fields == ((b"host", b"example.com"), (b"x-api-key", b"<redacted>"), (b"accept", b"*/*"))


def test_a_key_in_a_passed_on_url_never_stays_in_the_record():
    """A refused flow's URL key is redacted at once; a passed-on flow loses the gateway's own key from its URL
    (never sent on) and keeps the host's own (`?key=`, sent to it), redacted in the record when sealed."""
    f = tflow.tflow()
    f.request.path = "/maps?q=x&key=sk-qg-1"
    passthrough.refuse(f)
    assert f.request.path == "/maps?q=x&key=<redacted>"
    f = tflow.tflow()
    f.request.path = "/maps?token=ours&key=theirs"
    passthrough.pass_on(f, lambda key: key == b"ours")
    assert f.request.path == "/maps?token=<redacted>&key=theirs"  # what is sent: the host's own key
    passthrough.seal(f)
    assert f.request.path == "/maps?token=<redacted>&key=<redacted>"


def test_a_lone_surrogate_becomes_the_replacement_character_as_the_body_is_read():
    assert parse_json(b'{"model": "gpt-4o\\ud800", "e": "\\ud83d\\ude00", "x": "\\u00e9"}') == \
        {"model": "gpt-4o\ufffd", "e": "\U0001f600", "x": "\u00e9"}
    assert parse_json(b'{"m": "\xed\xa0\x80x"}') == {"m": "\ufffdx"}  # the raw bytes of one

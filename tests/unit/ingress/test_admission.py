"""The entrance's decision from a request's head (ingress/admission.py), on mitmproxy's test flows and a real Team:
flat and named client keys, a key in the URL refused even beside a good header (and taken off the URL), HTTP
basic auth told what to send, the Host checked after the key, a replayed flow never asked for a key, and a key
that came before the shared keys were read decided later by its digest only (`admit_late`)."""

from __future__ import annotations

import hashlib

import pytest
from mitmproxy import http
from mitmproxy.test import tflow

from qwen_gateway import components
from qwen_gateway.errors import GatewayError
from qwen_gateway.ingress import access, admission, claim
from qwen_gateway.tenancy.ring import Keyring, KeyRecord
from qwen_gateway.tenancy.team import Team
from qwen_gateway.settings.config import Config

ALICE = b"sk-qg-alice-0123456789abcdef"
FLAT = b"sk-flat-0123456789abcdef"


def team_with(*records: KeyRecord, loaded: bool = True) -> Team:
    team = Team()
    team.ring = Keyring(records, loaded=loaded)
    return team


def alice(revoked: bool = False) -> KeyRecord:
    return KeyRecord("alice", hashlib.sha256(ALICE).digest(), revoked=revoked)


def request(url: str = "http://127.0.0.1:8080/v1/chat/completions", *headers: tuple[bytes, bytes],
            host: str = "127.0.0.1:8080"):
    f = tflow.tflow()
    f.request = http.Request.make("POST", url, b"{}", list(headers))
    f.request.headers["host"] = host  # as the client wrote it
    f.client_conn.peername = ("127.0.0.1", 50000)
    f.client_conn.sockname = ("127.0.0.1", 8080)
    head, without_key = access.read_head(f.request)
    ex = claim.open_exchange(f, head, without_key, components.endpoints(lambda: None),
                             components.pairing(Config()).default)
    return f, ex, head


def bearer(key: bytes) -> tuple[bytes, bytes]:
    return b"authorization", b"Bearer " + key


def test_no_keys_anywhere_admits_everyone():
    f, ex, head = request()
    assert admission.admit(team_with(), ex, head, f, Config()) is None
    assert ex.key.name == "" and ex.key.record is None


def test_a_named_key_is_admitted_and_bound_to_the_exchange():
    f, ex, head = request("http://127.0.0.1:8080/v1/chat/completions", bearer(ALICE))
    assert admission.admit(team_with(alice()), ex, head, f, Config()) is None
    assert ex.key.name == "alice" and ex.key.record == alice()


def test_a_flat_key_is_admitted_without_a_name():
    f, ex, head = request("http://127.0.0.1:8080/v1/chat/completions", (b"x-api-key", FLAT))
    assert admission.admit(team_with(), ex, head, f, Config(client_keys=(FLAT,))) is None
    assert ex.key.name == "" and ex.key.record is None


@pytest.mark.parametrize("key", [b"", b"sk-guessed"])
def test_no_key_or_an_unknown_one_is_a_401(key):
    f, ex, head = request("http://127.0.0.1:8080/v1/chat/completions", *([bearer(key)] if key else []))
    refusal = admission.admit(team_with(alice()), ex, head, f, Config())
    assert isinstance(refusal, GatewayError) and (refusal.status, refusal.code) == (401, "invalid_api_key")


def test_a_revoked_key_is_named_but_not_served():
    f, ex, head = request("http://127.0.0.1:8080/v1/chat/completions", bearer(ALICE))
    refusal = admission.admit(team_with(alice(revoked=True)), ex, head, f, Config())
    assert refusal is not None and refusal.status == 401 and "revoked" in str(refusal)
    assert ex.key.name == "alice" and ex.key.record is None  # the ledger shows whose; nothing is charged


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/v1/chat/completions?api_key=sk-whatever",
                                 "http://127.0.0.1:8080/v1/chat/completions?token=" + ALICE.decode()])
def test_a_key_in_the_url_is_refused_even_beside_a_good_header_and_taken_off_it(url):
    f, ex, head = request(url, bearer(ALICE))
    refusal = admission.admit(team_with(alice()), ex, head, f, Config())
    assert refusal is not None and (refusal.status, refusal.code) == (401, "invalid_api_key")
    assert str(refusal).startswith("A client key in the URL is refused: URLs end up in logs on the way.")
    assert ALICE.decode() not in f.request.url and "sk-whatever" not in f.request.url


def test_a_url_with_a_key_is_not_judged_where_no_key_is_needed():
    f, ex, head = request("http://127.0.0.1:8080/v1/chat/completions?api_key=x")
    assert admission.admit(team_with(), ex, head, f, Config()) is None


def test_basic_auth_is_told_which_header_to_use():
    f, ex, head = request("http://127.0.0.1:8080/v1/chat/completions", (b"authorization", b"Basic dXNlcjpwYXNz"))
    refusal = admission.admit(team_with(alice()), ex, head, f, Config())
    assert refusal is not None and str(refusal).startswith("HTTP basic auth (Authorization: Basic) is not accepted.")


def test_the_host_is_checked_once_the_key_passed():
    f, ex, head = request("http://127.0.0.1:8080/v1/chat/completions", bearer(ALICE), host="evil.example:8080")
    refusal = admission.admit(team_with(alice()), ex, head, f, Config())
    assert refusal is not None and (refusal.status, refusal.code) == (403, "host_not_allowed")  # DNS rebinding


def test_a_replayed_flow_needs_no_key():
    f, ex, head = request()
    f.is_replay = "request"
    assert admission.admit(team_with(alice()), ex, head, f, Config()) is None


async def test_a_key_that_came_before_the_shared_keys_is_decided_later_by_its_digest():
    team = team_with(loaded=False)
    f, ex, head = request("http://127.0.0.1:8080/v1/chat/completions", bearer(ALICE))
    assert admission.admit(team, ex, head, f, Config()) is None  # not yet: decided in `request`
    assert ex.key.digest == hashlib.sha256(ALICE).digest()
    team.ring = Keyring((alice(),))  # the shared keys read meanwhile
    await admission.admit_late(team, ex, f, Config())
    assert ex.key.digest is None and ex.key.name == "alice"


async def test_a_late_key_that_is_not_one_is_refused():
    team = team_with(loaded=False)
    f, ex, head = request("http://127.0.0.1:8080/v1/chat/completions", bearer(b"sk-guessed"))
    admission.admit(team, ex, head, f, Config())
    team.ring = Keyring((alice(),))
    with pytest.raises(GatewayError) as e:
        await admission.admit_late(team, ex, f, Config())
    assert e.value.status == 401


async def test_admit_late_without_a_pending_key_does_nothing():
    f, ex, _ = request()
    await admission.admit_late(team_with(alice()), ex, f, Config())
    assert ex.key.name == ""

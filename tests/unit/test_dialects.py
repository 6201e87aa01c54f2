"""The client dialects' records (dialects.py): the shared code answers each client in its dialect's shapes by
asking its record, never its name — a dialect added as a record with one of the known shapes is answered in it."""

from __future__ import annotations

import dataclasses

import pytest

from qwen_gateway import dialects
from qwen_gateway.ingress.mistakes import explicit_proxy_refusal
from qwen_gateway.models.routes import DIALECTS as ROUTE_DIALECTS
from qwen_gateway.tenancy import refusals
from qwen_gateway.tenancy.rate_headers import headers
from qwen_gateway.tenancy.ring import KeyRecord

KEY = KeyRecord("alice", b"", daily_tokens=100)
STATES = [("requests", 3, 2, 20.0)]


def test_the_two_dialects_and_a_name_no_record_has():
    assert dialects.of("anthropic") is dialects.ANTHROPIC and dialects.of("openai") is dialects.OPENAI
    assert dialects.of("unheard-of") is dialects.OPENAI  # the gateway's default
    assert ROUTE_DIALECTS == ("openai", "anthropic")  # qwen_routes' dialect:NAME scope takes the records' names


def test_each_dialect_is_told_its_own_base_url():
    said = explicit_proxy_refusal("anthropic", 8080).message
    assert "ANTHROPIC_BASE_URL=http://127.0.0.1:8080," in said and "OPENAI_BASE_URL" not in said
    said = explicit_proxy_refusal("openai", 8080).message
    assert "OPENAI_BASE_URL=http://127.0.0.1:8080/v1," in said


@pytest.fixture
def gemini(monkeypatch):
    """A third dialect, added as a record whose clients read Anthropic's limit headers and refusals."""
    record = dataclasses.replace(dialects.ANTHROPIC, name="gemini", base_url_env="GEMINI_BASE_URL", base_path="/v1beta")
    monkeypatch.setitem(dialects.DIALECTS, "gemini", record)
    return record


def test_a_new_dialect_is_its_record(gemini):
    assert set(headers("gemini", STATES)) == set(headers("anthropic", STATES))
    assert all(h.startswith("anthropic-ratelimit-") for h in headers("gemini", STATES))
    assert all(h.startswith("x-ratelimit-") for h in headers("openai", STATES))
    ours, theirs = refusals.over_daily(KEY, 120, "gemini"), refusals.over_daily(KEY, 120, "anthropic")
    assert (ours.status, ours.code) == (theirs.status, theirs.code)
    assert refusals.over_daily(KEY, 120, "openai").status == 429
    assert "GEMINI_BASE_URL=http://127.0.0.1:9/v1beta," in explicit_proxy_refusal("gemini", 9).message

"""The record of one exchange (exchange.py): built once per claimed request and read by every step and
observer, so it is a slotted dataclass — no per-request dict of its ~55 fields to grow and look up in."""

from __future__ import annotations

import dataclasses

import pytest

from qwen_gateway.accounts import Conversation
from qwen_gateway.ingress import access, routing
from qwen_gateway.exchange import ClientRequest, Exchange, Retry, RetryReason
from qwen_gateway.providers import Wire


def exchange() -> Exchange:
    return Exchange(ClientRequest("POST", "/v1/chat/completions", "http://127.0.0.1:8080/v1/chat/completions"))


def test_an_exchange_keeps_its_fields_in_slots():
    ex = exchange()
    assert not hasattr(ex, "__dict__")  # each field in its slot: no dict made and grown per request
    ex.requested_model, ex.result.status = "gpt-4o", 200
    assert (ex.requested_model, ex.result.status, ex.notes, ex.endpoint_state) == ("gpt-4o", 200, [], None)
    for part in (ex.attempt, ex.turn, ex.result, ex.key, ex.count, ex.client):
        assert not hasattr(part, "__dict__")
    assert exchange().notes is not ex.notes and exchange().id != ex.id  # the factories still run per exchange


def test_a_field_that_does_not_exist_cannot_be_set():
    with pytest.raises(AttributeError):
        exchange().reqested_model = "typo"  # type: ignore[attr-defined]


def test_a_sized_request_is_the_request_with_its_size():
    values = {f.name: f"v{i}" if f.type == "str" or "str" in str(f.type) else None
              for i, f in enumerate(dataclasses.fields(ClientRequest))}
    request = ClientRequest(**{**values, "size": 0, "api_headers": (("anthropic-beta", "x"),)})
    assert request.sized(42) == dataclasses.replace(request, size=42)  # every field carried over



def test_the_records_made_per_request_set_their_fields_directly():
    """A frozen dataclass's __init__ sets each field through object.__setattr__ (a client request's six, the
    door's head's seven, twice the first per request; the route, the wire, the conversation): these set their
    slots directly."""
    for record in (ClientRequest, access.Head, routing.Route, Wire, Conversation):
        assert "__setattr__" not in record.__init__.__code__.co_names, record


def test_a_fork_keeps_what_was_asked_and_starts_the_rest_anew():
    """Another attempt at the same request (a background run, a batch of many inputs): one method knows what a new
    attempt resets — nothing of the attempt, the turn, the result or the notes is carried over, and the key's and
    count's parts are copies, not shared."""
    ex = exchange()
    ex.body, ex.chat_body, ex.requested_model, ex.endpoint_state = {"model": "m"}, {"model": "q"}, "m", object()
    ex.attempt.tried.append("acct")
    ex.turn.translated, ex.result.status, ex.key.name = True, 200, "alice"
    ex.notes.append("first")
    again = ex.fork(stream=True)
    assert (again.body, again.chat_body, again.requested_model, again.endpoint_state, again.stream) == (
        ex.body, ex.chat_body, "m", ex.endpoint_state, True)
    assert again.id != ex.id and again.attempt.tried == [] and not again.turn.translated
    assert again.result.status is None and again.notes == []
    assert again.key == ex.key and again.key is not ex.key and again.count is not ex.count


def test_a_request_sent_in_parts_joins_the_parts_attempts():
    """An embeddings request sent in batches (api/embeddings.py): the first part's attempt, with every account
    tried (once each, in order) and every retry."""
    ex = exchange()
    parts = [ex.fork(), ex.fork()]
    parts[0].attempt.model, parts[0].attempt.tried = "text-embedding-v4", ["a", "b"]
    parts[1].attempt.tried, parts[1].attempt.retries = ["b", "c"], [Retry(RetryReason.ROTATED, "b")]
    ex.join(parts)
    assert (ex.attempt.model, ex.attempt.tried, ex.attempt.retries) == (
        "text-embedding-v4", ["a", "b", "c"], [Retry(RetryReason.ROTATED, "b")])
    assert ex.attempt is not parts[0].attempt and parts[0].attempt.tried == ["a", "b"]


def test_a_whole_answer_read_by_the_turn_is_the_attempts():
    ex = exchange()
    ex.attempt.answered(b'{"id": "q1"}')
    assert ex.attempt.response_body == b'{"id": "q1"}'


def test_a_fallback_is_on_the_record_and_names_the_answer():
    """A model of a fallback group (qwen_fallbacks) answered: the record says which and what was refused; the answer
    names it (the client asked another); otherwise the answer names what the client asked."""
    from qwen_gateway.retry_reasons import Refusal, RetryReason as Reasons

    ex = exchange()
    ex.endpoint = routing_endpoint()
    ex.requested_model, ex.attempt.model = "qwen3-max", "qwen3-max"
    assert ex.answered_as == "qwen3-max" and "fallback" not in ex.to_meta()
    ex.attempt.refusals.append(Refusal("qwen3-max", "no access", ValueError("refused"), 1))
    ex.attempt.fallback = ex.attempt.model = "qwen3.6-plus"
    ex.attempt.retries.append(Retry(Reasons.FELL_BACK, "ms"))
    meta = ex.to_meta()
    assert meta["fallback"] == {"model": "qwen3.6-plus", "refused": ["qwen3-max"]}
    assert meta["retry_reasons"] == ["fell_back"] and meta["model"] == "qwen3-max"  # the client's, as asked
    assert ex.answered_as == "qwen3.6-plus" and Reasons is RetryReason


def routing_endpoint():
    from qwen_gateway.interfaces import Endpoint

    return Endpoint("chat.completions", to_chat=lambda b, e: b, from_chat=lambda d, e: d, stream_translator=lambda e: None)

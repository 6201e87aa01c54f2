"""The record of one exchange (exchange.py): built once per claimed request and read by every step and
observer, so it is a slotted dataclass — no per-request dict of its ~55 fields to grow and look up in."""

from __future__ import annotations

import dataclasses

import pytest

from qwen_gateway.accounts import Conversation
from qwen_gateway.door import access, routing
from qwen_gateway.exchange import ClientRequest, Exchange
from qwen_gateway.pivot import Wire


def exchange() -> Exchange:
    return Exchange(ClientRequest("POST", "/v1/chat/completions", "http://127.0.0.1:8080/v1/chat/completions"))


def test_an_exchange_keeps_its_fields_in_slots():
    ex = exchange()
    assert not hasattr(ex, "__dict__")  # each field in its slot: no dict made and grown per request
    ex.requested_model, ex.status = "gpt-4o", 200
    assert (ex.requested_model, ex.status, ex.notes, ex.extra) == ("gpt-4o", 200, [], {})
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

"""The Responses endpoint's own state on an exchange (api/responses/state.py): made at first use, the same object
for every step after, and a copy for a background run's own exchange."""

from __future__ import annotations

import dataclasses

from qwen_gateway.api.responses.state import ResponsesState, state
from qwen_gateway.exchange import ClientRequest, Exchange


def test_the_state_is_made_once_and_kept_on_the_exchange():
    ex = Exchange(ClientRequest("POST", "/v1/responses", "http://x/v1/responses"))
    assert ex.endpoint_state is None  # nothing made for an exchange that never asks
    st = state(ex)
    assert isinstance(st, ResponsesState) and state(ex) is st and ex.endpoint_state is st
    st.response_id, st.items = "resp_1", [{"type": "message"}]
    again = ex.fork(endpoint_state=dataclasses.replace(st))
    assert state(again).response_id == "resp_1" and state(again) is not st

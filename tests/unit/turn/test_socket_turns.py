"""One message on a gateway WebSocket (turn/socket_turns.py): the lane's stream_id on every event of its turn.
(What a Responses message means: tests/unit/api/responses/test_socket_messages.py.)"""

from __future__ import annotations

import json

from qwen_gateway.turn import socket_turns


def test_events_of_a_lane_echo_its_stream_id_and_others_do_not():
    assert json.loads(socket_turns.lane_encoder("s1")({"type": "x"})) == {"type": "x", "stream_id": "s1"}
    assert socket_turns.lane_encoder(None)({"type": "x", "text": "é"}) == '{"type":"x","text":"é"}'.encode()

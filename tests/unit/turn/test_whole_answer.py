"""A whole answer where the chat form's halves meet (turn/whole_answer.py): Qwen's answer that is not JSON, or not an
object, is the gateway's 502 `invalid_upstream_response`, never a traceback or Qwen's bytes passed on."""

from __future__ import annotations

import pytest

from qwen_gateway.errors import GatewayError
from qwen_gateway.turn.whole_answer import upstream_json


@pytest.mark.parametrize("body,message", [(b"<html>502</html>", "not valid JSON"), (b"[1, 2]", "unexpected answer"),
                                          (b"\xff\xfe", "not valid JSON")])
def test_an_answer_that_is_no_json_object_is_a_502(body, message):
    with pytest.raises(GatewayError) as e:
        upstream_json(body)
    assert e.value.status == 502 and e.value.code == "invalid_upstream_response" and message in e.value.message


def test_a_json_object_is_read():
    assert upstream_json(b'{"choices": []}') == {"choices": []}

"""What mitmweb's content views read of a flow (mitmweb/flowrecord.py): the gateway's record in
`flow.metadata["qwen"]` (exchange.py's `to_meta`), tolerating flows the gateway never claimed and records of
another shape (a flow file from another version, another addon's metadata), and which side a message is."""

from __future__ import annotations

import pytest
from mitmproxy import contentviews
from mitmproxy.test import tflow

from qwen_gateway.mitmweb.flowrecord import (content_type, endpoint, is_request, is_response, json_object, record,
                                             route, upstream)

RECORD = {"client": {"method": "POST", "url": "http://gw/v1/chat/completions"}, "route": "chat.completions",
          "endpoint": "chat.completions", "upstream": {"url": "https://dashscope-intl.aliyuncs.com/compatible-mode/v1/"
                                                       "chat/completions", "headers": {"x-request-id": "r1"}}}


def meta_of(qwen=None, *, message: str = "request", content_type: str | None = "application/json",
            with_flow: bool = True) -> contentviews.Metadata:
    f = tflow.tflow(resp=True)
    if qwen is not None:
        f.metadata["qwen"] = qwen
    msg = f.request if message == "request" else f.response
    return contentviews.Metadata(flow=f if with_flow else None, content_type=content_type, http_message=msg)


def test_a_claimed_flows_record():
    meta = meta_of(RECORD)
    assert record(meta) is RECORD
    assert (endpoint(meta), route(meta)) == ("chat.completions", "chat.completions")
    assert upstream(meta) == RECORD["upstream"]


def test_a_local_answer_has_a_route_but_no_endpoint_or_upstream():
    meta = meta_of({"route": "models", "client": {"method": "GET", "url": "http://gw/v1/models"}})
    assert (endpoint(meta), route(meta), upstream(meta)) == (None, "models", None)


@pytest.mark.parametrize("qwen", [None, "a string", ["a", "list"], 42])
def test_no_record_or_one_of_another_shape_is_none(qwen):
    meta = meta_of(qwen)
    assert (record(meta), endpoint(meta), route(meta), upstream(meta)) == (None, None, None, None)


def test_no_flow_at_all():
    meta = meta_of(RECORD, with_flow=False)
    assert (record(meta), endpoint(meta), route(meta), upstream(meta)) == (None, None, None, None)


def test_fields_of_the_wrong_type_are_ignored():
    meta = meta_of({"endpoint": 3, "route": ["chat"], "upstream": "https://x"})
    assert (endpoint(meta), route(meta), upstream(meta)) == (None, None, None)
    assert upstream(meta_of({"upstream": {"headers": {}}})) is None  # not sent anywhere: no URL
    assert upstream(meta_of({"upstream": {"url": ""}})) is None


def test_which_side_a_message_is():
    req, resp = meta_of(RECORD), meta_of(RECORD, message="response")
    assert (is_request(req), is_response(req)) == (True, False)
    assert (is_request(resp), is_response(resp)) == (False, True)
    bare = contentviews.Metadata()
    assert (is_request(bare), is_response(bare)) == (False, False)


def test_content_type_is_a_string_always():
    assert content_type(meta_of(content_type="text/event-stream")) == "text/event-stream"
    assert content_type(meta_of(content_type=None)) == ""


def test_json_object_or_the_error_mitmweb_shows():
    assert json_object(b'{"model": "qwen3-max"}') == {"model": "qwen3-max"}
    with pytest.raises(ValueError, match="^not JSON$"):
        json_object(b"data: {}\n\n")
    with pytest.raises(ValueError, match="^not JSON$"):
        json_object(b"\xff\xfe")
    with pytest.raises(ValueError, match="^not a JSON object$"):
        json_object(b"[1, 2]")

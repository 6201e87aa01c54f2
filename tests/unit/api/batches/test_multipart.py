"""An upload's form read and written again (api/batches/multipart.py), as openai-python sends it."""

from __future__ import annotations

import httpx
import pytest

from qwen_gateway.api.batches import multipart
from qwen_gateway.errors import GatewayError


def test_the_sdks_form_is_read_and_written_again():
    sent = httpx.Request("POST", "http://x/v1/files", data={"purpose": "batch"},
                         files={"file": ("in.jsonl", b'{"a": 1}\n\r\n--x')})
    form = multipart.parse(sent.headers["content-type"], sent.read())
    assert form == {"purpose": (None, b"batch"), "file": ("in.jsonl", b'{"a": 1}\n\r\n--x')}
    assert multipart.text(form, "purpose") == "batch" and multipart.text(form, "none") == ""
    ctype, body = multipart.build({**form, "file": ('a"b.jsonl', b"new")})
    assert multipart.parse(ctype, body) == {"purpose": (None, b"batch"), "file": ("ab.jsonl", b"new")}


def test_a_body_that_is_no_form_is_refused_in_openais_words():
    with pytest.raises(GatewayError) as e:
        multipart.parse("application/json", b"{}")
    assert e.value.status == 400 and e.value.param == "file" and "multipart/form-data" in e.value.message

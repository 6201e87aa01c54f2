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


@pytest.mark.parametrize("payload", [b"", b"\r\n", b"--", b"\r\n--\r\n", b"a\r\n\r\nb", "é\u2028".encode() * 3,
                                     bytes(range(256)) * 4])
def test_any_file_comes_back_byte_for_byte(payload):
    sent = httpx.Request("POST", "http://x/v1/files", data={"purpose": "batch"}, files={"file": ("f.jsonl", payload)})
    assert multipart.parse(sent.headers["content-type"], sent.read())["file"] == ("f.jsonl", payload)


def test_curls_form_a_preamble_a_quoted_boundary_and_base64_are_read():
    body = (b"preamble\r\n--b\"1\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
            b"--b\"1\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.jsonl\"\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\neyJhIjogMX0K\r\n--b\"1--\r\nepilogue")
    form = multipart.parse('multipart/form-data; boundary="b\\"1"', body)
    assert form == {"purpose": (None, b"batch"), "file": ("x.jsonl", b'{"a": 1}\n')}


@pytest.mark.parametrize("body", [b"--x\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nno end",
                                  b"--x\r\nContent-Disposition: form-data; name=\"file\"",
                                  b"--x\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: form-data; "
                                  b"name=\"f\"\r\n\r\n!!!\r\n--x--"])
def test_a_form_cut_short_or_garbled_is_refused(body):
    with pytest.raises(GatewayError) as e:
        multipart.parse("multipart/form-data; boundary=x", body)
    assert e.value.status == 400 and e.value.code == "invalid_request_body"


def test_a_parts_end_is_found_across_the_windows_it_is_searched_in(monkeypatch):
    monkeypatch.setattr(multipart, "WINDOW", 7)  # the boundary falls across windows wherever it is
    for size in range(0, 40):
        payload = b"y" * size
        sent = httpx.Request("POST", "http://x/v1/files", files={"file": ("f", payload)})
        assert multipart.parse(sent.headers["content-type"], sent.read())["file"] == ("f", payload)

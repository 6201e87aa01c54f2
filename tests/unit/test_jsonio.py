"""JSON on the hot path (jsonio): orjson's speed, the standard library's reach, valid UTF-8 either way."""

from __future__ import annotations

import json

import pytest

from qwen_gateway import jsonio


def test_what_orjson_writes_reads_back_as_the_same_value():
    value = {"model": "qwen3-coder-plus", "messages": [{"role": "user", "content": "héllo ✓ \n\"q\""}],
             "temperature": 0.7, "n": 1, "stream": False, "x": None}
    out = jsonio.dumps(value)
    assert json.loads(out) == value and b" " not in out.replace(b"h\xc3\xa9llo \xe2\x9c\x93 ", b"")


def test_values_orjson_refuses_are_written_by_the_standard_library_as_valid_utf8():
    """An integer beyond 64 bits goes to Qwen as the client sent it; a lone surrogate (a `\\ud83d` escape,
    what JavaScript writes for a string cut inside an emoji) as U+FFFD: valid UTF-8, no escape to choke on."""
    value = json.loads('{"seed": 1180591620717411303424, "content": "a\\ud800b \\ud83d\\ude00 \\udc00"}')
    out = jsonio.dumps(value)
    out.decode("utf-8")  # strict: no surrogate bytes
    assert b"\\ud" not in out
    assert json.loads(out) == {"seed": 2 ** 70, "content": "a\ufffdb \U0001f600 \ufffd"}
    assert json.loads(jsonio.dumps_text(value)) == json.loads(out)
    assert jsonio.valid_text("ok é") == "ok é" and jsonio.valid_text("\ud83d") == "\ufffd"


def test_answers_are_read_strictly():
    assert jsonio.loads_answer(b'{"a": [1, 2.5, "x"]}') == {"a": [1, 2.5, "x"]}
    for bad in (b"NaN", b"{", b"\xff"):
        try:
            jsonio.loads_answer(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was read")


@pytest.mark.parametrize("options", [{"ensure_ascii": False}, {"sort_keys": True}, {}])
def test_an_encoder_writes_what_json_dumps_writes(options):
    values = [["gpt-4o", [["system", "héllo ✓ \"q\"\n"], ["user", "\ud83d lone"]]], "top-level text",
              {"b": [1, 2.5, None, True], "a": {"z": 1e300, "y": -0.0}}, 12345678901234567890123, []]
    encode = jsonio.Encoder(**options)
    for value in values:
        assert encode(value) == json.dumps(value, **options)


def test_an_encoder_builds_the_standard_librarys_encoder_once(monkeypatch):
    """json.dumps with options (and JSONEncoder.encode) makes the C encoder again for every call."""
    made = []
    real = json.encoder.c_make_encoder
    monkeypatch.setattr(json.encoder, "c_make_encoder", lambda *a: made.append(1) or real(*a))
    encode = jsonio.Encoder(ensure_ascii=False)
    for _ in range(3):
        assert encode(["m", [["user", "ping"]]]) == '["m", [["user", "ping"]]]'
    assert len(made) == 1

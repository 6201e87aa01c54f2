"""JSON on the hot path (jsonio): orjson's speed, the standard library's reach, valid UTF-8 either way."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


# ---- client bodies: orjson's speed, the standard library's reading --------------------------------------------

EDGES = [b'{"a": 123456789012345678901234567890}', b'{"a": -9223372036854775809}', b'{"a": 18446744073709551615}',
         b'{"a": 9223372036854775807, "b": -9223372036854775808}', b'{"a": 1E400}', b'{"a": NaN}',
         b'{"a": -Infinity}', b'{"a": 1, "a": 2}', b'\xef\xbb\xbf{"a": 1}', b'{"a": "\\ud800"}',
         b'{"a": "\\ud83d\\ude00"}', b'{"a": "\xed\xa0\x80"}', b'{"a": "\xff"}', b'{"a": 1.5e-400}', b'{"a": -0}',
         b'{"a": -0.0}', b'{"a": 0.1, "b": 1e5, "c": 12345678901234567890.5}', b' {"a":1}\n', b'{"a":1} x',
         b'{"a":"\t"}', b'', b'[1, 2]', b'"text"', b'null', b'{"id": "snowflake 1234567890123456789"}',
         '{"a": "h\u00e9llo \u2713"}'.encode("utf-16"), b'[' * 5000 + b']' * 5000, b'{"a": "x\\udc00y"}',
         b'{"a": "\\ude00\\ud83d"}', b'{"a": ["\\uD83D", "\\u00e9"]}', b'{"a": "\\\\ud800"}']


def _as_before(data: bytes) -> object:
    """How ingress/body.parse_json read a client's body before orjson: json.loads, each lone surrogate as U+FFFD."""
    return json.loads(jsonio.valid_text(json.dumps(json.loads(data), ensure_ascii=False)))


def _read(reader, data: bytes):
    try:
        value = reader(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        return ("error", type(e))
    return ("value", repr(value))  # repr: 1 and 1.0, -0.0 and 0.0, NaN itself told apart


@pytest.mark.parametrize("data", EDGES, ids=range(len(EDGES)))
def test_a_client_body_reads_as_the_standard_library_reads_it(data):
    assert _read(jsonio.loads_client, data) == _read(_as_before, data)


_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=-2 ** 80, max_value=2 ** 80),
                     st.floats(allow_nan=False), st.text())
_VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                       max_leaves=20)


@given(value=_VALUES, ascii_only=st.booleans())
@settings(max_examples=80)
def test_any_json_a_client_writes_reads_as_the_standard_library_reads_it(value, ascii_only):
    data = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    assert _read(jsonio.loads_client, data) == _read(_as_before, data)


def test_a_long_conversation_is_not_read_by_the_standard_library(monkeypatch):
    """The standard library only for the bodies orjson would read differently: an agent's turn (202 messages,
    60 kB) is read once, by orjson (twice as fast)."""
    turn = [{"role": "user", "content": "fix file 7 " * 10},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "call_7", "type": "function", "function": {
                "name": "read", "arguments": '{"path": "src/f7.py"}'}}]},
            {"role": "tool", "tool_call_id": "call_7", "content": "file contents é " * 40},
            {"role": "assistant", "content": "Fixed.", "temperature": 0.7, "seed": 2 ** 40}]
    value = {"model": "gpt-4o", "messages": [{"role": "system", "content": "Be careful. " * 50}, *turn * 50]}
    calls = []
    monkeypatch.setattr(jsonio.json, "loads", lambda *a, **k: calls.append(a))
    assert jsonio.loads_client(json.dumps(value).encode()) == value and calls == []

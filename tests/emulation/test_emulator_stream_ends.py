"""The emulator's faults at a stream's end (scripts/emulator/server.py, faults.STREAM_ENDS): `done_without_finish`
(part of the text, then [DONE] with no finish), `open_after_done` (the whole answer, then the body kept open),
`stall_before_usage` (the finish, then silence: no usage, no [DONE])."""

from __future__ import annotations

import json

import httpx
import pytest

from emulation.test_emulator import API_KEY, emulator_fixtures, parse_sse

proc, emu = emulator_fixtures("--quiet", "--api-key", API_KEY)


def body(**extra) -> dict:
    return {"model": "coder-model", "messages": [{"role": "user", "content": "one two three four"}], "stream": True,
            "stream_options": {"include_usage": True}, **extra}


def read_until_timeout(emu, timeout: float = 1.0) -> tuple[list, bool]:
    """The events read before the body went silent for `timeout`; whether the body ended."""
    raw = b""
    try:
        with httpx.stream("POST", emu.url + "/v1/chat/completions", json=body(), timeout=timeout, trust_env=False,
                          headers={"Authorization": f"Bearer {API_KEY}"}) as r:
            for part in r.iter_raw():
                raw += part
        ended = True
    except httpx.ReadTimeout:
        ended = False
    events = [e[6:] for e in raw.decode().split("\n\n") if e.startswith("data: ")]
    return [e if e == "[DONE]" else json.loads(e) for e in events], ended


def finishes(events: list) -> list:
    return [c["finish_reason"] for e in events if e != "[DONE]" for c in e["choices"] if c["finish_reason"]]


def test_done_without_finish(emu):
    emu.fault("done_without_finish")
    events = parse_sse(emu.chat("one two three four", stream=True, stream_options={"include_usage": True}).text)
    assert events[-1] == "[DONE]" and finishes(events) == [] and not any(e["usage"] for e in events[:-1])
    text = "".join(c["delta"].get("content") or "" for e in events[:-1] for c in e["choices"])
    assert text and "four" not in text  # part of the answer


@pytest.mark.parametrize("kind", ["open_after_done", "stall_before_usage"])
def test_a_body_that_never_ends(emu, kind):
    emu.fault(kind, seconds=30)
    events, ended = read_until_timeout(emu)
    assert not ended and finishes(events) == ["stop"]
    if kind == "open_after_done":
        assert events[-1] == "[DONE]" and events[-2]["usage"]
    else:
        assert "[DONE]" not in events and not any(e["usage"] for e in events)
    assert emu.chat().status_code == 200  # the next request is answered as usual

"""What a client must read of a stream Qwen's side cut at any byte (issue 67): the whole answer, exactly as one
unbroken answer, or the dialect's own terminal error — never a stream that just stops. Each check parses the
client's bytes as a strict client would (its own small SSE reader, not the gateway's) and returns "whole" or
"error:<code>", raising AssertionError with what was wrong."""

from __future__ import annotations

import json

WHOLE = "whole"
# The emulator's switches that make its answer as short as still holds every kind of place a cut can fall: two
# reasoning pieces, two text pieces, each choice's finish, the usage. A third piece of a kind is only more bytes of
# a kind already cut through, and a sweep pays a request through the gateway for every byte.
SHORTEST = {"reasoning_tokens": 3, "chunk_count": 2}


def sse_events(raw: bytes) -> list[tuple[str | None, str]]:
    """(event name, data) of each complete event, as the WHATWG rules read them; an unfinished last one dropped."""
    out = []
    text = raw.decode("utf-8")  # a client reading half a character is itself a failure of the gateway
    blocks = text.replace("\r\n", "\n").split("\n\n")
    for block in blocks[:-1]:  # the last piece is after the final blank line: empty when the stream ended right
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith(":") or not line:
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
        if data or name:
            out.append((name, "\n".join(data)))
    assert blocks[-1].strip() == "", f"the stream ends inside an event: {blocks[-1][-200:]!r}"
    return out


def chat(raw: bytes, expected: str, *, choices: int = 1) -> str:
    """A chat completions stream: `[DONE]` last; before it every choice's finish with its exact text, or an error
    event whose text so far is a prefix of the answer; one id throughout."""
    events = sse_events(raw)
    assert events and events[-1][1] == "[DONE]", f"no [DONE] at the end: {events[-3:]}"
    body = [json.loads(d) for _, d in events[:-1]]
    assert "[DONE]" not in [d for _, d in events[:-1]], "[DONE] twice"
    errors = [e for e in body if "error" in e]
    chunks = [e for e in body if "error" not in e]
    ids = {c["id"] for c in chunks}
    assert len(ids) <= 1, f"more than one completion id: {ids}"
    texts = {i: "" for i in range(choices)}
    finishes: dict[int, list] = {i: [] for i in range(choices)}
    for c in chunks:
        for ch in c.get("choices") or []:
            texts[ch["index"]] = texts.get(ch["index"], "") + (ch["delta"].get("content") or "")
            if ch.get("finish_reason"):
                finishes.setdefault(ch["index"], []).append(ch["finish_reason"])
    if errors:
        assert len(errors) == 1 and body[-1] is errors[0], "an error that is not the stream's last event"
        assert all(expected.startswith(t) for t in texts.values()), texts
        assert not any(finishes.values()) or choices > 1, "an error after the answer's finish"
        return f"error:{errors[0]['error'].get('code')}"
    assert all(len(f) == 1 for f in finishes.values()), f"not one finish per choice: {finishes}"
    assert all(t == expected for t in texts.values()), f"not the whole answer: {texts!r}"
    return WHOLE


TERMINAL = ("response.completed", "response.failed", "response.incomplete")


def responses(events: list[dict], expected: str) -> str:
    """A Responses stream's events (from SSE or WebSocket frames): gap-free sequence numbers, one response id, a
    terminal event last; `completed` with the exact text, or `failed`/`incomplete` with its reason and a text
    so far that is a prefix of the answer."""
    assert events, "no events"
    last = events[-1]
    if last["type"] == "error":  # refused before the response began (the WebSocket's error event)
        assert len(events) == 1, f"an error event after the response began: {[e['type'] for e in events]}"
        return f"error:{last.get('error', {}).get('code') or last.get('code')}"
    assert last["type"] in TERMINAL, f"no terminal event: the stream ends with {last['type']}"
    assert [e["type"] for e in events].count(last["type"]) == 1
    assert [e["sequence_number"] for e in events] == list(range(len(events))), "sequence numbers with gaps"
    ids = {e["response"]["id"] for e in events if "response" in e}
    assert len(ids) == 1, f"more than one response id: {ids}"
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    text = "".join(e["delta"] for e in deltas)
    assert len({e["item_id"] for e in deltas}) <= 1 and [e["type"] for e in events].count("response.created") == 1
    if last["type"] == "response.completed":
        assert text == expected and last["response"]["status"] == "completed", (text, expected)
        return WHOLE
    assert expected.startswith(text), (text, expected)
    response = last["response"]
    reason = (response.get("error") or {}).get("code") or (response.get("incomplete_details") or {}).get("reason")
    assert reason, f"a {last['type']} without a reason: {response}"
    return f"error:{reason}"


def responses_sse(raw: bytes, expected: str) -> str:
    events = sse_events(raw)
    for name, data in events:
        assert name == json.loads(data)["type"], (name, data)
    return responses([json.loads(d) for _, d in events], expected)


def messages(raw: bytes, expected: str) -> str:
    """A Messages stream: `message_start` once, block indexes in order, then `message_delta` with a stop reason and
    `message_stop` last with the exact text — or an `error` event last, the text so far a prefix of the answer."""
    events = [(name, json.loads(data)) for name, data in sse_events(raw)]
    assert events, "no events"
    for name, data in events:
        assert name == data["type"], (name, data)
    kinds = [e["type"] for _, e in events]
    text = "".join(e["delta"].get("text", "") for _, e in events if e["type"] == "content_block_delta")
    starts = [e["index"] for _, e in events if e["type"] == "content_block_start"]
    assert starts == list(range(len(starts))), f"block indexes: {starts}"
    if kinds[-1] == "error":
        assert kinds.count("error") == 1 and "message_stop" not in kinds
        assert expected.startswith(text), (text, expected)
        return f"error:{events[-1][1]['error']['type']}"
    assert kinds.count("message_start") == 1 and kinds[0] == "message_start", kinds
    assert kinds[-1] == "message_stop" and kinds[-2] == "message_delta", f"the stream ends with {kinds[-3:]}"
    assert events[-2][1]["delta"].get("stop_reason"), events[-2]
    assert text == expected, (text, expected)
    return WHOLE

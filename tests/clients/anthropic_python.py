"""The `anthropic` Python SDK as a program would use it (run with .tools/anthropic-venv's Python). The base URL
and the key come from the environment as the SDK reads them (ANTHROPIC_BASE_URL, ANTHROPIC_API_KEY or
ANTHROPIC_AUTH_TOKEN); without ANTHROPIC_BASE_URL it talks to https://api.anthropic.com (HTTPS_PROXY,
SSL_CERT_FILE honoured as httpx honours them).

    python anthropic_python.py SCENARIO [JSON | @FILE]

Scenarios: text, stream, tools, thinking, image, count_tokens, models, calls (calls given by JSON, for
errors). Prints one JSON object on its last line: {"result": …} or {"error": …}, and "http": every request
the SDK sent, with the status and `request-id` of its answer. No retries (max_retries=0) and strict
response validation: what the SDK accepts here it accepts from Anthropic.
"""

from __future__ import annotations

import base64
import json
import struct
import sys
import zlib

import anthropic

MODEL = "claude-sonnet-4-6"
WEATHER = {"name": "get_weather", "description": "The weather at a place",
           "input_schema": {"type": "object", "properties": {"location": {"type": "string"}},
                            "required": ["location"]}}

http: list[dict] = []


def _on_response(response) -> None:
    http.append({"method": response.request.method, "url": str(response.request.url),
                 "status": response.status_code, "request_id": response.headers.get("request-id"),
                 "ratelimit": {k: v for k, v in response.headers.items() if "ratelimit" in k or k == "retry-after"}})


client = anthropic.Anthropic(max_retries=0, timeout=30, _strict_response_validation=True,
                             http_client=anthropic.DefaultHttpxClient(event_hooks={"response": [_on_response]}))


def blocks(message) -> list[dict]:
    return [b.to_dict(mode="json") for b in message.content]


def message_out(message) -> dict:
    return {"id": message.id, "type": message.type, "role": message.role, "model": message.model,
            "stop_reason": message.stop_reason, "stop_sequence": message.stop_sequence, "content": blocks(message),
            "usage": message.usage.to_dict(mode="json"), "request_id": getattr(message, "_request_id", None),
            **diagnostics_out(getattr(message, "diagnostics", None))}


def diagnostics_out(diagnostics) -> dict:
    """The message's cache diagnostics as the SDK typed them (the reason's class: the SDK's own), when present."""
    if diagnostics is None:
        return {}
    reason = diagnostics.cache_miss_reason
    return {"diagnostics": diagnostics.to_dict(mode="json"), "diagnostics_class": type(diagnostics).__name__,
            "reason_class": type(reason).__name__ if reason is not None else None}


def stream_out(**params) -> dict:
    """One `messages.stream()`: the accumulated message, and every event in the order the SDK saw it."""
    events, text, partial_json, thinking, signatures, start_usage, start_diagnostics = [], [], [], [], 0, None, {}
    delta_diagnostics = None  # what the gateway adds on message_delta (an extra field the SDK keeps as given)
    with client.messages.stream(**params) as s:
        for event in s:
            kind = event.type
            if kind == "message_start":
                start_usage = event.message.usage.to_dict(mode="json")
                start_diagnostics = diagnostics_out(getattr(event.message, "diagnostics", None))
            elif kind == "message_delta":
                delta_diagnostics = (event.model_extra or {}).get("diagnostics")
            elif kind == "content_block_delta":
                kind += ":" + event.delta.type
            elif kind == "content_block_start":
                kind += ":" + event.content_block.type
            events.append(kind)
            if event.type == "text":
                text.append(event.text)
            elif event.type == "input_json":
                partial_json.append(event.partial_json)
            elif event.type == "thinking":
                thinking.append(event.thinking)
            elif event.type == "signature":
                signatures += 1
        final = s.get_final_message()
        request_id = s.request_id
    return {"message": message_out(final), "events": events, "text": "".join(text), "partial_json": partial_json,
            "thinking": "".join(thinking), "signature_events": signatures, "stream_request_id": request_id,
            "start_usage": start_usage, "start_diagnostics": start_diagnostics, "delta_diagnostics": delta_diagnostics}


def png_base64() -> str:
    """A real 2x2 red PNG, made here."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\x00" + b"\xff\x00\x00" * 2 for _ in range(2))
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return base64.b64encode(png).decode()


def error_out(e: anthropic.APIStatusError) -> dict:
    return {"class": type(e).__name__, "classes": [c.__name__ for c in type(e).__mro__], "status": e.status_code,
            "request_id": e.request_id, "type": e.type, "message": e.api_message, "body": e.body,
            "retry_after": e.response.headers.get("retry-after")}


# ---- scenarios ------------------------------------------------------------------------------------------


def text(args: dict) -> dict:
    m = client.messages.create(model=args.get("model", MODEL), max_tokens=256,
                               messages=[{"role": "user", "content": args.get("text", "hello")}])
    return message_out(m)


def stream(args: dict) -> dict:
    return stream_out(model=args.get("model", MODEL), max_tokens=256,
                      messages=[{"role": "user", "content": args.get("text", "hello")}])


def tools(args: dict) -> dict:
    """A streamed tool_use turn (input from input_json_delta), then the tool_result turn, streamed too."""
    question = {"role": "user", "content": "What is the weather in Paris?"}
    first = stream_out(model=MODEL, max_tokens=512, tools=[WEATHER], messages=[question])
    use = next(b for b in first["message"]["content"] if b["type"] == "tool_use")
    result = {"type": "tool_result", "tool_use_id": use["id"], "content": f"sunny-in-{use['input'].get('location')}"}
    second = stream_out(model=MODEL, max_tokens=512, tools=[WEATHER], messages=[
        question, {"role": "assistant", "content": first["message"]["content"]},
        {"role": "user", "content": [result]}])
    return {"first": first, "second": second}


def thinking(args: dict) -> dict:
    """Thinking on, whole and streamed; each answer (thinking block and signature unchanged) sent back in the
    next turn; then once with the thinking edited under its signature, which must be refused; then once with
    a signature made elsewhere (as Anthropic's look), which is the client's to send."""
    think = {"type": "enabled", "budget_tokens": 1024}
    model = args.get("model", MODEL)  # one that thinks (a Qwen name, or a Claude name the gateway maps to one)
    question = {"role": "user", "content": "Think, then answer."}
    first = client.messages.create(model=model, max_tokens=2048, thinking=think, messages=[question])
    second = client.messages.create(model=model, max_tokens=2048, thinking=think, messages=[
        question, {"role": "assistant", "content": blocks(first)}, {"role": "user", "content": "Again."}])
    streamed = stream_out(model=model, max_tokens=2048, thinking=think, messages=[question])
    after_stream = client.messages.create(model=model, max_tokens=2048, thinking=think, messages=[
        question, {"role": "assistant", "content": streamed["message"]["content"]},
        {"role": "user", "content": "And again."}])
    forged = [dict(b) for b in blocks(first)]
    foreign = [dict(b) for b in blocks(first)]
    for b in forged:
        if b["type"] == "thinking":
            b["thinking"] += " (edited)"
    for b in foreign:
        if b["type"] == "thinking":
            b["signature"] = "EqQBCkYIBxgCKkBmb3JlaWdu" + "A" * 64
    try:
        client.messages.create(model=model, max_tokens=2048, thinking=think, messages=[
            question, {"role": "assistant", "content": forged}, {"role": "user", "content": "Once more."}])
        refused = None
    except anthropic.APIStatusError as e:
        refused = error_out(e)
    elsewhere = client.messages.create(model=model, max_tokens=2048, thinking=think, messages=[
        question, {"role": "assistant", "content": foreign}, {"role": "user", "content": "Signed elsewhere."}])
    return {"first": message_out(first), "second": message_out(second), "streamed": streamed,
            "after_stream": message_out(after_stream), "forged": refused, "elsewhere": message_out(elsewhere)}


def image(args: dict) -> dict:
    m = client.messages.create(model=MODEL, max_tokens=256, messages=[{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png_base64()}},
        {"type": "text", "text": "What colour is this?"}]}])
    return message_out(m)


def count_tokens(args: dict) -> dict:
    short = client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "hello"}])
    long = client.messages.count_tokens(model=MODEL, system="You are terse.", tools=[WEATHER], messages=[
        {"role": "user", "content": "hello " * 400}])
    return {"short": short.input_tokens, "long": long.input_tokens, "request_id": short._request_id}


def models(args: dict) -> dict:
    page = client.models.list(limit=1000)  # the whole list in one page, to compare the paged walk with
    ids = []
    for m in client.models.list(limit=5):  # auto-pagination: must end, with every model once
        ids.append(m.id)
        if len(ids) > 1000:
            break
    one = client.models.retrieve(args.get("retrieve", "claude-sonnet"))
    return {"ids": [m.id for m in page.data], "first_id": page.first_id, "last_id": page.last_id,
            "has_more": page.has_more, "paged_ids": ids, "types": sorted({m.type for m in page.data}),
            "retrieved": one.to_dict(mode="json"), "request_id": one._request_id}


def calls(args: dict) -> list[dict]:
    """The calls in args["calls"], one after the other: each one's answer, or the exception it raised. A call is
    {"op": "create" | "stream" | "get" | "retrieve", "params": {…} (create, stream), "path" (get), "model"
    (retrieve)}; args["max_retries"]: the SDK's own retries (0 unless given). A create or stream with "diagnose"
    asks for cache diagnostics against the previous answer's id (or "previous": an id, or null)."""
    global client
    client = client.with_options(max_retries=args.get("max_retries", 0))
    outcomes: list[dict] = []
    last_id, ids = None, []
    for c in args["calls"]:
        params = c.get("params") or {}
        if c.get("diagnose"):  # "against": the index of an earlier call whose id is named
            previous = ids[c["against"]] if isinstance(c.get("against"), int) else c.get("previous", last_id)
            params = {**params, "diagnostics": {"previous_message_id": previous}}
        try:
            if c["op"] == "create":
                out = message_out(client.messages.create(**params))
                last_id = out["id"]
            elif c["op"] == "stream":
                out = stream_out(**params)
                last_id = out["message"]["id"]
            elif c["op"] == "get":
                client.get(c["path"], cast_to=object)
                out = {}
            else:
                out = client.models.retrieve(c["model"]).to_dict(mode="json")
            ids.append(last_id)
        except anthropic.APIStatusError as e:
            outcomes.append({"raised": error_out(e)})
        else:
            outcomes.append({"answer": out})
    return outcomes


SCENARIOS = {f.__name__: f for f in (text, stream, tools, thinking, image, count_tokens, models, calls)}

if __name__ == "__main__":
    scenario = SCENARIOS[sys.argv[1]]
    given = sys.argv[2] if len(sys.argv) > 2 else "{}"
    if given.startswith("@"):  # @FILE: the JSON in a file (a body of megabytes is no argument)
        with open(given[1:], encoding="utf-8") as f:
            given = f.read()
    arguments = json.loads(given)
    try:
        print(json.dumps({"result": scenario(arguments), "http": http}))
    except anthropic.APIStatusError as e:
        print(json.dumps({"error": error_out(e), "http": http}))
    except anthropic.APIResponseValidationError as e:  # strict validation: the answer is not Anthropic's shape
        print(json.dumps({"invalid": f"{e}: {str(e.__cause__)[:700]}", "body": e.body, "http": http}))

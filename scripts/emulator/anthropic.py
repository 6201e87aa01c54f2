"""Model Studio's Anthropic-compatible base, `/apps/anthropic` on the emulator (`{emulator url}/apps/anthropic`).

What keyed plans (pay-as-you-go, Coding Plan, Token Plan) serve there, per Model Studio's "Anthropic-compatible
Messages" page (help.aliyun.com model-studio/anthropic-api-messages): `POST v1/messages` with the API key in
`x-api-key` or as `Authorization: Bearer` (ANTHROPIC_API_KEY or ANTHROPIC_AUTH_TOKEN), Qwen model ids. Also
`POST v1/messages/count_tokens` and `GET v1/models` in Anthropic's shapes (not documented by Model Studio: served
so a pass-through can be tested). Errors are Anthropic's `{"type": "error", "error": {type, message}}` with
Anthropic's statuses, and every answer carries a `request-id` header (Claude Code copies it into its output).
Requests are validated by `anthropic_rules`, answered by `anthropic_answer`; the request log keeps them with the
credentials redacted (`wire.Wire.record`).
"""

from __future__ import annotations

import uuid

from . import anthropic_answer as answer, faults
from .anthropic_rules import check, error
from .faults import dumps

PREFIX = "/apps/anthropic"
# A queued fault's DashScope status -> the Anthropic error type the base answers with (529: Anthropic's
# "overloaded", what a 503 from the models behind becomes here; assumed, no public source quotes it).
FAULT_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               429: "rate_limit_error", 500: "api_error", 503: "overloaded_error"}
MIDSTREAM_ERROR = {"type": "error", "error": {"type": "api_error", "message": "stream timeout"}}
GARBAGE_EVENT = b"event: content_block_delta\ndata: {this is not json\n\n"


def request_id() -> str:
    return f"req_{uuid.uuid4().hex[:24]}"


def send(h, status: int, body: dict, headers: dict | None = None) -> None:
    h.send_json(status, body, {"request-id": request_id(), **(headers or {})})


def route(h, sub: str, body) -> None:
    """Answers a request under PREFIX; `sub` is the rest of its path (the query string, e.g. ?beta=true, is not
    part of it and changes nothing)."""
    routes = {"/v1/messages": {"POST": lambda: messages(h, body)},
              "/v1/messages/count_tokens": {"POST": lambda: count_tokens(h, body)},
              "/v1/models": {"GET": lambda: models(h, "")}}
    if sub.startswith("/v1/models/"):
        routes[sub] = {"GET": lambda: models(h, sub[len("/v1/models/"):])}
    methods = routes.get(sub)
    if methods is None:
        return send(h, *error("not_found_error", "Not Found"))
    if h.command not in methods:
        return send(h, 405, {"type": "error", "error": {"type": "invalid_request_error", "message":
                                                         f"Method Not Allowed: {h.command}"}},
                    {"Allow": ", ".join(methods)})
    methods[h.command]()


def admitted(h) -> str | None:
    """The request's API key, or None once refused: no key, not a key the emulator knows (an OAuth token is
    refused: the base takes API keys only), or no `anthropic-version` header."""
    key = h.headers.get("x-api-key") or h.bearer()  # x-api-key first when both are sent (assumed)
    with h.state.lock:
        known = h.state.tokens.get(key) if key else None
    if not key:
        send(h, *error("authentication_error", "x-api-key header is required"))
    elif not known or known["kind"] != "key":
        send(h, *error("authentication_error", "invalid x-api-key"))
    elif not h.headers.get("anthropic-version"):
        # Anthropic's rule. Model Studio's own curl example omits the header, so the real base may accept
        # such requests; the emulator is stricter so a pass-through that drops the header fails in tests.
        send(h, *error("invalid_request_error", "anthropic-version: header is required"))
    else:
        return key
    return None


def _fault_error(h, f: dict, headers: dict) -> bool:
    """Answers a queued immediate fault (quota429, server503, auth401…) in Anthropic's shape."""
    if f["kind"] == "auth401":
        status, message = 401, "invalid x-api-key"
    elif f["kind"] == "arrears400":
        status, message = 400, faults.arrears_400()["error"]["message"]
    elif f["kind"] in faults.IMMEDIATE:
        status, body = faults.IMMEDIATE[f["kind"]]
        message = body["error"]["message"]
    else:
        return False
    extra = {"Retry-After": str(f["retry_after"])} if f.get("retry_after") is not None else {}
    send(h, *error(FAULT_TYPES[status], message), {**headers, **extra})
    return True


def messages(h, body) -> None:
    token = admitted(h)
    if token is None:
        return
    with h.state.lock:  # its own counter: chat_requests keeps counting the OpenAI-compatible path only
        h.state.stats["messages_requests"] = h.state.stats.get("messages_requests", 0) + 1
    headers = {"request-id": request_id()}
    stream = isinstance(body, dict) and body.get("stream") is True
    fault = h.state.take_fault(faults.API_FAULTS, token, h.path)
    if fault and (_fault_error(h, fault, headers) or h.fault_answered(fault, stream, headers=headers)):
        return
    sw = h.state.snapshot()
    problem = check(body, sw)
    if problem:
        return h.send_json(*problem, headers)
    refused = h.state.count(token)  # the limit switches (rpm_limit, daily_limit, plan_limits, …)
    if refused:
        return h.send_json(*error("rate_limit_error", faults.LIMITS[refused]["error"]["message"]), headers)
    a = answer.plan(body, sw, h.state.cache.serve(token, answer.view(body)))
    if sw["first_byte_delay_ms"]:
        h.server.stopping.wait(sw["first_byte_delay_ms"] / 1000)
    if not stream:
        data = dumps(answer.message(body, a))
        if fault and h.fault_answered(fault, False, data, headers):
            return
        return h.send_bytes(200, data, "application/json", headers)
    _stream(h, answer.events(body, a, sw), sw, fault, headers)


def _event(name: str, data: dict) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + dumps(data) + b"\n\n"


def _stream(h, events, sw: dict, queued: dict | None, headers: dict) -> None:
    """Writes the events, playing a queued stream fault: stall (after message_start), midstream504 (an
    `event: error` after two deltas), reset_midstream (RST there), invalid_sse (a garbage event after the first
    delta), error_finish (an `event: error` of the fault's `error_type`, default overloaded_error)."""
    fault = queued["kind"] if queued else None
    h.start_stream(headers, queued)
    deltas = 0
    for i, (name, data) in enumerate(events):
        tail = name == "message_delta"
        if fault == "stall" and i == 1:
            fault = None
            if h.server.stopping.wait(float(queued.get("seconds", sw["stall_seconds"]))):
                return h.reset_connection()
        if fault in ("midstream504", "reset_midstream") and (deltas >= 2 or tail):
            if fault == "reset_midstream":
                return h.reset_connection()
            h.write_event(_event("error", MIDSTREAM_ERROR), sw["split_writes"])
            break
        if fault == "error_finish" and (deltas >= 1 or tail):
            h.write_event(_event("error", {"type": "error", "error": {
                "type": queued.get("error_type") or "overloaded_error",
                "message": str(queued.get("message") or faults.ERROR_FINISH_TEXT)}}), sw["split_writes"])
            break
        if i and sw["gap_ms"]:
            h.server.stopping.wait(sw["gap_ms"] / 1000)
        h.write_event(_event(name, data), sw["split_writes"])
        deltas += name == "content_block_delta"
        if fault == "invalid_sse" and deltas:
            fault = None
            h.write_event(GARBAGE_EVENT, sw["split_writes"])
    h.end_stream()


def count_tokens(h, body) -> None:
    """`{"input_tokens": N}`, N as the emulator counts a prompt (characters / 4); not metered."""
    if admitted(h) is None:
        return
    problem = check(body, h.state.snapshot(), count=True)
    if problem:
        return send(h, *problem)
    send(h, 200, {"input_tokens": answer.prompt_tokens(body)})


def models(h, model_id: str) -> None:
    """The emulator's Qwen models in Anthropic's list shape (one page)."""
    if admitted(h) is None:
        return
    entry = lambda m: {"type": "model", "id": m, "display_name": m,  # noqa: E731
                       "created_at": "2025-01-01T00:00:00Z"}
    known = list(answer.chat.known_models(h.state.snapshot()))
    if model_id:
        if model_id not in known:
            return send(h, *error("not_found_error", f"model: {model_id}"))
        return send(h, 200, entry(model_id))
    send(h, 200, {"data": [entry(m) for m in known], "has_more": False, "first_id": known[0],
                  "last_id": known[-1]})

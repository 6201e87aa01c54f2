"""Model Studio's own OpenAI-compatible Responses API: `POST …/responses` (whole or streamed), `GET`/`DELETE
…/responses/{id}`, `GET …/responses/{id}/input_items`.

Paths ("OpenAI compatible - Responses", help.aliyun.com, 2026): pay-as-you-go's `/compatible-mode/v1/responses`
(the current path) and `/api/v2/apps/protocols/compatible-mode/v1/responses` (the legacy one: "no longer
maintained", still answering when a third party probed it, 2026-09). The Coding Plan's `/v1` serves chat only (a
third party's Codex bridge exists for that reason): its `/v1/responses` is the emulator's plain 404. API keys only.

Errors are DashScope's flat `{"code", "message", "request_id"}`, not OpenAI's nested `error` (the probe, yobo2u/omugw
2026-09-27): 401 `InvalidApiKey` "No API-key provided." / "Invalid API-key provided."; 405 `Method Not Allowed`; 404
`Not Found` "Not support"; 400 `InvalidParameter` (responses_in.py). A refused request with `stream: true` is HTTP
200 and one `response.failed` event (the probe saw it for an unknown model; assumed for every 400). Streams are
framed as the probe captured them: `id:N`, `event:<type>`, a `:HTTP_STATUS/200` comment, `data:<json>`, and no
[DONE]; `Content-Type: text/event-stream;charset=UTF-8`.

Answers come from the chat planner (chat.plan: the same echo, tool calls, thinking per model); the prompt cache is
the session cache when the header `x-dashscope-session-cache: enable` asks for it on a model that offers it, the
implicit cache otherwise (cache.py, "Context cache"). Switch `responses_api` false: a region or workspace without
it (404 everywhere); `session_cache` false: the header is ignored. Queued faults apply (their bodies flattened).
"""

from __future__ import annotations

import uuid

from . import catalogue, chat, faults
from . import responses_in as rin, responses_out as rout
from .cache import text_of, tokens
from .faults import dumps
from .responses_store import Stored, input_items

BASES = ("/compatible-mode/v1/responses", "/api/v2/apps/protocols/compatible-mode/v1/responses")
PAYG = BASES[0]  # how the limits count it: pay-as-you-go, not the Coding Plan's windows
NOT_SUPPORTED = {"code": "Not Found", "message": "Not support"}
STREAM_FAULTS = ("midstream504", "reset_midstream", "stall", "invalid_sse", "error_finish", "cut")


def owns(path: str) -> bool:
    return any(path == b or path.startswith(b + "/") for b in BASES)


def send(h, status: int, body: dict, headers: dict | None = None) -> None:
    h.send_json(status, {**body, "request_id": str(uuid.uuid4())}, headers)


def route(h, path: str, parsed) -> None:
    base = next(b for b in BASES if path == b or path.startswith(b + "/"))
    if not h.state.snapshot()["responses_api"]:
        return send(h, 404, NOT_SUPPORTED)
    parts = [p for p in path[len(base):].split("/") if p]
    if not parts:
        methods = {"POST": lambda key: create(h, key, parsed)}
    elif len(parts) == 1:
        methods = {"GET": lambda key: retrieve(h, key, parts[0]), "DELETE": lambda key: delete(h, key, parts[0])}
    elif len(parts) == 2 and parts[1] == "input_items":
        methods = {"GET": lambda key: listed(h, key, parts[0])}
    else:
        return send(h, 404, NOT_SUPPORTED)
    if h.command not in methods:
        return send(h, 405, {"code": "Method Not Allowed", "message": f"Method '{h.command}' is not allowed for "
                                                                      f"'{path}'."})
    key = admitted(h)
    if key is not None:
        h.state.bump("responses_requests")
        methods[h.command](key)


def admitted(h) -> str | None:
    key = h.bearer()
    with h.state.lock:
        known = h.state.tokens.get(key) if key else None
    if not key:
        send(h, 401, {"code": "InvalidApiKey", "message": "No API-key provided."})
    elif not known or known["kind"] != "key":
        send(h, 401, {"code": "InvalidApiKey", "message": "Invalid API-key provided."})
    else:
        return key
    return None


def _stored(h, key: str, rid: str):
    return h.state.responses.get(h.state.owner(key), rid, h.state.cache.now())


def _not_found(h, rid: str) -> None:
    send(h, 404, {"code": "NotFound", "message": f"Response with id '{rid}' not found."})  # code assumed


def retrieve(h, key: str, rid: str) -> None:
    stored = _stored(h, key, rid)
    return h.send_json(200, stored.response) if stored else _not_found(h, rid)


def delete(h, key: str, rid: str) -> None:
    if not h.state.responses.delete(h.state.owner(key), rid, h.state.cache.now()):
        return _not_found(h, rid)
    h.send_json(200, {"id": rid, "object": "response", "deleted": True})  # OpenAI's shape (assumed)


def listed(h, key: str, rid: str) -> None:
    stored = _stored(h, key, rid)
    if stored is None:
        return _not_found(h, rid)
    data = stored.input_items
    h.send_json(200, {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                      "last_id": data[-1]["id"] if data else None, "has_more": False})


def _fault(h, f: dict, stream: bool) -> bool:
    """A queued fault answered before the work, in the flat shape; False for those a stream or an answer plays."""
    kind = f["kind"]
    retry = {"Retry-After": str(f["retry_after"])} if f.get("retry_after") is not None else None
    if kind in faults.IMMEDIATE:
        status, err = faults.IMMEDIATE[kind]
        send(h, status, {"code": err["error"].get("code"), "message": err["error"]["message"]}, retry)
        return True
    if kind == "auth401":
        send(h, 401, {"code": "InvalidApiKey", "message": "Invalid API-key provided."}, retry)
        return True
    if kind == "arrears400":
        err = faults.arrears_400()["error"]
        send(h, 400, {"code": err["code"], "message": err["message"]}, retry)
        return True
    return kind not in STREAM_FAULTS and h.fault_answered(f, stream)


def create(h, key: str, parsed) -> None:
    body = parsed if isinstance(parsed, dict) else None
    stream = bool(body) and body.get("stream") is True
    f = h.state.take_fault(faults.API_FAULTS, key, h.path)
    if f and _fault(h, f, stream):
        return
    if body is None:
        return send(h, 400, {"code": "InvalidParameter", "message": "The request body is not valid JSON."})  # assumed
    sw = h.state.snapshot()
    model = body.get("model")
    problem = rin.check(body, catalogue.serves(model, "responses") and model in chat.known_models(sw))
    account, now = h.state.owner(key), h.state.cache.now()
    prev = body.get("previous_response_id")
    history: list[dict] = []
    if not problem and prev is not None:
        stored = h.state.responses.get(account, prev, now)
        problem = None if stored else rin.refusal(f"Not found previous_response_id: {prev}")
        history = stored.history if stored else []
    cbody = rin.chat_body(body, history) if not problem else {}
    if not problem and (bad := chat.validate(cbody, sw)):
        problem = rin.flatten(bad)
    if problem:
        if stream and problem[0] == 400:
            return _stream(h, [{"type": "response.failed", "response": rout.response(
                body, rout.new_id("resp"), "failed", [], None, error=problem[1])}], sw, None)
        return send(h, *problem)
    refused = h.state.count(key, tokens("".join(text_of(m.get("content")) for m in cbody["messages"])), path=PAYG)
    if refused:
        err = faults.LIMITS[refused]["error"]
        return send(h, 429, {"code": err.get("code"), "message": err["message"]})
    if not h.state.enter(key):
        return send(h, 429, {"code": "insufficient_quota", "message": faults.CONCURRENCY["error"]["message"]})
    try:
        answer(h, key, body, cbody, sw, f)
    finally:
        h.state.leave(key)


def answer(h, key: str, body: dict, cbody: dict, sw: dict, fault: dict | None) -> None:
    cache, model = h.state.cache, body["model"]
    session = (h.headers.get("x-dashscope-session-cache", "").lower() == "enable" and sw["session_cache"]
               and catalogue.serves(model, "session_cache"))
    continued = body.get("previous_response_id") is not None
    served = cache.read_session(key, cbody, continued) if session else cache.serve(key, cbody)
    plan = chat.plan(cbody, sw, served)
    h.state.served(key, plan["usage"])
    plan, incomplete = rout.cut(plan, body.get("max_output_tokens"),
                                bool((catalogue.row(model) or {}).get("shares_output")))
    resp = rout.response(body, rout.new_id("resp"), "incomplete" if incomplete else "completed",
                         rout.items(plan, incomplete), rout.usage(plan["usage"]), incomplete=incomplete)
    said = rout.assistant(plan)
    context = cbody["messages"][1 if isinstance(body.get("instructions"), str) else 0:]
    if body.get("store", True):
        h.state.responses.keep(h.state.owner(key), Stored(resp, context + said, input_items(body["input"])),
                               cache.now())
    if session:  # the conversation's tokens as they were sent, instructions first, with the answer
        cache.keep_session(key, {**cbody, "messages": cbody["messages"] + said})
    if sw["first_byte_delay_ms"] and not h.wait_unless_abandoned(sw["first_byte_delay_ms"] / 1000):
        return
    if body.get("stream") is True:
        return _stream(h, rout.events(resp, int(sw["chunk_count"])), sw, fault)
    data = dumps(resp)
    if fault and h.fault_answered(fault, False, data):
        return
    h.send_bytes(200, data, "application/json")


def _stream(h, events, sw: dict, fault: dict | None) -> None:
    kind = fault["kind"] if fault else None
    h.send_response(200)
    for k, v in (("Content-Type", "text/event-stream;charset=UTF-8"), ("Cache-Control", "no-cache"),
                 ("Transfer-Encoding", "chunked")):
        h.send_header(k, v)
    h.end_headers()
    h.arm_cut(fault)
    for seq, event in enumerate(events):
        if seq and kind == "stall":
            kind = None
            if h.server.stopping.wait(float(fault.get("seconds", sw["stall_seconds"]))):
                return h.reset_connection()
        if kind == "reset_midstream" and event["type"].endswith(".delta"):
            return h.reset_connection()
        if kind in ("midstream504", "error_finish") and event["type"].endswith(".delta"):
            # a failure after the answer began: Model Studio's `response.failed` (assumed for a broken stream)
            message = str(fault.get("message") or faults.ERROR_FINISH_TEXT) if kind == "error_finish" else \
                "stream timeout"
            event, kind = {"type": "response.failed", "response": {"status": "failed", "error": {
                "code": "Throttling.RateQuota" if kind == "error_finish" else "504", "message": message}}}, "done"
        if seq and sw["gap_ms"]:
            h.server.stopping.wait(sw["gap_ms"] / 1000)
        h.write_event(b"id:%d\nevent:%s\n:HTTP_STATUS/200\ndata:%s\n\n" % (
            seq + 1, event["type"].encode(), dumps({**event, "sequence_number": seq})), sw["split_writes"])
        if kind == "done":
            break
        if kind == "invalid_sse" and event["type"].endswith(".delta"):
            kind = None
            h.write_event(b"id:0\nevent:response.output_text.delta\ndata:{this is not json\n\n", sw["split_writes"])
    h.end_stream()

"""What an OpenAI-compatible inference server answers, in the chat form: a whole answer (its reasoning under the
chat form's `reasoning_content`, whichever name the server's release gives it), and its refusals as the gateway's
error kinds. vLLM's errors are `{"error": {"message", "type", "param", "code"}}` (older releases: the same fields
at the top level, with `"object": "error"`); SGLang's the same shape."""

from __future__ import annotations

import json
import re

from ... import ids
from ...errors import AUTH, CLIENT, CONTEXT, SERVER, THROTTLE, TIMEOUT, UNREACHABLE, ErrorKind, UpstreamError
from . import limits

REASONING = ("reasoning_content", "reasoning")  # the chat form's name first; newer vLLM releases say `reasoning`
_CONTEXT_TEXTS = ("maximum context length", "context length", "prompt is too long", "longer than the maximum")
# The finishes OpenAI's chat completions know (its SDK accepts no other); the server's others are said in these words
FINISHES = ("stop", "length", "tool_calls", "content_filter", "function_call")
INCOMPLETE = ("repetition",)  # vLLM's repetition detector stopped the answer: incomplete, as a cap's `length`


def ended_early(finish: str) -> str:
    """Why an answer a server's finish (`abort`, `error`, or one unknown) ended is not complete."""
    return f"The self-hosted server ended the answer before it was complete (finish_reason {finish!r})."


def to_chat(data: dict, *, model: str) -> dict:
    """A whole answer as the chat form holds it, named `model`."""
    out = dict(data)
    out["model"] = model
    out.setdefault("object", "chat.completion")
    if "id" not in out:
        out["id"] = f"chatcmpl-{ids.uuid_text()}"
    if out.get("system_fingerprint") is None:
        out.pop("system_fingerprint", None)
    choices = []
    for i, choice in enumerate(out.get("choices") or []):
        choice = dict(choice) if isinstance(choice, dict) else {}
        choice.setdefault("index", i)
        choice.setdefault("logprobs", None)
        message = choice["message"] = reasoned(choice.get("message"))
        if message.get("reasoning_content") and isinstance(message.get("content"), str):
            message["content"] = message["content"].lstrip("\n")  # the template's "\n\n" after </think>
        message.setdefault("role", "assistant")
        message.setdefault("content", None)
        if message.get("tool_calls") and choice.get("finish_reason") == "stop":
            choice["finish_reason"] = "tool_calls"
        elif (finish := choice.get("finish_reason")) in INCOMPLETE:
            choice["finish_reason"] = "length"
        elif finish and finish not in FINISHES:  # abort, error: the answer broke off (502, sent again by a client)
            raise UpstreamError(SERVER, 502, ended_early(str(finish)), "server_error", "upstream_error") \
                .to_gateway_error()
        choices.append(choice)
    out["choices"] = choices
    return out


def reasoned(message: object) -> dict:
    """A message or delta with its reasoning under `reasoning_content` (a null reasoning dropped)."""
    out = dict(message) if isinstance(message, dict) else {}
    text = out.pop("reasoning", None)
    if out.get("reasoning_content") is None:
        out.pop("reasoning_content", None)
        if isinstance(text, str):
            out["reasoning_content"] = text
    return out


def error_fields(body: bytes | str | dict | None) -> tuple[str, str | None, str | None]:
    """(message, type, param) of an error answer, nested or flat; the message "" when it has none."""
    data = body
    if isinstance(body, (bytes, str)):
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
            return text.strip()[:500], None, None
    if not isinstance(data, dict):
        return "", None, None
    nested = data.get("error")
    err: dict = nested if isinstance(nested, dict) else data
    message = err.get("message") if isinstance(err.get("message"), str) else \
        data.get("error") if isinstance(data.get("error"), str) else ""
    etype = err.get("type") if isinstance(err.get("type"), str) else None
    param = err.get("param") if isinstance(err.get("param"), str) else None
    return str(message), etype, param


def classify(status: int, body: bytes | str | dict | None) -> UpstreamError:
    """One refusal as what the gateway does next and what the client sees: the server's words, its class kept (a
    refused request stays a 4xx, never a 5xx a client retries)."""
    message, etype, param = error_fields(body)
    said = message or f"HTTP {status}"
    low = said.lower()
    kind: ErrorKind
    code: str | None
    if status == 401 or status == 403:
        kind, code, out = AUTH, "invalid_api_key", 401
    elif status == 429:
        kind, code, out = THROTTLE, "rate_limit_exceeded", 429
    elif status in (400, 413) and (seen := limits.counted(said)) is not None:
        if seen.overflow:  # the prompt alone is over the window
            return UpstreamError(CONTEXT, 400, said, "invalid_request_error", "context_length_exceeded",
                                 param="messages", counted=(seen.prompt, seen.window))
        # only the output cap was: never a prompt too long (the request is sent again within the window)
        return UpstreamError(CLIENT, 400, f"The self-hosted server answered HTTP {status}: {said}",
                             "invalid_request_error", "output_cap_over_window", param="max_tokens",
                             counted=(seen.prompt, seen.window))
    elif status in (400, 413) and any(t in low for t in _CONTEXT_TEXTS):
        return UpstreamError(CONTEXT, 400, said, "invalid_request_error", "context_length_exceeded",
                             param="messages")
    elif status == 404:
        kind, code, out = CLIENT, "model_not_found", 404
    elif status == 504:
        kind, code, out = TIMEOUT, "upstream_timeout", 504
    elif status >= 500:  # a dead engine (vLLM: 500 "EngineCore encountered an issue", /health 503), a crash:
        # nothing was generated, another of the team's servers may answer (RetryPolicy.elsewhere)
        kind, code, out = UNREACHABLE, "upstream_error", 502 if status != 503 else 503
    else:  # vLLM and SGLang name the kind in `type` (BadRequestError; `code` is the status): the log's error=CODE,
        # as Model Studio's code is
        kind, code, out = CLIENT, re.sub(r"\W+", "_", etype or "").strip("_") or None, \
            status if 400 <= status < 500 else 400
    typ = "server_error" if kind in (SERVER, TIMEOUT, UNREACHABLE) else "rate_limit_error" if kind is THROTTLE else \
        "invalid_request_error"
    where = "" if etype is None else f" ({etype})"
    return UpstreamError(kind, out, f"The self-hosted server answered HTTP {status}{where}: {said}", typ, code,
                         param=param, overloaded=status == 503)

"""DashScope's request rules (R1–R10 of dashscope-rules.md), enforced the way real DashScope answers them.

Each check returns (status, body) for a request real DashScope refuses, or None. The bodies are the ones
users quoted in public threads; where no public thread quotes one (marked "assumed"), the body follows the
quoted ones' shape. These rules are DashScope's defaults, so they are always on; only behaviours that are
not the default (an `error_finish` stream, a model not enabled for the account) are switches or faults.
"""

from __future__ import annotations

import datetime
import difflib
import json
import uuid

from . import catalogue, thinking

ROLES = ("system", "assistant", "user", "tool", "function")
ALGO = "<400> InternalError.Algo.InvalidParameter: "

# The models and their facts are the gateway's catalogue's (catalogue.py); the switches add models and caps.
KNOWN_MODELS = catalogue.CHAT_MODELS
# Output caps (the upper bound in "Range of max_tokens should be [1, N]"), per model: a model without one has none.
OUTPUT_CAPS = catalogue.OUTPUT_CAPS
THINKING_ONLY = tuple(m for m in KNOWN_MODELS if catalogue.MODELS[m].get("thinking") == thinking.ONLY)
VISION = catalogue.having("vision")
# Models that answer streams only (Model Studio: QwQ, QVQ, the open-source Qwen3 thinking models).
STREAM_ONLY = catalogue.having("stream_only")
SHARES_OUTPUT = catalogue.having("shares_output")
EMBEDDING_BATCH = 10
# The sizes each embedding model offers (`dimensions`), its default first; v1 and v2 have one fixed size.
EMBEDDING_SIZES = catalogue.EMBEDDING_SIZES
# Model Studio's "Notice of Changes to Certain Model Fields" (effective 2026-04-20): `max_completion_tokens`
# replaces `max_tokens` on the OpenAI-compatible Chat Completions API, which is deprecated before 2026-05-30.
# The refusal's wording is the emulator's own: no public source quotes the real one.
DEPRECATED_MAX_TOKENS = ALGO + "max_tokens is deprecated, use max_completion_tokens"


def error(code: str, message: str, type: str = "invalid_request_error") -> dict:
    return {"error": {"code": code, "message": message, "param": None, "type": type},
            "request_id": str(uuid.uuid4())}


def invalid(message: str) -> tuple[int, dict]:
    return 400, error("invalid_parameter_error", message)


thinking_on = thinking.thinking_on


def _has_image(messages: list) -> bool:
    return any(isinstance(m.get("content"), list) and any(
        isinstance(p, dict) and p.get("type") in ("image_url", "image", "video", "video_url") for p in m["content"])
        for m in messages)


def check_roles(messages: list) -> tuple[int, dict] | None:
    """R1: developer (or any other role) is refused, naming the first offending message."""
    for i, m in enumerate(messages):
        role = m.get("role")
        if role not in ROLES:
            allowed = ", ".join(f"'{r}'" for r in ROLES)
            return invalid(f"{role} is not one of [{allowed}] - 'messages.[{i}].role'")
    return None


def check_text(body: object) -> tuple[int, dict] | None:
    """Text that is not Unicode: a lone surrogate escape (`"\\ud83d"`, valid JSON syntax, no character) is
    refused, as a strict UTF-8 server refuses it (body assumed). What the gateway must send is U+FFFD."""
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return invalid("The request body holds a lone surrogate escape: its text is not valid Unicode.")
    return None


def output_cap(model: object, model_caps: dict) -> int | None:
    """The model's output cap: the `model_caps` switch's, else the catalogue's; None: no cap known, none applied."""
    cap = model_caps.get(model) if isinstance(model, str) else None
    return cap if cap is not None else OUTPUT_CAPS.get(model)


def shares_output(model: object) -> bool:
    """Reasoning and answer share the output cap (catalogue `shares_output`: from qwen4-max-preview on)."""
    return model in SHARES_OUTPUT


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_output(body: dict, cap: int | None, legacy: bool) -> tuple[int, dict] | None:
    """The output cap's fields: `max_tokens` refused since its deprecation (unless `legacy`), then R4 on
    `max_completion_tokens` and an accepted `max_tokens`, naming the parameter that was sent (DashScope names
    the one it received: "max_completion_tokens [64000] must be greater than …", OpenMinis #35)."""
    if body.get("max_tokens") is not None and not legacy:  # Model Studio's notice, effective 2026-04-20
        return invalid(DEPRECATED_MAX_TOKENS)
    for key in ("max_tokens", "max_completion_tokens"):  # R4
        value = body.get(key)
        if value is None or (_positive_int(value) and (cap is None or value <= cap)):
            continue
        if cap is None:  # no cap to name: text assumed
            return invalid(ALGO + f"{key} should be a positive integer")
        return invalid(ALGO + f"Range of {key} should be [1, {cap}]")
    return None


def check_budget_below_cap(body: dict) -> tuple[int, dict] | None:
    """A thinking budget at or above the output cap sent, in thinking mode: DashScope's 400
    "max_completion_tokens [64000] must be greater than thinking_budget [65536]" (OpenMinis #35, qwen3.7-max;
    the text as quoted, without the error-class prefix), naming the cap's parameter as sent."""
    budget = body.get("thinking_budget")
    if not _positive_int(budget) or not thinking_on(body):
        return None
    for key in ("max_completion_tokens", "max_tokens"):
        cap = body.get(key)
        if _positive_int(cap) and budget >= cap:
            return invalid(f"{key} [{cap}] must be greater than thinking_budget [{budget}]")
    return None


def retired(model: object, today: str | None = None) -> bool:
    """The catalogue's `retires` is the last day a model is served (Model Studio's qwen4-max-preview page: until
    2026-11-25 24:00 UTC+8); after it the model is not found (404 model_not_found, chat.validate)."""
    row = catalogue.row(model)
    day = today or datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    return row is not None and bool(row.get("retires")) and day > str(row["retires"])


def not_found(model: object, today: str | None = None) -> str:
    """Model Studio's 404 for a model it does not serve; for a retired one with its hint, which names other models,
    some retired too (dashscope-rules.md, 2026-11-26: qvq-max -> "Did you mean `qwen-vl-max`…"): the closest
    names, whatever their state, so a request the gateway should have answered itself is visible."""
    said = f"The model `{model}` does not exist or you do not have access to it."
    if not retired(model, today):
        return said
    near = difflib.get_close_matches(str(model), [m for m in KNOWN_MODELS if m != model], n=3, cutoff=0.5)
    names = [f"`{m}`" for m in near]
    return said + (f" Did you mean {' or '.join(filter(None, (', '.join(names[:-1]), names[-1])))}?" if names else "")


def check_chat(body: dict, sw: dict) -> tuple[int, dict] | None:
    """R1–R4, R7 (model not enabled), R9, R10 for one chat request, with the switches `sw`; None when DashScope
    accepts it."""
    model = body.get("model")
    if model in (sw.get("denied_models") or ()):  # R7: a model the account has not enabled
        return 403, error("AccessDenied.Unpurchased", "Access to model denied. Please make sure you are eligible "
                                                      "for using the model.")
    messages = body["messages"]
    problem = check_roles(messages)
    if problem:
        return problem
    refused = thinking.check(body)  # R9: the knobs this model refuses, in DashScope's words
    if refused:
        return invalid(refused)
    on = thinking_on(body)
    rf = body.get("response_format")
    if isinstance(rf, dict) and rf.get("type") in ("json_object", "json_schema") and on:  # R2
        return invalid("Json mode response is not supported when enable_thinking is true")
    choice = body.get("tool_choice")
    if on and body.get("tools") and (choice == "required" or isinstance(choice, dict)):  # R3
        return invalid(ALGO + "The tool_choice parameter does not support being set to required or object in "
                              "thinking mode")
    problem = check_output(body, output_cap(model, sw.get("model_caps") or {}), bool(sw.get("legacy_max_tokens")))
    if problem:
        return problem
    problem = check_budget_below_cap(body)
    if problem:
        return problem
    if model not in VISION and _has_image(messages):  # R10
        return invalid(ALGO + "The provided messages input is invalid. The error info is [Unexpected item type "
                              "in content.]")
    return None


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_params(body: dict, stream_only=()) -> tuple[int, dict] | None:
    """Stream-only models, sampling ranges, images in tool messages: checked after `check_chat`."""
    temperature, top_p = body.get("temperature"), body.get("top_p")
    if temperature is not None and not (_number(temperature) and 0 <= temperature < 2):  # body assumed
        return invalid(ALGO + "Range of temperature should be [0.0, 2.0)")
    if top_p is not None and not (_number(top_p) and 0 < top_p <= 1):  # body assumed
        return invalid(ALGO + "Range of top_p should be (0.0, 1.0]")
    for m in body["messages"]:  # tool content is read as text (body assumed)
        if m.get("role") == "tool" and _has_image([m]):
            return invalid(ALGO + "The provided messages input is invalid. The error info is [Unexpected item "
                                  "type in content.]")
        for p in m.get("content") if isinstance(m.get("content"), list) else ():
            marker = p.get("cache_control", {"type": "ephemeral"}) if isinstance(p, dict) else {"type": "ephemeral"}
            if not isinstance(marker, dict) or marker.get("type") != "ephemeral":  # the only type (body assumed)
                return invalid(ALGO + "cache_control.type only supports ephemeral")
            ttls = catalogue.MODELS.get(body.get("model"), {}).get("cache_ttls", ())
            if ttls and marker.get("ttl", ttls[0]) not in ttls:  # Qwen4: 5m or 1h (body assumed)
                return invalid(ALGO + f"cache_control.ttl only supports {' or '.join(ttls)}")
    if body.get("model") in (*STREAM_ONLY, *stream_only) and body.get("stream") is not True:  # real body (public threads)
        return invalid("This model only support stream mode, please enable the stream parameter to access the "
                       "model. ")
    return None


def check_dimensions(model: str, dims) -> tuple[int, dict] | None:
    """`dimensions` one of the sizes the model offers (body assumed, in R5's style)."""
    sizes = EMBEDDING_SIZES.get(model, ())
    if dims is None or dims in sizes and (len(sizes) > 1 or dims == sizes[0]):
        return None
    listed = ", ".join(str(s) for s in sorted(sizes, reverse=True))
    return invalid(ALGO + f"Value error, dimension should be one of [{listed}].: parameters.dimension")


def check_embeddings(inputs) -> tuple[int, dict] | None:
    """R5: at most 10 inputs, each a non-empty string (token-id arrays are refused)."""
    if isinstance(inputs, list) and len(inputs) > EMBEDDING_BATCH:
        return invalid(ALGO + "Value error, batch size is invalid, it should not be larger than 10.: input.contents")
    if not isinstance(inputs, (str, list)) or not inputs or (
            isinstance(inputs, list) and not all(isinstance(t, str) and t for t in inputs)):
        # body assumed: DashScope takes strings only
        return invalid(ALGO + "Value error, contents should be a string or a list of strings.: input.contents")
    return None

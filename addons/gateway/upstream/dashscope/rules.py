"""What DashScope refuses that OpenAI accepts, and the request shape qwen-code sends: pure functions.

Each function takes the Qwen-bound chat body and returns a new one that DashScope accepts (rules R1–R4,
R9, R10 of dashscope-rules.md), appending a short note to `notes` whenever it changes something the
client asked for, so the change shows on the flow. None of them does I/O.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping

from ... import ids
from ...exchange import note
from ...models import Thinking, is_vision, output_cap, thinking_kind, vision_model
from . import markers

EFFORT_BUDGET = {"low": 1024, "medium": 8192}  # thinking_budget for OpenAI efforts; high: unbounded
_OFF_EFFORTS = ("none", "minimal")
_NATIVE_EFFORTS = ("low", "medium", "high")
_SESSION_NS = uuid.UUID("5b7c2f0e-8a1d-4c3e-9f61-2d4a8e0c7b19")  # this gateway's namespace for session ids
# json.dumps with arguments builds an encoder per call: these are built once (the same text)
_OPENING = json.JSONEncoder(ensure_ascii=False)
_CONTENT = json.JSONEncoder(sort_keys=True)


def _text(content) -> str | None:
    """A content's text when it is only text (a string or text parts), else None."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return "".join(str(p.get("text") or "") for p in content)
    return None


# ---- R1: roles ------------------------------------------------------------------------------------------


def system_roles(messages: list[dict], notes: list[str] | None = None) -> list[dict]:
    """`developer` becomes `system` (DashScope knows no developer role), and the system messages that open the
    conversation become one, so there is one leading system prompt to cache."""
    out: list[dict] = []
    if any(m.get("role") == "developer" for m in messages):
        note(notes, "developer messages sent as system (Qwen has no developer role)")
    for m in messages:
        if m.get("role") == "developer":
            m = {**m, "role": "system"}
        prev = out[-1] if out else None
        if m.get("role") == "system" and prev is not None and all(x.get("role") == "system" for x in out):
            a, b = _text(prev.get("content")), _text(m.get("content"))
            if a is not None and b is not None:
                out[-1] = {**prev, "content": _joined(prev["content"], m["content"], a)}
                continue
        out.append(m)
    return out


def _joined(a: str | list, b: str | list, a_text: str) -> str | list:
    """Two system prompts as one, a blank line between: as text parts when either carries a cache marker (the
    text the same either way)."""
    first = [{"type": "text", "text": a}] if isinstance(a, str) else list(a)
    rest = [{"type": "text", "text": b}] if isinstance(b, str) else list(b)
    if not any("cache_control" in p or "prompt_cache_breakpoint" in p for p in first + rest):
        return "\n\n".join(t for t in (a_text, _text(b)) if t)
    if a_text and rest:
        rest[0] = {**rest[0], "text": "\n\n" + str(rest[0].get("text") or "")}
    return first + rest


# ---- verbosity: DashScope has none ----------------------------------------------------------------------

VERBOSITY_HINTS = {"low": "Be concise: answer briefly, without elaboration.",
                   "high": "Be thorough: answer in detail, with full explanations."}


def verbosity_hint(messages: list[dict], verbosity: object, notes: list[str] | None = None) -> list[dict]:
    """OpenAI's `verbosity` (chat) / `text.verbosity` (Responses; Codex sends `low` on every turn) as one
    sentence at the end of the leading system prompt (a new one when there is none): DashScope takes no such
    field. `medium` is the model's default: nothing added. The same sentence every turn keeps the cache."""
    hint = VERBOSITY_HINTS.get(verbosity) if isinstance(verbosity, str) else None
    if hint is None:
        return messages
    note(notes, f"verbosity {verbosity} given to Qwen as a system hint")
    first = messages[0] if messages else None
    text = _text(first.get("content")) if first is not None and first.get("role") == "system" else None
    if first is not None and text is not None and isinstance(first["content"], list):  # its cache markers kept
        return [{**first, "content": [*first["content"], {"type": "text", "text": f"\n\n{hint}" if text else hint}]},
                *messages[1:]]
    if first is not None and text is not None:
        return [{**first, "content": f"{text}\n\n{hint}" if text else hint}, *messages[1:]]
    return [{"role": "system", "content": hint}, *messages]


# ---- R2, R3, R9: thinking ---------------------------------------------------------------------------------


def json_mode(body: dict) -> bool:
    rf = body.get("response_format")
    return isinstance(rf, dict) and rf.get("type") in ("json_object", "json_schema")


def forced_tool(body: dict) -> bool:
    choice = body.get("tool_choice")
    return bool(body.get("tools")) and (choice == "required" or isinstance(choice, dict))


def thinking_knobs(body: dict, effort: object = None, notes: list[str] | None = None, *,
                   learned: Mapping[str, Thinking] | None = None) -> dict:
    """Qwen's thinking fields for this model, from what the client asked (`enable_thinking`/`thinking_budget`
    as Qwen extras, or OpenAI's `reasoning_effort`), obeying the model's kind and Qwen's refusals:
    JSON mode and a forced tool choice both need thinking off (the client's explicit output contract wins
    over a quality knob); a thinking-only model never gets thinking off; an effort-native model gets
    `reasoning_effort` and never `thinking_budget` with it."""
    out = dict(body)
    model = str(out.get("model") or "")
    kind = thinking_kind(model, learned)
    explicit = out.pop("enable_thinking", None)
    explicit = explicit if isinstance(explicit, bool) else None
    budget = out.pop("thinking_budget", None)
    out.pop("reasoning_effort", None)
    effort = effort if isinstance(effort, str) else None
    asked = explicit if explicit is not None else (effort not in _OFF_EFFORTS if effort else None)
    if budget is None and explicit is None and effort:
        budget = EFFORT_BUDGET.get(effort)
    why = "JSON output (response_format)" if json_mode(out) else "a forced tool_choice" if forced_tool(out) else None

    if kind is Thinking.ONLY:
        if asked is False:
            note(notes, f"thinking stays on: {model} always thinks")
        if forced_tool(out):
            out["tool_choice"] = "auto"
            note(notes, f"forced tool_choice sent as auto: {model} always thinks and Qwen refuses a forced "
                        "tool choice in thinking mode")
        if budget is not None:
            out["thinking_budget"] = budget
        return out
    if why:
        out["enable_thinking"] = False
        if asked:
            note(notes, f"thinking off: Qwen refuses {why} in thinking mode")
        return out
    if kind is Thinking.EFFORT and effort and explicit is None:
        if effort in _OFF_EFFORTS:
            out["enable_thinking"] = False
            return out
        out["reasoning_effort"] = effort if effort in _NATIVE_EFFORTS else "high"
        if "thinking_budget" in body:
            note(notes, f"thinking_budget dropped: {model} takes reasoning_effort and refuses both")
        return out
    if asked is not None:
        out["enable_thinking"] = asked
    if budget is not None and asked is not False:
        out["thinking_budget"] = budget
    return out


# ---- R4: output caps ---------------------------------------------------------------------------------------


def clamp_output(body: dict, notes: list[str] | None = None) -> dict:
    """max_tokens within the model's cap (`max_completion_tokens` already renamed to it)."""
    value = body.get("max_tokens")
    cap = output_cap(str(body.get("model") or ""))
    if isinstance(value, int) and not isinstance(value, bool) and value > cap:
        note(notes, f"max_tokens {value} lowered to {cap}, {body.get('model')}'s output cap")
        return {**body, "max_tokens": cap}
    return body


# ---- R10: images -----------------------------------------------------------------------------------------


def has_image(messages: list[dict]) -> bool:
    """An image part in OpenAI's form (`image_url`), or an Anthropic `image` block (a plan's Anthropic base takes
    those, also inside a tool result)."""
    return any(isinstance(m, dict) and _images(m.get("content")) for m in messages)


def _images(content: object) -> bool:
    if not isinstance(content, list):
        return False
    return any(isinstance(p, dict) and (p.get("type") in ("image_url", "image") or
                                        (p.get("type") == "tool_result" and _images(p.get("content"))))
               for p in content)


def route_vision(body: dict, *, oauth: bool, default_model: str | None = None,
                 notes: list[str] | None = None) -> dict:
    """Images go to a model that can see them, with qwen-code's high-resolution flag."""
    if not has_image(body.get("messages") or []):
        return body
    model = str(body.get("model") or "")
    target = vision_model(model, oauth=oauth, default_model=default_model)
    if target != model:
        note(notes, f"images sent to {target}: {model} cannot read images")
    return {**body, "model": target, "vl_high_resolution_images": True}


# ---- qwen-code's request shape -----------------------------------------------------------------------------


def session_id(chat_body: dict) -> str:
    """One id per client session, as qwen-code sends in metadata.sessionId: from `prompt_cache_key`, else
    from the conversation's opening (system prompts and first user message), which every turn resends."""
    key = chat_body.get("prompt_cache_key")
    if isinstance(key, str) and key:
        return uuid5_text(("key:" + key).encode("utf-8", "surrogatepass"))  # as below
    opening = []
    for m in chat_body.get("messages") or []:
        if not isinstance(m, dict):
            continue
        role = "system" if m.get("role") == "developer" else m.get("role")
        opening.append([role, _text(m.get("content")) or _CONTENT.encode(m.get("content"))])
        if role == "user":
            break
    # surrogatepass: a lone surrogate (a client's "\\ud83d" escape) hashes as itself, never a 500
    text = _OPENING.encode([chat_body.get("model"), opening])
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return uuid5_text(b"conv:" + digest.encode())


def uuid5_text(name: bytes) -> str:
    """str(uuid.uuid5(_SESSION_NS, name)), without building the UUID object (half the time of a request's
    session id went there)."""
    raw = bytearray(hashlib.sha1(_SESSION_NS.bytes + name).digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x50  # version 5
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def qwen_code_shape(body: dict, *, session: str, notes: list[str] | None = None) -> dict:
    """What qwen-code adds on every DashScope host (OAuth and keys alike); its cache markers, with the client's
    own first: markers.py."""
    out = markers.place(body, notes)
    out["metadata"] = {"sessionId": session, "promptId": ids.hex_id(7)[:13]}
    out["preserve_thinking"] = True  # keep earlier turns' reasoning_content in the prompt (and its cache)
    if is_vision(str(out.get("model") or "")) and has_image(out["messages"]):
        out["vl_high_resolution_images"] = True
    return out

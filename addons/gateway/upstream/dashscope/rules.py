"""What DashScope refuses that OpenAI accepts, and the request shape qwen-code sends: pure functions.

Each function takes the Qwen-bound chat body and returns a new one that DashScope accepts (rules R1, R4,
R10 of dashscope-rules.md; the thinking knobs, R2, R3, R9, are knobs.py's), appending a short note to
`notes` whenever it changes something the client asked for, so the change shows on the flow. None of them
does I/O.
"""

from __future__ import annotations

import hashlib
import json
import uuid

from ... import ids
from ...exchange import note
from ...models import is_vision, output_cap, vision_model

EPHEMERAL = {"type": "ephemeral"}
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
                out[-1] = {**prev, "content": "\n\n".join(t for t in (a, b) if t)}
                continue
        out.append(m)
    return out


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
    if first is not None and text is not None:
        return [{**first, "content": f"{text}\n\n{hint}" if text else hint}, *messages[1:]]
    return [{"role": "system", "content": hint}, *messages]


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


def _mark(message: dict) -> dict:
    """The message with cache_control on its last content part (string content becomes one text part)."""
    content = message.get("content")
    if isinstance(content, str) and content:
        return {**message, "content": [{"type": "text", "text": content, "cache_control": EPHEMERAL}]}
    if isinstance(content, list) and content and isinstance(content[-1], dict):
        return {**message, "content": [*content[:-1], {**content[-1], "cache_control": EPHEMERAL}]}
    return message


def cache_control(body: dict, *, stream: bool) -> dict:
    """qwen-code's explicit prompt caching: the system prompt always; when streaming (long agent sessions)
    also the last message and the last tool, so the next turn reads the whole prefix from the cache."""
    messages = list(body.get("messages") or [])
    first_system = next((i for i, m in enumerate(messages) if m.get("role") == "system"), None)
    if first_system is not None:
        messages[first_system] = _mark(messages[first_system])
    out = {**body, "messages": messages}
    if stream and messages:
        messages[-1] = _mark(messages[-1])
        tools = body.get("tools")
        if isinstance(tools, list) and tools and isinstance(tools[-1], dict):
            out["tools"] = [*tools[:-1], {**tools[-1], "cache_control": EPHEMERAL}]
    return out


def qwen_code_shape(body: dict, *, session: str, stream: bool) -> dict:
    """What qwen-code adds on every DashScope host (OAuth and keys alike)."""
    out = cache_control(body, stream=stream)
    out["metadata"] = {"sessionId": session, "promptId": ids.hex_id(7)[:13]}
    out["preserve_thinking"] = True  # keep earlier turns' reasoning_content in the prompt (and its cache)
    if is_vision(str(out.get("model") or "")) and has_image(out["messages"]):
        out["vl_high_resolution_images"] = True
    return out

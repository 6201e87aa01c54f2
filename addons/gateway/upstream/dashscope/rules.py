"""What DashScope refuses that OpenAI accepts, and the request shape qwen-code sends: pure functions.

Each function takes the Qwen-bound chat body and returns a new one that DashScope accepts (rules R1, R4,
R10 of dashscope-rules.md; the thinking knobs, R2, R3, R9, are knobs.py's), appending a short note to
`notes` whenever it changes something the client asked for, so the change shows on the flow. None of them
does I/O.
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from typing import TYPE_CHECKING

from ... import ids, jsonio
from ...exchange import note
from ...models.model_map import is_vision, output_cap, preserves_thinking
from ...models.routes import contents, has_image
from ...models.learned import OUTPUT
from . import markers

if TYPE_CHECKING:
    from ...models.learned import LearnedFacts

_SESSION_NS = uuid.UUID("5b7c2f0e-8a1d-4c3e-9f61-2d4a8e0c7b19")  # this gateway's namespace for session ids
# json.dumps(..., ensure_ascii=False) and json.dumps(..., sort_keys=True), their encoders built once
_OPENING = jsonio.Encoder(ensure_ascii=False)
_CONTENT = jsonio.Encoder(sort_keys=True)


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
    roles = [m.get("role") for m in messages]
    developer = "developer" in roles
    if developer:
        note(notes, "developer messages sent as system (Qwen has no developer role)")
    i = 0
    for i, role in enumerate(roles):  # the opening run of system prompts: joined where both are text
        if role != "system" and role != "developer":
            break
        m = messages[i] if role == "system" else {**messages[i], "role": "system"}
        if out:
            prev = out[-1]
            a, b = _text(prev.get("content")), _text(m.get("content"))
            if a is not None and b is not None:
                out[-1] = {**prev, "content": _joined(prev["content"], m["content"], a)}
                continue
        out.append(m)
    else:
        return out
    if not developer:  # past the opening run only the role changes: a conversation without one is kept whole
        return out + messages[i:]
    return out + [{**m, "role": "system"} if role == "developer" else m for m, role in zip(messages[i:], roles[i:])]


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


# ---- R4: output caps ---------------------------------------------------------------------------------------


def clamp_output(body: dict, notes: list[str] | None = None, *, field: str = "max_completion_tokens",
                 learned: LearnedFacts | None = None) -> dict:
    """The output cap (`field`) within the model's largest, as Qwen's 400 taught it (`learned`, while it holds)
    or a source dated after the model gives it; a model neither knows keeps the client's cap as asked: nothing
    is invented. The note says where the cap came from."""
    value = body.get(field)
    if not isinstance(value, int) or isinstance(value, bool):
        return body
    model = str(body.get("model") or "")
    taught = learned.get(model, OUTPUT) if learned is not None else None
    cap = taught.value if taught is not None else output_cap(model)
    if cap is not None and value > cap:
        why = taught.said() if taught is not None else "the catalogue's"
        note(notes, f"{field} {value} lowered to {cap}, {model}'s output cap ({why})")
        return {**body, field: cap}
    return body


# ---- R10: images -----------------------------------------------------------------------------------------


def has_parts(messages: list[dict]) -> bool:
    """Whether some message's content is a list of parts: images, markers and tool results come in those only."""
    return list in map(type, contents(messages))


# Which model reads them is the request's route (qwen_routes: models/routes.py, the engine), not a rule here.


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
        opening.append([role, _text(m.get("content")) or _CONTENT(m.get("content"))])
        if role == "user":
            break
    return _conversation_id(_OPENING([chat_body.get("model"), opening]))


# Every turn of a conversation resends its opening: its id is hashed once (~26k instructions a request, 40 % of a
# "ping"'s translation) and read back after. Bounded: an opening is a system prompt of a few to some 60 kB.
@functools.lru_cache(maxsize=128)
def _conversation_id(text: str) -> str:
    # surrogatepass: a lone surrogate (a client's "\\ud83d" escape) hashes as itself, never a 500
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


def qwen_code_shape(body: dict, *, session: str, oauth: bool = True, notes: list[str] | None = None) -> dict:
    """What qwen-code adds on every DashScope host (OAuth and keys alike); its cache markers, with the client's
    own first: markers.py. `preserve_thinking` (earlier turns' reasoning kept in the prompt and its cache) goes
    to the models the catalogue says keep it, and always on OAuth, as qwen-code sends it."""
    out = markers.place(body, notes)
    out["metadata"] = {"sessionId": session, "promptId": ids.hex_id(7)[:13]}
    model = str(out.get("model") or "")
    if oauth or preserves_thinking(model):
        out["preserve_thinking"] = True
    if is_vision(model) and has_image(out["messages"]):
        out["vl_high_resolution_images"] = True
    return out

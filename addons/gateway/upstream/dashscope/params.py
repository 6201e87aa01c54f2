"""More of DashScope's rules for the chat body, each a pure function like rules.py's: whole answers from
stream-only models, sampling ranges, images in tool messages. Each notes what it changed for the client.
"""

from __future__ import annotations

from collections.abc import Collection

from ...exchange import note
from ...models.model_map import stream_only

# DashScope's ranges: temperature [0, 2), top_p (0, 1] ("Range of temperature should be [0.0, 2.0)",
# "Range of top_p should be (0.0, 1.0]"); OpenAI's are [0, 2] and [0, 1].
TEMPERATURE_MAX = 1.99
TOP_P_MIN = 0.0001  # a nucleus of the likeliest token only, which is what top_p 0 asks


# ---- stream-only models -----------------------------------------------------------------------------


def stream_whole(body: dict, notes: list[str] | None = None, *, learned: Collection[str] = ()) -> dict:
    """A whole answer from a model that answers streams only: asked as a stream (usage included), which
    `turn.whole.translated` assembles into one chat completion through the same chunk normaliser."""
    model = str(body.get("model") or "")
    if body.get("stream") or not stream_only(model, learned):
        return body
    note(notes, f"streamed from Qwen and assembled into one answer: {model} answers streams only")
    return {**body, "stream": True, "stream_options": {"include_usage": True}}


# ---- sampling ranges ----------------------------------------------------------------------------------


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def sampling_ranges(body: dict, notes: list[str] | None = None) -> dict:
    """`temperature` and `top_p` within DashScope's ranges (OpenAI's allow 2 and 0, DashScope refuses them)."""
    out = body
    temperature, top_p = _number(body.get("temperature")), _number(body.get("top_p"))
    if temperature is not None and not 0 <= temperature < 2:
        clamped = min(max(temperature, 0.0), TEMPERATURE_MAX)
        note(notes, f"temperature {body['temperature']} sent as {clamped:g} (Qwen's range is [0, 2))")
        out = {**out, "temperature": clamped}
    if top_p is not None and not 0 < top_p <= 1:
        clamped = TOP_P_MIN if top_p <= 0 else 1.0
        note(notes, f"top_p {body['top_p']} sent as {clamped:g} (Qwen's range is (0, 1])")
        out = {**out, "top_p": clamped}
    return out


# ---- images in tool messages --------------------------------------------------------------------------


def _is_image(part: object) -> bool:
    return isinstance(part, dict) and part.get("type") == "image_url"


def tool_images(messages: list[dict], notes: list[str] | None = None) -> list[dict]:
    """DashScope reads a tool message's content as text: images a tool returned go in a user message right
    after the run of tool messages (the text stays in the tool message), so the vision model sees them."""
    if not any(m.get("role") == "tool" and isinstance(m.get("content"), list) and any(map(_is_image, m["content"]))
               for m in messages):
        return messages
    note(notes, "images in tool messages sent in a user message after them (Qwen reads tool results as text)")
    out: list[dict] = []
    waiting: list[dict] = []
    for m in messages:
        if m.get("role") != "tool" and waiting:
            out.append(_images_message(waiting))
            waiting = []
        content = m.get("content")
        if m.get("role") == "tool" and isinstance(content, list) and any(map(_is_image, content)):
            images = [p for p in content if _is_image(p)]
            text = "".join(str(p.get("text") or "") for p in content if isinstance(p, dict) and p.get("type") == "text")
            m = {**m, "content": text or "(the tool returned the image below)"}
            waiting += images
        out.append(m)
    if waiting:
        out.append(_images_message(waiting))
    return out


def _images_message(images: list[dict]) -> dict:
    what = "this image:" if len(images) == 1 else f"these {len(images)} images:"
    return {"role": "user", "content": [{"type": "text", "text": f"The tool call above returned {what}"}, *images]}

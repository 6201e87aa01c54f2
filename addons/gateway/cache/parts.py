"""A message's content parts as Qwen's cache reads them (prints.py): their text joined, their images apart, cache
markers (`cache_control`, `prompt_cache_breakpoint`: the core's cache_markers.py) no part of them, and whether a
marker asks Qwen4's hour."""

from __future__ import annotations

from ..cache_markers import MARKERS

IMAGES = frozenset(("image_url", "input_image", "image", "video", "video_url", "input_audio", "document"))
TEXTS = frozenset(("text", "input_text", "output_text"))


def asks_hour(holder: dict) -> bool:
    """A marker (`cache_control` or `prompt_cache_breakpoint`) on this part, tool or body that asks an hour."""
    marker = holder.get("cache_control")
    if marker.__class__ is dict and marker.get("ttl") == "1h":
        return True
    marker = holder.get("prompt_cache_breakpoint")
    return marker.__class__ is dict and marker.get("ttl") == "1h"


def strip(part: object) -> object:
    """A part, a tool or a message without its cache markers."""
    if isinstance(part, dict) and not MARKERS.isdisjoint(part):
        return {k: v for k, v in part.items() if k not in MARKERS}
    return part


def canonical_content(content: object) -> tuple[object, list | None]:
    """A message's content as Qwen reads it: its text parts joined (a string and a one-part list are the same),
    other parts without their markers; its images apart (None: none)."""
    if content.__class__ is not list:
        return content, None
    texts: list[str] = []
    images: list | None = None
    other = False
    for p in content:
        kind = p.get("type") if p.__class__ is dict else None
        if kind in TEXTS and p.get("text").__class__ is str:
            texts.append(p["text"])
        elif kind in IMAGES:
            (images := images if images is not None else []).append(strip(p))
        else:
            other = True
    if not other:
        return "".join(texts), images
    parts = []
    for p in content:
        if p.__class__ is dict and p.get("type") in IMAGES:
            continue
        p = strip(p)
        if p.__class__ is dict and p.get("type") == "tool_result":  # Anthropic's: its content is a message's
            p = {**p, "content": canonical_content(p.get("content"))[0]}
        parts.append(p)
    return parts, images

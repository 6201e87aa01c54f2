"""Anthropic content blocks -> chat messages: a user turn becomes its tool results (one `tool` message each,
first, right after the assistant's calls) and then its own text and images; an assistant turn becomes one
assistant message with its text, its tool calls and its verified thinking as `reasoning_content`.

Qwen reads images in user messages only: images a tool returned follow its results in a user message that
says so. Documents: plain text (and text blocks) are read as text; a PDF or any other file is refused with a
400, since Qwen's chat models cannot read it.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from ...exchange import note
from .shape import bad, cache_control
from .thinking import FOREIGN, OURS

_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")


def marked(part: dict, block: dict, where: str) -> dict:
    """`part` with the client's `cache_control` from `block`, as Anthropic takes one (type `ephemeral`, an
    optional ttl: shape.py): Qwen's cache reads it (upstream/dashscope/markers.py)."""
    if block.get("cache_control") is None:
        return part
    marker = cache_control(block["cache_control"], f"{where}.cache_control")
    return {**part, "cache_control": {k: v for k, v in marker.items() if k in ("type", "ttl")}}


def _text(block: dict, where: str) -> str:
    """A text block's text: Anthropic refuses a text block without one (null included)."""
    if not isinstance(block.get("text"), str):
        raise bad(f"{where}.text: Input should be a valid string", f"{where}.text")
    return block["text"]


def _blocks(content: object, where: str) -> list[dict]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise bad(f"{where}: Input should be a valid string or a list of content blocks", where)
    for j, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise bad(f"{where}.{j}: a content block needs a type", f"{where}.{j}")
    return content


def image_part(block: dict, where: str) -> dict:
    source = block.get("source")
    if not isinstance(source, dict):
        raise bad(f"{where}.source: Field required", f"{where}.source")
    if source.get("type") == "base64":
        media, data = source.get("media_type"), source.get("data")
        if media not in _IMAGE_TYPES or not isinstance(data, str) or not data:
            raise bad(f"{where}.source: a base64 image needs media_type (one of {', '.join(_IMAGE_TYPES)}) "
                       "and data", f"{where}.source")
        return {"type": "image_url", "image_url": {"url": f"data:{media};base64,{data}"}}
    if source.get("type") == "url" and isinstance(source.get("url"), str):
        return {"type": "image_url", "image_url": {"url": source["url"]}}
    raise bad(f"{where}.source.type: images are given as base64 or url (file ids are not supported)",
               f"{where}.source.type")


def document_text(block: dict, where: str) -> str:
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    title = block.get("title")
    head = f"{title}\n\n" if isinstance(title, str) and title else ""
    if kind == "text" and isinstance(source, dict) and isinstance(source.get("data"), str):
        return head + source["data"]
    if kind == "content" and isinstance(source, dict):
        parts = _blocks(source.get("content"), f"{where}.source.content")
        return head + "\n\n".join(_text(p, f"{where}.source.content.{j}") for j, p in enumerate(parts)
                                     if p.get("type") == "text")
    media = source.get("media_type") if isinstance(source, dict) else None
    raise bad(f"{where}: a {media or kind or 'file'} document cannot be read by Qwen's chat models: send its text "
               "as a text document or a text block", f"{where}.source")


def _tool_result(block: dict, where: str) -> tuple[str, list[dict]]:
    """(text, images) of a tool_result; an error result says so in its text."""
    if not isinstance(block.get("tool_use_id"), str):
        raise bad(f"{where}.tool_use_id: Field required", f"{where}.tool_use_id")
    content = block.get("content")
    texts, images = [], []
    for j, part in enumerate(_blocks(content, f"{where}.content") if content is not None else []):
        if part["type"] == "text":
            texts.append(_text(part, f"{where}.content.{j}"))
        elif part["type"] == "image":
            images.append(image_part(part, f"{where}.content.{j}"))
        elif part["type"] == "document":
            texts.append(document_text(part, f"{where}.content.{j}"))
        else:
            raise bad(f"{where}.content.{j}.type: {part['type']!r} is not supported in a tool result",
                       f"{where}.content.{j}.type")
    text = "\n".join(texts)
    if block.get("is_error") is True:
        text = f"Error: {text}" if text else "Error."
    return text, images


def user_messages(content: object, where: str, notes: list[str]) -> list[dict]:
    tools: list[dict] = []
    tool_images: list[dict] = []
    parts: list[dict] = []
    for j, block in enumerate(_blocks(content, f"{where}.content")):
        at, kind = f"{where}.content.{j}", block["type"]
        if kind == "text":
            parts.append(marked({"type": "text", "text": _text(block, at)}, block, at))
        elif kind == "image":
            parts.append(marked(image_part(block, at), block, at))
        elif kind == "document":
            parts.append(marked({"type": "text", "text": document_text(block, at)}, block, at))
        elif kind == "tool_result":
            text, images = _tool_result(block, at)
            text = text or ("(the tool returned the image below)" if images else "")
            result = marked({"type": "text", "text": text}, _inner_marker(block), at)
            tools.append({"role": "tool", "tool_call_id": block["tool_use_id"],
                          "content": [result] if "cache_control" in result else text})
            tool_images += images
        else:
            raise bad(f"{at}.type: {kind!r} blocks are not accepted in a user message", f"{at}.type")
    out = list(tools)
    if tool_images:
        out.append({"role": "user", "content": [
            {"type": "text", "text": "The tool call above returned "
                                     + ("this image:" if len(tool_images) == 1 else f"these {len(tool_images)} images:")},
            *tool_images]})
    if parts:
        plain = len(parts) == 1 and parts[0]["type"] == "text" and "cache_control" not in parts[0]
        out.append({"role": "user", "content": parts[0]["text"] if plain else parts})
    return out


def _inner_marker(block: dict) -> dict:
    """A tool_result's marker: on the block, or on a block inside its content (Anthropic takes both)."""
    if "cache_control" in block or not isinstance(block.get("content"), list):
        return block
    return next((b for b in block["content"] if isinstance(b, dict) and "cache_control" in b), block)


def assistant_message(content: object, where: str, notes: list[str],
                      verify: Callable[[str, str], str]) -> dict:
    text: list[dict] = []
    reasoning, calls = [], []
    marker = None  # a marker on a tool_use: Qwen's are on content parts, so it goes on the turn's text
    for j, block in enumerate(_blocks(content, f"{where}.content")):
        at, kind = f"{where}.content.{j}", block["type"]
        if kind == "text":
            text.append(marked({"type": "text", "text": _text(block, at)}, block, at))
        elif kind == "tool_use":
            marker = marked({}, block, at).get("cache_control", marker)
            if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                raise bad(f"{at}: a tool_use block needs an id and a name", at)
            if not isinstance(block.get("input"), dict):
                raise bad(f"{at}.input: Input should be a valid dictionary", f"{at}.input")
            arguments = json.dumps(block["input"], ensure_ascii=False)
            calls.append({"id": block["id"], "type": "function",
                          "function": {"name": block["name"], "arguments": arguments}})
        elif kind == "thinking":
            thought, signature = block.get("thinking"), block.get("signature")
            if not isinstance(thought, str) or not isinstance(signature, str):
                raise bad(f"{at}: a thinking block needs its thinking and signature", at)
            verdict = verify(thought, signature)
            if verdict == FOREIGN:  # another gateway's, or Anthropic's (a session resumed here): unreadable
                note(notes, "thinking blocks signed elsewhere dropped (another gateway or Anthropic signed them)")
                continue
            if verdict != OURS:
                raise bad(f"{at}.signature: Invalid `signature` in `thinking` block", f"{at}.signature")
            reasoning.append(thought)
        elif kind == "redacted_thinking":
            note(notes, "redacted_thinking blocks left out (Qwen cannot read them)")
        else:
            raise bad(f"{at}.type: {kind!r} blocks are not accepted in an assistant message", f"{at}.type")
    if marker is not None and text:
        text[-1] = {"cache_control": marker, **text[-1]}
    elif marker is not None:
        note(notes, "cache_control on an assistant turn without text left out (Qwen marks content parts)")
    joined = "".join(p["text"] for p in text)
    if any("cache_control" in p for p in text):  # text parts: the marker stays where the client put it
        message: dict = {"role": "assistant", "content": text}
    else:
        message = {"role": "assistant", "content": joined if text or not calls else None}
    if calls:
        message["tool_calls"] = calls
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    return message

"""Chat messages out of Responses content: content parts, tool outputs, and the `ChatMessages` that puts
the messages together the way OpenAI's chat format needs them.

Qwen reads text and images: text parts of every kind become text, images become image_url parts, files
and audio are dropped with a note; any other part is a 400 naming it. What was dropped or changed is
written to the request's `notes`, each note once.
"""

from __future__ import annotations

import json

from ...errors import GatewayError
from ...exchange import note
from .tools import FUNCTION

_TEXT_PARTS = ("input_text", "output_text", "text", "refusal", "summary_text", "reasoning_text")
_DROPPED_PARTS = ("input_file", "input_audio", "audio", "file")


def _image_part(p: dict, where: str) -> dict:
    url = p.get("image_url")
    url = url.get("url") if isinstance(url, dict) else url
    if not isinstance(url, str) or not url:
        raise GatewayError(400, "input_image needs an image_url (file_id is not supported by Qwen).",
                           param=f"{where}.image_url", code="unsupported_value")
    detail = p.get("detail") if p.get("detail") in ("auto", "low", "high", "original") else "auto"
    return {"type": "image_url", "image_url": {"url": url, "detail": detail}}


def _parts(content: list, where: str, notes: list[str]) -> list[dict]:
    parts: list[dict] = []
    for j, p in enumerate(content):
        if not isinstance(p, dict):
            raise GatewayError(400, f"{where}[{j}] must be an object.", param=f"{where}[{j}]", code="invalid_type")
        kind = p.get("type")
        if kind in _TEXT_PARTS:
            text = p.get("text") if kind != "refusal" else p.get("refusal")
            parts.append(_breakpoint({"type": "text", "text": text if isinstance(text, str) else str(text or "")}, p))
        elif kind in ("input_image", "image"):
            parts.append(_breakpoint(_image_part(p, f"{where}[{j}]"), p))
        elif kind in _DROPPED_PARTS:
            note(notes, f"{kind} content parts dropped (Qwen reads text and images only)")
        else:
            raise GatewayError(400, f"Content part type {kind!r} is not supported by Qwen.",
                               param=f"{where}[{j}].type", code="unsupported_value")
    return parts


def _breakpoint(part: dict, p: dict) -> dict:
    """The client's explicit cache breakpoint, kept on the chat part (Qwen's cache marker: dashscope/markers.py)."""
    mark = p.get("prompt_cache_breakpoint")
    return {**part, "prompt_cache_breakpoint": mark} if isinstance(mark, dict) else part


def message_content(content: object, where: str, notes: list[str]) -> str | list:
    """A message's content in chat form: a string, or parts when there are images or cache breakpoints."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise GatewayError(400, f"{where}.content must be a string or an array of content parts.",
                           param=f"{where}.content", code="invalid_type")
    parts = _parts(content, f"{where}.content", notes)
    if all(p["type"] == "text" and "prompt_cache_breakpoint" not in p for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def tool_output(output: object, where: str, notes: list[str]) -> tuple[str, list[dict]]:
    """A tool output as (text for the tool message, image parts for the vision model)."""
    if isinstance(output, str):
        return output, []
    if isinstance(output, list):
        parts = _parts(output, f"{where}.output", notes)
        text = "\n".join(p["text"] for p in parts if p["type"] == "text")
        return text, [p for p in parts if p["type"] == "image_url"]
    if output is None:
        return "", []
    return json.dumps(output, ensure_ascii=False), []


def shell_output_text(output: object) -> str:
    """shell_call_output's [{stdout, stderr, outcome}] as text."""
    if isinstance(output, str):
        return output
    chunks = []
    for o in output if isinstance(output, list) else []:
        if not isinstance(o, dict):
            continue
        for key in ("stdout", "stderr"):
            if isinstance(o.get(key), str) and o[key]:
                chunks.append(o[key] if key == "stdout" else f"[stderr]\n{o[key]}")
        outcome = o.get("outcome")
        if isinstance(outcome, dict):
            chunks.append(f"[{outcome.get('type', 'exit')}"
                          + (f" {outcome['exit_code']}" if "exit_code" in outcome else "") + "]")
    return "\n".join(chunks)


class ChatMessages:
    """Chat messages built item by item, keeping what OpenAI's chat format needs: tool calls grouped in one
    assistant message, tool messages right after it, images a tool returned in a user message after them,
    and reasoning the gateway sealed on the assistant message it belongs to."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.images: list[dict] = []  # image parts from tool outputs, waiting for the tool messages to end
        self.reasoning: str | None = None
        self.call_ids: set[str] = set()  # every call so far: what a tool output may answer

    def adopt(self, messages: list[dict]) -> None:
        """Chat messages as they are (an older gateway's stored history), their calls known."""
        self.messages += messages
        self.call_ids.update(str(c.get("id")) for m in messages for c in m.get("tool_calls") or []
                             if isinstance(c, dict))

    def has_call(self, call_id: str) -> bool:
        return call_id in self.call_ids

    def add(self, msg: dict) -> None:
        if msg["role"] != "tool":
            self.flush_images()
        if msg["role"] == "assistant" and self.reasoning is not None:
            msg["reasoning_content"], self.reasoning = self.reasoning, None
        self.messages.append(msg)

    def call(self, call_id: str, name: str, arguments: str) -> None:
        call = {"id": call_id, "type": FUNCTION, "function": {"name": name, "arguments": arguments}}
        self.call_ids.add(call_id)
        last = self.messages[-1] if self.messages else None
        if last and last["role"] == "assistant" and not self.images and (
                last.get("tool_calls") or not last.get("content")):
            last.setdefault("tool_calls", []).append(call)
            if self.reasoning is not None and not last.get("reasoning_content"):
                last["reasoning_content"], self.reasoning = self.reasoning, None
        else:
            self.add({"role": "assistant", "content": None, "tool_calls": [call]})

    def tool(self, call_id: str, text: str, images: list[dict]) -> None:
        self.add({"role": "tool", "tool_call_id": call_id,
                  "content": text or ("(the tool returned the image below)" if images else "")})
        self.images += images

    def flush_images(self) -> None:
        if self.images:
            images, self.images = self.images, []
            self.messages.append({"role": "user", "content": [
                {"type": "text", "text": "The tool call above returned "
                                         + ("this image:" if len(images) == 1 else f"these {len(images)} images:")},
                *images]})

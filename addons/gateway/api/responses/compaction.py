"""Compaction: a long conversation summarised by one upstream call, and the sealed item that stands for it.

A request whose input ends with a `compaction_trigger` (or a POST /v1/responses/compact) is translated
into `compaction_chat`: no tools, one system prompt, the conversation as a plain-text `transcript`. The
answer becomes one `compaction` item whose encrypted_content is the summary, sealed (seal.py); when a
later request carries it back, the way in gives Qwen the summary (SUMMARY_PREFIX + text) instead.
"""

from __future__ import annotations

from collections.abc import Callable

from .items import new_id
from .shapes import CompactionItem

COMPACTION_PROMPT = (
    "You are compacting a long conversation between a user and an AI coding assistant so that the assistant "
    "can continue the work with a much shorter context. Write a handoff summary for the assistant that will "
    "continue. Keep: the user's goals and constraints (quote exact requirements), decisions made and why, "
    "the current state of the work (files created or changed, commands run and their important results, "
    "errors met and how they were solved), what remains to be done and the immediate next step. Keep exact "
    "names, paths, identifiers and values. Leave out pleasantries and anything no longer relevant. Write the "
    "summary only, in the language of the conversation.")
SUMMARY_PREFIX = "Summary of the earlier conversation (compacted):\n\n"

# What of a long piece the summariser reads (head, tail): the summarisation call must fit the context that is
# being compacted, and command outputs and file dumps are what fills it. User messages are kept whole.
TRANSCRIPT_CUTS = {"tool": (2000, 1000), "assistant": (4000, 2000), "arguments": (1500, 500)}


def _cut(text: str, kind: str) -> str:
    head, tail = TRANSCRIPT_CUTS[kind]
    if len(text) <= head + tail + 200:
        return text
    return f"{text[:head]}\n[… {len(text) - head - tail:,} characters left out …]\n{text[-tail:]}"


def transcript(messages: list[dict]) -> str:
    """The conversation as plain text for the summarisation call (no tool-call structure to break): user
    messages whole, long tool results, answers and arguments cut to their beginning and end; system and
    developer messages left out (the client keeps sending them after a compaction)."""
    lines = []
    for m in messages:
        role = m.get("role")
        if role in ("system", "developer"):
            continue
        content = m.get("content")
        if isinstance(content, list):
            content = "\n".join(p.get("text", "") if p.get("type") == "text" else "[image]" for p in content
                                if isinstance(p, dict))
        text = content if isinstance(content, str) else ""
        if role == "tool":
            lines.append(f"[tool result {m.get('tool_call_id', '')}]\n{_cut(text, 'tool')}")
            continue
        if text:
            lines.append(f"[{role}]\n{_cut(text, 'assistant') if role == 'assistant' else text}")
        for c in m.get("tool_calls") or []:
            fn = c.get("function") or {}
            lines.append(f"[{role} called {fn.get('name')} ({c.get('id')})]\n"
                         f"{_cut(str(fn.get('arguments', '')), 'arguments')}")
    return "\n\n".join(lines)


def compaction_chat(body: dict, messages: list[dict]) -> dict:
    """The one upstream call that summarises the conversation (no tools: Qwen writes text)."""
    chat = {"model": body.get("model") or "", "stream": bool(body.get("stream")), "messages": [
        {"role": "system", "content": COMPACTION_PROMPT},
        {"role": "user", "content": "The conversation to summarise:\n\n" + transcript(messages)
                                    + "\n\nWrite the handoff summary now."}]}
    if body.get("prompt_cache_key") is not None:
        chat["prompt_cache_key"] = body["prompt_cache_key"]
    return chat


def compaction_item(summary: str, seal: Callable[[str, dict], str], model: str = "") -> CompactionItem:
    return {"type": "compaction", "id": new_id("cmp"),
            "encrypted_content": seal("compaction", {"summary": summary, "model": model})}

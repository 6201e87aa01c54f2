"""vLLM and SGLang modes: what the Qwen3.5/3.6/3.8 chat template (`--chat-template qwen3.6`, `qwen3.8`) refuses while it
renders a request, in its own `raise_exception` words. The server answers a jinja2 TemplateError as a 400
`BadRequestError` whose message is the template's text (vLLM's create_error_response; SGLang's flat error).

Sources: the template's guards as users met them on vLLM — "System message must be at the beginning." (vLLM's
Codex guide `docs/serving/integrations/codex.md`, citing vLLM #41114: merge all system text into one leading
message), `Unexpected message role.` for a `developer` message (Codex CLI against vLLM 0.19 with Qwen3.8: only
system, user, assistant and tool are rendered; Unsloth's GGUF templates, not the canonical one, accept `developer`),
"No user query found in messages." (the template looks for the last user query before it renders anything).
The canonical template opens the reasoning in the prompt (`<|im_start|>assistant\\n<think>\\n`): the model's text
starts inside it, and a server without a reasoning parser shows `…</think>` in the content.
"""

from __future__ import annotations

TEMPLATES = tuple("qwen3.6 qwen3.8".split())  # --chat-template values (template names, not model ids)
ROLES = ("system", "user", "assistant", "tool")


def refusal(messages: list) -> str | None:
    """The template's error for these messages, or None when it renders them."""
    msgs = [m for m in messages if isinstance(m, dict)]
    if not msgs:
        return "No messages provided."
    if not any(m.get("role") == "user" for m in msgs):
        return "No user query found in messages."
    for i, m in enumerate(msgs):
        if m.get("role") == "system" and i > 0:
            return "System message must be at the beginning."
        if m.get("role") not in ROLES:
            return "Unexpected message role."
    return None

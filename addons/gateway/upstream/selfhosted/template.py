"""What a Qwen chat template served by vLLM or SGLang needs of a request (../shared/docs/selfhosted-servers.md):
- Qwen3.6 and later refuse a system message anywhere but first (HTTP 400 `System message must be at the
  beginning.`, vLLM #41114; vLLM's own Codex guide: merge all system text into one leading block in the proxy) —
  Codex sends its `instructions` and a `developer` item, two system messages;
- their model card asks `preserve_thinking` for agents (without it tool loops degrade to empty `{}` arguments after a
  few turns: earendil-works/pi #3325);
- a thinking budget is the server's own knob: vLLM's `thinking_token_budget` per request (`--reasoning-config`),
  SGLang's template kwarg `thinking_budget`.
Which rules a model's template has is read from its name (the Qwen family and version in the served id), or from
the server's own refusal (`SYSTEM_FIRST`, learned: models/learned.py)."""

from __future__ import annotations

import functools
import re

from ...exchange import note

SYSTEM_FIRST = "System message must be at the beginning"
PRESERVE = "preserve_thinking"
_FAMILY = re.compile(r"qwen(\d+)(?:\.(\d+))?", re.I)
SYSTEM_FIRST_FROM = (3, 6)  # Qwen3.6's template is the first to refuse a late system message
VLLM, SGLANG = "vllm", "sglang"  # what each server says it is (`owned_by` on its model list)


@functools.lru_cache(maxsize=256)
def family(model: str) -> tuple[int, int] | None:
    """The Qwen version in a served id (`Qwen/Qwen3.6-27B` → (3, 6), `qwen3-8b` → (3, 0)); None: not a Qwen name."""
    found = _FAMILY.search(model.rsplit("/", 1)[-1])
    return (int(found[1]), int(found[2] or 0)) if found else None


def system_first(model: str, learned: object = None) -> bool:
    """Whether the model's template takes system text only as the first message: by its name, or a refusal said so."""
    taught = getattr(learned, "system_first", None)
    if isinstance(taught, (set, frozenset)) and model in taught:
        return True
    version = family(model)
    return version is not None and version >= SYSTEM_FIRST_FROM


def keeps_thinking(model: str) -> bool:
    """Whether the model card asks `preserve_thinking` for agents (Qwen3.6 and later)."""
    version = family(model)
    return version is not None and version >= SYSTEM_FIRST_FROM


def agent(body: dict) -> bool:
    """An agent's request: it offers tools or carries a tool loop."""
    if body.get("tools"):
        return True
    messages = body.get("messages")
    return isinstance(messages, list) and any(isinstance(m, dict) and (m.get("role") == "tool" or m.get("tool_calls"))
                                              for m in messages)


def _text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def one_system(messages: list, notes: list[str]) -> list:
    """Every system and developer message's text as one leading system message, in their order; the others' order
    kept. Unchanged when there is at most one, and it leads."""
    leading = [i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") in ("system", "developer")]
    if not leading or leading == [0] and messages[0].get("role") == "system":
        return messages
    text = "\n\n".join(t for t in (_text(messages[i].get("content")) for i in leading) if t)
    keep = set(leading)
    note(notes, f"{len(leading)} system/developer message(s) sent as one leading system message: the model's chat "
                "template takes system text only at the beginning")
    return [{"role": "system", "content": text}, *(m for i, m in enumerate(messages) if i not in keep)]


def no_developer(messages: list, notes: list[str]) -> list:
    """`developer` messages as `system` ones, where they are: Qwen's chat templates know no developer role (Qwen3.6's
    refuses it: `Unexpected message role.`)."""
    if not any(isinstance(m, dict) and m.get("role") == "developer" for m in messages):
        return messages
    note(notes, "developer messages sent as system messages: Qwen's chat templates have no developer role")
    return [{**m, "role": "system"} if isinstance(m, dict) and m.get("role") == "developer" else m for m in messages]


VLLM_BUDGET_FROM = (0, 15)  # the first 2026 vLLM releases: `thinking_token_budget` (vLLM's reasoning_outputs docs)


def release(version: str) -> tuple[int, int] | None:
    found = re.match(r"(\d+)\.(\d+)", version)
    return (int(found[1]), int(found[2])) if found else None


def thinking_budget(body: dict, budget: int, server: str, notes: list[str], version: str = "") -> dict:
    """The thinking budget in the server's own form, below the output cap sent; said on the flow when the server's
    kind is not known (its list not read yet), or its release takes none, and nothing is sent."""
    cap = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(cap, int) and budget >= cap:
        note(notes, f"thinking budget {budget} lowered to {cap - 1}: below the output cap sent")
        budget = cap - 1
    if budget < 1:
        return body
    if server == VLLM and ((found := release(version)) is None or found < VLLM_BUDGET_FROM):
        note(notes, f"thinking budget {budget} not sent: vLLM {version or '(release not said)'} takes none before "
                    f"{'.'.join(map(str, VLLM_BUDGET_FROM))}: thinking runs to the output cap")
        return body
    if server == VLLM:
        note(notes, f"thinking budget {budget} sent as vLLM's thinking_token_budget (the server needs "
                    "--reasoning-config for it)")
        return {**body, "thinking_token_budget": budget}
    if server == SGLANG:
        kwargs = body.get("chat_template_kwargs")
        note(notes, f"thinking budget {budget} sent as SGLang's chat_template_kwargs.thinking_budget")
        return {**body, "chat_template_kwargs": {**(kwargs if isinstance(kwargs, dict) else {}),
                                                 "thinking_budget": budget}}
    note(notes, f"thinking budget {budget} not sent: the server's kind (vLLM or SGLang) is not known yet (its model "
                "list not read): thinking runs to the output cap")
    return body

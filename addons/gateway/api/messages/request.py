"""An Anthropic Messages request (as Claude Code and the `anthropic` SDKs send it) -> a request in the chat form.

Every field has one fate, listed in docs/compatibility.md: translated, accepted and ignored (with a note on
the exchange), or refused with Anthropic's 400. What Claude Code sends beyond the base API — `role:
"system"` messages inside `messages`, `thinking` of type `adaptive`, `output_config`, `context_management`,
`safeguards`, tools with `defer_loading`, `cache_control` anywhere, a JSON-encoded `metadata.user_id` — is
accepted: it re-sends a 400 with fewer betas but never without those, so refusing them fails every turn. A
field the SDK's `MessageCreateParams` does not have, and a wrong key or literal in `metadata`, `output_config`
or a `cache_control`, is refused as Anthropic refuses it (shape.py); a tool's `input_schema` must be a JSON
Schema (function_schema.py). Thinking is Qwen's only when `thinking` asks: `output_config.effort` alone asks none.

System text (the `system` field, then `role: "system"` messages in their order) becomes the one system
prompt Qwen caches. Every `cache_control` stays where the client put it (system, message and tool_result
blocks, tools): Qwen's explicit cache reads it (upstream/dashscope/markers.py decides what Qwen takes). Claude Code's billing line (`x-anthropic-billing-header: …`) is metadata, not prompt:
it is dropped. `thinking` blocks come back with the signature the gateway made (`Signer`); a block it did
not sign is refused, as Anthropic refuses one it did not sign, and the signature never reaches Qwen.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from ... import request_surface
from ...exchange import note
from ..function_schema import schema_problem
from ..websearch import is_anthropic_tool, messages_search
from . import shape
from .content import assistant_message, marked, user_messages
from .shape import bad

_ROLES = ("user", "assistant", "system")
BILLING_PREFIX = "x-anthropic-billing-header:"
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}\Z")  # Anthropic's custom tool names


def to_chat(body: dict, notes: list[str], verify: Callable[[str, str], str], *, counting: bool = False) -> dict:
    """The chat request for a Messages body. `verify(thinking, signature)` checks a returned thinking block
    (thinking.py). `counting`: a count_tokens body (no max_tokens of its own to check a budget against)."""
    shape.fields(body)  # a field Anthropic does not know is its 400, not silently dropped
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad("model: Field required", "model")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise bad("max_tokens: Field required (a positive integer)", "max_tokens")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad("messages: at least one message is required", "messages")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise bad("stream: Input should be a valid boolean", "stream")
    system = system_blocks(body.get("system"), "system", notes)
    chat_messages: list[dict] = []
    for i, m in enumerate(messages):
        where = f"messages.{i}"
        if not isinstance(m, dict) or m.get("role") not in _ROLES:
            raise bad(f"{where}.role: Input should be 'user', 'assistant' or 'system'", f"{where}.role")
        if m["role"] == "system":  # Claude Code's per-turn context: folded into the system prompt in order
            system += system_blocks(m.get("content"), f"{where}.content", notes)
        elif m["role"] == "user":
            chat_messages += user_messages(m.get("content"), where, notes)
        else:
            chat_messages.append(assistant_message(m.get("content"), where, notes, verify))
    chat: dict = {"model": model, "messages": ([{"role": "system", "content": system_content(system)}] if system
                                               else []) + chat_messages, "stream": body.get("stream") is True}
    _sampling(body)
    request_surface.carry("messages", body, chat)  # the output cap and sampling, each under its chat name
    _tools(body, chat, notes)
    messages_search(body, chat, notes)  # the web_search server tool: Qwen's own search
    _thinking(body, chat, notes, None if counting else max_tokens)
    _metadata(body, chat)
    if body.get("cache_control") is not None:  # Anthropic's automatic caching: the gateway marks the prompt anyway
        shape.cache_control(body["cache_control"], "cache_control")
        chat["cache_control"] = body["cache_control"]  # its ttl: the lifetime of the gateway's own markers
        note(notes, "cache_control: the prompt is marked for Qwen's cache as the gateway marks it")
    request_surface.ignored("messages", body, notes)
    return chat


def system_blocks(value: object, where: str, notes: list[str]) -> list[dict]:
    """A system prompt given as a string or text blocks, as text blocks with their `cache_control` (Qwen's
    cache markers: upstream/dashscope/markers.py); Claude Code's billing line and empty texts left out."""
    if value is None:
        return []
    if isinstance(value, str):
        return [{"type": "text", "text": value}] if value else []
    if not isinstance(value, list):
        raise bad(f"{where}: Input should be a valid string or a list of text blocks", where)
    out = []
    for j, block in enumerate(value):
        if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise bad(f"{where}.{j}: system content must be text blocks", f"{where}.{j}")
        if block["text"].startswith(BILLING_PREFIX):
            note(notes, "Claude Code's billing header line left out of the prompt")
            continue
        if block["text"] or "cache_control" in block:
            out.append(marked({"type": "text", "text": block["text"]}, block, f"{where}.{j}"))
    return out


def system_content(blocks: list[dict]) -> str | list[dict]:
    """The system prompt's text, blocks a blank line apart; as text parts (the same text: the same prompt to cache)
    when there are several or one carries a cache marker — marked or not, the same parts, so a client that stops
    sending markers the gateway places itself changes nothing the cache doctor compares (issue 81)."""
    text = "\n\n".join(b["text"] for b in blocks if b["text"])
    if len(blocks) < 2 and not any("cache_control" in b for b in blocks):
        return text
    parts, first = [], True
    for b in blocks:
        if b["text"] or "cache_control" in b:
            parts.append({**b, "text": b["text"] if first or not b["text"] else "\n\n" + b["text"]})
            first = first and not b["text"]
    return parts


def _sampling(body: dict) -> None:
    """Anthropic's ranges (temperature and top_p 0..1, top_k an integer >= 0), refused outside them: within them
    Qwen takes each as is (request_surface.py carries them). `stop_sequences` stay with the gateway (stops.py)."""
    for key, high in (("temperature", 1), ("top_p", 1), ("top_k", None)):
        value = body.get(key)
        if value is None:
            continue
        integer = key == "top_k"
        if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
            raise bad(f"{key}: Input should be a valid {'integer' if integer else 'number'}", key)
        if value < 0:
            raise bad(f"{key}: Input should be greater than or equal to 0", key)
        if high is not None and value > high:
            raise bad(f"{key}: Input should be less than or equal to {high}", key)
    stops = body.get("stop_sequences")
    if stops is not None and (not isinstance(stops, list) or not all(isinstance(s, str) for s in stops)):
        raise bad("stop_sequences: Input should be a list of strings", "stop_sequences")


def _tools(body: dict, chat: dict, notes: list[str]) -> None:
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise bad("tools: Input should be a valid list", "tools")
    functions = []
    names: set[str] = set()
    for i, tool in enumerate(tools or []):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise bad(f"tools.{i}.name: Field required", f"tools.{i}.name")
        if tool["name"] in names:
            raise bad(f"tools: Tool names must be unique ({tool['name']!r} appears twice).", "tools")
        names.add(tool["name"])
        kind = tool.get("type")
        if is_anthropic_tool(tool):
            continue  # Qwen searches itself: messages_search
        if kind not in (None, "custom"):  # server tools (web_search_…, bash_…, text_editor_…)
            raise bad(f"tools.{i}: the server tool {kind!r} is not available through this gateway (Qwen runs no "
                      "Anthropic server tools); define it as a custom tool with input_schema", f"tools.{i}.type")
        if not TOOL_NAME.match(tool["name"]):
            raise bad(f"tools.{i}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'", f"tools.{i}.name")
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            raise bad(f"tools.{i}.input_schema: Field required", f"tools.{i}.input_schema")
        if schema.get("type") != "object":
            raise bad(f"tools.{i}.input_schema.type: Input should be 'object'", f"tools.{i}.input_schema.type")
        _json_schema(schema, f"tools.{i}.input_schema")
        if tool.get("defer_loading"):  # hidden from the model until a tool search loads it, as Anthropic does
            note(notes, "tools with defer_loading left out (Qwen has no tool search to load them)")
            continue
        parameters = {k: v for k, v in schema.items() if k != "$schema"}  # a draft marker, not a constraint
        fn: dict = {"name": tool["name"], "parameters": parameters}
        if isinstance(tool.get("description"), str):
            fn["description"] = tool["description"]
        functions.append(marked({"type": "function", "function": fn}, tool, f"tools.{i}"))
    if functions:
        chat["tools"] = functions
    _tool_choice(body.get("tool_choice"), names, chat)


def _json_schema(schema: dict, where: str) -> None:
    """Anthropic refuses an `input_schema` that is no JSON Schema (`properties: 99`), rather than offer the model
    a tool nobody could call right."""
    problem = schema_problem(schema)
    if problem is not None:
        path, what = problem
        raise bad(f"{where}: JSON schema is invalid. It must match JSON Schema draft 2020-12 "
                  f"(https://json-schema.org/draft/2020-12): at {'.'.join(map(str, path))}, {what}", where)


def _tool_choice(choice: object, names: set[str], chat: dict) -> None:
    """Anthropic's tool_choice: `any` and `tool` need tools, and `tool` one of them (a deferred tool counts:
    Anthropic loads it when forced)."""
    if choice is None:
        return
    if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
        raise bad("tool_choice: Input should be auto, any, tool or none", "tool_choice")
    kind = choice["type"]
    if kind in ("any", "tool") and not names:
        raise bad(f"tool_choice: {kind!r} may only be specified while providing tools", "tool_choice")
    if kind == "tool":
        if not isinstance(choice.get("name"), str):
            raise bad("tool_choice.name: Field required", "tool_choice.name")
        if choice["name"] not in names:
            raise bad(f"tool_choice.name: tool {choice['name']!r} is not among the tools of this request",
                      "tool_choice.name")
        chat["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    else:
        chat["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[kind]
    if choice.get("disable_parallel_tool_use") is True:
        chat["parallel_tool_calls"] = False


def _thinking(body: dict, chat: dict, notes: list[str], max_tokens: int | None) -> None:
    """Anthropic's thinking switch and effort -> Qwen's `enable_thinking`/`thinking_budget` or an effort (the
    DashScope upstream then obeys each model's own rules). An explicit budget is Anthropic's: at least 1024,
    and below `max_tokens` (None: a count, which has none)."""
    thinking = body.get("thinking")
    config = shape.output_config(body.get("output_config"))
    effort = config.get("effort")  # one of shape.EFFORTS or None: given on as it is, the upstream maps it per model
    if config.get("format") is not None:
        fmt = config["format"]
        if fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
            raise bad("output_config.format: only json_schema formats are supported", "output_config.format")
        chat["response_format"] = {"type": "json_schema",
                                   "json_schema": {"name": "output", "schema": fmt["schema"], "strict": True}}
    if config.get("task_budget") is not None:
        note(notes, "output_config.task_budget: accepted, no Qwen equivalent")
    if thinking is None:  # Anthropic's models think only when asked: an effort alone turns nothing on
        chat["enable_thinking"] = False
        if effort is not None:
            note(notes, f"output_config.effort {effort} without thinking: Qwen's thinking stays off")
        return
    if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "disabled", "adaptive"):
        raise bad("thinking.type: Input should be 'enabled', 'disabled' or 'adaptive'", "thinking.type")
    kind = thinking["type"]
    if kind != "disabled":
        _with_thinking(body)
    if kind == "disabled":
        chat["enable_thinking"] = False
    elif kind == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1024:
            raise bad("thinking.budget_tokens: Input should be an integer greater than or equal to 1024",
                      "thinking.budget_tokens")
        if max_tokens is not None and budget >= max_tokens:
            raise bad("thinking.budget_tokens: `max_tokens` must be greater than `thinking.budget_tokens`",
                      "thinking.budget_tokens")
        chat["enable_thinking"] = True
        chat["thinking_budget"] = budget
    elif effort is not None:  # adaptive: the model decides, within the effort
        chat["reasoning_effort"] = effort
    else:
        chat["enable_thinking"] = True
    if thinking.get("display") not in (None, "summarized", "omitted", "updates"):
        note(notes, "thinking.display: accepted, Qwen's thinking is shown as it comes")


def _with_thinking(body: dict) -> None:
    """What Anthropic refuses alongside thinking (its extended-thinking limits): forced tool use, a
    temperature other than 1, any top_k, a top_p below 0.95 (the values' types are checked already)."""
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") in ("any", "tool"):
        raise bad("Thinking may not be enabled when tool_choice forces tool use.", "tool_choice")
    if body.get("temperature") not in (None, 1):
        raise bad("temperature: may only be set to 1 when thinking is enabled", "temperature")
    if body.get("top_k") is not None:
        raise bad("top_k: may not be set when thinking is enabled", "top_k")
    if body.get("top_p") is not None and body["top_p"] < 0.95:
        raise bad("top_p: must be between 0.95 and 1 when thinking is enabled", "top_p")


def asks_thinking(body: dict) -> bool:
    """Whether the client wants thinking blocks: Anthropic returns them only when `thinking` turns it on (an
    effort alone does not), so a model that thinks anyway has its thinking left out of the answer."""
    thinking = body.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") != "disabled"


def _metadata(body: dict, chat: dict) -> None:
    """`metadata.user_id` (Claude Code: a JSON-encoded {"device_id", "session_id", …}): its session keeps one
    Qwen session (and prompt cache) per Claude Code session."""
    user = shape.metadata(body.get("metadata")).get("user_id")
    if not isinstance(user, str) or not user:
        return
    session = None
    if user.startswith("{"):
        try:
            parsed = json.loads(user)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and isinstance(parsed.get("session_id"), str):
            session = parsed["session_id"]
    chat["prompt_cache_key"] = session or user

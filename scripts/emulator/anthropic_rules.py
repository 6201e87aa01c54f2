"""What Model Studio's Anthropic-compatible base (`…/apps/anthropic/v1/messages`) refuses, as Anthropic answers it.

Sources: Anthropic's Messages API reference (the request shape, the error types and their statuses, and the
wording of its schema errors: "max_tokens: Field required", "context_management: Extra inputs are not
permitted", the `tool_use`/`tool_result` pairing texts, "`max_tokens` must be greater than
`thinking.budget_tokens`"); Model Studio's "Anthropic-compatible Messages" page (help.aliyun.com
model-studio/anthropic-api-messages: Qwen model ids, `thinking` as `{type: enabled, budget_tokens}` or
`{type: disabled}`, nothing else documented); dashscope-rules.md for what the Qwen models behind it refuse
(R3, R4, R7, R9, R10). Texts no public source quotes are marked "assumed". Strict on purpose: anything Anthropic
itself refuses is refused, so a pass-through that forwards Claude Code's extras as they are fails in tests.
"""

from __future__ import annotations

import re

from . import chat, rules

STATUS = {"invalid_request_error": 400, "authentication_error": 401, "permission_error": 403,
          "not_found_error": 404, "rate_limit_error": 429, "api_error": 500, "overloaded_error": 529}
# The Messages API's fields without any beta (Anthropic's reference). Claude Code's context_management,
# safeguards, output_config, diagnostics… are beta or private fields: Anthropic refuses them unless a beta
# enables them, and Model Studio documents none, so here they are 400s the gateway must strip.
FIELDS = {"model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream", "temperature",
          "top_p", "top_k", "tools", "tool_choice", "thinking", "service_tier"}
COUNT_FIELDS = {"model", "messages", "system", "tools", "tool_choice", "thinking"}  # count_tokens takes fewer
CACHE = ("cache_control",)
BLOCKS = {  # block type -> the keys it may carry (Anthropic's schemas; extra keys are refused there too)
    "text": ("text", "citations", *CACHE), "image": ("source", *CACHE),
    "document": ("source", "title", "context", "citations", *CACHE),
    "tool_use": ("id", "name", "input", *CACHE), "tool_result": ("tool_use_id", "content", "is_error", *CACHE),
    "thinking": ("thinking", "signature"), "redacted_thinking": ("data",),
}
ASSISTANT_ONLY = ("tool_use", "thinking", "redacted_thinking")
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
TOOL_CHOICES = {"auto": (), "any": (), "tool": ("name",), "none": ()}


class Refused(Exception):
    """A request the base refuses: (status, Anthropic error body)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.answer = error(kind, message)


def error(kind: str, message: str) -> tuple[int, dict]:
    return STATUS[kind], {"type": "error", "error": {"type": kind, "message": message}}


def _bad(message: str):
    raise Refused("invalid_request_error", message)


def _extras(obj: dict, allowed, where: str) -> None:
    extra = sorted(set(obj) - set(allowed))
    if extra:
        _bad(f"{where}{extra[0]}: Extra inputs are not permitted")


def _number(body: dict, key: str, low: float, high: float | None, integer: bool = False) -> None:
    value = body.get(key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        _bad(f"{key}: Input should be a valid {'integer' if integer else 'number'}")
    if value < low:
        _bad(f"{key}: Input should be greater than or equal to {low}")
    if high is not None and value > high:
        _bad(f"{key}: Input should be less than or equal to {high}")


def _block(block, where: str, role: str) -> None:
    if not isinstance(block, dict):
        _bad(f"{where}: Input should be a valid dictionary")
    kind = block.get("type")
    if kind not in BLOCKS:
        tags = ", ".join(f"'{t}'" for t in BLOCKS)
        _bad(f"{where}.type: Input tag '{kind}' found using 'type' does not match any of the expected tags: {tags}")
    _extras(block, ("type", *BLOCKS[kind]), f"{where}.")
    required = {"text": ("text",), "image": ("source",), "document": ("source",), "tool_use": ("id", "name"),
                "tool_result": ("tool_use_id",), "thinking": ("thinking", "signature"), "redacted_thinking": ("data",)}
    for key in required[kind]:
        if key not in block:
            _bad(f"{where}.{key}: Field required")
        if key != "source" and not isinstance(block[key], str):
            _bad(f"{where}.{key}: Input should be a valid string")
    if kind in ("image", "document") and not isinstance(block["source"], dict):
        _bad(f"{where}.source: Input should be a valid dictionary")
    if kind == "tool_use" and not isinstance(block.get("input"), dict):
        _bad(f"{where}.input: Input should be a valid dictionary")
    if kind == "tool_result" and not isinstance(block.get("content", ""), (str, list)):
        _bad(f"{where}.content: Input should be a valid string or list")
    inners = block.get("content") if kind == "tool_result" else None
    for k, inner in enumerate(inners if isinstance(inners, list) else ()):
        if not isinstance(inner, dict) or inner.get("type") not in ("text", "image", "document"):
            _bad(f"{where}.content.{k}: Input should be a text, image or document block")
        _block(inner, f"{where}.content.{k}", role)
    if (kind in ASSISTANT_ONLY) != (role == "assistant") and kind in (*ASSISTANT_ONLY, "tool_result"):
        _bad(f"{where}: `{kind}` blocks are not allowed in `{role}` messages")  # assumed text


def _messages(messages) -> None:
    if not isinstance(messages, list):
        _bad("messages: Input should be a valid list")
    if not messages:
        _bad("messages: at least one message is required")
    pending: dict[str, int] = {}  # tool_use ids of the previous assistant turn -> its index
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            _bad(f"messages.{i}: Input should be a valid dictionary")
        _extras(m, ("role", "content"), f"messages.{i}.")
        role, content = m.get("role"), m.get("content")
        if role not in ("user", "assistant"):  # role "system" included: the gateway folds it into `system`
            _bad(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if i == 0 and role != "user":
            _bad('messages: first message must use the "user" role')
        if i and role == messages[i - 1].get("role"):
            _bad(f'messages: roles must alternate between "user" and "assistant", but found multiple "{role}" '
                 "roles in a row")
        if "content" not in m:
            _bad(f"messages.{i}.content: Field required")
        if not isinstance(content, (str, list)):
            _bad(f"messages.{i}.content: Input should be a valid string or list")
        if not content and not (role == "assistant" and i == len(messages) - 1):
            _bad(f"messages.{i}: all messages must have non-empty content except for the optional final "
                 "assistant message")
        blocks = content if isinstance(content, list) else []
        for j, block in enumerate(blocks):
            _block(block, f"messages.{i}.content.{j}", role)
        answered = {b["tool_use_id"] for b in blocks if b["type"] == "tool_result"}
        for j, b in enumerate(blocks):
            if b["type"] == "tool_result" and b["tool_use_id"] not in pending:
                _bad(f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: "
                     f"{b['tool_use_id']}. Each `tool_result` block must have a corresponding `tool_use` block in "
                     "the previous message.")
        missing = [t for t in pending if t not in answered]
        if missing:
            _bad(f"messages.{i - 1}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                 f"{', '.join(missing)}. Each `tool_use` block must have a corresponding `tool_result` block in "
                 "the next message.")
        pending = {b["id"]: i for b in blocks if b["type"] == "tool_use"}


def _tools(body: dict) -> None:
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            _bad("tools: Input should be a valid list")
        for i, t in enumerate(tools):
            if not isinstance(t, dict):
                _bad(f"tools.{i}: Input should be a valid dictionary")
            if t.get("type", "custom") != "custom":  # server tools (web_search_…): not offered (assumed)
                _bad(f"tools.{i}.type: Input should be 'custom'")
            # defer_loading (Claude Code's, beta advanced-tool-use) is refused here like any extra key.
            _extras(t, ("type", "name", "description", "input_schema", *CACHE), f"tools.{i}.custom.")
            if not isinstance(t.get("name"), str) or not TOOL_NAME.match(t["name"]):
                _bad(f"tools.{i}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'")
            schema = t.get("input_schema")
            if not isinstance(schema, dict):
                _bad(f"tools.{i}.custom.input_schema: " + ("Field required" if schema is None
                                                             else "Input should be a valid dictionary"))
            if schema.get("type") != "object":
                _bad(f"tools.{i}.custom.input_schema.type: Input should be 'object'")
        names = [t["name"] for t in tools]
        if len(set(names)) != len(names):
            _bad("tools: Tool names must be unique.")
    choice = body.get("tool_choice")
    if choice is not None:
        if not isinstance(choice, dict) or choice.get("type") not in TOOL_CHOICES:
            _bad("tool_choice: Input should be an object with type 'auto', 'any', 'tool' or 'none'")
        extra = ("name",) if choice["type"] == "tool" else ()
        _extras(choice, ("type", "disable_parallel_tool_use", *extra), f"tool_choice.{choice['type']}.")
        if choice["type"] == "tool" and not isinstance(choice.get("name"), str):
            _bad("tool_choice.tool.name: Field required")
        if choice["type"] == "tool" and choice["name"] not in {t["name"] for t in tools or []}:
            _bad(f"tool_choice: tool '{choice['name']}' is not among the tools")  # assumed text


def _thinking(body: dict, count: bool) -> None:
    thinking = body.get("thinking")
    if thinking is None:
        return
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind not in ("enabled", "disabled"):
        # Model Studio documents enabled and disabled only; `adaptive` (Claude Code's default) is refused.
        _bad(f"thinking: Input tag '{kind}' found using 'type' does not match any of the expected tags: 'enabled', "
             "'disabled'")
    _extras(thinking, ("type", "budget_tokens") if kind == "enabled" else ("type",), f"thinking.{kind}.")
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        if "budget_tokens" not in thinking:
            _bad("thinking.enabled.budget_tokens: Field required")
        if isinstance(budget, bool) or not isinstance(budget, int):
            _bad("thinking.enabled.budget_tokens: Input should be a valid integer")
        if budget < 1024:
            _bad("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
        if not count and isinstance(body.get("max_tokens"), int) and budget >= body["max_tokens"]:
            _bad("`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation at "
                 "https://docs.claude.com/en/docs/build-with-claude/extended-thinking#max-tokens-and-context-window"
                 "-size")


def _schema(body, count: bool) -> None:
    if not isinstance(body, dict):
        _bad("The request body is not valid JSON.")  # assumed text
    _extras(body, COUNT_FIELDS if count else FIELDS, "")
    for key in ("model", "messages") if count else ("model", "messages", "max_tokens"):
        if key not in body:
            _bad(f"{key}: Field required")
    if not isinstance(body["model"], str):
        _bad("model: Input should be a valid string")
    if not count:
        _number(body, "max_tokens", 1, None, integer=True)
    _messages(body["messages"])
    system = body.get("system")
    if system is not None and not isinstance(system, (str, list)):
        _bad("system: Input should be a valid string or list")
    for j, block in enumerate(system if isinstance(system, list) else []):
        if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
            _bad(f"system.{j}: Input should be a text block")
        _extras(block, ("type", "text", "citations", *CACHE), f"system.{j}.")
    _tools(body)
    _thinking(body, count)
    _number(body, "temperature", 0, 1)
    _number(body, "top_p", 0, 1)
    _number(body, "top_k", 0, None, integer=True)
    stops = body.get("stop_sequences")
    if stops is not None and (not isinstance(stops, list) or not all(isinstance(s, str) for s in stops)):
        _bad("stop_sequences: Input should be a valid list of strings")
    if "stream" in body and not isinstance(body["stream"], bool):
        _bad("stream: Input should be a valid boolean")
    meta = body.get("metadata")
    if meta is not None:
        if not isinstance(meta, dict):
            _bad("metadata: Input should be a valid dictionary")
        _extras(meta, ("user_id",), "metadata.")
        if meta.get("user_id") is not None and not isinstance(meta["user_id"], str):
            _bad("metadata.user_id: Input should be a valid string")


def thinking_on(body: dict) -> bool:
    """Thinking mode: `enabled`/`disabled` when sent; otherwise the model's default (thinking.py), as Model
    Studio's examples suggest by sending `thinking: disabled` to qwen3.x-plus explicitly. The model's own
    rules still apply (a model without thinking never thinks, a thinking-only one always does)."""
    kind = (body.get("thinking") or {}).get("type")
    return rules.thinking_on({"model": body["model"], **({"enable_thinking": kind == "enabled"} if kind else {})})


def _has_image(messages: list) -> bool:
    def images(blocks) -> bool:
        return any(isinstance(b, dict) and (b.get("type") == "image" or (
            b.get("type") == "tool_result" and isinstance(b.get("content"), list) and images(b["content"])))
            for b in blocks)
    return any(isinstance(m["content"], list) and images(m["content"]) for m in messages)


def _markers(body: dict) -> None:
    """At most four blocks with `cache_control` (system, message and tool_result blocks, tools), in Anthropic's
    words; Model Studio's Anthropic page documents no limit of its own (assumed: Anthropic's)."""
    def marked(blocks) -> int:
        return sum(isinstance(b.get("cache_control"), dict) + (marked(b["content"]) if b.get("type") == "tool_result"
                   and isinstance(b.get("content"), list) else 0) for b in blocks if isinstance(b, dict))
    found = marked(body.get("tools") or []) + marked(body["system"] if isinstance(body.get("system"), list) else [])
    found += sum(marked(m["content"]) for m in body["messages"] if isinstance(m["content"], list))
    if found > 4:
        _bad(f"A maximum of 4 blocks with cache_control may be provided. Found {found}.")


def check(body, sw: dict, count: bool = False) -> tuple[int, dict] | None:
    """None when the base accepts the request (with the switches `sw`), else (status, Anthropic error body)."""
    try:
        _schema(body, count)
        _markers(body)
        model = body["model"]
        if model not in chat.known_models(sw) or rules.retired(model, sw.get("today")):  # claude-* ids too: the
            # gateway maps names before passing through; a retired model is not found here either (chat's 404)
            raise Refused("not_found_error", f"model: {model}")
        cap = rules.output_cap(model, sw.get("model_caps") or {})
        if not count and cap is not None and body["max_tokens"] > cap:  # R4, in Anthropic's words
            _bad(f"max_tokens: {body['max_tokens']} > {cap}, which is the maximum allowed number of output tokens "
                 f"for {model}")
        if model in (sw.get("denied_models") or ()):  # R7
            raise Refused("permission_error", "Access to model denied. Please make sure you are eligible for using "
                                              "the model.")
        if model in rules.THINKING_ONLY and (body.get("thinking") or {}).get("type") == "disabled":  # R9
            _bad("The value of the enable_thinking parameter is restricted to True.")  # the chat path's text
        choice = (body.get("tool_choice") or {}).get("type")
        if choice in ("any", "tool") and thinking_on(body):  # R3; Anthropic refuses it with these words too
            _bad("Thinking may not be enabled when tool_choice forces tool use.")
        if model not in rules.VISION and _has_image(body["messages"]):  # R10 (text assumed)
            _bad(f"messages: model {model} does not support image input")
    except Refused as refused:
        return refused.answer
    return None

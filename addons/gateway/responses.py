"""Responses API (`/v1/responses`) <-> chat completions. Pure functions over dicts."""

from __future__ import annotations

import json
import uuid

from .errors import GatewayError

FUNCTION = "function"
_TEXT_PARTS = ("input_text", "output_text", "text", "refusal", "summary_text", "reasoning_text")
_DROPPED_ITEMS = ("reasoning", "item_reference", "web_search_call", "file_search_call", "computer_call",
                  "computer_call_output", "image_generation_call", "code_interpreter_call", "local_shell_call",
                  "local_shell_call_output", "mcp_call", "mcp_list_tools", "mcp_approval_request",
                  "mcp_approval_response", "custom_tool_call", "custom_tool_call_output")


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def dropped_tools(body: dict) -> list[str]:
    """Tool types chat completions cannot express (web_search, namespace, …): dropped, never an error."""
    tools = body.get("tools") if isinstance(body.get("tools"), list) else []
    return [str(t.get("type") if isinstance(t, dict) else t) for t in tools
            if not (isinstance(t, dict) and t.get("type") == FUNCTION)]


def function_tools(body: dict) -> list[dict]:
    tools = body.get("tools") if isinstance(body.get("tools"), list) else []
    return [t for t in tools if isinstance(t, dict) and t.get("type") == FUNCTION and isinstance(t.get("name"), str)]


def _text_of(content, where: str) -> str | list:
    """A message's content in chat form: a string, or parts when there are images."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise GatewayError(400, f"{where}.content must be a string or an array of content parts.",
                           param=f"{where}.content", code="invalid_type")
    parts: list[dict] = []
    for j, p in enumerate(content):
        if not isinstance(p, dict):
            raise GatewayError(400, f"{where}.content[{j}] must be an object.", param=f"{where}.content[{j}]",
                               code="invalid_type")
        kind = p.get("type")
        if kind in _TEXT_PARTS:
            parts.append({"type": "text", "text": str(p.get("text") or p.get("refusal") or "")})
        elif kind == "input_image":
            url = p.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            if not isinstance(url, str) or not url:
                raise GatewayError(400, "input_image needs an image_url (file_id is not supported by Qwen).",
                                   param=f"{where}.content[{j}].image_url", code="unsupported_value")
            parts.append({"type": "image_url", "image_url": {"url": url, "detail": p.get("detail", "auto")}})
        else:
            raise GatewayError(400, f"Content part type {kind!r} is not supported by Qwen.",
                               param=f"{where}.content[{j}].type", code="unsupported_value")
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _input_messages(items: list) -> list[dict]:
    msgs: list[dict] = []
    for i, item in enumerate(items):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise GatewayError(400, f"{where} must be an object.", param=where, code="invalid_type")
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise GatewayError(400, f"{where}.role must be user, assistant, system or developer.",
                                   param=f"{where}.role", code="invalid_value")
            if "content" not in item:
                raise GatewayError(400, f"{where}.content is required.", param=f"{where}.content",
                                   code="missing_required_parameter")
            msgs.append({"role": "system" if role == "developer" else role,
                         "content": _text_of(item["content"], where)})
        elif kind == "function_call":
            call = {"id": str(item.get("call_id") or item.get("id") or new_id("call")), "type": FUNCTION,
                    "function": {"name": str(item.get("name") or ""), "arguments": str(item.get("arguments") or "")}}
            last = msgs[-1] if msgs else None
            if last and last["role"] == "assistant" and (last.get("tool_calls") or not last.get("content")):
                last.setdefault("tool_calls", []).append(call)
            else:
                msgs.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            out = item.get("output")
            if not isinstance(out, str):
                out = _text_of(out, where) if isinstance(out, list) else json.dumps(out)
                out = out if isinstance(out, str) else json.dumps(out)
            msgs.append({"role": "tool", "tool_call_id": str(item.get("call_id") or ""), "content": out})
        elif kind in _DROPPED_ITEMS:
            continue
        else:
            raise GatewayError(400, f"Input item type {kind!r} is not supported.", param=f"{where}.type",
                               code="unsupported_value")
    return msgs


def responses_to_chat(body: dict, history: list[dict] | None = None) -> dict:
    if not isinstance(body, dict):
        raise GatewayError(400, "The request body must be a JSON object.", code="invalid_request_body")
    raw = body.get("input")
    if isinstance(raw, str):
        items: list = [{"type": "message", "role": "user", "content": raw}]
    elif isinstance(raw, list):
        items = raw
    else:
        raise GatewayError(400, "'input' is required and must be a string or an array of items.", param="input",
                           code="missing_required_parameter" if raw is None else "invalid_type")
    if body.get("tools") is not None and not isinstance(body["tools"], list):
        raise GatewayError(400, "'tools' must be an array.", param="tools", code="invalid_type")
    if "model" in body and not isinstance(body["model"], str):
        raise GatewayError(400, "'model' must be a string.", param="model", code="invalid_type")
    messages: list[dict] = []
    if isinstance(body.get("instructions"), str) and body["instructions"]:
        messages.append({"role": "system", "content": body["instructions"]})
    messages += [m for m in (history or []) if m.get("role") != "system"]
    messages += _input_messages(items)
    if not messages:
        raise GatewayError(400, "'input' must contain at least one message.", param="input", code="invalid_value")
    chat: dict = {"model": body.get("model") or "", "messages": messages, "stream": bool(body.get("stream"))}
    tools = function_tools(body)
    if tools:
        chat["tools"] = [{"type": FUNCTION, "function": {k: t[k] for k in ("name", "description", "parameters",
                                                                           "strict") if t.get(k) is not None}}
                         for t in tools]
        choice = body.get("tool_choice")
        if choice in ("auto", "none", "required"):
            chat["tool_choice"] = choice
        elif isinstance(choice, dict) and choice.get("type") == FUNCTION and choice.get("name"):
            chat["tool_choice"] = {"type": FUNCTION, "function": {"name": choice["name"]}}
        if isinstance(body.get("parallel_tool_calls"), bool):
            chat["parallel_tool_calls"] = body["parallel_tool_calls"]
    for src, dst in (("max_output_tokens", "max_tokens"), ("temperature", "temperature"), ("top_p", "top_p"),
                     ("user", "user"), ("prompt_cache_key", "prompt_cache_key")):  # the key names the session
        if body.get(src) is not None:
            chat[dst] = body[src]
    fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        chat["response_format"] = {"type": "json_schema", "json_schema": {
            k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}}
    elif isinstance(fmt, dict) and fmt.get("type") == "json_object":
        chat["response_format"] = {"type": "json_object"}
    effort = (body.get("reasoning") or {}).get("effort") if isinstance(body.get("reasoning"), dict) else None
    if isinstance(effort, str):
        chat["reasoning_effort"] = effort
    return chat


def usage_to_responses(usage: dict | None) -> dict | None:
    if not isinstance(usage, dict):
        return None
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    cached = int(((usage.get("prompt_tokens_details") or {}).get("cached_tokens")) or 0)
    reasoning = int(((usage.get("completion_tokens_details") or {}).get("reasoning_tokens")) or 0)
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
            "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": int(usage.get("total_tokens") or prompt + completion)}


def response_object(request: dict, *, response_id: str, created_at: int, status: str, output: list[dict],
                    usage: dict | None = None, error: dict | None = None, incomplete: str | None = None) -> dict:
    """A Response with every field OpenAI's schema requires, echoing the request."""
    return {
        "id": response_id, "object": "response", "created_at": created_at, "status": status,
        "error": error, "incomplete_details": {"reason": incomplete} if incomplete else None,
        "instructions": request.get("instructions") if isinstance(request.get("instructions"), str) else None,
        "max_output_tokens": request.get("max_output_tokens"), "model": request.get("model") or "",
        "output": output, "parallel_tool_calls": request.get("parallel_tool_calls", True) is not False,
        "previous_response_id": request.get("previous_response_id"),
        "reasoning": request.get("reasoning") if isinstance(request.get("reasoning"), dict) else None,
        "store": request.get("store", True) is not False,
        "temperature": request.get("temperature"), "top_p": request.get("top_p"),
        "text": request.get("text") if isinstance(request.get("text"), dict) else {"format": {"type": "text"}},
        "tool_choice": request.get("tool_choice") if request.get("tool_choice") in ("auto", "none", "required")
        else "auto",
        # Echo the function tools as OpenAI does: strict and parameters always present.
        "tools": [{"strict": None, "parameters": None, **t} for t in function_tools(request)],
        "truncation": "disabled",
        **({"usage": usage_to_responses(usage)} if usage else {}),
        "metadata": request.get("metadata") if isinstance(request.get("metadata"), dict) else {},
        **({"user": request["user"]} if isinstance(request.get("user"), str) else {}),
    }


def reasoning_item(item_id: str, text: str) -> dict:
    return {"type": "reasoning", "id": item_id, "summary": [{"type": "summary_text", "text": text}]}


def message_item(item_id: str, text: str, status: str = "completed") -> dict:
    return {"type": "message", "id": item_id, "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}


def call_item(item_id: str, call_id: str, name: str, arguments: str, status: str = "completed") -> dict:
    return {"type": "function_call", "id": item_id, "call_id": call_id, "name": name, "arguments": arguments,
            "status": status}


def chat_to_response(chat: dict, request: dict, *, response_id: str, created_at: int) -> dict:
    choice = (chat.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    output: list[dict] = []
    if message.get("reasoning_content"):
        output.append(reasoning_item(new_id("rs"), message["reasoning_content"]))
    if message.get("content"):
        output.append(message_item(new_id("msg"), message["content"]))
    for tc in message.get("tool_calls") or []:
        fn = tc.get("function") or {}
        output.append(call_item(new_id("fc"), tc.get("id") or new_id("call"), fn.get("name") or "",
                                fn.get("arguments") or ""))
    incomplete = incomplete_reason(choice.get("finish_reason"))
    return response_object(request, response_id=response_id, created_at=created_at,
                           status="incomplete" if incomplete else "completed", output=output, usage=chat.get("usage"),
                           incomplete=incomplete)


def incomplete_reason(finish_reason: object) -> str | None:
    """A chat finish_reason that leaves a Response incomplete, as the Responses API names it."""
    return {"length": "max_output_tokens", "content_filter": "content_filter"}.get(finish_reason)  # type: ignore


def response_history(chat_request: dict, response: dict) -> list[dict]:
    """The chat messages a later `previous_response_id` continues from."""
    msgs = [m for m in chat_request.get("messages", []) if m.get("role") != "system"]
    text = "".join(p.get("text", "") for item in response.get("output", []) if item.get("type") == "message"
                   for p in item.get("content", []))
    calls = [{"id": it["call_id"], "type": FUNCTION, "function": {"name": it["name"], "arguments": it["arguments"]}}
             for it in response.get("output", []) if it.get("type") == "function_call"]
    turn: dict = {"role": "assistant", "content": text or None}
    if calls:
        turn["tool_calls"] = calls
    return msgs + [turn]

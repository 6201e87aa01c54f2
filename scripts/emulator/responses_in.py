"""What Model Studio's Responses API takes: its own refusals, then the request as the chat model sees it.

Sources: Model Studio's "Create a response" (help.aliyun.com/zh/model-studio/qwen-api-via-openai-responses, 2026)
and a third party's probes of the real endpoint (yobo2u/omugw docs/research/2026-09-27-dashscope-compatible-
responses-endpoint.md, "probe" below). The page's rule: "only the parameters explicitly listed in this document are
processed; any OpenAI parameter not mentioned is ignored" (the probe: `text.format`, `metadata`,
`parallel_tool_calls`, `reasoning.summary`, unknown tool types, unknown fields: 200, echoed, without effect).
`background` is not supported ("only synchronous calls"): ignored too, the answer is given at once.

Refusals are 400 `{"code": "InvalidParameter", "message"}` (flat, with a request_id added when sent), in the
probe's words where it quotes them; marked "assumed" where no public source does. Then the request, translated to
a chat body, meets the chat rules every Qwen model applies (rules.py, thinking.py: roles, images to models that
cannot see, forced tools in thinking mode, the denied models' 403…): their 400s keep their text in the flat shape.
"""

from __future__ import annotations

from . import catalogue, thinking

EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")  # "Create a response", reasoning.effort
ALGO = "<400> InternalError.Algo.InvalidParameter: "


def refusal(message: str, code: str = "InvalidParameter", status: int = 400) -> tuple[int, dict]:
    return status, {"code": code, "message": message}


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check(body: dict, served_model: bool) -> tuple[int, dict] | None:
    """The Responses API's own refusals (`served_model`: the model is one the API serves here)."""
    model = body.get("model")
    if not served_model:
        return refusal(f"Unsupported model: '{model}'")  # probe
    if "input" not in body:
        return refusal("Missing required parameter: 'input'.")  # assumed
    if body.get("previous_response_id") is not None and body.get("conversation") is not None:
        return refusal("Mutually exclusive parameters: Ensure you are only providing one of: previous_response_id "
                       "or conversation.")  # probe
    t, p, cap = body.get("temperature"), body.get("top_p"), body.get("max_output_tokens")
    if t is not None and not (_number(t) and 0 <= t < 2):  # probe
        return refusal(f"Invalid 'temperature': {t}. Expected a value between [0,2), but got {t} instead.")
    if p is not None and not (_number(p) and 0 < p <= 1):  # probe
        return refusal(f"Invalid 'top_p': {p}. Expected a value between (0,1], but got {p} instead.")
    if cap is not None and not (isinstance(cap, int) and not isinstance(cap, bool) and cap >= 16):  # probe
        return refusal(f"Invalid 'max_output_tokens': must be greater than or equal to 16, got {cap}.")
    effort = body["reasoning"].get("effort") if isinstance(body.get("reasoning"), dict) else None
    if effort is not None and effort not in EFFORTS:  # probe
        listed = ",".join(f"'{e}'" for e in EFFORTS)
        return refusal(f"Invalid 'reasoning.effort': {effort}. Supported values are: ({listed}).")
    if "store" in body and not isinstance(body["store"], bool):  # probe
        return refusal(f"Invalid 'store': {body['store']}. Must be a boolean.")
    tools = body.get("tools") if isinstance(body.get("tools"), list) else []
    if any(isinstance(t, dict) and "function" in t for t in tools):  # probe (its tail "…" assumed: "schema.")
        return refusal(ALGO + "The parameters, when provided as a dict, must confirm to a valid openai-compatible "
                              "JSON schema.")
    functions = [t for t in tools if isinstance(t, dict) and t.get("type") == "function"]
    if body.get("tool_choice") == "required" and len(functions) != 1:  # the page: "only with one tool" (text assumed)
        return refusal(ALGO + "tool_choice 'required' is only supported when exactly one tool is provided.")
    if body.get("conversation") is not None:  # the Conversations API is not emulated (text assumed)
        return refusal(f"Not found conversation: {body['conversation']}")
    items = body["input"]
    if not isinstance(items, (str, list)) or isinstance(items, list) and not all(isinstance(i, dict) for i in items):
        return refusal("Invalid 'input': must be a string or an array of input items.")  # assumed
    return None


def _part(p: dict) -> dict:
    kind = p.get("type")
    if kind in ("input_text", "output_text", "text"):
        return {"type": "text", "text": p.get("text") or ""}
    if kind == "input_image":
        url = p.get("image_url")
        return {"type": "image_url", "image_url": url if isinstance(url, dict) else {"url": url}}
    return p  # input_file and others: passed as they are (rules.py judges what a model takes)


def _content(content) -> object:
    return [_part(p) for p in content if isinstance(p, dict)] if isinstance(content, list) else content


def messages(items) -> list[dict]:
    """The input as chat messages: messages (`developer` read as `system`: assumed), function calls (a run of them:
    one assistant turn) and their outputs; reasoning and built-in tool items are not resent to the model."""
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    out: list[dict] = []
    for item in items:
        kind = item.get("type")
        if kind == "function_call":
            call = {"id": item.get("call_id"), "type": "function",
                    "function": {"name": item.get("name"), "arguments": item.get("arguments") or ""}}
            if out and out[-1].get("role") == "assistant" and out[-1].get("tool_calls"):
                out[-1]["tool_calls"].append(call)
            else:
                out.append({"role": "assistant", "content": "", "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            out.append({"role": "tool", "tool_call_id": item.get("call_id"),
                        "content": output if isinstance(output, str) else _content(output)})
        elif "role" in item and kind in (None, "message"):
            role = "system" if item["role"] == "developer" else item["role"]
            out.append({"role": role, "content": _content(item.get("content"))})
    return out


def _thinking(body: dict) -> dict:
    """`reasoning.effort` (it wins over `enable_thinking`, the page says) as the model's own knob: `none` is off,
    any other effort is on; the page's table of how each effort maps per model is not public (assumed)."""
    effort = body["reasoning"].get("effort") if isinstance(body.get("reasoning"), dict) else None
    flag = body.get("enable_thinking")
    row = catalogue.row(body["model"]) or {}
    mode, efforts = row.get("thinking", thinking.NONE), tuple(row.get("efforts", ()))
    if effort is None:
        return {"enable_thinking": flag} if isinstance(flag, bool) and mode == thinking.HYBRID else {}
    if mode == thinking.EFFORT:
        return {"reasoning_effort": effort if effort in efforts or effort == "none" else efforts[-1]}
    if mode != thinking.HYBRID:
        return {}
    on = effort != "none"  # said only against the model's default (a budget-bound model asks none then: R9)
    return {} if on == bool(row.get("thinks")) else {"enable_thinking": on}


def chat_body(body: dict, history: list[dict]) -> dict:
    """The chat request the model answers: instructions first (never carried over by previous_response_id), the
    stored history, then this input; flat function tools as chat tools (built-in tools are not emulated)."""
    system = [{"role": "system", "content": body["instructions"]}] if isinstance(body.get("instructions"), str) else []
    tools = [{"type": "function", "function": {k: t[k] for k in ("name", "description", "parameters") if k in t}}
             for t in body.get("tools") or [] if isinstance(t, dict) and t.get("type") == "function"]
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        choice = {"type": "function", "function": {"name": choice["name"]}} if choice.get("name") else "auto"
    out = {"model": body["model"], "messages": [*system, *history, *messages(body["input"])],
           "stream": body.get("stream") is True, **_thinking(body)}
    if tools:
        out.update(tools=tools, tool_choice=choice if choice in ("auto", "none", "required") or isinstance(choice, dict)
                   else "auto")
    for k in ("temperature", "top_p"):
        if body.get(k) is not None:
            out[k] = body[k]
    return out


def flatten(problem: tuple[int, dict]) -> tuple[int, dict]:
    """A chat rule's refusal in the Responses API's flat shape (400s are InvalidParameter, as the probe saw for an
    Algo refusal; a 403 keeps its code)."""
    status, body = problem
    err = body.get("error") or {}
    return status, {"code": "InvalidParameter" if status == 400 else err.get("code"), "message": err.get("message")}

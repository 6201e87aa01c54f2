"""vLLM mode (vllm.py): the answer, as vLLM v0.11.0 shapes it from a Qwen3 model's output, whole or as chunks.

What the model says is the emulator's usual answer (chat.plan: "Echo: <last user message>", a tool call when the
prompt names an offered tool or tool_choice forces one, "Tool said: …" after a tool message). The model's output
text is then made as Qwen3 writes it — `<think>\\nThinking about it.\\n</think>\\n\\n` first in thinking mode (on
unless `chat_template_kwargs.enable_thinking` is false), a tool call as hermes' `<tool_call>\\n{"name", "arguments"}
\\n</tool_call>`, or the bare JSON that guided decoding forces for a named function (its arguments) or `required`
(`[{"name", "parameters"}]`) — cut by max_tokens (finish_reason "length") or before a `stop` string (stop_reason
names it), and parsed as v0.11.0's serving_chat.py does:
- `--reasoning-parser qwen3` (vllm/reasoning/qwen3_reasoning_parser.py): whole answers need both `<think>` and
  `</think>` (else all is content); `reasoning_content` is the text between them, content what follows ("\\n\\n…");
  streams skip the two markers and send what lies between as reasoning deltas. Without the parser the markers stay
  in the content.
- tool calls (tool_parsers/hermes_tool_parser.py; serving_chat.py): ids `chatcmpl-tool-<32 hex>`, arguments a JSON
  string; auto calls end with finish_reason "tool_calls", a named or `required` choice with "stop" in a whole
  answer but "tool_calls" in a stream (as v0.11.0 does).
- usage counts the EOS token of an answer that ended by itself; the role is the last message's when
  `add_generation_prompt` is false (`get_chat_request_role`).
"""

from __future__ import annotations

import json
import time
import uuid

from . import chat, partial, vllm_prompt, vllm_tools
from .cache import text_of

DROPPED = ("partial", "enable_search", "enable_thinking", "reasoning_effort", "stop")  # DashScope's meanings: none


def _tool_id() -> str:
    return f"chatcmpl-tool-{uuid.uuid4().hex}"


def mode_of(body: dict, auto_tools: bool) -> str | None:
    """How tool calls come out: "auto" (the hermes parser), "named", "required", or None (words only)."""
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        return "named"
    if choice == "required" and body.get("tools"):
        return "required"
    return "auto" if choice == "auto" and auto_tools else None


def plan(body: dict, cfg, sw: dict, prompt_tokens: int, ended: str | None = None) -> dict:
    """The output: its pieces (tokens, `all` before a max_tokens cut), the tool calls, the finish. `ended`: the
    engine's own finish (abort, error, repetition: a finish_* fault) after part of the text."""
    msgs = [{k: v for k, v in m.items() if k != "partial"} for m in body["messages"]]
    continuing = bool(body.get("continue_final_message")) and msgs[-1].get("role") == "assistant"
    asked = {k: v for k, v in body.items() if k not in DROPPED}
    asked["messages"] = msgs[:-1] if continuing and len(msgs) > 1 else msgs
    asked["model"] = "vllm-served-model"  # no catalogue row: none of a Model Studio model's own rules
    if not body.get("tools") or body.get("tool_choice") == "none":
        asked.pop("tools", None)
    said = chat.plan(asked, {**sw, "reasoning": False, "think_leak": False, "finish_reason": None})
    mode = mode_of(body, cfg.auto_tools) if said["calls"] else None
    calls = [{"name": c["name"], "arguments": json.loads(c["arguments"]) if c["arguments"] else {}}
             for c in said["calls"]] if mode else []
    if mode == "auto" and vllm_tools.degraded(body, cfg.template):
        calls = [{**c, "arguments": {}} for c in calls]
    kwargs = body.get("chat_template_kwargs") if isinstance(body.get("chat_template_kwargs"), dict) else {}
    flag = kwargs.get("enable_thinking")
    thinking = (flag is True or flag is None and sw["reasoning"]) and body.get("add_generation_prompt", True) \
        is not False and not body.get("continue_final_message")
    text = said["text"]
    if continuing:
        text = partial.went_on(text, text_of(msgs[-1].get("content")))
    parses = mode == "auto" and (cfg.tool_parser in vllm_tools.XML_PARSERS) == bool(cfg.template)
    if mode == "auto" and cfg.template:  # Qwen3.6/3.8 write XML calls, whichever parser reads them
        text = vllm_tools.xml(calls)
    elif mode == "auto":
        text = "\n".join("<tool_call>\n" + json.dumps(c, ensure_ascii=False) + "\n</tool_call>" for c in calls)
    elif mode == "named":
        text = json.dumps(calls[0]["arguments"], ensure_ascii=False)
    elif mode == "required":
        text = json.dumps([{"name": c["name"], "parameters": c["arguments"]} for c in calls], ensure_ascii=False)
    opened = thinking and bool(cfg.template)  # the template wrote `<think>\n` into the prompt
    thought = vllm_prompt.pieces((chat._reasoning(sw.get("reasoning_tokens")) + "\n") if opened else
                                 f"\n{chat._reasoning(sw.get('reasoning_tokens'))}\n")
    budget = cfg.budget(body)
    if thinking and budget is not None:  # the thinking budget: the end of the reasoning forced after N tokens
        thought = thought[:budget]
    output = (("" if opened else "<think>") + "".join(thought) + "</think>\n\n" if thinking else "") + text
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else [s for s in stop if isinstance(s, str)] if isinstance(stop, list) \
        else []
    found = min(((output.find(s), s) for s in stops if s and s in output), default=None)
    stop_reason = found[1] if found else None
    everything = vllm_prompt.pieces(output[:found[0]] if found else output)
    caps = [v for v in (body.get("max_completion_tokens") or body.get("max_tokens"),) if isinstance(v, int)]
    limit = max(1, min([cfg.max_model_len - prompt_tokens, *caps]))
    finish = "length" if len(everything) > limit else "stop"
    kept = everything[:limit]
    if ended:
        finish, kept = ended, kept[:max(1, len(kept) * 2 // 3)]
    reasoning = [x for x in kept[:kept.index("</think>") if "</think>" in kept else len(kept)] if x != "<think>"] \
        if thinking else []
    return {"all": everything, "pieces": kept, "mode": mode if mode != "auto" or parses else None, "calls": calls,
            "finish": finish, "stop_reason": stop_reason if finish == "stop" else None, "opened": opened,
            "modern": cfg.modern, "tools": body.get("tools"), "reasoning_tokens": len(reasoning),
            "completion_tokens": len(kept) + (finish == "stop"),  # the EOS (or stop string's) token generated too
            "role": "assistant" if body.get("add_generation_prompt", True) is not False else str(msgs[-1].get("role")),
            "parser": cfg.reasoning_parser == "qwen3", "reasoning_off": body.get("include_reasoning") is False}


def _split(text: str, parser: bool, opened: bool = False, modern: bool = False) -> tuple[str | None, str | None]:
    """qwen3_reasoning_parser.extract_reasoning_content. v0.11: both markers, or no reasoning at all. 2026 (and
    SGLang): the reasoning runs from `<think>` (or the start, when the prompt opened it) to `</think>`, or to the
    end — a thinking answer cut before `</think>` is all reasoning, content null."""
    if parser and modern and (opened or text.startswith("<think>") or "</think>" in text):
        reasoning, sep, content = text.removeprefix("<think>").partition("</think>")
        return reasoning, (content or None) if sep else None
    if not parser or "<think>" not in text or "</think>" not in text:
        return None, text
    reasoning, _, content = text.partition("<think>")[2].partition("</think>")
    return reasoning, content or None


def reasoning_fields(field: str, reasoning) -> dict:
    """The reasoning under the name a release uses (the `vllm_reasoning_field` switch)."""
    return {"reasoning": reasoning, "reasoning_content": reasoning} if field == "both" else {field: reasoning}


def message(p: dict, field: str) -> tuple[dict, str]:
    """A whole answer's message and finish_reason (serving_chat.py's chat_completion_full_generator)."""
    reasoning, content = _split("".join(p["pieces"]), p["parser"], p["opened"], p["modern"])
    calls, finish = [], p["finish"]
    fn = lambda name, args: {"id": _tool_id(), "type": "function",  # noqa: E731
                             "function": {"name": name, "arguments": args}}
    parsed = vllm_tools.parse_xml(content, p["tools"]) if p["mode"] == "auto" and content and "<function=" in \
        content else None
    if parsed:
        content, found = parsed
        calls, finish = [fn(c["name"], c["arguments"]) for c in found], "tool_calls"
    elif p["mode"] == "auto" and content and "<tool_call>" in content:
        try:
            found = [json.loads(b.split("</tool_call>")[0]) for b in content.split("<tool_call>")[1:]]
            calls = [fn(c["name"], json.dumps(c["arguments"], ensure_ascii=False)) for c in found]
            content, finish = content[:content.find("<tool_call>")] or None, "tool_calls"
        except (ValueError, KeyError, TypeError):  # a cut call: the parser gives the text back
            calls = []
    elif p["mode"] == "named":
        calls, content = [fn(p["calls"][0]["name"], content or "")], ""
    elif p["mode"] == "required":
        calls, content = [fn(c["name"], json.dumps(c["arguments"], ensure_ascii=False)) for c in p["calls"]], ""
    msg = {"role": p["role"], "content": content, "refusal": None, "annotations": None, "audio": None,
           "function_call": None, "tool_calls": calls}
    return {**msg, **reasoning_fields(field, None if p["reasoning_off"] else reasoning)}, finish


def usage(prompt: int, completion: int, cached: int | None, details: bool, whole: bool,
          reasoning: int | None = None) -> dict:
    """UsageInfo in its field order; prompt_tokens_details only with --enable-prompt-tokens-details and a hit (a
    whole answer says null otherwise; stream chunks leave it out); 2026 with a reasoning parser:
    completion_tokens_details.reasoning_tokens."""
    out: dict = {"prompt_tokens": prompt, "total_tokens": prompt + completion, "completion_tokens": completion}
    if details and cached:
        out["prompt_tokens_details"] = {"cached_tokens": cached}
    elif whole:
        out["prompt_tokens_details"] = None
    if reasoning is not None:
        out["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return out


def completion(cid: str, model: str, p: dict, n: int, use: dict, field: str) -> dict:
    choices = []
    for i in range(n):
        msg, finish = message(p, field)
        choices.append({"index": i, "message": msg, "logprobs": None, "finish_reason": finish,
                        "stop_reason": p["stop_reason"], "token_ids": None})
    return {"id": cid, "object": "chat.completion", "created": int(time.time()), "model": model, "choices": choices,
            "service_tier": None, "system_fingerprint": None, "usage": use, "prompt_logprobs": None,
            "prompt_token_ids": None, "kv_transfer_params": None}


def _deltas(p: dict, field: str) -> list[dict | None]:
    """What each generated piece streams as (None: no chunk, as for the markers), the EOS piece last."""
    out: list[dict | None] = []
    groups: list[list[int]] = []  # per tool call, the pieces it spans
    started, ended, in_call = p["opened"], False, False
    for i, piece in enumerate(p["all"]):
        if p["parser"] and not ended and (started or piece == "<think>"):
            started, ended = True, piece == "</think>"
            out.append(None if piece in ("<think>", "</think>") else reasoning_fields(field, piece))
            continue
        if p["mode"] in ("named", "required"):
            groups = groups or [[]]
            groups[0].append(i)
        elif p["mode"] == "auto" and (in_call or groups or piece == "<tool_call>"):
            if piece == "<tool_call>":
                groups.append([])
            elif piece != "</tool_call>" and in_call:
                groups[-1].append(i)
            in_call = piece == "<tool_call>" or in_call and piece != "</tool_call>"
        else:
            out.append({"content": piece})
            continue
        out.append(None)
    if p["mode"] in ("named", "required") and groups and len(p["calls"]) > 1:
        share = -(-len(groups[0]) // len(p["calls"]))
        groups = [groups[0][k * share:(k + 1) * share] for k in range(len(p["calls"]))]
    _place_calls(p, out, groups)
    out = out[:len(p["pieces"])]
    if p["finish"] == "stop":  # the EOS token: an empty delta of what the answer was
        named = {"tool_calls": [{"index": 0, "function": {"arguments": ""}}]}
        out.append({"content": ""} if not p["mode"] else named if p["mode"] == "named" else {})
    return out


def _place_calls(p: dict, out: list, groups: list[list[int]]) -> None:
    """Each call's deltas on its pieces: the header (id, type, index, name) on the first, the arguments after it
    (hermes: in two halves; a named or required choice: the first half with the name, as guided JSON streams)."""
    for k, (call, where) in enumerate(zip(p["calls"], groups)):
        if not where:
            continue
        args = json.dumps(call["arguments"], ensure_ascii=False)
        a, b = args[:len(args) // 2], args[len(args) // 2:]
        auto = p["mode"] == "auto"
        head = {"name": call["name"]} if auto else {"name": call["name"], "arguments": a}
        out[where[0]] = {"tool_calls": [{"id": _tool_id(), "type": "function", "index": k, "function": head}]}
        for text, at in ([(a, where[len(where) // 2]), (b, where[-1])] if auto else [(b, where[-1])]):
            if out[at] is not None:
                got = out[at]["tool_calls"][0]["function"]
                got["arguments"] = got.get("arguments", "") + text
            else:
                more = {"name": None, "arguments": text} if p["mode"] == "required" else {"arguments": text}
                out[at] = {"tool_calls": [{"index": k, "function": more}]}


def chunks(cid: str, model: str, p: dict, n: int, prompt: int, cached: int | None, opts: dict, field: str):
    """The stream's events in v0.11.0's order: each choice's role chunk, then per generated piece one chunk per
    choice (the markers send none), the finish on the last; a `choices: []` usage chunk when include_usage."""
    base = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
    steps = [_deltas(p, field) for _ in range(n)]
    for i in range(n):
        first = {**base, "choices": [{"index": i, "delta": {"role": p["role"], "content": ""}, "logprobs": None,
                                      "finish_reason": None}], "prompt_token_ids": None}
        yield {**first, "usage": usage(prompt, 0, None, False, False)} if opts["continuous"] else first
    called = [False] * n
    for j in range(len(steps[0])):
        last = j == len(steps[0]) - 1
        for i in range(n):
            delta = steps[i][j]
            called[i] = called[i] or bool(delta and "id" in (delta.get("tool_calls") or [{}])[0])
            if delta is None and not last:
                continue
            choice = {"index": i, "delta": delta or {}, "logprobs": None, "finish_reason": None, "token_ids": None}
            if last:
                choice = {"index": i, "delta": delta or {}, "logprobs": None, "finish_reason": "tool_calls" if
                          called[i] else p["finish"], "stop_reason": p["stop_reason"], "token_ids": None}
            event = {**base, "choices": [choice]}
            yield {**event, "usage": usage(prompt, j + 1, None, False, False)} if opts["continuous"] else event
    if opts["include_usage"]:
        yield {**base, "choices": [], "usage": usage(prompt, p["completion_tokens"] * n, cached, opts["details"],
                                                     False, opts.get("reasoning"))}

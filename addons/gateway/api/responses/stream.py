"""Normalised chat chunks -> Responses API events, in the order strict clients check.

response.created, response.in_progress, then one item at a time (reasoning, message, tool calls), each
opened (`output_item.added`) before its content and closed (`.done` events) before the next one opens,
then exactly one terminal event. A tool call is opened as soon as its name is known and its arguments
are streamed as Qwen writes them: one `function_call_arguments.delta` per upstream fragment, or, for a
freeform (custom) tool, `custom_tool_call_input.delta` with the text decoded out of the `{"input": …}`
Qwen writes. A compaction request streams nothing until its summary is complete, then one `compaction`
item. No I/O; never raises on odd input.

Events are encoded by `encode` (SSE by default; the WebSocket transport sends the bare JSON).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from ... import sse
from .request import (
    CUSTOM,
    ToolRef,
    call_item,
    compaction_item,
    custom_call_item,
    custom_input,
    incomplete_reason,
    message_item,
    new_id,
    reasoning_item,
    response_object,
    search_call_item,
    tool_item,
    wants_sealed_reasoning,
)


def sse_event(payload: dict) -> bytes:
    return sse.encode(payload, event=payload["type"])


class InputDecoder:
    """The text of the first string property of a JSON object, decoded as the object's text arrives
    (`{"input": "line\\n…` -> `line⏎…`). `feed` returns the newly decoded text; `failed` when the arguments
    do not start like such an object (then nothing can be streamed)."""

    _decoder = json.JSONDecoder(strict=False)

    def __init__(self) -> None:
        self.raw = ""
        self.start: int | None = None  # index of the first character of the value
        self.cursor = 0  # raw[start:cursor] is decoded
        self.done = False
        self.failed = False
        self.text = ""

    def feed(self, fragment: str) -> str:
        self.raw += fragment
        if self.failed or self.done:
            return ""
        if self.start is None:
            self.start = self._value_start()
            if self.start is None:
                return ""
            self.cursor = self.start
        end, closed = self._safe_end()
        if end <= self.cursor:
            self.done = closed
            return ""
        try:
            piece = self._decoder.decode('"' + self.raw[self.cursor:end] + '"')
        except ValueError:
            self.failed = True
            return ""
        self.cursor = end
        self.done = closed
        self.text += piece
        return piece

    def _value_start(self) -> int | None:
        s, n = self.raw, len(self.raw)
        i = self._expect(0, '{"')
        if i is None:
            return None
        while i < n and s[i] != '"':  # the key
            i += 2 if s[i] == "\\" else 1
        if i >= n:
            return None
        return self._expect(i + 1, ':"')

    def _expect(self, i: int, chars: str) -> int | None:
        """Past `chars` (whitespace between them allowed) from `i`; None while more text is needed, and
        `failed` when the text is not the shape this reader follows."""
        s, n = self.raw, len(self.raw)
        for expect in chars:
            while i < n and s[i] in " \t\r\n":
                i += 1
            if i == n:
                return None
            if s[i] != expect:
                self.failed = True
                return None
            i += 1
        return i

    def _safe_end(self) -> tuple[int, bool]:
        """(where the decodable text ends, whether the closing quote was reached)."""
        s, i, n = self.raw, self.cursor, len(self.raw)
        while i < n:
            c = s[i]
            if c == '"':
                return i, True
            if c != "\\":
                i += 1
                continue
            if i + 1 >= n:
                return i, False
            if s[i + 1] != "u":
                i += 2
                continue
            if i + 6 > n:
                return i, False
            high = s[i + 2].lower() == "d" and s[i + 3].lower() in "89ab"
            after = s[i + 6:i + 8]
            if high and "\\u".startswith(after):  # a high surrogate goes with the \\uXXXX after it
                if i + 12 > n:
                    return i, False
                if after == "\\u":
                    i += 12
                    continue
            i += 6
        return n, False


class ResponsesStreamTranslator:
    def __init__(self, request: dict, *, response_id: str, created_at: int, tools: dict[str, ToolRef] | None = None,
                 seal: Callable[[str, dict], str] | None = None, compaction: bool = False,
                 encode: Callable[[dict], bytes] = sse_event) -> None:
        self.request = request
        self.response_id = response_id
        self.created_at = created_at
        self.tools = tools or {}
        self.seal = seal
        self.compaction = compaction
        self.encode = encode
        self.seq = 0
        self.output: list[dict] = []  # finished items
        self.open: dict | None = None  # the item being streamed
        self.calls: dict[int, dict] = {}  # chat tool index -> call state
        self.usage: dict | None = None
        self.finish_reason: str | None = None
        self.status = "in_progress"
        self.error: dict | None = None
        self.ended = False
        self.summary: str | None = None  # a compaction's summary, once complete
        self._summary_parts: list[str] = []

    # ---- events --------------------------------------------------------------------------------

    def _ev(self, type: str, **fields) -> bytes:
        payload = {"type": type, **fields, "sequence_number": self.seq}
        self.seq += 1
        return self.encode(payload)

    def response(self) -> dict:
        items = self.output + ([self.open["item"]] if self.open else [])
        incomplete = incomplete_reason(self.finish_reason) if self.status == "incomplete" else None
        return response_object(self.request, response_id=self.response_id, created_at=self.created_at,
                               status=self.status, output=items, usage=self.usage, error=self.error,
                               incomplete=incomplete)

    def _start(self) -> list[bytes]:
        if self.seq:
            return []
        r = self.response()
        return [self._ev("response.created", response=r), self._ev("response.in_progress", response=r)]

    # ---- items ---------------------------------------------------------------------------------

    def _open(self, kind: str, item: dict, **state) -> list[bytes]:
        out = self._close()
        index = len(self.output)
        self.open = {"kind": kind, "item": item, "index": index, "text": "", **state}
        out.append(self._ev("response.output_item.added", output_index=index, item=item))
        if kind == "reasoning":
            out.append(self._ev("response.reasoning_summary_part.added", item_id=item["id"], output_index=index,
                                summary_index=0, part={"type": "summary_text", "text": ""}))
        elif kind == "message":
            out.append(self._ev("response.content_part.added", item_id=item["id"], output_index=index,
                                content_index=0, part={"type": "output_text", "text": "", "annotations": [],
                                                       "logprobs": []}))
        return out

    def _close(self, status: str = "completed") -> list[bytes]:
        o, self.open = self.open, None
        if o is None:
            return []
        item_id, index, text, out = o["item"]["id"], o["index"], o["text"], []
        if o["kind"] == "reasoning":
            sealed = self.seal("reasoning", {"text": text}) if self.seal and wants_sealed_reasoning(
                self.request) and text else None
            item = reasoning_item(item_id, text, sealed)
            part = item["summary"][0]
            out.append(self._ev("response.reasoning_summary_text.done", item_id=item_id, output_index=index,
                                summary_index=0, text=text))
            out.append(self._ev("response.reasoning_summary_part.done", item_id=item_id, output_index=index,
                                summary_index=0, part=part))
        elif o["kind"] == "message":
            item = message_item(item_id, text, status)
            out.append(self._ev("response.output_text.done", item_id=item_id, output_index=index, content_index=0,
                                text=text, logprobs=[]))
            out.append(self._ev("response.content_part.done", item_id=item_id, output_index=index, content_index=0,
                                part=item["content"][0]))
        else:
            out += self._close_call(o, status)
            item = o["item"]
        self.output.append(item)
        out.append(self._ev("response.output_item.done", output_index=index, item=item))
        return out

    def _delta(self, kind: str, text: str) -> list[bytes]:
        if self.compaction:  # nothing is streamed: the summary comes whole, sealed
            if kind == "message":
                self._summary_parts.append(text)
            return []
        out: list[bytes] = []
        if self.open is None or self.open["kind"] != kind:
            item = reasoning_item(new_id("rs"), "") if kind == "reasoning" else message_item(new_id("msg"), "",
                                                                                               "in_progress")
            if kind == "reasoning":
                item["summary"] = []
            else:
                item["content"] = []
            out += self._open(kind, item)
        o = self.open
        o["text"] += text
        if kind == "reasoning":
            out.append(self._ev("response.reasoning_summary_text.delta", item_id=o["item"]["id"],
                                output_index=o["index"], summary_index=0, delta=text))
        else:
            out.append(self._ev("response.output_text.delta", item_id=o["item"]["id"], output_index=o["index"],
                                content_index=0, delta=text, logprobs=[]))
        return out

    # ---- tool calls ----------------------------------------------------------------------------

    def _tool(self, tc: dict) -> list[bytes]:
        idx = tc.get("index") if isinstance(tc.get("index"), int) else 0
        fn = tc.get("function") if isinstance(tc.get("function"), dict) else {}
        name, args = fn.get("name") or "", fn.get("arguments") or ""
        name = name if isinstance(name, str) else ""
        args = args if isinstance(args, str) else ""
        call = self.calls.get(idx)
        out: list[bytes] = []
        if call is None:
            call = self.calls[idx] = {"id": tc.get("id") if isinstance(tc.get("id"), str) and tc.get("id")
                                      else new_id("call"), "name": "", "args": "", "state": None}
        if call["state"] is not None and call["state"] is not self.open:
            return out  # a fragment for a call already closed: nothing valid can carry it
        if call["state"] is None:
            call["name"] += name
            call["args"] += args
            if call["name"] and (args or call["name"] in self.tools):
                out += self._open_call(call)
            return out
        if args:
            out += self._call_args(self.open, args)
        return out

    def _open_call(self, call: dict) -> list[bytes]:
        qname = call["name"]
        ref = self.tools.get(qname)
        item = tool_item(ref, qname, new_id("fc" if ref is None or ref.kind != CUSTOM else "ctc"), call["id"], "",
                         "in_progress")
        if item["type"] == "custom_tool_call":
            item["input"] = ""
        elif item["type"] == "tool_search_call":
            item["arguments"] = {}
        out = self._open("call", item, ref=ref, qname=qname, args="", decoder=InputDecoder(), sent="")
        call["state"] = self.open
        pending, call["args"] = call["args"], ""
        if pending:
            out += self._call_args(self.open, pending)
        return out

    def _call_args(self, o: dict, args: str) -> list[bytes]:
        o["args"] += args
        item, index = o["item"], o["index"]
        if item["type"] == "function_call":
            return [self._ev("response.function_call_arguments.delta", item_id=item["id"], output_index=index,
                             delta=args)]
        if item["type"] == "custom_tool_call":
            piece = o["decoder"].feed(args)
            if piece:
                o["sent"] += piece
                return [self._ev("response.custom_tool_call_input.delta", item_id=item["id"], output_index=index,
                                 delta=piece)]
        return []  # tool_search_call: no delta events; its arguments come whole in output_item.done

    def _close_call(self, o: dict, status: str) -> list[bytes]:
        item, index, args = o["item"], o["index"], o["args"]
        out = []
        if item["type"] == "function_call":
            done = call_item(item["id"], item["call_id"], item["name"], args, status, item.get("namespace"))
            out.append(self._ev("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                                name=item["name"], arguments=args))
        elif item["type"] == "custom_tool_call":
            text = custom_input(args)
            if not o["sent"] and text:
                out.append(self._ev("response.custom_tool_call_input.delta", item_id=item["id"], output_index=index,
                                    delta=text))
            done = custom_call_item(item["id"], item["call_id"], item["name"], text, status, item.get("namespace"))
            out.append(self._ev("response.custom_tool_call_input.done", item_id=item["id"], output_index=index,
                                input=text))
        else:
            done = search_call_item(item["id"], item["call_id"], args, status)
        o["item"] = done
        return out

    def _flush_calls(self) -> list[bytes]:
        """Calls whose name never matched a tool and that got no arguments: open (and close) them now."""
        out: list[bytes] = []
        for idx in sorted(self.calls):
            call = self.calls[idx]
            if call["state"] is None:
                call["name"] = call["name"] or "unknown_function"
                out += self._open_call(call)
        return out

    # ---- translator interface -----------------------------------------------------------------

    def feed(self, chunk: dict) -> list[bytes]:
        if self.ended or not isinstance(chunk, dict):
            return []
        out = self._start()
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue  # the Responses API has one output; n > 1 is not expressible
            delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
            if isinstance(delta.get("reasoning_content"), str) and delta["reasoning_content"]:
                out += self._delta("reasoning", delta["reasoning_content"])
            if isinstance(delta.get("content"), str) and delta["content"]:
                out += self._delta("message", delta["content"])
            for tc in delta.get("tool_calls") or []:
                if isinstance(tc, dict) and not self.compaction:
                    out += self._tool(tc)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return out

    def finish(self) -> list[bytes]:
        if self.ended:
            return []
        if self.compaction:
            return self._finish_compaction()
        out = self._start() + self._flush_calls() + self._close()
        self.ended = True
        if incomplete_reason(self.finish_reason):
            self.status = "incomplete"
            return out + [self._ev("response.incomplete", response=self.response())]
        self.status = "completed"
        return out + [self._ev("response.completed", response=self.response())]

    def _finish_compaction(self) -> list[bytes]:
        summary = "".join(self._summary_parts).strip()
        if not summary or self.seal is None:
            return self.fail({"message": "Qwen returned no summary to compact the conversation with.",
                              "type": "server_error"})
        out = self._start()
        self.ended = True
        self.summary = summary
        item = compaction_item(summary, self.seal, str(self.request.get("model") or ""))
        out.append(self._ev("response.output_item.added", output_index=0, item=item))
        out.append(self._ev("response.output_item.done", output_index=0, item=item))
        self.output.append(item)
        self.status = "completed"
        return out + [self._ev("response.completed", response=self.response())]

    def fail(self, error: dict) -> list[bytes]:
        if self.ended:
            return []
        out = self._start() + self._close("incomplete")
        self.ended = True
        self.status = "failed"
        self.error = {"code": error_code(error), "message": str(error.get("message") or "Qwen failed mid-stream.")}
        return out + [self._ev("response.failed", response=self.response())]


def error_code(error: dict) -> str:
    """The code a Response's `error` carries: OpenAI's for rate limits and context overflow (what clients such
    as Codex act on), else invalid_prompt for a refused request and server_error for the rest."""
    if error.get("code") in ("rate_limit_exceeded", "context_length_exceeded"):
        return str(error["code"])
    return "invalid_prompt" if error.get("type") == "invalid_request_error" else "server_error"

"""Normalised chat chunks -> Responses API events, in the order strict clients check.

response.created, response.in_progress, then one item at a time (reasoning, message, function
calls), each opened (`output_item.added`) before its content and closed (`.done` events) before
the next one opens, then exactly one terminal event. No I/O; never raises on odd input.
"""

from __future__ import annotations

from . import sse
from .responses import call_item, incomplete_reason, message_item, new_id, reasoning_item, response_object


class ResponsesStreamTranslator:
    def __init__(self, request: dict, *, response_id: str, created_at: int) -> None:
        self.request = request
        self.response_id = response_id
        self.created_at = created_at
        self.seq = 0
        self.output: list[dict] = []  # finished items
        self.open: dict | None = None  # the item being streamed: {"kind", "item", "index", "text"}
        self.calls: dict[int, dict] = {}  # chat tool index -> {"id", "name", "args", "flushed"}
        self.usage: dict | None = None
        self.finish_reason: str | None = None
        self.status = "in_progress"
        self.error: dict | None = None
        self.ended = False

    # ---- events --------------------------------------------------------------------------------

    def _ev(self, type: str, **fields) -> bytes:
        payload = {"type": type, **fields, "sequence_number": self.seq}
        self.seq += 1
        return sse.encode(payload, event=type)

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

    def _open(self, kind: str, item: dict) -> list[bytes]:
        out = self._close()
        index = len(self.output)
        self.open = {"kind": kind, "item": item, "index": index, "text": ""}
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
            item = reasoning_item(item_id, text)
            part = item["summary"][0]
            out.append(self._ev("response.reasoning_summary_text.done", item_id=item_id, output_index=index,
                                summary_index=0, text=text))
            out.append(self._ev("response.reasoning_summary_part.done", item_id=item_id, output_index=index,
                                summary_index=0, part=part))
        else:
            item = message_item(item_id, text, status)
            out.append(self._ev("response.output_text.done", item_id=item_id, output_index=index, content_index=0,
                                text=text, logprobs=[]))
            out.append(self._ev("response.content_part.done", item_id=item_id, output_index=index, content_index=0,
                                part=item["content"][0]))
        self.output.append(item)
        out.append(self._ev("response.output_item.done", output_index=index, item=item))
        return out

    def _flush_calls(self, upto: int | None = None) -> list[bytes]:
        """Emit finished function calls, whole: added, arguments delta, arguments done, item done."""
        out: list[bytes] = []
        for idx in sorted(self.calls):
            call = self.calls[idx]
            if call["flushed"] or (upto is not None and idx >= upto):
                continue
            call["flushed"] = True
            out += self._close()
            index = len(self.output)
            item_id = new_id("fc")
            name = call["name"] or "unknown_function"
            out.append(self._ev("response.output_item.added", output_index=index,
                                item=call_item(item_id, call["id"], name, "", "in_progress")))
            if call["args"]:
                out.append(self._ev("response.function_call_arguments.delta", item_id=item_id, output_index=index,
                                    delta=call["args"]))
            out.append(self._ev("response.function_call_arguments.done", item_id=item_id, output_index=index,
                                name=name, arguments=call["args"]))
            item = call_item(item_id, call["id"], name, call["args"])
            self.output.append(item)
            out.append(self._ev("response.output_item.done", output_index=index, item=item))
        return out

    def _delta(self, kind: str, text: str) -> list[bytes]:
        out: list[bytes] = []
        if self.open is None or self.open["kind"] != kind:
            out += self._flush_calls()
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

    def _tool(self, tc: dict) -> list[bytes]:
        idx = tc.get("index") if isinstance(tc.get("index"), int) else 0
        fn = tc.get("function") if isinstance(tc.get("function"), dict) else {}
        call = self.calls.get(idx)
        out: list[bytes] = []
        if call is None:
            out += self._flush_calls(upto=idx)  # calls arrive in order: earlier ones are complete
            out += self._close()
            call = self.calls[idx] = {"id": tc.get("id") or new_id("call"), "name": "", "args": "", "flushed": False}
        if call["flushed"]:
            return out  # a fragment for a call already sent whole: nothing valid can carry it
        call["name"] += fn.get("name") or ""
        call["args"] += fn.get("arguments") or ""
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
                if isinstance(tc, dict):
                    out += self._tool(tc)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return out

    def finish(self) -> list[bytes]:
        if self.ended:
            return []
        out = self._start() + self._close() + self._flush_calls()
        self.ended = True
        if incomplete_reason(self.finish_reason):
            self.status = "incomplete"
            return out + [self._ev("response.incomplete", response=self.response())]
        self.status = "completed"
        return out + [self._ev("response.completed", response=self.response())]

    def fail(self, error: dict) -> list[bytes]:
        if self.ended:
            return []
        out = self._start() + self._close("incomplete")
        self.ended = True
        self.status = "failed"
        self.error = {"code": _error_code(error), "message": str(error.get("message") or "Qwen failed mid-stream.")}
        return out + [self._ev("response.failed", response=self.response())]


def _error_code(error: dict) -> str:
    """One of the codes a Response's `error` may carry."""
    if error.get("code") == "rate_limit_exceeded":
        return "rate_limit_exceeded"
    return "invalid_prompt" if error.get("type") == "invalid_request_error" else "server_error"

"""Normalised chat chunks -> Responses API events, in the order strict clients check: response.created,
response.in_progress, then one item at a time (reasoning, message, tool calls), each opened
(`output_item.added`) before its content and closed (`.done` events) before the next one opens, then exactly
one terminal event. A tool call opens as soon as its name is known, its arguments streamed as Qwen writes them
(stream_call.py); a compaction request streams nothing until its summary is complete, then one `compaction`
item. Events are encoded by `encode` (SSE by default; the WebSocket sends the bare JSON), their shapes are in
events.py and stream_parts.py. No I/O; never raises on odd input."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal, cast

from .compaction import compaction_item
from .events import StreamEvent
from .fields import cap_calls
from .items import message_item, new_id, reasoning_item, tool_item, wants_sealed_reasoning, wants_summary
from .output import completion_time, incomplete_reason, response_object
from .shapes import ItemStatus, MessageItem, OutputItem, ReasoningItem, Response, ResponseError
from ..websearch import responses_annotations, search_call_item
from .stream_call import StreamedCall
from .stream_parts import ChatCall, OpenText, error_code, sse_event
from .stream_search import annotations_added, search_call
from .tools import CUSTOM, ToolRef


class ResponsesStreamTranslator:
    """One stream's events (the chat form's StreamTranslator): `feed` per chunk, then `finish` or `fail`."""

    def __init__(self, request: dict, *, response_id: str, created_at: int, tools: dict[str, ToolRef] | None = None,
                 seal: Callable[[str, dict], str] | None = None, compaction: bool = False,
                 encode: Callable[[dict], bytes] = sse_event) -> None:
        self.request = request
        self.response_id = response_id
        self.created_at = created_at
        self.tools = tools or {}
        self.seal = seal
        self.compaction = compaction
        # Held as taking Any: an event is a dict at run time, but mypy keeps TypedDicts out of `dict` parameters
        # (the callee could add any key), and a cast per event would cost a call on the hot path.
        self.encode: Callable[[Any], bytes] = encode
        self.seq = 0
        self.output: list[OutputItem] = []  # finished items
        self.open: OpenText | StreamedCall | None = None  # the item being streamed
        self.calls: dict[int, ChatCall] = {}  # chat tool index -> call state
        self.usage: dict | None = None
        self.finish_reason: str | None = None
        self.status = "in_progress"
        self.error: ResponseError | None = None
        self.completed_at: int | None = None  # when it completed (set with the status)
        self.ended = False
        self.summary: str | None = None  # a compaction's summary, once complete
        self.summarise = wants_summary(request)  # reasoning text in the items only when reasoning.summary asked
        self.reasoning: dict[str, str] = {}  # reasoning item id -> its text (history.py seals it for later turns)
        self._summary_parts: list[str] = []

    # ---- events --------------------------------------------------------------------------------

    def _ev(self, event: StreamEvent) -> bytes:
        event["sequence_number"] = self.seq  # in place: each event is a fresh literal, sent once
        self.seq += 1
        return self.encode(event)

    def response(self) -> dict[str, Any]:
        """The Response so far. Typed as a plain dict for the endpoints (endpoints.py, socket.py), whose
        answers are dicts."""
        return cast(dict[str, Any], self._response())

    def _response(self) -> Response:
        items = self.output + ([self.open.item] if self.open is not None else [])
        incomplete = incomplete_reason(self.finish_reason) if self.status == "incomplete" else None
        return response_object(self.request, response_id=self.response_id, created_at=self.created_at,
                               status=self.status, output=items, usage=self.usage, error=self.error,
                               incomplete=incomplete, completed_at=self.completed_at)

    def _start(self) -> list[bytes]:
        if self.seq:
            return []
        r = self._response()
        return [self._ev({"type": "response.created", "response": r}),
                self._ev({"type": "response.in_progress", "response": r})]

    # ---- items ---------------------------------------------------------------------------------

    def _open(self, o: OpenText | StreamedCall) -> list[bytes]:
        out = self._close()
        o.index = index = len(self.output)
        self.open = o
        item = o.item
        out.append(self._ev({"type": "response.output_item.added", "output_index": index, "item": item}))
        if item["type"] == "reasoning" and self.summarise:
            out.append(self._ev({"type": "response.reasoning_summary_part.added", "item_id": item["id"],
                                 "output_index": index, "summary_index": 0,
                                 "part": {"type": "summary_text", "text": ""}}))
        elif item["type"] == "message":
            out.append(self._ev({"type": "response.content_part.added", "item_id": item["id"], "output_index": index,
                                 "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": [],
                                                              "logprobs": []}}))
        return out

    def _close(self, status: ItemStatus = "completed") -> list[bytes]:
        o, self.open = self.open, None
        if o is None:
            return []
        item_id, index = o.item["id"], o.index
        out: list[bytes] = []
        item: OutputItem
        if isinstance(o, StreamedCall):
            out += o.close(status)
            item = o.item
        elif o.kind == "reasoning":
            text = o.text
            sealed = self.seal("reasoning", {"text": text}) if self.seal and wants_sealed_reasoning(
                self.request) and text else None
            item = reasoning_item(item_id, text, sealed, self.summarise)
            self.reasoning[item_id] = text
            if self.summarise:
                out.append(self._ev({"type": "response.reasoning_summary_text.done", "item_id": item_id,
                                     "output_index": index, "summary_index": 0, "text": text}))
                out.append(self._ev({"type": "response.reasoning_summary_part.done", "item_id": item_id,
                                     "output_index": index, "summary_index": 0, "part": item["summary"][0]}))
        else:
            text = o.text
            item = message_item(item_id, text, status)
            item["content"][0]["annotations"] = list(o.annotations)
            out.append(self._ev({"type": "response.output_text.done", "item_id": item_id, "output_index": index,
                                 "content_index": 0, "text": text, "logprobs": []}))
            out.append(self._ev({"type": "response.content_part.done", "item_id": item_id, "output_index": index,
                                 "content_index": 0, "part": item["content"][0]}))
        self.output.append(item)
        out.append(self._ev({"type": "response.output_item.done", "output_index": index, "item": item}))
        return out

    def _delta(self, kind: Literal["reasoning", "message"], text: str) -> list[bytes]:
        if self.compaction:  # nothing is streamed: the summary comes whole, sealed
            if kind == "message":
                self._summary_parts.append(text)
            return []
        out: list[bytes] = []
        o = self.open
        if not isinstance(o, OpenText) or o.kind != kind:
            item: ReasoningItem | MessageItem
            if kind == "reasoning":
                item = reasoning_item(new_id("rs"), "")
                item["summary"] = []
            else:
                item = message_item(new_id("msg"), "", "in_progress")
                item["content"] = []
            o = OpenText(kind, item)
            out += self._open(o)
        o.text += text
        if kind == "message":
            out.append(self._ev({"type": "response.output_text.delta", "item_id": o.item["id"],
                                 "output_index": o.index, "content_index": 0, "delta": text, "logprobs": []}))
        elif self.summarise:  # else the text is only kept: for the item's sealed content, and the history
            out.append(self._ev({"type": "response.reasoning_summary_text.delta", "item_id": o.item["id"],
                                 "output_index": o.index, "summary_index": 0, "delta": text}))
        return out

    # ---- tool calls ----------------------------------------------------------------------------

    def _tool(self, tc: dict) -> list[bytes]:
        idx = i if isinstance(i := tc.get("index"), int) else 0
        fn = f if isinstance(f := tc.get("function"), dict) else {}
        name, args = fn.get("name") or "", fn.get("arguments") or ""
        name = name if isinstance(name, str) else ""
        args = args if isinstance(args, str) else ""
        call = self.calls.get(idx)
        out: list[bytes] = []
        if call is None and (cap := cap_calls(self.request)) is not None and len(self.calls) >= cap:
            return out  # beyond max_tool_calls: dropped
        if call is None:
            call = self.calls[idx] = ChatCall(c if isinstance(c := tc.get("id"), str) and c else new_id("call"))
        if call.state is not None and call.state is not self.open:
            return out  # a fragment for a call already closed: nothing valid can carry it
        if call.state is None:
            call.name += name
            call.args += args
            if call.name and (args or call.name in self.tools):
                out += self._open_call(call)
            return out
        if args:
            out += call.state.add(args)
        return out

    def _open_call(self, call: ChatCall) -> list[bytes]:
        qname = call.name
        ref = self.tools.get(qname)
        item = tool_item(ref, qname, new_id("fc" if ref is None or ref.kind != CUSTOM else "ctc"), call.id, "",
                         "in_progress")
        if item["type"] == "custom_tool_call":
            item["input"] = ""
        elif item["type"] == "tool_search_call":
            item["arguments"] = {}
        o = StreamedCall(item, self._ev)
        out = self._open(o)
        call.state = o
        pending, call.args = call.args, ""
        if pending:
            out += o.add(pending)
        return out

    def _flush_calls(self) -> list[bytes]:
        """Calls whose name never matched a tool and that got no arguments: open (and close) them now."""
        out: list[bytes] = []
        for idx in sorted(self.calls):
            call = self.calls[idx]
            if call.state is None:
                call.name = call.name or "unknown_function"
                out += self._open_call(call)
        return out

    # ---- translator interface -----------------------------------------------------------------

    def feed(self, chunk: Mapping[str, Any]) -> list[bytes]:
        if self.ended or not isinstance(chunk, dict):
            return []
        out = self._start()
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        search = None if self.compaction else search_call_item(chunk.get("search_info"), self.request)
        if search is not None:  # Qwen searched: the call is done before anything of the answer streams
            out += self._close()
            out += search_call(self._ev, len(self.output), search)
            self.output.append(search)
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue  # the Responses API has one output; n > 1 is not expressible
            delta = d if isinstance(d := choice.get("delta"), dict) else {}
            if isinstance(delta.get("reasoning_content"), str) and delta["reasoning_content"]:
                out += self._delta("reasoning", delta["reasoning_content"])
            if isinstance(delta.get("content"), str) and delta["content"]:
                out += self._delta("message", delta["content"])
            o = self.open
            if delta.get("annotations") and isinstance(o, OpenText) and o.kind == "message":
                cited = responses_annotations(delta["annotations"])
                out += annotations_added(self._ev, o.item["id"], o.index, len(o.annotations), cited)
                o.annotations += cited
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
        incomplete = incomplete_reason(self.finish_reason)
        out = self._start() + self._flush_calls() + self._close("incomplete" if incomplete else "completed")
        self.ended = True
        if incomplete:
            self.status = "incomplete"
            return out + [self._ev({"type": "response.incomplete", "response": self._response()})]
        self.status, self.completed_at = "completed", completion_time("completed")
        return out + [self._ev({"type": "response.completed", "response": self._response()})]

    def _finish_compaction(self) -> list[bytes]:
        summary = "".join(self._summary_parts).strip()
        if not summary or self.seal is None:
            return self.fail({"message": "Qwen returned no summary to compact the conversation with.",
                              "type": "server_error"})
        out = self._start()
        self.ended = True
        self.summary = summary
        item = compaction_item(summary, self.seal, str(self.request.get("model") or ""))
        out.append(self._ev({"type": "response.output_item.added", "output_index": 0, "item": item}))
        out.append(self._ev({"type": "response.output_item.done", "output_index": 0, "item": item}))
        self.output.append(item)
        self.status, self.completed_at = "completed", completion_time("completed")
        return out + [self._ev({"type": "response.completed", "response": self._response()})]

    def fail(self, error: dict) -> list[bytes]:
        if self.ended:
            return []
        out = self._start() + self._close("incomplete")
        self.ended = True
        self.status = "failed"
        self.error = {"code": error_code(error), "message": str(error.get("message") or "Qwen failed mid-stream.")}
        return out + [self._ev({"type": "response.failed", "response": self._response()})]

    def unkept(self, held: list[bytes], error: dict) -> list[bytes]:
        """`finish`'s events (`held`, not sent yet) with their terminal event replaced by `response.failed`:
        the gateway could not keep (store) the response, so it must not be reported complete."""
        self.seq -= 1  # the terminal event is taken back: its sequence number goes to the failure
        self.status = "failed"
        self.error = {"code": error_code(error), "message": str(error.get("message") or "not stored")}
        return held[:-1] + [self._ev({"type": "response.failed", "response": self._response()})]

    def cancel(self) -> list[bytes]:
        """A background response cancelled: the item being streamed ends incomplete; no event says more (the
        spec has no terminal event for it), the Response's status is `cancelled`."""
        if self.ended:
            return []
        out = self._close("incomplete")
        self.ended = True
        self.status = "cancelled"
        return out

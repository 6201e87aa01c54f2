"""One tool call streamed to a Responses client (for stream.py): the delta events of its arguments as Qwen
writes them, then the `.done` events and the finished item.

A `function_call` streams the arguments as they come (`function_call_arguments.delta`); a
`custom_tool_call` streams the freeform text decoded out of the `{"input": …}` Qwen writes
(`custom_tool_call_input.delta`, input_decoder.py), or, when that cannot be decoded as it comes, the whole
text at the end; a `tool_search_call` streams nothing: its arguments come whole in `output_item.done`.
"""

from __future__ import annotations

from collections.abc import Callable

from .events import StreamEvent
from .input_decoder import InputDecoder
from .items import call_item, custom_call_item, custom_input, search_call_item
from .shapes import CallItem, ItemStatus


class StreamedCall:
    """The open tool call: its item, the arguments so far, and for a custom tool the input text sent."""

    __slots__ = ("item", "index", "ev", "args", "decoder", "sent")

    def __init__(self, item: CallItem, ev: Callable[[StreamEvent], bytes]) -> None:
        self.item = item
        self.index = 0  # its output_index: set when it is opened
        self.ev = ev  # the translator's: stamps the sequence number and encodes
        self.args = ""
        self.decoder = InputDecoder()
        self.sent = ""  # the input text sent in delta events

    def add(self, args: str) -> list[bytes]:
        """A fragment of the arguments: its delta event, if the item has one."""
        self.args += args
        item, index = self.item, self.index
        if item["type"] == "function_call":
            return [self.ev({"type": "response.function_call_arguments.delta", "item_id": item["id"],
                             "output_index": index, "delta": args})]
        if item["type"] == "custom_tool_call":
            piece = self.decoder.feed(args)
            if piece:
                self.sent += piece
                return [self.ev({"type": "response.custom_tool_call_input.delta", "item_id": item["id"],
                                 "output_index": index, "delta": piece})]
        return []  # tool_search_call: no delta events; its arguments come whole in output_item.done

    def close(self, status: ItemStatus) -> list[bytes]:
        """The `.done` events; `item` becomes the finished item."""
        item, index, args = self.item, self.index, self.args
        out: list[bytes] = []
        done: CallItem
        if item["type"] == "function_call":
            done = call_item(item["id"], item["call_id"], item["name"], args, status, item.get("namespace"))
            out.append(self.ev({"type": "response.function_call_arguments.done", "item_id": item["id"],
                                "output_index": index, "name": item["name"], "arguments": args}))
        elif item["type"] == "custom_tool_call":
            text = custom_input(args)
            if not self.sent and text:
                out.append(self.ev({"type": "response.custom_tool_call_input.delta", "item_id": item["id"],
                                    "output_index": index, "delta": text}))
            done = custom_call_item(item["id"], item["call_id"], item["name"], text, status, item.get("namespace"))
            out.append(self.ev({"type": "response.custom_tool_call_input.done", "item_id": item["id"],
                                "output_index": index, "input": text}))
        else:
            done = search_call_item(item["id"], item["call_id"], args, status)
        self.item = done
        return out

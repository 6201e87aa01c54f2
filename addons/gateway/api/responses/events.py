"""The shapes of the Responses stream events the stream translator (stream.py) sends. Types only.

Each event is written as a dict literal where it is sent, its fields in the order OpenAI sends them; the
translator stamps `sequence_number` last as it encodes the event, hence NotRequired here.
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

from .shapes import OutputItem, OutputText, Response, SummaryText


class _Event(TypedDict):
    sequence_number: NotRequired[int]  # stamped by the translator as it sends the event


class ResponseEvent(_Event):
    type: Literal["response.created", "response.in_progress", "response.completed", "response.incomplete",
                  "response.failed"]
    response: Response


class OutputItemEvent(_Event):
    type: Literal["response.output_item.added", "response.output_item.done"]
    output_index: int
    item: OutputItem


class SummaryPartEvent(_Event):
    type: Literal["response.reasoning_summary_part.added", "response.reasoning_summary_part.done"]
    item_id: str
    output_index: int
    summary_index: int
    part: SummaryText


class SummaryTextDelta(_Event):
    type: Literal["response.reasoning_summary_text.delta"]
    item_id: str
    output_index: int
    summary_index: int
    delta: str


class SummaryTextDone(_Event):
    type: Literal["response.reasoning_summary_text.done"]
    item_id: str
    output_index: int
    summary_index: int
    text: str


class ContentPartEvent(_Event):
    type: Literal["response.content_part.added", "response.content_part.done"]
    item_id: str
    output_index: int
    content_index: int
    part: OutputText


class OutputTextDelta(_Event):
    type: Literal["response.output_text.delta"]
    item_id: str
    output_index: int
    content_index: int
    delta: str
    logprobs: list[object]


class OutputTextDone(_Event):
    type: Literal["response.output_text.done"]
    item_id: str
    output_index: int
    content_index: int
    text: str
    logprobs: list[object]


class CallDelta(_Event):
    """A function call's arguments, or a custom tool call's input, as Qwen writes them."""

    type: Literal["response.function_call_arguments.delta", "response.custom_tool_call_input.delta"]
    item_id: str
    output_index: int
    delta: str


class ArgumentsDone(_Event):
    type: Literal["response.function_call_arguments.done"]
    item_id: str
    output_index: int
    name: str
    arguments: str


class CustomInputDone(_Event):
    type: Literal["response.custom_tool_call_input.done"]
    item_id: str
    output_index: int
    input: str


class WebSearchCallEvent(_Event):
    type: Literal["response.web_search_call.in_progress", "response.web_search_call.searching",
                  "response.web_search_call.completed"]
    output_index: int
    item_id: str


class AnnotationAdded(_Event):
    type: Literal["response.output_text.annotation.added"]
    item_id: str
    output_index: int
    content_index: int
    annotation_index: int
    annotation: dict


StreamEvent = (ResponseEvent | OutputItemEvent | SummaryPartEvent | SummaryTextDelta | SummaryTextDone
               | ContentPartEvent | OutputTextDelta | OutputTextDone | CallDelta | ArgumentsDone | CustomInputDone
               | WebSearchCallEvent | AnnotationAdded)

"""The shapes of what the gateway builds for a Responses client: the Response object, its output items, its
usage. Types only (TypedDicts are plain dicts at run time): a misspelt or missing field fails the type check,
not a strict client. The stream events that carry them are in events.py.

What is echoed from the client's request is typed `object` (it goes back as sent); what the client sends
(request bodies, input items) stays `dict`: it is read defensively, never trusted to have a shape.
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

from ..websearch import WebSearchCallItem

ItemStatus = Literal["in_progress", "completed", "incomplete"]


class SummaryText(TypedDict):
    type: Literal["summary_text"]
    text: str


class OutputText(TypedDict):
    type: Literal["output_text"]
    text: str
    annotations: list[object]  # url_citation annotations when Qwen searched the web (websearch.py)
    logprobs: list[object]  # always empty: not asked of Qwen


class ReasoningItem(TypedDict):
    type: Literal["reasoning"]
    id: str
    summary: list[SummaryText]
    encrypted_content: NotRequired[str]  # sealed (seal.py) when the request's include asks for it


class MessageItem(TypedDict):
    type: Literal["message"]
    id: str
    status: ItemStatus
    role: Literal["assistant"]
    content: list[OutputText]


class FunctionCallItem(TypedDict):
    type: Literal["function_call"]
    id: str
    call_id: str
    name: str
    arguments: str
    status: ItemStatus
    namespace: NotRequired[str]


class CustomToolCallItem(TypedDict):
    type: Literal["custom_tool_call"]
    id: str
    call_id: str
    name: str
    input: str
    status: ItemStatus
    namespace: NotRequired[str]


class ToolSearchCallItem(TypedDict):
    type: Literal["tool_search_call"]
    id: str
    call_id: str
    execution: Literal["client"]
    arguments: object  # the JSON value Qwen wrote (an object, as a rule)
    status: ItemStatus


class CompactionItem(TypedDict):
    type: Literal["compaction"]
    id: str
    encrypted_content: str


CallItem = FunctionCallItem | CustomToolCallItem | ToolSearchCallItem
OutputItem = ReasoningItem | MessageItem | CallItem | CompactionItem | WebSearchCallItem


class InputTokensDetails(TypedDict):
    cached_tokens: int
    cache_write_tokens: int


class OutputTokensDetails(TypedDict):
    reasoning_tokens: int


class Usage(TypedDict):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int


class ResponseError(TypedDict):
    code: str
    message: str


class IncompleteDetails(TypedDict):
    reason: str


class Response(TypedDict):
    """Every field OpenAI's schema requires and the Open Responses spec's besides, in the order response_object
    writes them."""

    id: str
    object: Literal["response"]
    created_at: int
    status: str  # "queued" | "in_progress" | "completed" | "incomplete" | "failed" | "cancelled"
    completed_at: int | None  # unix seconds, once completed (the Open Responses spec requires it)
    background: bool
    error: ResponseError | None
    incomplete_details: IncompleteDetails | None
    instructions: str | None
    max_output_tokens: object
    max_tool_calls: int | None
    model: str
    output: list[OutputItem]
    parallel_tool_calls: bool
    previous_response_id: object
    reasoning: dict | None
    service_tier: str
    store: bool
    temperature: float  # the values used: the client's, else the API's defaults (never null)
    top_p: float
    presence_penalty: float  # required by the Open Responses spec; OpenAI's request defines none: 0.0
    frequency_penalty: float
    text: dict
    tool_choice: object  # as the request sent it
    tools: list[dict]
    top_logprobs: int
    truncation: str  # "auto" | "disabled", as the request sent it
    usage: Usage | None  # null until Qwen reports it
    metadata: dict
    prompt_cache_key: str | None
    safety_identifier: str | None
    user: str | None

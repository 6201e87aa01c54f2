"""Web search, Qwen-native (api/websearch.py, upstream/dashscope/search.py): each dialect's search tool as the
pivot's `web_search_options`, DashScope's `enable_search` + `search_options` (refused or dropped where search is
impossible), and Qwen's sources (`search_info` + `[ref_N]` markers) as each client's citations, whole and
streamed (markers split across chunks)."""

from __future__ import annotations

from types import SimpleNamespace
import json

import pytest

from helpers.openai_schema import validate, validate_stream_event
from qwen_gateway.api.chat import CHAT
from qwen_gateway.api.messages.request import to_chat as messages_to_chat
from qwen_gateway.api.messages.response import chat_to_message
from qwen_gateway.api.messages.stream import MessagesStreamTranslator
from qwen_gateway.api.responses.output import chat_to_response
from qwen_gateway.api.responses.request import translate
from qwen_gateway.api.responses.stream import ResponsesStreamTranslator
from qwen_gateway.errors import GatewayError
from qwen_gateway.sse import SSEDecoder
from qwen_gateway.upstream.dashscope.answer import qwen_to_chat
from qwen_gateway.upstream.dashscope.request import chat_to_qwen
from qwen_gateway.upstream.dashscope.search import can_search, url_citations
from qwen_gateway.upstream.dashscope.stream import ChunkNormalizer

USER = [{"role": "user", "content": "news?"}]
INFO = {"search_results": [
    {"index": 1, "title": "One", "url": "https://one.example/a", "site_name": "One", "icon": ""},
    {"index": 2, "title": "", "url": "https://two.example/b", "site_name": "Two", "icon": ""}]}
TEXT = "Rain today[ref_1]. Sun tomorrow[ref_2]. Unknown[ref_9]."
FN = {"type": "function", "name": "exec_command", "parameters": {"type": "object", "properties": {}}}


def qwen(body: dict, model: str = "qwen-max", oauth: bool = False, notes: list[str] | None = None) -> dict:
    return chat_to_qwen({"messages": USER, **body}, model=model, oauth=oauth, notes=notes)


# ---- the request: DashScope's side ------------------------------------------------------------------------

def test_web_search_options_become_enable_search_with_sources_and_citation_markers():
    out = qwen({"web_search_options": {"search_context_size": "high"}})
    assert "web_search_options" not in out
    assert out["enable_search"] is True
    assert out["search_options"] == {"enable_source": True, "enable_citation": True,
                                     "citation_format": "[ref_<number>]", "search_strategy": "max"}
    low = qwen({"web_search_options": {"search_context_size": "low", "forced": True}}, model="qwen3.6-plus")
    assert low["search_options"]["search_strategy"] == "turbo" and low["search_options"]["forced_search"] is True
    assert "search_strategy" not in qwen({"web_search_options": {}})["search_options"]  # medium: DashScope's own
    assert "enable_search" not in qwen({})


@pytest.mark.parametrize("model,oauth,why", [("qwen3-coder-plus", False, "qwen3-coder-plus cannot search"),
                                             ("coder-model", True, "Qwen OAuth accounts"),
                                             ("qwen3-vl-plus", False, "qwen3-vl-plus cannot search")])
def test_a_demanded_search_without_search_is_a_400_naming_the_parameter(model, oauth, why):
    with pytest.raises(GatewayError) as e:
        qwen({"web_search_options": {}}, model=model, oauth=oauth)
    assert e.value.status == 400 and e.value.param == "web_search_options" and e.value.code == "unsupported_value"
    assert why in e.value.message and "qwen-max" in e.value.message and "qwen3.6-plus" in e.value.message
    with pytest.raises(GatewayError) as e:
        qwen({"web_search_options": {"forced": True, "param": "tool_choice"}}, model=model, oauth=oauth)
    assert e.value.param == "tool_choice"


def test_an_offered_search_without_search_is_dropped_with_a_note():
    notes: list[str] = []
    out = qwen({"web_search_options": {"optional": True, "param": "tools"}}, model="qwen3-coder-plus", notes=notes)
    assert "enable_search" not in out and "web_search_options" not in out
    assert notes == ["web search dropped: qwen3-coder-plus cannot search"]


def test_which_models_search():
    for model in ("qwen-max", "qwen-plus-latest", "qwen-flash", "qwen3-max", "qwen3.5-plus", "qwen3.7-plus",
                  "qwen3.8-max"):
        assert can_search(model), model
    for model in ("coder-model", "vision-model", "qwen3-coder-plus", "qwen3-coder-flash",
                  "qwen3-235b-a22b-thinking-2507",
                  "qwen3-vl-plus", "text-embedding-v4"):
        assert not can_search(model), model


# ---- the request: the client dialects ---------------------------------------------------------------------

def test_chat_web_search_options_are_checked_and_always_a_demand():
    body = {"model": "m", "messages": USER, "web_search_options": {"search_context_size": "low", "optional": True,
                                                                   "forced": True, "param": "x"}}
    ex = SimpleNamespace(notes=[])  # what the chat endpoint reads of its exchange
    assert CHAT.to_chat(body, ex)["web_search_options"] == {"search_context_size": "low"}
    for bad, param in (("yes", "web_search_options"), ({"search_context_size": "huge"},
                                                       "web_search_options.search_context_size")):
        with pytest.raises(GatewayError) as e:
            CHAT.to_chat({**body, "web_search_options": bad}, ex)
        assert e.value.status == 400 and e.value.param == param


def test_a_responses_web_search_tool_is_offered_or_forced():
    offered = translate({"model": "m", "input": "x", "tools": [FN, {"type": "web_search"}]}).chat
    assert offered["web_search_options"] == {"optional": True, "param": "tools"}
    assert [t["function"]["name"] for t in offered["tools"]] == ["exec_command"]
    forced = translate({"model": "m", "input": "x", "tools": [FN, {"type": "web_search_preview",
                                                                   "search_context_size": "high"}],
                        "tool_choice": {"type": "web_search_preview"}}).chat
    assert forced["web_search_options"] == {"optional": False, "param": "tool_choice", "forced": True,
                                            "search_context_size": "high"}
    only = translate({"model": "m", "input": "x", "tools": [{"type": "web_search"}], "tool_choice": "required"}).chat
    assert only["web_search_options"]["forced"] is True and "tools" not in only
    with pytest.raises(GatewayError) as e:
        translate({"model": "m", "input": "x", "tools": [FN], "tool_choice": {"type": "web_search_preview"}})
    assert e.value.status == 400 and e.value.param == "tool_choice"


def test_an_anthropic_web_search_tool_is_offered_or_forced():
    base = {"model": "claude-sonnet-5-5", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
    tool = {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}
    notes: list[str] = []
    offered = messages_to_chat({**base, "tools": [tool]}, notes, lambda t, s: True)
    assert offered["web_search_options"] == {"optional": True, "param": "tools"} and "tools" not in offered
    assert any("max_uses" in n for n in notes)
    forced = messages_to_chat({**base, "tools": [tool], "tool_choice": {"type": "tool", "name": "web_search"}},
                              [], lambda t, s: True)
    assert forced["web_search_options"]["forced"] is True and "tool_choice" not in forced


# ---- the answer ---------------------------------------------------------------------------------------------

def test_markers_of_known_sources_become_url_citations_spanning_them():
    found = {1: {"url": "https://one.example/a", "title": "One"}, 2: {"url": "https://two.example/b", "title": "Two"}}
    cites = url_citations(TEXT, found)
    assert [TEXT[c["url_citation"]["start_index"]:c["url_citation"]["end_index"]] for c in cites] == ["[ref_1]",
                                                                                                    "[ref_2]"]
    assert cites[1]["url_citation"] == {"start_index": 31, "end_index": 38, "url": "https://two.example/b",
                                        "title": "Two"}


def answer(info: dict | None = INFO) -> dict:
    raw = {"created": 1, "choices": [{"message": {"role": "assistant", "content": TEXT}, "finish_reason": "stop"}],
           "usage": {"prompt_tokens": 3, "completion_tokens": 5}}
    return qwen_to_chat({**raw, **({"search_info": info} if info else {})}, model="gpt-4o")


def test_a_whole_answer_carries_annotations_only_with_sources():
    chat = answer()
    validate("CreateChatCompletionResponse", chat)
    cites = [a["url_citation"] for a in chat["choices"][0]["message"]["annotations"]]
    assert [(c["url"], c["title"]) for c in cites] == [("https://one.example/a", "One"), ("https://two.example/b", "Two")]
    assert "annotations" not in answer(None)["choices"][0]["message"]  # no sources: nothing invented


def stream_events(text: str, size: int, info: dict | None = INFO) -> list[dict]:
    """Qwen's stream: search_info on the first chunk, the text in `size`-character pieces."""
    first = {"id": "c", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}],
             **({"search_info": info} if info else {})}
    pieces = [{"id": "c", "choices": [{"index": 0, "delta": {"content": text[i:i + size]}}]}
              for i in range(0, len(text), size)]
    return [first, *pieces, {"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}]


def normalised(text: str = TEXT, size: int = 3, info: dict | None = INFO) -> list[dict]:
    n = ChunkNormalizer("gpt-4o")
    return [c for e in stream_events(text, size, info) for c in n.feed(e)]


@pytest.mark.parametrize("size", [1, 3, 5, 100])
def test_stream_annotations_come_in_the_last_delta_whatever_the_markers_split(size):
    chunks = normalised(size=size)
    assert chunks[0]["search_info"] == INFO and all("search_info" not in c for c in chunks[1:])
    last = chunks[-1]["choices"][0]
    assert last["finish_reason"] == "stop"
    assert last["delta"]["annotations"] == answer()["choices"][0]["message"]["annotations"]
    assert all("annotations" not in c["choices"][0]["delta"] for c in chunks[:-1])
    assert "annotations" not in normalised(info=None)[-1]["choices"][0]["delta"]


def test_responses_whole_answer_has_a_web_search_call_and_output_text_annotations():
    request = {"model": "gpt-4o", "input": "x", "include": ["web_search_call.action.sources"]}
    r = chat_to_response(answer(), request, response_id="resp_1", created_at=1)
    validate("Response", r)
    call, message = r["output"]
    assert call["type"] == "web_search_call" and call["status"] == "completed"
    assert call["action"] == {"type": "search", "sources": [{"type": "url", "url": "https://one.example/a"},
                                                            {"type": "url", "url": "https://two.example/b"}]}
    notes = message["content"][0]["annotations"]
    assert notes[0] == {"type": "url_citation", "start_index": 10, "end_index": 17, "url": "https://one.example/a",
                        "title": "One"}
    plain = chat_to_response(answer(None), {"model": "gpt-4o", "input": "x"}, response_id="resp_2", created_at=1)
    assert [i["type"] for i in plain["output"]] == ["message"] and plain["output"][0]["content"][0]["annotations"] == []
    no_sources = chat_to_response(answer(), {"model": "gpt-4o", "input": "x"}, response_id="r", created_at=1)
    assert no_sources["output"][0]["action"] == {"type": "search"}


def test_responses_stream_sends_the_search_call_then_annotation_events():
    t = ResponsesStreamTranslator({"model": "gpt-4o", "input": "x"}, response_id="resp_1", created_at=1)
    raw = b"".join(b for c in normalised(size=2) for b in t.feed(c)) + b"".join(t.finish())
    events = [json.loads(e.data) for e in SSEDecoder().feed(raw)]
    for e in events:
        validate_stream_event(e)
    kinds = [e["type"] for e in events]
    start = kinds.index("response.output_item.added")
    assert kinds[start:start + 5] == ["response.output_item.added", "response.web_search_call.in_progress",
                                      "response.web_search_call.searching", "response.web_search_call.completed",
                                      "response.output_item.done"]
    added = [e for e in events if e["type"] == "response.output_text.annotation.added"]
    assert [a["annotation_index"] for a in added] == [0, 1]
    assert kinds.index("response.output_text.annotation.added") < kinds.index("response.output_text.done")
    final = events[-1]["response"]
    assert [i["type"] for i in final["output"]] == ["web_search_call", "message"]
    assert final["output"][1]["content"][0]["annotations"] == [a["annotation"] for a in added]


def test_messages_whole_answer_has_citations_and_server_tool_use():
    m = chat_to_message(answer(), model="claude-sonnet-5-5", sign=lambda t: "sig")
    (block,) = m["content"]
    assert [c["url"] for c in block["citations"]] == ["https://one.example/a", "https://two.example/b"]
    assert block["citations"][0]["cited_text"] == "Rain today"
    assert block["citations"][1]["cited_text"] == ". Sun tomorrow"
    assert all(c["type"] == "web_search_result_location" and c["encrypted_index"] for c in block["citations"])
    assert m["usage"]["server_tool_use"] == {"web_search_requests": 1, "web_fetch_requests": 0}
    plain = chat_to_message(answer(None), model="claude-sonnet-5-5", sign=lambda t: "sig")
    assert "citations" not in plain["content"][0] and "server_tool_use" not in plain["usage"]


def test_messages_stream_sends_citations_deltas_and_server_tool_use():
    t = MessagesStreamTranslator(model="claude-sonnet-5-5", sign=lambda s: "sig")
    raw = b"".join(b for c in normalised(size=4) for b in t.feed(c)) + b"".join(t.finish())
    events = [json.loads(e.data) for e in SSEDecoder().feed(raw)]
    cites = [e["delta"]["citation"] for e in events if e["type"] == "content_block_delta"
             and e["delta"]["type"] == "citations_delta"]
    assert [c["url"] for c in cites] == ["https://one.example/a", "https://two.example/b"]
    kinds = [e["type"] for e in events]
    assert kinds.index("content_block_stop") > max(i for i, e in enumerate(events) if e["type"] == "content_block_delta")
    assert events[-2]["usage"]["server_tool_use"] == {"web_search_requests": 1, "web_fetch_requests": 0}

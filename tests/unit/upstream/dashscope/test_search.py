"""Web search on DashScope (upstream/dashscope/search.py): the chat form's web_search_options as Qwen's knobs, and
Qwen's sources as url_citation annotations spanning their [ref_N] markers."""

from __future__ import annotations

import pytest

from qwen_gateway.errors import GatewayError
from qwen_gateway.upstream.dashscope.search import (CITATION_FORMAT, StreamCitations, annotate_answer, can_search,
                                                    search_knobs, sources, url_citations, why_not)

INFO = {"search_results": [{"index": 1, "title": "Qwen", "url": "https://qwen.ai"},
                           {"index": 2, "site_name": "Example", "url": "https://example.com"},
                           {"index": 3, "title": "no url"}]}


def test_which_models_and_accounts_search():
    assert can_search("qwen-plus") and not can_search("qwen3-coder-plus") and not can_search("nobody-knows")
    assert why_not("qwen-plus", oauth=True) == "Qwen OAuth accounts (portal.qwen.ai) have no web search"
    assert why_not("qwen3-coder-plus", oauth=False) == "qwen3-coder-plus cannot search"
    assert why_not("qwen-plus", oauth=False) is None


def test_search_options_become_qwens_knobs_and_the_clients_extras_win():
    body = {"model": "qwen-plus", "web_search_options": {"search_context_size": "high", "forced": True},
            "search_options": {"enable_citation": False}}
    assert search_knobs(body, oauth=False) == {"model": "qwen-plus", "enable_search": True, "search_options": {
        "enable_source": True, "enable_citation": False, "citation_format": CITATION_FORMAT,
        "forced_search": True, "search_strategy": "max"}}


def test_an_optional_search_that_cannot_be_done_is_dropped_with_a_note():
    notes: list[str] = []
    out = search_knobs({"model": "qwen-plus", "web_search_options": {"optional": True}}, oauth=True, notes=notes)
    assert out == {"model": "qwen-plus"}
    assert notes == ["web search dropped: Qwen OAuth accounts (portal.qwen.ai) have no web search"]


def test_a_demanded_search_that_cannot_be_done_is_a_400_naming_the_clients_parameter():
    with pytest.raises(GatewayError) as e:
        search_knobs({"model": "qwen3-coder-plus", "web_search_options": {"param": "tools[0]"}}, oauth=False)
    assert (e.value.status, e.value.param, e.value.code) == (400, "tools[0]", "unsupported_value")
    assert e.value.message.startswith("Web search is not available here: qwen3-coder-plus cannot search.")


def test_no_search_asked_is_left_alone():
    body = {"model": "qwen-plus"}
    assert search_knobs(body, oauth=True) is body
    assert search_knobs({"model": "qwen-plus", "web_search_options": None}, oauth=True) == body


def test_sources_by_index_with_a_title_and_never_without_a_url():
    assert sources(INFO) == {1: {"url": "https://qwen.ai", "title": "Qwen"},
                             2: {"url": "https://example.com", "title": "Example"}}
    assert sources({"search_results": [{"url": "https://x"}]}) == {1: {"url": "https://x", "title": "https://x"}}
    assert sources(None) == {} and sources({"search_results": "x"}) == {}


def test_each_marker_of_a_known_source_is_a_citation_spanning_it():
    text = "Qwen is a model [ref_1], see also [ref_9] and [ref_2]."
    cites = url_citations(text, sources(INFO))
    assert [(c["url_citation"]["url"], text[c["url_citation"]["start_index"]:c["url_citation"]["end_index"]])
            for c in cites] == [("https://qwen.ai", "[ref_1]"), ("https://example.com", "[ref_2]")]


def test_a_whole_answer_is_annotated_and_one_without_sources_left_alone():
    answer = {"search_info": INFO, "choices": [{"message": {"content": "x [ref_2]"}}, {"message": {"content": "y"}}]}
    annotate_answer(answer)
    assert answer["choices"][0]["message"]["annotations"][0]["url_citation"]["start_index"] == 2
    assert "annotations" not in answer["choices"][1]["message"]
    plain = {"choices": [{"message": {"content": "[ref_1]"}}]}
    assert annotate_answer(plain) == {"choices": [{"message": {"content": "[ref_1]"}}]}


def test_a_streams_marker_split_across_chunks_is_found_once_the_choice_ends():
    tracker = StreamCitations()
    tracker.text(0, "before any source: not kept")
    tracker.event({"search_info": INFO})
    assert tracker.take_info() == INFO and tracker.take_info() is None  # passed on once
    for part in ("Answer [re", "f_1] done"):
        tracker.text(0, part)
    (cite,) = tracker.annotations(0)
    assert cite["url_citation"] == {"start_index": 7, "end_index": 14, "url": "https://qwen.ai", "title": "Qwen"}
    assert tracker.annotations(1) == [] and StreamCitations().annotations(0) == []

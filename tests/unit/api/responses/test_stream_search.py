"""The Responses stream's web search events (api/responses/stream_search.py): a search call in OpenAI's order, and
one annotation event per citation, numbered after those the message had."""

from __future__ import annotations

from qwen_gateway.api.responses.stream_search import annotations_added, search_call


def test_a_finished_search_is_sent_in_openais_order():
    item = {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"type": "search"}}
    events = search_call(lambda e: e, 0, item)
    assert [e["type"] for e in events] == [
        "response.output_item.added", "response.web_search_call.in_progress", "response.web_search_call.searching",
        "response.web_search_call.completed", "response.output_item.done"]
    assert events[0]["item"] == {**item, "status": "in_progress"} and events[-1]["item"] == item
    assert item["status"] == "completed"  # the finished item is not changed by the added one


def test_each_citation_is_numbered_after_the_ones_before():
    citations = [{"type": "url_citation", "url": "https://a"}, {"type": "url_citation", "url": "https://b"}]
    events = annotations_added(lambda e: e, "msg_1", 1, 3, citations)
    assert [(e["annotation_index"], e["annotation"]["url"]) for e in events] == [
        (3, "https://a"), (4, "https://b")]
    assert all(e["item_id"] == "msg_1" and e["output_index"] == 1 and e["content_index"] == 0
               for e in events)

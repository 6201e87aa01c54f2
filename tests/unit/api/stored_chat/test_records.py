"""What a stored chat completion is (api/stored_chat/records.py): OpenAI's metadata rules, the row kept for one
completion, the messages as OpenAI lists them back, and the list endpoint's filter."""

from __future__ import annotations

import json

import pytest

from qwen_gateway.api.stored_chat.records import check_metadata, list_filter, row_of, stored_messages
from qwen_gateway.errors import GatewayError


@pytest.mark.parametrize("metadata, param, code", [
    ({f"k{i}": "v" for i in range(17)}, "metadata", "object_above_max_size"),
    ({"k" * 65: "v"}, "metadata", "string_above_max_length"),
    ({"k": "v" * 513}, "metadata.k", "string_above_max_length"),
    ({"k": 5}, "metadata.k", "invalid_type"),
    (["k"], "metadata", "invalid_type"),
])
def test_metadata_beyond_openais_limits_is_refused_naming_the_field(metadata, param, code):
    with pytest.raises(GatewayError) as e:
        check_metadata(metadata)
    assert (e.value.status, e.value.param, e.value.code) == (400, param, code)


def test_metadata_at_openais_limits_is_taken_and_null_is_none():
    full = {f"{i:0>64}": "v" * 512 for i in range(16)}
    assert check_metadata(full) == full
    assert check_metadata(None) == {}


def test_the_messages_are_kept_as_openai_lists_them_back():
    messages = [{"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url",
                                             "image_url": {"url": "data:x"}}, {"type": "text", "text": "b"}]},
                {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function"}]}]
    kept = stored_messages("chatcmpl-1", messages)
    assert [m["id"] for m in kept] == ["chatcmpl-1-0", "chatcmpl-1-1", "chatcmpl-1-2"]
    assert kept[0] == {"role": "system", "content": "be brief", "id": "chatcmpl-1-0", "name": None,
                       "content_parts": None}
    assert kept[1]["content"] == "ab" and [p["type"] for p in kept[1]["content_parts"]] == ["text", "image_url", "text"]
    assert kept[2]["tool_calls"] == [{"id": "c1", "type": "function"}] and kept[2]["content"] is None


def test_a_row_holds_the_completion_the_messages_model_and_metadata_and_nothing_else():
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "store": True,
            "metadata": {"run": "1"}}
    completion = {"id": "chatcmpl-9", "object": "chat.completion", "model": "gpt-4o", "choices": []}
    row = row_of(body, completion, 5.0, "")
    assert (row.id, row.model, row.created) == ("chatcmpl-9", "gpt-4o", 5.0)
    assert json.loads(row.completion) == completion and json.loads(row.metadata) == {"run": "1"}
    assert json.loads(row.messages)[0]["id"] == "chatcmpl-9-0"


def test_the_list_filter_reads_model_and_metadata_brackets():
    f = list_filter({"model": "gpt-4o", "metadata[run]": "1", "metadata[kind]": "x", "limit": "5"})
    assert f.model == "gpt-4o" and f.metadata == {"run": "1", "kind": "x"}
    assert f.matches("gpt-4o", '{"run": "1", "kind": "x", "other": "y"}')
    assert not f.matches("gpt-4o", '{"run": "1"}') and not f.matches("o3", '{"run": "1", "kind": "x"}')
    assert list_filter({}).matches("any", "{}")


def test_a_key_of_exactly_64_characters_and_a_value_of_512_are_taken():
    assert check_metadata({"k" * 64: "v" * 512}) == {"k" * 64: "v" * 512}


def test_the_param_named_is_the_field_checked():
    with pytest.raises(GatewayError) as e:
        check_metadata({"k": 1}, param="query")
    assert e.value.param == "query.k"


def test_a_row_takes_the_requests_model_when_the_completion_names_none():
    row = row_of({"model": "qwen3-max", "messages": []}, {"id": "chatcmpl-1"}, 1.0, "alice")
    assert (row.model, row.owner, json.loads(row.metadata), json.loads(row.messages)) == ("qwen3-max", "alice", {},
                                                                                          [])


def test_a_message_that_is_no_object_is_kept_as_an_empty_one():
    assert stored_messages("c", ["junk"]) == [{"id": "c-0", "content": None, "name": None, "content_parts": None}]


def test_parts_of_other_types_are_not_listed():
    (m,) = stored_messages("c", [{"role": "user", "content": [{"type": "input_audio"}, {"type": "text", "text": "x"}]}])
    assert m["content"] == "x" and m["content_parts"] == [{"type": "text", "text": "x"}]


def test_a_list_filter_checks_its_metadata_as_metadata():
    with pytest.raises(GatewayError) as e:
        list_filter({f"metadata[k{i}]": "v" for i in range(17)})
    assert e.value.code == "object_above_max_size"


def test_an_empty_model_filters_nothing():
    assert list_filter({"model": ""}).model is None

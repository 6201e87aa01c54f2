"""A batch file's lines both ways (api/batches/lines.py): chat lines translated, other lines as written, a line
the chat path refuses named in the refusal, results read back, a results file priced line by line."""

from __future__ import annotations

import json

import pytest

from qwen_gateway.api.batches import lines
from qwen_gateway.errors import GatewayError


def row(cid: str, body: dict, url: str = lines.CHAT) -> str:
    return json.dumps({"custom_id": cid, "method": "POST", "url": url, "body": body})


def test_chat_lines_are_translated_and_the_others_go_as_written():
    data = "\n".join([row("a", {"model": "gpt-4o", "max_completion_tokens": 5}), "",
                      row("e", {"model": "text-embedding-3-small", "input": "x"}, "/v1/embeddings"),
                      row("b", {"model": "gpt-4o"})]).encode()
    out, model, upstream = lines.translate_file(data, lambda body: {**body, "model": "qwen-plus", "max_tokens": 5})
    rows = [json.loads(x) for x in out.decode().splitlines()]
    assert [r["custom_id"] for r in rows] == ["a", "e", "b"] and out.endswith(b"\n")
    assert rows[0]["body"] == {"model": "qwen-plus", "max_completion_tokens": 5, "max_tokens": 5}
    assert rows[1]["body"]["model"] == "text-embedding-3-small"  # not a chat line: Qwen judges it
    assert (model, upstream) == ("gpt-4o", "qwen-plus")


def test_a_line_the_chat_path_refuses_refuses_the_upload_naming_it():
    def refuse(body):
        raise GatewayError(400, "'temperature' must be at most 2.", param="temperature", code="invalid_value")

    with pytest.raises(GatewayError) as e:
        lines.translate_file(f"{row('q1', {'model': 'm', 'temperature': 9})}\n".encode(), refuse)
    assert e.value.status == 400 and e.value.message.startswith("Line 1 (custom_id 'q1'): 'temperature'")
    assert e.value.param == "line 1: temperature" and e.value.code == "invalid_value"
    for bad, code in ((b"{not json\n", "invalid_json_line"), (b"\xff\xfe\n", "invalid_file_encoding")):
        with pytest.raises(GatewayError) as e:
            lines.translate_file(bad, lambda body: body)
        assert e.value.code == code and e.value.status == 400


def result(cid: str, status: int, body: dict | None) -> str:
    return json.dumps({"id": "r", "custom_id": cid, "response": {"status_code": status, "request_id": "x",
                                                                 "body": body}, "error": None})


ANSWER = {"object": "chat.completion", "model": "qwen-plus", "choices": [],
          "usage": {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14}}


def test_results_are_read_back_as_the_chat_path_reads_an_answer():
    data = "\n".join([result("a", 200, ANSWER), result("b", 400, {"error": {"message": "no"}}), "garbage"]).encode()
    out = lines.results_back(data, lambda body: {**body, "model": "gpt-4o"})
    rows = out.decode().splitlines()
    assert json.loads(rows[0])["response"]["body"]["model"] == "gpt-4o"
    assert json.loads(rows[1])["response"]["body"] == {"error": {"message": "no"}} and rows[2] == "garbage"


def test_a_results_file_is_priced_line_by_line_and_its_usage_summed():
    other = {**ANSWER, "model": "qwen-max", "usage": {"prompt_tokens": 100, "completion_tokens": 1, "total_tokens": 101}}
    data = "\n".join([result("a", 200, ANSWER), result("b", 200, other), result("c", 400, {"error": {}}), ""]).encode()
    asked = []

    def price(model, usage):
        asked.append(model)
        return usage["prompt_tokens"] * 0.5, "USD"

    usage, cost, unit = lines.priced(data, price, "qwen-plus")
    assert usage == {"prompt_tokens": 110, "completion_tokens": 5, "total_tokens": 115}
    assert (cost, unit, asked) == (55.0, "USD", ["qwen-plus", "qwen-max"])
    assert lines.priced(data, lambda m, u: None, "qwen-plus")[1:] == (None, "unpriced")


def test_a_results_file_with_an_unpriced_line_costs_an_unknown_amount_never_part_of_it():
    """Issue 59: one answered line nothing prices makes the batch's cost unknown (summing the others would show
    less than it cost)."""
    other = {**ANSWER, "model": "qwen3.7-flash"}
    data = "\n".join([result("a", 200, ANSWER), result("b", 200, other), ""]).encode()
    usage, cost, unit = lines.priced(data, lambda m, u: None if m == "qwen3.7-flash" else (0.5, "USD"), "qwen-plus")
    assert (cost, unit) == (None, "unpriced") and usage["prompt_tokens"] == 20

"""A batch file's lines both ways (api/batches/lines.py): chat lines translated, other lines as written, a line
the chat path refuses named in the refusal, results read back, a results file priced line by line."""

from __future__ import annotations

import asyncio
import json

import pytest

from qwen_gateway.api.batches import lines
from qwen_gateway.errors import GatewayError


def run(work):
    return asyncio.run(work)


def row(cid: str, body: dict, url: str = lines.CHAT) -> str:
    return json.dumps({"custom_id": cid, "method": "POST", "url": url, "body": body})


def test_chat_lines_are_translated_and_the_others_go_as_written():
    data = "\n".join([row("a", {"model": "gpt-4o", "max_completion_tokens": 5}), "",
                      row("e", {"model": "text-embedding-3-small", "input": "x"}, "/v1/embeddings"),
                      row("b", {"model": "gpt-4o"})]).encode()
    out, model, upstream = run(lines.translate_file(data, lambda body: {**body, "model": "qwen-plus", "max_tokens": 5}))
    rows = [json.loads(x) for x in out.decode().splitlines()]
    assert [r["custom_id"] for r in rows] == ["a", "e", "b"] and out.endswith(b"\n")
    assert rows[0]["body"] == {"model": "qwen-plus", "max_completion_tokens": 5, "max_tokens": 5}
    assert rows[1]["body"]["model"] == "text-embedding-3-small"  # not a chat line: Qwen judges it
    assert (model, upstream) == ("gpt-4o", "qwen-plus")


def test_a_line_the_chat_path_refuses_refuses_the_upload_naming_it():
    def refuse(body):
        raise GatewayError(400, "'temperature' must be at most 2.", param="temperature", code="invalid_value")

    with pytest.raises(GatewayError) as e:
        run(lines.translate_file(f"{row('q1', {'model': 'm', 'temperature': 9})}\n".encode(), refuse))
    assert e.value.status == 400 and e.value.message.startswith("Line 1 (custom_id 'q1'): 'temperature'")
    assert e.value.param == "line 1: temperature" and e.value.code == "invalid_value"
    for bad, code in ((b"{not json\n", "invalid_json_line"), (b"\xff\xfe\n", "invalid_file_encoding")):
        with pytest.raises(GatewayError) as e:
            run(lines.translate_file(bad, lambda body: body))
        assert e.value.code == code and e.value.status == 400


def result(cid: str, status: int, body: dict | None) -> str:
    return json.dumps({"id": "r", "custom_id": cid, "response": {"status_code": status, "request_id": "x",
                                                                 "body": body}, "error": None})


ANSWER = {"object": "chat.completion", "model": "qwen-plus", "choices": [],
          "usage": {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14}}


def test_results_are_read_back_as_the_chat_path_reads_an_answer():
    data = "\n".join([result("a", 200, ANSWER), result("b", 400, {"error": {"message": "no"}}), "garbage"]).encode()
    out = run(lines.results_back(data, lambda body: {**body, "model": "gpt-4o"}))
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

    usage, cost, unit = run(lines.priced(data, price, "qwen-plus"))
    assert usage == {"prompt_tokens": 110, "completion_tokens": 5, "total_tokens": 115}
    assert (cost, unit, asked) == (55.0, "USD", ["qwen-plus", "qwen-max"])
    assert run(lines.priced(data, lambda m, u: None, "qwen-plus"))[1:] == (None, "unpriced")


def test_a_results_file_with_an_unpriced_line_costs_an_unknown_amount_never_part_of_it():
    """Issue 59: one answered line nothing prices makes the batch's cost unknown (summing the others would show
    less than it cost)."""
    other = {**ANSWER, "model": "qwen3.7-flash"}
    data = "\n".join([result("a", 200, ANSWER), result("b", 200, other), ""]).encode()
    usage, cost, unit = run(lines.priced(data, lambda m, u: None if m == "qwen3.7-flash" else (0.5, "USD"),
                                         "qwen-plus"))
    assert (cost, unit) == (None, "unpriced") and usage["prompt_tokens"] == 20


def test_a_file_of_more_requests_than_model_studio_takes_is_refused_before_any_is_translated():
    asked = []
    data = "".join(row(f"q{i}", {"model": "m"}) + "\n\n" for i in range(lines.MAX_LINES + 1)).encode()
    with pytest.raises(GatewayError) as e:
        run(lines.translate_file(data, lambda body: asked.append(body) or body))
    assert e.value.status == 400 and e.value.code == "too_many_requests" and e.value.param == "file"
    assert e.value.message == "The batch file holds 50001 requests; a batch file can contain up to 50,000 requests."
    assert asked == []
    blank_lines_count_nothing = "".join(row(f"q{i}", {"model": "m"}) + "\n\n" for i in range(10)).encode()
    assert run(lines.translate_file(blank_lines_count_nothing, lambda body: body))[0].count(b"\n") == 10


@pytest.mark.parametrize("second, code, said", [
    (json.dumps({"method": "POST", "url": lines.CHAT, "body": {}}), "missing_custom_id", "Line 3 of the batch file "
     "has no custom_id: each request needs a custom_id string, unique in the file."),
    (row("", {"model": "m"}), "missing_custom_id", "Line 3 of the batch file has no custom_id"),
    ("[1, 2]", "missing_custom_id", "Line 3 of the batch file has no custom_id"),
    (row("a", {"model": "m"}), "duplicate_custom_id", "Line 3 of the batch file repeats the custom_id 'a' of line 1: "
     "each request's custom_id must be unique in the file."),
])
def test_a_request_without_its_own_custom_id_refuses_the_upload(second, code, said):
    data = "\n".join([row("a", {"model": "m"}), "", second]).encode()
    with pytest.raises(GatewayError) as e:
        run(lines.translate_file(data, lambda body: body))
    assert e.value.status == 400 and e.value.code == code and e.value.message.startswith(said)
    assert e.value.param == "line 3: custom_id"


def test_lines_are_translated_off_the_loop_a_piece_at_a_time():
    """Every line in the worker thread, and the event loop runs between two pieces (a task ticks meanwhile)."""
    import threading

    from qwen_gateway.api.batches.pieces import PIECE

    where: set[str] = set()
    n = 3 * PIECE + 1

    def translate(body):
        where.add(threading.current_thread().name)
        return body

    async def main():
        ticks = 0

        async def tick():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        ticker = asyncio.create_task(tick())
        await asyncio.sleep(0)
        out = await lines.translate_file("".join(row(f"q{i}", {"model": "m"}) + "\n" for i in range(n)).encode(),
                                         translate)
        ticker.cancel()
        return out, ticks

    (out, _, _), ticks = run(main())
    assert out.count(b"\n") == n
    assert where and all(name.startswith("qwen-batch-lines") for name in where)
    assert ticks >= 4  # at least once per piece: the loop was never held for the whole file


def test_each_translated_chat_line_is_read_for_the_batch_advice():
    from qwen_gateway.api.batches.advice import Prefixes

    data = "\n".join([row("a", {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}),
                      row("e", {"model": "text-embedding-3-small", "input": "x"}, "/v1/embeddings"),
                      row("b", {"model": "gpt-4o", "messages": [{"role": "user", "content": "ho"}]})]).encode()
    shared = Prefixes()
    run(lines.translate_file(data, lambda body: {**body, "model": "qwen-plus"}, shared))
    assert list(shared.groups) == ["qwen-plus"] and len(shared.groups["qwen-plus"].tokens) == 2  # as Qwen gets them

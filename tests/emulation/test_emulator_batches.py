"""Model Studio's OpenAI-compatible Batch API on the emulator (scripts/emulator/batches.py, batch_lines.py), after its
"OpenAI compatible - Batch (file input)" page (statuses, request counts, results and errors files, one model and
thinking mode per file, 24h–336h windows, cancel, list filters), the answers cnblogs/dashscope-sdk recorded from it
(2026-04: ids, field values, a validation failure's `errors`, a cancelled batch's files) and QwenLM/qwen-code's
probes (2026-09: the test model's URL rule; tools pass through; no context cache in a batch). Batches move only
when a test moves them (`POST /_emulator/batches`), never on wall-clock hours."""

from __future__ import annotations

import json

import pytest
from openai import BadRequestError, OpenAI

from emulation.test_emulator import API_KEY, SEED, emulator_fixtures

pytestmark = pytest.mark.e2e  # starts emulator processes

OTHER_KEY = "sk-emulator-other-account"
BASE = "/compatible-mode/v1"
CHAT = "/v1/chat/completions"
TERMINAL = ("completed", "failed", "expired", "cancelled")

proc, emu = emulator_fixtures("--quiet", "--api-key", API_KEY, "--api-key", OTHER_KEY, "--seed-token", SEED)


def tokens(text: str) -> int:
    return len(text) // 4 + 1  # the emulator's count


def client(emu, key: str = API_KEY) -> OpenAI:
    return OpenAI(base_url=emu.url + BASE, api_key=key, max_retries=0, http_client=emu.http)


def line(cid: str, content: str = "hello", model: str = "qwen-plus", url: str = CHAT, **body) -> dict:
    return {"custom_id": cid, "method": "POST", "url": url,
            "body": {"model": model, "messages": [{"role": "user", "content": content}], **body}}


def jsonl(*lines) -> bytes:
    return b"".join((json.dumps(x) if not isinstance(x, str) else x).encode() + b"\n" for x in lines)


def submit(emu, *lines, endpoint: str = CHAT, key: str = API_KEY, window: str = "24h", **extra):
    c = client(emu, key)
    f = c.files.create(file=("in.jsonl", jsonl(*lines)), purpose="batch")
    return c.batches.create(input_file_id=f.id, endpoint=endpoint, completion_window=window, **extra)


def move(emu, batch_id: str | None = None, steps: int | None = None) -> dict:
    return emu.admin("POST", "batches", {k: v for k, v in (("id", batch_id), ("steps", steps)) if v is not None})


def lines_of(emu, file_id: str | None) -> list[dict]:
    return [json.loads(x) for x in client(emu).files.content(file_id).text.splitlines()] if file_id else []


def test_a_batch_runs_to_completion_with_the_openai_sdk(emu):
    created = submit(emu, line("a", "first"), line("b", "second"), metadata={"ds_name": "Nightly eval"})
    assert created.id.startswith("batch_") and created.status == "validating" and created.errors is None
    assert created.request_counts.model_dump() == {"total": 0, "completed": 0, "failed": 0}
    assert created.metadata == {"ds_name": "Nightly eval"} and created.expires_at is None
    move(emu)  # to the end
    done = client(emu).batches.retrieve(created.id)
    assert done.status == "completed" and done.request_counts.model_dump() == {"total": 2, "completed": 2, "failed": 0}
    assert done.output_file_id.startswith("file-batch_output-") and done.error_file_id is None
    assert done.in_progress_at and done.finalizing_at and done.completed_at and done.failed_at is None
    results = lines_of(emu, done.output_file_id)
    assert sorted(r["custom_id"] for r in results) == ["a", "b"]
    first = next(r for r in results if r["custom_id"] == "a")
    assert first["error"] is None and first["response"]["status_code"] == 200 and first["response"]["request_id"]
    body = first["response"]["body"]
    assert body["object"] == "chat.completion" and body["model"] == "qwen-plus"
    assert body["choices"][0]["message"]["content"] == "Echo: first"
    # billed as sent, never read from a cache: Model Studio's batches have no context cache
    assert body["usage"] == {"prompt_tokens": tokens("first"), "completion_tokens": tokens("Echo: first"),
                             "total_tokens": tokens("first") + tokens("Echo: first")}
    assert emu.admin("GET", "stats")["batch_lines"] == {"completed": 2, "failed": 0}


def test_statuses_one_step_at_a_time_and_on_poll(emu):
    emu.switches(batch_lines_per_step=1)
    b = submit(emu, line("a"), line("b"))
    seen = [move(emu, b.id, 1)["batches"][b.id] for _ in range(5)]
    assert seen == ["in_progress", "in_progress", "in_progress", "finalizing", "completed"]
    emu.switches(batch_steps_per_poll=1)
    polled = submit(emu, line("c"))
    statuses = [client(emu).batches.retrieve(polled.id).status for _ in range(6)]
    assert statuses[:4] == ["in_progress", "in_progress", "finalizing", "completed"] and statuses[-1] == "completed"


def test_each_line_meets_the_chat_rules_and_the_256k_context(emu):
    emu.switches(batch_context_limit=40)  # 256K tokens per request, as a test can afford it
    developer = {"custom_id": "dev", "method": "POST", "url": CHAT,
                 "body": {"model": "qwen-plus", "messages": [{"role": "developer", "content": "x"}]}}
    b = submit(emu, line("ok"), developer, line("old", max_tokens=10), line("long", "word " * 100))
    move(emu)
    done = client(emu).batches.retrieve(b.id)
    assert done.status == "completed" and done.request_counts.model_dump() == {"total": 4, "completed": 1, "failed": 3}
    errors = {e["custom_id"]: e for e in lines_of(emu, done.error_file_id)}
    assert set(errors) == {"dev", "old", "long"} and done.error_file_id.startswith("file-batch_output-")
    dev = errors["dev"]
    assert dev["response"]["status_code"] == 400 and dev["error"]["code"] == "invalid_parameter_error"
    assert dev["error"]["message"].startswith("developer is not one of")  # R1, as a chat request hears it
    assert "max_completion_tokens" in errors["old"]["error"]["message"]
    assert errors["long"]["error"]["message"] == "Range of input length should be [1, 40]"
    assert [r["custom_id"] for r in lines_of(emu, done.output_file_id)] == ["ok"]


@pytest.mark.parametrize(("lines", "code", "param"), [
    ([line("1", url="/v1/chat/completion")], "url_not_found", "url"),
    ([line("1", model="batch-test-model")], "mismatched_test_url", "url"),
    ([line("1"), line("2", model="qwen-max")], "mismatched_model", "model"),
    ([line("1"), line("1")], "duplicate_custom_id", "custom_id"),
    ([line("1", model="qwen3-coder-plus")], "model_not_supported", "model"),  # served by chat, not by batches
    ([line("1", model="qwen3.5-plus", enable_thinking=True),
      line("2", model="qwen3.5-plus", enable_thinking=False)], "mismatched_thinking_mode", "body"),
    (["{not json", line("2")], "invalid_json_line", None),
    ([{**line("1"), "method": "GET"}], "invalid_method", "method"),
])
def test_a_file_that_breaks_the_rules_fails_the_batch(emu, lines, code, param):
    b = submit(emu, *lines)
    move(emu)
    failed = client(emu).batches.retrieve(b.id)
    assert failed.status == "failed" and failed.failed_at and failed.output_file_id is None
    assert failed.request_counts.model_dump() == {"total": 0, "completed": 0, "failed": 0}
    raw = emu.http.get(f"{BASE}/batches/{b.id}", headers={"Authorization": f"Bearer {API_KEY}"}).json()["errors"]
    assert raw["object"] == "list" and raw["data"][0]["code"] == code and raw["data"][0]["param"] == param
    assert raw["data"][0]["line"] in (1, 2) and raw["data"][0]["message"]


def test_the_url_not_found_body_is_model_studios(emu):
    b = submit(emu, line("1", url="/v1/chat/completion"))
    move(emu)
    errors = client(emu).batches.retrieve(b.id).errors.model_dump()
    assert errors == {"object": "list", "data": [{"code": "url_not_found", "line": 1, "param": "url", "message":
                      "The provided url '/v1/chat/completion' is not supported by the Batch API."}]}


@pytest.mark.parametrize(("change", "param"), [
    ({"endpoint": "/v1/responses"}, "endpoint"),
    ({"completion_window": "12h"}, "completion_window"),
    ({"completion_window": "15d"}, "completion_window"),
    ({"input_file_id": "file-batch-nope"}, "input_file_id"),
    ({"metadata": {"ds_name": "x" * 101}}, "metadata"),
])
def test_creation_refusals(emu, change, param):
    f = client(emu).files.create(file=("in.jsonl", jsonl(line("1"))), purpose="batch")
    body = {"input_file_id": f.id, "endpoint": CHAT, "completion_window": "24h", **change}
    r = emu.http.post(BASE + "/batches", json=body, headers={"Authorization": f"Bearer {API_KEY}"})
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
    doc = client(emu).files.create(file=("doc.txt", b"text"), purpose="file-extract")
    with pytest.raises(BadRequestError):
        client(emu).batches.create(input_file_id=doc.id, endpoint=CHAT, completion_window="14d")


def test_the_test_model_answers_a_fixed_text(emu):
    b = submit(emu, line("1", model="batch-test-model", url="/v1/chat/ds-test"), endpoint="/v1/chat/ds-test")
    move(emu)
    [result] = lines_of(emu, client(emu).batches.retrieve(b.id).output_file_id)
    body = result["response"]["body"]
    assert body["choices"][0]["message"]["content"] == "This is a test result."
    assert body["usage"] == {"completion_tokens": 6, "prompt_tokens": 20, "total_tokens": 26}
    big = submit(emu, *[line(str(n), model="batch-test-model", url="/v1/chat/ds-test") for n in range(101)],
                 endpoint="/v1/chat/ds-test")
    move(emu)
    assert client(emu).batches.retrieve(big.id).status == "failed"  # the test model: 100 lines at most


def test_cancel_keeps_what_was_done(emu):
    emu.switches(batch_lines_per_step=1)
    b = submit(emu, line("a"), line("b"), line("c"))
    move(emu, b.id, 2)  # validated, one line done
    cancelling = client(emu).batches.cancel(b.id)
    assert cancelling.status == "cancelling"
    move(emu, b.id, 1)
    done = client(emu).batches.retrieve(b.id)
    assert done.status == "cancelled" and done.cancelled_at and done.cancelling_at == done.cancelled_at
    assert done.request_counts.model_dump() == {"total": 3, "completed": 1, "failed": 2}
    assert [r["custom_id"] for r in lines_of(emu, done.output_file_id)] == ["a"]
    assert {e["error"]["code"] for e in lines_of(emu, done.error_file_id)} == {"batch_cancelled"}
    with pytest.raises(BadRequestError):
        client(emu).batches.cancel(b.id)  # a settled batch is not cancelled again


def test_a_batch_not_done_within_its_window_expires(emu):
    emu.switches(batch_lines_per_step=1)
    b = submit(emu, line("a"), line("b"), window="24h")
    move(emu, b.id, 2)
    emu.admin("POST", "cache", {"advance": 24 * 3600 + 1})  # the emulator's clock, not the wall's
    move(emu, b.id, 1)
    done = client(emu).batches.retrieve(b.id)
    assert done.status == "expired" and done.expired_at
    assert done.request_counts.model_dump() == {"total": 2, "completed": 1, "failed": 1}
    assert {e["error"]["code"] for e in lines_of(emu, done.error_file_id)} == {"batch_expired"}


def test_listing_pages_and_filters(emu):
    ids = [submit(emu, line(str(n)), metadata={"ds_name": f"job {n}"}).id for n in range(3)]
    move(emu, ids[0])
    c = client(emu)
    page = c.batches.list(limit=2)
    assert [b.id for b in page.data] == ids[::-1][:2] and page.has_more is True
    rest = c.batches.list(limit=2, after=page.data[-1].id)
    assert [b.id for b in rest.data] == [ids[0]] and rest.has_more is False
    auth = {"Authorization": f"Bearer {API_KEY}"}
    assert [b["id"] for b in emu.http.get(BASE + "/batches", params={"status": "completed"}, headers=auth).json()[
        "data"]] == [ids[0]]
    assert [b["id"] for b in emu.http.get(BASE + "/batches", params={"ds_name": "job 1"}, headers=auth).json()[
        "data"]] == [ids[1]]
    empty = emu.http.get(BASE + "/batches", headers={"Authorization": f"Bearer {OTHER_KEY}"}).json()
    assert empty == {"object": "list", "data": None, "first_id": None, "last_id": None, "has_more": False}


def test_embeddings_and_tools_pass_through(emu):
    e = submit(emu, {"custom_id": "e", "method": "POST", "url": "/v1/embeddings",
                     "body": {"model": "text-embedding-v4", "input": ["a", "b"]}}, endpoint="/v1/embeddings")
    tools = [{"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}]
    t = submit(emu, line("t", "call get_time", tools=tools))
    move(emu)
    [emb] = lines_of(emu, client(emu).batches.retrieve(e.id).output_file_id)
    assert len(emb["response"]["body"]["data"]) == 2
    [call] = lines_of(emu, client(emu).batches.retrieve(t.id).output_file_id)
    choice = call["response"]["body"]["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["tool_calls"][0]["function"]["name"] == \
        "get_time"


def test_failed_lines_in_the_output_file_as_observed(emu):
    emu.switches(batch_failed_in_output=True)  # qwen-code's probe: failures in output, request_counts.failed 0
    b = submit(emu, line("ok"), {"custom_id": "dev", "method": "POST", "url": CHAT, "body": {
        "model": "qwen-plus", "messages": [{"role": "developer", "content": "x"}]}})
    move(emu)
    done = client(emu).batches.retrieve(b.id)
    assert done.request_counts.model_dump() == {"total": 2, "completed": 2, "failed": 0} and done.error_file_id is None
    assert sorted(r["response"]["status_code"] for r in lines_of(emu, done.output_file_id)) == [200, 400]


def test_owned_logged_and_not_on_the_coding_plan(emu):
    b = submit(emu, line("a"))
    other = emu.http.get(f"{BASE}/batches/{b.id}", headers={"Authorization": f"Bearer {OTHER_KEY}"})
    assert other.status_code == 404
    logged = [r for r in emu.admin("GET", "requests") if r["path"] == BASE + "/batches"]
    assert logged and logged[-1]["method"] == "POST" and logged[-1]["body"]["endpoint"] == CHAT
    assert emu.http.get("/v1/batches", headers={"Authorization": f"Bearer {API_KEY}"}).status_code == 404
    assert emu.http.get(BASE + "/batches", headers={"Authorization": f"Bearer {SEED}"}).status_code == 401
    assert move(emu)["batches"][b.id] in TERMINAL

"""A batch input file's lines: the checks that fail a batch while it is `validating`, and each line's answer.

Model Studio's "OpenAI compatible - Batch (file input)" page (2026): JSONL in UTF-8, "up to 50,000 requests per
file", "each JSON object up to 6 MB and within the model's context window", "all requests in the same file must use
the same model and thinking mode", a `custom_id` unique in the file, `method` POST, `url` matching the batch's
`endpoint`: `/v1/chat/completions`, `/v1/embeddings`, or `/v1/chat/ds-test` for the free `batch-test-model` (which
"returns a fixed response", files of at most 1 MB and 100 lines). A file that breaks these fails the batch: status
`failed`, `errors: {"object": "list", "data": [{code, message, param, line}]}` (that shape and the codes
`url_not_found` and `mismatched_test_url` with their texts as cnblogs/dashscope-sdk and QwenLM/qwen-code recorded them
in 2026; the other codes and texts are assumed, in their style). A model the Batch API does not serve
(the catalogue's `batch`) is refused the same way (qwen-code's run saw a batch refused line by line after creation).

Each line then runs as the request it holds: the chat rules every chat request meets (chat.validate: reused, not
copied) and "at most 256K context per batched request" (dashscope-rules.md; switch `batch_context_limit`, tokens),
whose refusals go to the errors file; answers are the chat planner's, in the shape the page shows for result lines,
never read from a cache ("does not support features such as context cache"; qwen-code measured `cached_tokens: 0`).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

from . import catalogue, chat, rules
from .cache import text_of, tokens

CHAT, EMBEDDINGS, TEST_URL = "/v1/chat/completions", "/v1/embeddings", "/v1/chat/ds-test"
URLS = (CHAT, EMBEDDINGS, TEST_URL)
TEST_MODEL = "batch-test-model"
TEST_MAX_BYTES, TEST_MAX_LINES = 1 << 20, 100
MAX_ERRORS = 100  # errors listed at most (assumed)


@dataclass(frozen=True)
class Line:
    custom_id: str
    url: str
    body: dict


def problem(line: int | None, code: str, message: str, param: str | None) -> dict:
    return {"code": code, "message": message, "param": param, "line": line}


def _check(n: int, obj, endpoint: str) -> dict | None:
    """One line's structure (the model and mode agreement across lines is `validate`'s)."""
    if not isinstance(obj, dict):
        return problem(n, "invalid_json_line", f"Line {n} is not a JSON object.", None)
    if not isinstance(obj.get("custom_id"), str) or not obj["custom_id"]:
        return problem(n, "missing_custom_id", "Each request needs a custom_id string.", "custom_id")
    if obj.get("method") != "POST":
        return problem(n, "invalid_method", f"The provided method '{obj.get('method')}' is not supported; use POST.",
                       "method")
    url, body = obj.get("url"), obj.get("body")
    if url not in URLS:
        return problem(n, "url_not_found", f"The provided url '{url}' is not supported by the Batch API.", "url")
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return problem(n, "invalid_body", "The body must be a JSON object naming a model.", "body")
    if (body["model"] == TEST_MODEL) != (url == TEST_URL):
        return problem(n, "mismatched_test_url", f"The provided URL '{url}' does not match the test model "
                                                 f"'{TEST_MODEL}'.", "url")
    if url != endpoint:
        return problem(n, "mismatched_endpoint", f"The provided url '{url}' does not match the batch's endpoint "
                                                 f"'{endpoint}'.", "url")
    if body["model"] != TEST_MODEL and not catalogue.serves(body["model"], "batch"):
        return problem(n, "model_not_supported", f"The model '{body['model']}' is not supported by the Batch API.",
                       "model")
    return None


def validate(data: bytes, endpoint: str, sw: dict) -> tuple[list[Line], list[dict]]:
    """The file's requests, or the problems that fail the batch."""
    try:
        raw = [x for x in data.decode("utf-8").split("\n") if x.strip()]
    except UnicodeDecodeError:
        return [], [problem(None, "invalid_file_encoding", "The input file must be JSONL encoded in UTF-8.", None)]
    if not raw:
        return [], [problem(None, "empty_file", "The input file holds no request.", None)]
    if len(raw) > int(sw["batch_max_lines"]):
        return [], [problem(None, "too_many_requests", f"The input file holds {len(raw)} requests; at most "
                                                       f"{sw['batch_max_lines']} are allowed.", None)]
    lines: list[Line] = []
    errors: list[dict] = []
    seen: set[str] = set()
    first: tuple[str, bool] | None = None  # the model and thinking mode of the first request
    for n, text in enumerate(raw, 1):
        if len(text.encode()) > int(sw["batch_line_max_bytes"]):
            errors.append(problem(n, "line_too_large", f"Line {n} is larger than {sw['batch_line_max_bytes']} bytes.",
                                  None))
            continue
        try:
            obj = json.loads(text)
        except ValueError:
            errors.append(problem(n, "invalid_json_line", f"Line {n} is not valid JSON.", None))
            continue
        bad = _check(n, obj, endpoint)
        if bad is None and obj["custom_id"] in seen:
            bad = problem(n, "duplicate_custom_id", f"The custom_id '{obj['custom_id']}' is used more than once.",
                          "custom_id")
        if bad is None:
            body = obj["body"]
            mode = (body["model"], obj["url"] == CHAT and rules.thinking_on(body))
            first = first or mode
            if mode[0] != first[0]:
                bad = problem(n, "mismatched_model", f"All requests must use the same model: '{first[0]}', not "
                                                     f"'{mode[0]}'.", "model")
            elif mode[1] != first[1]:
                bad = problem(n, "mismatched_thinking_mode", "All requests must use the same thinking mode.", "body")
        if bad:
            errors.append(bad)
            continue
        seen.add(obj["custom_id"])
        lines.append(Line(obj["custom_id"], obj["url"], obj["body"]))
    if first and first[0] == TEST_MODEL and (len(data) > TEST_MAX_BYTES or len(raw) > TEST_MAX_LINES):
        errors.append(problem(None, "test_file_too_large", f"A file for {TEST_MODEL} holds at most "
                                                           f"{TEST_MAX_LINES} lines and 1 MB.", None))
    return lines, errors[:MAX_ERRORS]


def completion(body: dict, p: dict) -> dict:
    """A chat answer as the page's result lines hold it (no system_fingerprint, no logprobs)."""
    message: dict = {"role": "assistant", "content": p["text"]}
    if p["reasoning"]:
        message["reasoning_content"] = p["reasoning"]
    if p["calls"]:
        message["tool_calls"] = [{"index": i, "id": c["id"], "type": "function",
                                  "function": {"name": c["name"], "arguments": c["arguments"]}}
                                 for i, c in enumerate(p["calls"])]
    usage = {k: p["usage"][k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
    if "completion_tokens_details" in p["usage"]:
        usage["completion_tokens_details"] = p["usage"]["completion_tokens_details"]
    return {"created": int(time.time()), "usage": usage, "model": body["model"], "id": f"chatcmpl-{uuid.uuid4()}",
            "choices": [{"finish_reason": p["finish"], "index": i, "message": message} for i in range(p["n"])],
            "object": "chat.completion"}


def run(line: Line, sw: dict) -> tuple[int, dict]:
    """One request's status and body, as its endpoint answers it."""
    body = line.body
    if body["model"] == TEST_MODEL:  # the page's fixed answer and usage
        return 200, {"created": int(time.time()), "usage": {"completion_tokens": 6, "prompt_tokens": 20,
                                                            "total_tokens": 26}, "model": TEST_MODEL,
                     "id": f"chatcmpl-{uuid.uuid4()}", "choices": [{"finish_reason": "stop", "index": 0, "message": {
                         "content": "This is a test result."}}], "object": "chat.completion"}
    if line.url == EMBEDDINGS:
        return chat.embeddings(body)
    msgs = body.get("messages")
    limit = int(sw["batch_context_limit"])
    if isinstance(msgs, list) and tokens("".join(text_of(m.get("content")) for m in msgs if isinstance(m, dict))) > limit:
        return 400, rules.error("invalid_parameter_error", f"Range of input length should be [1, {limit}]")
    refused = chat.validate(body, sw)
    if refused:
        return refused
    return 200, completion(body, chat.plan(body, sw))


def result(custom_id: str, status: int, body: dict | None, error: dict | None = None) -> dict:
    """A results or errors file's line: the page's shape; a failure's `error` names its code and message."""
    rid = str(uuid.uuid4())
    if error is None and status != 200:
        err = (body or {}).get("error") or {}
        error = {"code": err.get("code"), "message": err.get("message")}
    response = None if body is None else {"status_code": status, "request_id": rid, "body": body}
    return {"id": rid, "custom_id": custom_id, "response": response, "error": error}

"""A batch file's lines both ways, pure functions: each chat line's body translated as a chat request is (the
caller's `translate`: the chat dialect's checks, the model map, DashScope's rules), each result read back as the
chat path reads a whole answer (`back`), and what a results file cost (`priced`: the batch rate).

A line the gateway does not translate (embeddings, a line that is no JSON object) goes to Qwen as written: its
Batch API fails the batch for what it refuses, in its own words. A chat line the chat path would refuse refuses
the upload, naming the line."""

from __future__ import annotations

import json
from collections.abc import Callable

from ...errors import GatewayError
from ...pricing.prices import UNPRICED

CHAT = "/v1/chat/completions"
Translate = Callable[[dict], dict]  # a client's chat body -> Qwen's (raises GatewayError)
Back = Callable[[dict], dict]  # Qwen's chat answer -> the client's
Price = Callable[[str, dict], "tuple[float, str] | None"]  # (Qwen's model, usage) -> (amount, unit)
USAGE = ("prompt_tokens", "completion_tokens", "total_tokens")


def _rows(data: bytes, what: str) -> list[str]:
    try:
        return data.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        raise GatewayError(400, f"The {what} must be JSONL encoded in UTF-8.", param="file",
                           code="invalid_file_encoding") from None


def translate_file(data: bytes, translate: Translate) -> tuple[bytes, str, str]:
    """(the file for Qwen, the model the first chat line names, the Qwen model it was sent as)."""
    out: list[str] = []
    model = upstream = ""
    for n, text in enumerate(_rows(data, "batch file"), 1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except ValueError:
            raise GatewayError(400, f"Line {n} of the batch file is not valid JSON.", param="file",
                               code="invalid_json_line") from None
        if isinstance(obj, dict) and obj.get("url") == CHAT and isinstance(obj.get("body"), dict):
            try:
                body = translate(obj["body"])
            except GatewayError as e:
                raise GatewayError(e.status, f"Line {n} (custom_id {str(obj.get('custom_id'))[:64]!r}): {e.message}",
                                   param=f"line {n}: {e.param}" if e.param else f"line {n}", code=e.code) from None
            if not model:
                model, upstream = str(obj["body"].get("model") or ""), str(body.get("model") or "")
            obj = {**obj, "body": body}
        out.append(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))
    return "".join(x + "\n" for x in out).encode(), model, upstream


def results_back(data: bytes, back: Back) -> bytes:
    """A results (or errors) file as OpenAI's batch output reads: each answered chat line's body read back."""
    out = []
    for text in _rows(data, "results file"):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except ValueError:
            out.append(text)
            continue
        response = obj.get("response") if isinstance(obj, dict) else None
        if not isinstance(response, dict):
            out.append(text)
            continue
        body = response.get("body")
        if isinstance(body, dict) and response.get("status_code") == 200 and body.get("object") == "chat.completion":
            obj = {**obj, "response": {**response, "body": back(body)}}
        out.append(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))
    return "".join(x + "\n" for x in out).encode()


def priced(data: bytes, price: Price, model: str) -> tuple[dict, float | None, str]:
    """(the usage summed, the cost, its unit) of a results file: each answered line priced by `price` (at the
    batch rate) with its own usage, as Qwen bills each request. `model`: for a line that names none. One line
    nothing prices makes the cost unknown: (None, "unpriced"), never the sum of the others (issue 59)."""
    total = dict.fromkeys(USAGE, 0)
    cost: float | None = None
    unit, unpriced = "", False
    for text in _rows(data, "results file"):
        try:
            obj = json.loads(text) if text.strip() else None
        except ValueError:
            continue
        response = obj.get("response") if isinstance(obj, dict) else None
        body = response.get("body") if isinstance(response, dict) else None
        usage = body.get("usage") if isinstance(body, dict) else None
        if not isinstance(body, dict) or not isinstance(usage, dict):
            continue
        for k in USAGE:
            v = usage.get(k)
            total[k] += v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else 0
        found = price(str(body.get("model") or model), usage)
        if found is None:
            unpriced = True
        else:
            cost, unit = (cost or 0.0) + found[0], found[1]
    return (total, None, UNPRICED) if unpriced else (total, cost, unit)

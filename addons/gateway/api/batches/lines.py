"""A batch file's lines both ways: each chat line's body translated as a chat request is (the caller's
`translate`: the chat dialect's checks, the model map, DashScope's rules), each result read back as the chat path
reads a whole answer (`back`), and what a results file cost (`priced`: the batch rate). Every line is parsed and
translated off the event loop, a piece at a time (pieces.py).

An upload holds at most MAX_LINES requests, each with a `custom_id` of its own (OpenAI's Batch API requires one,
unique in the file; Model Studio fails the batch for either): a file that breaks this is refused before anything
goes to Qwen. A line the gateway does not translate (embeddings, a line that is no chat request) goes to Qwen as
written: its Batch API fails the batch for what it refuses, in its own words. A chat line the chat path would
refuse refuses the upload, naming the line."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from ...errors import GatewayError
from ...pricing.prices import UNPRICED
from .advice import Prefixes
from .pieces import off_loop, pieces

CHAT = "/v1/chat/completions"
MAX_LINES = 50_000  # Model Studio's "up to 50,000 requests per file" (OpenAI's Batch API: the same)
CHUNK = 1 << 20  # bytes of a file decoded at once (a few ms)
Translate = Callable[[dict], dict]  # a client's chat body -> Qwen's (raises GatewayError)
Back = Callable[[dict], dict]  # Qwen's chat answer -> the client's
Price = Callable[[str, dict], "tuple[float, str] | None"]  # (Qwen's model, usage) -> (amount, unit)
USAGE = ("prompt_tokens", "completion_tokens", "total_tokens")


def _rows(data: bytes, what: str) -> list[str]:
    """The file's rows, decoded a chunk of about CHUNK bytes at a time: one call on a whole file (up to 1 GiB of
    results) holds the GIL, and so the event loop, until it returns."""
    rows: list[str] = []
    start = 0
    while start < len(data):
        end = data.find(b"\n", start + CHUNK)
        end = len(data) if end < 0 else end + 1
        try:
            rows += data[start:end].decode("utf-8").split("\n")[:-1 if end < len(data) else None]
        except UnicodeDecodeError:
            raise GatewayError(400, f"The {what} must be JSONL encoded in UTF-8.", param="file",
                               code="invalid_file_encoding") from None
        start = end
    return rows or [""]


def _upload_rows(data: bytes) -> list[str]:
    """The upload's rows (blank ones too: line numbers count them), refused beyond MAX_LINES requests."""
    rows = _rows(data, "batch file")
    if len(rows) > MAX_LINES and (held := sum(1 for text in rows if text.strip())) > MAX_LINES:
        raise GatewayError(400, f"The batch file holds {held} requests; a batch file can contain up to "
                                f"{MAX_LINES:,} requests.", param="file", code="too_many_requests")
    return rows


def _lines(rows: list[str]) -> bytes:
    return "".join(x + "\n" for x in rows).encode()


@dataclass
class _Upload:
    translate: Translate
    shared: Prefixes | None = None  # the batch advice's reading of each chat line as Qwen gets it (advice.py)
    seen: dict[str, int] = field(default_factory=dict)  # custom_id -> its line
    model: str = ""  # the model the first chat line names
    upstream: str = ""  # the Qwen model it was sent as

    def piece(self, first: int, rows: list[str]) -> bytes:
        out = []
        for n, text in enumerate(rows, first):
            if text.strip():
                out.append(json.dumps(self.line(n, text), ensure_ascii=False, separators=(",", ":")))
        return _lines(out)

    def line(self, n: int, text: str) -> object:
        try:
            obj = json.loads(text)
        except ValueError:
            raise GatewayError(400, f"Line {n} of the batch file is not valid JSON.", param="file",
                               code="invalid_json_line") from None
        cid = obj.get("custom_id") if isinstance(obj, dict) else None
        if not isinstance(cid, str) or not cid:
            raise GatewayError(400, f"Line {n} of the batch file has no custom_id: each request needs a custom_id "
                                    "string, unique in the file.", param=f"line {n}: custom_id",
                               code="missing_custom_id")
        if (before := self.seen.setdefault(cid, n)) != n:
            raise GatewayError(400, f"Line {n} of the batch file repeats the custom_id {cid[:64]!r} of line "
                                    f"{before}: each request's custom_id must be unique in the file.",
                               param=f"line {n}: custom_id", code="duplicate_custom_id")
        if obj.get("url") != CHAT or not isinstance(obj.get("body"), dict):
            return obj
        try:
            body = self.translate(obj["body"])
        except GatewayError as e:
            raise GatewayError(e.status, f"Line {n} (custom_id {cid[:64]!r}): {e.message}",
                               param=f"line {n}: {e.param}" if e.param else f"line {n}", code=e.code) from None
        if not self.model:
            self.model, self.upstream = str(obj["body"].get("model") or ""), str(body.get("model") or "")
        if self.shared is not None:
            self.shared.add(body)
        return {**obj, "body": body}


async def translate_file(data: bytes, translate: Translate,
                         shared: Prefixes | None = None) -> tuple[bytes, str, str]:
    """(the file for Qwen, the model the first chat line names, the Qwen model it was sent as); `shared` reads
    each translated chat line for the batch advice. Raises GatewayError 400 for a file refused (naming its line)."""
    rows = await off_loop(_upload_rows, data)
    upload = _Upload(translate, shared)
    out = [await off_loop(upload.piece, first, part) for first, part in pieces(rows)]
    return await off_loop(b"".join, out), upload.model, upload.upstream


def _back_piece(rows: list[str], back: Back) -> bytes:
    out = []
    for text in rows:
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
            text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
        out.append(text)
    return _lines(out)


async def results_back(data: bytes, back: Back) -> bytes:
    """A results (or errors) file as OpenAI's batch output reads: each answered chat line's body read back."""
    rows = await off_loop(_rows, data, "results file")
    out = [await off_loop(_back_piece, part, back) for _, part in pieces(rows)]
    return await off_loop(b"".join, out)


@dataclass
class _Bill:
    price: Price
    model: str  # for a line that names none
    usage: dict = field(default_factory=lambda: dict.fromkeys(USAGE, 0))
    cost: float | None = None
    unit: str = ""
    unpriced: bool = False

    def piece(self, rows: list[str]) -> None:
        for text in rows:
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
                self.usage[k] += v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else 0
            found = self.price(str(body.get("model") or self.model), usage)
            if found is None:
                self.unpriced = True
            else:
                self.cost, self.unit = (self.cost or 0.0) + found[0], found[1]


async def priced(data: bytes, price: Price, model: str) -> tuple[dict, float | None, str]:
    """(the usage summed, the cost, its unit) of a results file: each answered line priced by `price` (at the
    batch rate) with its own usage, as Qwen bills each request. `model`: for a line that names none. One line
    nothing prices makes the cost unknown: (None, "unpriced"), never the sum of the others (issue 59)."""
    rows = await off_loop(_rows, data, "results file")
    bill = _Bill(price, model)
    for _, part in pieces(rows):
        await off_loop(bill.piece, part)
    return (bill.usage, None, UNPRICED) if bill.unpriced else (bill.usage, bill.cost, bill.unit)

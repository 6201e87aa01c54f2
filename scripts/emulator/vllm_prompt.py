"""vLLM mode (vllm.py): the prompt as Qwen3's chat template renders it, its tokens, and vLLM's automatic prefix cache.

The emulator has no tokenizer. The prompt is the ChatML text Qwen3's template (`tokenizer_config.json` of
Qwen/Qwen3-8B) makes of the request — system text and `# Tools` first, `<|im_start|>role\\n…<|im_end|>` per message,
tool results as `<tool_response>` in a user turn, then the generation prompt `<|im_start|>assistant\\n` (with
`<think>\\n\\n</think>\\n\\n` when `enable_thinking` is false), or with `continue_final_message` the last message left
open — cut into tokens of four characters (the emulator's usual estimate). Answers are cut into word pieces
(`pieces`), `<think>`, `</think>`, `<tool_call>` and `</tool_call>` each one token, as Qwen's tokenizer has them.

Prefix cache (vLLM v0.11.0 `vllm/v1/core/kv_cache_manager.py`, `get_computed_blocks`; on by default in V1): the
prompt's tokens in blocks of `--block-size` (16); a request reads the longest run of full blocks, from the first,
that an earlier prompt stored (hash chained, salted by `cache_salt`), never the prompt's last token ("we must
recompute the last token to obtain logits": at most prompt_tokens - 1, rounded down to a block), then stores its own.
Shared by every client of the server, as vLLM's is; /_emulator/reset empties it.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import OrderedDict

from .cache import text_of

SPECIAL = ("<think>", "</think>", "<tool_call>", "</tool_call>")
_PIECE = re.compile("|".join(re.escape(s) for s in SPECIAL) + r"|\n+|[^\S\n]*[^\s<]+|<|[^\S\n]+")
TOOLS_HEAD = ("# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with "
              "function signatures within <tools></tools> XML tags:\n<tools>")
TOOLS_TAIL = ("\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
              "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
              "<args-json-object>}\n</tool_call>")


def pieces(text: str) -> list[str]:
    """The answer's tokens: special markers whole, newline runs, words with their leading spaces."""
    return _PIECE.findall(text)


def _message(m: dict) -> str:
    role, text = m.get("role"), text_of(m.get("content"))
    if role == "tool":
        return f"<|im_start|>user\n<tool_response>\n{text}\n</tool_response><|im_end|>\n"
    calls = "".join("\n<tool_call>\n" + json.dumps({"name": (c.get("function") or {}).get("name"), "arguments": (
        c.get("function") or {}).get("arguments")}, ensure_ascii=False) + "\n</tool_call>"
                    for c in m.get("tool_calls") or () if isinstance(c, dict))
    return f"<|im_start|>{role}\n{text}{calls}<|im_end|>\n"


def render(body: dict, thinking_off: bool) -> str:
    """The prompt text (see the module's docstring)."""
    msgs = [m for m in body["messages"] if isinstance(m, dict)]
    out = ""
    tools = [t for t in body.get("tools") or () if isinstance(t, dict)]
    if tools:
        system = text_of(msgs[0].get("content")) + "\n\n" if msgs and msgs[0].get("role") == "system" else ""
        listed = "".join("\n" + json.dumps(t, ensure_ascii=False) for t in tools)
        out += f"<|im_start|>system\n{system}{TOOLS_HEAD}{listed}{TOOLS_TAIL}<|im_end|>\n"
        msgs = msgs[1:] if system else msgs
    if body.get("continue_final_message") and msgs:
        last = _message(msgs[-1]).removesuffix("<|im_end|>\n")
        if msgs[-1].get("role") == "assistant":
            last = last.replace("<|im_start|>assistant\n", "<|im_start|>assistant\n<think>\n\n</think>\n\n", 1)
        return out + "".join(_message(m) for m in msgs[:-1]) + last
    out += "".join(_message(m) for m in msgs)
    if body.get("add_generation_prompt", True):
        out += "<|im_start|>assistant\n" + ("<think>\n\n</think>\n\n" if thinking_off else "")
    return out


def tokens(prompt: str) -> list[str]:
    return [prompt[i:i + 4] for i in range(0, len(prompt), 4)]


class PrefixCache:
    """Stored blocks by their chained hash, least recently used dropped first."""

    LIMIT = 200_000

    def __init__(self) -> None:
        self.blocks: OrderedDict[bytes, None] = OrderedDict()
        self.lock = threading.Lock()

    def serve(self, toks: list[str], block: int, salt: str | None) -> int:
        """Tokens of this prompt read from the cache; its full blocks stored."""
        hashes, h = [], hashlib.sha256((salt or "").encode()).digest()
        for i in range(len(toks) // block):
            h = hashlib.sha256(h + "\x00".join(toks[i * block:(i + 1) * block]).encode()).digest()
            hashes.append(h)
        readable = (len(toks) - 1) // block
        with self.lock:
            hit = 0
            while hit < readable and hashes[hit] in self.blocks:
                self.blocks.move_to_end(hashes[hit])
                hit += 1
            for h in hashes:
                self.blocks[h] = None
                self.blocks.move_to_end(h)
            while len(self.blocks) > self.LIMIT:
                self.blocks.popitem(last=False)
        return hit * block

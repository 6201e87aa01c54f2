"""What the client has been sent of a streamed answer the turn may continue (turn/continuation.py): a `ChunkSource`
in front of the upstream's own. It keeps the answer's text (the prefix a continuation goes on from) and whether
anything else went out — reasoning, a tool call, a second choice, log probabilities — which partial mode cannot go
on from.

Once continued, the continuation's chunks come out as more of the same answer: under the first chunk's id and
time, without a second opening role; its usage is every request's that made the answer (Qwen bills each), a
request that broke before Qwen reported its usage estimated from the one that finished (`summed`)."""

from __future__ import annotations

from dataclasses import dataclass

from ..cache_usage import EXPLICIT, read as read_cache
from ..errors import UpstreamError
from ..interfaces import ChatChunk, ChunkSource
from ..tokens import encoding


@dataclass(frozen=True, slots=True)
class Part:
    """One upstream request's share of the answer: where its text starts and ends, the usage Qwen reported."""

    start: int
    end: int
    usage: dict | None
    # for a request that broke before its usage: whether the next one went to the same account (its cache holds
    # what this one stored), what of this prompt Qwen's explicit cache held before it (the cache doctor's
    # estimate; None: nothing to go by), whether its markers asked for the hour, and whether its last message
    # ended in a marker (then what the next request read of the cache is this prompt, as Qwen counted it)
    same_account: bool = True
    read_before: int | None = None
    hour: bool = False
    marked_to_end: bool = False


class AnswerSoFar:
    def __init__(self, source: ChunkSource) -> None:
        self.source = source  # the chunk source of the request answering now
        self.pieces: list[str] = []  # the answer's text, as sent
        self.chars = 0
        # reasoning, a tool call, a second choice, log probabilities or a choice's finish went out: partial mode
        # cannot go on from it (nothing of this kind and no text: the request is sent again as it was)
        self.more_than_text = False
        self.id: str | None = None  # the first chunk's id and time, which every later chunk keeps
        self.created = 0
        self.parts: list[Part] = []  # the requests before the current one
        self.start = 0  # where the current request's text starts
        self.summed: dict | None = None  # the answer's usage once continued
        self.estimated: tuple[int, int] | None = None  # (prompt, completion) tokens the gateway estimated
        self.estimated_cache: tuple[int, int] | None = None  # of that prompt, (read, written) in Qwen's cache

    # ---- the ChunkSource ------------------------------------------------------------------------------

    @property
    def usage(self) -> dict | None:
        return self.summed if self.parts else self.source.usage

    @property
    def finish_reasons(self) -> dict[int, str]:
        return self.source.finish_reasons

    @property
    def error_text(self) -> str | None:
        return self.source.error_text

    @property
    def notes(self) -> list[str]:
        """What the source has to say on the flow (a finish said in the client's words), and what of the usage the
        gateway estimated: on the record as soon as the answer's usage went out, however the turn then ends."""
        said = getattr(self.source, "notes", None) or []
        if self.estimated is None:
            return said
        (prompt, output), split = self.estimated, self.estimated_cache
        cache = f", {split[0]} of the prompt read from Qwen's cache and {split[1]} written to it as the " \
            "continuation's read shows" if split else ""
        return [*said, f"usage: {prompt} prompt and {output} completion tokens of the request(s) that broke are the "
                       f"gateway's estimate (Qwen reported none){cache}"]

    def fault(self, error: object) -> UpstreamError:
        return self.source.fault(error)

    def feed(self, event: object) -> list[ChatChunk]:
        chunks = self.source.feed(event)
        if self.parts:
            chunks = [c for c in map(self._as_first, chunks) if c is not None]
        for chunk in chunks:
            self._sent(chunk)
        if self.more_than_text and not self.parts:
            # nothing can go on from here: the rest of the answer is the source's alone, not looked at chunk by chunk
            self.feed = self.source.feed  # type: ignore[method-assign]
        return chunks

    # ---- the answer -----------------------------------------------------------------------------------

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @classmethod
    def after(cls, source: ChunkSource) -> AnswerSoFar:
        """The record of an answer of which nothing but its opening went out (followed by nobody until then): its
        id and time the source's."""
        answer = cls(source)
        answer.id, answer.created = getattr(source, "id", None), getattr(source, "created", None) or 0
        return answer

    def continued(self, source: ChunkSource, *, same_account: bool = True, read_before: int | None = None,
                  hour: bool = False, marked_to_end: bool = False) -> None:
        """A continuation's chunk source takes over from the request that broke (see `Part` for the rest)."""
        self.parts.append(Part(self.start, self.chars, self.source.usage, same_account, read_before, hour,
                               marked_to_end))
        self.start, self.source = self.chars, source

    def _sent(self, chunk: ChatChunk) -> None:
        if self.id is None:
            self.id, self.created = chunk["id"], chunk["created"]
        for choice in chunk["choices"]:
            delta = choice["delta"]
            if "reasoning_content" in delta or "tool_calls" in delta or delta.get("function_call") is not None \
                    or delta.get("refusal") is not None or choice.get("logprobs") or choice["finish_reason"]:
                self.more_than_text = True
            text = delta.get("content")
            if text:
                if choice["index"]:  # a second choice's text: partial mode goes on from one
                    self.more_than_text = True
                self.pieces.append(text)
                self.chars += len(text)

    def _as_first(self, chunk: ChatChunk) -> ChatChunk | None:
        """A continuation's chunk as more of the first answer (None: only its opening, which the client had)."""
        chunk["id"], chunk["created"] = self.id or chunk["id"], self.created or chunk["created"]
        kept = []
        for choice in chunk["choices"]:
            delta = choice["delta"]
            delta.pop("role", None)
            if delta.get("content") == "":
                del delta["content"]
            if delta or choice["finish_reason"]:
                kept.append(choice)
        if chunk["choices"] and not kept and not chunk.get("usage"):
            return None
        chunk["choices"] = kept
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            chunk["usage"] = self.summed = self.sum(usage)
        return chunk

    def sum(self, last: dict) -> dict:
        """The answer's usage: the last request's as Qwen reported it, plus every earlier one's. An earlier request
        Qwen reported none for (it broke first) is estimated: its prompt, the last one's less the text it was sent
        beyond it (Qwen's count of the shared prompt); its output, the text it sent (the gateway's tokenizer).
        With cache markers, what it stored is what the request after it on the same account read (Qwen's
        count): of that, what was stored before it (the cache doctor's estimate) a read, the rest a write; its
        last message marked, that read is its whole prompt and the rest of the next one's its text, in Qwen's
        count. Continued on another account, a request marked to its end read what the doctor knows its own
        account held and wrote the rest."""
        count = encoding().count
        text = self.text
        prompt, output = _int(last.get("prompt_tokens")), _int(last.get("completion_tokens"))
        shared = max(0, prompt - count(text[:self.start]))
        hits, wrote, hour, kind = read_cache(last)
        cached, written = hits or 0, _lifetimes(wrote, hour)
        guessed, split = [0, 0], [0, 0]
        stored = cached if kind == EXPLICIT else None  # what the request after a broken one read of its writes
        broke = self.parts[-1] if self.parts else None
        sent: int | None = None  # the broken request's text as Qwen counted it (None: the gateway's count)
        if stored and broke is not None and broke.usage is None and broke.same_account and broke.marked_to_end \
                and stored < prompt:
            # the request that broke stored its whole prompt, and this one read it: that prompt as Qwen counted it,
            # and the rest of this one's the text that request had sent (the gateway's tokenizer counts it
            # otherwise: the turn's prompts 3.5 % under Qwen's bill, seen with a 500-token prefix)
            shared, sent = max(0, stored - count(text[:broke.start])), prompt - stored
        held: int | None = None  # what the previous broken request stored, on this one's account
        for part in self.parts:
            if part.usage:
                prompt += _int(part.usage.get("prompt_tokens"))
                output += _int(part.usage.get("completion_tokens"))
                hits, wrote, hour, _ = read_cache(part.usage)
                cached += hits or 0
                _add(written, _lifetimes(wrote, hour))
                held = None
                continue
            part_prompt = shared + count(text[:part.start])
            guessed[0] += part_prompt
            guessed[1] += sent if part is broke and sent is not None else count(text[part.start:part.end])
            if stored is not None and part.same_account:
                mine = min(stored, part_prompt)
                read = min(mine, held if held is not None else part.read_before or 0)
                cached += read
                written["ephemeral_1h_input_tokens" if part.hour else "ephemeral_5m_input_tokens"] += mine - read
                split[0], split[1] = split[0] + read, split[1] + mine - read
                held = mine
            elif stored is not None and part.marked_to_end and part.read_before is not None:
                # continued on another account, whose cache holds nothing of this one's: what the cache doctor
                # knows its own account held a read, the rest of its prompt (all of it marked) a write
                read = min(part_prompt, part.read_before)
                cached += read
                written["ephemeral_1h_input_tokens" if part.hour else "ephemeral_5m_input_tokens"] += part_prompt - read
                split[0], split[1] = split[0] + read, split[1] + part_prompt - read
                held = None
            else:
                held = None
        if guessed != [0, 0]:
            self.estimated = (guessed[0], guessed[1])
            self.estimated_cache = (split[0], split[1]) if split != [0, 0] else None
        prompt, output = prompt + guessed[0], output + guessed[1]
        out = {**last, "prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt + output}
        details = last.get("prompt_tokens_details")
        if cached or isinstance(details, dict):
            out["prompt_tokens_details"] = {**(details or {}), "cached_tokens": cached}
            if stored is not None:
                total = sum(written.values())
                out["prompt_tokens_details"].update(cache_creation_input_tokens=total, cache_creation=written)
                if "cache_write_tokens" in (details or {}):  # OpenAI's name for it, the normalizer's
                    out["prompt_tokens_details"]["cache_write_tokens"] = total
        return out


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _lifetimes(written: int | None, hour: int) -> dict[str, int]:
    """What a request wrote to the explicit cache (cache_usage.py), by lifetime (unsaid: the 5 minutes)."""
    return {"ephemeral_5m_input_tokens": (written or 0) - hour, "ephemeral_1h_input_tokens": hour}


def _add(into: dict[str, int], more: dict[str, int]) -> None:
    for k, v in more.items():
        into[k] += v

"""An OpenAI-compatible inference server's streamed chunks in the chat form (no I/O): its reasoning deltas under
`reasoning_content`, its usage chunk (asked with `stream_options.include_usage`: empty `choices`), each choice's
finish, an error event (`data: {"error": …}` or the older flat `{"object": "error", …}`) read as a refusal.

A finish the client's API has no word for is never passed on: vLLM's and SGLang's `abort` and vLLM's `error` end
the answer before it is complete (a break: `error_text`, which the turn continues or ends in the dialect's error);
vLLM's `repetition` (the repetition detector stopped it) is an incomplete answer, said as a cap's `length`, Qwen's
own word kept in `notes` for the flow. Any other unknown finish is a break too."""

from __future__ import annotations

from ... import ids
from ...errors import SERVER, UpstreamError
from ...interfaces import ChatChunk, ChunkChoice
from .answer import FINISHES, INCOMPLETE, classify, ended_early, reasoned


class Chunks:
    """The `ChunkSource` of providers.py for a self-hosted server."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.usage: dict | None = None  # unknown until the server's usage chunk
        self.finish_reasons: dict[int, str] = {}
        self.error_text: str | None = None
        self.broke_off = False  # error_text is a finish that broke the answer off (abort, error), not an error event
        self.notes: list[str] = []  # for the flow: a finish said in the client's words, and Qwen's own
        self.id: str | None = None  # the first event's, kept for every chunk
        self.created = 0
        self.opened_only = True  # nothing but the answer's opening came yet (a break then may be sent again)
        self._tools: set[int] = set()
        self._thought: set[int] = set()  # choices that reasoned and whose text has not begun

    def feed(self, event: object) -> list[ChatChunk]:
        if not isinstance(event, dict):
            return []
        if "error" in event or event.get("object") == "error":
            self.error_text = str((event.get("error") or {}).get("message") if isinstance(event.get("error"), dict)
                                  else event.get("message") or event.get("error") or "the server ended the answer")
            return []
        if self.id is None:
            self.id = str(event.get("id") or f"chatcmpl-{ids.uuid_text()}")
            created = event.get("created")
            self.created = created if isinstance(created, int) else 0
        out: list[ChatChunk] = []
        choices = [c for c in (self._choice(c) for c in event.get("choices") or ()) if c is not None]
        if choices:
            out.append(self._chunk(choices))
        if isinstance(event.get("usage"), dict):
            self.usage = event["usage"]
            if not choices:  # the usage chunk (include_usage): passed on as the client asked for it
                last = self._chunk([])
                last["usage"] = self.usage
                out.append(last)
        return out

    def _chunk(self, choices: list[ChunkChoice]) -> ChatChunk:
        return ChatChunk(id=self.id or "", object="chat.completion.chunk", created=self.created, model=self.model,
                         choices=choices)

    def _choice(self, choice: object) -> ChunkChoice | None:
        if not isinstance(choice, dict):
            return None
        at = choice.get("index")
        idx = at if isinstance(at, int) else 0
        delta = reasoned(choice.get("delta"))
        if delta.get("reasoning_content"):
            self._thought.add(idx)
        text = delta.get("content")
        if idx in self._thought and isinstance(text, str) and text:
            delta["content"] = text = text.lstrip("\n")  # the template's "\n\n" after </think>
            if text:
                self._thought.discard(idx)
            else:
                del delta["content"]
        if delta.get("tool_calls"):
            self._tools.add(idx)
        finish = choice.get("finish_reason")
        if finish == "stop" and idx in self._tools:
            finish = "tool_calls"
        elif finish and finish not in FINISHES:
            finish = self._unknown(idx, str(finish))
        if finish:
            self.finish_reasons[idx] = finish
        if not delta and not finish:
            return None
        if self.opened_only and any(delta.get(k) for k in ("content", "reasoning_content", "tool_calls")):
            self.opened_only = False
        return ChunkChoice(index=idx, delta=delta, logprobs=choice.get("logprobs"),  # type: ignore[typeddict-item]
                           finish_reason=finish or None)

    def _unknown(self, idx: int, finish: str) -> str | None:
        """A finish the client's API has no word for: `length` for an incomplete answer (noted), else a break."""
        if finish in INCOMPLETE:
            self.notes.append(f"choice {idx} ended with the server's finish_reason {finish!r}: an incomplete answer, "
                              "said to the client as length")
            return "length"
        self.broke_off = True
        self.error_text = ended_early(finish)
        return None

    def fault(self, error: object) -> UpstreamError:
        """An error inside the stream: an error event's body, or the text one left."""
        if self.broke_off and error == self.error_text:  # Qwen's server broke the answer off: sent again, continued
            return UpstreamError(SERVER, 502, str(error), "server_error", "upstream_error")
        if isinstance(error, dict):
            code = error.get("code")
            return classify(code if isinstance(code, int) and 400 <= code < 600 else 500, {"error": error})
        return classify(500, {"error": {"message": str(error or self.error_text or "the server ended the answer")}})

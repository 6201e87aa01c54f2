"""Web search on DashScope: the chat form's `web_search_options` as Qwen's `enable_search` + `search_options`, and
the sources Qwen answers with (`search_info`) as `url_citation` annotations. Pure functions, and one small
per-stream tracker (no I/O).

The request asks Qwen for its sources (`enable_source`) and for citation markers in the text
(`enable_citation`, `citation_format: "[ref_<number>]"`): a marker `[ref_2]` cites search result 2, so each
annotation spans its marker in the final text (Python string offsets, end exclusive). The text keeps the
markers: they are what the model wrote, and a stream never has to hold text back to rewrite them.

Where the sources are in Qwen's compatible-mode answer is not documented in our references: the shape read
here is DashScope's native one (shape assumed), `search_info: {"search_results": [{"index": 1, "title": …,
"url": …, "site_name": …, "icon": …}]}` at the top level of a whole answer, and on the first chunk(s) of a
stream. Without it there are no annotations: sources are never invented.
"""

from __future__ import annotations

import re

from ...errors import GatewayError
from ...exchange import note
from ...models.catalogue import ROWS, find

# The general Qwen models that search, as the catalogue says (its `search` rows; dated snapshots and -latest
# read as their family). Not the coder models nor the vision models.
SEARCH_MODELS = tuple(m.id for m in ROWS.values() if m.search)
CITATION_FORMAT = "[ref_<number>]"
_MARKER = re.compile(r"\[ref_(\d+)\]")
# OpenAI's search_context_size -> DashScope's search_strategy ("turbo" is its default; "max" searches more
# sources). medium is OpenAI's default: left to DashScope's.
_STRATEGY = {"low": "turbo", "high": "max"}


def can_search(model: str) -> bool:
    row = find(model)
    return row is not None and row.search


def why_not(model: str, *, oauth: bool) -> str | None:
    """Why this account and model cannot search (None: they can)."""
    if oauth:
        return "Qwen OAuth accounts (portal.qwen.ai) have no web search"
    if not can_search(model):
        return f"{model} cannot search"
    return None


def search_knobs(body: dict, *, oauth: bool, notes: list[str] | None = None) -> dict:
    """`web_search_options` -> `enable_search` and `search_options`; an offered search the account or model
    cannot do is dropped with a note, a demanded one refused (400 naming the client's parameter)."""
    if "web_search_options" not in body:
        return body
    out = dict(body)
    raw = out.pop("web_search_options")
    if raw is None:
        return out
    opts: dict = raw if isinstance(raw, dict) else {}
    model = str(out.get("model") or "")
    why = why_not(model, oauth=oauth)
    if why:
        if opts.get("optional"):
            note(notes, f"web search dropped: {why}")
            return out
        param = opts.get("param") if isinstance(opts.get("param"), str) else "web_search_options"
        raise GatewayError(400, f"Web search is not available here: {why}. Qwen searches the web on API-key "
                                f"accounts with {', '.join(SEARCH_MODELS)}.", param=param, code="unsupported_value")
    wanted = {"enable_source": True, "enable_citation": True, "citation_format": CITATION_FORMAT}
    if opts.get("forced"):
        wanted["forced_search"] = True
    size = opts.get("search_context_size")
    strategy = _STRATEGY.get(size) if isinstance(size, str) else None
    if strategy:
        wanted["search_strategy"] = strategy
    if opts.get("user_location"):
        note(notes, "web search user_location: accepted, Qwen's search takes no location")
    own = out.get("search_options")
    out["enable_search"] = True
    out["search_options"] = {**wanted, **(own if isinstance(own, dict) else {})}  # a client's Qwen extras win
    return out


# ---- the way back ------------------------------------------------------------------------------------------


def sources(search_info: object) -> dict[int, dict]:
    """Qwen's search results by their index: {"url", "title"} each (results without a URL are skipped)."""
    results = search_info.get("search_results") if isinstance(search_info, dict) else None
    out: dict[int, dict] = {}
    for i, r in enumerate(results if isinstance(results, list) else []):
        if not isinstance(r, dict) or not isinstance(r.get("url"), str) or not r["url"]:
            continue
        index = r["index"] if isinstance(r.get("index"), int) else i + 1
        title = next((t for t in (r.get("title"), r.get("site_name")) if isinstance(t, str) and t), r["url"])
        out[index] = {"url": r["url"], "title": title}
    return out


def url_citations(text: str, found: dict[int, dict]) -> list[dict]:
    """One `url_citation` per `[ref_N]` marker of a known source, spanning the marker."""
    out = []
    for m in _MARKER.finditer(text):
        src = found.get(int(m.group(1)))
        if src is not None:
            out.append({"type": "url_citation", "url_citation": {
                "start_index": m.start(), "end_index": m.end(), "url": src["url"], "title": src["title"]}})
    return out


def annotate_answer(answer: dict) -> dict:
    """A whole answer's messages with their annotations (in place; the answer is the gateway's own copy)."""
    found = sources(answer.get("search_info"))
    if not found:
        return answer
    for choice in answer.get("choices") or []:
        message = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            notes = url_citations(message["content"], found)
            if notes:
                message["annotations"] = notes
    return answer


class StreamCitations:
    """One stream's sources and text so far, per choice: the annotations once a choice finishes (markers may
    be split across chunks: they are found in the whole text)."""

    def __init__(self) -> None:
        self.found: dict[int, dict] = {}
        self.pending: dict | None = None  # search_info not yet passed on (it came in an event with no chunk)
        self.texts: dict[int, list[str]] = {}

    def event(self, event: dict) -> None:
        info = event.get("search_info")
        if isinstance(info, dict) and info.get("search_results"):
            self.found.update(sources(info))
            self.pending = info

    def take_info(self) -> dict | None:
        info, self.pending = self.pending, None
        return info

    def text(self, index: int, content: object) -> None:
        if self.found and isinstance(content, str) and content:  # only a searched answer is kept
            self.texts.setdefault(index, []).append(content)

    def annotations(self, index: int) -> list[dict]:
        if not self.found:
            return []
        return url_citations("".join(self.texts.get(index, ())), self.found)

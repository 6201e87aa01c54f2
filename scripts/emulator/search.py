"""DashScope's web search (`enable_search` + `search_options`) as the emulator answers it.

`enable_search` is accepted on the general models that search only (the catalogue's `search = true` rows, from
Model Studio's "Web search" page); any other model is refused with a 400 (body assumed: no public thread quotes
DashScope's). A searched answer carries its sources when
`search_options.enable_source` is set — shape assumed (DashScope's native `search_info`: {"search_results":
[{"index", "title", "url", "site_name", "icon"}]}, at the top level of a whole answer, on the first chunk of a
stream) — and, with `enable_citation`, markers in the text in the asked `citation_format` (`[<number>]` by
default, `[ref_<number>]`). The stream cuts a cited text into short pieces, so markers split across chunks.
"""

from __future__ import annotations

from urllib.parse import quote

from . import catalogue, rules

SEARCH_MODELS = catalogue.having("search")
RESULTS = 2
PIECE = 4  # characters per streamed piece of a cited text: "[ref_1]" spans two chunks at least


def check(body: dict) -> tuple[int, dict] | None:
    """The search fields' 400s; None when DashScope accepts them."""
    if not body.get("enable_search"):
        return None
    if body.get("model") not in SEARCH_MODELS:  # body assumed
        return rules.invalid(rules.ALGO + f"The model {body.get('model')} does not support enable_search.")
    options = body.get("search_options")
    if options is not None and not isinstance(options, dict):  # body assumed
        return rules.invalid(rules.ALGO + "search_options must be an object.")
    return None


def _options(body: dict) -> dict:
    options = body.get("search_options")
    return options if body.get("enable_search") and isinstance(options, dict) else {}


def info(body: dict, query: str) -> dict | None:
    """The answer's `search_info` (None: no search, or no sources asked for)."""
    if not body.get("enable_search") or not _options(body).get("enable_source"):
        return None
    return {"search_results": [
        {"index": i, "title": f"Result {i} for {query}", "url": f"https://example.com/{i}?q={quote(query)}",
         "site_name": "Example", "icon": "https://example.com/favicon.ico"} for i in range(1, RESULTS + 1)]}


def cite(body: dict, text: str) -> str:
    """The answer's text with citation markers, when asked: one after the text, one after a second sentence."""
    options = _options(body)
    if not text or not options.get("enable_citation"):
        return text
    fmt = options.get("citation_format") if isinstance(options.get("citation_format"), str) else "[<number>]"
    mark = lambda n: str(fmt).replace("<number>", str(n))  # noqa: E731
    return f"{text}{mark(1)} More on the web{mark(2)}."


def pieces(body: dict, text: str) -> list[str] | None:
    """A cited text's stream pieces (None: the ordinary pieces)."""
    if not _options(body).get("enable_citation"):
        return None
    return [text[i:i + PIECE] for i in range(0, len(text), PIECE)]

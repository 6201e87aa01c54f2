"""A model name nobody serves, answered with the names nearest to it that are served; and a model an account names
(its default, its map's targets) that its own list from Qwen lacks, with the list's own choice (`instead`).

`qwen3-coder-pluss` looks like a Qwen name, so it goes to Qwen as asked (model_map.ModelMap.resolve), and Qwen
refuses it: 400 `model_not_found`, "The model `…` does not exist or you do not have access to it.", naming
nothing else. The client gets OpenAI's answer to an unknown model instead (404 `model_not_found`, `param:
model`; the Messages API: Anthropic's 404 `not_found_error`), with the nearest names the gateway's accounts
serve (difflib over GET /v1/models' list: the catalogue or each key account's own list, and the aliases).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence

from ..errors import NO_RETRY, ErrorKind, UpstreamError

NOT_FOUND = "model_not_found"
CLOSE = 0.6  # difflib's similarity at least (its default): a typo or two, a missing or extra character
SHOWN = 3
_SNAPSHOT = re.compile(r"-(?:\d{4}-\d\d-\d\d|\d{8}|\d{4}|latest|preview)$")  # a dated or moving snapshot's tail
_VERSION = re.compile(r"^(qwen|qwq|qvq)(\d+(?:\.\d+)?)?")


def nearest(name: str, names: Iterable[str]) -> list[str]:
    """The served names nearest to `name`, nearest first (at most SHOWN)."""
    return difflib.get_close_matches(name, list(dict.fromkeys(n for n in names if n != name)), n=SHOWN,
                                     cutoff=CLOSE)


def message(name: str, names: Iterable[str], asked: str = "") -> str:
    """OpenAI's words for an unknown model, then what the client may have meant."""
    said = f"The model `{name}` does not exist or you do not have access to it."
    if asked and asked != name:
        said += f" (`{asked}` is sent to Qwen as `{name}`: qwen_model_map.)"
    near = nearest(name, names)
    if near:
        shown = [f"`{n}`" for n in near]
        return f"{said} Did you mean {' or '.join(filter(None, (', '.join(shown[:-1]), shown[-1])))}?"
    return f"{said} GET /v1/models lists the models this gateway serves."


def unknown(err: UpstreamError, name: str, names: Iterable[str], asked: str = "") -> UpstreamError:
    """Qwen's refusal of a model it does not have (`err`, code model_not_found) as OpenAI answers it."""
    return UpstreamError(ErrorKind.CLIENT, 404, message(name, names, asked), "invalid_request_error", NOT_FOUND,
                         param="model", headers=dict(NO_RETRY))


def family(model: str) -> str:
    """A model's family: its name without the generation and a snapshot's tail (qwen3-coder-plus and
    qwen3.7-coder-plus-2026-09-01: qwen-coder-plus; qwen3.6-plus and qwen-plus: qwen-plus)."""
    return _VERSION.sub(r"\1", _SNAPSHOT.sub("", model))


def _newest(model: str) -> tuple[float, bool]:
    found = _VERSION.match(model)
    return float(found.group(2)) if found and found.group(2) else 0.0, not _SNAPSHOT.search(model)


def instead(model: str, listed: Sequence[str]) -> str | None:
    """The list's own choice for a model it lacks: the newest of its family there (a mainline name before a
    snapshot), else the nearest name; None: nothing like it."""
    kin = [m for m in listed if m != model and family(m) == family(model)]
    if kin:
        return max(kin, key=_newest)
    near = nearest(model, listed)
    return near[0] if near else None


def not_in_list(named: Mapping[str, str], listed: Sequence[str]) -> list[tuple[str, str, str | None]]:
    """(model, where it is named, the list's choice) for each model `named` (model -> where) that `listed` lacks;
    none when nothing was listed (no list to judge by)."""
    if not listed:
        return []
    return [(model, where, instead(model, listed)) for model, where in named.items() if model not in listed]

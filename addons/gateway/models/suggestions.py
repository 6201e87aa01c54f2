"""A model name nobody serves, answered with the names nearest to it that are served.

`qwen3-coder-pluss` looks like a Qwen name, so it goes to Qwen as asked (model_map.ModelMap.resolve), and Qwen
refuses it: 400 `model_not_found`, "The model `…` does not exist or you do not have access to it.", naming
nothing else. The client gets OpenAI's answer to an unknown model instead (404 `model_not_found`, `param:
model`; the Messages API: Anthropic's 404 `not_found_error`), with the nearest names the gateway's accounts
serve (difflib over GET /v1/models' list: the catalogue or each key account's own list, and the aliases).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from ..errors import NO_RETRY, ErrorKind, UpstreamError

NOT_FOUND = "model_not_found"
CLOSE = 0.6  # difflib's similarity at least (its default): a typo or two, a missing or extra character
SHOWN = 3


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

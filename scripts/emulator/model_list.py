"""Model Studio's own model list with prices: `GET /api/v1/models?page_no=N&page_size=M&language=en-US` (Bearer
key), as dashscope-rules.md ("Learned since 2026-11-26", "Qwen's own model list, with prices") records third-party
readers of the real API reading it: `{"request_id", "success": true, "output": {"total", "page_no", "page_size",
"models": [...]}}`, each model with `capabilities`, `inference_metadata`, `model_info` (context_window,
max_input_tokens, max_output_tokens, reasoning_max_output_tokens), `published_time` and `prices[]` tiered by
`range_name` ("Input<=32k", "32k<Input<=128k", "Input>128k"; one tier: "Default"), each price a decimal string in
USD per million tokens with its `time_band`.

What a model's entry says is its catalogue row's (catalogue.py): a fact the row does not give is left out, never
guessed, but for the explicit cache's documented defaults (reads 10 %, 5-minute writes 125 % of the input price,
as the gateway's pricing/prices.py bills them); the hour's write and thinking output only where the row prices
them, the implicit cache's read only where the row gives `cached`. Prices are the row's for the key's billing
(`payg:intl` unless the `model_list` switch's `billing` names another for that key); a model the row prices not
on that billing is listed with `"prices": []`. Which models: what the key's OpenAI-compatible `GET /models` lists
(`listed`: the `key_models` and `listed_models` switches), the embedding models too, never a retired row.

Paging: page_no from 1, page_size 1 to 100 (defaults 1 and 10); anything else is a 400 `InvalidParameter` in
DashScope's flat native shape (`{"request_id", "code", "message"}`, as responses.py answers; the wording is
assumed). The switch `model_list` (state.py) plays drift: an unreadable list (for every key, or per key; `hang`:
no answer at all, as a list that times out), overridden entries, omitted models.
"""

from __future__ import annotations

import re
import select
import socket
import time
import uuid
from decimal import Decimal

from . import catalogue, chat, rules
from .faults import dumps

PATH = "/api/v1/models"
DEFAULT_BILLING = "payg:intl"
MAX_PAGE_SIZE = 100
EXPLICIT_READ, WRITE_5M = Decimal("0.10"), Decimal("1.25")  # of the input price (pricing/prices.py's defaults)
UNIT, TIME_BAND = "USD/1M tokens", "standard"
THINKERS = ("hybrid", "only", "effort")  # the catalogue's `thinking` values of a model that can reason
# What the drift switch's `unreadable` answers (DashScope's native bodies: responses.py's 401 and 404, its 500)
UNREADABLE = {
    500: {"code": "InternalError", "message": "An internal error has occured, please try again later or contact "
                                              "service support."},
    401: {"code": "InvalidApiKey", "message": "Invalid API-key provided."},
    404: {"code": "Not Found", "message": "Not support"},
    503: {"code": "ServiceUnavailable", "message": "The service is temporarily unavailable, please try again later."},
}
HANG = "hang"  # the request read, never answered: held until the client leaves or the emulator stops
HANG_MOST_S = 300.0  # a held request ends itself after this long (the test's processes stop themselves)


def unreadable(sw: dict, key: str) -> object:
    """How this key's list fails (the drift's `unreadable`: one fault for every key, or `{key: fault}`), None: it
    does not."""
    drift = sw["model_list"] if isinstance(sw.get("model_list"), dict) else {}
    broken = drift.get("unreadable")
    return broken.get(key) if isinstance(broken, dict) else broken


def hold(h) -> None:
    """No answer: the request is held until the client gives up (closes its end), the emulator stops, or
    HANG_MOST_S; then the connection is closed unanswered."""
    h.close_connection = True
    deadline = time.monotonic() + HANG_MOST_S
    while time.monotonic() < deadline and not h.server.stopping.wait(0.2):
        try:
            ready, _, _ = select.select([h.connection], [], [], 0)
            if ready and not h.connection.recv(1, socket.MSG_PEEK):
                return  # the client closed its end
        except (OSError, ValueError):
            return


def compatible_too(sw: dict) -> bool:
    """Whether the key's OpenAI-compatible GET /models fails as its list does (`compatible`: a host whose lists are
    both down); by default it answers."""
    drift = sw["model_list"] if isinstance(sw.get("model_list"), dict) else {}
    return drift.get("compatible") is True


def listed(sw: dict, own: list | None, embeddings: bool = False) -> list:
    """The models a key's list names: the ones it unlocks (`own`, the `key_models` switch), else the `listed_models`
    switch's, else every model served but the OAuth portal's own names (coder-model, vision-model) and the retired
    ones (Model Studio lists what it still serves); with `embeddings`, the embedding models after the chat ones
    (the OpenAI-compatible list names chat models only)."""
    if own is not None:
        return own
    if isinstance(sw.get("listed_models"), list):
        return sw["listed_models"]
    served = (*chat.known_models(sw), *(chat.EMBEDDING_MODELS if embeddings else ()))
    return [m for m in served
            if (catalogue.row(m) or {}).get("plans") != ["oauth"] and not rules.retired(m, sw.get("today"))]


def amount(tokens: int) -> str:
    """A tier bound as range names write it: 32000 -> "32k", 1000000 -> "1M", 1500 -> "1.5k", 999 -> "999"."""
    for size, suffix in ((1_000_000, "M"), (1000, "k")):
        if tokens >= size:
            return f"{(Decimal(tokens) / size).normalize():f}{suffix}"
    return str(tokens)


def range_names(bounds: list) -> list[str]:
    """Each tier's range_name from the tiers' upper bounds (`upto`, None for the last): one tier is "Default"."""
    if len(bounds) <= 1:
        return ["Default"] * len(bounds)
    names, low = [], None
    for upto in bounds:
        if upto is None:
            names.append(f"Input>{amount(low)}" if low is not None else "Default")
        elif low is None:
            names.append(f"Input<={amount(upto)}")
        else:
            names.append(f"{amount(low)}<Input<={amount(upto)}")
        low = upto if upto is not None else low
    return names


def decimal(value: object) -> str:
    """A price as the real API sends decimals: a plain string, no float noise ("0.04", not "0.04000000000000001")."""
    return f"{Decimal(str(value)).normalize():f}"


def tier_prices(tier: dict, embedding: bool) -> list[dict]:
    """One tier's prices in the list's types (an embedding model's: input and output only)."""
    base = Decimal(str(tier["input"]))
    kinds: list[tuple[str, object]] = [("input_token", base), ("output_token", tier["output"])]
    if not embedding:
        kinds += [("input_token_cache", tier.get("cached")),
                  ("input_token_cache_read", tier.get("cache_read", base * EXPLICIT_READ)),
                  ("input_token_cache_creation_5m", tier.get("cache_write", base * WRITE_5M)),
                  ("input_token_cache_creation_1h", tier.get("cache_write_1h")),
                  ("thinking_output_token", tier.get("thinking_output"))]
    return [{"type": kind, "price": decimal(value), "price_unit": UNIT, "time_band": TIME_BAND}
            for kind, value in kinds if value is not None]


def prices(row: dict, billing: str) -> list[dict]:
    """The row's price tiers on this billing (catalogue `price."<billing>"`), as the list serves them."""
    tiers = (row.get("price") or {}).get(billing) or []
    embedding = row.get("kind") == "embedding"
    return [{"range_name": name, "prices": tier_prices(t, embedding)}
            for name, t in zip(range_names([t.get("upto") for t in tiers]), tiers)]


def display_name(model: str) -> str:
    """Qwen's display name for a model id: "qwen3.6-plus" -> "Qwen3.6-Plus", "qwen3.5-397b-a17b" ->
    "Qwen3.5-397B-A17B" (the emulator's rule; the real list's names are Qwen's own)."""
    return "-".join(p.upper() if re.fullmatch(r"a?\d+b", p) else p[:1].upper() + p[1:] for p in model.split("-"))


def published(released: object) -> str | None:
    """The row's `released` as the list's published_time; a month or a year alone is not a day: none."""
    day = str(released or "")
    return f"{day} 00:00:00" if re.fullmatch(r"\d{4}-\d\d-\d\d", day) else None


def entry(model: str, sw: dict, billing: str) -> dict:
    """One model's entry in the list, from its catalogue row (an `extra_models` id has none: its id and caps)."""
    row = catalogue.row(model) or {}
    info = {"context_window": row.get("context"), "max_input_tokens": row.get("input") or row.get("context"),
            "max_output_tokens": rules.output_cap(model, sw.get("model_caps") or {}),
            "reasoning_max_output_tokens": row.get("budget")}
    request = ["Text", *(["Image"] if row.get("vision") else []), *(["Video"] if row.get("video") else [])]
    out: dict = {"model": model, "name": display_name(model), "provider": "qwen"}
    if row.get("thinks") or row.get("thinking") in THINKERS:
        out["capabilities"] = ["Reasoning"]
    out["inference_metadata"] = {"request_modality": request, "response_modality": ["Text"]}
    out["model_info"] = {k: v for k, v in info.items() if v is not None}
    when = published(row.get("released"))
    if when:
        out["published_time"] = when
    out["prices"] = prices(row, billing)
    return out


def overridden(out: dict, change: object) -> dict:
    """An entry with the switch's `override` for it: `model_info` merged key by key, any other field (`prices`,
    `published_time`, …) replaced whole; a null removes the field."""
    if not isinstance(change, dict):
        return out
    for key, value in change.items():
        if key == "model_info" and isinstance(value, dict):
            merged = {**out.get("model_info", {}), **value}
            out["model_info"] = {k: v for k, v in merged.items() if v is not None}
        elif value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def page_number(query: dict, name: str, default: int, most: int | None) -> int | str:
    """A paging parameter as an int, or what is wrong with it (the 400's message)."""
    raw = query.get(name)
    if raw is None:
        return default
    if not re.fullmatch(r"\d+", raw) or int(raw) < 1 or (most is not None and int(raw) > most):
        limit = f"an integer from 1 to {most}" if most is not None else "an integer of at least 1"
        return f"The parameter {name} must be {limit}, got '{raw}'."
    return int(raw)


def native_error(status: int, code: str, message: str) -> tuple[int, bytes]:
    return status, dumps({"request_id": str(uuid.uuid4()), "code": code, "message": message})


def answer(query: dict, sw: dict, models: list, key: str) -> tuple[int, bytes]:
    """The list's answer (status, body bytes) for a key that may call `models` (`listed`), the switches `sw`."""
    drift: dict = sw["model_list"] if isinstance(sw.get("model_list"), dict) else {}
    broken = unreadable(sw, key)
    if broken in UNREADABLE:
        return native_error(broken, UNREADABLE[broken]["code"], UNREADABLE[broken]["message"])
    page_no, page_size = page_number(query, "page_no", 1, None), page_number(query, "page_size", 10, MAX_PAGE_SIZE)
    for bad in (page_no, page_size):
        if isinstance(bad, str):
            return native_error(400, "InvalidParameter", bad)
    assert isinstance(page_no, int) and isinstance(page_size, int)
    omit, changes = set(drift.get("omit") or ()), drift.get("override") or {}
    billings: dict = drift["billing"] if isinstance(drift.get("billing"), dict) else {}
    billing = str(billings.get(key) or DEFAULT_BILLING)
    names = [m for m in dict.fromkeys(models) if m not in omit and not rules.retired(m, sw.get("today"))]
    start = (page_no - 1) * page_size
    page = [overridden(entry(m, sw, billing), changes.get(m)) for m in names[start:start + page_size]]
    data = dumps({"request_id": str(uuid.uuid4()), "success": True,
                  "output": {"total": len(names), "page_no": page_no, "page_size": page_size, "models": page}})
    if broken == "garbage":  # HTTP 200 and a body cut short: not JSON
        return 200, data[:len(data) // 2]
    return 200, data

"""DashScope's drift check (`qwen-auth check NAME [--deep]`, providers.Provider.drift): what Qwen says now of one
key account against what the gateway assumes, spending nothing — the key's own model list (Model Studio's
`GET /api/v1/models`, read by model_list.py) against the catalogue: each listed model's prices per tier against the
gateway's built-in table for the account's billing (pricing/prices.py `builtin()`), its output cap and longest
prompt, models the catalogue does not know, and models the catalogue serves on the account's plan that the list
leaves out. `deep` adds drift_probes.py's few small requests. Never the key."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ...accounts import Credential
from ...drift_report import Found, Report
from ...models.catalogue import CHAT, chat_models, embedding_models, find, retired
from ...models.listed import ListedModel
from ...models.model_map import BILLING_PLANS, output_cap
from ...models.routes import window
from ...price_tier import Tier
from ...pricing.prices import CREATION, EXPLICIT_HIT, builtin
from . import model_list
from .drift_probes import Prober
from .headers import GATEWAY_AGENT

TOLERANCE = 0.005  # a price differs when it is more than 0.5 % away
PROBED = "qwen3.6-flash"  # --deep's model when the account names no default and its list names it (or is unread)
LIST_WAIT_S = 5.0  # the list's wait: one that does not answer within it is said unread (the chat API still probed)
CACHE_PROBE_TOKENS = "~2,300"


# ---- the list against the catalogue (pure) ----------------------------------------------------------------

# (Tier field, its name, what the gateway bills when a tier gives none: None, unpriced)
PRICES: tuple[tuple[str, str, Callable[[Tier], float] | None], ...] = (
    ("input", "input", None), ("output", "output", None),
    ("cached", "implicit cache read", lambda t: t.input),
    ("cache_read", "explicit cache read", lambda t: t.input * EXPLICIT_HIT),
    ("cache_write", "5-minute cache write", lambda t: t.input * CREATION),
    ("cache_write_1h", "1-hour cache write", None),
    ("thinking_output", "thinking output", lambda t: t.output),
)
LIST_WINS = "the gateway uses Qwen's figure while it can read the list"


def models(count: int) -> str:
    return f"{count} model{'s' * (count != 1)}"


def usd(value: float | None) -> str:
    return "unpriced" if value is None else f"${value:.6g}/M"


def _price(tier: Tier, name: str, default: Callable[[Tier], float] | None) -> float | None:
    value = getattr(tier, name)
    return default(tier) if value is None and default is not None else value


def _differ(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is not b
    return abs(a - b) > TOLERANCE * max(abs(a), abs(b))


def bounds(tiers: Sequence[Tier]) -> tuple[int | None, ...]:
    """The tiers' prompt bounds but the last one's (the top tier takes any prompt above the one below it)."""
    return tuple(t.up_to for t in tiers[:-1])


def compare_prices(model: str, ours: Sequence[Tier], theirs: Sequence[Tier], report: Report) -> bool:
    """Whether the tiers agree; each price more than 0.5 % away (or the tiers' bounds) reported."""
    todo = f"{LIST_WINS}; correct the catalogue's price (used when the list cannot be read)"
    if bounds(ours) != bounds(theirs):
        said = lambda b: " / ".join(f"up to {n:,}" for n in b if n) + (" / above" if b else "one tier")  # noqa: E731
        report.diff(f"{model} price tiers", said(bounds(ours)), said(bounds(theirs)), todo)
        return False
    same = True
    for i, (a, b) in enumerate(zip(ours, theirs)):
        tier = f" ({b.name or f'tier {i + 1}'})" if len(ours) > 1 else ""
        for name, label, default in PRICES:
            if getattr(a, name) is None and getattr(b, name) is None:
                continue  # neither gives it: it follows the input or output price, compared above
            mine, qwen = _price(a, name, default), _price(b, name, default)
            if _differ(mine, qwen):
                report.diff(f"{model} {label} price{tier}", usd(mine), usd(qwen), todo)
                same = False
    return same


def compare_caps(model: str, listed: ListedModel, report: Report) -> bool | None:
    """Whether the output cap and longest prompt the gateway holds requests to agree with the list's (None: neither
    side knows both of any)."""
    compared, same = False, True
    for what, mine, qwen, field in (("output cap", output_cap(model), listed.max_output, "output"),
                                    ("longest prompt", window(model), listed.max_input or listed.context,
                                     "input`/`context")):
        if mine is None or qwen is None:
            continue
        compared = True
        if mine != qwen:
            report.diff(f"{model} {what}", f"{mine:,}", f"{qwen:,}", f"{LIST_WINS}; correct the catalogue's `{field}`")
            same = False
    return same if compared else None


def compare_list(listed: Mapping[str, ListedModel], billing: str, embeddings: bool, report: Report) -> None:
    """The key's list against the catalogue and the built-in prices of `billing` (see the module's docstring)."""
    report.ok(f"model list: {models(len(listed))} read")
    table = builtin()
    unit = table.units.get(billing)
    prices = table.models.get(billing) if billing and not unit else None
    if not billing:
        report.skipped.append("prices and the plan's models: the gateway knows no plan of this host (billing unknown)")
    elif unit:
        report.skipped.append(f"prices: this plan is counted in {unit}, not money")
    unpriced: list[str] = []
    priced = capped = 0
    for model, facts in listed.items():
        row = find(model)
        if row is None:
            report.diff(model, "nothing (not in the catalogue)", "listed", "new: the gateway serves it with the "
                        "list's facts")
            continue
        gone = retired(model)
        if gone is not None:
            report.diff(model, f"retired after {gone.retires} (answered locally)", "listed",
                        "if Qwen still serves it, correct the catalogue's `retires`")
            continue
        capped += compare_caps(model, facts, report) is True
        if prices is not None and facts.tiers:
            ours = prices.get(model) or prices.get(row.family or row.id)  # a snapshot is priced as its family
            if ours is None:
                unpriced.append(model)
            else:
                priced += compare_prices(model, ours, facts.tiers, report)
    if unpriced:
        named = ", ".join(unpriced[:3]) + (", …" if len(unpriced) > 3 else "")
        report.diff(f"prices of {models(len(unpriced))} ({named})", f"unpriced (the catalogue has none on {billing})",
                    "priced", f"{LIST_WINS}; they are unpriced when it cannot")
    if priced:
        report.ok(f"prices: {models(priced)} as the catalogue's on {billing}")
    if capped:
        report.ok(f"caps: output caps and longest prompts of {models(capped)} as the catalogue's")
    plan = BILLING_PLANS.get(billing)
    if plan is not None:
        served = [m for m in [*chat_models({plan}), *(embedding_models({plan}) if embeddings else [])]
                  if retired(m) is None]
        missing = [m for m in served if m not in listed]
        for model in missing:
            report.diff(model, f"served on {plan}", "not in this key's list",
                        "this key cannot call it; requests for it go to other accounts")
        if served and not missing:
            report.ok(f"the plan's models: all {len(served)} the catalogue serves on {plan} are listed")


def probe_model(asked: str | None, default: str | None, listed: Mapping[str, ListedModel] | None) -> str:
    """--deep's model: --model, the account's default model, else qwen3.6-flash (when listed or no list was read),
    else the first listed chat model the catalogue knows."""
    if asked or default:
        return str(asked or default)
    if listed is None or PROBED in listed:
        return PROBED
    chat = [m for m in listed if (row := find(m)) is not None and row.kind == CHAT and retired(m) is None]
    return chat[0] if chat else next(iter(listed), PROBED)


# ---- the command ----------------------------------------------------------------------------------------------


def read_list(client, cred: Credential) -> tuple[dict[str, ListedModel] | None, str]:
    """(the key's list by model id, "") or (None, why it could not be read), every page of it, within LIST_WAIT_S
    (a list that hangs is unread; a host that cannot be reached is the caller's to say)."""
    import httpx  # the client's own library (auth_check.py runs the check with an httpx.Client)
    headers = {"User-Agent": GATEWAY_AGENT, "Accept": "application/json", "Authorization": f"Bearer {cred.token}"}
    pages = model_list.Pages(cred.base_url)
    deadline = time.monotonic() + LIST_WAIT_S
    while (where := pages.next()) is not None:
        left = deadline - time.monotonic()
        try:
            if left <= 0:
                raise httpx.ReadTimeout("the list's wait is over")
            r = client.get(where[0], headers=headers, timeout=left)
        except httpx.TimeoutException:
            return None, f"no answer within {LIST_WAIT_S:g} s"
        if r.status_code != 200:
            return None, f"HTTP {r.status_code}"
        try:
            pages.take(r.content)
        except json.JSONDecodeError:
            return None, "not JSON"
        except ValueError:
            return None, "not Model Studio's list"
    records = pages.records
    if not records:
        return None, "no models"
    return {m.id: m for m in (model_list.model(record)[0] for record in records)}, ""


def check(client: Any, cred: Credential, report: Report, *, deep: bool = False, model: str | None = None,
          cache_probe: bool = True) -> None:
    """The check, its findings on `report` (`client`: an httpx.Client; its errors are the caller's to say)."""
    listed, why = read_list(client, cred)
    if listed is None:
        report.differences.append(Found(f"Qwen's list could not be read ({why})", "", "",
                                        "the gateway uses the catalogue for this account"))
    else:
        compare_list(listed, cred.billing, cred.embeddings, report)
    if deep:
        probed = probe_model(model, cred.default_model, listed)
        facts = listed.get(probed) if listed else None
        prober = Prober(client, cred, probed, find(probed), report)
        prober.range_refusal(output_cap(probed), facts.max_output if facts else None)
        prober.stream_shape()
        prober.partial_mode()
        if cache_probe:
            prober.cache_read()

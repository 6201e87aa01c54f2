"""A named key's budgets, each declared once here: what it counts (tokens Qwen reported, or USD by the price
table), over which period (the UTC day or month), of which requests (all of the key's, or one model's), its
qwen-keys flag and its refusal in each dialect. Nothing else names a budget: the check and the holds (tenancy/team.py,
tenancy/holds.py: in memory, or one PL/pgSQL function for every budget under the key's advisory lock), the spend
read from either store (tenancy/budget_sql.py), the refusals (tenancy/refusals.py) and qwen-keys (cli/keys.py) read
these declarations.

Where a limit is kept: the first release's two budgets in their own columns of client_keys (`column`, also the
record's attribute); any other in the key's `budgets` column (JSON, {flag: {model or "": amount}}), so that a new
budget needs no new column, no migration, and moves and copies with the key as it is."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import NamedTuple

from .ring import KeyRecord

TOKENS, USD = "tokens", "usd"
DAY, MONTH = "day", "month"


@dataclass(frozen=True)
class Budget:
    flag: str  # qwen-keys' option, without "--" (and its key in the `budgets` column)
    counts: str  # TOKENS or USD
    period: str  # DAY or MONTH (UTC)
    per_model: bool  # of one model's requests (the flag takes MODEL=AMOUNT, once per model); else all the key's
    help: str  # qwen-keys --help
    openai: str  # the refusal on OpenAI's dialects; {key} {model} {spent} {limit} {reset} filled in
    anthropic: str  # after Anthropic's spend-limit sentence on the Messages API (which says when access returns)
    column: str = ""  # its own column of client_keys and attribute of KeyRecord ("": kept in `budgets`)

    @property
    def meter(self) -> str:
        """What of a key's spend it reads (tenancy/schema.py's Spent, and a model's Tally): as the stores sum it."""
        return f"{self.counts}_{'today' if self.period == DAY else 'month'}"

    @property
    def field(self) -> str:
        """Its name in qwen-keys list --json."""
        return self.column or self.flag.replace("-", "_")

    def what(self, model: str = "") -> str:
        """In words, for a refusal that names it."""
        return (f"a {'daily' if self.period == DAY else 'monthly'} {'token' if self.counts == TOKENS else 'USD'} "
                f"budget" + (f" on {model}" if model else ""))

    def option(self, model: str, amount: str) -> str:
        """How qwen-keys sets it: `--daily-tokens N`, `--model-monthly-usd MODEL=X`."""
        return f"--{self.flag} " + (f"{model}={amount}" if self.per_model else amount)


BUDGETS = (
    Budget("daily-tokens", TOKENS, DAY, False, "tokens per UTC day, as Qwen reported them",
           "Key {key!r} has used its daily budget: {spent} of {limit} today (qwen-keys --daily-tokens). It resets "
           "{reset}.", "key {key!r}: {spent} of {limit} today, qwen-keys --daily-tokens", column="daily_tokens"),
    Budget("monthly-usd", USD, MONTH, False, "USD per UTC month, from the price table",
           "Key {key!r} has spent its monthly budget: {spent} of {limit} this month (qwen-keys --monthly-usd). It "
           "resets {reset}.", "key {key!r}: {spent} of {limit} this month, qwen-keys --monthly-usd",
           column="monthly_usd"),
    Budget("model-monthly-usd", USD, MONTH, True, "USD per UTC month on one model, from the price table (repeat "
           "for more models; MODEL=0 removes one)",
           "Key {key!r} has spent its monthly budget on {model}: {spent} of {limit} this month (qwen-keys "
           "--model-monthly-usd). It resets {reset}.",
           "key {key!r}: {spent} of {limit} on {model} this month, qwen-keys --model-monthly-usd"),
)
BY_FLAG = {b.flag: b for b in BUDGETS}
DAILY_TOKENS, MONTHLY_USD = BY_FLAG["daily-tokens"], BY_FLAG["monthly-usd"]


class Line(NamedTuple):
    """One budget of a key that counts a request: of the key's requests (model "") or of one model's."""

    budget: Budget
    model: str
    limit: float


def limits(budget: Budget, rec: KeyRecord) -> tuple[tuple[str, float], ...]:
    """(model or "", amount) of each limit `rec` has of `budget`."""
    if budget.column:
        amount = getattr(rec, budget.column)
        return (("", float(amount)),) if amount else ()
    return tuple((model, amount) for flag, model, amount in rec.budgets if flag == budget.flag and amount)


def lines(rec: KeyRecord, model: str) -> list[Line]:
    """The budgets of `rec` that count its request for `model` (the Qwen model it goes to)."""
    return [Line(b, m, amount) for b in BUDGETS for m, amount in limits(b, rec) if not b.per_model or m == model]


def per_attempt(rec: KeyRecord) -> bool:
    """Whether the engine's check of each attempt (tenancy/team_budgets.py `priced_only`) concerns `rec`'s requests:
    a USD budget (nothing unpriced passes it) or a budget of one model (the model as sent counts)."""
    return any(limits(b, rec) for b in BUDGETS if b.counts == USD or b.per_model)


def spent_on(line: Line, spent: object) -> float:
    """What a key spent that `line` counts, from its Spent (tenancy/schema.py) as memory holds it (nothing on a
    model it never used is 0; a meter the spend lacks is an error, never 0: `meters_kept`)."""
    meter = getattr(spent, "models", {}).get(line.model) if line.model else spent
    return 0.0 if meter is None else float(getattr(meter, line.budget.meter) or 0)


def meters_kept(spent: type, tally: type, declared: tuple[Budget, ...] = BUDGETS) -> None:
    """Every budget reads a meter the stores keep (`spent`: a key's Spent, `tally`: a model's): one they do not would
    count 0 and never refuse, silently — the gateway refuses to load instead (tenancy/schema.py calls this)."""
    for budget in declared:
        store = tally if budget.per_model else spent
        kept = {f.name for f in dataclasses.fields(store)}
        if budget.meter not in kept:
            raise TypeError(f"budget --{budget.flag} reads {budget.meter}, which {store.__name__} does not keep "
                            f"({', '.join(sorted(kept))}): keep it in the stores first")


def since(budget: Budget, today: str) -> str:
    """The first UTC day its period counts, for `today` ("YYYY-MM-DD")."""
    return today if budget.period == DAY else today[:8] + "01"


def amounts(line: Line, spent: float) -> tuple[str, str]:
    """(spent, limit) as a refusal says them: `1,234` of `1,000 tokens`, `$5.25` of `$5.00`, `$0.0012` of `$0.0010`."""
    if line.budget.counts == TOKENS:
        return f"{int(spent):,}", f"{int(line.limit):,} tokens"
    places = _places(spent, line.limit)
    return f"${spent:,.{places}f}", f"${line.limit:,.{places}f}"


def _places(spent: float, limit: float) -> int:
    """Decimals for both amounts: cents, or more (up to the millionth) until the limit reads as set and a spend
    that differs from it reads differently, so a $0.001 budget never reads "$0.00 of $0.00"."""
    places = 2
    while places < 6 and (round(limit, places) != limit or
                          (spent != limit and round(spent, places) == round(limit, places))):
        places += 1
    return places


# ---- a limit in qwen-keys and in the `budgets` column ---------------------------------------------------------

def parse(budget: Budget, value: str) -> tuple[str, float]:
    """A flag's value: (model or "", amount ≥ 0); ValueError says what is wrong."""
    model, amount = value.rpartition("=")[::2] if budget.per_model else ("", value)
    if budget.per_model and not model.strip():
        raise ValueError(f"expected MODEL=AMOUNT, got {value!r}")
    if budget.counts == TOKENS:
        if not amount.isdigit():
            raise ValueError(f"not a whole number ≥ 0: {amount!r}")
        return model.strip(), float(int(amount))
    try:
        usd = float(amount.lstrip("$"))
    except ValueError:
        usd = -1.0
    if not (usd >= 0 and usd != float("inf")):  # NaN fails too
        raise ValueError(f"not an amount of USD ≥ 0: {amount!r}")
    return model.strip(), usd


def merged(rec: KeyRecord | None, given: dict[str, list[tuple[str, float]]]) -> tuple[tuple[str, str, float], ...]:
    """The record's `budgets` with the limits given replaced (an amount 0 removes one)."""
    kept = {(f, m): a for f, m, a in (rec.budgets if rec is not None else ())}
    for flag, values in given.items():
        for model, amount in values:
            kept[(flag, model)] = amount
    return tuple(sorted((f, m, a) for (f, m), a in kept.items() if a))


def encode(entries: tuple[tuple[str, str, float], ...]) -> str:
    out: dict[str, dict[str, float]] = {}
    for flag, model, amount in entries:
        out.setdefault(flag, {})[model] = amount
    return json.dumps(out, sort_keys=True) if out else ""


def decode(text: str | None) -> tuple[tuple[str, str, float], ...]:
    """The `budgets` column as the record holds it; a budget this gateway does not declare (a newer gateway's) is
    kept, and counts nothing here."""
    if not text:
        return ()
    try:
        held = json.loads(text)
        return tuple(sorted((str(f), str(m), float(a)) for f, by_model in held.items() for m, a in by_model.items()))
    except (ValueError, AttributeError, TypeError):
        return ()

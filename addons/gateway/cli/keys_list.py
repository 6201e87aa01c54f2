"""`qwen-keys list`: each key's limits and spend, as a table or as JSON rows; and a key's limits in one line. The
table fits 100 columns: a key's limits and the rest of its spend in lines under its row; `--wide` gives each its
column. There the first release's budgets have their own columns; every other budget (tenancy/budgets.py) shows in
BUDGETS, with what the key spent that it counts, and in a key's JSON row (under its flag's name) only when the key
has one."""

from __future__ import annotations

import textwrap
import time

from ..pricing.prices import usd
from ..tenancy import budgets
from ..tenancy.ring import KeyRecord
from ..tenancy.store import KeyStore, Spent


def _amount(budget: budgets.Budget, amount: float) -> str:
    return f"{int(amount):,}" if budget.counts == budgets.TOKENS else usd(amount)


def described(rec: KeyRecord) -> str:
    parts = [f"rpm {rec.rpm}" if rec.rpm else "", f"tpm {rec.tpm:,}" if rec.tpm else ""]
    parts += [f"{b.flag} " + (f"{model}=" if model else "") + _amount(b, amount)
              for b in budgets.BUDGETS for model, amount in budgets.limits(b, rec)]
    return ", ".join(p for p in parts if p) or "no limits"


def _plural(n: int, what: str) -> str:
    return f"{n:,} {what}{'' if n == 1 else 's'}"


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts)) if ts else "-"


def _others(rec: KeyRecord, s: Spent) -> dict[str, dict]:
    """The key's budgets without a column of their own: {field: {model or "": {"limit", "spent_…"}}}."""
    out: dict[str, dict] = {}
    for b in budgets.BUDGETS:
        for model, amount in () if b.column else budgets.limits(b, rec):
            spent = budgets.spent_on(budgets.Line(b, model, amount), s)
            out.setdefault(b.field, {})[model] = {
                "limit": amount, f"spent_{'today' if b.period == budgets.DAY else 'this_month'}": round(spent, 6)}
    return out


def rows(store: KeyStore) -> list[dict]:
    spend = store.spend()
    out = []
    for rec in store.keys():
        s = spend.get(rec.name) or Spent()
        out.append({"name": rec.name, "state": "revoked" if rec.revoked else "active", "rpm": rec.rpm or None,
                    "tpm": rec.tpm or None, "daily_tokens": rec.daily_tokens or None,
                    "monthly_usd": rec.monthly_usd or None, "tokens_today": s.tokens_today,
                    "requests_today": s.requests_today, "refused_today": s.refused_today,
                    "usd_this_month": round(s.usd_month, 6), "unpriced_this_month": s.unpriced_month,
                    "plan_requests_this_month": s.plan_requests_month,
                    "plan_tokens_this_month": s.plan_tokens_month, "last_used": _when(s.last_used),
                    **_others(rec, s)})
    return out


def _budgets_cell(row: dict) -> str:
    said = []
    for b in budgets.BUDGETS:
        for model, v in ({} if b.column else row.get(b.field) or {}).items():
            spent = next(x for k, x in v.items() if k.startswith("spent_"))
            said.append(f"{b.flag} {model + ': ' if model else ''}{_amount(b, spent)} of {_amount(b, v['limit'])}")
    return "; ".join(said) or "-"


WIDTH = 100  # the table's width without --wide (a key name longer than 20 characters may widen it)


def _aligned(cells: list[list[str]]) -> list[str]:
    widths = [max(len(c[i]) for c in cells) for i in range(len(cells[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]


def _details(r: dict) -> str:
    """What the wide table has in its own columns, said in words under the key's row."""
    limits = [f"rpm {r['rpm']:,}" if r["rpm"] else "", f"tpm {r['tpm']:,}" if r["tpm"] else "",
              f"daily-tokens {r['daily_tokens']:,}" if r["daily_tokens"] else "",
              f"monthly-usd {usd(r['monthly_usd'])}" if r["monthly_usd"] else ""]
    said = ["limits: " + ", ".join(x for x in limits if x)] if any(limits) else []
    said += [] if _budgets_cell(r) == "-" else [_budgets_cell(r)]
    said += [f"{r['refused_today']:,} refused today"] if r["refused_today"] else []
    said += [f"{r['unpriced_this_month']:,} unpriced this month"] if r["unpriced_this_month"] else []
    plan = [_plural(r[f"plan_{unit}s_this_month"], unit) for unit in ("request", "token")
            if r[f"plan_{unit}s_this_month"]]
    said += ["plan this month: " + ", ".join(plan)] if plan else []
    return "; ".join(said)


def table(items: list[dict], wide: bool = False) -> str:
    if not items:
        return "No named keys yet (qwen-keys add NAME)."
    if wide:
        return _wide(items)
    lines = _aligned([["NAME", "STATE", "TODAY", "THIS MONTH", "LAST USED"]] + [
        [r["name"], r["state"], f"{r['tokens_today']:,} tokens, {_plural(r['requests_today'], 'request')}",
         usd(r["usd_this_month"]), r["last_used"]] for r in items])
    out = lines[:1]
    for r, line in zip(items, lines[1:]):
        out += [line] + textwrap.wrap(_details(r), WIDTH, initial_indent="  ", subsequent_indent="    ",
                                      break_on_hyphens=False)
    return "\n".join(out)


def _wide(items: list[dict]) -> str:
    def n(v, fmt="{:,}"):  # noqa: E306
        return "-" if v is None else fmt.format(v)
    plan = any(r["plan_requests_this_month"] or r["plan_tokens_this_month"] for r in items)
    others = any(_budgets_cell(r) != "-" for r in items)
    head = ["NAME", "STATE", "RPM", "TPM", "DAILY TOKENS", "MONTHLY USD"] + (["BUDGETS"] if others else []) + \
        ["TODAY", "THIS MONTH"] + (["PLAN THIS MONTH"] if plan else []) + ["LAST USED"]
    cells = [head]
    for r in items:
        row = [r["name"], r["state"], n(r["rpm"]), n(r["tpm"]), n(r["daily_tokens"]),
               usd(r["monthly_usd"]) if r["monthly_usd"] else "-"] + ([_budgets_cell(r)] if others else []) + \
              [f"{r['tokens_today']:,} tokens, {_plural(r['requests_today'], 'request')}"
               + (f", {r['refused_today']} refused" if r["refused_today"] else ""),
               usd(r["usd_this_month"]) + (f" + {r['unpriced_this_month']:,} unpriced"
                                           if r["unpriced_this_month"] else "")]
        if plan:
            row.append(", ".join(_plural(r[f"plan_{unit}s_this_month"], unit) for unit in ("request", "token")
                                 if r[f"plan_{unit}s_this_month"]) or "-")
        cells.append(row + [r["last_used"]])
    return "\n".join(_aligned(cells))

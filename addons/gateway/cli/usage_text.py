"""qwen-usage's plain-text tables (usage.py reads the ledger; this lays its rows out)."""

from __future__ import annotations

from ..pricing.prices import signed_usd

UNKNOWN = "unknown"  # a sum that includes requests nothing priced (issue 59) or without usage (issue 79): never 0
QUIET = ("usage_unknown",)  # counts shown only when some row has one (the line under the table names them too)


def table(rows: list[dict], sums: tuple[str, ...], heads: dict[str, str], dollars: tuple[str, ...]) -> str:
    """A plain-text table of an aggregated view, with a total line (`heads`: column names other than the
    keys' own; `dollars`: sums in USD)."""
    if not rows:
        return "No requests recorded."
    keys = [k for k in rows[0] if k not in sums]
    sums = tuple(k for k in sums if k in rows[0] and (k not in QUIET or any(r[k] for r in rows)))
    head, nkeys = keys + list(sums), len(keys)

    def number(k: str, v) -> str:
        return UNKNOWN if v is None else signed_usd(v) if k in dollars else f"{v:,}"

    def total(k: str):  # a sum with an unknown part (a request nothing priced) is unknown
        return None if any(r[k] is None for r in rows) else sum(r[k] for r in rows)
    cells = [[heads.get(h, h.replace("_tokens", "").replace("_", " ")) for h in head]]
    cells += [[str(r[k]) for k in head[:nkeys]] + [number(k, r[k]) for k in sums] for r in rows]
    cells.append(["total"] + [""] * (nkeys - 1) + [number(k, total(k)) for k in sums])
    return _grid(cells, nkeys, rules_after=(0, len(cells) - 2))


def request_table(rows: list[dict]) -> str:
    """One line per request: when, what the client asked, which model and account, the outcome."""
    if not rows:
        return "No requests recorded."
    cells = [["time", "request", "model", "account", "status", "in", "out", "est", "total", "cut", "error"]]
    for r in rows:
        model = f"{r['model'] or '?'}→{r['upstream_model'] or '?'}" if r["upstream_model"] or r["model"] else "-"
        cells.append([
            r["time"] or "?", f"{r['method'] or '?'} {r['path'] or r['endpoint'] or '?'}", model,
            r["account"] or "-", str(r["status"] if r["status"] is not None else "?"),
            *((UNKNOWN, UNKNOWN) if r.get("cost_unit") == "usage_unknown" else  # Qwen reported no usage
              (_n(r["prompt_tokens"]), _n(r["completion_tokens"]))), _n(r["est_tokens"]), _ms(r["duration_ms"]),
            _n(r.get("cuts")), r["error"] or ""])  # cut: how often Qwen's stream broke (continued, or the error)
    return _grid(cells, 4, rules_after=(0,), right=(4, 5, 6, 7, 8, 9))


def _grid(cells: list[list[str]], nkeys: int, rules_after: tuple[int, ...], right: tuple[int, ...] = ()) -> str:
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = []
    for n, row in enumerate(cells):
        line = "  ".join(c.rjust(w) if (i in right if right else i >= nkeys) else c.ljust(w)
                         for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        lines.append(line.rstrip())
        if n in rules_after:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _n(v) -> str:
    return f"{v:,}" if isinstance(v, int) else ""


def _ms(v) -> str:
    if not isinstance(v, (int, float)):
        return ""
    return f"{v:.0f}ms" if v < 1000 else f"{v / 1000:.2f}s"

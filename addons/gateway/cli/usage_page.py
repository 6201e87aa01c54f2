"""The HTML of `qwen-usage report`: one file that needs nothing else — inline CSS, inline SVG, no script —
and that its Content-Security-Policy forbids to load anything at all. Every value from the ledger is
escaped here (model names and error messages come from clients)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from html import escape
from typing import TYPE_CHECKING

from ..pricing.prices import signed_usd, usd
from . import usage_unpriced
from .usage_text import UNKNOWN
from .usage_svg import stacked_bars

if TYPE_CHECKING:
    from .usage_summary import Row, Summary, Totals

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
ERROR_COLOURS = {"ok": "#009e73", "errors": "#d55e00"}
CODES_SHOWN = 6  # error codes listed per day or endpoint, the commonest first

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1100px; padding: 0 16px; color: #222; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ddd; }
h3 { font-size: 15px; margin: 18px 0 6px; }
.meta { color: #555; margin: 0 0 4px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 8px 14px; min-width: 110px; }
.card b { display: block; font-size: 20px; }
table { border-collapse: collapse; margin: 6px 0 12px; }
th, td { padding: 3px 10px; border-bottom: 1px solid #eee; text-align: left; vertical-align: top; }
th { background: #f5f5f5; } td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.t { white-space: nowrap; }
tr.total td { font-weight: 600; border-top: 1px solid #999; }
td.why { min-width: 12em; max-width: 420px; overflow-wrap: break-word; color: #8a2a00; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(460px, 1fr)); gap: 8px 24px; }
figure { margin: 0; } svg.chart { width: 100%; max-width: 640px; height: auto; }
.chart text { font: 12px system-ui, sans-serif; fill: #444; }
.chart .grid { stroke: #e4e4e4; }
.empty { font-size: 16px; padding: 24px; background: #f7f7f7; border-radius: 6px; }
"""


def page(s: Summary, filters: list[str], now: float, sections: Iterable[str] = ()) -> str:
    """The whole document; `sections` (HTML, escaped by the module that wrote them: the conversations',
    usage_page_conversations.py) come after the page's own, when the period has requests."""
    head = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{escape(CSP)}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>Qwen gateway usage</title><style>{STYLE}</style></head><body>")
    parts = [head, "<h1>Qwen gateway usage</h1>", _meta(s, filters, now)]
    if not s.total.requests:
        parts.append('<p class="empty" id="empty">No requests in this period.</p>')
    else:
        parts += [_cards(s.total), _unpriced(s.total), _usage(s, "model", s.by_model), _usage(s, "account", s.by_account),
                  _keys(s), _errors(s), _slowest(s), *sections]
    parts.append("</body></html>\n")
    return "".join(parts)


def _meta(s: Summary, filters: list[str], now: float) -> str:
    period = (f"{_time(s.first_ts)} to {_time(s.last_ts)}" if s.first_ts is not None and s.last_ts is not None
              else "no requests")
    shown = ", ".join(filters) if filters else "none (all recorded requests)"
    return (f'<p class="meta">Requests: {escape(period)} · filters: <span id="filters">{escape(shown)}</span></p>'
            f'<p class="meta">Written {escape(_time(now))} by qwen-usage report. Token counts are the usage '
            f"Qwen reported; errors are requests answered with an error status or whose stream ended in one. "
            f"Successful local answers (models, health, metrics, auth) spend nothing and are not counted.</p>")


def _cards(t: Totals) -> str:
    cards = (("requests", t.requests), ("prompt tokens", t.prompt), ("completion tokens", t.completion),
             ("cached tokens", t.cached), ("cache writes", t.written), ("errors", t.errors))
    out = [f'<div class="card" data-name="{escape(n)}"><b>{v:,}</b>{escape(n)}</div>' for n, v in cards]
    out.append(f'<div class="card" data-name="error rate"><b>{t.rate:.1%}</b>error rate</div>')
    if t.saved or not t.saved_known:  # pay-as-you-go accounts only: what Qwen's caches took off the prompts' price
        saved = signed_usd(t.saved) if t.saved_known else UNKNOWN
        out.append(f'<div class="card" data-name="cache saved"><b>{escape(saved)}</b>cache saved</div>')
    if t.unpriced:  # answers nothing priced (issue 59)
        out.append(f'<div class="card" data-name="unpriced"><b>{t.unpriced:,}</b>unpriced</div>')
    return f'<div class="cards" id="totals">{"".join(out)}</div>'


def _unpriced(t: Totals) -> str:
    """The line that says which models the unpriced requests were on (none: nothing)."""
    said = usage_unpriced.line(sorted(t.unpriced_models.items(), key=lambda mn: (-mn[1], mn[0])))
    return f'<p class="meta" id="unpriced">{escape(said)}</p>' if said else ""


def _usage(s: Summary, by: str, cells: dict[tuple[str, str], Totals]) -> str:
    """Tokens and requests per day, stacked by model (or account), and the table of the same numbers."""
    names = sorted({name for _, name in cells})
    sums = {n: (sum(t.tokens for (_, m), t in cells.items() if m == n),
                sum(t.requests for (_, m), t in cells.items() if m == n)) for n in names}
    order = sorted(names, key=lambda n: (-sums[n][0], -sums[n][1], n))  # one colour per name in both charts
    tokens = {n: [float(cells[d, n].tokens) if (d, n) in cells else 0.0 for d in s.days] for n in names}
    requests = {n: [float(cells[d, n].requests) if (d, n) in cells else 0.0 for d in s.days] for n in names}
    rows = [[_c(day), _c(name), *_sums(t)] for (day, name), t in sorted(cells.items())]
    table = _table(f"by-{by}", ["day", by, "requests", "prompt", "completion", "cached", "cache writes", "errors",
                                "unpriced"], rows,
                   total=["total", "", *_sums(s.total)])
    return (f'<h2>Per day by {by}</h2><div class="charts">'
            f"<figure><h3>Tokens (prompt + completion) per day by {by}</h3>"
            f"{stacked_bars(f'chart-tokens-{by}', f'tokens per day by {by}', s.days, tokens, order=order)}</figure>"
            f"<figure><h3>Requests per day by {by}</h3>"
            f"{stacked_bars(f'chart-requests-{by}', f'requests per day by {by}', s.days, requests, order=order)}"
            f"</figure></div>{table}")


def _keys(s: Summary) -> str:
    """Per day and named client key (qwen-keys): requests, refusals, tokens and what they cost; "-" is the
    requests without a named key. Left out when no request came with one."""
    if all(key == "-" for _, key in s.by_key):
        return ""
    rows = [[_c(day), _c(key), _n(f"{t.requests:,}"), _n(f"{t.refused:,}"), _n(f"{t.prompt:,}"),
             _n(f"{t.completion:,}"), _n(_cost(t)), _c(_plan(t))] for (day, key), t in sorted(s.by_key.items())]
    t = s.total
    table = _table("by-key", ["day", "key", "requests", "refused", "prompt", "completion", "cost (USD)", "plan units"],
                   rows, total=["total", "", _n(f"{t.requests:,}"), _n(f"{t.refused:,}"), _n(f"{t.prompt:,}"),
                                _n(f"{t.completion:,}"), _n(_cost(t)), _c(_plan(t))])
    return ("<h2>Per day by key</h2><p class=\"meta\">Named client keys (qwen-keys): refused counts the requests the "
            "gateway refused itself (unknown or revoked key, rate limit, budget); cost is what pay-as-you-go "
            f"answers cost by the price table, plan units what Coding Plan and Token Plan answers used.</p>{table}")


def _cost(t: Totals) -> str:
    return usd(t.usd) if t.usd_known else UNKNOWN  # some of it nothing priced: unknown, never $0


def _plan(t: Totals) -> str:
    return ", ".join(f"{n:,} {unit}" for unit, n in sorted(t.plan.items())) or "-"


def _errors(s: Summary) -> str:
    series = {"ok": [float(s.per_day[d].requests - s.per_day[d].errors) for d in s.days],
              "errors": [float(s.per_day[d].errors) for d in s.days]}
    by_day = [[_c(d), _n(t.requests), _n(t.errors), _n(f"{t.rate:.1%}"), _c(_codes(s.codes_by_day.get(d)), "why")]
              for d, t in sorted(s.per_day.items())]
    by_endpoint = [[_c(e), _n(t.requests), _n(t.errors), _n(f"{t.rate:.1%}"),
                    _c(_codes(s.codes_by_endpoint.get(e)), "why")] for e, t in sorted(s.per_endpoint.items())]
    head = ["requests", "errors", "rate", "error codes seen"]
    return ("<h2>Errors</h2><h3>Requests per day: answered, and with an error</h3>"
            f"{stacked_bars('chart-errors-day', 'requests per day, ok and errors', s.days, series, ERROR_COLOURS)}"
            f"<h3>Error rate per day</h3>{_table('errors-by-day', ['day', *head], by_day)}"
            f"<h3>Error rate per endpoint</h3>{_table('errors-by-endpoint', ['endpoint', *head], by_endpoint)}")


def _slowest(s: Summary) -> str:
    head = ["time", "endpoint", "model", "account", "status", "duration", "first byte", "error"]
    return (f"<h2>Slowest requests</h2><h3>By duration (top {len(s.slowest)})</h3>"
            f"{_table('slowest', head, [_request(r) for r in s.slowest])}"
            f"<h3>By time to first byte (top {len(s.first_byte)}; streams: a whole answer has no first byte "
            f"of its own)</h3>"
            f"{_table('first-byte', head, [_request(r) for r in s.first_byte])}")


def _request(r: Row) -> list[str]:
    model = r["upstream_model"] or r["model"] or "-"
    return [_c(_time(r["ts"]) if isinstance(r["ts"], (int, float)) else "?", "t"), _c(r["endpoint"] or "-"), _c(model),
            _c(r["account"] or "-"), _n(r["status"] if r["status"] is not None else "?"), _n(_ms(r["duration_ms"])),
            _n(_ms(r["ttfb_ms"])), _c(r["error"] or "", "why")]


def _codes(codes: Counter[str] | None) -> str:
    if not codes:
        return ""
    ranked = sorted(codes.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = [f"{code} ×{n}" for code, n in ranked[:CODES_SHOWN]]
    if len(ranked) > CODES_SHOWN:
        shown.append(f"{len(ranked) - CODES_SHOWN} more")
    return ", ".join(shown)


def _sums(t: Totals) -> list[str]:
    return [_n(f"{v:,}") for v in (t.requests, t.prompt, t.completion, t.cached, t.written, t.errors, t.unpriced)]


def _table(table_id: str, head: list[str], rows: Iterable[list[str]], total: list[str] | None = None) -> str:
    """Cells arrive as <td> markup (_c, _n), already escaped."""
    out = [f'<table id="{escape(table_id)}"><thead><tr>', *(f"<th>{escape(h)}</th>" for h in head),
           "</tr></thead><tbody>"]
    out += [f"<tr>{''.join(r)}</tr>" for r in rows]
    if total is not None:
        out.append('<tr class="total">' + "".join(_c(v) if i < 2 else v for i, v in enumerate(total)) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _c(value: object, cls: str = "") -> str:
    """A text cell."""
    attr = f' class="{cls}"' if cls else ""
    return f"<td{attr}>{escape(str(value))}</td>"


def _n(value: object) -> str:
    """A number cell (right-aligned)."""
    return f'<td class="n">{escape(str(value))}</td>'


def _ms(v: object) -> str:
    if not isinstance(v, (int, float)):
        return ""
    return f"{v:.0f}ms" if v < 1000 else f"{v / 1000:.2f}s"


def _time(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts is not None else "?"

"""Bar charts as inline SVG for `qwen-usage report`: drawn here so the page needs no script, no library and no
network. Every label is escaped (model and account names come from clients and accounts files)."""

from __future__ import annotations

from html import escape

# Distinguishable on white and for the common colour blindnesses (Okabe–Ito), then greys for the rest.
PALETTE = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000")
OTHER_COLOUR = "#999999"
MAX_SERIES = len(PALETTE)  # more series than colours: the smallest are drawn together as "other"
OTHER = "other"

WIDTH, HEIGHT = 560, 240
LEFT, RIGHT, TOP, BOTTOM = 52, 12, 12, 44  # room for the value axis and the day labels
LEGEND_ROW, LEGEND_COLUMNS, LEGEND_CHARS = 18, 2, 30  # a longer name is cut (the tooltips keep it whole)


def nice_ceiling(value: float) -> float:
    """The axis's top: the value rounded up to 1, 2 or 5 times a power of ten (0 stays 1 so bars have room)."""
    if value <= 0:
        return 1.0
    step = 1.0
    while step * 10 <= value:
        step *= 10
    while step > value:  # values below 1 (rates)
        step /= 10
    for m in (1, 2, 5, 10):
        if m * step >= value:
            return m * step
    return 10 * step


def fold_series(series: dict[str, list[float]], order: list[str] | None = None,
                keep: int = MAX_SERIES) -> dict[str, list[float]]:
    """At most `keep` series in `order` (default: the largest first); the rest summed into one called "other"."""
    names = order if order is not None else sorted(series, key=lambda n: (-sum(series[n]), n))
    ranked = [(n, series[n]) for n in names if n in series]
    if len(ranked) <= keep:
        return dict(ranked)
    head, tail = ranked[:keep - 1], ranked[keep - 1:]
    other = [sum(vals) for vals in zip(*(v for _, v in tail), strict=True)]
    return {**dict(head), OTHER: other}


def _number(v: float) -> str:
    if v >= 1_000_000:
        return f"{v / 1_000_000:g}M"
    if v >= 1000:
        return f"{v / 1000:g}k"
    return f"{v:g}"


def _colours(names: list[str], fixed: dict[str, str] | None) -> dict[str, str]:
    out = {}
    free = iter(PALETTE)
    for name in names:
        if fixed and name in fixed:
            out[name] = fixed[name]
        elif name == OTHER:
            out[name] = OTHER_COLOUR
        else:
            out[name] = next(free, OTHER_COLOUR)
    return out


def stacked_bars(chart_id: str, label: str, days: list[str], series: dict[str, list[float]],
                 colours: dict[str, str] | None = None, order: list[str] | None = None) -> str:
    """One bar per day, one coloured segment per series (values in the order of `days`), and a legend.

    Each segment carries data-day, data-series and data-value (and a tooltip) so the numbers can be read
    back from the drawing; `colours` fixes some series' colours (errors in red); charts given the same `order`
    (all their series, as ranked) give each series the same colour and place."""
    series = fold_series(series, order)
    names = list(series)
    colour = _colours(names, colours)
    totals = [sum(vals[i] for vals in series.values()) for i in range(len(days))]
    top = nice_ceiling(max(totals, default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(days), 1)
    bar = max(min(slot * 0.7, 48), 1)
    legend_rows = -(-len(names) // LEGEND_COLUMNS)
    height = HEIGHT + legend_rows * LEGEND_ROW
    out = [f'<svg id="{escape(chart_id)}" class="chart" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" '
           f'height="{height}" role="img" aria-label="{escape(label)}">']
    for frac in (0, 0.5, 1):  # the value axis: 0, half, top
        y = TOP + plot_h * (1 - frac)
        out.append(f'<line class="grid" x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}"/>')
        out.append(f'<text class="axis" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_number(top * frac)}</text>')
    every = max(1, -(-len(days) // 12))  # at most ~12 day labels
    for i, day in enumerate(days):
        x = LEFT + slot * i + (slot - bar) / 2
        y = TOP + plot_h
        for name in names:
            v = series[name][i]
            if v <= 0:
                continue
            h = plot_h * v / top
            y -= h
            tip = f"{day} · {name}: {v:,.4g}" if isinstance(v, float) and not v.is_integer() else \
                f"{day} · {name}: {int(v):,}"
            out.append(f'<rect class="seg" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                       f'fill="{colour[name]}" data-day="{escape(day)}" data-series="{escape(name)}" '
                       f'data-value="{v:g}"><title>{escape(tip)}</title></rect>')
        if i % every == 0:
            out.append(f'<text class="axis" x="{x + bar / 2:.1f}" y="{TOP + plot_h + 16}" '
                       f'text-anchor="middle">{escape(day[5:] if len(day) == 10 else day)}</text>')
    for n, name in enumerate(names):  # the legend, in rows
        x = LEFT + (n % LEGEND_COLUMNS) * (plot_w / LEGEND_COLUMNS)
        y = HEIGHT - 8 + (n // LEGEND_COLUMNS) * LEGEND_ROW
        shown = name if len(name) <= LEGEND_CHARS else name[:LEGEND_CHARS - 1] + "…"
        out.append(f'<rect class="key" x="{x:.1f}" y="{y - 10}" width="10" height="10" fill="{colour[name]}"/>'
                   f'<text class="legend" x="{x + 14:.1f}" y="{y}">{escape(shown)}</text>')
    out.append("</svg>")
    return "".join(out)

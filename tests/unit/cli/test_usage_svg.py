"""The usage report's charts (cli/usage_svg.py): stacked bars read back from their SVG, series folded into "other",
one colour per name across charts, the axis's top."""

from __future__ import annotations

from qwen_gateway.cli.usage_svg import OTHER, OTHER_COLOUR, PALETTE, fold_series, nice_ceiling, stacked_bars
from unit.cli.test_usage_report import Page


def test_many_series_fold_into_other_with_one_colour_per_name_across_charts():
    series = {f"m{i}": [float(i), 1.0] for i in range(12)}
    folded = fold_series(series)
    assert len(folded) == len(PALETTE) and list(folded)[:2] == ["m11", "m10"]
    assert folded[OTHER] == [sum(range(5)), 5.0]  # m0..m4 drawn together
    order = sorted(series, reverse=True)
    one = Page(stacked_bars("a", "a", ["d1", "d2"], series, order=order))
    two = Page(stacked_bars("b", "b", ["d1", "d2"], {k: [1.0, 1.0] for k in reversed(series)}, order=order))
    colour = {s["data-series"]: s["fill"] for s in one.segments}
    assert colour == {s["data-series"]: s["fill"] for s in two.segments} and len(set(colour.values())) == 8
    assert [nice_ceiling(v) for v in (0, 0.3, 7, 10, 11, 2600, 3300)] == [1, 0.5, 10, 10, 20, 5000, 5000]


def test_each_segment_says_its_day_series_and_value_and_zeros_draw_nothing():
    page = Page(stacked_bars("tokens", "Tokens per day", ["2026-11-20", "2026-11-21"],
                             {"qwen-plus": [1500.0, 0.0], "<b>x</b>": [2.5, 4.0]}))
    assert page.svgs == ["tokens"]
    assert sorted((s["data-day"], s["data-series"], s["data-value"]) for s in page.segments) == [
        ("2026-11-20", "<b>x</b>", "2.5"), ("2026-11-20", "qwen-plus", "1500"), ("2026-11-21", "<b>x</b>", "4")]
    assert not any(tag == "b" for tag, _ in page.tags)  # a name is text, never markup


def test_fixed_colours_win_and_other_is_grey():
    page = Page(stacked_bars("errors", "Errors", ["d"], {"500": [1.0], "429": [2.0]}, colours={"500": "#ff0000"}))
    assert {s["data-series"]: s["fill"] for s in page.segments} == {"500": "#ff0000", "429": PALETTE[0]}
    many = {f"s{i}": [1.0] for i in range(len(PALETTE) + 1)}
    page = Page(stacked_bars("c", "c", ["d"], many))
    assert {s["fill"] for s in page.segments if s["data-series"] == OTHER} == {OTHER_COLOUR}


def test_few_series_are_kept_as_they_are_in_the_order_given():
    series = {"a": [1.0], "b": [5.0]}
    assert fold_series(series) == {"b": [5.0], "a": [1.0]}  # the largest first
    assert list(fold_series(series, order=["a", "b"])) == ["a", "b"]
    assert fold_series({"a": [1.0], "b": [2.0], "c": [3.0]}, keep=2) == {"c": [3.0], OTHER: [3.0]}

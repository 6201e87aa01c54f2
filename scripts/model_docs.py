"""docs/compatibility.md's model tables, generated from the model catalogue (addons/gateway/models/catalogue.toml),
so that the doc cannot drift from what the gateway does.

    .venv/bin/python scripts/model_docs.py          # says whether the doc is current (exit 1 if not)
    .venv/bin/python scripts/model_docs.py --write  # rewrites the generated blocks

Each block stands between `<!-- generated: NAME -->` and `<!-- end: NAME -->`; tests/repo/test_catalogue.py
checks every block is current.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from qwen_gateway.models.catalogue import CHAT, FAMILY_RULES, READ, ROWS, SOURCE_DATES, SOURCES, Model, Thinking

DOC = Path(__file__).resolve().parents[1] / "docs" / "compatibility.md"
SWITCH = {Thinking.HYBRID: "`enable_thinking`", Thinking.ONLY: "thinking-only", Thinking.EFFORT: "`reasoning_effort`",
          Thinking.NONE: "none"}


UNSOURCED = "†"  # a number whose sources are all older than the model: shown, never applied


def _n(value: int | None, m: Model | None = None, fact: str = "") -> str:
    if value is None:
        return "–"
    return f"{value:,}{UNSOURCED}" if m is not None and fact in m.unsourced else f"{value:,}"


def thinking_row(m: Model) -> str:
    assert m.thinking is not None
    told = "–" if m.thinking is Thinking.NONE else "thinks" if m.thinks else "does not think"
    budget = _n(m.budget, m, "budget") + (", required" if m.budget_required else "")
    return (f"| `{m.id}` | {SWITCH[m.thinking]} | {told} | {budget} | {', '.join(m.efforts) or '–'} | "
            f"{', '.join(m.plans)} | {m.sources} |")


def thinking_table() -> str:
    head = ["| Model | Switch | Told nothing | Largest `thinking_budget` | `reasoning_effort` | Plans | Sources |",
            "|---|---|---|---|---|---|---|"]
    return "\n".join(head + [thinking_row(m) for m in ROWS.values() if m.thinking is not None])


def model_row(m: Model) -> str:
    inputs = ", ".join(k for k, on in (("text", True), ("image", m.vision), ("video", m.video)) if on)
    dates = " → ".join(d for d in (m.released, m.retires) if d) or "–"
    if m.successor:
        dates += f" (then `{m.successor}`)"
    elif m.successors:
        dates += f" (then {m.replaced_by}: {', '.join(f'`{x}`' for x in m.successors)})"
    shares = "shares" if m.shares_output else "–"
    family = f" (of `{m.family}`)" if m.family else ""
    cited = "; ".join(f"{fact}: {m.cite[fact]}" for fact in ("context", "input", "output", "budget", "retires")
                      if fact in m.cite)
    return (f"| `{m.id}`{family} | {_n(m.context, m, 'context')} | {_n(m.input, m, 'input')} | "
            f"{_n(m.output, m, 'output')} | {shares} | {inputs} | {'yes' if m.search else '–'} | {', '.join(m.plans)} "
            f"| {dates} | {m.sources}{f' ({cited})' if cited else ''} |")


def models_table() -> str:
    head = ["| Model | Context | Longest prompt | Output cap | Reasoning and answer | Input | Web search | Plans | "
            "Released → retires | Sources |", "|---|---|---|---|---|---|---|---|---|---|"]
    foot = ["", f"{UNSOURCED} Given only by sources older than the model's release: shown, never applied (the "
                "client's value goes to Qwen as asked, and Qwen's refusal is learned)."]
    return "\n".join(head + [model_row(m) for m in ROWS.values() if m.kind == CHAT] + foot)


def rules_table() -> str:
    head = ["| A model name matching | Switch | Told nothing | `reasoning_effort` | Streams only | Sees images | Sources |",
            "|---|---|---|---|---|---|---|"]
    rows = []
    for pattern, r in FAMILY_RULES:
        switch = SWITCH[r.thinking] if r.thinking is not None else "–"
        told = "–" if r.thinking in (None, Thinking.NONE) else "thinks" if r.thinks else "does not think"
        rows.append(f"| `{pattern.pattern.replace(chr(124), chr(92) + chr(124))}` | {switch} | {told} | {', '.join(r.efforts) or '–'} | "
                    f"{'yes' if r.stream_only else '–'} | {'yes' if r.vision else '–'} | {r.sources} |")
    return "\n".join(head + rows)


PAYG = (("payg-intl", "payg:intl"), ("payg-cn", "payg:cn"), ("payg-us", "payg:us"))  # (plan, price billing)
UNPRICED = "**unpriced**"


def _usd(value: float) -> str:
    """$0.50, $0.075, $0.1875: cents at least, up to the source's fourth decimal."""
    digits = f"{value:.4f}".rstrip("0")
    return "$" + (digits + "0" * (2 - len(digits.split(".")[1])))


def _price(m: Model, tiers) -> str:
    """Each prompt tier: `≤256K $in / $out` (cached, thinking, the explicit cache's reads and 5-minute and 1-hour
    writes when priced apart), the last `above`."""
    said = []
    for upto, inp, out, cached, thinking, read, write, hour in tiers:
        where = "" if len(tiers) == 1 else "above " if upto is None else f"≤{upto // 1000}K "
        parts = [_usd(inp) if m.kind != CHAT else f"{_usd(inp)} / {_usd(out)}"]
        parts += [f"cached {_usd(cached)}"] if cached is not None else []
        parts += [f"thinking {_usd(thinking)}"] if thinking is not None else []
        parts += [f"{name} {_usd(v)}" for name, v in (("cache read", read), ("5-min write", write),
                                                      ("1-hour write", hour)) if v is not None]
        said.append(where + ", ".join(parts))
    return "; ".join(said)


def price_row(m: Model) -> str:
    cells = [_price(m, m.prices[billing]) if billing in m.prices else UNPRICED if plan in m.plans else "–"
             for plan, billing in PAYG]
    return f"| `{m.id}` | {' | '.join(cells)} | {m.sources} |"


def prices_table() -> str:
    """Every model pay-as-you-go serves (a snapshot is priced as its family): its price by region, or unpriced."""
    head = ["| Model | International (`payg:intl`) | China (`payg:cn`) | US (`payg:us`) | Sources |",
            "|---|---|---|---|---|"]
    return "\n".join(head + [price_row(m) for m in ROWS.values()
                             if m.family is None and any(plan in m.plans for plan, _ in PAYG)])


def partial_list() -> str:
    """The models whose streams the gateway continues from a prefix (the catalogue's `partial`), but those retired
    when the sources were read (answered locally, never streamed)."""
    return ", ".join(f"`{m.id}`" for m in ROWS.values()
                     if m.kind == CHAT and m.partial and not (m.retires and m.retires < READ)) + "."


def sources_list() -> str:
    return "\n".join([f"Sources, read {READ}, each with the date what it says is as of:", ""] +
                     [f"- **{k}** ({SOURCE_DATES[k]}) {v}" for k, v in SOURCES.items()])


BLOCKS = {"models": models_table, "thinking": thinking_table, "rules": rules_table, "prices": prices_table,
          "sources": sources_list, "partial": partial_list}


def render(text: str, blocks: dict = BLOCKS) -> str:
    """Each generated block of the doc written anew (scripts/request_surface_doc.py renders its blocks here too)."""
    for name, make in blocks.items():
        pattern = re.compile(rf"(<!-- generated: {name} -->\n)(?:.*?\n)?(<!-- end: {name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"{DOC}: no generated block {name!r}")
        text = pattern.sub(lambda m, body=make(): m.group(1) + body + "\n" + m.group(2), text)
    return text


def main(argv: list[str], blocks: dict = BLOCKS, script: str = __file__) -> int:
    text = DOC.read_text(encoding="utf-8")
    fresh = render(text, blocks)
    if "--write" in argv:
        DOC.write_text(fresh, encoding="utf-8")
        return 0
    if fresh != text:
        print(f"{DOC} is not current: run {Path(script).name} --write", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

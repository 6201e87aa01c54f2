"""docs/compatibility.md's request-surface tables, generated from the one table (addons/gateway/request_surface.py),
so that the doc cannot drift from what the dialects and providers do with each field.

    .venv/bin/python scripts/request_surface_doc.py          # says whether the doc is current (exit 1 if not)
    .venv/bin/python scripts/request_surface_doc.py --write  # rewrites the generated blocks

Each block stands between `<!-- generated: NAME -->` and `<!-- end: NAME -->` (as scripts/model_docs.py's);
tests/repo/test_request_surface.py checks every block is current.
"""

from __future__ import annotations

import sys

import model_docs  # scripts/: the doc's generated blocks are written by one function
from qwen_gateway import request_surface as rs

PROVIDERS = (("dashscope", "DashScope"), ("selfhosted", "Self-hosted"), ("qwenweb", "Qwen Chat web"))
OTHER = "Another OpenAI-compatible host"  # a provider with no column of its own: the default one
DIALECTS = (("responses", "Responses"), ("messages", "Messages"), ("completions", "Legacy completions"))


def _code(names) -> str:
    return ", ".join(f"`{n}`" for n in names)


def _spelled(value: str | rs.Hand) -> str:
    if isinstance(value, rs.Hand):
        return f"{_code(value.names)} (by `{value.fn}`)"
    return f"`{value}`" if value else "–"


def _fate(fate: rs.Fate) -> str:
    return {"send": "sent", "rename": f"as `{fate.what}`", "rule": f"sent through `{fate.what}`",
            "read": f"read by `{fate.what}`", "own": "the gateway's own, not sent",
            "drop": f"dropped, noted: {fate.what}"}[fate.kind]


def fields_table() -> str:
    head = ["Chat form", *(d for _, d in DIALECTS), *(p for _, p in PROVIDERS), OTHER, "Per model"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for f in rs.FIELDS:
        name = f"`{f.chat}`" + (" (Qwen's own)" if f.extra else "")
        cells = [name, *(_spelled(getattr(f, d)) for d, _ in DIALECTS), *(_fate(getattr(f, p)) for p, _ in PROVIDERS),
                 _fate(rs.DEFAULT_COLUMN[f.chat]), f"`{f.gate}`" if f.gate else "–"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def kept_table() -> str:
    how = {rs.HONOURED: "honoured by the gateway", rs.REFUSED: "refused: a 400 naming it",
           rs.IGNORED: "accepted, noted", rs.HANDLED: "translated by hand"}
    rows = ["| Dialect | Field | Fate | Where |", "|---|---|---|---|"]
    for k in rs.KEPT:
        where = f"`{rs.IGNORED_NOTE.format(k.name)}` on the flow" if k.fate == rs.IGNORED else f"`{k.what}`"
        rows.append(f"| {k.dialect} | `{k.name}` | {how[k.fate]} | {where} |")
    return "\n".join(rows)


BLOCKS = {"request-fields": fields_table, "request-kept": kept_table}


if __name__ == "__main__":
    sys.exit(model_docs.main(sys.argv[1:], BLOCKS, __file__))  # the same doc, the same check or --write

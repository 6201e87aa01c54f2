"""`qwen-usage report`: the usage ledger as one self-contained HTML page, written to a file
(usage_summary.py sums the rows, usage_page.py writes the HTML, usage_svg.py draws the charts,
usage_page_conversations.py the cache doctor's conversations, read by usage_conversations.py)."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from . import usage_conversations, usage_page_conversations
from .usage_page import page
from .usage_summary import DEFAULT_TOP, Row, load, summarize

if TYPE_CHECKING:
    from ..observe.ledger import Ledger, SharedLedger

__all__ = ["DEFAULT_OUT", "conversations", "described", "load", "write"]

DEFAULT_OUT = "usage-report.html"


def described(a: argparse.Namespace) -> list[str]:
    """The filters as the page names them."""
    out = []
    if a.since is not None:
        out.append(f"since {time.strftime('%Y-%m-%d %H:%M', time.localtime(a.since))}")
    if a.errors:
        out.append("errors only")
    for name in ("status", "account", "model", "key"):
        if getattr(a, name, None) is not None:
            out.append(f"{name} {getattr(a, name)}")
    return out


def conversations(ledger: Ledger | SharedLedger, where: str, args: tuple) -> list[dict]:
    """The newest conversations matching the filters, as `qwen-usage conversations` reads them."""
    return usage_conversations.conversations(ledger, where, args, usage_page_conversations.SHOWN)


def write(rows: list[Row], a: argparse.Namespace, folder: Path, now: float | None = None,
          convs: list[dict] | None = None) -> tuple[Path, bool]:
    """Writes the page for the command line's filters (`--out`, else DEFAULT_OUT in the state `folder`: never
    a stray file in whatever folder the command ran in), `convs` its Conversations section's rows; returns its
    path and whether it replaced a file."""
    out = Path(a.out).absolute() if a.out else folder.absolute() / DEFAULT_OUT
    replaced = out.exists()
    summary = summarize(rows, a.limit or DEFAULT_TOP)
    text = page(summary, described(a), time.time() if now is None else now,
                [usage_page_conversations.section(convs or [])])
    # private as the ledger is (0600): accounts, models and error messages; the owner may share it on purpose
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return out, replaced

"""Reading a gateway's usage ledger from a test, as a second process would (read-only)."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def ledger_rows(state: Path) -> list[dict]:
    """Every row of `<state>/usage.sqlite3`, oldest first ([] before the gateway created it)."""
    path = state / "usage.sqlite3"
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM usage ORDER BY ts")]
    except sqlite3.OperationalError:  # created, the table not there yet
        return []
    finally:
        db.close()
